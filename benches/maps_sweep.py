#!/usr/bin/env python3
"""Coil-map sweep on tuning slices: how the maps every method reconstructs with (the
simulation's true birdcage maps, or ESPIRiT maps estimated from the ACS by `msm ecalib` with a
given kernel and crop) move CG-SENSE, BART l1-wavelet and, optionally, MSM.

Tuning slices are training slices of Colin27 (axial 60, 70 and 110 by default: outside the
held-out block 80..99), simulated by `msm simulate` (8 coils, R = 4 random Cartesian masks with
20 ACS lines, seed 1000 + slice; --noise adds measurement noise). Every setting is scored by
`msm metrics --scale` (PSNR / SSIM on magnitudes after the least-squares complex scaling onto
the reference, as `msm demo`). Prints one markdown row per map setting: the mean over slices.

    python3 benches/maps_sweep.py --crops 0,0.5,0.8,0.9 --true          # the crop table
    python3 benches/maps_sweep.py --kernels 4,5,6,7,8,9,10               # the kernel table
    python3 benches/maps_sweep.py --calibs 24,48,128 --cg-iters 100      # calibration region
    python3 benches/maps_sweep.py --kernels 6,8 --msm-final-dc 30,100,300  # with MSM

Needs a release build (target/release/msm), numpy, mricron-data and bart (for the BART column).
"""

import argparse
import itertools
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweep import MSM, ROOT, VOLUME, run  # noqa: E402


def score(prefix, image):
    q = json.loads(run([MSM, "metrics", "--scale", "--json", prefix + "_ref.cfl", image]).stdout)
    return q["psnr"], q["ssim"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--volume", default=VOLUME)
    ap.add_argument("--slices", default="60,70,110", help="axial slices (not 80..99)")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="measurement noise std of the simulated scans (image peak 1)")
    ap.add_argument("--kernels", default="6", help="ESPIRiT kernel sizes (msm ecalib -k)")
    ap.add_argument("--crops", default="0.8", help="ESPIRiT crop thresholds (msm ecalib -c)")
    ap.add_argument("--calibs", default="24",
                    help="largest sides of the calibration region (msm ecalib -r)")
    ap.add_argument("--true", action="store_true", help="also a row with the true maps")
    ap.add_argument("--cg-iters", default="50,100,200", help="CG-SENSE iteration counts")
    ap.add_argument("--bart", default="0.001:100",
                    help="BART pics lambda:iterations (empty: no BART column)")
    ap.add_argument("--msm-final-dc", default="",
                    help="MSM final-DC iteration counts (empty: no MSM columns)")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "msm-brain-128-noisy.onnx"))
    ap.add_argument("--steps", type=int, default=30, help="MSM sampling steps K")
    ap.add_argument("--samples", type=int, default=2, help="MSM posterior samples averaged")
    ap.add_argument("--seed", type=int, default=0, help="MSM sampler seed")
    a = ap.parse_args()
    slices = [int(s) for s in a.slices.split(",")]
    held_out = [s for s in slices if 80 <= s < 100]
    if held_out:
        sys.exit(f"slices {held_out} are held out for docs/results.md; tune on others")
    iters = [int(x) for x in a.cg_iters.split(",") if x]
    dcs = [int(x) for x in a.msm_final_dc.split(",") if x]
    settings = [("true", None, None, None)] if a.true else []
    settings += [(f"ESPIRiT k {k}, crop {c}, r {r}", k, c, r) for k, c, r in
                 itertools.product(a.kernels.split(","), a.crops.split(","), a.calibs.split(","))]
    columns = [f"CG {n}" for n in iters] + (["BART"] if a.bart else [])
    columns += [f"MSM final DC {dc}" for dc in dcs]
    print("| maps | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for s in slices:
            run([MSM, "simulate", a.volume, os.path.join(tmp, f"s{s}"), "--slice", str(s),
                 "--seed", str(1000 + s), "--noise", str(a.noise)])
        for name, kernel, crop, calib in settings:
            scores = {c: [] for c in columns}
            for s in slices:
                p = os.path.join(tmp, f"s{s}")
                maps = p + "_maps"
                if kernel is not None:
                    maps = p + "_espirit"
                    run([MSM, "ecalib", p + "_ksp.cfl", maps, "--mask", p + "_mask.cfl",
                         "--kernel", kernel, "--crop", crop, "--calib", calib])
                for n in iters:
                    run([MSM, "recon", p + "_ksp.cfl", maps + ".cfl", p + "_cg.npy", "--iters",
                         str(n), "--mask", p + "_mask.cfl"])
                    scores[f"CG {n}"].append(score(p, p + "_cg.npy"))
                if a.bart:
                    lam, n = a.bart.split(":")
                    run(["bart", "pics", "-i", n, "-R", f"W:7:0:{lam}", p + "_ksp", maps,
                         p + "_bart"])
                    scores["BART"].append(score(p, p + "_bart.cfl"))
                for dc in dcs:
                    run([MSM, "reconstruct", p + "_ksp.cfl", maps + ".cfl", p + "_msm.npy",
                         "--mask", p + "_mask.cfl", "--model", a.model, "--steps", str(a.steps),
                         "--samples", str(a.samples), "--final-dc", str(dc), "--seed",
                         str(a.seed), "--quiet"])
                    scores[f"MSM final DC {dc}"].append(score(p, p + "_msm.npy"))
            cells = [f"{np.mean([q[0] for q in v]):.2f} / {np.mean([q[1] for q in v]):.4f}"
                     for v in scores.values()]
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
