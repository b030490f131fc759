//! Writing a reconstructed volume, chosen by the file name:
//!
//! | name ends in | written | layout |
//! |---|---|---|
//! | `.nii`, `.nii.gz` | magnitude, NIfTI-1 float32 ([`crate::io::nifti`]) | voxel `[i, j, k]` = (row, column, slice), placed by [`write_series`]' [`VoxelSpace`] (`msm` passes the scanner placement of ISMRMRD raw data, else the header's voxel size, else 1 mm) |
//! | `.npy` | complex64 NumPy array | `(slices, height, width)` |
//! | anything else (`.cfl`, a base name) | complex BART `.cfl/.hdr` | dims `[H, W, 1, ..., 1, slices]`: READ, PHS1, SLICE (dim 13) |
//!
//! Height is the readout (BART READ, NIfTI `i`), width the phase encode (BART PHS1, NIfTI `j`),
//! as everywhere in `msm`; the slice axis is the file's slice order. Every writer is atomic.
//!
//! A series of volumes (the images of an ISMRMRD file chosen `all`: echoes, cardiac phases,
//! repetitions, sets; [`write_series`]) adds one axis per counter, in the order contrast,
//! phase, repetition, set:
//!
//! | format | layout of a series |
//! |---|---|
//! | NIfTI | `[i, j, k, t, ...]`: the counters from the fourth dimension on (`t` = the first) |
//! | `.npy` | `(counters..., slices, height, width)`: the counters first |
//! | `.cfl` | each counter on its BART dimension ([`BART_COUNTER_DIMS`]): contrast on TE (5), repetition on TIME (10), phase on TIME2 (11), set on BATCH (15) |

use crate::io::nifti::{read_nifti, write_nifti_nd};
use crate::io::space::VoxelSpace;
use crate::io::{cfl, npy};
use crate::{Error, Result, C32};
use ndarray::{Array2, Array3, ArrayD, Axis, IxDyn};
use std::path::Path;

/// 1 mm voxels along the world axes: the placement of a volume whose scanner placement is not
/// known.
pub const UNPLACED: VoxelSpace = VoxelSpace::unit();

/// BART's SLICE dimension.
pub const BART_SLICE_DIM: usize = 13;

/// The BART dimension of each ISMRMRD counter in a series ([`write_series`]): echoes on TE, dynamics
/// on TIME, cardiac phases on TIME2, sets (such as flow encodings) on BATCH.
pub const BART_COUNTER_DIMS: [(&str, usize); 4] = [
    ("contrast", 5),
    ("phase", 11),
    ("repetition", 10),
    ("set", 15),
];

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
    write_series(path, format, &[], &[slices], &UNPLACED)
}

