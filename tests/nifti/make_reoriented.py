#!/usr/bin/env python3
"""NIfTI volumes in other voxel orders, made by nibabel (the independent reference for the
reorientation in src/io/nifti.rs), into the folder given as the only argument:

natbrainlab_canonical.npy: mricron-data's natbrainlab.nii.gz (stored LAS) after nibabel's
as_closest_canonical, float32 (x, y, z).
ch2_pil.nii.gz: Colin27 ch2.nii.gz (stored RAS) turned by nibabel to voxel axes pointing to
P, I and L.
"""
import os
import sys

import nibabel as nib
import numpy as np

TEMPLATES = "/usr/share/mricron/templates"


def main():
    out = sys.argv[1]
    lab = nib.as_closest_canonical(nib.load(os.path.join(TEMPLATES, "natbrainlab.nii.gz")))
    np.save(os.path.join(out, "natbrainlab_canonical.npy"),
            np.asarray(lab.dataobj, dtype=np.float64).astype(np.float32))
    ch2 = nib.load(os.path.join(TEMPLATES, "ch2.nii.gz"))
    target = nib.orientations.axcodes2ornt(("P", "I", "L"))
    turn = nib.orientations.ornt_transform(nib.io_orientation(ch2.affine), target)
    nib.save(ch2.as_reoriented(turn), os.path.join(out, "ch2_pil.nii.gz"))


if __name__ == "__main__":
    main()
