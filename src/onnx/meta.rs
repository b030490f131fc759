//! What an MSM model file says about itself: the `msm.*` entries of the ONNX `metadata_props`.
//!
//! The runtime reads these before it builds anything, so that a model that does not fit the data
//! (image size, channels) or the sampler (prediction type, noise schedule) is refused with a clear
//! message instead of producing wrong images.
//!
//! Every key is prefixed `msm.`. Values are plain text: integers in decimal, real numbers in
//! Rust's shortest round-trip form, names in lower case.
//!
//! | key                     | required | form                               |
//! |-------------------------|----------|------------------------------------|
//! | `msm.format_version`    | yes      | integer, 1 to [`FORMAT_VERSION`]   |
//! | `msm.image_height`      | yes      | positive integer                   |
//! | `msm.image_width`       | yes      | positive integer                   |
//! | `msm.channels`          | yes      | `2` (real, imaginary)              |
//! | `msm.prediction`        | yes      | `eps`                              |
//! | `msm.schedule`          | yes      | `linear`                           |
//! | `msm.beta_start`        | yes      | real, 0 < beta_start < beta_end    |
//! | `msm.beta_end`          | yes      | real, beta_end < 1                 |
//! | `msm.num_timesteps`     | yes      | positive integer                   |
//! | `msm.train_mask`        | yes      | `random`, `equispaced`, `random-2d`|
//! |                         |          | `variable-density-2d`              |
//! | `msm.train_acceleration`| yes      | real >= 1                          |
//! | `msm.train_acs_lines`   | yes      | integer, 0 to image width (side of |
//! |                         |          | the ACS square for 2-D masks: 0    |
//! |                         |          | to the smaller image side)         |
//! | `msm.train_density`     | for      | comma-separated weights >= 0 over  |
//! |                         | variable-| equal bins of the normalised       |
//! |                         | density- | k-space radius, centre to corners  |
//! |                         | 2d only  | ([`RadialDensity`])                |
//! | `msm.train_noise_eta`   | yes      | real >= 0                          |
//! | `msm.coils`             | no       | positive integer                   |
//! | `msm.architecture`      | no       | free text                          |
//! | `msm.data_source`       | no       | free text                          |
//! | `msm.held_out_slices`   | no       | free text                          |
//! | `msm.steps_trained`     | no       | integer >= 0                       |
//! | `msm.final_loss`        | no       | real                               |
//! | `msm.git_commit`        | no       | free text                          |
//! | `msm.created`           | no       | free text (RFC 3339 date advised)  |
//!
//! The required keys are those the runtime needs to run the model correctly; the optional ones
//! record where the model came from. Any other key (with or without the `msm.` prefix) is kept in
//! [`ModelMeta::extra`] and written back unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::mask::RadialDensity;
use crate::schedule::Schedule;
use crate::{Error, Result};

/// The newest metadata format this runtime reads and the one it writes.
pub const FORMAT_VERSION: u32 = 1;

/// Prefix of every key this module reads or writes.
pub const KEY_PREFIX: &str = "msm.";

/// The values `msm.train_mask` takes, for messages.
const MASK_PATTERNS: &str = "`random`, `equispaced`, `random-2d` or `variable-density-2d`";

/// Key (kept in [`ModelMeta::extra`]) of the training scale: the 99th percentile of the
/// zero-filled magnitude `|A_P^H y|` of the training data, which the posterior sampler
/// normalises acquired k-space to.
pub const SCALE_P99_KEY: &str = "msm.scale_p99";

/// Key (kept in [`ModelMeta::extra`]) of the DDIM eta the posterior sampler takes for this
/// model when the command line does not give one: a sampler setting measured for the model after
/// training (e.g. on tuning slices), which travels with it.
pub const RECON_ETA_KEY: &str = "msm.recon_eta";

/// DDIM eta of posterior sampling for a model without [`RECON_ETA_KEY`]: MSM.md's reference value
/// for reconstruction.
pub const DEFAULT_RECON_ETA: f64 = 0.85;

/// What the network output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    /// The network predicts the added noise (epsilon).
    Eps,
}

impl Prediction {
    /// The metadata spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Prediction::Eps => "eps",
        }
    }
}

impl FromStr for Prediction {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "eps" => Ok(Prediction::Eps),
            _ => Err(()),
        }
    }
}

/// Shape of the beta (noise variance) schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// beta rises linearly from `beta_start` to `beta_end` over `num_timesteps` steps.
    Linear,
}

