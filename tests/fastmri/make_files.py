"""Writes the HDF5 files that tests/fastmri_io.rs reads, with h5py, plus the reference numbers
as raw little-endian arrays (*.bin) computed with NumPy the way fastMRI does.

Usage: python3 make_files.py OUT_DIR
"""
import sys
import os

import h5py
import numpy as np

out = sys.argv[1]
rng = np.random.default_rng(7)


def path(name):
    return os.path.join(out, name)


def fft_c(x):
    """Centred orthonormal 2-D FFT over the last two axes."""
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), axes=ax, norm="ortho"), axes=ax)


def rss_fastmri(k):
    """fastMRI's image: per coil ifftshift -> ifft2 (ortho) -> fftshift, then RSS over coils."""
    ax = (-2, -1)
    im = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), axes=ax, norm="ortho"), axes=ax)
    return np.sqrt((np.abs(im) ** 2).sum(axis=-3))


def center_crop(x, shape):
    """fastMRI's center_crop."""
    h0 = (x.shape[-2] - shape[0]) // 2
    w0 = (x.shape[-1] - shape[1]) // 2
    return x[..., h0:h0 + shape[0], w0:w0 + shape[1]]


def kspace(slices, coils, h, w):
    """Multi-coil k-space of a smooth object with coil sensitivities, plus noise (complex128)."""
    y, x = np.mgrid[-1:1:h * 1j, -1:1:w * 1j]
    obj = ((x / 0.8) ** 2 + (y / 0.9) ** 2 < 0.8) * (1.0 + 0.4 * np.cos(5 * x + 2 * y))
    k = np.empty((slices, coils, h, w), np.complex128)
    for s in range(slices):
        for c in range(coils):
            a = 2 * np.pi * c / coils
            sens = np.exp(-((x - np.cos(a)) ** 2 + (y - np.sin(a)) ** 2)) * np.exp(1j * (a + 0.3 * s))
            k[s, c] = fft_c(obj * sens * (1.0 + 0.1 * s))
    k += 1e-3 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    return k


def header(enc, rec):
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <experimentalConditions><H1resonanceFrequency_Hz>63646310</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{enc[0]}</x><y>{enc[1]}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>210</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{rec[0]}</x><y>{rec[1]}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>4.5</z></fieldOfView_mm>
    </reconSpace>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>
