#!/usr/bin/env python3
"""ISMRMRD raw-data test files (the HDF5 layout siemens_to_ismrmrd and Gadgetron write):
`/dataset/xml` and `/dataset/data`, one acquisition per readout line with ISMRMRD's 340-byte
AcquisitionHeader, written with h5py into the folder given as the only argument.

raw.h5: 2 slices, 3 coils, 16 x 12 encoded matrix (recon 8 x 12), lines 0, 2, 4..7, 9, 11 of
each slice (5 and 6 flagged as parallel calibration, the first and last flagged first and last
in slice, as scanners mark them; line 9 with 2 samples to discard at each end), line 4 of slice 1 acquired twice (an average), one noise
measurement and one navigator first. raw_expected.npy holds the k-space the
reader must assemble (slices, coils, 16, 12), prewhitened with the noise scan of coupled
channels (NumPy's Cholesky), raw_noise.npy the noise std per real component it leaves.
raw_as_fastmri.h5: the expected (whitened) k-space in fastMRI's layout with the same header.
raw_nonoise.h5 and raw_noise_dep.h5: its imaging lines and its noise scan apart.
raw_contrast.h5: the same with one line of contrast 1; raw_reversed.h5 with one reversed (EPI)
line; raw_encodings.h5 with one line of a second encoding (encoding_space_ref 1).
raw_offcentre.h5: centre counter 10, so line 11 falls outside the 12 columns. raw_multi.h5: two
repetitions, raw_series.h5 two contrasts of each (write_multi); raw_3d.h5: a 3-D encoding
(write_3d); raw_separate.h5: a separate reference scan (write_separate); raw_kykz*.h5 and
raw_kz.h5: 3-D encodings undersampled along both phase encodes or the partitions (write_kykz,
write_kykz_square).
"""
import os
import sys

import h5py
import numpy as np

ENC = np.dtype([(n, "<u2") for n in ["kspace_encode_step_1", "kspace_encode_step_2", "average", "slice",
                                     "contrast", "phase", "repetition", "set", "segment"]]
               + [("user", "<u2", (8,))])
HEAD = np.dtype([
    ("version", "<u2"), ("flags", "<u8"), ("measurement_uid", "<u4"), ("scan_counter", "<u4"),
    ("acquisition_time_stamp", "<u4"), ("physiology_time_stamp", "<u4", (3,)),
    ("number_of_samples", "<u2"), ("available_channels", "<u2"), ("active_channels", "<u2"),
    ("channel_mask", "<u8", (16,)), ("discard_pre", "<u2"), ("discard_post", "<u2"),
    ("center_sample", "<u2"), ("encoding_space_ref", "<u2"), ("trajectory_dimensions", "<u2"),
    ("sample_time_us", "<f4"), ("position", "<f4", (3,)), ("read_dir", "<f4", (3,)),
    ("phase_dir", "<f4", (3,)), ("slice_dir", "<f4", (3,)), ("patient_table_position", "<f4", (3,)),
    ("idx", ENC), ("user_int", "<i4", (8,)), ("user_float", "<f4", (8,)),
])
ACQ = np.dtype([("head", HEAD), ("traj", h5py.vlen_dtype(np.dtype("<f4"))),
                ("data", h5py.vlen_dtype(np.dtype("<f4")))])
S, C, H, W = 2, 3, 16, 12
LINES = [0, 2, 4, 5, 6, 7, 9, 11]


def flag(bit):
    return 1 << (bit - 1)


def acquisition(samples, e1=0, slice_=0, flags=0, contrast=0, pad=0, repetition=0, e2=0,
                encoding=0):
    """One readout line; `pad` junk samples before and after, to discard."""
    if pad:
        junk = np.full((samples.shape[0], pad), 1e3 + 1e3j)
        samples = np.concatenate([junk, samples, junk], axis=1)
    h = np.zeros((), HEAD)
    h["version"] = 1
    h["flags"] = flags
    h["number_of_samples"] = samples.shape[1]
    h["available_channels"] = h["active_channels"] = samples.shape[0]
    h["discard_pre"] = h["discard_post"] = pad
    h["center_sample"] = samples.shape[1] // 2
    h["encoding_space_ref"] = encoding
    h["idx"]["kspace_encode_step_1"] = e1
    h["idx"]["slice"] = slice_
    h["idx"]["contrast"] = contrast
    h["idx"]["repetition"] = repetition
    h["idx"]["kspace_encode_step_2"] = e2
    data = np.stack([samples.real, samples.imag], -1).astype("<f4").ravel()
    return h, np.zeros(0, "<f4"), data


