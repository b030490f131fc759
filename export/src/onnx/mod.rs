//! Freezing a UNet to ONNX: the graph emitter ([`emit`], on the runtime's
//! [`msm::onnx::OnnxBuilder`]), the metadata (the runtime's [`ModelMeta`], with the trainer's own
//! keys in [`ModelMeta::extra`]) and the model card written beside the file.

pub mod emit;

use std::path::{Path, PathBuf};

use crate::config::UNetConfig;
use crate::data::{DataConfig, MaskKind, NoiseEta, NoiseSummary, SCALE_DRAWS, SCALE_KEY};
use crate::train::Trainer;
use emit::{emit_unet, Weights};
use msm::mask::RadialDensity;
use msm::onnx::meta::RECON_ETA_KEY;
use msm::onnx::{ModelMeta, WeightType};
use msm::schedule::Schedule;
use msm::Result;

/// Metadata key of the UNet architecture as JSON ([`UNetConfig`] fields).
pub use msm::unet::UNET_CONFIG_KEY;
/// Metadata key saying how the training k-space was scaled.
pub const INPUT_NORMALISATION_KEY: &str = "msm.input_normalisation";
/// Metadata key saying how the weights are stored.
pub const WEIGHTS_KEY: &str = "msm.weights";

/// Provenance of a trained model, recorded in the metadata and the card.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// The data the model was trained on (None: unknown, e.g. a converted checkpoint).
    pub data: Option<DataConfig>,
    /// For scans, their per-slice noise estimates (what `noise_eta = "estimate"` trained with).
    pub scan_noise: Option<NoiseSummary>,
    /// For scans, the files the slices came from (count and names).
    pub scan_sources: Option<String>,
    /// The sampling density of `"variable-density-2d"` training masks
    /// ([`crate::data::Loader::mask_density`]).
    pub mask_density: Option<RadialDensity>,
    /// Optimizer steps trained.
    pub steps_trained: Option<u64>,
    /// Loss at the end of training.
    pub final_loss: Option<f64>,
    /// The input scale the runtime normalises k-space to (`msm.scale_p99`; None: unknown, and
    /// the runtime does not rescale unless told to).
    pub scale_p99: Option<f64>,
    /// The DDIM eta reconstruction should default to for this model (`msm.recon_eta`; None:
    /// the runtime's default), a sampler setting measured after training.
    pub recon_eta: Option<f64>,
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

