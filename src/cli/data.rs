//! Reading and writing the CLI's arrays by file extension: `.npy` (NumPy), `.png` (magnitude
//! preview, write only for complex data), `.nii` / `.nii.gz` (a one-slice NIfTI-1 magnitude
//! image), anything else a BART `.cfl/.hdr` pair.

use msm::coils::Compression;
use msm::io::fastmri::detect_entries;
use msm::io::nifti::{self, Volume};
use msm::io::{atomic, cfl, npy, png};
use msm::mask::Mask;
use msm::sense::Sense;
use msm::volume::VolumeFormat;
use msm::{Error, Result, C32};
use ndarray::{Array2, Array3, Axis, Ix1, Ix2, Ix3};
use std::path::{Path, PathBuf};

/// File kinds the CLI understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// NumPy `.npy`.
    Npy,
    /// PNG picture.
    Png,
    /// NIfTI-1 `.nii` / `.nii.gz` (magnitude images).
    Nifti,
    /// BART `.cfl/.hdr`.
    Cfl,
}

/// The kind of `path`, from its extension.
pub fn kind(path: &Path) -> Kind {
    // The names NIfTI is written under, as the volume writer knows them.
    if matches!(VolumeFormat::of(path), Ok(VolumeFormat::Nifti)) {
        return Kind::Nifti;
    }
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
    {
        Some(e) if e == "npy" => Kind::Npy,
        Some(e) if e == "png" => Kind::Png,
        _ => Kind::Cfl,
    }
}

/// Whether `path` names an HDF5 file (`.h5`, `.hdf5`): fastMRI / ISMRMRD k-space.
pub fn is_hdf5(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("h5") || e.eq_ignore_ascii_case("hdf5"))
}

/// `path` with `suffix` appended to its last component (`out` -> `out.png`, `acq` ->
/// `acq_ksp`): the names of a command's outputs from one prefix.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Checks before any work that multi-coil data can be written to `path` (not a PNG or NIfTI
/// file, an existing folder).
pub fn check_coils_output(path: &Path) -> Result<()> {
    if matches!(kind(path), Kind::Png | Kind::Nifti) {
        return Err(no_coils(path));
    }
    atomic::check_folder(path)
}

/// The error for multi-coil data in `path`, a magnitude format (PNG, NIfTI).
pub fn no_coils(path: &Path) -> Error {
    let format = match kind(path) {
        Kind::Png => "a PNG",
        Kind::Nifti => "a NIfTI magnitude image",
        Kind::Npy | Kind::Cfl => "this file",
    };
    Error::format(
        path,
        format!("{format} cannot hold complex multi-coil data; expected a .cfl or .npy file"),
    )
}

/// Writes multi-coil data `(coils, H, W)`: `.npy` complex64, else BART `[H, W, 1, coils]`.
pub fn write_coils(path: &Path, data: &Array3<C32>) -> Result<()> {
    check_coils_output(path)?;
    match kind(path) {
        Kind::Npy => npy::write_npy(path, data),
        _ => cfl::write_coils(path, data),
    }
}

/// Reads multi-coil data `(coils, H, W)` (k-space or maps). A 2-D file is one coil.
pub fn read_coils(path: &Path) -> Result<Array3<C32>> {
    match kind(path) {
        Kind::Npy => match npy::read_shape(path)?.len() {
            2 => Ok(npy::read_npy_as::<C32, Ix2>(path)?.insert_axis(ndarray::Axis(0))),
            _ => npy::read_npy_as::<C32, Ix3>(path),
        },
        Kind::Png | Kind::Nifti => Err(no_coils(path)),
        Kind::Cfl => cfl::read_coils(path),
    }
}

/// Reads a complex image `(H, W)` (PNG and NIfTI give a real image; a NIfTI file must hold one
/// slice, indexed `[row, column, 0]` as [`write_nifti_image`] writes it).
pub fn read_image(path: &Path) -> Result<Array2<C32>> {
    match kind(path) {
        Kind::Npy => npy::read_npy_as::<C32, Ix2>(path),
        Kind::Png => Ok(png::read_png(path)?.mapv(|v| C32::new(v, 0.0))),
        Kind::Nifti => {
            let v = nifti::read_nifti(path)?;
            match v.data.dim() {
                (_, _, 1) => Ok(v.data.index_axis(Axis(2), 0).mapv(|x| C32::new(x, 0.0))),
                (h, w, n) => Err(Error::format(
                    path,
                    format!("holds {h}x{w}x{n} voxels; expected one slice (H x W x 1)"),
                )),
            }
        }
        Kind::Cfl => cfl::read_image(path),
    }
}

/// Writes a complex image: `.npy` complex64, `.png` magnitude (auto window), `.nii` / `.nii.gz`
/// magnitude (f32), else `.cfl`.
pub fn write_image(path: &Path, image: &Array2<C32>) -> Result<()> {
    match kind(path) {
        Kind::Npy => npy::write_npy(path, image),
        Kind::Png => png::write_png(path, &image.mapv(|v| v.norm()), png::Window::Auto),
        Kind::Nifti => write_nifti_image(path, &image.mapv(|v| v.norm())),
        Kind::Cfl => cfl::write_image(path, image),
    }
}

