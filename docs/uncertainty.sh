#!/usr/bin/env bash
# Calibrates the shipped noisy-data prior's uncertainty maps with one factor measured on the
# tuning slices (Colin27 axial 60, 70, 110), then checks that factor on held-out slices (axial
# 82, 86, 90, 94, 98): docs/results.md, "Is the uncertainty map calibrated?".
# Each slice: `msm simulate` (noise 0.01, 20 ACS lines, R = 4), `msm reconstruct` (the shipped
# prior's best noisy setting: K = 200, eta 1 from its metadata, w = 3, 8 samples, final DC 3,
# native-fast) with `--std`, and `msm metrics --std`. The factor is the tuning slices' mean rms
# error / rms predicted std over the object; the held-out maps are scored as written and
# multiplied by it. About 15 minutes on 2 cores. Needs mricron-data, numpy and a release build.
# Usage: bash docs/uncertainty.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-msm-uncertainty}
MSM=${MSM:-./target/release/msm}
VOLUME=/usr/share/mricron/templates/ch2.nii.gz
mkdir -p "$OUT"

for s in 60 70 110 82 86 90 94 98; do
    p="$OUT/s$s"
    if [ ! -e "${p}_metrics.json" ]; then # kept from an earlier run
        "$MSM" simulate "$VOLUME" "$p" --slice "$s" --seed $((1000 + s)) --acs 20 --noise 0.01 \
            --npy > /dev/null
        "$MSM" reconstruct "${p}_ksp.npy" "${p}_maps.npy" "${p}_mean.npy" --steps 200 --samples 8 \
            --final-dc 3 --backend native-fast --seed 0 --std "${p}_std.npy" --quiet
        "$MSM" metrics "${p}_ref.npy" "${p}_mean.npy" --scale --std "${p}_std.npy" --samples 8 \
            --json > "${p}_metrics.json.tmp"
        mv "${p}_metrics.json.tmp" "${p}_metrics.json"
    fi
done

# The factor from the tuning slices, and the held-out maps multiplied by it.
factor=$(python3 - "$OUT" <<'EOF'
import json, sys
ratios = [json.load(open(f"{sys.argv[1]}/s{s}_metrics.json"))["uncertainty"]["object"]["ratio"]
          for s in (60, 70, 110)]
print(f"{sum(ratios) / len(ratios):.4f}")
EOF
)
echo "factor from the tuning slices: $factor"
for s in 82 86 90 94 98; do
    p="$OUT/s$s"
    python3 -c "import numpy as np, sys; np.save(sys.argv[2], np.load(sys.argv[1]) * float(sys.argv[3]))" \
        "${p}_std.npy" "${p}_std_scaled.npy" "$factor"
    "$MSM" metrics "${p}_ref.npy" "${p}_mean.npy" --scale --std "${p}_std_scaled.npy" \
        --samples 8 --json > "${p}_metrics_scaled.json"
done

# Per slice, then the held-out means, as written and scaled.
python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
def row(name, u):
    o = u["object"]
    c = o["coverage"]
    return (f"| {name} | {o['ratio']:.2f} | {c[0]:.3f} / {c[1]:.3f} / {c[2]:.3f} | "
            f"{o['spearman']:.3f} | {o['block_spearman']:.3f} |")
print("| slice | rms error / rms predicted std | within 1 / 2 / 3 | Spearman, pixels | 8 x 8 blocks |")
print("|---|---|---|---|---|")
for s in (60, 70, 110, 82, 86, 90, 94, 98):
    m = json.load(open(f"{out}/s{s}_metrics.json"))
    print(row(f"axial {s} (PSNR {m['psnr']:.2f})", m["uncertainty"]))
for kind, suffix in (("as written", ""), ("x tuning factor", "_scaled")):
    us = [json.load(open(f"{out}/s{s}_metrics{suffix}.json"))["uncertainty"]["object"]
          for s in (82, 86, 90, 94, 98)]
    mean = lambda f: sum(f(u) for u in us) / len(us)
    c = [mean(lambda u, k=k: u["coverage"][k]) for k in range(3)]
    print(f"| held-out mean, {kind} | {mean(lambda u: u['ratio']):.2f} | "
          f"{c[0]:.3f} / {c[1]:.3f} / {c[2]:.3f} | {mean(lambda u: u['spearman']):.3f} | "
          f"{mean(lambda u: u['block_spearman']):.3f} |")
exp = json.load(open(f"{out}/s82_metrics.json"))["uncertainty"]["expected_coverage"]
print(f"| calibrated, 8 samples | 1 | {exp[0]:.3f} / {exp[1]:.3f} / {exp[2]:.3f} | | |")
EOF
