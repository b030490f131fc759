//! Training data: what a scanner gives, and nothing more.
//!
//! A [`Loader`] opens a magnitude volume (Colin27 `ch2.nii.gz` from `mricron-data`, read with
//! [`msm::io::nifti::read_nifti_canonical`], in the voxel order closest to RAS) and yields
//! [`Measurement`]s: undersampled (zero outside the mask), optionally noisy, multi-coil k-space
//! with its column mask and coil maps. The clean slice exists only inside the private simulator
//! module and is dropped there; neither `Measurement` nor `Loader` has any way to return it, so
//! the trainer cannot reach a clean image by construction.
//!
//! Slices are cut with [`msm::io::nifti::Volume::slice`], so they have the display orientation
//! the runtime's `msm simulate` uses (axial: anterior at the top, the subject's left-right along
//! the width, which is the phase-encode axis).
//!
//! Held out: the block of axial slices `held_out_axial` (NIfTI k index, half-open) is never drawn,
//! and it is cut out of the volume before coronal and sagittal slices are taken (the parts above
//! and below are joined), so no voxel of the held-out block is ever seen in training.

mod coverage;
mod noise;
mod prepared;
mod scale;
mod scans;
mod sim;

use std::collections::BTreeMap;
use std::path::PathBuf;

use ndarray::Array3;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::loss::MeasBatch;
use msm::io::nifti::{read_nifti_canonical, Plane};
use msm::mask::{Mask, RadialDensity};
use msm::onnx::meta::MaskPattern;
use msm::{Error, Result, C32};

pub use coverage::MaskCoverage;
pub use msm::io::fastmri::{CounterChoice, ImageChoice};
pub use noise::{NoiseEta, NoiseSummary};
pub use prepared::PREPARED_FORMAT;
pub use scale::{ScaleEstimate, SCALE_DRAWS, SCALE_KEY};

/// Where the Debian package `mricron-data` installs the Colin27 template.
pub const DEFAULT_VOLUME: &str = "/usr/share/mricron/templates/ch2.nii.gz";