impl ScheduleKind {
    /// The metadata spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::Linear => "linear",
        }
    }
}

impl FromStr for ScheduleKind {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "linear" => Ok(ScheduleKind::Linear),
            _ => Err(()),
        }
    }
}

/// Kind of Cartesian column mask the model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskPattern {
    /// ACS block plus columns drawn at random (fastMRI style).
    Random,
    /// ACS block plus every R-th column.
    Equispaced,
    /// 2-D masks: a central ACS square plus entries drawn at random
    /// ([`crate::mask::random_entries`]), for k-space undersampled along both phase encodes.
    Random2d,
    /// 2-D masks of a variable density: a central ACS square plus entries kept with a
    /// probability that falls with the k-space radius
    /// ([`crate::mask::variable_density_entries`]; the density is `msm.train_density`), as
    /// compressed-sensing 3-D protocols sample their phase encodes. Sampled with uniform
    /// partial masks, as [`MaskPattern::Random2d`].
    VariableDensity2d,
}

impl MaskPattern {
    /// The metadata spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MaskPattern::Random => "random",
            MaskPattern::Equispaced => "equispaced",
            MaskPattern::Random2d => "random-2d",
            MaskPattern::VariableDensity2d => "variable-density-2d",
        }
    }

    /// Whether the masks are 2-D (entries) rather than columns.
    pub fn is_2d(self) -> bool {
        matches!(self, MaskPattern::Random2d | MaskPattern::VariableDensity2d)
    }
}

impl FromStr for MaskPattern {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "random" => Ok(MaskPattern::Random),
            "equispaced" => Ok(MaskPattern::Equispaced),
            "random-2d" => Ok(MaskPattern::Random2d),
            "variable-density-2d" => Ok(MaskPattern::VariableDensity2d),
            _ => Err(()),
        }
    }
}

/// Everything a model file records about the model (see the module documentation for the keys).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMeta {
    /// Metadata format version (required).
    pub format_version: u32,
    /// Image height the network takes (required).
    pub height: usize,
    /// Image width the network takes (required).
    pub width: usize,
    /// Input and output channels; always 2, real and imaginary (required).
    pub channels: usize,
    /// Meaning of the network output (required).
    pub prediction: Prediction,
    /// Shape of the beta schedule (required).
    pub schedule: ScheduleKind,
    /// First beta of the schedule (required).
    pub beta_start: f64,
    /// Last beta of the schedule (required).
    pub beta_end: f64,
    /// Number of training timesteps; `t` runs over `0..num_timesteps` (required).
    pub num_timesteps: usize,
    /// Mask pattern used in training (required).
    pub train_mask: MaskPattern,
    /// Acceleration R of the training masks (required).
    pub train_acceleration: f64,
    /// Number of always-kept central (ACS) columns of the training masks; for 2-D masks the
    /// side of the always-kept central square (required).
    pub train_acs_lines: usize,
    /// The sampling density of [`MaskPattern::VariableDensity2d`] masks (required for them,
    /// absent otherwise): what the model was trained on. The runtime's partial masks stay
    /// uniform ([`crate::mask::density`] says why).
    pub train_density: Option<RadialDensity>,
    /// Standard deviation of the measurement noise in the training data, 0 for noiseless
    /// (required).
    pub train_noise_eta: f64,
    /// Coils in the training data (optional).
    pub coils: Option<usize>,
    /// Description of the network architecture (optional, free text).
    pub architecture: Option<String>,
    /// Where the training data came from (optional, free text).
    pub data_source: Option<String>,
    /// Slices held out of training for evaluation (optional, free text).
    pub held_out_slices: Option<String>,
    /// Optimizer steps trained (optional).
    pub steps_trained: Option<u64>,
    /// Training loss at the end of training (optional).
    pub final_loss: Option<f64>,
    /// Git commit of the trainer (optional).
    pub git_commit: Option<String>,
    /// Creation date (optional, free text; RFC 3339 advised).
    pub created: Option<String>,
    /// Entries this version does not know, kept as read and written back by [`Self::to_props`].
    pub extra: BTreeMap<String, String>,
}

impl ModelMeta {
    /// The training scale [`SCALE_P99_KEY`], if the model records one; an unparsable value is
    /// an error naming the model file `path`.
    pub fn scale_p99(&self, path: &Path) -> Result<Option<f64>> {
        self.extra
            .get(SCALE_P99_KEY)
            .map(|v| {
                v.parse::<f64>().map_err(|_| {
                    Error::format(path, format!("{SCALE_P99_KEY} = {v:?} is not a number"))
                })
            })
            .transpose()
    }