/// The metadata of a model of architecture `cfg` trained with schedule `sched`. Fails when
/// `prov` says the noise was estimated per slice but carries no estimates.
pub fn metadata(
    cfg: &UNetConfig,
    sched: &Schedule,
    prov: &Provenance,
    weights: WeightType,
) -> Result<ModelMeta> {
    let mut m = ModelMeta::new(cfg.image_size, cfg.width());
    m.beta_start = sched.beta(0);
    m.beta_end = sched.beta(sched.len() - 1);
    m.num_timesteps = sched.len();
    let mut extra = |k: &str, v: String| m.extra.insert(k.to_string(), v);
    extra(
        UNET_CONFIG_KEY,
        serde_json::to_string(cfg).unwrap_or_default(),
    );
    extra(
        WEIGHTS_KEY,
        match weights {
            WeightType::F16 => "f16 initializers cast to f32".into(),
            WeightType::F32 => "f32 initializers".into(),
        },
    );
    if let Some(s) = prov.scale_p99 {
        extra(SCALE_KEY, s.to_string());
    }
    if let Some(eta) = prov.recon_eta {
        extra(RECON_ETA_KEY, eta.to_string());
    }
    if let Some(data) = &prov.data {
        m.train_mask = data.mask.pattern();
        m.train_acceleration = data.acceleration;
        m.train_acs_lines = data.acs_lines;
        // R to two decimals, without trailing zeros (4, 1.78).
        let r = format!("{:.2}", data.acceleration);
        let r = r.trim_end_matches('0').trim_end_matches('.');
        let masks = match data.mask {
            MaskKind::Random => format!(
                "random Cartesian R = {r} with {} ACS columns",
                data.acs_lines
            ),
            MaskKind::Random2d => format!(
                "random 2-D (entries) R = {r} with a {}x{} ACS square",
                data.acs_lines, data.acs_lines
            ),
            MaskKind::VariableDensity2d => format!(
                "variable-density 2-D (entries) R = {r} with a {}x{} ACS square, density {} \
                 over the k-space radius (`msm.train_density`)",
                data.acs_lines,
                data.acs_lines,
                if data.from_scans() {
                    "as the scans' masks measure it"
                } else {
                    "(1 - r)^2"
                }
            ),
        };
        if data.mask == MaskKind::VariableDensity2d {
            m.train_density = Some(prov.mask_density.clone().ok_or_else(|| {
                msm::Error::invalid("a variable-density-2d model needs its masks' density recorded")
            })?);
        }
        m.train_noise_eta = data.noise_eta.fixed().unwrap_or(0.0);
        m.coils = Some(data.coils);
        if data.from_scans() {
            let (Some(sources), Some(noise)) = (&prov.scan_sources, prov.scan_noise) else {
                return Err(msm::Error::invalid(
                    "a model trained on scans needs their files and noise estimates recorded",
                ));
            };
            // Per-slice estimates are recorded as their median.
            if data.noise_eta == NoiseEta::Estimate {
                m.train_noise_eta = noise.median;
            }
            extra(
                INPUT_NORMALISATION_KEY,
                "each slice's k-space scaled so that max |A_S^H s| is 1".into(),
            );
            m.data_source = Some(format!(
                "{sources}; every slice as measured (fastMRI / ISMRMRD HDF5, {} coils, readout \
                 fitted to {} rows), coil maps by ESPIRiT from each slice's ACS, masks as \
                 acquired ({masks} or more), {}",
                data.coils,
                data.image_size,
                match data.noise_eta {
                    NoiseEta::Estimate => format!(
                        "each slice's noise std per real component estimated from its image rows \
                         with the least signal ({noise})"
                    ),
                    eta => format!("stated noise std {eta} per real component"),
                }
            ));
            m.held_out_slices = Some(
                "none by the trainer: scans held out for evaluation are files not listed".into(),
            );
        } else {
            extra(
                INPUT_NORMALISATION_KEY,
                "k-space scaled so that max |A_S^H s| is 0.8 to 1.2 (uniform) before noise".into(),
            );
            m.data_source = Some(format!(
                "{} (Colin27 T1, mricron-data); simulated {}-coil birdcage acquisitions, \
                 {masks}, axial/coronal/sagittal slices, smooth random \
                 phase of strength {} to {} rad, flips, zoom 0.9-1.1, rotations up to {} deg, gamma \
                 0.8-1.25, zero-filled max scaled to 0.8-1.2, noise std {} per real component",
                data.volume.display(),
                data.coils,
                data.phase_strength[0],
                data.phase_strength[1],
                data.max_rotation_deg,
                data.noise_eta
            ));
            m.held_out_slices = Some(format!(
                "axial slices k = {}..{} (half-open, 0-based NIfTI index) of {}; never used in \
                 training",
                data.held_out_axial[0],
                data.held_out_axial[1],
                data.volume.display()
            ));
        }
    }
    m.architecture = Some(cfg.describe());
    m.steps_trained = prov.steps_trained;
    m.final_loss = prov.final_loss;
    m.git_commit = Some(git_commit());
    m.created = Some(now_rfc3339());
    Ok(m)
}

/// The card path beside an ONNX file: `model.onnx` -> `model.md`.
pub fn card_path(onnx: &Path) -> PathBuf {
    onnx.with_extension("md")
}

/// Markdown model card from the metadata.
pub fn model_card(meta: &ModelMeta, prov: &Provenance) -> String {
    let mut s = String::from("# MSM model card\n\n");
    s.push_str(
        "A measurement-score diffusion (MSM) prior: a guided-diffusion UNet predicting the noise \
         (eps) of a zero-filled multi-coil image, trained only on undersampled measurements (no \
         clean image, no fully sampled scan). Interface: inputs `x` [N, 2, H, W] f32 (real, \
         imaginary) and `t` [N] f32 (timestep on the 0..999 scale); output `eps` [N, 2, H, W]. \
         ONNX opset 17.\n\n",
    );
    match prov.scale_p99 {
        Some(v) => s.push_str(&format!(
            "Input scale: the runtime multiplies acquired k-space so that the 99th percentile of \
             the zero-filled magnitude |A_P^H y| equals `{SCALE_KEY}` = {v}.\n\n"
        )),
        None => s.push_str(&format!(
            "Input scale: unknown (`{SCALE_KEY}` is not set); give the runtime a scale target \
             yourself.\n\n"
        )),
    }
    if let Some(c) = &prov.command {
        s.push_str(&format!("## How it was made\n\n```\n{c}\n```\n\n"));
    }
    if !prov.notes.is_empty() {
        s.push_str("## Notes\n\n");
        for n in &prov.notes {
            s.push_str(&format!("- {n}\n"));
        }
        s.push('\n');
    }
    s.push_str("## Metadata (`metadata_props`)\n\n| key | value |\n|---|---|\n");
    for (k, v) in meta.to_props() {
        s.push_str(&format!("| `{k}` | {} |\n", v.replace('|', "\\|")));
    }
    s
}