/// Where measurements come from (simulated from a volume, or read from scans) and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The magnitude volume (NIfTI-1).
    pub volume: PathBuf,
    /// Grid height, and width unless `image_width` says otherwise.
    pub image_size: usize,
    /// Grid width when it is not square (`None`: `image_size`): for scans whose slices are
    /// not square, such as the `(phase encode, partition)` slices of a 3-D scan. Simulated
    /// measurements are square.
    pub image_width: Option<usize>,
    /// Receive coils.
    pub coils: usize,
    /// Which masks: `"random"` (the default: random phase-encode columns with a central ACS
    /// block, fastMRI's), `"random-2d"` (random entries with a central ACS square, for
    /// k-space undersampled along both phase encodes: the slices of a 3-D scan taken along
    /// its readout) or `"variable-density-2d"` (entries kept more often near the centre, as
    /// compressed-sensing 3-D protocols sample; simulated with the density `(1 - r)^2`, and
    /// for scans the density their masks measure, which the model records).
    pub mask: MaskKind,
    /// Acceleration R of the random masks.
    pub acceleration: f64,
    /// Central (ACS) columns always kept; for 2-D masks, the side of the central square always
    /// kept.
    pub acs_lines: usize,
    /// Measurement noise std per real component (0: noiseless), on the scale where the
    /// zero-filled image's maximum is about 1; or, for scans, `"estimate"`: each slice's own
    /// ([`NoiseEta`]).
    pub noise_eta: NoiseEta,
    /// Held-out axial slices `[first, end)` (NIfTI k index); never used in training.
    pub held_out_axial: [usize; 2],
    /// Largest in-plane rotation in degrees.
    pub max_rotation_deg: f64,
    /// Range `[low, high]` of the smooth random phase's largest deviation from its mean, in
    /// radians; each example draws its strength uniformly from it (see
    /// [`msm::simulate::smooth_phase`]; the runtime's `msm simulate` uses pi/2).
    pub phase_strength: [f64; 2],
    /// fastMRI / ISMRMRD HDF5 scans to train on instead of simulating from `volume` (empty, the
    /// default: simulate), or files `msm-train prepare` wrote from such scans (`.safetensors`,
    /// read in place of the scans without preparing them again). Every slice of every file is a training measurement, as `msm
    /// reconstruct` would read it (module `scans`): `coils` is at most the files' coil count
    /// (scans with more are compressed to `coils` virtual coils),
    /// the grid's width (`image_width`, else `image_size`) their width (the readout is
    /// cropped or padded to the grid's height; slices with 2-D masks must be the grid),
    /// `mask`, `acceleration` and
    /// `acs_lines` must describe their masks (checked), and `noise_eta` is their noise std on
    /// the scale where each slice's zero-filled maximum is 1, or `"estimate"`. `volume`, `held_out_axial`,
    /// `max_rotation_deg` and `phase_strength` are not used: hold out whole files yourself.
    pub scans: Vec<PathBuf>,
    /// ISMRMRD raw scans: prewhiten the k-space with the file's noise scan, as the runtime does
    /// unless `--no-prewhiten` (the SURE loss assumes white noise). Models meant for
    /// `--no-prewhiten` reconstructions train with `false`.
    pub prewhiten: bool,
    /// ISMRMRD raw scans whose noise scan is a file of its own (Gadgetron's noise dependency;
    /// the runtime's `--noise FILE`): each listed scan's path, as in `scans`, mapped to its
    /// noise file. A key that is not in `scans` is an error.
    pub noise_scans: BTreeMap<PathBuf, PathBuf>,
    /// ISMRMRD raw scans that hold several images (contrasts, phases, repetitions or sets):
    /// which to train on, per counter: a value (as the runtime's `--contrast`, `--phase`,
    /// `--repetition` and `--set` choose one), or `"all"`: every value the file has, each
    /// image's slices training measurements of their own (repetitions of one scan are
    /// independent noisy measurements). A counter left `null` must have one value in the file.
    pub select: ImageChoice,
}

impl DataConfig {
    /// The grid `(height, width)`: `image_size` by `image_width` (or `image_size`).
    pub fn grid(&self) -> (usize, usize) {
        (self.image_size, self.image_width.unwrap_or(self.image_size))
    }

    /// Whether measurements are read from scans rather than simulated.
    pub fn from_scans(&self) -> bool {
        !self.scans.is_empty()
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            volume: PathBuf::from(DEFAULT_VOLUME),
            image_size: 128,
            image_width: None,
            coils: 8,
            mask: MaskKind::default(),
            acceleration: 4.0,
            acs_lines: 10,
            noise_eta: NoiseEta::default(),
            held_out_axial: [80, 100],
            max_rotation_deg: 10.0,
            phase_strength: [1.0, 3.0],
            scans: Vec::new(),
            prewhiten: true,
            noise_scans: BTreeMap::new(),
            select: ImageChoice::default(),
        }
    }
}

/// The masks a model trains with (`data.mask`), recorded in its metadata as `msm.train_mask`:
/// the runtime draws its partial masks from the same distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaskKind {
    /// Random phase-encode columns around a central ACS block
    /// ([`msm::mask::random_cartesian`]).
    #[default]
    #[serde(rename = "random")]
    Random,
    /// Random entries around a central ACS square ([`msm::mask::random_entries`]).
    #[serde(rename = "random-2d")]
    Random2d,
    /// Entries of a variable density around a central ACS square
    /// ([`msm::mask::variable_density_entries`]): simulated with the density `(1 - r)^2`; for
    /// scans, the density their masks measure ([`Loader::mask_density`]).
    #[serde(rename = "variable-density-2d")]
    VariableDensity2d,
}

impl MaskKind {
    /// The metadata's name for these masks.
    pub fn pattern(self) -> MaskPattern {
        match self {
            MaskKind::Random => MaskPattern::Random,
            MaskKind::Random2d => MaskPattern::Random2d,
            MaskKind::VariableDensity2d => MaskPattern::VariableDensity2d,
        }
    }
}

