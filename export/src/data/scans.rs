//! Measurements read from scans (private to `data`): the undersampled slices of fastMRI /
//! ISMRMRD HDF5 files, as a scanner delivered them. What the trainer gets from a file is what
//! the runtime's `msm reconstruct` gets from it, slice by slice:
//!
//! - the k-space grid fitted to the model's (`msm::volume::grid::GridPlan`: the readout
//!   centre-cropped or zero-padded in image space to the model's height; the width, the
//!   phase-encode axis, must equal the model's);
//! - the column mask from the file's `mask` dataset, else the columns that hold data
//!   ([`msm::io::fastmri::detect_mask`]);
//! - a scan with more coils than the configured `coils` compressed to that many virtual coils
//!   ([`msm::coils::Compression`], BART `cc -p N -S -A`), so that scans of different coil
//!   counts share one;
//! - coil maps estimated from the slice's ACS by ESPIRiT with BART `ecalib`'s defaults
//!   ([`msm::coils::espirit`]), or from its separate reference scan where ISMRMRD raw data has
//!   one ([`msm::io::fastmri::RawScan::slice_reference`]);
//! - the k-space scaled so that the slice's zero-filled image has maximum 1 (a scanner's gain is
//!   arbitrary; the simulator scales its measurements to 0.8 to 1.2 the same way).
//!
//! Nothing else is read: not `reconstruction_rss`, not any image. Every slice is prepared once,
//! when the loader opens (about 16 x coils x height x width bytes a slice in memory), so a bad
//! file fails there, naming the file and the slice, not in the middle of a run.

use std::path::{Path, PathBuf};

use ndarray::Array3;

use super::prepared::{self, PreparedFile, PreparedSlice};
use super::{DataConfig, MaskCoverage, MaskKind, Measurement, NoiseEta, NoiseSummary};
use msm::coils::espirit::{espirit, EspiritOptions};
use msm::coils::Compression;
use msm::io::fastmri::{detect_entries, detect_mask, HdfScan, RawOptions};
use msm::mask::{acs_lines, acs_side, Mask, RadialDensity};
use msm::noise::row_noise;
use msm::sense::{Operator, Sense};
use msm::volume::grid::GridPlan;
use msm::{Error, Result, C32};
use rand::{Rng, RngExt};
use rayon::prelude::*;

/// Every training slice of the scans, prepared: in memory for `.h5` scans, decoded from its
/// memory-mapped file when drawn for prepared scans.
pub(super) struct Scans {
    slices: Vec<ScanSlice>,
    /// The prepared-scans files that [`SliceData::Mapped`] slices index.
    files: Vec<PreparedFile>,
}

/// One slice that holds data: its source, mask, noise estimate and the noise level it trains
/// with (from the config), and its k-space and maps.
struct ScanSlice {
    source: PathBuf,
    index: usize,
    mask: Mask,
    /// Its noise std per real component, estimated from its image rows with the least signal
    /// ([`msm::noise::row_noise`]) or a raw file's noise scan, on the training scale; NaN for
    /// a 2-D mask without a noise scan (no image row is free of aliasing then).
    noise: f64,
    eta: f64,
    data: SliceData,
}

/// Where a slice's k-space and maps are.
enum SliceData {
    /// Prepared from a scan when the loader opened, `(coils, H, W)` each.
    Owned {
        kspace: Array3<C32>,
        maps: Array3<C32>,
    },
    /// Slice `slice` of prepared file `file` of [`Scans::files`].
    Mapped { file: usize, slice: usize },
}

