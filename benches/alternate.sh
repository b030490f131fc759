#!/bin/bash
# Times whole posterior reconstructions of two or more msm binaries in turn, round after round,
# so that the machine's drift falls on all of them alike (docs/performance.md cites its output).
#
# usage: benches/alternate.sh ROUNDS THREADS BACKEND BINARY...
#   e.g. benches/alternate.sh 5 1 native-bf16 /tmp/msm-before target/release/msm
# Each binary runs `msm reconstruct` on one simulated 128x128 8-coil slice (the shipped
# example, seed 1), K = 50, w = 3, seed 1; printed: each binary's sampler wall seconds (its
# timing line), one per round, sorted. Outputs go to the work folder, one per binary, so that
# they can be compared bit for bit (cmp).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 ROUNDS THREADS BACKEND BINARY..." >&2
  exit 2
fi
rounds=$1 threads=$2 backend=$3
shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d -t msm-alternate-XXXXXX)
first=$1
"$first" simulate "$root/models/examples/colin27-axial-90.npy" "$work/slice" --npy --seed 1 >/dev/null 2>&1
for r in $(seq "$rounds"); do
  i=0
  for b in "$@"; do
    i=$((i + 1))
    line=$(RAYON_NUM_THREADS=$threads "$b" reconstruct "$work/slice_ksp.npy" "$work/slice_maps.npy" \
      "$work/out-$i.npy" --mask "$work/slice_mask.npy" --model "$root/models/msm-brain-128.onnx" \
      --steps 50 --partials 3 --seed 1 --backend "$backend" 2>&1 | grep -o "in [0-9.]* s wall" || true)
    echo "$i $b ${line//[^0-9.]/}"
  done
done | sort -k1,1n -k3,3n | awk '{t[$1]=t[$1]" "$3; n[$1]=$2} END {for (k in n) print n[k] ":" t[k]}'
echo "outputs: $work/out-N.npy (N = the binary's position)" >&2
