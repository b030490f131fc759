//! The k-space of a volume run of `msm reconstruct`: a fastMRI / ISMRMRD HDF5 file, or a stack of
//! slices in a NumPy or BART file (the layouts those tools use for several slices), read the
//! same way slice by slice.

use super::data;
use msm::io::fastmri::geometry::placement;
use msm::io::fastmri::{
    detect_entries, detect_mask, CounterChoice, HdfScan, ImageChoice, RawOptions, Selection,
    COUNTERS,
};
use msm::io::space::VoxelSpace;
use msm::io::{cfl, npy};
use msm::mask::Mask;
use msm::volume::grid::GridPlan;
use msm::volume::output::{BART_SLICE_DIM, UNPLACED};
use msm::{Error, Result, C32};
use ndarray::{s, Array3, Array4, Ix3, Ix4, ShapeBuilder};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How ISMRMRD raw data is read: the options of every command that reads k-space.
#[derive(clap::Args, Debug, Clone)]
pub struct RawArgs {
    /// ISMRMRD raw data: keep the receive channels' noise as recorded, instead of prewhitening
    /// the k-space with the file's noise scan (which whitens the noise, and weights the image
    /// by the whitened coil sensitivities' norm).
    #[arg(long)]
    pub no_prewhiten: bool,
    /// ISMRMRD raw data: take the noise scan (its noise measurements, flag 19) from this
    /// ISMRMRD file instead of the file's own: a noise scan taken as a measurement of its own,
    /// as Gadgetron's noise dependency (`siemens_to_ismrmrd -z 1` of a multi-measurement file).
    #[arg(long, value_name = "FILE")]
    pub noise: Option<PathBuf>,
    /// ISMRMRD raw data: the contrast (echo) to read, when the file holds several; `all`
    /// (reconstruct, recon): every one, an axis of the output.
    #[arg(long, value_name = "N|all")]
    pub contrast: Option<CounterChoice>,
    /// ISMRMRD raw data: the (cardiac) phase to read, when the file holds several; `all`
    /// (reconstruct, recon): every one, an axis of the output.
    #[arg(long, value_name = "N|all")]
    pub phase: Option<CounterChoice>,
    /// ISMRMRD raw data: the repetition to read, when the file holds several; `all`
    /// (reconstruct, recon): every one, an axis of the output.
    #[arg(long, value_name = "N|all")]
    pub repetition: Option<CounterChoice>,
    /// ISMRMRD raw data: the set (e.g. flow encoding) to read, when the file holds several;
    /// `all` (reconstruct, recon): every one, an axis of the output.
    #[arg(long, value_name = "N|all")]
    pub set: Option<CounterChoice>,
}

impl RawArgs {
    /// The counters' choices.
    pub fn choice(&self) -> ImageChoice {
        ImageChoice {
            contrast: self.contrast,
            phase: self.phase,
            repetition: self.repetition,
            set: self.set,
        }
    }

    /// The reader's options for one image, `select`.
    pub fn options_for(&self, select: Selection) -> RawOptions {
        RawOptions {
            prewhiten: !self.no_prewhiten,
            select,
            noise_file: self.noise.clone(),
        }
    }

    /// The reader's options of a command that reads one image: `all` is refused, naming the
    /// commands that take it.
    pub fn options(&self) -> Result<RawOptions> {
        let choice = self.choice();
        if let Some((_, name)) = choice
            .choices()
            .iter()
            .zip(COUNTERS)
            .find(|(c, _)| **c == Some(CounterChoice::All))
        {
            return Err(Error::invalid(format!(
                "--{name} all reads every image of a series, which `msm reconstruct` and `msm \
                 recon` write as an axis of a volume output; expected one value (--{name} N) \
                 here"
            )));
        }
        Ok(self.options_for(choice.fixed()))
    }
}

/// Where [`Scan::voxel_space`]'s placement came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// Scanner coordinates, from the acquisitions' geometry.
    Scanner,
    /// The file states no geometry: the header's voxel size (else 1 mm) along the world axes.
    NotStated,
    /// The acquisitions state a geometry that cannot give one affine (why): the header's
    /// voxel size along the world axes.
    Unusable(String),
}