def retag(rec, contrast, repetition):
    """A copy of the acquisition `rec` as a line of another contrast and repetition."""
    h, traj, data = rec
    h = h.copy()
    h["idx"]["contrast"] = contrast
    h["idx"]["repetition"] = repetition
    return h, traj, data


def whitened(k, noise):
    """k-space (slices, coils, H, W) prewhitened with the noise samples (coils, N) as Gadgetron
    does (NumPy's Cholesky, the reference): W = L^-1 for Psi / s2 = L L^H, Psi = n n^H / N,
    s2 = trace(Psi) / coils; and the noise std per real component, sqrt(s2 / 2)."""
    noise = noise.astype(np.complex64).astype(np.complex128)  # as stored (float32)
    psi = noise @ noise.conj().T / noise.shape[1]
    s2 = np.trace(psi).real / psi.shape[0]
    w = np.linalg.inv(np.linalg.cholesky(psi / s2))
    return np.einsum("ab,sbhw->sahw", w, k), np.sqrt(s2 / 2)


def header(center, z=1, recon_z=1):
    step_2 = (f"<kspace_encoding_step_2><minimum>0</minimum><maximum>{z - 1}</maximum>"
              f"<center>{z // 2}</center></kspace_encoding_step_2>") if z > 1 else ""
    return f"""<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>{H}</x><y>{W}</y><z>{z}</z></matrixSize></encodedSpace>
<reconSpace><matrixSize><x>{H // 2}</x><y>{W}</y><z>{recon_z}</z></matrixSize></reconSpace>
<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{W - 1}</maximum>
<center>{center}</center></kspace_encoding_step_1>{step_2}</encodingLimits>
</encoding></ismrmrdHeader>"""


def header_3d(nx, ny, nz):
    """The header of a 3-D encoding of nx x ny x nz, centred counters, recon x of nx / 2 (2x
    readout oversampling), no field of view."""
    return f"""<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>{nx}</x><y>{ny}</y><z>{nz}</z></matrixSize></encodedSpace>
<reconSpace><matrixSize><x>{nx // 2}</x><y>{ny}</y><z>{nz}</z></matrixSize></reconSpace>
<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{ny - 1}</maximum>
<center>{ny // 2}</center></kspace_encoding_step_1><kspace_encoding_step_2><minimum>0</minimum>
<maximum>{nz - 1}</maximum><center>{nz // 2}</center></kspace_encoding_step_2></encodingLimits>
</encoding></ismrmrdHeader>"""


