//! Coil-map estimation options shared by `msm ecalib` and `msm reconstruct` (for `.h5` input
//! without maps): ESPIRiT with BART `ecalib`'s flags, or low-resolution ratio maps.

use msm::coils::{espirit_full, ratio_maps, CalRegion, EspiritOptions, RatioOptions};
use msm::mask::Mask;
use msm::{Result, C32};
use ndarray::{Array2, Array3, ArrayView3};

/// How coil maps are estimated from the ACS.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// ESPIRiT (as BART `ecalib -m1`).
    Espirit,
    /// Low-resolution coil images divided by their root sum of squares (fast).
    Ratio,
}

/// Options of the estimators (BART `ecalib`'s letters where they exist).
#[derive(clap::Args, Debug, Clone)]
pub struct MapsArgs {
    /// ESPIRiT kernel size k (a k x k kernel; BART -k).
    #[arg(short = 'k', long, default_value_t = 6)]
    pub kernel: usize,
    /// Largest side of the calibration region; it is further limited to the fully sampled
    /// centre (BART -r).
    #[arg(short = 'r', long, default_value_t = 24)]
    pub calib: usize,
    /// ESPIRiT: singular vectors with sigma / sigma_max > sqrt(threshold) span the signal
    /// subspace (BART -t).
    #[arg(short = 't', long, default_value_t = 0.001)]
    pub threshold: f32,
    /// ESPIRiT: maps are zero where the largest eigenvalue is at most this (BART -c).
    #[arg(short = 'c', long, default_value_t = 0.8)]
    pub crop: f32,
    /// Ratio maps: zero where the low-resolution root sum of squares is below this fraction of
    /// its maximum.
    #[arg(long, default_value_t = 0.0)]
    pub ratio_threshold: f32,
}

/// Maps and what they were computed from.
pub struct Estimate {
    /// Coil maps `(coils, height, width)`.
    pub maps: Array3<C32>,
    /// ESPIRiT's eigenvalue map (`None` for ratio maps).
    pub eigenvalues: Option<Array2<f32>>,
    /// The calibration region used (`None` for ratio maps).
    pub region: Option<CalRegion>,
    /// Number of ESPIRiT kernels kept (0 for ratio maps).
    pub kernels: usize,
}

impl MapsArgs {
    /// The settings of `method` in one line (for messages and the volume manifest).
    pub fn describe(&self, method: Method) -> String {
        match method {
            Method::Espirit => format!(
                "ESPIRiT kernel {}, calibration region up to {}, threshold {}, crop {}",
                self.kernel, self.calib, self.threshold, self.crop
            ),
            Method::Ratio => format!(
                "ratio maps, calibration region up to {}, RSS threshold {}",
                self.calib, self.ratio_threshold
            ),
        }
    }

    /// Estimates maps from `kspace` `(coils, H, W)`; `mask` says what was sampled (default: the
    /// non-zero entries).
    pub fn estimate(
        &self,
        method: Method,
        kspace: ArrayView3<C32>,
        mask: Option<&Mask>,
    ) -> Result<Estimate> {
        match method {
            Method::Espirit => {
                let opts = EspiritOptions {
                    kernel: self.kernel,
                    cal: self.calib,
                    threshold: self.threshold,
                    crop: self.crop,
                    ..EspiritOptions::default()
                };
                let e = espirit_full(kspace, mask, &opts)?;
                Ok(Estimate {
                    maps: e.maps,
                    eigenvalues: Some(e.eigenvalues),
                    region: Some(e.region),
                    kernels: e.kernels,
                })
            }
            Method::Ratio => {
                let opts = RatioOptions {
                    cal: self.calib,
                    threshold: self.ratio_threshold,
                };
                Ok(Estimate {
                    maps: ratio_maps(kspace, mask, &opts)?,
                    eigenvalues: None,
                    region: None,
                    kernels: 0,
                })
            }
        }
    }
}