impl Placed {
    /// A note for stderr when stated geometry was not used, naming the file `path`.
    pub fn note(&self, path: &Path) -> Option<String> {
        match self {
            Placed::Unusable(why) => Some(format!(
                "note: {}: the NIfTI output is not placed in scanner coordinates (voxel axes \
                 along the world axes): {why}",
                path.display()
            )),
            _ => None,
        }
    }
}

/// Whether the images of a series lie where its first does: the output of a series has one
/// placement, the first image's, so the images that lie elsewhere (repositioned between
/// repetitions, or moved by prospective motion correction) are named in a note.
pub struct SeriesPlacement {
    /// The first image's placement, when it is in scanner coordinates.
    first: Option<VoxelSpace>,
    /// The output volume's voxels `[rows, columns, slices]`.
    dims: [usize; 3],
    /// The images found elsewhere, with the largest distance (mm) between their voxels and
    /// the first image's.
    moved: Vec<(String, f64)>,
}

/// Images closer than this (mm) to the first lie where it does.
const SAME_PLACE_MM: f64 = 0.01;

impl SeriesPlacement {
    /// The check against the first image's placement `first` (`placed`), for outputs of
    /// `slices` slices on `plan`'s output grid.
    pub fn new(first: &VoxelSpace, placed: &Placed, slices: usize, plan: &GridPlan) -> Self {
        SeriesPlacement {
            first: matches!(placed, Placed::Scanner).then_some(*first),
            dims: [plan.output.0, plan.output.1, slices],
            moved: Vec::new(),
        }
    }

    /// Checks the image `label` of `scan` (slices `range` on `plan`).
    pub fn check(
        &mut self,
        scan: &Scan,
        label: &str,
        range: &Range<usize>,
        plan: &GridPlan,
    ) -> Result<()> {
        let Some(first) = &self.first else {
            return Ok(());
        };
        let (space, placed) = scan.voxel_space(range, plan)?;
        if !matches!(placed, Placed::Scanner) {
            return Ok(());
        }
        // The largest distance over the volume's 8 corners (the maps are affine).
        let last = self.dims.map(|d| d.saturating_sub(1) as f64);
        let far = (0..8)
            .map(|bits: u32| {
                let corner = std::array::from_fn(|d| f64::from(bits >> d & 1) * last[d]);
                let (a, b) = (first.world(corner), space.world(corner));
                (0..3).map(|d| (a[d] - b[d]).powi(2)).sum::<f64>().sqrt()
            })
            .fold(0.0f64, f64::max);
        if far > SAME_PLACE_MM {
            self.moved.push((label.to_string(), far));
        }
        Ok(())
    }