/// Writes a series of volumes to `path` in `format`, atomically: `volumes[n]` is the point `n`
/// of the grid `axes` (counter names of [`BART_COUNTER_DIMS`] and sizes, row-major: the last
/// axis fastest), each a volume of slices of one shape. Without axes, one volume, as
/// [`write_volume`] writes it. The layouts are in the module documentation. `space` places
/// the voxels `[row, column, slice]` in a NIfTI file (its sform, qform and `pixdim`); the
/// complex formats hold no placement.
pub fn write_series<V: AsRef<[Array2<C32>]>>(
    path: &Path,
    format: VolumeFormat,
    axes: &[(&str, usize)],
    volumes: &[V],
    space: &VoxelSpace,
) -> Result<()> {
    let volumes: Vec<&[Array2<C32>]> = volumes.iter().map(AsRef::as_ref).collect();
    let (n, h, w) = series_shape(path, axes, &volumes)?;
    let invalid = |msg: String| Error::invalid(format!("{}: {msg}", path.display()));
    let sizes: Vec<usize> = axes.iter().map(|a| a.1).collect();
    let at = |v: usize, s: usize, r: usize, c: usize| volumes[v][s][(r, c)];
    match format {
        VolumeFormat::Nifti => {
            // [H, W, slices, counters...]: the first counter on the fourth axis.
            let mut shape = vec![h, w, n];
            shape.extend(&sizes);
            let data = ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
                let v = (3..shape.len()).fold(0, |acc, d| acc * shape[d] + ix[d]);
                at(v, ix[2], ix[0], ix[1]).norm()
            });
            write_nifti_nd(path, &data.view(), space)
        }
        VolumeFormat::Npy => npy::write_npy(path, &stacked(path, axes, &volumes, (n, h, w))?),
        VolumeFormat::Cfl => {
            let mut dims = [1usize; 16];
            dims[0] = h;
            dims[1] = w;
            dims[BART_SLICE_DIM] = n;
            let mut bart_axes = Vec::with_capacity(axes.len());
            for (name, size) in axes {
                let Some(&(_, d)) = BART_COUNTER_DIMS.iter().find(|(c, _)| c == name) else {
                    return Err(invalid(format!(
                        "no BART dimension for the axis {name:?}; expected one of {:?}",
                        BART_COUNTER_DIMS.map(|(c, _)| c)
                    )));
                };
                dims[d] = *size;
                bart_axes.push(d);
            }
            // Column-major: the element at (row, column, dims...) sits at the sum of each index
            // times the product of the dimensions below its own.
            let strides: Vec<usize> = (0..16).map(|d| dims[..d].iter().product()).collect();
            let mut data = vec![C32::new(0.0, 0.0); dims.iter().product()];
            for (v, slices) in volumes.iter().enumerate() {
                let mut rest = v;
                let mut base = 0;
                for (&d, &size) in bart_axes.iter().zip(&sizes).rev() {
                    base += rest % size * strides[d];
                    rest /= size;
                }
                for (k, slice) in slices.iter().enumerate() {
                    let offset = base + k * strides[BART_SLICE_DIM];
                    for ((r, c), &x) in slice.indexed_iter() {
                        data[offset + r + h * c] = x;
                    }
                }
            }
            // Dimensions to SLICE always, as for one volume; BATCH's too when a series uses it.
            let used = dims
                .iter()
                .rposition(|&d| d > 1)
                .map_or(0, |d| d + 1)
                .max(BART_SLICE_DIM + 1);
            cfl::write_array(path, &dims[..used], &data)
        }
    }
}

/// [`write_series`] for real volumes (such as uncertainty maps): NIfTI as it writes magnitudes,
/// `.npy` as float32 `(counters..., slices, height, width)`, BART (complex only) with zero
/// imaginary parts.
pub fn write_series_real<V: AsRef<[Array2<f32>]>>(
    path: &Path,
    format: VolumeFormat,
    axes: &[(&str, usize)],
    volumes: &[V],
    space: &VoxelSpace,
) -> Result<()> {
    let volumes: Vec<&[Array2<f32>]> = volumes.iter().map(AsRef::as_ref).collect();
    if format == VolumeFormat::Npy {
        let shape = series_shape(path, axes, &volumes)?;
        return npy::write_npy(path, &stacked(path, axes, &volumes, shape)?);
    }
    // Other formats through the complex writer (BART holds complex values only).
    let complex: Vec<Vec<Array2<C32>>> = volumes
        .iter()
        .map(|v| v.iter().map(|s| s.mapv(|x| C32::new(x, 0.0))).collect())
        .collect();
    write_series(path, format, axes, &complex, space)
}