/// One scan as a scanner delivers it. No field holds, or can give back, a clean image.
#[derive(Debug, Clone)]
pub struct Measurement {
    kspace: Array3<C32>,
    maps: Array3<C32>,
    mask: Mask,
    eta: f64,
}

impl Measurement {
    /// Undersampled k-space `(coils, H, W)`, zero where the mask measures nothing.
    pub fn kspace(&self) -> &Array3<C32> {
        &self.kspace
    }

    /// Coil maps `(coils, H, W)`.
    pub fn maps(&self) -> &Array3<C32> {
        &self.maps
    }

    /// The mask: columns of the width axis, or entries (2-D masks).
    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    /// Noise std per real component.
    pub fn eta(&self) -> f64 {
        self.eta
    }
}

/// Yields measurements: simulated from the training slices of a volume, or read from scans.
pub struct Loader {
    source: Source,
    cfg: DataConfig,
    /// The sampling density of `"variable-density-2d"` masks.
    density: Option<RadialDensity>,
}

/// Where a [`Loader`]'s measurements come from.
enum Source {
    Simulated(Box<sim::Simulator>),
    Scans(scans::Scans),
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader").field("cfg", &self.cfg).finish()
    }
}

/// Mixes a seed and a counter into an independent 64-bit seed (splitmix64).
pub fn mix_seed(seed: u64, counter: u64) -> u64 {
    let mut z = seed
        ^ counter
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Loader {
    /// Opens the volume of `cfg` and checks the configuration.
    pub fn open(cfg: &DataConfig) -> Result<Loader> {
        check(cfg)?;
        if cfg.from_scans() {
            let scans = scans::Scans::open(cfg)?;
            let density = match cfg.mask {
                MaskKind::VariableDensity2d => Some(scans.mask_density(cfg.acs_lines)?),
                _ => None,
            };
            return Ok(Loader {
                source: Source::Scans(scans),
                cfg: cfg.clone(),
                density,
            });
        }
        if !cfg.volume.exists() {
            return Err(Error::format(
                &cfg.volume,
                "training volume not found; expected a NIfTI-1 magnitude volume such as Colin27 \
                 `ch2.nii.gz` (Debian package mricron-data: `apt-get install mricron-data`)",
            ));
        }
        let vol = read_nifti_canonical(&cfg.volume)?;
        let sim =
            sim::Simulator::new(vol, cfg).map_err(|e| Error::format(&cfg.volume, e.to_string()))?;
        Ok(Loader {
            source: Source::Simulated(Box::new(sim)),
            cfg: cfg.clone(),
            density: match cfg.mask {
                MaskKind::VariableDensity2d => Some(RadialDensity::simulated()),
                _ => None,
            },
        })
    }

    /// The sampling density of the training masks, for `"variable-density-2d"` masks (`None`
    /// otherwise): for simulated measurements the simulator's `(1 - r)^2`, for scans the
    /// density their masks measure ([`RadialDensity::estimate`]). The model records it
    /// (`msm.train_density`); the runtime's partial masks stay uniform
    /// ([`msm::mask::density`] says why).
    pub fn mask_density(&self) -> Option<&RadialDensity> {
        self.density.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &DataConfig {
        &self.cfg
    }

    /// How many distinct training slices each orientation of the volume offers (none when
    /// the measurements come from scans: [`Loader::scan_slices`]).
    pub fn slice_counts(&self) -> [(Plane, usize); 3] {
        match &self.source {
            Source::Simulated(sim) => sim.slice_counts(),
            Source::Scans(_) => [Plane::Axial, Plane::Coronal, Plane::Sagittal].map(|p| (p, 0)),
        }
    }

    /// How many scan slices may be drawn (0 when the measurements are simulated).
    pub fn scan_slices(&self) -> usize {
        match &self.source {
            Source::Simulated(_) => 0,
            Source::Scans(scans) => scans.len(),
        }
    }

    /// For measurements read from scans, their noise std per real component on the training
    /// scale, estimated from the image rows of each slice with the least signal (summarised
    /// over slices): what `noise_eta = "estimate"` trains with, and a guide for a stated
    /// `noise_eta`, which the SURE loss needs and real scans do not state.
    pub fn scan_noise(&self) -> Option<NoiseSummary> {
        match &self.source {
            Source::Simulated(_) => None,
            Source::Scans(scans) => Some(scans.noise_summary()),
        }
    }

    /// For measurements read from scans, how their masks cover the model's k-space grid
    /// together: entries that no slice measured are never learned ([`MaskCoverage`]).
    pub fn mask_coverage(&self) -> Option<MaskCoverage> {
        match &self.source {
            Source::Simulated(_) => None,
            Source::Scans(scans) => Some(scans.mask_coverage(self.cfg.grid())),
        }
    }

    /// Writes every scan slice, prepared as this loader prepared it (k-space on the model's
    /// grid, mask, ESPIRiT maps, gain) with its noise estimate, to one file that a data config
    /// may list in `scans` in place of the scans (`msm-train prepare`; module `prepared`).
    /// Simulated measurements are drawn afresh every step and cannot be written.
    pub fn write_prepared(&self, path: &std::path::Path) -> Result<()> {
        match &self.source {
            Source::Simulated(_) => Err(Error::invalid(
                "data config lists no scans: simulated measurements are drawn afresh every step, \
                 so there is nothing to prepare; expected data.scans",
            )),
            Source::Scans(scans) => scans.write_prepared(path),
        }
    }

    /// For measurements read from scans, the scan files their slices came from (count and
    /// names), for the model's metadata.
    pub fn scan_sources(&self) -> Option<String> {
        match &self.source {
            Source::Simulated(_) => None,
            Source::Scans(scans) => Some(scans.describe()),
        }
    }

    /// One measurement drawn with `rng`.
    pub fn example(&self, rng: &mut ChaCha8Rng) -> Result<Measurement> {
        match &self.source {
            Source::Simulated(sim) => sim.simulate(rng),
            Source::Scans(scans) => Ok(scans.draw(rng)),
        }
    }

    /// The minibatch of training step `step` for run seed `seed`: example i uses its own RNG
    /// seeded from (seed, step, i), so a resumed run sees the same data.
    pub fn batch(&self, seed: u64, step: u64, size: usize) -> Result<Vec<Measurement>> {
        (0..size)
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(mix_seed(seed, step), i as u64));
                self.example(&mut rng)
            })
            .collect()
    }

    /// The input scale the runtime normalises to: the median over `draws` training draws of
    /// the 99th percentile of the zero-filled magnitude ([`msm::sampler::scale::robust_max`]).
    /// The draws are the minibatch of step `u64::MAX` (a step no run trains) for run seed
    /// `seed`.
    pub fn scale_p99(&self, seed: u64, draws: usize) -> Result<ScaleEstimate> {
        ScaleEstimate::from_measurements(&self.batch(seed, u64::MAX, draws)?, seed)
    }
}