    /// A note for stderr naming the images that lie elsewhere than the first, if any, for the
    /// file `path`.
    pub fn note(&self, path: &Path) -> Option<String> {
        (!self.moved.is_empty()).then(|| {
            format!(
                "note: {}: {} lie elsewhere than the first image (the acquisitions' positions or \
                 directions differ, e.g. under prospective motion correction); the NIfTI output \
                 places every image where the first lies",
                path.display(),
                self.moved
                    .iter()
                    .map(|(label, mm)| format!("{label} up to {mm:.2} mm away"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// A multi-slice multi-coil k-space.
pub enum Scan {
    /// A fastMRI HDF5 file, read one slice at a time, or ISMRMRD raw data, assembled.
    H5(Box<HdfScan>),
    /// A stack read whole: `.npy` `(slices, coils, H, W)` or `.cfl` `[H, W, 1, coils]` with
    /// slices along BART dimension 13 (SLICE).
    Stack {
        /// The file it came from.
        path: PathBuf,
        /// `(slices, coils, H, W)`.
        kspace: Array4<C32>,
    },
}

impl Scan {
    /// Opens `path`: HDF5 by its extension (ISMRMRD raw data read as `raw` says), else a stack
    /// ([`read_stack`]).
    pub fn open(path: &Path, raw: &RawOptions) -> Result<Scan> {
        if data::is_hdf5(path) {
            return Ok(Scan::H5(Box::new(HdfScan::open(path, raw)?)));
        }
        let kspace = read_stack(path, "multi-coil k-space")?;
        if kspace.dim().1 == 0 {
            return Err(Error::format(path, "has zero coils; expected at least one"));
        }
        Ok(Scan::Stack {
            path: path.to_path_buf(),
            kspace,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            Scan::H5(f) => f.path(),
            Scan::Stack { path, .. } => path,
        }
    }

    /// Number of slices.
    pub fn num_slices(&self) -> usize {
        match self {
            Scan::H5(f) => f.num_slices(),
            Scan::Stack { kspace, .. } => kspace.dim().0,
        }
    }

    /// Number of coils.
    pub fn coils(&self) -> usize {
        match self {
            Scan::H5(f) => f.coils(),
            Scan::Stack { kspace, .. } => kspace.dim().1,
        }
    }

    /// One coil's k-space grid `(height, width)`.
    pub fn kspace_size(&self) -> (usize, usize) {
        match self {
            Scan::H5(f) => f.kspace_size(),
            Scan::Stack { kspace, .. } => (kspace.dim().2, kspace.dim().3),
        }
    }

    /// The recon size an HDF5 file states; a stack states none (its output is its grid).
    pub fn recon_size(&self) -> Option<(usize, usize)> {
        match self {
            Scan::H5(f) => f.recon_size(),
            Scan::Stack { .. } => None,
        }
    }

    /// The voxel size in mm an HDF5 file's header states (`[readout, phase encode, slice]`); a
    /// stack states none.
    pub fn voxel_size_mm(&self) -> Option<[f32; 3]> {
        match self {
            Scan::H5(f) => f.voxel_size_mm(),
            Scan::Stack { .. } => None,
        }
    }

    /// The placement of an output volume of the slices `range` on `plan`'s output grid: in
    /// scanner coordinates where ISMRMRD raw data states each slice's geometry and the header
    /// its field of view ([`msm::io::fastmri::geometry`]); else the header's voxel size; else
    /// 1 mm voxels. [`Placed`] says which, and why stated geometry could not be used.
    pub fn voxel_space(
        &self,
        range: &Range<usize>,
        plan: &GridPlan,
    ) -> Result<(VoxelSpace, Placed)> {
        let geometry: Option<Vec<_>> = match self {
            Scan::H5(f) => range.clone().map(|k| f.slice_geometry(k)).collect(),
            Scan::Stack { .. } => None,
        };
        let Some(size) = self.voxel_size_mm() else {
            let placed = match geometry {
                Some(_) => Placed::Unusable(
                    "the header states no field of view, so the voxel size is not known".into(),
                ),
                None => Placed::NotStated,
            };
            return Ok((UNPLACED, placed));
        };
        let scaled =
            VoxelSpace::scaled(size).map_err(|e| Error::format(self.path(), e.to_string()))?;
        let Some(slices) = geometry else {
            return Ok((scaled, Placed::NotStated));
        };
        let [dr, dc, dz] = size.map(f64::from);
        Ok(
            match placement(&slices, [dr, dc], dz, plan.output_centre()) {
                Ok(space) => (space, Placed::Scanner),
                Err(e) => (scaled, Placed::Unusable(e)),
            },
        )
    }

    /// Slice `index`'s k-space of a separate reference scan, where ISMRMRD raw data has one:
    /// what its coil maps are estimated from.
    pub fn slice_reference(&self, index: usize) -> Option<&Array3<C32>> {
        match self {
            Scan::H5(f) => f.slice_reference(index),
            Scan::Stack { .. } => None,
        }
    }

    /// Whether the slices are a 3-D raw scan's taken along the readout (undersampled along
    /// both phase encodes, or along the partitions: a slice's mask is per entry).
    pub fn along_readout(&self) -> bool {
        match self {
            Scan::H5(f) => f.along_readout(),
            Scan::Stack { .. } => false,
        }
    }

    /// The mask of one slice's k-space (or its reference scan's) `(coils, H, W)` from the
    /// entries that hold data: per entry for slices along the readout (a 2-D pattern, or whole
    /// columns), else per column.
    pub fn detected_mask(&self, kspace: &Array3<C32>) -> Mask {
        if self.along_readout() {
            detect_entries(kspace.view())
        } else {
            Mask::Columns(detect_mask(kspace.view()))
        }
    }

    /// The column mask an HDF5 file stores; a stack stores none (`--mask`, or detected).
    pub fn mask(&self) -> Option<&[bool]> {
        match self {
            Scan::H5(f) => f.mask(),
            Scan::Stack { .. } => None,
        }
    }

    /// The values of the counters of which the file has several (ISMRMRD raw data), as
    /// `(index in COUNTERS, value read)`: the key of [`msm::volume::image_seed`]. Empty for a
    /// file of one image.
    pub fn image_key(&self) -> Vec<(usize, u64)> {
        let Scan::H5(f) = self else {
            return Vec::new();
        };
        let HdfScan::Raw(raw) = f.as_ref() else {
            return Vec::new();
        };
        // One entry per counter, in COUNTERS' order.
        raw.counters()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.values.len() > 1)
            .map(|(i, c)| (i, c.selected))
            .collect()
    }

    /// K-space of slice `index`, `(coils, H, W)`.
    pub fn slice_kspace(&self, index: usize) -> Result<Array3<C32>> {
        match self {
            Scan::H5(f) => f.slice_kspace(index),
            Scan::Stack { path, kspace } if index >= kspace.dim().0 => Err(Error::format(
                path,
                format!(
                    "slice {index} is out of range; the stack has {} slices",
                    kspace.dim().0
                ),
            )),
            Scan::Stack { kspace, .. } => Ok(kspace.slice(s![index, .., .., ..]).to_owned()),
        }
    }
}

/// Whether `path` is k-space that `msm reconstruct` runs as a volume: HDF5, a 4-D `.npy`, or a
/// `.cfl` with more than one slice along BART dimension 13 (SLICE). Reads the header only.
pub fn is_volume(path: &Path) -> Result<bool> {
    Ok(match data::kind(path) {
        _ if data::is_hdf5(path) => true,
        data::Kind::Npy => npy::read_shape(path)?.len() == 4,
        data::Kind::Cfl => cfl::read_dims(path)?
            .get(BART_SLICE_DIM)
            .is_some_and(|&n| n > 1),
        data::Kind::Png | data::Kind::Nifti => false,
    })
}

/// Reads `what` (k-space or coil maps) stored for several slices as `(slices, coils, H, W)`:
/// a `.npy` of 3 dimensions (one slice) or 4, or a `.cfl` `[H, W, 1, coils]` with slices along
/// BART dimension 13 (SLICE). Errors name the file and the layout expected.
pub fn read_stack(path: &Path, what: &str) -> Result<Array4<C32>> {
    match data::kind(path) {
        data::Kind::Npy => match npy::read_shape(path)?.len() {
            3 => Ok(npy::read_npy_as::<C32, Ix3>(path)?.insert_axis(ndarray::Axis(0))),
            _ => npy::read_npy_as::<C32, Ix4>(path),
        },
        data::Kind::Png | data::Kind::Nifti => Err(data::no_coils(path)),
        data::Kind::Cfl => {
            let array = cfl::read_array(path)?;
            if let Some(d) = (0..array.dims.len())
                .find(|&d| ![0, 1, 3, BART_SLICE_DIM].contains(&d) && array.dim(d) != 1)
            {
                return Err(Error::format(
                    path,
                    format!(
                        "has dimensions {:?} with {} along BART dimension {d}; expected {what} \
                         [H, W, 1, coils] with slices along dimension {BART_SLICE_DIM} (SLICE)",
                        array.dims,
                        array.dim(d)
                    ),
                ));
            }
            let (h, w, c, n) = (
                array.dim(0),
                array.dim(1),
                array.dim(3),
                array.dim(BART_SLICE_DIM),
            );
            // Column-major [h, w, c, n] read as (h, w, c, n) with Fortran strides.
            Ok(Array4::from_shape_vec((h, w, c, n).f(), array.data)
                .map_err(|e| Error::format(path, e.to_string()))?
                .permuted_axes([3, 2, 0, 1])
                .as_standard_layout()
                .into_owned())
        }
    }
}
