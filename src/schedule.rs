//! The diffusion noise schedule (MSM.md section 2): linear betas, cumulative products
//! `ab_t = prod_{s <= t} (1 - beta_s)`, the measurement-domain noise level
//! `sigma_t = sqrt((1 - ab_t) / ab_t)`, and respacing to K sampling steps.

use crate::{Error, Result};

/// A discrete variance-preserving noise schedule on the `0..T` timestep scale.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    betas: Vec<f64>,
    alpha_bar: Vec<f64>,
}

impl Schedule {
    /// Linear betas from `beta_start` to `beta_end` over `steps` timesteps (the reference uses
    /// 1e-4, 0.02, 1000).
    pub fn linear(steps: usize, beta_start: f64, beta_end: f64) -> Result<Self> {
        if steps < 2 {
            return Err(Error::invalid(format!(
                "a schedule needs at least 2 timesteps, got {steps}"
            )));
        }
        if !(0.0 < beta_start && beta_start <= beta_end && beta_end < 1.0) {
            return Err(Error::invalid(format!(
                "betas must satisfy 0 < start <= end < 1, got {beta_start}..{beta_end}"
            )));
        }
        let betas: Vec<f64> = (0..steps)
            .map(|i| beta_start + (beta_end - beta_start) * i as f64 / (steps - 1) as f64)
            .collect();
        let mut alpha_bar = Vec::with_capacity(steps);
        let mut prod = 1.0;
        for b in &betas {
            prod *= 1.0 - b;
            alpha_bar.push(prod);
        }
        Ok(Schedule { betas, alpha_bar })
    }

    /// The reference schedule: linear betas 1e-4 to 0.02 over 1000 steps.
    pub fn reference() -> Self {
        Self::linear(1000, 1e-4, 0.02).expect("reference schedule is valid")
    }

    /// Number of timesteps T.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// Always false: a schedule has at least two timesteps.
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// beta_t.
    pub fn beta(&self, t: usize) -> f64 {
        self.betas[t]
    }

    /// Cumulative product ab_t.
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alpha_bar[t]
    }

    /// Noise level in measurement units, `sqrt((1 - ab_t) / ab_t)`.
    pub fn sigma(&self, t: usize) -> f64 {
        let ab = self.alpha_bar[t];
        ((1.0 - ab) / ab).sqrt()
    }

    /// The timestep whose sigma is closest to `sigma` (for a measurement noise level eta).
    pub fn timestep_for_sigma(&self, sigma: f64) -> usize {
        (0..self.len())
            .min_by(|&a, &b| {
                (self.sigma(a) - sigma)
                    .abs()
                    .total_cmp(&(self.sigma(b) - sigma).abs())
            })
            .unwrap_or(0)
    }

    /// The K respaced timesteps `t_i = i * T / K`, `i = 0..K`, ascending (the reference's
    /// `0, 5, ..., 995` for K = 200). Sampling walks them from the last to the first.
    pub fn respace(&self, k: usize) -> Result<Vec<usize>> {
        let t = self.len();
        if k == 0 || k > t {
            return Err(Error::invalid(format!(
                "the number of sampling steps must be between 1 and {t}, got {k}"
            )));
        }
        Ok((0..k).map(|i| i * t / k).collect())
    }
}
