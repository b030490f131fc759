//! The measurement noise level the SURE loss is told ([`NoiseEta`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The measurement noise std per real component, on the training scale: one stated value for
/// every measurement, or each scan slice's own estimate.
///
/// In a config file it is a number (`"noise_eta": 0.01`; 0 trains with the noiseless loss) or
/// the string `"estimate"`. Real scans are normalised slice by slice (each slice's zero-filled
/// maximum is 1), so one coil array's noise is a different std on the training scale in every
/// slice: a slice with half the signal has twice the relative noise. `"estimate"` gives each
/// slice the std estimated from its own image rows with the least signal (module `scans`), so
/// SURE and the Tweedie target use that slice's level. It needs scans: simulated measurements
/// are given their noise, so their level is a number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseEta {
    /// Each scan slice's own estimate.
    Estimate,
    /// One value for every measurement (0: noiseless).
    #[serde(untagged)]
    Fixed(f64),
}

impl Default for NoiseEta {
    /// Noiseless.
    fn default() -> Self {
        NoiseEta::Fixed(0.0)
    }
}

impl NoiseEta {
    /// The stated value, or `None` for per-slice estimates.
    pub fn fixed(self) -> Option<f64> {
        match self {
            NoiseEta::Fixed(v) => Some(v),
            NoiseEta::Estimate => None,
        }
    }
}

impl fmt::Display for NoiseEta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoiseEta::Fixed(v) => write!(f, "{v}"),
            NoiseEta::Estimate => f.write_str("estimate"),
        }
    }
}

impl FromStr for NoiseEta {
    type Err = String;

    /// A number >= 0, or `estimate`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "estimate" {
            return Ok(NoiseEta::Estimate);
        }
        match s.parse::<f64>() {
            Ok(v) if v >= 0.0 && v.is_finite() => Ok(NoiseEta::Fixed(v)),
            _ => Err(format!(
                "`{s}`: expected a noise std >= 0 or `estimate` (each scan slice's own)"
            )),
        }
    }
}

/// The spread of the per-slice noise estimates of a set of scans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseSummary {
    /// The median over slices.
    pub median: f64,
    /// The smallest slice estimate.
    pub min: f64,
    /// The largest slice estimate.
    pub max: f64,
}

impl NoiseSummary {
    /// The summary of `values` (at least one).
    pub fn of(values: &[f64]) -> NoiseSummary {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        NoiseSummary {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

impl fmt::Display for NoiseSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "median {:.3e}, from {:.3e} to {:.3e}",
            self.median, self.min, self.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::NoiseEta;

    #[derive(serde::Deserialize)]
    struct Holder {
        noise_eta: NoiseEta,
    }

    fn parse(json: &str) -> Result<NoiseEta, String> {
        serde_json::from_str::<Holder>(json)
            .map(|h| h.noise_eta)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_a_number_or_estimate() {
        assert_eq!(parse(r#"{"noise_eta": 0.01}"#), Ok(NoiseEta::Fixed(0.01)));
        assert_eq!(parse(r#"{"noise_eta": 0}"#), Ok(NoiseEta::Fixed(0.0)));
        assert_eq!(
            parse(r#"{"noise_eta": "estimate"}"#),
            Ok(NoiseEta::Estimate)
        );
        assert!(parse(r#"{"noise_eta": "guess"}"#).is_err());
        for v in [NoiseEta::Fixed(0.02), NoiseEta::Estimate] {
            let json = format!(r#"{{"noise_eta": {}}}"#, serde_json::to_string(&v).unwrap());
            assert_eq!(parse(&json), Ok(v));
            assert_eq!(v.to_string().parse::<NoiseEta>(), Ok(v));
        }
        assert!("-1".parse::<NoiseEta>().unwrap_err().contains("estimate"));
        assert!("nan".parse::<NoiseEta>().is_err());
    }
}
