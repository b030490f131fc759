//! Validation on held-out measurements: the training loss of scans kept out of training,
//! evaluated with the EMA weights (the ones exported) on the same measurements, timesteps and
//! noise every time, so that its values along a run are comparable. It needs no clean image:
//! like the training loss, it compares the network's estimate with measured k-space only, and
//! it is what tells a run on one's own scans when it stops generalising and which checkpoint to
//! export.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::{mix_seed, DataConfig, Loader, Measurement};
use msm::schedule::Schedule;
use msm::{Error, Result};

/// Seed of the validation draws (fixed: every evaluation sees the same ones).
const VALIDATION_SEED: u64 = 0x5a11_da7e;

/// Where and how often validation runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Scans (`.h5`, or files from `msm-train prepare`) held out of `data.scans`, read with the
    /// run's data settings (grid, coils, masks' acceleration and ACS, noise level).
    pub scans: Vec<PathBuf>,
    /// Evaluate every this many steps, and at the end of a run.
    pub every: u64,
    /// Minibatches (of `batch_size` measurements) per evaluation; their timesteps are spread
    /// evenly over the respaced steps.
    pub batches: usize,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            scans: Vec::new(),
            every: 500,
            batches: 8,
        }
    }
}

impl ValidationConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.scans.is_empty() || self.every == 0 || self.batches == 0 {
            return Err(Error::invalid(format!(
                "validation: needs at least one scan, every >= 1 and batches >= 1; got {} \
                 scan(s), every {}, batches {}",
                self.scans.len(),
                self.every,
                self.batches
            )));
        }
        Ok(())
    }
}

/// One validation minibatch: its measurements, timestep and noise seed.
pub struct ValidationBatch {
    /// The measurements.
    pub measurements: Vec<Measurement>,
    /// The diffusion timestep of the whole minibatch.
    pub t: usize,
    /// Seed of the diffusion noise and SURE probe.
    pub seed: u64,
}

/// The held-out measurements of a run, opened.
pub struct Validation {
    cfg: ValidationConfig,
    loader: Loader,
}

impl Validation {
    /// Opens `cfg.scans` with the run's data settings `data` (its `scans` replaced).
    pub fn open(cfg: &ValidationConfig, data: &DataConfig) -> Result<Validation> {
        cfg.validate()?;
        let data = DataConfig {
            scans: cfg.scans.clone(),
            ..data.clone()
        };
        Ok(Validation {
            cfg: cfg.clone(),
            loader: Loader::open(&data)?,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ValidationConfig {
        &self.cfg
    }

    /// What is validated on, for the log: the measurement count and the scan files.
    pub fn describe(&self, batch_size: usize) -> String {
        format!(
            "{} measurements from {}",
            self.cfg.batches * batch_size,
            self.loader.scan_sources().unwrap_or_default()
        )
    }

    /// The minibatches, the same at every call: batch `b` draws `batch_size` slices with seeds
    /// from (`VALIDATION_SEED`, `b`), at the `b`-th of `batches` timesteps spread evenly over
    /// the `respaced` steps.
    pub fn batches(
        &self,
        batch_size: usize,
        sched: &Schedule,
        respaced: usize,
    ) -> Result<Vec<ValidationBatch>> {
        let steps = sched.respace(respaced)?;
        let n = self.cfg.batches;
        (0..n)
            .map(|b| {
                Ok(ValidationBatch {
                    measurements: self.loader.batch(VALIDATION_SEED, b as u64, batch_size)?,
                    t: steps[(2 * b + 1) * steps.len() / (2 * n)],
                    seed: mix_seed(VALIDATION_SEED, b as u64),
                })
            })
            .collect()
    }
}
