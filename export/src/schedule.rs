//! The diffusion noise schedule (MSM.md section 2): linear betas, cumulative products, the noise
//! level in measurement units and the respaced timesteps used for training and sampling.

/// Linear beta schedule over `num_timesteps` steps with its cumulative products.
#[derive(Debug, Clone)]
pub struct Schedule {
    beta_start: f64,
    beta_end: f64,
    alphas_cumprod: Vec<f64>,
}

impl Schedule {
    /// guided-diffusion's linear schedule: betas evenly spaced from `beta_start` to `beta_end`
    /// (inclusive) over `num_timesteps` steps, in f64.
    pub fn linear(beta_start: f64, beta_end: f64, num_timesteps: usize) -> Schedule {
        let mut ab = 1.0;
        let alphas_cumprod = (0..num_timesteps)
            .map(|i| {
                let frac = if num_timesteps > 1 {
                    i as f64 / (num_timesteps - 1) as f64
                } else {
                    0.0
                };
                let beta = beta_start + (beta_end - beta_start) * frac;
                ab *= 1.0 - beta;
                ab
            })
            .collect();
        Schedule {
            beta_start,
            beta_end,
            alphas_cumprod,
        }
    }

    /// The reference schedule: 1e-4 to 0.02 over 1000 steps.
    pub fn reference() -> Schedule {
        Schedule::linear(1e-4, 0.02, 1000)
    }

    /// First beta.
    pub fn beta_start(&self) -> f64 {
        self.beta_start
    }

    /// Last beta.
    pub fn beta_end(&self) -> f64 {
        self.beta_end
    }

    /// Number of steps T.
    pub fn len(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// Whether the schedule has no steps.
    pub fn is_empty(&self) -> bool {
        self.alphas_cumprod.is_empty()
    }

    /// ab_t = prod_{s <= t} (1 - beta_s).
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alphas_cumprod[t]
    }

    /// Noise level in measurement units: sqrt((1 - ab_t) / ab_t).
    pub fn sigma(&self, t: usize) -> f64 {
        let ab = self.alpha_bar(t);
        ((1.0 - ab) / ab).sqrt()
    }

    /// The K respaced steps t_i = i * T / K, i = 0..K (K = 200: 0, 5, ..., 995).
    pub fn respaced(&self, k: usize) -> Vec<usize> {
        (0..k).map(|i| i * self.len() / k).collect()
    }

    /// The step whose noise level is closest to `sigma` (sigma is increasing in t).
    pub fn step_for_sigma(&self, sigma: f64) -> usize {
        (0..self.len())
            .min_by(|&a, &b| {
                (self.sigma(a) - sigma)
                    .abs()
                    .total_cmp(&(self.sigma(b) - sigma).abs())
            })
            .unwrap_or(0)
    }
}
