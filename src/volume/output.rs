//! Writing a reconstructed volume, chosen by the file name:
//!
//! | name ends in | written | layout |
//! |---|---|---|
//! | `.nii`, `.nii.gz` | magnitude, NIfTI-1 float32 ([`crate::io::nifti`]) | voxel `[i, j, k]` = (row, column, slice), 1 mm voxels |
//! | `.npy` | complex64 NumPy array | `(slices, height, width)` |
//! | anything else (`.cfl`, a base name) | complex BART `.cfl/.hdr` | dims `[H, W, 1, ..., 1, slices]`: READ, PHS1, SLICE (dim 13) |
//!
//! Height is the readout (BART READ, NIfTI `i`), width the phase encode (BART PHS1, NIfTI `j`),
//! as everywhere in `msm`; the slice axis is the file's slice order. Every writer is atomic.

use crate::io::nifti::{read_nifti, write_nifti, Volume};
use crate::io::{cfl, npy};
use crate::{Error, Result, C32};
use ndarray::{Array2, Array3, Axis};
use std::path::Path;

/// BART's SLICE dimension.
pub const BART_SLICE_DIM: usize = 13;

/// Volume file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeFormat {
    /// NIfTI-1 magnitude (`.nii`, `.nii.gz`).
    Nifti,
    /// Complex64 NumPy `(slices, height, width)` (`.npy`).
    Npy,
    /// Complex BART `.cfl/.hdr`, slices along dimension 13.
    Cfl,
}

impl VolumeFormat {
    /// The format of `path` from its name; PNG (a 2-D picture) is refused with an error naming
    /// the file.
    pub fn of(path: &Path) -> Result<VolumeFormat> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with(".nii") || name.ends_with(".nii.gz") {
            Ok(VolumeFormat::Nifti)
        } else if name.ends_with(".npy") {
            Ok(VolumeFormat::Npy)
        } else if name.ends_with(".png") {
            Err(Error::format(
                path,
                "a PNG cannot hold a volume; expected .nii or .nii.gz (magnitude), .npy or .cfl \
                 (complex)",
            ))
        } else {
            Ok(VolumeFormat::Cfl)
        }
    }
}

/// Writes the slices (all of one shape, at least one) to `path` in `format`, atomically.
pub fn write_volume(path: &Path, format: VolumeFormat, slices: &[Array2<C32>]) -> Result<()> {
    let Some(first) = slices.first() else {
        return Err(Error::invalid(format!(
            "{}: no slices to write",
            path.display()
        )));
    };
    let (h, w) = first.dim();
    if let Some(i) = slices.iter().position(|s| s.dim() != (h, w)) {
        return Err(Error::invalid(format!(
            "{}: slice {i} is {:?}, slice 0 is {:?}; expected one shape",
            path.display(),
            slices[i].dim(),
            (h, w)
        )));
    }
    let n = slices.len();
    match format {
        VolumeFormat::Nifti => {
            let data = Array3::from_shape_fn((h, w, n), |(r, c, s)| slices[s][(r, c)].norm());
            write_nifti(
                path,
                &Volume {
                    data,
                    voxel_size: [1.0; 3],
                },
            )
        }
        VolumeFormat::Npy => {
            let data = Array3::from_shape_fn((n, h, w), |(s, r, c)| slices[s][(r, c)]);
            npy::write_npy(path, &data)
        }
        VolumeFormat::Cfl => {
            // Column-major [H, W, ..., slices]: the row index fastest, then the column, then
            // the slice.
            let data: Vec<C32> = slices
                .iter()
                .flat_map(|s| s.t().iter().copied().collect::<Vec<_>>())
                .collect();
            let mut dims = [1usize; BART_SLICE_DIM + 1];
            dims[0] = h;
            dims[1] = w;
            dims[BART_SLICE_DIM] = n;
            cfl::write_array(path, &dims, &data)
        }
    }
}

