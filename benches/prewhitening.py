#!/usr/bin/env python3
"""Prewhitening ISMRMRD raw data with its noise scan, measured: two held-out Colin27 slices
(84, 92) simulated by `msm simulate` (8 birdcage coils, R = 4 with 20 ACS lines), with noise
of std 0.01 shared by neighbouring receive channels (noise A z: channel levels 1 to 1.44,
each channel carrying 0.7 of its neighbour's noise; covariance condition number 13), written
as ISMRMRD raw data with a noise scan of 4096 samples (the reader prewhitens) and as a
fastMRI-layout file of the same, unwhitened k-space. Both are reconstructed with ESPIRiT maps
per slice by `msm recon --iters 10` (CG-SENSE) and `msm reconstruct --final-dc 3
--backend native-fast` (MSM, K = 200, 1 sample).

Prewhitening weights the combined image by the whitened sensitivities' norm |W C(r)| (here
0.96 to 1.62 across the field of view; Gadgetron's images carry the same weighting), so each
reconstruction is scored (PSNR, magnitude, least-squares scale) against the reference with
its own weighting: the plain reference for the unwhitened file (the simulation's maps have
sum |C|^2 = 1), the reference times |W C| for the prewhitened one. The last column scores the
prewhitened images against the plain reference: the weighting alone costs that much against
an unweighted reference such as fastMRI's RSS.

    python3 benches/prewhitening.py          # the README's table (session 29)

Needs a release build (target/release/msm), numpy, h5py and mricron-data.
"""

import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MSM = os.path.join(ROOT, "target", "release", "msm")
sys.path.insert(0, os.path.join(ROOT, "tests", "ismrmrd"))
sys.path.insert(0, os.path.join(ROOT, "tests", "volume"))
sys.path.insert(0, os.path.join(ROOT, "benches"))
import make_raw  # noqa: E402  (the ISMRMRD acquisition layout of the tests)
from make_files import fft_c, header  # noqa: E402
from sweep import psnr  # noqa: E402

VOLUME = "/usr/share/mricron/templates/ch2.nii.gz"


def run(*args):
    p = subprocess.run([MSM, *args], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: msm {' '.join(args)}\n{p.stderr[-2000:]}")


def coupling(c):
    a = np.diag(1.0 + 0.5 * np.arange(c) / c).astype(complex)
    for k in range(c - 1):
        a[k + 1, k] = 0.7 * np.exp(1j * k)
    return a


def write_files(folder, sl, sigma=0.01):
    """The raw and the plain file of slice `sl`; returns the reference, the true maps and the
    whitening of the true covariance."""
    pre = os.path.join(folder, f"s{sl}")
    run("simulate", VOLUME, pre, "--slice", str(sl), "--npy", "--seed", str(sl), "--acs", "20")
    ref, maps = np.load(pre + "_ref.npy"), np.load(pre + "_maps.npy")
    mask = np.load(pre + "_mask.npy") > 0
    c, h, w = maps.shape
    rng = np.random.default_rng(sl)
    a = coupling(c)
    white = lambda n: rng.standard_normal((c, n)) + 1j * rng.standard_normal((c, n))  # noqa: E731
    noisy = fft_c(maps * ref[None]) + sigma * (a @ white(h * w)).reshape(c, h, w)
    recs = [make_raw.acquisition(sigma * a @ white(4096), flags=make_raw.flag(19))]
    recs += [make_raw.acquisition(noisy[:, :, e1], int(e1), 0) for e1 in np.flatnonzero(mask)]
    arr = np.empty(len(recs), make_raw.ACQ)
    for i, r in enumerate(recs):
        arr[i] = r
    xml = header((h, w), (h, w)).replace(
        "</encoding>",
        f"<encodingLimits><kspace_encoding_step_1><center>{w // 2}</center>"
        "</kspace_encoding_step_1></encodingLimits></encoding>")
    with h5py.File(pre + "_raw.h5", "w") as f:
        g = f.create_group("dataset")
        g.create_dataset("xml", data=np.array([xml], dtype=h5py.string_dtype()))
        g.create_dataset("data", data=arr)
    with h5py.File(pre + "_plain.h5", "w") as f:
        f.create_dataset("kspace", data=(noisy * mask)[None].astype(np.complex64))
        f.create_dataset("ismrmrd_header", data=np.bytes_(header((h, w), (h, w)).encode()))
    psi = a @ a.conj().T
    whiten = np.linalg.inv(np.linalg.cholesky(psi / (np.trace(psi).real / c)))
    return pre, ref, maps, whiten


def main():
    folder = tempfile.mkdtemp()
    print("| slice | method | unwhitened (plain reference) | prewhitened (weighted reference) "
          "| prewhitened (plain reference) |\n|---|---|---|---|---|")
    for sl in (84, 92):
        pre, ref, maps, whiten = write_files(folder, sl)
        weight = np.sqrt((np.abs(np.einsum("ab,bhw->ahw", whiten, maps)) ** 2).sum(0))
        for method, args in (("CG-SENSE (10 iterations)", ["recon", "--iters", "10"]),
                             ("MSM (K = 200, 1 sample)", ["reconstruct", "--final-dc", "3",
                                                           "--backend", "native-fast", "--quiet"])):
            images = {}
            for name in ("plain", "raw"):
                out = f"{pre}_{name}_{args[0]}.npy"
                run(args[0], f"{pre}_{name}.h5", out, *args[1:])
                images[name] = np.load(out)[0]
            print(f"| {sl} | {method} | {psnr(ref, images['plain']):.2f} | "
                  f"{psnr(ref * weight, images['raw']):.2f} | {psnr(ref, images['raw']):.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
