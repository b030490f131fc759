#!/usr/bin/env bash
# Reproduces every number in docs/results.md: `msm demo` over the held-out Colin27 slices
# (axial 80..99, never seen in training) at R = 4, 6 and 8 with the R = 4 model, then PSNR
# against the steps K and the partial scores w, and sequential against parallel mode.
# Needs mricron-data and bart (sudo apt-get install -y mricron-data bart) and a release build.
# Usage: [BACKEND=native-bf16] [ONLY="r4 r6 ..."] bash docs/results.sh [OUT_DIR]
# (ONLY: run just the named settings.)
# Every setting: about 4.5 hours on 2 cores with native-fast (the noisy-data prior's K = 200 runs
# and 8-sample means are most of it); docs/results.md says which executor made each table. A
# setting whose OUT_DIR/NAME/results.md exists from an earlier run is kept, so an interrupted
# run continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-msm-results}
MSM=${MSM:-./target/release/msm}
K=${K:-50}
BACKEND=${BACKEND:-auto}
# The settings below name their model: the noiseless prior (the default model until session 22)
# or the noisy-data prior (the default since).
NOISELESS=models/msm-brain-128.onnx
NOISY=models/msm-brain-128-noisy.onnx
mkdir -p "$OUT"

run() { # name, then demo options
    local name=$1
    shift
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then
        return
    fi
    if [ -e "$OUT/$name/results.md" ]; then # finished in an earlier run of this script
        echo "== $name: kept from an earlier run ($OUT/$name)" >&2
        return
    fi
    echo "== $name: msm demo $*" >&2
    "$MSM" demo --quiet --backend "$BACKEND" --out "$OUT/$name" "$@" > /dev/null
}

# The main table: 20 held-out slices, R = 4, every method. CG-SENSE's iterations and BART's
# lambda and iterations are chosen on the first slice (demo's sweeps), MSM's settings on the
# tuning slices (benches/sweep.py).
run r4 --model "$NOISELESS" --slices 20 --accel 4 --steps "$K" --samples 1 --final-dc 10
# The same scans, MSM with 1000 CG iterations of final data consistency: on noiseless scans
# the tuning slices gain up to there (benches/sweep.py --final-dc 100,300,1000).
run r4-dc1000 --model "$NOISELESS" --slices 20 --accel 4 \
    --steps "$K" --samples 1 --final-dc 1000 --no-bart
# The same noiseless scans with the prior trained on noisy measurements (11600 fine-tuning
# steps on top of the noiseless prior's 10000) at its settings (K = 200, its msm.recon_eta 1):
# on the tuning slices it beats the noiseless prior by 1.36 dB at final DC 10 (9 of 9) and
# reaches 28.57 dB at final DC 1000 (benches/sweep.py --model models/msm-brain-128-noisy.onnx
# --steps 200 --etas 1.0 --final-dc 1000 --seeds 0,1,2).
run r4-noisy-prior-dc1000 --model "$NOISY" --slices 20 --accel 4 \
    --steps 200 --samples 1 --final-dc 1000
run r4-noisy-prior --model "$NOISY" --slices 20 --accel 4 \
    --steps 200 --samples 1 --final-dc 10 --no-bart
# r4-noisy-prior-dc1000 with MSM's output the mean of 8 posterior samples, each with final
# DC 1000: on the tuning slices the mean of 4 gains 0.74 dB over 1 sample, 9 of 9
# (benches/sweep.py --model "$NOISY" --steps 200 --etas 1.0 --final-dc 1000 --samples 1,4
# --seeds 0,1,2).
run r4-noisy-prior-dc1000-s8 --model "$NOISY" --slices 20 --accel 4 \
    --steps 200 --samples 8 --final-dc 1000
# `msm demo`'s own MSM settings since session 23 (K = 30, 2 samples, final DC 1000 on noiseless
# scans; the executor is this script's BACKEND): the quick look, on all 20 slices.
run r4-demo-default --model "$NOISY" --slices 20 --accel 4 --steps 30 --samples 2 \
    --final-dc 1000 --no-bart
# The demo's K = 30 with the mean of 8 samples (session 24; chosen on the tuning slices, where at
# final DC 1000 the number of samples moves PSNR more than K): a quarter of the K = 200 cost.
# Its table also has every method's SSIM over the object only (column "SSIM (object)").
run r4-k30-s8 --model "$NOISY" --slices 20 --accel 4 --steps 30 --samples 8 \
    --final-dc 1000