/// Reads a volume as [`write_volume`] writes it, and as other tools write these layouts: any
/// 3-D NIfTI (slices along `k`; magnitude, imaginary part 0), a `.npy` `(slices, height,
/// width)` (complex64 or float32), or a `.cfl` whose only non-trivial dimensions are READ,
/// PHS1 and SLICE (13). Errors name the file and the layout expected.
pub fn read_volume(path: &Path) -> Result<Vec<Array2<C32>>> {
    match VolumeFormat::of(path)? {
        VolumeFormat::Nifti => {
            let v = read_nifti(path)?;
            Ok(v.data
                .axis_iter(Axis(2))
                .map(|s| s.mapv(|x| C32::new(x, 0.0)))
                .collect())
        }
        VolumeFormat::Npy => {
            let v: Array3<C32> = npy::read_npy_as(path)?;
            Ok(v.outer_iter().map(|s| s.to_owned()).collect())
        }
        VolumeFormat::Cfl => {
            let a = cfl::read_array(path)?;
            if let Some(d) =
                (0..a.dims.len()).find(|&d| ![0, 1, BART_SLICE_DIM].contains(&d) && a.dim(d) != 1)
            {
                return Err(Error::format(
                    path,
                    format!(
                        "has dimensions {:?} with {} along BART dimension {d}; expected a volume \
                         [H, W, 1, ..., 1, slices] (READ, PHS1, SLICE = dimension 13)",
                        a.dims,
                        a.dim(d)
                    ),
                ));
            }
            let (h, w, n) = (a.dim(0), a.dim(1), a.dim(BART_SLICE_DIM));
            Ok((0..n)
                .map(|k| Array2::from_shape_fn((h, w), |(r, c)| a.data[r + h * c + h * w * k]))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name_and_axis_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            VolumeFormat::of(&d.join("a.nii.gz")).unwrap(),
            VolumeFormat::Nifti
        );
        assert_eq!(
            VolumeFormat::of(&d.join("a.NII")).unwrap(),
            VolumeFormat::Nifti
        );
        assert_eq!(
            VolumeFormat::of(&d.join("a.npy")).unwrap(),
            VolumeFormat::Npy
        );
        assert_eq!(VolumeFormat::of(&d.join("a")).unwrap(), VolumeFormat::Cfl);
        assert!(VolumeFormat::of(&d.join("a.png")).is_err());

        let slices: Vec<Array2<C32>> = (0..3)
            .map(|s| {
                Array2::from_shape_fn((4, 2), |(r, c)| {
                    C32::new((100 * s + 10 * r + c) as f32, -1.0)
                })
            })
            .collect();
        let cfl_path = d.join("v.cfl");
        write_volume(&cfl_path, VolumeFormat::Cfl, &slices).unwrap();
        let a = cfl::read_array(&cfl_path).unwrap();
        assert_eq!(a.dim(0), 4);
        assert_eq!(a.dim(1), 2);
        assert_eq!(a.dim(BART_SLICE_DIM), 3);
        // Element (row 3, column 1, slice 2) at 3 + 4 * 1 + 8 * 2.
        assert_eq!(a.data[3 + 4 + 16], C32::new(231.0, -1.0));

        let nii = d.join("v.nii.gz");
        write_volume(&nii, VolumeFormat::Nifti, &slices).unwrap();
        let v = read_nifti(&nii).unwrap();
        assert_eq!(v.data.dim(), (4, 2, 3));
        assert!((v.data[(3, 1, 2)] - C32::new(231.0, -1.0).norm()).abs() < 1e-3);

        let npy_path = d.join("v.npy");
        write_volume(&npy_path, VolumeFormat::Npy, &slices).unwrap();
        let back: Array3<C32> = npy::read_npy_as(&npy_path).unwrap();
        assert_eq!(back[(2, 3, 1)], C32::new(231.0, -1.0));
        assert!(write_volume(&d.join("e.npy"), VolumeFormat::Npy, &[]).is_err());

        // read_volume gives back what each writer wrote (NIfTI: the magnitude).
        assert_eq!(read_volume(&cfl_path).unwrap(), slices);
        assert_eq!(read_volume(&npy_path).unwrap(), slices);
        let mags = read_volume(&nii).unwrap();
        assert_eq!(mags.len(), 3);
        for (m, s) in mags.iter().zip(&slices) {
            for (a, b) in m.iter().zip(s) {
                assert!((a.re - b.norm()).abs() < 1e-3 && a.im == 0.0);
            }
        }
        // A .cfl with coils is not a volume of images.
        cfl::write_array(d.join("coils"), &[4, 2, 1, 3], &[C32::new(1.0, 0.0); 24]).unwrap();
        let e = read_volume(&d.join("coils")).unwrap_err().to_string();
        assert!(e.contains("BART dimension 3"), "{e}");
    }
}