/// The slice count and slice shape `(n, h, w)` of a series of volumes on the grid `axes`:
/// one volume per grid point, each of `n >= 1` slices of one shape, else an error naming
/// `path` and what differs.
fn series_shape<T>(
    path: &Path,
    axes: &[(&str, usize)],
    volumes: &[&[Array2<T>]],
) -> Result<(usize, usize, usize)> {
    let invalid = |msg: String| Error::invalid(format!("{}: {msg}", path.display()));
    let grid: usize = axes.iter().map(|a| a.1).product();
    if volumes.len() != grid {
        return Err(invalid(format!(
            "{} volumes for a series of {grid} ({axes:?}); expected one per image",
            volumes.len()
        )));
    }
    let Some(first) = volumes.first().and_then(|v| v.first()) else {
        return Err(invalid("no slices to write".to_string()));
    };
    let (h, w) = first.dim();
    let n = volumes[0].len();
    for (v, slices) in volumes.iter().enumerate() {
        if slices.len() != n {
            return Err(invalid(format!(
                "volume {v} has {} slices, volume 0 {n}; expected one count",
                slices.len()
            )));
        }
        if let Some(i) = slices.iter().position(|s| s.dim() != (h, w)) {
            return Err(invalid(format!(
                "slice {i} of volume {v} is {:?}, slice 0 of volume 0 is {:?}; expected one shape",
                slices[i].dim(),
                (h, w)
            )));
        }
    }
    Ok((n, h, w))
}

/// A series checked by [`series_shape`] as one array `(counters..., slices, height, width)`,
/// NumPy's layout.
fn stacked<T: Copy>(
    path: &Path,
    axes: &[(&str, usize)],
    volumes: &[&[Array2<T>]],
    (n, h, w): (usize, usize, usize),
) -> Result<ArrayD<T>> {
    let mut shape: Vec<usize> = axes.iter().map(|a| a.1).collect();
    shape.extend([n, h, w]);
    let data: Vec<T> = volumes
        .iter()
        .flat_map(|v| v.iter().flat_map(|s| s.iter().copied()))
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
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
        // A series: phase on TIME2 (11) and set on BATCH (15), NumPy's counters first.
        let series: Vec<Vec<Array2<C32>>> = (0..6)
            .map(|v| {
                slices
                    .iter()
                    .map(|s| s.mapv(|x| x + C32::new(1000.0 * v as f32, 0.0)))
                    .collect()
            })
            .collect();
        let axes = [("phase", 2), ("set", 3)];
        let base = d.join("series");
        write_series(&base, VolumeFormat::Cfl, &axes, &series, &UNPLACED).unwrap();
        let a = cfl::read_array(&base).unwrap();
        assert_eq!(a.dims, [4, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 3, 1, 3]);
        // Column-major strides: row 1, column 4, phase 8, slice 16, set 48. Volume v is
        // phase v / 3, set v % 3.
        for (v, k, r, c) in [(5, 2, 3, 1), (1, 0, 0, 0), (3, 1, 2, 0)] {
            let at = r + 4 * c + 8 * (v / 3) + 16 * k + 48 * (v % 3);
            assert_eq!(a.data[at], series[v][k][(r, c)], "{v} {k} {r} {c}");
        }
        let npy_series = d.join("series.npy");
        write_series(&npy_series, VolumeFormat::Npy, &axes, &series, &UNPLACED).unwrap();
        let back: ndarray::ArrayD<C32> = npy::read_npy_as(&npy_series).unwrap();
        assert_eq!(back.shape(), &[2, 3, 3, 4, 2]);
        assert_eq!(back[[1, 2, 2, 3, 1]], series[5][2][(3, 1)]);
        let e = write_series(&base, VolumeFormat::Cfl, &axes, &series[..5], &UNPLACED)
            .unwrap_err()
            .to_string();
        assert!(e.contains("5 volumes for a series of 6"), "{e}");
        let e = write_series(&base, VolumeFormat::Cfl, &[("echo", 6)], &series, &UNPLACED)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no BART dimension for the axis \"echo\""), "{e}");

        // A .cfl with coils is not a volume of images.
        cfl::write_array(d.join("coils"), &[4, 2, 1, 3], &[C32::new(1.0, 0.0); 24]).unwrap();
        let e = read_volume(&d.join("coils")).unwrap_err().to_string();
        assert!(e.contains("BART dimension 3"), "{e}");
    }
}