fn check(cfg: &DataConfig) -> Result<()> {
    let (h, w) = cfg.grid();
    if h < 8 || w < 8 || cfg.coils == 0 {
        return Err(Error::invalid(format!(
            "data config: the grid {h}x{w} (image_size, image_width) and coils {} must be at \
             least 8x8 and 1",
            cfg.coils
        )));
    }
    if h != w && !cfg.from_scans() {
        return Err(Error::invalid(format!(
            "data config: image_width {w} differs from image_size {h}, but simulated \
             measurements are square slices; expected image_width unset (or {h}), or scans"
        )));
    }
    let (fits, side) = match cfg.mask {
        MaskKind::Random => (cfg.acs_lines as f64 <= w as f64 / cfg.acceleration, w),
        MaskKind::Random2d | MaskKind::VariableDensity2d => (
            (cfg.acs_lines * cfg.acs_lines) as f64 <= (h * w) as f64 / cfg.acceleration,
            h.min(w),
        ),
    };
    if cfg.acceleration.is_nan() || cfg.acceleration < 1.0 || cfg.acs_lines > side || !fits {
        return Err(Error::invalid(match cfg.mask {
            MaskKind::Random => format!(
                "data config: acceleration {} with {} ACS lines does not fit width {w} (need R \
                 >= 1 and ACS <= width / R)",
                cfg.acceleration, cfg.acs_lines
            ),
            MaskKind::Random2d | MaskKind::VariableDensity2d => format!(
                "data config: acceleration {} with a {}x{} ACS square does not fit the {h}x{w} \
                 grid of {} masks (need R >= 1 and ACS side^2 <= {h} x {w} / R)",
                cfg.acceleration,
                cfg.acs_lines,
                cfg.acs_lines,
                cfg.mask.pattern().as_str()
            ),
        }));
    }
    if let Some(scan) = cfg.noise_scans.keys().find(|k| !cfg.scans.contains(k)) {
        return Err(Error::invalid(format!(
            "data config: noise_scans names {}, which is not in scans ({}); expected the path \
             of a listed scan, as written there",
            scan.display(),
            cfg.scans
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let [lo, hi] = cfg.phase_strength;
    if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi) {
        return Err(Error::invalid(format!(
            "data config: phase_strength [{lo}, {hi}] must be finite with 0 <= low <= high"
        )));
    }
    match cfg.noise_eta {
        NoiseEta::Fixed(eta) if !(eta >= 0.0 && eta.is_finite()) => Err(Error::invalid(format!(
            "data config: noise_eta {eta} must be >= 0 (or \"estimate\" for scans)"
        ))),
        NoiseEta::Estimate if !cfg.from_scans() => Err(Error::invalid(
            "data config: noise_eta \"estimate\" estimates each scan slice's noise, but no \
             scans are listed; simulated measurements take their noise std as a number",
        )),
        _ => Ok(()),
    }
}

fn complex_tensor(arrays: &[&Array3<C32>], device: Device) -> Tensor {
    let (c, h, w) = arrays[0].dim();
    let mut flat = Vec::with_capacity(arrays.len() * c * h * w * 2);
    for a in arrays {
        for v in a.iter() {
            flat.push(v.re);
            flat.push(v.im);
        }
    }
    Tensor::from_slice(&flat)
        .reshape([arrays.len() as i64, c as i64, h as i64, w as i64, 2])
        .view_as_complex()
        .to_device(device)
}

/// Stacks measurements (same size; all noiseless or all noisy, each with its own eta) into a
/// device batch.
pub fn to_batch(ms: &[Measurement], device: Device) -> Result<MeasBatch> {
    let first = ms
        .first()
        .ok_or_else(|| Error::invalid("empty minibatch"))?;
    if ms
        .iter()
        .any(|m| m.kspace.dim() != first.kspace.dim() || (m.eta > 0.0) != (first.eta > 0.0))
    {
        return Err(Error::invalid(
            "minibatch mixes k-space sizes, or noiseless and noisy measurements",
        ));
    }
    let ks: Vec<&Array3<C32>> = ms.iter().map(|m| &m.kspace).collect();
    let maps: Vec<&Array3<C32>> = ms.iter().map(|m| &m.maps).collect();
    let (_, h, w) = first.kspace.dim();
    let mask: Vec<f32> = ms
        .iter()
        .flat_map(|m| m.mask.to_pattern(h).into_iter().map(f32::from))
        .collect();
    Ok(MeasBatch {
        kspace: complex_tensor(&ks, device),
        maps: complex_tensor(&maps, device),
        mask: Tensor::from_slice(&mask)
            .reshape([ms.len() as i64, h as i64, w as i64])
            .to_kind(Kind::Float)
            .to_device(device),
        eta: ms.iter().map(|m| m.eta).collect(),
    })
}