impl Scans {
    /// Reads and prepares every slice of `cfg.scans` (`.h5` scans, or files written by
    /// `msm-train prepare`, which are mapped, not read); errors name the file (and the slice).
    pub(super) fn open(cfg: &DataConfig) -> Result<Scans> {
        let mut slices = Vec::new();
        let mut files = Vec::new();
        for path in &cfg.scans {
            if prepared::is_prepared(path) {
                let (file, entries) = PreparedFile::open(path, cfg.grid(), cfg.coils)?;
                files.push(file);
                slices.extend(entries.into_iter().enumerate().map(|(i, e)| ScanSlice {
                    source: e.source,
                    index: e.index,
                    mask: e.mask,
                    noise: e.noise,
                    eta: 0.0,
                    data: SliceData::Mapped {
                        file: files.len() - 1,
                        slice: i,
                    },
                }));
            } else {
                slices.extend(prepare_file(path, cfg)?.into_iter().map(|p| ScanSlice {
                    source: p.source,
                    index: p.index,
                    mask: p.measurement.mask,
                    noise: p.noise,
                    eta: 0.0,
                    data: SliceData::Owned {
                        kspace: p.measurement.kspace,
                        maps: p.measurement.maps,
                    },
                }));
            }
        }
        for s in &mut slices {
            s.eta = match cfg.noise_eta {
                NoiseEta::Fixed(eta) => eta,
                NoiseEta::Estimate if s.noise > 0.0 && s.noise.is_finite() => s.noise,
                NoiseEta::Estimate if s.noise.is_nan() => {
                    return Err(Error::format(
                        &s.source,
                        format!(
                            "slice {}: no noise estimate: its mask is 2-D, so no image row is \
                             free of aliasing to estimate the noise from, and the scan has no \
                             noise scan; expected a raw scan with its noise measurements, or \
                             noise_eta stated as a number",
                            s.index
                        ),
                    ))
                }
                NoiseEta::Estimate => {
                    return Err(Error::format(
                        &s.source,
                        format!(
                            "slice {}: its noise estimate is {} (the image rows with the least \
                             signal hold no noise); expected noisy k-space for noise_eta \
                             \"estimate\", or state noise_eta as a number",
                            s.index, s.noise
                        ),
                    ))
                }
            };
        }
        if slices.is_empty() {
            return Err(Error::invalid(
                "data config: the scans hold no slice with measured k-space; expected at least \
                 one",
            ));
        }
        let scans = Scans { slices, files };
        scans.check_masks(cfg)?;
        Ok(scans)
    }

    /// The measurement of slice `s`, with its noise level.
    fn measurement(&self, s: &ScanSlice) -> Measurement {
        let (kspace, maps) = match &s.data {
            SliceData::Owned { kspace, maps } => (kspace.clone(), maps.clone()),
            SliceData::Mapped { file, slice } => self.files[*file].arrays(*slice),
        };
        Measurement {
            kspace,
            maps,
            mask: s.mask.clone(),
            eta: s.eta,
        }
    }

    /// The scan files the slices came from, for the model's metadata: their count and names
    /// (for a prepared file, those of the scans it was prepared from).
    pub(super) fn describe(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        for s in &self.slices {
            let name = s.source.file_name().map_or_else(
                || s.source.display().to_string(),
                |n| n.to_string_lossy().into(),
            );
            if !names.contains(&name) {
                names.push(name);
            }
        }
        format!("{} scan file(s): {}", names.len(), names.join(", "))
    }

    /// Writes every slice, prepared, to `path` ([`prepared`]), for runs that list that file in
    /// place of the scans.
    pub(super) fn write_prepared(&self, path: &Path) -> Result<()> {
        let slices: Vec<PreparedSlice> = self
            .slices
            .iter()
            .map(|s| PreparedSlice {
                source: s.source.clone(),
                index: s.index,
                measurement: Measurement {
                    eta: 0.0,
                    ..self.measurement(s)
                },
                noise: s.noise,
            })
            .collect();
        prepared::write(path, &slices)
    }

    /// How many slices may be drawn.
    pub(super) fn len(&self) -> usize {
        self.slices.len()
    }

    /// The slices' estimated noise std ([`msm::noise::row_noise`]), per real component on the training
    /// scale, summarised: what `noise_eta = "estimate"` uses, slice by slice.
    pub(super) fn noise_summary(&self) -> NoiseSummary {
        let noise: Vec<f64> = self.slices.iter().map(|s| s.noise).collect();
        NoiseSummary::of(&noise)
    }

    /// How the slices' masks cover the `grid` together.
    pub(super) fn mask_coverage(&self, grid: (usize, usize)) -> MaskCoverage {
        MaskCoverage::of(self.slices.iter().map(|s| &s.mask), grid)
    }

    /// The sampling density the slices' 2-D masks measure outside the configured ACS square
    /// ([`RadialDensity::estimate`]).
    pub(super) fn mask_density(&self, acs: usize) -> Result<RadialDensity> {
        RadialDensity::estimate(
            self.slices.iter().filter_map(|s| match &s.mask {
                Mask::Pattern(p) => Some(p),
                Mask::Columns(_) => None,
            }),
            acs,
        )
    }

    /// A slice drawn uniformly with `rng`.
    pub(super) fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Measurement {
        self.measurement(&self.slices[rng.random_range(0..self.slices.len())])
    }