    /// The reconstruction DDIM eta [`RECON_ETA_KEY`], if the model records one; a value that is
    /// not a number in 0..=1 is an error naming the model file `path`.
    pub fn recon_eta(&self, path: &Path) -> Result<Option<f64>> {
        self.extra
            .get(RECON_ETA_KEY)
            .map(|v| match v.parse::<f64>() {
                Ok(eta) if crate::sampler::eta_in_range(eta) => Ok(eta),
                _ => Err(Error::format(
                    path,
                    format!("{RECON_ETA_KEY} = {v:?}: expected a DDIM eta, a number in 0..=1"),
                )),
            })
            .transpose()
    }

    /// The noise schedule the model was trained with; metadata that does not make a schedule is
    /// an error naming the model file `path`.
    pub fn schedule(&self, path: &Path) -> Result<Schedule> {
        Schedule::linear(self.num_timesteps, self.beta_start, self.beta_end)
            .map_err(|e| Error::format(path, format!("schedule metadata: {e}")))
    }

    /// Metadata for a `height` x `width` model with the reference settings of the MSM paper:
    /// eps prediction, linear beta schedule 1e-4 to 0.02 over 1000 steps, random Cartesian
    /// training masks at R = 4 with 20 ACS lines per 256 columns (rounded, at least 1), and
    /// noiseless training data. Provenance fields are empty.
    pub fn new(height: usize, width: usize) -> ModelMeta {
        ModelMeta {
            format_version: FORMAT_VERSION,
            height,
            width,
            channels: 2,
            prediction: Prediction::Eps,
            schedule: ScheduleKind::Linear,
            beta_start: 1e-4,
            beta_end: 0.02,
            num_timesteps: 1000,
            train_mask: MaskPattern::Random,
            train_acceleration: 4.0,
            train_acs_lines: ((20 * width + 128) / 256).clamp(1, width.max(1)),
            train_density: None,
            train_noise_eta: 0.0,
            coils: None,
            architecture: None,
            data_source: None,
            held_out_slices: None,
            steps_trained: None,
            final_loss: None,
            git_commit: None,
            created: None,
            extra: BTreeMap::new(),
        }
    }