"""


def column_mask(w, keep_every, acs):
    m = np.zeros(w, bool)
    m[::keep_every] = True
    c = w // 2
    m[c - acs // 2:c - acs // 2 + acs] = True
    return m


def save(name, array, dtype):
    np.ascontiguousarray(array, dtype=dtype).tofile(path(name))


# 1. fastMRI layout: (3 slices, 4 coils, 32 x 24), r/i compound (h5py complex64), header as a
#    fixed-length byte string (as fastMRI's files have it), float32 mask, reconstruction_rss.
S, C, H, W = 3, 4, 32, 24
REC = (20, 16)
mask = column_mask(W, 3, 4)
k = (kspace(S, C, H, W) * mask).astype(np.complex64)
rss = center_crop(rss_fastmri(k.astype(np.complex128)), REC).astype(np.float32)
with h5py.File(path("fastmri.h5"), "w") as f:
    f.create_dataset("kspace", data=k)
    f.create_dataset("ismrmrd_header", data=np.bytes_(header((H, W), REC).encode()))
    f.create_dataset("mask", data=mask.astype(np.float32))
    f.create_dataset("reconstruction_rss", data=rss)
    f.attrs["acquisition"] = "CORPD_FBK"
    f.attrs["max"] = float(rss.max())
save("fastmri_kspace.bin", k, "<c8")
save("fastmri_rss.bin", rss, "<f4")
save("fastmri_mask.bin", mask, "u1")

# 2. The same data gzip-compressed in chunks that do not line up with slices or coils
#    (hyperslab reads cross chunk borders), with shuffle, and a boolean mask (h5py's enum).
with h5py.File(path("gzip.h5"), "w") as f:
    f.create_dataset("kspace", data=k, chunks=(2, 3, 8, 7), compression="gzip",
                     compression_opts=6, shuffle=True)
    f.create_dataset("ismrmrd_header", data=header((H, W), REC))  # variable-length str
    f.create_dataset("mask", data=mask)
    f.create_dataset("reconstruction_rss", data=rss, chunks=(1, 10, 16), compression="gzip")

# 3. ISMRMRD-style compound {real, imag}, odd sizes (2 slices, 3 coils, 15 x 11), no mask
#    stored (columns of zeros to detect, a different set per slice), header without rss.
S2, C2, H2, W2 = 2, 3, 15, 11
k2 = kspace(S2, C2, H2, W2)
masks2 = np.stack([column_mask(W2, 2, 3), column_mask(W2, 3, 3)])
k2 = k2 * masks2[:, None, None, :]
comp = np.dtype([("real", "<f4"), ("imag", "<f4")])
k2_struct = np.empty(k2.shape, comp)
k2_struct["real"] = k2.real
k2_struct["imag"] = k2.imag
with h5py.File(path("ismrmrd.h5"), "w") as f:
    f.create_dataset("kspace", data=k2_struct)
    f.create_dataset("ismrmrd_header", data=np.bytes_(header((H2, W2), (9, 7)).encode()))
k2_64 = k2.astype(np.complex64)
save("ismrmrd_kspace.bin", k2_64, "<c8")
save("ismrmrd_masks.bin", masks2, "u1")
save("ismrmrd_ref.bin", center_crop(rss_fastmri(k2_64.astype(np.complex128)), (9, 7)), "<f4")

# 4. Big-endian complex128 (h5py writes a compound r/i of float64), fastMRI single-coil layout
#    (slices, height, width); read as complex64 like NumPy's astype.
k3 = kspace(2, 1, 8, 6)[:, 0]
with h5py.File(path("single_be64.h5"), "w") as f:
    f.create_dataset("kspace", data=k3.astype(">c16"))
save("single_kspace.bin", k3.astype(np.complex64), "<c8")

# 5. Bad input.
with h5py.File(path("no_kspace.h5"), "w") as f:
    f.create_dataset("image", data=np.zeros((2, 4, 4), np.float32))
    f.create_dataset("ismrmrd_header", data=np.bytes_(header((4, 4), (4, 4)).encode()))
with h5py.File(path("real_kspace.h5"), "w") as f:
    f.create_dataset("kspace", data=np.ones((2, 4, 8, 8), np.float32))
with h5py.File(path("zero_coils.h5"), "w") as f:
    f.create_dataset("kspace", data=np.zeros((2, 0, 8, 8), np.complex64))
with h5py.File(path("bad_header.h5"), "w") as f:
    f.create_dataset("kspace", data=k[:1])
    f.create_dataset("ismrmrd_header", data=np.bytes_(b"<ismrmrdHeader><encoding><encodedSpace>"))
with h5py.File(path("wrong_fields.h5"), "w") as f:
    f.create_dataset("kspace", data=np.zeros((1, 2, 4, 4), np.dtype([("a", "<f4"), ("b", "<f4")])))
with h5py.File(path("int_fields.h5"), "w") as f:
    f.create_dataset("kspace", data=np.zeros((1, 2, 4, 4), np.dtype([("r", "<i4"), ("i", "<i4")])))
with h5py.File(path("two_d.h5"), "w") as f:
    f.create_dataset("kspace", data=np.zeros((8, 8), np.complex64))
with h5py.File(path("mask_length.h5"), "w") as f:
    f.create_dataset("kspace", data=k[:1])
    f.create_dataset("mask", data=np.ones(W + 1, np.float32))
with h5py.File(path("mask_empty.h5"), "w") as f:
    f.create_dataset("kspace", data=k[:1])
    f.create_dataset("mask", data=np.zeros(W, np.uint8))
with h5py.File(path("rss_slices.h5"), "w") as f:
    f.create_dataset("kspace", data=k)
    f.create_dataset("reconstruction_rss", data=rss[:2])
nan = k[:1].copy()
nan[0, 2, 5, 7] = np.nan
with h5py.File(path("nan.h5"), "w") as f:
    f.create_dataset("kspace", data=nan)
    bad_rss = rss[:1].copy()
    bad_rss[0, 3, 4] = np.inf
    f.create_dataset("reconstruction_rss", data=bad_rss)
with open(path("fastmri.h5"), "rb") as f:
    whole = f.read()
with open(path("truncated.h5"), "wb") as f:
    f.write(whole[: len(whole) // 2])
# kspace alone, cut two thirds into its data: the metadata is intact, the last slice is not.
with h5py.File(path("data_cut.h5"), "w") as f:
    f.create_dataset("kspace", data=k)
    end = f["kspace"].id.get_offset() + 2 * k.nbytes // 3
with open(path("data_cut.h5"), "rb") as f:
    whole = f.read()
with open(path("data_cut.h5"), "wb") as f:
    f.write(whole[:end])
with open(path("text.h5"), "w") as f:
    f.write("this is not an HDF5 file\n")
open(path("empty.h5"), "wb").close()