    /// The configured `mask`, `acceleration` and `acs_lines` go into the model's metadata,
    /// where the runtime's partial masks take them from: they must describe the scans' masks.
    /// Checks that every mask is of the configured kind (columns for `"random"`, 2-D for
    /// `"random-2d"` and `"variable-density-2d"`), that the mean kept fraction is within 10% of
    /// `1 / acceleration` and that every mask keeps at least `acs_lines` central columns (the
    /// central square of that side for 2-D masks), and says what the scans have otherwise.
    fn check_masks(&self, cfg: &DataConfig) -> Result<()> {
        for s in &self.slices {
            check_kind(&s.mask, cfg, &s.source, s.index)?;
        }
        let fraction =
            self.slices.iter().map(|s| s.mask.fraction()).sum::<f64>() / self.slices.len() as f64;
        let accel = 1.0 / fraction;
        let (path, index, fewest) = self
            .slices
            .iter()
            .map(|s| {
                let acs = match &s.mask {
                    Mask::Columns(c) => acs_lines(c),
                    Mask::Pattern(p) => acs_side(p),
                };
                (&s.source, s.index, acs)
            })
            .min_by_key(|&(_, _, n)| n)
            .expect("at least one slice");
        if (accel - cfg.acceleration).abs() > 0.1 * cfg.acceleration || fewest < cfg.acs_lines {
            let (units, acs) = match cfg.mask {
                MaskKind::Random => ("columns", "central columns kept are"),
                MaskKind::Random2d | MaskKind::VariableDensity2d => {
                    ("entries", "side of a fully sampled central square is")
                }
            };
            return Err(Error::invalid(format!(
                "data config: acceleration {} with acs_lines {} does not describe the scans' \
                 masks: they keep {:.1}% of the {units} on average (R = {accel:.2}), and the \
                 fewest {acs} {fewest} ({}, slice {index}); expected acceleration within 10% of \
                 {accel:.2} and acs_lines at most {fewest} (the model records both, and the \
                 runtime draws its partial masks from them)",
                cfg.acceleration,
                cfg.acs_lines,
                100.0 * fraction,
                path.display()
            )));
        }
        Ok(())
    }
}

/// Checks that slice `index` of `source`, with mask `mask`, has the kind of mask the data
/// config trains on: whole columns for `"random"`, 2-D masks for `"random-2d"` and
/// `"variable-density-2d"`.
fn check_kind(mask: &Mask, cfg: &DataConfig, source: &Path, index: usize) -> Result<()> {
    let (has, want) = match (mask, cfg.mask) {
        (Mask::Pattern(_), MaskKind::Random) => (
            "is 2-D (k-space undersampled along both axes: a 3-D scan undersampled along both \
             phase encodes, read along its readout)",
            "data.mask = \"random-2d\" (or \"variable-density-2d\" for masks that sample the \
             centre more densely)",
        ),
        (Mask::Columns(_), MaskKind::Random2d | MaskKind::VariableDensity2d) => {
            ("keeps whole phase-encode columns", "data.mask = \"random\"")
        }
        _ => return Ok(()),
    };
    Err(Error::format(
        source,
        format!(
            "slice {index}: its mask {has}, but the data config trains on {} masks; expected \
             {want} for these scans (a model learns one kind of mask, and the runtime draws its \
             partial masks of that kind)",
            cfg.mask.pattern().as_str()
        ),
    ))
}

/// Reads and prepares every slice of the scan `path` that holds data, of every image
/// `data.select` names ([`ImageChoice::images`](msm::io::fastmri::ImageChoice::images)), in the file's order; a slice's index
/// counts on across the images.
fn prepare_file(path: &Path, cfg: &DataConfig) -> Result<Vec<PreparedSlice>> {
    let mut slices = Vec::new();
    let mut first = 0;
    for select in cfg.select.images(path)? {
        let options = RawOptions {
            prewhiten: cfg.prewhiten,
            select,
            noise_file: cfg.noise_scans.get(path).cloned(),
        };
        let (image, count) = prepare_image(path, cfg, &options, first)?;
        slices.extend(image);
        first += count;
    }
    Ok(slices)
}

