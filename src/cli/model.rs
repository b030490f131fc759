//! Options shared by the commands that run a model: which model, and the sampler settings.

use super::shipped;
use msm::denoiser::{Backend, OnnxDenoiser};
use msm::mask::PartialKind;
use msm::onnx::meta::DEFAULT_RECON_ETA;
use msm::sampler::{model_partial_kind, Mode, SamplerOptions};
use msm::{Error, Result};
use std::path::PathBuf;

/// The default shipped model, relative to the repository and found from any working folder
/// ([`super::shipped`]; or set `--model`): the prior
/// fine-tuned on noisy measurements, which reconstructs noisy and noiseless scans better than
/// the noiseless prior `models/msm-brain-128.onnx` it started from (docs/results.md).
pub const DEFAULT_MODEL: &str = "models/msm-brain-128-noisy.onnx";

/// Sampler options on the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplerArgs {
    /// ONNX model with MSM metadata. A path under models/ (the shipped models) that is not in
    /// the working folder is looked for beside the executable, then in the source checkout the
    /// binary was built from.
    #[arg(long, default_value = DEFAULT_MODEL, value_parser = shipped::path_arg)]
    pub model: PathBuf,
    /// Sampling steps K (default: 200 for `reconstruct` and `generate`, fewer for `demo`).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Partial scores per step w.
    #[arg(long, default_value_t = 3)]
    pub partials: usize,
    /// DDIM eta (default: for reconstruction the model's `msm.recon_eta`, else 0.85; 1.0 for
    /// generation).
    #[arg(long)]
    pub eta: Option<f64>,
    /// How the w partial scores of a step are evaluated.
    #[arg(long, value_enum, default_value_t = ModeArg::Parallel)]
    pub mode: ModeArg,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Network executor: `native` (this project's UNet kernels; for models written by
    /// msm-train), `native-bf16` (the same with bf16 convolutions on AMX tiles or AVX512-BF16,
    /// where the CPU has them), `native-fast` (bf16 with Winograd F(4x4) at 64 and 128 pixels:
    /// faster, its network output further from f32, held to equal reconstruction PSNR),
    /// `tract` (any ONNX graph), or `auto` (native when the file allows it).
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
}

/// Network executors on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum BackendArg {
    /// Native when the model file is a graph it runs exactly, else tract.
    Auto,
    /// The native UNet executor.
    Native,
    /// The native executor with bf16 3x3 convolutions (AMX tiles or AVX512-BF16).
    NativeBf16,
    /// The bf16 executor with Winograd F(4x4, 3x3) at 64 and 128 pixels (AVX512-BF16).
    NativeFast,
    /// tract.
    Tract,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Native => Backend::Native,
            BackendArg::NativeBf16 => Backend::NativeBf16,
            BackendArg::NativeFast => Backend::NativeFast,
            BackendArg::Tract => Backend::Tract,
        }
    }
}

/// Sampler modes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ModeArg {
    /// The w partial scores of a step on the same state, on parallel workers.
    Parallel,
    /// The paper's Algorithm 1: one partial score after another.
    Sequential,
}

/// What a command samples: it sets the default DDIM eta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// Posterior sampling: the model's `msm.recon_eta` (a setting measured for it), else
    /// [`DEFAULT_RECON_ETA`].
    Reconstruction,
    /// Unconditional generation: 1.0 (DDPM-like moves).
    Generation,
}

/// Loads the model and builds sampler options from its metadata and the arguments; partial
/// column masks are `width` columns wide (default: the model's width); 2-D masks
/// (`random-2d` and `variable-density-2d` models) are on the model's grid.
pub fn load(
    a: &SamplerArgs,
    job: Job,
    default_steps: usize,
    width: Option<usize>,
) -> Result<(OnnxDenoiser, SamplerOptions)> {
    if !a.model.exists() {
        return Err(Error::format(
            &a.model,
            format!(
                "model file not found (looked for in: {}); expected an ONNX model: pass \
                 --model <file.onnx>",
                shipped::searched(&a.model)
            ),
        ));
    }
    let net = OnnxDenoiser::load_with(&a.model, a.backend.into())?;
    let m = net.meta().clone();
    let schedule = m.schedule(&a.model)?;
    let eta = match (a.eta, job) {
        (Some(eta), _) => eta,
        (None, Job::Generation) => 1.0,
        (None, Job::Reconstruction) => match m.recon_eta(&a.model)? {
            Some(eta) => {
                if !a.quiet {
                    eprintln!("DDIM eta {eta}: the model's msm.recon_eta (set --eta to change)");
                }
                eta
            }
            None => DEFAULT_RECON_ETA,
        },
    };
    let mut partial = model_partial_kind(&m);
    if let (PartialKind::Columns { width: w, .. }, Some(width)) = (&mut partial, width) {
        *w = width;
    }
    let opts = SamplerOptions {
        steps: a.steps.unwrap_or(default_steps),
        partials: a.partials,
        eta,
        seed: a.seed,
        partial: Some(partial),
        mode: match a.mode {
            ModeArg::Parallel => Mode::Parallel,
            ModeArg::Sequential => Mode::Sequential,
        },
        schedule,
        ..SamplerOptions::default()
    };
    // Bad settings fail here, before a command reads its data or writes anything.
    opts.check()?;
    Ok((net, opts))
}
