#!/usr/bin/env python3
"""ISMRMRD raw data written by the ISMRMRD project's own Python library (`pip install ismrmrd`:
its `Dataset`, `Acquisition` and XML header classes, as its `generate_cartesian_shepp_logan`
example uses them), into the folder given as the only argument: an independent writer of the
format that `src/io/fastmri/raw.rs` reads (its compound types, a chunked `/dataset/data` grown
one acquisition at a time, its own header XML).

official.h5: 2 slices, 4 coils, 32 x 24 encoded matrix (recon 16 x 24), two repetitions of
other data, every second phase-encode line and the 8 central ones (flagged as parallel
calibration and imaging), sagittal slices (readout along DICOM's y, phase encode along -z,
slice normal along x; slice centres (-10, 4, 12) and (-5, 4, 12) mm), a noise scan of coupled
channels first; official_rep{0,1}.npy the
k-space (slices, coils, 32, 24) of each repetition, prewhitened as make_raw.py's reference does
(NumPy's Cholesky).
official_3d.h5: one slab of a 3-D encoding, 4 partitions (centre 2), every partition holding
the same lines, recon z 4; official_3d.npy the 4 slices' k-space (the inverse FFT along the
partitions, centred and orthonormal), prewhitened.
"""
import os
import sys

import ismrmrd
import ismrmrd.xsd
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_raw import whitened  # noqa: E402

C, H, W = 4, 32, 24
LINES = sorted(set(range(0, W, 2)) | set(range(W // 2 - 4, W // 2 + 4)))


def header(z=1, repetitions=1, slices=1):
    """The ISMRMRD header, built with the library's XML classes."""

    def space(x, y, zz):
        return ismrmrd.xsd.encodingSpaceType(
            matrixSize=ismrmrd.xsd.matrixSizeType(x=x, y=y, z=zz),
            fieldOfView_mm=ismrmrd.xsd.fieldOfViewMm(x=220.0 * x / W, y=220.0, z=5.0 * zz))

    def limit(n, center):
        return ismrmrd.xsd.limitType(minimum=0, maximum=n - 1, center=center)

    enc = ismrmrd.xsd.encodingType(
        encodedSpace=space(H, W, z),
        reconSpace=space(H // 2, W, z),
        encodingLimits=ismrmrd.xsd.encodingLimitsType(
            kspace_encoding_step_1=limit(W, W // 2),
            kspace_encoding_step_2=limit(z, z // 2),
            slice=limit(slices, 0),
            repetition=limit(repetitions, 0)),
        trajectory=ismrmrd.xsd.trajectoryType("cartesian"))
    hdr = ismrmrd.xsd.ismrmrdHeader(
        acquisitionSystemInformation=ismrmrd.xsd.acquisitionSystemInformationType(
            receiverChannels=C),
        experimentalConditions=ismrmrd.xsd.experimentalConditionsType(
            H1resonanceFrequency_Hz=127_800_000),
        encoding=[enc])
    return ismrmrd.xsd.ToXML(hdr, "utf-8")


def line(samples, e1, slice_=0, repetition=0, e2=0, calibration=False):
    acq = ismrmrd.Acquisition.from_array(samples.astype(np.complex64))
    acq.idx.kspace_encode_step_1 = e1
    acq.idx.kspace_encode_step_2 = e2
    acq.idx.slice = slice_
    acq.idx.repetition = repetition
    acq.center_sample = samples.shape[1] // 2
    acq.sample_time_us = 5.0
    if calibration:
        acq.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    # Sagittal slices 5 mm apart (LPS): the placement of NIfTI outputs.
    acq.position[:] = (-10.0 + 5.0 * slice_, 4.0, 12.0)
    acq.read_dir[:] = (0.0, 1.0, 0.0)
    acq.phase_dir[:] = (0.0, 0.0, -1.0)
    acq.slice_dir[:] = (1.0, 0.0, 0.0)
    return acq


def noise_scan(rng):
    coupling = np.eye(C) + 0.4j * np.eye(C, k=-1)
    samples = 0.05 * coupling @ (rng.standard_normal((C, 256)) + 1j * rng.standard_normal((C, 256)))
    samples = samples.astype(np.complex64).astype(np.complex128)
    acq = ismrmrd.Acquisition.from_array(samples.astype(np.complex64))
    acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    acq.sample_time_us = 5.0
    return acq, samples


def random_kspace(rng, shape):
    k = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return k.astype(np.complex64).astype(np.complex128)


def write_2d(out, rng):
    slices, reps = 2, 2
    path = os.path.join(out, "official.h5")
    dset = ismrmrd.Dataset(path, "dataset", create_if_needed=True)
    dset.write_xml_header(header(repetitions=reps, slices=slices))
    acq, noise = noise_scan(rng)
    dset.append_acquisition(acq)
    for r in range(reps):
        full = random_kspace(rng, (slices, C, H, W))
        expected = np.zeros_like(full)
        for s in range(slices):
            for e1 in LINES:
                central = W // 2 - 4 <= e1 < W // 2 + 4
                dset.append_acquisition(line(full[s, :, :, e1], e1, s, r, calibration=central))
                expected[s, :, :, e1] = full[s, :, :, e1]
        k, _ = whitened(expected, noise)
        np.save(os.path.join(out, f"official_rep{r}.npy"), k.astype(np.complex64))
    dset.close()


def write_3d(out, rng):
    z = 4
    path = os.path.join(out, "official_3d.h5")
    dset = ismrmrd.Dataset(path, "dataset", create_if_needed=True)
    dset.write_xml_header(header(z=z))
    acq, noise = noise_scan(rng)
    dset.append_acquisition(acq)
    full = random_kspace(rng, (z, C, H, W))
    grid = np.zeros_like(full)
    for p in range(z):
        for e1 in LINES:
            dset.append_acquisition(line(full[p, :, :, e1], e1, e2=p))
            grid[p, :, :, e1] = full[p, :, :, e1]
    dset.close()
    slices = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(grid, axes=0), axis=0, norm="ortho"),
                             axes=0)
    k, _ = whitened(slices, noise)
    np.save(os.path.join(out, "official_3d.npy"), k.astype(np.complex64))


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(7)
    write_2d(out, rng)
    write_3d(out, rng)


if __name__ == "__main__":
    main()
