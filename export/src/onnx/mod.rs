//! Freezing a UNet to ONNX: the graph emitter, the metadata (`msm.*` keys, as read by the
//! runtime's `msm::onnx::meta::ModelMeta`) and the model card written beside the file.

pub mod emit;
pub mod graph;

use std::path::{Path, PathBuf};

use crate::config::UNetConfig;
use crate::data::DataConfig;
use crate::schedule::Schedule;
use emit::{emit_unet, Weights};
use graph::{write_atomic, write_model, WeightType};
use msm::Result;

/// Provenance of a trained model, recorded in the metadata and the card.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// The data the model was trained on (None: unknown, e.g. a converted checkpoint).
    pub data: Option<DataConfig>,
    /// Optimizer steps trained.
    pub steps_trained: Option<u64>,
    /// Loss at the end of training.
    pub final_loss: Option<f64>,
    /// The command that trained it.
    pub command: Option<String>,
    /// Free-form notes for the card (training settings, where the weights came from).
    pub notes: Vec<String>,
}

/// UTC date-time now in RFC 3339 form.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The commit of the working tree, or "unknown".
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The `metadata_props` of a model.
pub fn metadata(
    cfg: &UNetConfig,
    sched: &Schedule,
    prov: &Provenance,
    weights: WeightType,
) -> Vec<(String, String)> {
    let mut m: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| m.push((format!("msm.{k}"), v));
    put("format_version", "1".into());
    put("image_height", cfg.image_size.to_string());
    put("image_width", cfg.image_size.to_string());
    put("channels", cfg.in_channels.to_string());
    put("prediction", "eps".into());
    put("schedule", "linear".into());
    put("beta_start", sched.beta_start().to_string());
    put("beta_end", sched.beta_end().to_string());
    put("num_timesteps", sched.len().to_string());
    let data = prov.data.clone().unwrap_or_default();
    put("train_mask", "random".into());
    put("train_acceleration", data.acceleration.to_string());
    put("train_acs_lines", data.acs_lines.to_string());
    put("train_noise_eta", data.noise_eta.to_string());
    if prov.data.is_some() {
        put("coils", data.coils.to_string());
        put(
            "data_source",
            format!(
                "{} (Colin27 T1, mricron-data); simulated {}-coil birdcage acquisitions, random Cartesian R = {} \
                 with {} ACS columns, smooth random phase, flips, rotations up to {} deg, zero-filled max scaled \
                 to 0.8-1.2, noise std {} per real component",
                data.volume.display(),
                data.coils,
                data.acceleration,
                data.acs_lines,
                data.max_rotation_deg,
                data.noise_eta
            ),
        );
        put(
            "held_out_slices",
            format!(
                "axial slices k = {}..{} (half-open, 0-based NIfTI index) of {}; never used in training",
                data.held_out_axial[0],
                data.held_out_axial[1],
                data.volume.display()
            ),
        );
        put(
            "input_normalisation",
            "k-space scaled so that max |A_S^H s| is about 1 (0.8-1.2) before noise".into(),
        );
    }
    put("architecture", cfg.describe());
    put(
        "unet_config",
        serde_json::to_string(cfg).unwrap_or_default(),
    );
    put(
        "weights",
        match weights {
            WeightType::F16 => "f16 initializers cast to f32".into(),
            WeightType::F32 => "f32 initializers".into(),
        },
    );
    if let Some(s) = prov.steps_trained {
        put("steps_trained", s.to_string());
    }
    if let Some(l) = prov.final_loss {
        put("final_loss", l.to_string());
    }
    put("git_commit", git_commit());
    put("created", now_rfc3339());
    m
}

/// The card path beside an ONNX file: `model.onnx` -> `model.md`.
pub fn card_path(onnx: &Path) -> PathBuf {
    onnx.with_extension("md")
}

/// Markdown model card from the metadata.
pub fn model_card(meta: &[(String, String)], prov: &Provenance) -> String {
    let mut s = String::from("# MSM model card\n\n");
    s.push_str(
        "A measurement-score diffusion (MSM) prior: a guided-diffusion UNet predicting the noise (eps) \
         of a zero-filled multi-coil image, trained only on undersampled measurements (no clean image, \
         no fully sampled scan). Interface: inputs `x` [N, 2, H, W] f32 (real, imaginary) and `t` [N] f32 \
         (timestep on the 0..999 scale); output `eps` [N, 2, H, W]. ONNX opset 17.\n\n",
    );
    if let Some(c) = &prov.command {
        s.push_str(&format!("## How it was trained\n\n```\n{c}\n```\n\n"));
    }
    if !prov.notes.is_empty() {
        s.push_str("## Notes\n\n");
        for n in &prov.notes {
            s.push_str(&format!("- {n}\n"));
        }
        s.push('\n');
    }
    s.push_str("## Metadata (`metadata_props`)\n\n| key | value |\n|---|---|\n");
    for (k, v) in meta {
        s.push_str(&format!("| `{k}` | {} |\n", v.replace('|', "\\|")));
    }
    s
}

/// Writes the ONNX model of `cfg` with weights `w` to `path` and its card beside it.
pub fn freeze(
    cfg: &UNetConfig,
    w: &Weights,
    weights: WeightType,
    prov: &Provenance,
    path: &Path,
) -> Result<()> {
    let meta = metadata(cfg, &Schedule::reference(), prov, weights);
    let model = emit_unet(cfg, w, weights, &meta)?;
    write_model(&model, path)?;
    write_atomic(&card_path(path), model_card(&meta, prov).as_bytes())
}
