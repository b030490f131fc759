#!/usr/bin/env bash
# One GPU lease, prepared: both shipped priors trained further on one CUDA machine, side by side,
# from their EMA weights, within what travels (64 MiB to the machine, 8 files of at most 16 MiB
# back). The two committed CPU checkpoints (57 MiB each) alone exceed the first limit, so
# `prepare` empties them in the working tree (git keeps them; `restore` brings them back) and
# packs what the machine needs into gpu-init/ (ignored): the EMA halves of both runs (14 MiB
# each, `train.py --split`), their GPU configs and the Colin27 volume.
#
#   bash export/gpu/lease.sh prepare          # here, before the lease
#   # the device tool: command `BUDGET=420 bash export/gpu/lease.sh train`, carry ["gpu-init"],
#   # timeout_s 600 (BUDGET seconds of training for each prior, both at once)
#   bash export/gpu/lease.sh restore          # here, right after (the checkpoints back)
#   bash export/gpu/lease.sh assemble DIR     # here: DIR holds what came back (files_at);
#                                             # writes runs/gpu-clean and runs/gpu-noisy
#   ./target/release/msm-train export --run runs/gpu-noisy --out /tmp/noisy.onnx --recon-eta 1
#
# A dry run on the CPU: `DEVICE=cpu STEPS=2 OUT=/tmp/lease bash export/gpu/lease.sh train`.
set -euo pipefail
cd "$(dirname "$0")/../.."

TRAINER=export/gpu/train.py
INIT=gpu-init
VOLUME=/usr/share/mricron/templates/ch2.nii.gz
CHECKPOINTS=(export/runs/brain128/checkpoint.safetensors export/runs/brain128-noisy/checkpoint.safetensors)
PRIORS=(clean noisy)
# Session 15's settings on an H200 (docs/results.md, "Training on a GPU"): 330 and 90
# examples/s side by side. --time-budget sets the steps and starts the cosine decay half way;
# a run of fixed --steps (STEPS) decays over all of it.
CONFIGS=('{"batch_size": 32, "lr": 2e-4, "lr_final": 1e-5, "lr_decay_from": 0, "seed": 3}'
         '{"batch_size": 16, "lr": 1e-4, "lr_final": 1e-5, "lr_decay_from": 0, "seed": 3}')

prepare() {
    for c in "${CHECKPOINTS[@]}"; do
        if ! git diff --quiet -- "$c"; then
            echo "$c differs from git's copy; commit it (or restore it) first" >&2
            exit 1
        fi
    done
    [ -f "$VOLUME" ] || { echo "$VOLUME not found: sudo apt-get install mricron-data" >&2; exit 1; }
    mkdir -p "$INIT"
    for i in 0 1; do
        python3 "$TRAINER" --split "${CHECKPOINTS[$i]}" --weights-out "$INIT/${PRIORS[$i]}"
        rm "$INIT/${PRIORS[$i]}-model.safetensors"
        echo "${CONFIGS[$i]}" > "$INIT/${PRIORS[$i]}.json"
    done
    cp "$VOLUME" "$INIT/ch2.nii.gz"
    for c in "${CHECKPOINTS[@]}"; do : > "$c"; done
    local bytes
    bytes=$( (git ls-files -z; find "$INIT" -type f -print0) | du -cb --files0-from=- | tail -1 | cut -f1)
    echo "prepared: $((bytes / 1048576)) MiB would travel (limit 64); run \`restore\` after the lease"
}

train() {
    : "${OUT:?the device tool sets OUT (the folder that comes back)}"
    local device="${DEVICE:-cuda}" length
    if [ -n "${STEPS:-}" ]; then
        length=(--steps "$STEPS")
    else
        local budget="${BUDGET:-420}"
        length=(--time-budget "$budget" --hard-limit "$((budget + 60))")
    fi
    if [ "$device" = cuda ]; then
        python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
        nvidia-smi -L > "$OUT/gpu.txt" || true
    fi
    export PYTHONUNBUFFERED=1
    local pids=()
    for p in "${PRIORS[@]}"; do
        python3 "$TRAINER" --init-from "$INIT/$p-ema.safetensors" --config "$INIT/$p.json" \
            --volume "$INIT/ch2.nii.gz" --out "/tmp/lease-$p" --device "$device" "${length[@]}" \
            --no-optimizer-state --weights-out "$OUT/$p" > "$OUT/$p.log" 2>&1 &
        pids+=($!)
    done
    local failed=0
    for i in 0 1; do
        wait "${pids[$i]}" || { failed=1; echo "${PRIORS[$i]}: failed (see $OUT/${PRIORS[$i]}.log)" >&2; }
    done
    tail -n 3 "$OUT"/*.log
    return "$failed"
}

restore() {
    git checkout -- "${CHECKPOINTS[@]}"
    echo "restored ${CHECKPOINTS[*]}"
}

assemble() {
    local from="${1:?usage: lease.sh assemble DIR, the folder that the files of the lease came back to}"
    for p in "${PRIORS[@]}"; do
        python3 "$TRAINER" --assemble "$from/$p" --out "runs/gpu-$p"
        cp "$from/$p.log" "runs/gpu-$p/lease.log"
        echo "runs/gpu-$p: $(tail -n 1 "$from/$p.log")"
    done
}

case "${1:-}" in
    prepare) prepare ;;
    train) train ;;
    restore) restore ;;
    assemble) shift; assemble "$@" ;;
    *) echo "usage: lease.sh prepare | train | restore | assemble DIR" >&2; exit 2 ;;
esac
