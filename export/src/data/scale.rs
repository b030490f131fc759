//! The input scale a model is trained on, as the runtime measures it.
//!
//! Scanner k-space has an arbitrary scale. The runtime's posterior sampler can multiply the
//! acquired k-space `y` by the factor that brings the 99th percentile (nearest rank) of the
//! zero-filled magnitude `|A_P^H y|` (coil-combined with the maps) to a target, which it reads
//! from the model's metadata key [`SCALE_KEY`]. At export the trainer estimates that statistic
//! on its own training draws with the runtime's own function,
//! [`msm::sampler::scale::robust_max`], on each measurement as delivered (undersampled, with its
//! noise and scanner gain), then takes the median over [`SCALE_DRAWS`] seeded draws.

use super::Measurement;
use msm::sampler::scale::robust_max;
use msm::sense::Sense;
use msm::{Error, Result};

/// Metadata key of the training scale (read by the runtime's `msm reconstruct`).
pub use msm::onnx::meta::SCALE_P99_KEY as SCALE_KEY;

/// Number of training draws the exported scale is the median of.
pub const SCALE_DRAWS: usize = 64;

/// The training scale estimated from a set of draws.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleEstimate {
    /// Median of the per-draw 99th percentiles (mean of the two middle values for an even
    /// count): the value written to [`SCALE_KEY`].
    pub median: f64,
    /// Smallest per-draw value.
    pub min: f64,
    /// Largest per-draw value.
    pub max: f64,
    /// Number of draws.
    pub draws: usize,
    /// Run seed the draws were made with.
    pub seed: u64,
}

impl ScaleEstimate {
    /// The estimate over `ms` (at least one measurement), each with its own maps and mask.
    pub fn from_measurements(ms: &[Measurement], seed: u64) -> Result<ScaleEstimate> {
        let mut values = ms
            .iter()
            .map(|m| {
                let op = Sense::new(m.maps().clone())?;
                Ok(robust_max(&op, m.kspace().view(), m.mask()))
            })
            .collect::<Result<Vec<f64>>>()?;
        if values.is_empty() {
            return Err(Error::invalid(
                "the training scale needs at least one measurement",
            ));
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if !n.is_multiple_of(2) {
            values[n / 2]
        } else {
            0.5 * (values[n / 2 - 1] + values[n / 2])
        };
        if !(median.is_finite() && median > 0.0) {
            return Err(Error::invalid(format!(
                "the training scale (median 99th percentile of the zero-filled magnitude) is \
                 {median}; expected a finite value > 0"
            )));
        }
        Ok(ScaleEstimate {
            median,
            min: values[0],
            max: values[n - 1],
            draws: n,
            seed,
        })
    }

    /// One line for the model card.
    pub fn describe(&self) -> String {
        format!(
            "median {:.6} over {} training draws (seed {}, range {:.6} to {:.6}) of the 99th \
             percentile (nearest rank) of the zero-filled magnitude |A_S^H s|, coil-combined with \
             the maps",
            self.median, self.draws, self.seed, self.min, self.max
        )
    }
}