# Every method with ESPIRiT maps estimated from each scan's 20 ACS lines (BART ecalib's defaults,
# crop 0.8), as on real scans, instead of the simulation's true maps (session 25). The maps' error
# acts as noise: CG-SENSE semi-converges (its iterations are chosen on the first slice as always)
# and MSM's final DC is 100 (the tuning slices' best of 10, 30, 100, 300; benches/sweep.py
# --maps espirit). Then the same with the mean of 8 samples.
run r4-espirit --model "$NOISY" --slices 20 --accel 4 --steps 30 --samples 2 \
    --final-dc 100 --maps-method espirit
run r4-espirit-s8 --model "$NOISY" --slices 20 --accel 4 --steps 30 --samples 8 \
    --final-dc 100 --maps-method espirit
# Noisy scans (std 0.01) with the demo's K = 30 and 2 samples (final DC 3, the noisy-scan pick),
# with the true maps and with ESPIRiT maps.
run r4-noise-k30 --model "$NOISY" --slices 20 --accel 4 --noise 0.01 --steps 30 --samples 2 \
    --final-dc 3
run r4-noise-espirit --model "$NOISY" --slices 20 --accel 4 --noise 0.01 --steps 30 \
    --samples 2 --final-dc 3 --maps-method espirit
# Noisy scans (std 0.01 per real component, image peak 1): CG-SENSE semi-converges, and MSM's
# final DC is 3 iterations (the tuning slices' best of 0, 3, 10, 30 at this noise).
run r4-noise --model "$NOISELESS" --slices 20 --accel 4 --noise 0.01 \
    --steps "$K" --samples 1 --final-dc 3
# The same noisy scans with the prior fine-tuned on noisy measurements (its own card), MSM's
# settings unchanged (eta 0.85 given explicitly: the model now carries msm.recon_eta = 1).
run r4-noise-model --model "$NOISY" --slices 20 --accel 4 --noise 0.01 \
    --steps "$K" --eta 0.85 --samples 1 --final-dc 3 --no-bart
# The same, MSM's output the mean of 8 posterior samples (the tuning slices' best of 1, 4, 8:
# benches/sweep.py --samples 1,4 and --samples 8 with --seeds 0,1,2; docs/results.md).
run r4-noise-model-s8 --model "$NOISY" --slices 20 --accel 4 --noise 0.01 \
    --steps "$K" --eta 0.85 --samples 8 --final-dc 3 --no-bart
# The noisy-data prior at the reference's K = 200 (the tuning slices, benches/sweep.py --steps
# 50,100,200 --noise 0.01 --final-dc 3 --seeds 0,1,2: +0.5 dB over K = 50 at 1 sample).
run r4-noise-model-k200 --model "$NOISY" --slices 20 --accel 4 \
    --noise 0.01 --steps 200 --eta 0.85 --samples 1 --final-dc 3 --no-bart
run r4-noise-model-k200-s8 --model "$NOISY" --slices 20 --accel 4 \
    --noise 0.01 --steps 200 --eta 0.85 --samples 8 --final-dc 3 --no-bart
# And with DDIM eta 1 (the tuning slices at K = 200: +0.10 dB over 0.85 on 9 of 9 slice-seed
# pairs; benches/sweep.py --steps 200 --etas 1.0 --noise 0.01 --final-dc 3 --seeds 0,1,2).
run r4-noise-model-k200-eta1 --model "$NOISY" --slices 20 --accel 4 \
    --noise 0.01 --steps 200 --eta 1 --samples 1 --final-dc 3 --no-bart
run r4-noise-model-k200-eta1-s8 --model "$NOISY" --slices 20 --accel 4 \
    --noise 0.01 --steps 200 --eta 1 --samples 8 --final-dc 3 --no-bart
# Scans undersampled along both axes (random entries around a 20 x 20 ACS square, like the
# ky-kz planes of a 3-D scan), noisy, 5 slices: the noisy-data prior with its column partial
# masks; final DC 3 is the tuning slice's pick (docs/results.md, "Scans undersampled along both
# axes"; the 2-D fine-tune compared there is not shipped).
run r4-2d-noise --model "$NOISY" --slices 5 --accel 4 --pattern random-2d --noise 0.01 \
    --steps 200 --samples 2 --final-dc 3
# The same with variable-density 2-D masks (density (1 - r)^2; docs/results.md, "Variable-density
# 2-D masks"; the variable-density fine-tune compared there is not shipped).
run r4-vd-noise --model "$NOISY" --slices 5 --accel 4 --pattern variable-density-2d \
    --noise 0.01 --steps 200 --samples 2 --final-dc 3
# The same density drawn as a Poisson disc (docs/results.md, "Poisson-disc 2-D masks").
run r4-pd-noise --model "$NOISY" --slices 5 --accel 4 --pattern poisson-disc-2d \
    --noise 0.01 --steps 200 --samples 2 --final-dc 3
