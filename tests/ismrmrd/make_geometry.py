#!/usr/bin/env python3
"""Scans placed in the scanner, for the NIfTI placement test: ISMRMRD raw data of point objects
at known positions (DICOM LPS+, mm), each acquisition holding the samples of the MR signal
equation s(k) = sum over points of c exp(-2 pi i k . (r - position)), with k along read_dir,
phase_dir and slice_dir growing with the sample, line and partition counters (ISMRMRD's and
Gadgetron's convention). Written with h5py (make_raw.py's layout) into the folder given as the
only argument:

geom_2d.h5: a 2-D multi-slice scan, oblique (rotated about two axes), 3 slices 6 mm apart (4 mm
thick, so a 2 mm gap), acquired in the order 1, 0, 2; encoded 32 x 16 over 128 x 64 mm (2x
readout oversampling), recon 16 x 16 over 64 x 64 mm (4 mm pixels); 2 coils, fully sampled, one
point per slice.
geom_3d.h5: a 3-D slab of the same orientation, 8 partitions over 24 mm encoded (3 mm), recon
6 partitions (slice oversampling), two points.
geom_kykz.h5: a 3-D slab of the same orientation undersampled along both phase encodes (an
8 x 8 fully sampled centre and 40% of the other (line, partition) pairs at random), 16
partitions of 3 mm, recon 12: read along the readout, so its slices are readout positions.
geom_uneven.h5: geom_2d.h5 with slice 2 moved 3 mm further (no common affine).
geom_series.h5 and geom_moved.h5: two repetitions of geom_2d.h5, the second in the same place
or moved 2 mm along the readout (as prospective motion correction moves it).
geometry.json: for each file, each point's RAS+ position ((-x, -y, z) of LPS) and the output
slice it lies in.
"""
import json
import os
import sys

import numpy as np

from make_raw import HEAD, flag, write

NX, NY = 32, 16
FOV_X, FOV_Y = 128.0, 64.0
COILS = np.array([1.0, 0.5 + 0.5j])


def rotation():
    """Read, phase and slice directions: columns of Rz(0.4) Rx(0.3)."""
    a, b = 0.4, 0.3
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    m = rz @ rx
    return m[:, 0], m[:, 1], m[:, 2]


READ, PHASE, SLICE = rotation()


def header(z=1, recon_z=1, fov_z=4.0, recon_fov_z=4.0):
    step_2 = (f"<kspace_encoding_step_2><minimum>0</minimum><maximum>{z - 1}</maximum>"
              f"<center>{z // 2}</center></kspace_encoding_step_2>") if z > 1 else ""
    return f"""<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>{NX}</x><y>{NY}</y><z>{z}</z></matrixSize>
<fieldOfView_mm><x>{FOV_X}</x><y>{FOV_Y}</y><z>{fov_z}</z></fieldOfView_mm></encodedSpace>
<reconSpace><matrixSize><x>{NX // 2}</x><y>{NY}</y><z>{recon_z}</z></matrixSize>
<fieldOfView_mm><x>{FOV_X / 2}</x><y>{FOV_Y}</y><z>{recon_fov_z}</z></fieldOfView_mm></reconSpace>
<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{NY - 1}</maximum>
<center>{NY // 2}</center></kspace_encoding_step_1>{step_2}</encodingLimits>
</encoding></ismrmrdHeader>"""