/// Writes the ONNX model of `cfg` with weights `w` to `path` and its card beside it (both
/// atomically); returns the metadata written.
pub fn freeze(
    cfg: &UNetConfig,
    w: &Weights,
    weights: WeightType,
    prov: &Provenance,
    path: &Path,
) -> Result<ModelMeta> {
    let meta = metadata(cfg, &Schedule::reference(), prov, weights)?;
    let model = emit_unet(cfg, w, weights, &meta)?.to_bytes()?;
    let card = model_card(&meta, prov);
    // The model and its card or neither: a card must never describe another file's weights.
    msm::io::atomic::write_atomic_set(&[
        (path.to_path_buf(), model),
        (card_path(path), card.into_bytes()),
    ])?;
    Ok(meta)
}

/// Freezes the EMA weights of a training run to `path` (with its card), the input scale
/// estimated from [`SCALE_DRAWS`] training draws; `command` is recorded as how it was made, and
/// `recon_eta` (checked to be in 0..=1) as the model's reconstruction DDIM eta.
pub fn export_run(
    tr: &Trainer,
    path: &Path,
    weights: WeightType,
    command: String,
    recon_eta: Option<f64>,
) -> Result<ModelMeta> {
    if let Some(eta) = recon_eta.filter(|e| !msm::sampler::eta_in_range(*e)) {
        return Err(msm::Error::invalid(format!(
            "reconstruction eta {eta}: expected a DDIM eta in 0..=1"
        )));
    }
    let cfg = tr.config();
    let scale = tr.loader().scale_p99(cfg.seed, SCALE_DRAWS)?;
    let mut notes: Vec<String> = cfg
        .init_from
        .iter()
        .map(|p| {
            format!(
                "fine-tuned: the weights started from the EMA weights of `{p}`; \
                 `msm.steps_trained` counts this run's steps only"
            )
        })
        .collect();
    notes.extend([
        format!(
            "optimizer AdamW lr {}{} betas {:?} weight decay {}, batch {}, grad clip {}, EMA {} \
                 (warm-up {}), seed {}, timesteps from {} respaced steps",
            cfg.lr,
            cfg.lr_final.map_or(String::new(), |f| format!(
                " (cosine decay to {f} from step {} to {})",
                cfg.lr_decay_from, cfg.steps
            )),
            cfg.adam_betas,
            cfg.weight_decay,
            cfg.batch_size,
            cfg.grad_clip,
            cfg.ema_decay,
            cfg.ema_warmup,
            cfg.seed,
            cfg.respaced_steps
        ),
        format!("input scale `{SCALE_KEY}`: {}", scale.describe()),
    ]);
    notes.extend(recon_eta.map(|eta| {
        format!(
            "reconstruction DDIM eta `{RECON_ETA_KEY}` = {eta}: chosen for this model after \
             training (given to the exporter); `msm reconstruct` and `msm demo` take it unless \
             `--eta` is set"
        )
    }));
    notes.push(format!(
        "training config: `{}`",
        serde_json::to_string(cfg).unwrap_or_default()
    ));
    let prov = Provenance {
        data: Some(cfg.data.clone()),
        scan_noise: tr.loader().scan_noise(),
        scan_sources: tr.loader().scan_sources(),
        mask_density: tr.loader().mask_density().cloned(),
        steps_trained: Some(tr.step_count()),
        final_loss: tr.last_loss(),
        scale_p99: Some(scale.median),
        recon_eta,
        command: Some(command),
        notes,
    };
    freeze(&cfg.unet, &tr.ema_weights()?, weights, &prov, path)
}