def write(path, recs, center=W // 2, xml=None):
    arr = np.empty(len(recs), ACQ)
    for i, r in enumerate(recs):
        arr[i] = r
    with h5py.File(path, "w") as f:
        g = f.create_group("dataset")
        g.create_dataset("xml", data=np.array([xml or header(center)], dtype=h5py.string_dtype()))
        g.create_dataset("data", data=arr)


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(3)
    # Values as stored (float32), so that the reference sees what the reader reads.
    full = (rng.standard_normal((S, C, H, W)) + 1j * rng.standard_normal((S, C, H, W)))
    full = full.astype(np.complex64).astype(np.complex128)
    expected = np.zeros_like(full)
    # Coupled channels: noise A z with z white, 256 samples per channel.
    coupling = np.eye(C) + np.array([[0, 0, 0], [0.6 + 0.2j, 0, 0], [0, -0.3j, 0]])
    noise = 0.1 * coupling @ (rng.standard_normal((C, 256)) + 1j * rng.standard_normal((C, 256)))
    recs = [acquisition(noise, flags=flag(19)),
            acquisition(rng.standard_normal((C, H)) + 0j, flags=flag(23))]  # a navigator
    for s in range(S):
        for e1 in LINES:
            # As scanners mark them: calibration lines, and the first and last line of a slice.
            f = flag(20) if e1 in (5, 6) else 0
            f |= flag(7) if e1 == LINES[0] else flag(8) if e1 == LINES[-1] else 0
            # Line 9 with 2 samples to discard at each end, as some scanners write them.
            recs.append(acquisition(full[s, :, :, e1], e1, s, f, pad=2 if e1 == 9 else 0))
            expected[s, :, :, e1] = full[s, :, :, e1]
    again = rng.standard_normal((C, H)) + 1j * rng.standard_normal((C, H))
    again = again.astype(np.complex64).astype(np.complex128)
    recs.append(acquisition(again, 4, 1))
    expected[1, :, :, 4] = (full[1, :, :, 4] + again) / 2
    write(os.path.join(out, "raw.h5"), recs)
    np.save(os.path.join(out, "raw_expected_as_recorded.npy"), expected.astype(np.complex64))
    expected, level = whitened(expected, noise)
    np.save(os.path.join(out, "raw_expected.npy"), expected.astype(np.complex64))
    np.save(os.path.join(out, "raw_noise.npy"), np.array([level], np.float32))
    # The same k-space in fastMRI's layout (no mask: detected, as for raw data).
    with h5py.File(os.path.join(out, "raw_as_fastmri.h5"), "w") as f:
        f.create_dataset("kspace", data=expected.astype(np.complex64))
        f.create_dataset("ismrmrd_header", data=np.bytes_(header(W // 2).encode()))
    write(os.path.join(out, "raw_contrast.h5"), recs + [acquisition(again, 3, 0, contrast=1)])
    write(os.path.join(out, "raw_offcentre.h5"), recs, center=10)
    write(os.path.join(out, "raw_reversed.h5"), recs + [acquisition(again, 3, 0, flags=flag(22))])
    write(os.path.join(out, "raw_encodings.h5"), recs + [acquisition(again, 3, 0, encoding=1)])
    # The noise scan as a measurement of its own (Gadgetron's noise dependency): raw_nonoise.h5
    # the imaging lines alone, raw_noise_dep.h5 the noise scan (and a navigator, not noise),
    # raw_noise_2ch.h5 a noise scan of two channels.
    write(os.path.join(out, "raw_nonoise.h5"), recs[1:])
    write(os.path.join(out, "raw_noise_dep.h5"), recs[:2])
    write(os.path.join(out, "raw_noise_2ch.h5"), [acquisition(noise[:2], flags=flag(19))])
    write_scan(out, rng)
    write_multi(out, rng, recs, noise)
    write_3d(out, rng, noise)
    write_separate(out, rng, noise)
    write_kykz(out)
    write_kykz_square(out)


def write_separate(out, rng, noise):
    """raw_separate.h5: header calibration mode `separate`; imaging lines 0, 2, ..., 10 of 2
    slices (no calibration block), and reference-scan lines 3..8 flagged parallel calibration
    only, other data of another scale (another contrast), tagged repetition 1 (a reference
    scan serves every image). raw_separate_expected.npy: the image k-space (imaging lines only,
    line 6 not mixed with the reference's), raw_separate_reference.npy: the reference's,
    both prewhitened; raw_separate_ref0.npy: slice 0's reference k-space as one slice
    (coils, H, W). raw_separate_embedded.h5: the same lines (all repetition 0), calibration
    mode `embedded` (the calibration lines are image data). raw_encoding_ref.h5: the image lines
    and the reference as a second encoding of the same field of view (8 x 6, central);
    raw_encoding_ref_reference.npy its k-space on the image grid; raw_encoding_other.h5: the
    same with a second field of view of its own."""
    image = random_kspace(rng, (S, C, H, W))
    ref = 0.3 * random_kspace(rng, (S, C, H, W))
    expected, reference = np.zeros_like(image), np.zeros_like(ref)
    recs = [acquisition(noise, flags=flag(19))]
    embedded = list(recs)
    for s in range(S):
        for e1 in range(0, W, 2):
            recs.append(acquisition(image[s, :, :, e1], e1, s))
            embedded.append(recs[-1])
            expected[s, :, :, e1] = image[s, :, :, e1]
        for e1 in range(3, 9):
            recs.append(acquisition(ref[s, :, :, e1], e1, s, flags=flag(20), repetition=1))
            embedded.append(acquisition(ref[s, :, :, e1], e1, s, flags=flag(20)))
            reference[s, :, :, e1] = ref[s, :, :, e1]
    for mode, name, lines in [("separate", "raw_separate.h5", recs),
                              ("embedded", "raw_separate_embedded.h5", embedded)]:
        xml = header(W // 2).replace(
            "</encodingLimits>",
            "</encodingLimits><parallelImaging><accelerationFactor><kspace_encoding_step_1>2"
            "</kspace_encoding_step_1><kspace_encoding_step_2>1</kspace_encoding_step_2>"
            f"</accelerationFactor><calibrationMode>{mode}</calibrationMode></parallelImaging>")
        write(os.path.join(out, name), lines, xml=xml)
    # The reference as a second encoding: matrix 8 x 6 (the central 8 samples of lines 3..8 as
    # its lines 0..5, centre 3), the image's field of view, flagged parallel calibration; and
    # the same with a field of view of its own (another k-space spacing: not read).
    second = list(recs[:1]) + [r for r in recs[1:] if not r[0]["flags"] & flag(20)]
    encoded = np.zeros_like(ref)
    for s in range(S):
        for k in range(6):
            second.append(acquisition(ref[s, :, H // 4:H // 4 + H // 2, k + 3], k, s,
                                      flags=flag(20), encoding=1))
            encoded[s, :, H // 4:H // 4 + H // 2, k + 3] = ref[s, :, H // 4:H // 4 + H // 2, k + 3]
    for name, fov_y in [("raw_encoding_ref.h5", 240.0), ("raw_encoding_other.h5", 120.0)]:
        xml = header(W // 2).replace(
            "<matrixSize>", "<fieldOfView_mm><x>320</x><y>240</y><z>5</z></fieldOfView_mm>"
            "<matrixSize>", 1).replace(
            "</encoding>", "</encoding><encoding><encodedSpace><matrixSize><x>8</x><y>6</y>"
            f"<z>1</z></matrixSize><fieldOfView_mm><x>320</x><y>{fov_y}</y><z>5</z>"
            "</fieldOfView_mm></encodedSpace><reconSpace><matrixSize><x>8</x><y>6</y><z>1</z>"
            "</matrixSize></reconSpace><encodingLimits><kspace_encoding_step_1><minimum>0"
            "</minimum><maximum>5</maximum><center>3</center></kspace_encoding_step_1>"
            "</encodingLimits></encoding>")
        write(os.path.join(out, name), second, xml=xml)
    encoded, _ = whitened(encoded, noise)
    np.save(os.path.join(out, "raw_encoding_ref_reference.npy"), encoded.astype(np.complex64))
    expected, _ = whitened(expected, noise)
    reference, _ = whitened(reference, noise)
    np.save(os.path.join(out, "raw_separate_expected.npy"), expected.astype(np.complex64))
    np.save(os.path.join(out, "raw_separate_reference.npy"), reference.astype(np.complex64))
    np.save(os.path.join(out, "raw_separate_ref0.npy"), reference[0].astype(np.complex64))


def random_kspace(rng, shape):
    k = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return k.astype(np.complex64).astype(np.complex128)


def write_3d(out, rng, noise):
    """raw_3d.h5: a 3-D encoding of one slab, 6 partitions (second phase-encode counter, centre
    3), the recon matrix's central 4 kept, lines LINES in every partition but the first (partial
    Fourier: zero-filled); raw_3d_expected.npy the 4 slices' k-space (an inverse FFT along the
    partitions, centred and orthonormal, prewhitened). raw_3d_mixed.h5: partition 2 without
    line 4 (undersampled along both phase encodes), read along the readout:
    raw_3d_mixed_expected.npy its 8 slices (an inverse FFT along the readout, the recon matrix's
    central 8 of 16 positions kept), each (coils, lines, partitions), prewhitened."""
    z, recon_z = 6, 4
    full = rng.standard_normal((z, C, H, W)) + 1j * rng.standard_normal((z, C, H, W))
    full = full.astype(np.complex64).astype(np.complex128)
    grid = np.zeros_like(full)
    mixed_grid = np.zeros_like(full)
    recs, mixed = [acquisition(noise, flags=flag(19))], [acquisition(noise, flags=flag(19))]
    for p in range(1, z):
        for e1 in LINES:
            recs.append(acquisition(full[p, :, :, e1], e1, e2=p))
            if not (p == 2 and e1 == 4):
                mixed.append(recs[-1])
                mixed_grid[p, :, :, e1] = full[p, :, :, e1]
            grid[p, :, :, e1] = full[p, :, :, e1]
    xml = header(W // 2, z, recon_z)
    write(os.path.join(out, "raw_3d.h5"), recs, xml=xml)
    write(os.path.join(out, "raw_3d_mixed.h5"), mixed, xml=xml)
    slices = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(grid, axes=0), axis=0, norm="ortho"),
                             axes=0)
    slices = slices[z // 2 - recon_z // 2:z // 2 - recon_z // 2 + recon_z]
    expected, _ = whitened(slices, noise)
    np.save(os.path.join(out, "raw_3d_expected.npy"), expected.astype(np.complex64))
    # Along the readout (axis 2 of (z, coils, H, W)); slice x is (coils, W, z).
    along = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(mixed_grid, axes=2), axis=2,
                                        norm="ortho"), axes=2)
    along = along[:, :, H // 2 - H // 4:H // 2 - H // 4 + H // 2]
    expected, _ = whitened(along.transpose(2, 1, 3, 0), noise)
    np.save(os.path.join(out, "raw_3d_mixed_expected.npy"), expected.astype(np.complex64))


def write_kykz(out):
    """raw_kykz.h5: a 3-D encoding of a smooth object (16 readout samples, recon 8; 24 lines; 20
    partitions) seen by 4 coils whose sensitivities vary across the phase encodes, undersampled
    along both phase encodes: a 12 x 12 fully sampled centre and, elsewhere, the (line,
    partition) pairs with line + 2 partition divisible by 4 (a CAIPIRINHA-like shifted
    lattice), R = 2.1. raw_kz.h5: every line, in the central 8 partitions and every other
    one beyond (undersampled along the second phase encode only). raw_kykz_separate.h5: the lattice and a 4 x 4 centre, with a separate
    reference scan of the 12 x 12 centre (of another contrast). raw_kykz_reference.npy: the magnitude of the object times the coils' root
    sum of squares at the recon matrix's central 8 readout positions, (8, 24, 20): the slices
    along the readout."""
    nx, ny, nz = 16, 24, 20
    x, y, z = np.meshgrid(np.arange(nx) - nx // 2, np.arange(ny) - ny // 2,
                          np.arange(nz) - nz // 2, indexing="ij")
    edge = lambda r: 1 / (1 + np.exp((r - 1) * 40))  # noqa: E731
    image = edge(np.sqrt((x / 3.5) ** 2 + (y / 9) ** 2 + (z / 8) ** 2)) * (1 + 0.3 * np.cos(z))
    image = image + 0.5 * edge(np.sqrt(((x - 1) / 2) ** 2 + ((y + 3) / 3) ** 2 + ((z - 2) / 3) ** 2))
    image = image * np.exp(0.4j * y / ny)
    coils = []
    for c in range(4):
        t = 2 * np.pi * c / 4
        yc, zc = 14 * np.cos(t), 12 * np.sin(t)
        coils.append(np.exp(-((y - yc) ** 2 / 200 + (z - zc) ** 2 / 160) + 0.3j * c))
    full = np.stack([np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(m * image), norm="ortho"))
                     for m in coils])  # (coils, nx, ny, nz)
    full = full.astype(np.complex64).astype(np.complex128)
    recs = []
    for p in range(nz):
        for e1 in range(ny):
            centre = abs(e1 - ny // 2 + 0.5) < 6 and abs(p - nz // 2 + 0.5) < 6
            if centre or (e1 + 2 * p) % 4 == 0:
                recs.append(acquisition(full[:, :, e1, p], e1, e2=p))
    xml = header_3d(nx, ny, nz)
    write(os.path.join(out, "raw_kykz.h5"), recs, xml=xml)
    # Undersampled along the partitions only: every line of the central 8 partitions and of
    # every other one beyond.
    kz_only = [acquisition(full[:, :, e1, p], e1, e2=p) for p in range(nz) for e1 in range(ny)
               if abs(p - nz // 2 + 0.5) < 6 or p % 2 == 0]
    write(os.path.join(out, "raw_kz.h5"), kz_only, xml=xml)
    # A separate reference scan of the 12 x 12 centre (another contrast: the object squared),
    # beside image lines of a 4 x 4 centre only, too small a block for ESPIRiT's kernel.
    contrast = np.stack([np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(m * image ** 2),
                                                     norm="ortho")) for m in coils])
    separate = []
    for p in range(nz):
        for e1 in range(ny):
            if abs(e1 - ny // 2 + 0.5) < 2 and abs(p - nz // 2 + 0.5) < 2 or (e1 + 2 * p) % 4 == 0:
                separate.append(acquisition(full[:, :, e1, p], e1, e2=p))
            if abs(e1 - ny // 2 + 0.5) < 6 and abs(p - nz // 2 + 0.5) < 6:
                separate.append(acquisition(contrast[:, :, e1, p], e1, e2=p, flags=flag(20)))
    xml = xml.replace("</encodingLimits>", "</encodingLimits><parallelImaging><calibrationMode>"
                      "separate</calibrationMode></parallelImaging>")
    write(os.path.join(out, "raw_kykz_separate.h5"), separate, xml=xml)
    # What a SENSE recon with maps of unit root sum of squares (ESPIRiT's) sees.
    reference = np.abs(image * np.sqrt(sum(abs(m) ** 2 for m in coils)))
    reference = reference[nx // 2 - nx // 4:nx // 2 + nx // 4]
    np.save(os.path.join(out, "raw_kykz_reference.npy"), reference.astype(np.float32))


def write_kykz_square(out):
    """raw_kykz32.h5: a 3-D encoding of 8 readout samples (recon 4) x 32 lines x 32 partitions, 4
    coils, with a noise scan (white, std 0.01 per real component) and that noise on the data,
    undersampled along both phase encodes by a random 2-D pattern: a 12 x 12 fully sampled
    centre and each other (line, partition) entry with probability 0.22 (R about 3), the same for
    every readout position. Its slices along the readout are 32 x 32, the grid of a square
    model. raw_kykz32_mask.npy: the pattern, (lines, partitions), 1 where acquired."""
    rng = np.random.default_rng(32)
    nx, ny, nz = 8, 32, 32
    x, y, z = np.meshgrid(np.arange(nx) - nx // 2, np.arange(ny) - ny // 2,
                          np.arange(nz) - nz // 2, indexing="ij")
    edge = lambda r: 1 / (1 + np.exp((r - 1) * 30))  # noqa: E731
    image = edge(np.sqrt((x / 3.5) ** 2 + (y / 12) ** 2 + (z / 10) ** 2)) * (1 + 0.3 * np.cos(y / 2))
    image = image + 0.5 * edge(np.sqrt((x / 2) ** 2 + ((y + 4) / 4) ** 2 + ((z - 3) / 3) ** 2))
    image = image * np.exp(0.5j * z / nz)
    coils = []
    for c in range(4):
        t = 2 * np.pi * c / 4 + 0.3
        yc, zc = 20 * np.cos(t), 20 * np.sin(t)
        coils.append(np.exp(-((y - yc) ** 2 + (z - zc) ** 2) / 500 + 0.4j * c))
    full = np.stack([np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(m * image), norm="ortho"))
                     for m in coils])  # (coils, nx, ny, nz)
    std = 0.01
    def noise(shape):  # noqa: E306
        return std * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    centre = (np.abs(np.arange(ny)[:, None] - ny // 2 + 0.5) < 6) & \
        (np.abs(np.arange(nz)[None, :] - nz // 2 + 0.5) < 6)
    pattern = centre | (rng.random((ny, nz)) < 0.22)
    recs = [acquisition(noise((4, 256)), flags=flag(19))]
    for p in range(nz):
        for e1 in range(ny):
            if pattern[e1, p]:
                recs.append(acquisition(full[:, :, e1, p] + noise((4, nx)), e1, e2=p))
    write(os.path.join(out, "raw_kykz32.h5"), recs, xml=header_3d(nx, ny, nz))
    np.save(os.path.join(out, "raw_kykz32_mask.npy"), pattern.astype(np.float32))


def write_multi(out, rng, recs, noise):
    """raw_multi.h5: raw.h5's acquisitions (repetition 0) and a second repetition of other data
    on the same lines; raw_multi_expected.npy the second one's k-space, prewhitened."""
    second = (rng.standard_normal((S, C, H, W)) + 1j * rng.standard_normal((S, C, H, W)))
    second = second.astype(np.complex64).astype(np.complex128)
    expected = np.zeros_like(second)
    more = []
    for s in range(S):
        for e1 in LINES:
            more.append(acquisition(second[s, :, :, e1], e1, s, repetition=1))
            expected[s, :, :, e1] = second[s, :, :, e1]
    write(os.path.join(out, "raw_multi.h5"), recs + more)
    # raw_series.h5: repetitions 0, 1 x contrasts 0, 1, each contrast-1 image the lines of the
    # other repetition's contrast 0; raw_hole.h5 lacks repetition 1's contrast 1.
    imaging = [r for r in recs if not int(r[0]["flags"]) & (flag(19) | flag(23))]
    c1 = [retag(r, 1, 0) for r in more]
    write(os.path.join(out, "raw_series.h5"), recs + more + c1 + [retag(r, 1, 1) for r in imaging])
    write(os.path.join(out, "raw_hole.h5"), recs + more + c1)
    expected, _ = whitened(expected, noise)
    np.save(os.path.join(out, "raw_multi_expected.npy"), expected.astype(np.complex64))


def write_scan(out, rng):
    """scan_raw.h5: the trainer's test scan (`tests/volume/make_files.py`'s object: 3 slices, 4
    coils, 40 x 32 k-space, every third column and 10 central ones) as raw data with a noise
    scan of std 1e-4, and scan_raw_as_fastmri.h5 the same k-space, prewhitened with that scan, in
    fastMRI's layout; scan_raw_reps.h5 a second repetition beside the first; scan_raw_nonoise.h5
    and scan_raw_noise.h5 its imaging lines and its noise scan apart; scan_raw_separate.h5 its
    every third column as the image and its 10 central ones as a separate reference scan
    (calibration mode separate)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "volume"))
    from make_files import column_mask, header as fastmri_header, kspace  # noqa: E402

    s, c, h, w = 3, 4, 40, 32
    full = kspace(s, c, h, w, 32)
    full += 1e-4 * (rng.standard_normal(full.shape) + 1j * rng.standard_normal(full.shape))
    mask = column_mask(w, 3, 10)
    noise = 1e-4 * (rng.standard_normal((c, 256)) + 1j * rng.standard_normal((c, 256)))
    recs = [acquisition(noise, flags=flag(19))]
    for k in range(s):
        for e1 in np.flatnonzero(mask):
            recs.append(acquisition(full[k, :, :, e1], int(e1), k))
    xml = fastmri_header((h, w), (32, 32)).replace(
        "</encoding>",
        f"<encodingLimits><kspace_encoding_step_1><center>{w // 2}</center>"
        "</kspace_encoding_step_1></encodingLimits></encoding>")
    write(os.path.join(out, "scan_raw.h5"), recs, xml=xml)
    # The same with its noise scan in a file of its own.
    write(os.path.join(out, "scan_raw_nonoise.h5"), recs[1:], xml=xml)
    write(os.path.join(out, "scan_raw_noise.h5"), recs[:1], xml=xml)
    # scan_raw_reps.h5: the same lines as repetition 0, and as repetition 1 with other noise.
    again = full + 1e-4 * (rng.standard_normal(full.shape) + 1j * rng.standard_normal(full.shape))
    reps = recs + [acquisition(again[k, :, :, e1], int(e1), k, repetition=1)
                   for k in range(s) for e1 in np.flatnonzero(mask)]
    write(os.path.join(out, "scan_raw_reps.h5"), reps, xml=xml)
    # scan_raw_separate.h5: the central block as a reference scan of its own.
    separate = recs[:1] + [acquisition(full[k, :, :, e1], int(e1), k)
                           for k in range(s) for e1 in np.flatnonzero(column_mask(w, 3, 0))]
    separate += [acquisition(full[k, :, :, e1], int(e1), k, flags=flag(20))
                 for k in range(s) for e1 in range(w // 2 - 5, w // 2 + 5)]
    write(os.path.join(out, "scan_raw_separate.h5"), separate, xml=xml.replace(
        "</encoding>",
        "<parallelImaging><calibrationMode>separate</calibrationMode></parallelImaging>"
        "</encoding>"))
    with h5py.File(os.path.join(out, "scan_raw_as_fastmri.h5"), "w") as f:
        twin, _ = whitened((full * mask).astype(np.complex64).astype(np.complex128), noise)
        f.create_dataset("kspace", data=twin.astype(np.complex64))
        f.create_dataset("ismrmrd_header", data=np.bytes_(fastmri_header((h, w), (32, 32)).encode()))


if __name__ == "__main__":
    main()