def line(points, centre, e1, e2=0, z=1, fov_z=1.0, slice_=0, repetition=0):
    """The acquisition of line e1 (partition e2 of z) of a scan centred at `centre`."""
    kx = (np.arange(NX) - NX // 2) / FOV_X
    ky = (e1 - NY // 2) / FOV_Y
    kz = (e2 - z // 2) / fov_z if z > 1 else 0.0
    samples = np.zeros((len(COILS), NX), complex)
    for r in points:
        d = np.asarray(r) - centre
        u, v, w = d @ READ, d @ PHASE, d @ SLICE
        samples += COILS[:, None] * np.exp(-2j * np.pi * (kx * u + ky * v + kz * w))[None]
    h = np.zeros((), HEAD)
    h["version"] = 1
    h["flags"] = flag(7) if e1 == 0 else flag(8) if e1 == NY - 1 else 0
    h["number_of_samples"] = NX
    h["available_channels"] = h["active_channels"] = len(COILS)
    h["center_sample"] = NX // 2
    h["sample_time_us"] = 5.0
    h["position"] = centre
    h["read_dir"], h["phase_dir"], h["slice_dir"] = READ, PHASE, SLICE
    h["idx"]["kspace_encode_step_1"] = e1
    h["idx"]["kspace_encode_step_2"] = e2
    h["idx"]["slice"] = slice_
    h["idx"]["repetition"] = repetition
    data = np.stack([samples.real, samples.imag], -1).astype("<f4").ravel()
    return h, np.zeros(0, "<f4"), data


def in_plane(centre, a, b):
    """The point a pixels (4 mm) along the readout and b along the phase encode from `centre`."""
    return centre + a * 4.0 * READ + b * 4.0 * PHASE


def ras(lps):
    return [-float(lps[0]), -float(lps[1]), float(lps[2])]


def main():
    out = sys.argv[1]
    expected = {}
    # 2-D: slice centres 6 mm apart along the normal, from an off-centre first slice.
    first = np.array([12.0, -30.0, 25.0])
    for name, shift in [("geom_2d.h5", 0.0), ("geom_uneven.h5", 3.0)]:
        centres = [first + 6.0 * k * SLICE for k in range(3)]
        centres[2] = centres[2] + shift * SLICE
        points = [in_plane(centres[0], 3, -2), in_plane(centres[1], -5, 4),
                  in_plane(centres[2], 1, 6)]
        recs = [line([points[k]], centres[k], e1, slice_=k) for k in (1, 0, 2) for e1 in range(NY)]
        write(os.path.join(out, name), recs, xml=header())
        expected[name] = {"points": [ras(p) for p in points], "slices": [0, 1, 2]}
    # Two repetitions, the second in the same place or moved 2 mm along the readout.
    centres = [first + 6.0 * k * SLICE for k in range(3)]
    for name, shift in [("geom_series.h5", 0.0), ("geom_moved.h5", 2.0)]:
        recs = [line([in_plane(centres[k], 1, 1)], centres[k] + shift * r * READ, e1, slice_=k,
                     repetition=r) for r in (0, 1) for k in range(3) for e1 in range(NY)]
        write(os.path.join(out, name), recs, xml=header())
    # 3-D: one slab, partitions 3 mm apart; kept partitions 1..7 of 8 (offsets -3..2).
    z, recon_z, dz = 8, 6, 3.0
    centre = np.array([-8.0, 14.0, -20.0])
    points = [in_plane(centre, -4, 2) - 2 * dz * SLICE, in_plane(centre, 2, -5) + 1 * dz * SLICE]
    recs = [line(points, centre, e1, e2, z, z * dz) for e2 in range(z) for e1 in range(NY)]
    write(os.path.join(out, "geom_3d.h5"), recs,
          xml=header(z, recon_z, z * dz, recon_z * dz))
    # Offset -2 is partition 2, kept slice 1; offset 1 partition 5, kept slice 4.
    expected["geom_3d.h5"] = {"points": [ras(p) for p in points], "slices": [1, 4]}
    # Undersampled along both phase encodes: the slices are the kept readout positions 8..23
    # of 32, so the points (readout pixels -4 and 2 from the centre) are in slices 4 and 10.
    z, recon_z = 16, 12
    rng = np.random.default_rng(5)
    kept = rng.random((NY, z)) < 0.4
    kept[NY // 2 - 4:NY // 2 + 4, z // 2 - 4:z // 2 + 4] = True
    recs = [line(points, centre, e1, e2, z, z * dz) for e2 in range(z) for e1 in range(NY)
            if kept[e1, e2]]
    write(os.path.join(out, "geom_kykz.h5"), recs, xml=header(z, recon_z, z * dz, recon_z * dz))
    expected["geom_kykz.h5"] = {"points": [ras(p) for p in points], "slices": [4, 10]}
    with open(os.path.join(out, "geometry.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
