#!/usr/bin/env python3
"""A dynamic series end to end: ISMRMRD raw data of several repetitions, its noise scan in a
file of its own (Gadgetron's noise dependency), reconstructed in one command per method with
`--repetition all --noise FILE`, and scored per repetition and as the mean of the
repetitions.

The series: held-out Colin27 axial slices 84 and 92 (`msm simulate`: 8 birdcage coils, smooth
random phase; its reference and maps), 4 repetitions of the same object, each with its own R = 4
random column mask (20 central ACS columns, the rest drawn per repetition, as dynamic scans
vary the pattern) and its own noise of std 0.01 shared by neighbouring receive channels
(`benches/prewhitening.py`'s coupling; covariance condition number 13). The noise scan (4096
samples) is the only acquisition of `noise.h5`; `series.h5` holds no noise line.

Prewhitening weights the combined image by the whitened sensitivities' norm |W C(r)|, so each
image is scored against the reference with that weighting (as in `benches/prewhitening.py`):
PSNR on magnitudes after a least-squares complex scale (`benches/sweep.py`'s `psnr`).

    python3 benches/series.py             # the README's table (session 31)
    python3 benches/series.py --keep DIR  # keep the files

Needs a release build (target/release/msm), numpy, h5py and mricron-data.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The prewhitening bench's paths, test helpers (the ISMRMRD acquisition layout, the centred
# FFT, the header) and channel coupling.
from prewhitening import MSM, VOLUME, coupling, fft_c, header, make_raw, psnr  # noqa: E402

SLICES = [84, 92]


def run(*args):
    t = time.time()
    p = subprocess.run([MSM, *args], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: msm {' '.join(args)}\n{p.stderr[-2000:]}")
    return time.time() - t


def build(folder, reps, sigma):
    """Writes series.h5 and noise.h5; returns the weighted references (slices, H, W)."""
    rng = np.random.default_rng(31)
    refs, recs = [], []
    for k, sl in enumerate(SLICES):
        pre = os.path.join(folder, f"s{sl}")
        run("simulate", VOLUME, pre, "--slice", str(sl), "--npy", "--seed", str(sl),
            "--acs", "20")
        ref, maps = np.load(pre + "_ref.npy"), np.load(pre + "_maps.npy")
        c, h, w = maps.shape
        a = coupling(c)
        psi = a @ a.conj().T
        whiten = np.linalg.inv(np.linalg.cholesky(psi / (np.trace(psi).real / c)))
        weight = np.sqrt((np.abs(np.einsum("ab,bhw->ahw", whiten, maps)) ** 2).sum(0))
        refs.append(ref * weight)
        full = fft_c(maps * ref[None])
        acs = np.arange(w // 2 - 10, w // 2 + 10)
        for r in range(reps):
            others = rng.choice(np.setdiff1d(np.arange(w), acs), w // 4 - len(acs), replace=False)
            lines = np.sort(np.concatenate([acs, others]))
            noise = sigma * (a @ (rng.standard_normal((c, h * w))
                                  + 1j * rng.standard_normal((c, h * w)))).reshape(c, h, w)
            noisy = full + noise
            recs += [make_raw.acquisition(noisy[:, :, e1], int(e1), k, repetition=r)
                     for e1 in lines]
    xml = header((h, w), (h, w)).replace(
        "</encoding>",
        f"<encodingLimits><kspace_encoding_step_1><center>{w // 2}</center>"
        "</kspace_encoding_step_1></encodingLimits></encoding>")
    make_raw.write(os.path.join(folder, "series.h5"), recs, xml=xml)
    scan = sigma * a @ (rng.standard_normal((c, 4096)) + 1j * rng.standard_normal((c, 4096)))
    make_raw.write(os.path.join(folder, "noise.h5"),
                   [make_raw.acquisition(scan, flags=make_raw.flag(19))], xml=xml)
    return refs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--keep", help="folder to write the files into (default: a temporary one)")
    a = ap.parse_args()
    folder = a.keep or tempfile.mkdtemp()
    os.makedirs(folder, exist_ok=True)
    refs = build(folder, a.reps, a.noise)
    scan, noise = os.path.join(folder, "series.h5"), os.path.join(folder, "noise.h5")
    print(f"| method | one repetition, PSNR (dB), mean (std) over {a.reps} x {len(SLICES)} "
          f"| mean of the {a.reps} repetitions, PSNR (dB) | seconds |\n|---|---|---|---|")
    for name, args in (
            ("zero-filled", ["recon", "--method", "zero-filled"]),
            ("CG-SENSE (10 iterations)", ["recon", "--iters", "10"]),
            ("MSM (K = 200, 1 sample, final DC 3)",
             ["reconstruct", "--final-dc", "3", "--quiet"])):
        out = os.path.join(folder, f"{args[0]}_{args[-1]}.npy")
        secs = run(args[0], scan, out, "--repetition", "all", "--noise", noise, *args[1:])
        images = np.load(out)  # (repetitions, slices, H, W)
        single = [psnr(refs[k], images[r, k]) for r in range(a.reps) for k in range(len(SLICES))]
        mean = [psnr(refs[k], images[:, k].mean(0)) for k in range(len(SLICES))]
        print(f"| {name} | {np.mean(single):.2f} ({np.std(single):.2f}) | {np.mean(mean):.2f} "
              f"| {secs:.0f} |", flush=True)


if __name__ == "__main__":
    main()