    /// The metadata as `(key, value)` pairs for ONNX `metadata_props`: known fields first (keys
    /// prefixed `msm.`, optional fields only when set), then the kept unknown entries.
    pub fn to_props(&self) -> Vec<(String, String)> {
        let mut props: Vec<(String, String)> = Vec::new();
        let mut put = |key: &str, value: String| props.push((format!("{KEY_PREFIX}{key}"), value));
        put("format_version", self.format_version.to_string());
        put("image_height", self.height.to_string());
        put("image_width", self.width.to_string());
        put("channels", self.channels.to_string());
        put("prediction", self.prediction.as_str().to_string());
        put("schedule", self.schedule.as_str().to_string());
        put("beta_start", self.beta_start.to_string());
        put("beta_end", self.beta_end.to_string());
        put("num_timesteps", self.num_timesteps.to_string());
        put("train_mask", self.train_mask.as_str().to_string());
        put("train_acceleration", self.train_acceleration.to_string());
        put("train_acs_lines", self.train_acs_lines.to_string());
        if let Some(d) = &self.train_density {
            put("train_density", d.to_string());
        }
        put("train_noise_eta", self.train_noise_eta.to_string());
        if let Some(c) = self.coils {
            put("coils", c.to_string());
        }
        let texts = [
            ("architecture", &self.architecture),
            ("data_source", &self.data_source),
            ("held_out_slices", &self.held_out_slices),
        ];
        for (key, value) in texts {
            if let Some(v) = value {
                put(key, v.clone());
            }
        }
        if let Some(s) = self.steps_trained {
            put("steps_trained", s.to_string());
        }
        if let Some(l) = self.final_loss {
            put("final_loss", l.to_string());
        }
        if let Some(g) = &self.git_commit {
            put("git_commit", g.clone());
        }
        if let Some(c) = &self.created {
            put("created", c.clone());
        }
        props.extend(self.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        props
    }

    /// Reads the metadata of the model file `path` from its `metadata_props` entries.
    ///
    /// A missing or unparsable required entry, or a value outside what this runtime supports,
    /// is an error naming `path`, the key and the expected form. Unknown entries go to
    /// [`Self::extra`]. When a key appears twice the last value wins (as in ONNX tools).
    pub fn from_props<K, V>(path: &Path, props: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut map: BTreeMap<String, String> = props
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut r = Reader {
            path,
            map: &mut map,
        };

        let format_version: u32 = r.required("format_version", "an integer such as 1")?;
        if format_version == 0 || format_version > FORMAT_VERSION {
            return Err(r.bad(
                "format_version",
                &format_version.to_string(),
                &format!("1 to {FORMAT_VERSION} (a newer msm wrote this model; update msm)"),
            ));
        }
        let height: usize = r.required("image_height", "a positive integer")?;
        let width: usize = r.required("image_width", "a positive integer")?;
        for (key, v) in [("image_height", height), ("image_width", width)] {
            if v == 0 {
                return Err(r.bad(key, "0", "a positive integer"));
            }
        }
        let channels: usize = r.required("channels", "2 (real and imaginary)")?;
        if channels != 2 {
            return Err(r.bad("channels", &channels.to_string(), "2 (real and imaginary)"));
        }
        let prediction: Prediction = r.required("prediction", "`eps`")?;
        let schedule: ScheduleKind = r.required("schedule", "`linear`")?;
        let beta_start: f64 = r.required("beta_start", "a real number such as 0.0001")?;
        let beta_end: f64 = r.required("beta_end", "a real number such as 0.02")?;
        if !(beta_start > 0.0 && beta_start < beta_end && beta_end < 1.0) {
            return Err(r.bad(
                "beta_start",
                &format!("{beta_start} (beta_end {beta_end})"),
                "0 < beta_start < beta_end < 1",
            ));
        }
        let num_timesteps: usize =
            r.required("num_timesteps", "a positive integer such as 1000")?;
        if num_timesteps == 0 {
            return Err(r.bad("num_timesteps", "0", "a positive integer such as 1000"));
        }
        let train_mask: MaskPattern = r.required("train_mask", MASK_PATTERNS)?;
        let train_acceleration: f64 =
            r.required("train_acceleration", "a real number >= 1 such as 4")?;
        if !(train_acceleration >= 1.0 && train_acceleration.is_finite()) {
            return Err(r.bad(
                "train_acceleration",
                &train_acceleration.to_string(),
                "a real number >= 1 such as 4",
            ));
        }
        let train_acs_lines: usize = r.required("train_acs_lines", "an integer such as 20")?;
        let acs_limit = if train_mask.is_2d() {
            (
                height.min(width),
                "the side of the ACS square, at most the smaller image side",
            )
        } else {
            (width, "at most the image width")
        };
        if train_acs_lines > acs_limit.0 {
            return Err(r.bad(
                "train_acs_lines",
                &train_acs_lines.to_string(),
                &format!("{} {}", acs_limit.1, acs_limit.0),
            ));
        }
        let density_form = "comma-separated weights >= 0 such as 1,0.6,0.2, one of them > 0";
        let train_density: Option<RadialDensity> = if train_mask == MaskPattern::VariableDensity2d {
            Some(r.required("train_density", density_form)?)
        } else {
            if let Some(v) = r.text("train_density") {
                return Err(r.bad(
                    "train_density",
                    &v,
                    &format!(
                        "no density: `{KEY_PREFIX}train_mask` is `{}`, not \
                         `variable-density-2d`",
                        train_mask.as_str()
                    ),
                ));
            }
            None
        };
        let train_noise_eta: f64 = r.required("train_noise_eta", "a real number >= 0")?;
        if !(train_noise_eta >= 0.0 && train_noise_eta.is_finite()) {
            return Err(r.bad(
                "train_noise_eta",
                &train_noise_eta.to_string(),
                "a real number >= 0",
            ));
        }
        let coils: Option<usize> = r.optional("coils", "a positive integer")?;
        if coils == Some(0) {
            return Err(r.bad("coils", "0", "a positive integer"));
        }
        let architecture = r.text("architecture");
        let data_source = r.text("data_source");
        let held_out_slices = r.text("held_out_slices");
        let steps_trained: Option<u64> = r.optional("steps_trained", "an integer >= 0")?;
        let final_loss: Option<f64> = r.optional("final_loss", "a real number")?;
        let git_commit = r.text("git_commit");
        let created = r.text("created");

        Ok(ModelMeta {
            format_version,
            height,
            width,
            channels,
            prediction,
            schedule,
            beta_start,
            beta_end,
            num_timesteps,
            train_mask,
            train_acceleration,
            train_acs_lines,
            train_density,
            train_noise_eta,
            coils,
            architecture,
            data_source,
            held_out_slices,
            steps_trained,
            final_loss,
            git_commit,
            created,
            extra: map,
        })
    }
}

impl fmt::Display for ModelMeta {
    /// One line for logs: size, prediction, schedule and training masks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x{} {}-prediction, {} betas {}..{} over {} steps, trained on {} masks R={} \
             ({}), eta={}",
            self.height,
            self.width,
            self.prediction.as_str(),
            self.schedule.as_str(),
            self.beta_start,
            self.beta_end,
            self.num_timesteps,
            self.train_mask.as_str(),
            self.train_acceleration,
            if self.train_mask.is_2d() {
                format!(
                    "{}x{} ACS square",
                    self.train_acs_lines, self.train_acs_lines
                )
            } else {
                format!("{} ACS lines", self.train_acs_lines)
            },
            self.train_noise_eta
        )
    }
}

