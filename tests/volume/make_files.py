"""Writes the fastMRI-layout HDF5 files that tests/cli_volume.rs reconstructs, with h5py.

Usage: python3 make_files.py OUT_DIR

Its helpers (centred FFTs, the ISMRMRD header) are also imported by
benches/fastmri_volume.py.
"""
import os
import sys

import h5py
import numpy as np

out = None  # the output folder, set by main()


def path(name):
    return os.path.join(out, name)


def fft_c(x):
    """Centred orthonormal 2-D FFT over the last two axes."""
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), axes=ax, norm="ortho"), axes=ax)


def ifft_c(k):
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), axes=ax, norm="ortho"), axes=ax)


def center_crop(x, shape):
    h0 = (x.shape[-2] - shape[0]) // 2
    w0 = (x.shape[-1] - shape[1]) // 2
    return x[..., h0:h0 + shape[0], w0:w0 + shape[1]]


def kspace(slices, coils, h, w, fov_h):
    """Fully sampled multi-coil k-space (complex128) of an object that changes from slice to
    slice, inside the central fov_h rows (the readout is oversampled outside them)."""
    y = (np.arange(h) - h / 2) / (fov_h / 2)
    x = (np.arange(w) - w / 2) / (w / 2)
    y, x = np.meshgrid(y, x, indexing="ij")
    k = np.empty((slices, coils, h, w), np.complex128)
    for s in range(slices):
        a, b = 0.55 + 0.05 * s, 0.7 - 0.04 * s
        obj = ((x - 0.05 * s) ** 2 / a ** 2 + y ** 2 / b ** 2 < 1.0) * (1.0 + 0.5 * np.cos(3 * x + s * y))
        obj = obj * np.exp(1j * 0.4 * x)
        for c in range(coils):
            t = 2 * np.pi * c / coils
            sens = np.exp(-((x - 1.2 * np.cos(t)) ** 2 + (y - 1.2 * np.sin(t)) ** 2) / 2.0) * np.exp(1j * t)
            k[s, c] = fft_c(obj * sens)
    return k


def header(enc, rec):
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <encoding>
    <encodedSpace><matrixSize><x>{enc[0]}</x><y>{enc[1]}</y><z>1</z></matrixSize></encodedSpace>
    <reconSpace><matrixSize><x>{rec[0]}</x><y>{rec[1]}</y><z>1</z></matrixSize></reconSpace>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>
"""


def column_mask(w, every, acs):
    m = np.zeros(w, bool)
    m[::every] = True
    m[w // 2 - acs // 2:w // 2 - acs // 2 + acs] = True
    return m


def write(name, k, mask=None, hdr=None, rss=None):
    with h5py.File(path(name), "w") as f:
        f.create_dataset("kspace", data=k.astype(np.complex64))
        if hdr is not None:
            f.create_dataset("ismrmrd_header", data=np.bytes_(hdr.encode()))
        if mask is not None:
            f.create_dataset("mask", data=mask.astype(np.float32))
        if rss is not None:
            f.create_dataset("reconstruction_rss", data=rss.astype(np.float32))


def main():
    global out
    out = sys.argv[1]
    rng = np.random.default_rng(11)

    # The scan: 6 slices, 4 coils, 40 x 32 k-space (readout oversampled: recon 32 x 32), 10 ACS
    # columns plus every 3rd, `mask` stored; reconstruction_rss from the fully sampled data.
    S, C, H, W = 6, 4, 40, 32
    full = kspace(S, C, H, W, 32)
    full += 1e-4 * (rng.standard_normal(full.shape) + 1j * rng.standard_normal(full.shape))
    mask = column_mask(W, 3, 10)
    rss = center_crop(np.sqrt((np.abs(ifft_c(full)) ** 2).sum(axis=1)), (32, 32))
    write("scan.h5", full * mask, mask=mask, hdr=header((H, W), (32, 32)), rss=rss)

    # No header, no mask (detected per slice, a different one for each slice), 32 x 32.
    plain = kspace(2, 3, 32, 32, 32)
    masks = np.stack([column_mask(32, 2, 10), column_mask(32, 4, 10)])
    write("plain.h5", plain * masks[:, None, None, :])

    # Bad input.
    with h5py.File(path("no_kspace.h5"), "w") as f:
        f.create_dataset("image", data=np.zeros((2, 32, 32), np.float32))
    with h5py.File(path("real_kspace.h5"), "w") as f:
        f.create_dataset("kspace", data=np.ones((2, 4, 32, 32), np.float32))
    with h5py.File(path("zero_coils.h5"), "w") as f:
        f.create_dataset("kspace", data=np.zeros((2, 0, 32, 32), np.complex64))
    write("bad_header.h5", plain * masks[:, None, None, :],
          hdr="<ismrmrdHeader><encoding><encodedSpace>")
    # Only 4 ACS columns: too few for the 6 x 6 ESPIRiT kernel.
    write("small_acs.h5", plain * column_mask(32, 4, 4), mask=column_mask(32, 4, 4))
    # Grids the 32 x 32 model cannot take: 30 wide; 48 rows with no recon size to crop to.
    write("wide.h5", kspace(1, 3, 32, 30, 32) * column_mask(30, 2, 10))
    write("tall.h5", kspace(1, 3, 48, 32, 32) * column_mask(32, 2, 10))


if __name__ == "__main__":
    main()
