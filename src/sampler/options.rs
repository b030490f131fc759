//! Sampler options, their defaults, and the checks made before any work starts.

use crate::mask::{Acs, Mask, PartialKind};
use crate::onnx::meta::{MaskPattern, ModelMeta};
use crate::schedule::Schedule;
use crate::sense::Operator;
use crate::{Error, Result};
use std::fmt;
use std::sync::Arc;

/// How the `w` partial scores of one step are evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// The paper's Algorithm 1: mask `i + 1` is denoised from the state that the write-back of
    /// mask `i` left. One network call at a time.
    Sequential,
    /// The `w` partial scores are evaluated on the same state, concurrently on rayon workers
    /// (one network call of batch 1 per worker), and their write-backs are then merged.
    #[default]
    Parallel,
}

/// The noise estimate of the same-level write-back `S z <- sqrt(ab) s_hat + sqrt(1 - ab) e`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NoiseEstimate {
    /// `e = (S z - sqrt(ab) s_hat) / sqrt(1 - ab)`, the noise of the partial measurement
    /// itself, from the prior's `s_hat` before data consistency (the write-back then leaves a
    /// generation chain unchanged).
    #[default]
    Measurement,
    /// `e = S F C eps`, the network's noise image taken to k-space (MSM.md's reference form).
    /// The same as `Measurement` with one coil; with several coils it shrinks the state's noise
    /// at every write-back (see the module docs).
    Image,
}

/// A progress callback: called with `(steps done, total steps)` after every sampler step, over
/// all samples of a call (it may be called from several threads).
pub type Progress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// ACS fraction of the reference training masks (20 columns at width 256).
pub const REFERENCE_ACS_FRACTION: f64 = 20.0 / 256.0;

/// Acceleration of the reference training masks.
pub const REFERENCE_ACCEL: f64 = 4.0;

/// The reference training masks for k-space `width` columns wide: random columns at R = 4 with
/// an ACS block of 20/256 of the width.
pub fn reference_partial_kind(width: usize) -> PartialKind {
    PartialKind::Columns {
        width,
        accel: REFERENCE_ACCEL,
        acs: Acs::Fraction(REFERENCE_ACS_FRACTION),
    }
}

/// Whether `eta` is a DDIM eta the sampler runs: finite and in [0, 1].
pub fn eta_in_range(eta: f64) -> bool {
    eta.is_finite() && (0.0..=1.0).contains(&eta)
}

/// The partial masks a model was trained with, from its metadata: random columns at the
/// training acceleration with the training ACS block (the coverage-aware sampler draws its
/// free columns at random whatever the training column pattern was), or for 2-D models
/// random entries of the model's grid with the training ACS square. Models of
/// `variable-density-2d` masks get uniform entries too: partial masks of the training density
/// rarely write the outer k-space and lost 1.5 dB ([`crate::mask::density`]).
pub fn model_partial_kind(meta: &ModelMeta) -> PartialKind {
    match meta.train_mask {
        MaskPattern::Random | MaskPattern::Equispaced => PartialKind::Columns {
            width: meta.width,
            accel: meta.train_acceleration,
            acs: Acs::Lines(meta.train_acs_lines),
        },
        MaskPattern::Random2d | MaskPattern::VariableDensity2d => PartialKind::Entries {
            height: meta.height,
            width: meta.width,
            accel: meta.train_acceleration,
            acs: meta.train_acs_lines,
        },
    }
}

/// Options of the MSM samplers ([`crate::sampler::generate`], [`crate::sampler::reconstruct`]).
#[derive(Clone)]
pub struct SamplerOptions {
    /// Number of sampling steps K (respaced timesteps `t_i = i T / K`); 1..=T.
    pub steps: usize,
    /// Partial scores per step w (>= 1).
    pub partials: usize,
    /// DDIM eta of the move from one level to the next (0 = deterministic DDIM, 1 = DDPM-like).
    pub eta: f64,
    /// Fresh-noise fraction of the same-level write-back, in `[0, 1]`: the write-back adds
    /// noise of std `renoise * sqrt(1 - ab_t)` (default 0; see the module docs for why).
    pub renoise: f64,
    /// The write-back's noise estimate.
    pub writeback_noise: NoiseEstimate,
    /// Seed of every random draw (masks and noise).
    pub seed: u64,
    /// Partial masks; `None` = the reference training masks ([`reference_partial_kind`]) for
    /// the operator's width. For an ONNX model, [`model_partial_kind`] gives its own.
    pub partial: Option<PartialKind>,
    /// Sequential or parallel evaluation of the partial scores.
    pub mode: Mode,
    /// The noise schedule the network was trained with.
    pub schedule: Schedule,
    /// Called after every step with `(done, total)`.
    pub progress: Option<Progress>,
}

impl fmt::Debug for SamplerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamplerOptions")
            .field("steps", &self.steps)
            .field("partials", &self.partials)
            .field("eta", &self.eta)
            .field("renoise", &self.renoise)
            .field("writeback_noise", &self.writeback_noise)
            .field("seed", &self.seed)
            .field("partial", &self.partial)
            .field("mode", &self.mode)
            .field("schedule_len", &self.schedule.len())
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for SamplerOptions {
    /// The reference generation settings: K = 200, w = 3, eta 1, parallel mode, seed 0.
    fn default() -> Self {
        SamplerOptions {
            steps: 200,
            partials: 3,
            eta: 1.0,
            renoise: 0.0,
            writeback_noise: NoiseEstimate::default(),
            seed: 0,
            partial: None,
            mode: Mode::default(),
            schedule: Schedule::reference(),
            progress: None,
        }
    }
}