/// Reads and prepares every slice of one image of the scan `path` that holds data, in
/// parallel (ESPIRiT dominates), indexed from `first`; and the image's slice count.
fn prepare_image(
    path: &Path,
    cfg: &DataConfig,
    options: &RawOptions,
    first: usize,
) -> Result<(Vec<PreparedSlice>, usize)> {
    let file = HdfScan::open(path, options)?;
    let fmt = |msg: String| Error::format(path, msg);
    if file.coils() < cfg.coils {
        return Err(fmt(format!(
            "has {} coils but the data config says coils = {}; expected at least that many \
             (scans with more are compressed to {} virtual coils)",
            file.coils(),
            cfg.coils,
            cfg.coils
        )));
    }
    let compress = (file.coils() > cfg.coils).then_some(cfg.coils);
    let (n, nw) = cfg.grid();
    // A grid that does not fit is reported after the mask's kind, the likelier mistake.
    let plan = GridPlan::new(file.kspace_size(), Some((n, nw)), (n, nw))
        .map_err(|e| format!("does not fit the grid {n}x{nw} (image_size, image_width): {e}"));
    let prepared = (0..file.num_slices())
        .into_par_iter()
        .map(|index| -> Result<Option<PreparedSlice>> {
            let k0 = file.slice_kspace(index)?;
            // Slices along the readout of a 3-D scan have a mask per entry (whole columns when
            // only partitions are missing); others keep whole phase-encode columns.
            let mask = match file.mask() {
                Some(m) => Mask::Columns(m.to_vec()),
                None if file.along_readout() => detect_entries(k0.view()),
                None => Mask::Columns(detect_mask(k0.view())),
            };
            if mask.fraction() == 0.0 {
                return Ok(None); // An empty slice: nothing was measured.
            }
            check_kind(&mask, cfg, path, index)?;
            if matches!(mask, Mask::Pattern(_)) && file.kspace_size() != (n, nw) {
                let (h, w) = file.kspace_size();
                return Err(fmt(format!(
                    "slice {index}: its k-space is {h}x{w} (height x width), undersampled along \
                     both axes, so it cannot be cropped or padded to the model's {n}x{nw} grid; \
                     expected image_size {h} and image_width {w}, the slices' size"
                )));
            }
            let plan = plan.as_ref().map_err(|e| fmt(e.clone()))?;
            // ISMRMRD raw data with a noise scan states its noise; else it is estimated from
            // the image rows with the least signal, which only column masks leave alias-free.
            let raw_noise = file
                .noise_scan_std()
                .unwrap_or_else(|| mask.columns().map_or(f64::NAN, |c| row_noise(k0.view(), c)));
            let fitted = plan.kspace_to_model(k0.view());
            let reference = file
                .slice_reference(index)
                .map(|r| plan.kspace_to_model(r.view()));
            let (measurement, gain) = prepare(fitted, reference, mask, compress)
                .map_err(|e| fmt(format!("slice {index}: {e}")))?;
            // Zero-padding the readout (a scan shorter than the model) spreads the same noise
            // over more rows: sqrt(H / Hm) of it per entry; a crop keeps it.
            let rows = file.kspace_size().0.min(n) as f64 / n as f64;
            Ok(Some(PreparedSlice {
                source: path.to_path_buf(),
                index: first + index,
                measurement,
                noise: raw_noise * gain * rows.sqrt(),
            }))
        })
        // Every slice is tried, so that the error reported is the first failing slice's
        // whichever thread finished first (rayon's short-circuit would pick by timing).
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    Ok((prepared.into_iter().flatten().collect(), file.num_slices()))
}

/// One slice's measurement: `kspace` on the model's grid (compressed to `virtual_coils`
/// virtual coils if set: [`msm::coils::Compression`]), its mask, ESPIRiT maps from its
/// ACS (from `reference`, a separate reference scan on the same grid, when the scan has one),
/// the k-space scaled so that the zero-filled image's maximum is 1 (its noise level left to
/// the caller: 0); and that gain.
fn prepare(
    kspace: ndarray::Array3<msm::C32>,
    reference: Option<ndarray::Array3<msm::C32>>,
    mask: Mask,
    virtual_coils: Option<usize>,
) -> Result<(Measurement, f64)> {
    let cc = virtual_coils
        .map(|n| Compression::svd(kspace.view(), n))
        .transpose()?;
    let (mut kspace, reference) = match &cc {
        Some(cc) => (
            cc.apply(kspace.view())?,
            reference.map(|r| cc.apply(r.view())).transpose()?,
        ),
        None => (kspace, reference),
    };
    let (_, h, w) = kspace.dim();
    mask.check_shape(h, w)?;
    // Unmeasured entries are zero, as the trainer's operator expects (a file's mask may keep
    // fewer columns than hold data).
    for mut coil in kspace.outer_iter_mut() {
        for ((i, j), v) in coil.indexed_iter_mut() {
            if !mask.keeps(i, j) {
                *v = msm::C32::new(0.0, 0.0);
            }
        }
    }
    let maps = match &reference {
        Some(r) => {
            let calib = Mask::Columns(detect_mask(r.view()));
            espirit(r.view(), Some(&calib), &EspiritOptions::default())?
        }
        None => espirit(kspace.view(), Some(&mask), &EspiritOptions::default())?,
    };
    let op = Sense::new(maps)?;
    let zf = op.adjoint(kspace.view(), Some(&mask));
    let peak = zf.iter().fold(0.0f32, |m, v| m.max(v.norm()));
    if !(peak > 0.0 && peak.is_finite()) {
        return Err(Error::invalid(
            "the zero-filled image is zero everywhere (no signal where the coil maps are \
             non-zero); expected a slice with signal",
        ));
    }
    kspace.mapv_inplace(|v| v / peak);
    let m = Measurement {
        kspace,
        maps: op.maps().clone(),
        mask,
        eta: 0.0,
    };
    Ok((m, 1.0 / peak as f64))
}