/// Writes a real map `(H, W)` by extension, as [`write_image`] writes a complex one: `.npy`
/// float32, `.png` (auto window), `.nii` / `.nii.gz`, else `.cfl` (real values).
pub fn write_real(path: &Path, map: &Array2<f32>) -> Result<()> {
    match kind(path) {
        Kind::Npy => npy::write_npy(path, map),
        Kind::Png => png::write_png(path, map, png::Window::Auto),
        Kind::Nifti => write_nifti_image(path, map),
        Kind::Cfl => cfl::write_image(path, &map.mapv(|v| C32::new(v, 0.0))),
    }
}

/// Writes a real image `(H, W)` as a one-slice NIfTI-1 volume `H x W x 1` (voxel `[row, column,
/// 0]`, 1 mm voxels), as `msm reconstruct` writes each slice of a volume.
fn write_nifti_image(path: &Path, image: &Array2<f32>) -> Result<()> {
    nifti::write_nifti(
        path,
        &Volume {
            data: image.clone().insert_axis(Axis(2)),
            voxel_size: [1.0; 3],
        },
    )
}

/// Reads a sampling mask for k-space `height x width`: a vector over the width (columns), or a
/// 2-D pattern. A pattern whose columns are each all kept or all skipped becomes a column
/// mask. Values are kept where non-zero.
pub fn read_mask(path: &Path, height: usize, width: usize) -> Result<Mask> {
    let mask = match kind(path) {
        Kind::Npy => match npy::read_shape(path)?.len() {
            1 => Mask::Columns(
                npy::read_npy_as::<f32, Ix1>(path)?
                    .iter()
                    .map(|&v| v != 0.0)
                    .collect(),
            ),
            _ => Mask::Pattern(npy::read_npy_as::<f32, Ix2>(path)?.mapv(|v| v != 0.0)),
        },
        Kind::Png => Mask::Pattern(png::read_png(path)?.mapv(|v| v > 0.5)),
        Kind::Nifti => Mask::Pattern(read_image(path)?.mapv(|v| v.re != 0.0)),
        Kind::Cfl => cfl::read_mask(path)?,
    };
    let mask = mask.simplified();
    if mask.fraction() == 0.0 {
        return Err(Error::format(
            path,
            "the mask keeps no k-space entry (every value is zero); expected non-zero values \
             where samples were acquired",
        ));
    }
    mask.check_shape(height, width).map_err(|e| {
        Error::format(
            path,
            format!("{e}; expected a mask for {height}x{width} k-space"),
        )
    })?;
    Ok(mask)
}

/// An acquisition read from files: k-space, its SENSE operator and the sampling mask.
pub struct Acquisition {
    /// Multi-coil k-space `(coils, H, W)`.
    pub kspace: Array3<C32>,
    /// The SENSE operator built from the coil maps.
    pub op: Sense,
    /// The sampling mask (`--mask`, or the non-zero entries of the k-space).
    pub mask: Mask,
}

impl Acquisition {
    /// The acquisition on `virtual_coils` virtual coils ([`msm::coils::Compression`], BART
    /// `cc -p N -S -A`), k-space and maps by the same matrix; unchanged for `None`. Says on
    /// stderr (unless `quiet`) how much of the k-space energy the virtual coils keep; errors
    /// name `kspace`.
    pub fn compressed(
        self,
        virtual_coils: Option<usize>,
        kspace: &Path,
        quiet: bool,
    ) -> Result<Acquisition> {
        let Some(n) = virtual_coils else {
            return Ok(self);
        };
        let in_file = |e: Error| Error::format(kspace, e.to_string());
        let cc = Compression::svd(self.kspace.view(), n).map_err(in_file)?;
        if !quiet {
            eprintln!(
                "coil compression: {} coils to {n} virtual coils, {:.2}% of the k-space energy \
                 kept",
                self.kspace.dim().0,
                100.0 * cc.kept_energy()
            );
        }
        Ok(Acquisition {
            kspace: cc.apply(self.kspace.view()).map_err(in_file)?,
            op: Sense::new(cc.apply(self.op.maps().view()).map_err(in_file)?).map_err(in_file)?,
            mask: self.mask,
        })
    }
}

/// Reads k-space and coil maps (which must have the same shape) and the mask (from `mask`, or
/// the non-zero entries of the k-space).
pub fn read_acquisition(kspace: &Path, maps: &Path, mask: Option<&Path>) -> Result<Acquisition> {
    let ksp = read_coils(kspace)?;
    let m = read_coils(maps)?;
    if m.dim() != ksp.dim() {
        return Err(Error::format(
            maps,
            format!(
                "coil maps have shape (coils, H, W) = {:?} but the k-space {} has {:?}; expected \
                 the same shape",
                m.dim(),
                kspace.display(),
                ksp.dim()
            ),
        ));
    }
    let (_, h, w) = ksp.dim();
    let mask = match mask {
        Some(p) => read_mask(p, h, w)?,
        None => detect_entries(ksp.view()),
    };
    if mask.fraction() == 0.0 {
        return Err(Error::format(
            kspace,
            "the k-space is zero everywhere, so no sampled entry can be found; expected \
             measured data (or pass --mask)",
        ));
    }
    let op = Sense::new(m).map_err(|e| Error::format(maps, e.to_string()))?;
    Ok(Acquisition {
        kspace: ksp,
        op,
        mask,
    })
}