impl SamplerOptions {
    /// The partial-mask kind for an operator `width` wide.
    pub fn partial_kind(&self, width: usize) -> PartialKind {
        self.partial
            .clone()
            .unwrap_or_else(|| reference_partial_kind(width))
    }

    /// Checks the options against the operator: [`SamplerOptions::check`], and that the
    /// partial masks fit the grid.
    pub fn validate(&self, op: &dyn Operator) -> Result<()> {
        self.check()?;
        let (h, w) = op.image_shape();
        match self.partial_kind(w) {
            PartialKind::Columns { width, .. } if width != w => Err(Error::invalid(format!(
                "partial masks are {width} columns wide but the k-space is {w} wide"
            ))),
            PartialKind::Entries { height, width, .. } if (height, width) != (h, w) => {
                Err(Error::invalid(format!(
                    "partial 2-D masks are for {height}x{width} k-space but the data is {h}x{w}"
                )))
            }
            PartialKind::Blocks { height, width, .. } if (height, width) != (h, w) => {
                Err(Error::invalid(format!(
                    "partial block masks are for {height}x{width} images but the data is {h}x{w}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Checks what needs no data (steps, partial scores, eta, renoise), so that a command can
    /// refuse bad settings before it reads or writes anything.
    pub fn check(&self) -> Result<()> {
        if self.partials == 0 {
            return Err(Error::invalid(
                "the number of partial scores per step (w) must be at least 1, got 0",
            ));
        }
        let t = self.schedule.len();
        if self.steps == 0 || self.steps > t {
            return Err(Error::invalid(format!(
                "the number of sampling steps (K) must be between 1 and the schedule length \
                 {t}, got {}",
                self.steps
            )));
        }
        if !eta_in_range(self.eta) {
            return Err(Error::invalid(format!(
                "DDIM eta must be in [0, 1], got {}",
                self.eta
            )));
        }
        if !(self.renoise.is_finite() && (0.0..=1.0).contains(&self.renoise)) {
            return Err(Error::invalid(format!(
                "the write-back renoise fraction must be in [0, 1], got {}",
                self.renoise
            )));
        }
        Ok(())
    }
}

/// Options of posterior sampling ([`crate::sampler::reconstruct`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ReconOptions {
    /// Number of posterior samples (>= 1), each with its own seed derived from the sampler's.
    pub samples: usize,
    /// Data-consistency step `lambda` in [0, 2] (default 1: exact replacement of the acquired
    /// entries).
    pub lambda: f64,
    /// If set, the k-space is scaled so that the 99th percentile of the zero-filled magnitude
    /// `|A_P^H y|` equals this value (the scale the model was trained on); results are
    /// returned on the input's scale.
    pub scale_target: Option<f64>,
    /// Conjugate-gradient iterations of data consistency applied to every sample at the end
    /// ([`crate::recon::cg_refine`] on `A_P^H A_P x = A_P^H y` from the sample; 0: none).
    /// The chain's own data-consistency step acts on partial k-space estimates, and the
    /// coil-combined image `A^H z_hat` of a multi-coil estimate need not reproduce the data
    /// exactly; this step brings the samples back onto the data to the noise level. Default
    /// 10: with the exact Gaussian prior it cut the worst data residual from 7 to 0.3 noise
    /// stds and the posterior-mean error from 0.24 to 0.07 (`tests/sampler_posterior.rs`).
    pub final_dc: usize,
}

impl Default for ReconOptions {
    fn default() -> Self {
        ReconOptions {
            samples: 1,
            lambda: 1.0,
            scale_target: None,
            final_dc: 10,
        }
    }
}

impl ReconOptions {
    /// Checks the posterior options ([`ReconOptions::check`]) and that `y` and the acquisition
    /// mask fit the operator.
    pub fn validate(
        &self,
        op: &dyn Operator,
        y_shape: (usize, usize, usize),
        acq: &Mask,
    ) -> Result<()> {
        self.check()?;
        let (nc, h, w) = op.measurement_shape();
        let (yc, yh, yw) = y_shape;
        if yc != nc {
            return Err(Error::invalid(format!(
                "the k-space has {yc} coils but the coil maps have {nc}"
            )));
        }
        if (yh, yw) != (h, w) {
            return Err(Error::invalid(format!(
                "the k-space is {yh}x{yw} but the coil maps are {h}x{w}"
            )));
        }
        acq.check_shape(h, w)
    }

    /// Checks what needs no data (samples, lambda, scale target), so that a command can refuse
    /// bad settings before it reads or writes anything.
    pub fn check(&self) -> Result<()> {
        if self.samples == 0 {
            return Err(Error::invalid(
                "the number of posterior samples must be at least 1, got 0",
            ));
        }
        if !(self.lambda.is_finite() && (0.0..=2.0).contains(&self.lambda)) {
            return Err(Error::invalid(format!(
                "the data-consistency step lambda must be in [0, 2], got {}: the step moves each \
                 acquired entry from s to s + lambda (y - s), so above 2 it multiplies the \
                 mismatch by more than 1 at every step and the chain diverges (1 replaces the \
                 estimate by the data, 2 is the paper's MRI value)",
                self.lambda
            )));
        }
        if let Some(s) = self.scale_target {
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::invalid(format!(
                    "the scale target must be finite and > 0, got {s}"
                )));
            }
        }
        Ok(())
    }
}