# The calibration of MSM's uncertainty maps (docs/results.md, "Is the uncertainty map
# calibrated?"; the demo's second table): the best noisy setting with 8 and with 2 samples,
# the latter also without final data consistency, and the noiseless scans at K = 30, 8 samples.
run unc-noise-s8 --model "$NOISY" --slices 5 --accel 4 --noise 0.01 --steps 200 --samples 8 \
    --final-dc 3 --no-bart
run unc-noise-s2 --model "$NOISY" --slices 5 --accel 4 --noise 0.01 --steps 200 --samples 2 \
    --final-dc 3 --no-bart
run unc-noise-s2-dc0 --model "$NOISY" --slices 5 --accel 4 --noise 0.01 --steps 200 \
    --samples 2 --final-dc 0 --no-bart
run unc-k30-s8 --model "$NOISY" --slices 5 --accel 4 --steps 30 --samples 8 --final-dc 1000 \
    --no-bart
# The R = 4 model at higher accelerations (BART's lambda re-chosen on the first slice).
run r6 --model "$NOISELESS" --slices 20 --accel 6 --steps "$K" --samples 1 --final-dc 10
# R = 8 keeps 16 of 128 columns, fewer than the 20 ACS lines used above: 10 ACS lines (the
# training masks' count) there.
run r8 --model "$NOISELESS" --slices 20 --accel 8 --acs 10 --steps "$K" --samples 1 \
    --final-dc 10
# The noisy-data prior (the default model since session 22) at R = 6 and R = 8, at its K = 200
# and eta 1, final DC 10 (as the noiseless prior's rows above) and 1000 (its best at R = 4).
run r6-noisy-prior --model "$NOISY" --slices 20 --accel 6 --steps 200 --samples 1 \
    --final-dc 10 --no-bart
run r8-noisy-prior --model "$NOISY" --slices 20 --accel 8 --acs 10 --steps 200 --samples 1 \
    --final-dc 10 --no-bart
run r6-noisy-prior-dc1000 --model "$NOISY" --slices 20 --accel 6 --steps 200 --samples 1 \
    --final-dc 1000 --no-bart
run r8-noisy-prior-dc1000 --model "$NOISY" --slices 20 --accel 8 --acs 10 --steps 200 \
    --samples 1 --final-dc 1000 --no-bart
# R = 6 at the final DC the tuning slices pick there (100: +0.42 dB over 10, 9 of 9;
# benches/sweep.py --model "$NOISY" --accel 6 --steps 200 --final-dc 10,100,1000 --seeds 0,1,2).
run r6-noisy-prior-dc100 --model "$NOISY" --slices 20 --accel 6 --steps 200 --samples 1 \
    --final-dc 100 --no-bart
# The posterior mean of 4 samples at K = 20 (the sweep on tuning slices: +0.5 dB over 1 sample).
run r4-k20-s4 --model "$NOISELESS" --slices 20 --accel 4 --steps 20 --samples 4 \
    --final-dc 10 --no-bart
# PSNR against K and w, sequential against parallel, final data consistency (5 slices, R = 4).
for k in 10 25 50 100 200; do
    run k$k --model "$NOISELESS" --slices 5 --accel 4 --steps $k --samples 1 \
        --final-dc 10 --no-bart
done
for w in 1 2 3 4; do
    run w$w --model "$NOISELESS" --slices 5 --accel 4 \
        --steps "$K" --partials $w --samples 1 --final-dc 10 --no-bart
done
run sequential --model "$NOISELESS" --slices 5 --accel 4 \
    --steps "$K" --samples 1 --final-dc 10 --no-bart --mode sequential
for dc in 0 10; do
    run dc$dc --model "$NOISELESS" --slices 5 --accel 4 \
        --steps "$K" --samples 1 --no-bart --final-dc $dc
done
# The same for the noisy-data prior: K at w = 3, and w and sequential mode at its K = 200.
for k in 10 25 50 100 200; do
    run noisy-prior-k$k --model "$NOISY" --slices 5 --accel 4 --steps $k --samples 1 \
        --final-dc 10 --no-bart
done
for w in 1 2 4; do
    run noisy-prior-w$w --model "$NOISY" --slices 5 --accel 4 --steps 200 --partials $w \
        --samples 1 --final-dc 10 --no-bart
done
run noisy-prior-sequential --model "$NOISY" --slices 5 --accel 4 --steps 200 --samples 1 \
    --final-dc 10 --no-bart --mode sequential

# Collect the mean rows.
for d in "$OUT"/*/; do
    name=$(basename "$d")
    echo "### $name"
    awk '/Mean \(std\)/{f=1} /MSM uncertainty/{f=0} f && /^\|/' "$d/results.md"
    # The uncertainty maps' calibration (runs of several samples): the mean and calibrated rows.
    awk '/MSM uncertainty/{f=1} f && /^\| (mean|calibrated)/' "$d/results.md"
    echo
done
