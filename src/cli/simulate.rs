//! `msm simulate`: a simulated undersampled multi-coil acquisition from a magnitude image.

use msm::io::{cfl, nifti, npy, png};
use msm::mask::{Acs, Mask, RadialDensity};
use msm::simulate::{simulate, Pattern, SimOptions};
use msm::{Error, Result};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Options of `msm simulate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Magnitude image: NIfTI volume (.nii, .nii.gz), PNG, or 2-D .npy (real or complex).
    pub input: PathBuf,
    /// Output prefix: writes <prefix>_ksp, <prefix>_maps, <prefix>_mask, <prefix>_ref (.cfl/.hdr).
    pub output: PathBuf,
    /// Slice plane of a NIfTI volume.
    #[arg(long, value_enum, default_value_t = PlaneArg::Axial)]
    pub plane: PlaneArg,
    /// Slice index in that plane (default: the middle slice).
    #[arg(long)]
    pub slice: Option<usize>,
    /// Grid size (square); overridden by --height/--width.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Grid height (readout).
    #[arg(long)]
    pub height: Option<usize>,
    /// Grid width (phase encode).
    #[arg(long)]
    pub width: Option<usize>,
    /// Number of coils (birdcage maps).
    #[arg(long, default_value_t = 8)]
    pub coils: usize,
    /// Acceleration R.
    #[arg(long, default_value_t = 4.0)]
    pub accel: f64,
    /// Number of fully sampled central (ACS) lines (for random-2d: the side of the fully
    /// sampled central square).
    #[arg(long, default_value_t = 20)]
    pub acs: usize,
    /// Sampling pattern.
    #[arg(long, value_enum, default_value_t = PatternArg::Random)]
    pub pattern: PatternArg,
    /// Sampling density of variable-density-2d and poisson-disc-2d masks: relative weights
    /// over equal bins of the normalised k-space radius, centre to corners, comma-separated
    /// (default: (1 - r)^2 over 16 bins).
    #[arg(long, value_name = "WEIGHTS", conflicts_with = "density_of")]
    pub density: Option<msm::mask::RadialDensity>,
    /// Sampling density of variable-density-2d and poisson-disc-2d masks, measured from a 2-D
    /// mask of the same grid (.npy, .cfl, .png, .nii): per radius bin, the fraction it keeps
    /// outside the central --acs square, as msm-train measures scans' masks. Simulates a
    /// scanner's compressed-sensing pattern (e.g. one written by `bart poisson`).
    #[arg(long, value_name = "MASK")]
    pub density_of: Option<PathBuf>,
    /// Noise std of the real and of the imaginary part of each measured k-space entry
    /// (image peak is 1).
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
    /// Random seed (phase, mask, noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write .npy copies of every output.
    #[arg(long)]
    pub npy: bool,
    /// Also write a PNG of the reference magnitude.
    #[arg(long)]
    pub png: bool,
}

/// Slice planes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum PlaneArg {
    /// Fixed z.
    Axial,
    /// Fixed y.
    Coronal,
    /// Fixed x.
    Sagittal,
}

/// Sampling patterns.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum PatternArg {
    /// fastMRI random columns plus ACS.
    Random,
    /// Every R-th column plus ACS.
    Equispaced,
    /// Random entries plus a central ACS square (side --acs): k-space undersampled along both
    /// axes, like the (phase encode, partition) slices of a 3-D scan; for models trained with
    /// 2-D masks (msm-train data.mask "random-2d").
    #[value(name = "random-2d")]
    Random2d,
    /// Like random-2d, but entries far from the centre are kept less often (density
    /// (1 - r)^2, r the k-space radius, 1 at the corners), as compressed-sensing 3-D protocols
    /// sample; for models trained with msm-train data.mask "variable-density-2d".
    #[value(name = "variable-density-2d")]
    VariableDensity2d,
    /// The density of variable-density-2d drawn as a Poisson disc: kept entries no closer than
    /// a radius that grows towards the edge, and no gaps wider (BART's poisson, the vendors'
    /// compressed-sensing 3-D sequences); for models trained with msm-train data.mask
    /// "variable-density-2d".
    #[value(name = "poisson-disc-2d")]
    PoissonDisc2d,
}

impl From<PatternArg> for Pattern {
    fn from(p: PatternArg) -> Self {
        match p {
            PatternArg::Random => Pattern::Random,
            PatternArg::Equispaced => Pattern::Equispaced,
            PatternArg::Random2d => Pattern::Random2d,
            PatternArg::VariableDensity2d => Pattern::VariableDensity2d,
            PatternArg::PoissonDisc2d => Pattern::PoissonDisc2d,
        }
    }
}

/// Loads a magnitude slice from a NIfTI volume, PNG or 2-D `.npy`.
pub fn load_magnitude(path: &Path, plane: PlaneArg, slice: Option<usize>) -> Result<Array2<f32>> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        let vol = nifti::read_nifti_canonical(path)?;
        let plane = match plane {
            PlaneArg::Axial => nifti::Plane::Axial,
            PlaneArg::Coronal => nifti::Plane::Coronal,
            PlaneArg::Sagittal => nifti::Plane::Sagittal,
        };
        let index = slice.unwrap_or(vol.slice_count(plane) / 2);
        vol.slice(plane, index)
            .map_err(|e| Error::format(path, e.to_string()))
    } else if name.ends_with(".png") {
        png::read_png(path)
    } else if name.ends_with(".npy") {
        Ok(match npy::read_npy(path)? {
            npy::NpyArray::Real(a) => a
                .into_dimensionality::<ndarray::Ix2>()
                .map_err(|_| Error::format(path, "expected a 2-D image"))?
                .mapv(f32::abs),
            npy::NpyArray::Complex(a) => a
                .into_dimensionality::<ndarray::Ix2>()
                .map_err(|_| Error::format(path, "expected a 2-D image"))?
                .mapv(|v| v.norm()),
        })
    } else {
        Err(Error::format(
            path,
            "unknown input type; expected .nii, .nii.gz, .png or .npy",
        ))
    }
}

/// The sampling density of a 2-D mask file on the simulation's grid, outside its central
/// `acs x acs` square.
fn measured_density(path: &Path, opts: &SimOptions, acs: usize) -> Result<RadialDensity> {
    match super::data::read_mask(path, opts.height, opts.width)? {
        Mask::Pattern(p) => {
            RadialDensity::estimate([&p], acs).map_err(|e| Error::format(path, e.to_string()))
        }
        Mask::Columns(_) => Err(Error::format(
            path,
            "a column mask has no 2-D sampling density; expected a 2-D mask whose entries \
             vary within columns",
        )),
    }
}

/// Runs `msm simulate`.
pub fn run(a: Args) -> Result<()> {
    let image = load_magnitude(&a.input, a.plane, a.slice)?;
    let opts = SimOptions {
        height: a.height.unwrap_or(a.size),
        width: a.width.unwrap_or(a.size),
        coils: a.coils,
        accel: a.accel,
        acs: Acs::Lines(a.acs),
        pattern: a.pattern.into(),
        noise_std: a.noise,
        ..SimOptions::default()
    };
    if opts.height == 0 || opts.width == 0 {
        return Err(Error::invalid("the grid size must be at least 1x1"));
    }
    let density = match (&a.density, &a.density_of) {
        (Some(d), _) => Some(d.clone()),
        (None, Some(path)) => Some(measured_density(path, &opts, a.acs)?),
        (None, None) => None,
    };
    let opts = SimOptions { density, ..opts };
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    if image.iter().all(|&v| v == 0.0) {
        return Err(Error::format(
            &a.input,
            "the image is all zero; expected a magnitude image with signal",
        ));
    }
    let acq = simulate(image.view(), &opts, &mut rng)?;
    let mask = &acq.mask;
    let p = |s: &str| super::data::with_suffix(&a.output, s);
    // Every output or none: a failure half-way must not leave k-space beside stale maps.
    let mut files = cfl::encode_coils(p("_ksp"), &acq.kspace)?;
    files.extend(cfl::encode_coils(p("_maps"), &acq.maps)?);
    files.extend(cfl::encode_mask(p("_mask"), mask)?);
    files.extend(cfl::encode_image(p("_ref"), &acq.reference)?);
    if a.npy {
        // Column masks as a 1-D array (one value per column), 2-D masks as `(H, W)`.
        let mask_npy = match mask {
            msm::mask::Mask::Columns(c) => npy::encode_npy(
                &p("_mask.npy"),
                &ndarray::Array1::from_iter(c.iter().map(|&k| f32::from(u8::from(k)))),
            )?,
            msm::mask::Mask::Pattern(m) => {
                npy::encode_npy(&p("_mask.npy"), &m.mapv(|k| f32::from(u8::from(k))))?
            }
        };
        for (suffix, bytes) in [
            ("_ksp.npy", npy::encode_npy(&p("_ksp.npy"), &acq.kspace)?),
            ("_maps.npy", npy::encode_npy(&p("_maps.npy"), &acq.maps)?),
            ("_mask.npy", mask_npy),
            ("_ref.npy", npy::encode_npy(&p("_ref.npy"), &acq.reference)?),
        ] {
            files.push((p(suffix), bytes));
        }
    }
    if a.png {
        let magnitude = acq.reference.mapv(|v| v.norm());
        let bytes = png::encode_png(&p("_ref.png"), &magnitude, png::Window::Auto)?;
        files.push((p("_ref.png"), bytes));
    }
    msm::io::atomic::write_atomic_set(&files)?;
    if let Some(d) = &opts.density {
        eprintln!("sampling density (centre to corners): {d}");
    }
    eprintln!(
        "simulated {}x{} k-space, {} coils, {:.1}% of {} kept (R = {}), noise std {}",
        opts.height,
        opts.width,
        opts.coils,
        100.0 * mask.fraction(),
        match mask {
            msm::mask::Mask::Columns(_) => "columns",
            msm::mask::Mask::Pattern(_) => "entries",
        },
        a.accel,
        a.noise
    );
    Ok(())
}
