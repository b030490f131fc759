#!/usr/bin/env bash
# CI for the trainer (msm-export): installs libtorch 2.13.0 through PyTorch's wheel, NumPy, safetensors (the GPU trainer's checkpoint format) and
# onnxruntime (the onnxruntime parity check), h5py (the scans the trainer reads in its tests), the Colin27 volume (Debian package mricron-data),
# then builds and runs the trainer's tests. Idempotent: every install step is skipped when already
# satisfied. Run from anywhere, as root or with sudo available.
#
# TORCH_PIP_ARGS is passed to the torch install, e.g.
#   TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" (the CPU-only wheel).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! python3 -c 'import torch, sys; sys.exit(0 if torch.__version__.split("+")[0] == "2.13.0" else 1)' 2>/dev/null; then
    # shellcheck disable=SC2086
    pip install --quiet torch==2.13.0 ${TORCH_PIP_ARGS:-}
fi
python3 -c 'import numpy, onnxruntime, safetensors, h5py' 2>/dev/null || pip install --quiet numpy onnxruntime safetensors h5py
if [ ! -e /usr/share/mricron/templates/ch2.nii.gz ]; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mricron-data
fi

# tch links against the libtorch inside the torch wheel (its folder is embedded as an rpath by
# export/build.rs; LD_LIBRARY_PATH is set as well for tools that load it differently).
export LIBTORCH_USE_PYTORCH=1
TORCH_LIB="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="${TORCH_LIB}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

cargo test --release -p msm-export
