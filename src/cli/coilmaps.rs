//! Coil-map estimation options shared by `msm ecalib`, `msm reconstruct` (for `.h5` input
//! without maps) and `msm demo` (with `--maps-method`): ESPIRiT with BART `ecalib`'s flags, or
//! low-resolution ratio maps.

use msm::coils::{espirit_full, ratio_maps, CalRegion, EspiritOptions, RatioOptions};
use msm::mask::Mask;
use msm::{Error, Result, C32};
use ndarray::{Array2, Array3, ArrayView3};

/// How coil maps are estimated from the ACS.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// ESPIRiT (as BART `ecalib -m1`).
    Espirit,
    /// Low-resolution coil images divided by their root sum of squares (fast).
    Ratio,
}

/// Options of the estimators (BART `ecalib`'s letters where they exist). Each is `None` unless
/// given, so that an option the chosen estimator does not use is refused instead of ignored;
/// the defaults are the library's ([`EspiritOptions`], [`RatioOptions`]).
#[derive(clap::Args, Debug, Clone)]
pub struct MapsArgs {
    /// ESPIRiT kernel size k (a k x k kernel; BART -k) [default: 6].
    #[arg(short = 'k', long)]
    pub kernel: Option<usize>,
    /// Largest side of the calibration region; it is further limited to the fully sampled
    /// centre (BART -r) [default: 24].
    #[arg(short = 'r', long)]
    pub calib: Option<usize>,
    /// ESPIRiT: singular vectors with sigma / sigma_max > sqrt(threshold) span the signal
    /// subspace (BART -t) [default: 0.001].
    #[arg(short = 't', long)]
    pub threshold: Option<f32>,
    /// ESPIRiT: maps are zero where the largest eigenvalue is at most this (BART -c)
    /// [default: 0.8].
    #[arg(short = 'c', long)]
    pub crop: Option<f32>,
    /// Ratio maps: zero where the low-resolution root sum of squares is below this fraction of
    /// its maximum [default: 0].
    #[arg(long)]
    pub ratio_threshold: Option<f32>,
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

impl Method {
    /// The name the command line takes.
    fn name(self) -> &'static str {
        match self {
            Method::Espirit => "espirit",
            Method::Ratio => "ratio",
        }
    }
}

impl MapsArgs {
    /// ESPIRiT's settings: the options given, the library's defaults for the rest.
    fn espirit(&self) -> EspiritOptions {
        let d = EspiritOptions::default();
        EspiritOptions {
            kernel: self.kernel.unwrap_or(d.kernel),
            cal: self.calib.unwrap_or(d.cal),
            threshold: self.threshold.unwrap_or(d.threshold),
            crop: self.crop.unwrap_or(d.crop),
            ..d
        }
    }

    /// The ratio maps' settings: the options given, the library's defaults for the rest.
    fn ratio(&self) -> RatioOptions {
        let d = RatioOptions::default();
        RatioOptions {
            cal: self.calib.unwrap_or(d.cal),
            threshold: self.ratio_threshold.unwrap_or(d.threshold),
        }
    }

    /// The options given on the command line, each with the estimators that use it.
    fn given(&self) -> Vec<(&'static str, &'static [Method])> {
        const ESPIRIT: &[Method] = &[Method::Espirit];
        const BOTH: &[Method] = &[Method::Espirit, Method::Ratio];
        [
            ("-k/--kernel", self.kernel.is_some(), ESPIRIT),
            ("-r/--calib", self.calib.is_some(), BOTH),
            ("-t/--threshold", self.threshold.is_some(), ESPIRIT),
            ("-c/--crop", self.crop.is_some(), ESPIRIT),
            (
                "--ratio-threshold",
                self.ratio_threshold.is_some(),
                &[Method::Ratio],
            ),
        ]
        .into_iter()
        .filter(|(_, given, _)| *given)
        .map(|(flag, _, methods)| (flag, methods))
        .collect()
    }

    /// Refuses an option that `method` does not use (it would be silently ignored).
    pub fn check_for(&self, method: Method) -> Result<()> {
        match self
            .given()
            .into_iter()
            .find(|(_, users)| !users.contains(&method))
        {
            None => Ok(()),
            Some((flag, users)) => {
                let users: Vec<_> = users.iter().map(|m| m.name()).collect();
                Err(Error::invalid(format!(
                    "{flag} is an option of {} coil maps; the maps here are estimated by {}",
                    users.join(" and "),
                    method.name()
                )))
            }
        }
    }

    /// Refuses every option when no maps are estimated; `why` says where the maps come from
    /// instead ("the coil maps come from FILE").
    pub fn check_none(&self, why: &str) -> Result<()> {
        match self.given().first() {
            None => Ok(()),
            Some((flag, _)) => Err(Error::invalid(format!(
                "{flag} sets how coil maps are estimated, but {why}"
            ))),
        }
    }

    /// The settings of `method` in one line (for messages and the volume manifest).
    pub fn describe(&self, method: Method) -> String {
        match method {
            Method::Espirit => {
                let o = self.espirit();
                format!(
                    "ESPIRiT kernel {}, calibration region up to {}, threshold {}, crop {}",
                    o.kernel, o.cal, o.threshold, o.crop
                )
            }
            Method::Ratio => {
                let o = self.ratio();
                format!(
                    "ratio maps, calibration region up to {}, RSS threshold {}",
                    o.cal, o.threshold
                )
            }
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
                let e = espirit_full(kspace, mask, &self.espirit())?;
                Ok(Estimate {
                    maps: e.maps,
                    eigenvalues: Some(e.eigenvalues),
                    region: Some(e.region),
                    kernels: e.kernels,
                })
            }
            Method::Ratio => Ok(Estimate {
                maps: ratio_maps(kspace, mask, &self.ratio())?,
                eigenvalues: None,
                region: None,
                kernels: 0,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The defaults the help states are the library's, which apply when an option is not given.
    #[test]
    fn help_states_the_library_defaults() {
        let (e, r) = (EspiritOptions::default(), RatioOptions::default());
        let cmd = crate::cli::Cli::command();
        let ecalib = cmd.find_subcommand("ecalib").expect("ecalib");
        for (id, default) in [
            ("kernel", e.kernel.to_string()),
            ("calib", e.cal.to_string()),
            ("threshold", e.threshold.to_string()),
            ("crop", e.crop.to_string()),
            ("ratio_threshold", r.threshold.to_string()),
        ] {
            let arg = ecalib.get_arguments().find(|a| a.get_id() == id).expect(id);
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                help.contains(&format!("[default: {default}]")),
                "--{id}: help {help:?} does not state the default {default}"
            );
        }
        assert_eq!(
            e.cal, r.cal,
            "-r/--calib has one default for both estimators"
        );
    }
}
