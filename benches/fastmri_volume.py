#!/usr/bin/env python3
"""The real-data path end to end on a fastMRI-layout volume built from held-out Colin27 slices:
`msm recon` (zero-filled, CG-SENSE) and `msm reconstruct` on the .h5 file, each scored by
`msm metrics` against the file's `reconstruction_rss`. Prints one markdown row per method.

The volume: axial slices 84, 88, 92, 96 (inside the held-out block 80..99), each simulated by
`msm simulate` (8 birdcage coils, R = 4 random column mask with 20 ACS lines, its own seed),
its reference and maps padded to 256 rows (a 2x oversampled readout; the maps by edge values),
fully sampled k-space plus complex noise of std `--noise` per real component, kept on the mask;
`reconstruction_rss` is the root sum of squares of the noisy full data, cropped to 128 x 128,
and the ISMRMRD header gives that recon size. No `mask` dataset: masks are detected per slice.

    python3 benches/fastmri_volume.py                 # the README's figures (session 28)
    python3 benches/fastmri_volume.py --keep DIR      # keep the files

Needs a release build (target/release/msm), numpy, h5py and mricron-data.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MSM = os.path.join(ROOT, "target", "release", "msm")
sys.path.insert(0, os.path.join(ROOT, "tests", "volume"))
from make_files import fft_c, header, ifft_c  # noqa: E402  (the test fixtures' helpers)
VOLUME = "/usr/share/mricron/templates/ch2.nii.gz"
SLICES = [84, 88, 92, 96]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return p.stdout


def build(folder, noise):

    rng = np.random.default_rng(0)
    ks, rss = [], []
    for s in SLICES:
        pre = os.path.join(folder, f"s{s}")
        run([MSM, "simulate", VOLUME, pre, "--slice", str(s), "--npy", "--seed", str(s),
             "--acs", "20"])
        ref, maps = np.load(pre + "_ref.npy"), np.load(pre + "_maps.npy")
        mask = np.load(pre + "_mask.npy") > 0
        full = fft_c(np.pad(maps, ((0, 0), (64, 64), (0, 0)), mode="edge")
                     * np.pad(ref, ((64, 64), (0, 0)))[None])
        full = full + noise * (rng.standard_normal(full.shape) + 1j * rng.standard_normal(full.shape))
        rss.append(np.sqrt((np.abs(ifft_c(full)) ** 2).sum(0))[64:192])
        ks.append(full * mask[None, None, :])
    path = os.path.join(folder, "colin.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=np.stack(ks).astype(np.complex64))
        f.create_dataset("ismrmrd_header", data=np.bytes_(header((256, 128), (128, 128)).encode()))
        f.create_dataset("reconstruction_rss", data=np.stack(rss).astype(np.float32))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--keep", help="folder to write the files into (default: a temporary one)")
    a = ap.parse_args()
    folder = a.keep or tempfile.mkdtemp()
    os.makedirs(folder, exist_ok=True)
    scan = build(folder, a.noise)
    out = lambda name: os.path.join(folder, name)
    runs = [
        ("zero-filled", [MSM, "recon", scan, out("zf.nii"), "--method", "zero-filled"]),
        ("CG-SENSE (10 iterations)", [MSM, "recon", scan, out("cg.nii"), "--iters", "10"]),
        ("MSM (K = 200, 1 sample, final DC 3, native-fast)",
         [MSM, "reconstruct", scan, out("msm.nii"), "--final-dc", "3", "--backend",
          "native-fast", "--quiet"]),
    ]
    print("| method | PSNR (dB) | SSIM |\n|---|---|---|")
    for name, cmd in runs:
        run(cmd)
        q = json.loads(run([MSM, "metrics", "--scale", "--json", scan, cmd[3]]))
        print(f"| {name} | {q['psnr']['mean']:.2f} | {q['ssim']['mean']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