/// Takes known keys out of the map, leaving the unknown ones.
struct Reader<'a> {
    path: &'a Path,
    map: &'a mut BTreeMap<String, String>,
}

impl Reader<'_> {
    fn bad(&self, key: &str, value: &str, expected: &str) -> Error {
        Error::format(
            self.path,
            format!("model metadata `{KEY_PREFIX}{key}` is `{value}`; expected {expected}"),
        )
    }

    fn optional<T: FromStr>(&mut self, key: &str, expected: &str) -> Result<Option<T>> {
        match self.map.remove(&format!("{KEY_PREFIX}{key}")) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<T>() {
                Ok(x) => Ok(Some(x)),
                Err(_) => Err(self.bad(key, &v, expected)),
            },
        }
    }

    fn required<T: FromStr>(&mut self, key: &str, expected: &str) -> Result<T> {
        self.optional(key, expected)?.ok_or_else(|| {
            Error::format(
                self.path,
                format!(
                    "model metadata lacks `{KEY_PREFIX}{key}` (expected {expected}); \
                     is this a model written by `msm-train`?"
                ),
            )
        })
    }

    fn text(&mut self, key: &str) -> Option<String> {
        self.map.remove(&format!("{KEY_PREFIX}{key}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ModelMeta {
        let mut m = ModelMeta::new(64, 48);
        m.train_noise_eta = 0.0125;
        m.coils = Some(8);
        m.architecture = Some("unet ch=32 mult=1,2".into());
        m.data_source = Some("mricron-data ch2.nii.gz".into());
        m.held_out_slices = Some("axial 80..100".into());
        m.steps_trained = Some(12345);
        m.final_loss = Some(0.0312345678901);
        m.git_commit = Some("abc123".into());
        m.created = Some("2025-01-02T03:04:05Z".into());
        m.extra.insert("msm.future_field".into(), "x".into());
        m.extra.insert("other_tool.note".into(), "y".into());
        m
    }

    #[test]
    fn round_trip_is_exact() {
        let m = sample();
        let back = ModelMeta::from_props(Path::new("m.onnx"), m.to_props()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn reference_defaults() {
        let m = ModelMeta::new(256, 256);
        assert_eq!(m.train_acs_lines, 20);
        assert_eq!(ModelMeta::new(64, 64).train_acs_lines, 5);
        assert_eq!(m.num_timesteps, 1000);
        assert_eq!((m.beta_start, m.beta_end), (1e-4, 0.02));
    }

    #[test]
    fn missing_required_key_is_named() {
        let props: Vec<_> = sample()
            .to_props()
            .into_iter()
            .filter(|(k, _)| k != "msm.beta_end")
            .collect();
        let e = ModelMeta::from_props(Path::new("dir/m.onnx"), props)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dir/m.onnx"), "{e}");
        assert!(e.contains("msm.beta_end"), "{e}");
    }

    #[test]
    fn unparsable_or_unsupported_values_are_refused() {
        for (key, value, expected) in [
            ("msm.image_width", "wide", "positive integer"),
            ("msm.prediction", "v", "`eps`"),
            ("msm.schedule", "cosine", "`linear`"),
            ("msm.channels", "3", "2 (real and imaginary)"),
            ("msm.format_version", "2", "newer msm"),
            ("msm.train_mask", "radial", MASK_PATTERNS),
            ("msm.train_acs_lines", "49", "at most the image width 48"),
            ("msm.train_noise_eta", "-1", ">= 0"),
            ("msm.beta_start", "0.5", "beta_start < beta_end"),
        ] {
            let props: Vec<_> = sample()
                .to_props()
                .into_iter()
                .map(|(k, v)| {
                    let v = if k == key { value.to_string() } else { v };
                    (k, v)
                })
                .collect();
            let e = ModelMeta::from_props(Path::new("m.onnx"), props)
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && e.contains(expected), "{key}: {e}");
        }
    }

    #[test]
    fn random_2d_masks_round_trip_and_bound_the_acs_square_by_the_smaller_side() {
        let mut m = ModelMeta::new(40, 64);
        m.train_mask = MaskPattern::Random2d;
        m.train_acs_lines = 40;
        let props = m.to_props();
        assert!(props.contains(&("msm.train_mask".into(), "random-2d".into())));
        assert_eq!(
            ModelMeta::from_props(Path::new("m.onnx"), props).unwrap(),
            m
        );
        m.train_acs_lines = 41;
        let e = ModelMeta::from_props(Path::new("m.onnx"), m.to_props())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("msm.train_acs_lines") && e.contains("smaller image side 40"),
            "{e}"
        );
        // Column masks are bounded by the width alone.
        m.train_mask = MaskPattern::Random;
        assert!(ModelMeta::from_props(Path::new("m.onnx"), m.to_props()).is_ok());
    }

    /// A `variable-density-2d` model carries its density and gives it back; without one it is
    /// refused, as is a density on a model of other masks or a density that is no density.
    #[test]
    fn variable_density_masks_need_their_density_and_round_trip_it() {
        let path = Path::new("dir/m.onnx");
        let mut m = ModelMeta::new(32, 32);
        m.train_mask = MaskPattern::VariableDensity2d;
        m.train_acs_lines = 8;
        m.train_density = Some("1,0.5,0.25".parse().unwrap());
        let props = m.to_props();
        assert!(props.contains(&("msm.train_density".into(), "1,0.5,0.25".into())));
        assert_eq!(ModelMeta::from_props(path, props).unwrap(), m);
        assert!(m
            .to_string()
            .contains("variable-density-2d masks R=4 (8x8 ACS square)"));
        let without: Vec<_> = m
            .to_props()
            .into_iter()
            .filter(|(k, _)| k != "msm.train_density")
            .collect();
        let e = ModelMeta::from_props(path, without)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dir/m.onnx") && e.contains("lacks `msm.train_density`"),
            "{e}"
        );
        let with = |mask: &str, density: &str| {
            let mut props = m.to_props();
            for (k, v) in props.iter_mut() {
                if k == "msm.train_mask" {
                    *v = mask.into();
                } else if k == "msm.train_density" {
                    *v = density.into();
                }
            }
            ModelMeta::from_props(path, props).unwrap_err().to_string()
        };
        let e = with("random-2d", "1,0.5");
        assert!(
            e.contains("msm.train_density") && e.contains("is `random-2d`"),
            "{e}"
        );
        let e = with("variable-density-2d", "1,-2");
        assert!(
            e.contains("msm.train_density") && e.contains("comma-separated weights"),
            "{e}"
        );
    }

    #[test]
    fn recon_eta_is_read_and_checked() {
        let path = Path::new("dir/m.onnx");
        let mut m = sample();
        assert_eq!(m.recon_eta(path).unwrap(), None);
        m.extra.insert(RECON_ETA_KEY.into(), "1".into());
        let back = ModelMeta::from_props(path, m.to_props()).unwrap();
        assert_eq!(back.recon_eta(path).unwrap(), Some(1.0));
        for bad in ["1.5", "-0.1", "one", "NaN"] {
            m.extra.insert(RECON_ETA_KEY.into(), bad.into());
            let e = m.recon_eta(path).unwrap_err().to_string();
            assert!(
                e.contains("dir/m.onnx") && e.contains(RECON_ETA_KEY) && e.contains("0..=1"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let m = ModelMeta::new(32, 32);
        let props = m.to_props();
        assert!(!props.iter().any(|(k, _)| k == "msm.coils"));
        let back = ModelMeta::from_props(Path::new("m.onnx"), props).unwrap();
        assert_eq!(back, m);
    }
}
