//! `msm-train`: train an MSM prior from simulated measurements, export it to ONNX, or convert a
//! guided-diffusion state_dict.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use msm_export::config::UNetConfig;
use msm_export::convert::{check_state_dict, read_state_dict};
use msm_export::onnx::graph::WeightType;
use msm_export::onnx::{freeze, Provenance};
use msm_export::train::{checkpoint_path, TrainConfig, Trainer};

#[derive(Parser)]
#[command(
    name = "msm-train",
    about = "Train MSM priors from undersampled measurements only; freeze them to ONNX"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train (or resume) a run in OUT (checkpoint.safetensors, train.log, config.json).
    Train {
        /// JSON training config (missing fields take the defaults; see `msm-train print-config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Run folder.
        #[arg(long)]
        out: PathBuf,
        /// Override the total number of steps.
        #[arg(long)]
        steps: Option<u64>,
        /// Override the seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Override the measurement noise std.
        #[arg(long)]
        noise_eta: Option<f64>,
        /// Continue from OUT/checkpoint.safetensors.
        #[arg(long)]
        resume: bool,
        /// Torch intra-op threads.
        #[arg(long)]
        threads: Option<i32>,
        /// Also write OUT/model.onnx (EMA weights, f16) and its card at the end.
        #[arg(long)]
        export: bool,
    },
    /// Export the EMA weights of a run's checkpoint to ONNX (with a model card beside it).
    Export {
        /// Run folder holding checkpoint.safetensors.
        #[arg(long)]
        run: PathBuf,
        /// ONNX file to write.
        #[arg(long)]
        out: PathBuf,
        /// Store f32 weights instead of f16.
        #[arg(long)]
        f32: bool,
    },
    /// Convert a guided-diffusion state_dict (.safetensors) to an MSM ONNX model.
    Convert {
        /// The state_dict.
        #[arg(long)]
        state_dict: PathBuf,
        /// JSON architecture (UNetConfig fields).
        #[arg(long)]
        arch: PathBuf,
        /// ONNX file to write.
        #[arg(long)]
        out: PathBuf,
        /// Store f32 weights instead of f16.
        #[arg(long)]
        f32: bool,
    },
    /// Print the default training config as JSON.
    PrintConfig,
}

fn export_run(
    tr: &Trainer,
    out: &std::path::Path,
    weights: WeightType,
    command: String,
) -> msm::Result<()> {
    let cfg = tr.config();
    let prov = Provenance {
        data: Some(cfg.data.clone()),
        steps_trained: Some(tr.step_count()),
        final_loss: tr.last_loss(),
        command: Some(command),
        notes: vec![
            format!(
                "optimizer AdamW lr {} betas {:?} weight decay {}, batch {}, grad clip {}, EMA {} (warm-up {}), seed {}, \
                 timesteps from {} respaced steps",
                cfg.lr, cfg.adam_betas, cfg.weight_decay, cfg.batch_size, cfg.grad_clip, cfg.ema_decay,
                cfg.ema_warmup, cfg.seed, cfg.respaced_steps
            ),
            format!("training config: `{}`", serde_json::to_string(cfg).unwrap_or_default()),
        ],
    };
    freeze(&cfg.unet, &tr.ema_weights()?, weights, &prov, out)
}

fn run(cli: Cli) -> msm::Result<()> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    match cli.cmd {
        Cmd::PrintConfig => {
            println!(
                "{}",
                serde_json::to_string_pretty(&TrainConfig::default()).unwrap_or_default()
            );
        }
        Cmd::Train {
            config,
            out,
            steps,
            seed,
            noise_eta,
            resume,
            threads,
            export,
        } => {
            let mut cfg = match &config {
                Some(p) => TrainConfig::from_json_file(p)?,
                None => TrainConfig::default(),
            };
            if let Some(s) = steps {
                cfg.steps = s;
            }
            if let Some(s) = seed {
                cfg.seed = s;
            }
            if let Some(e) = noise_eta {
                cfg.data.noise_eta = e;
            }
            if let Some(t) = threads {
                tch::set_num_threads(t);
            }
            cfg.validate()?;
            std::fs::create_dir_all(&out).map_err(|e| msm::Error::io(&out, e))?;
            let cfg_path = out.join("config.json");
            let json = serde_json::to_string_pretty(&cfg).unwrap_or_default();
            msm_export::onnx::graph::write_atomic(&cfg_path, json.as_bytes())?;
            let mut tr = if resume {
                Trainer::resume(&cfg, &checkpoint_path(&out))?
            } else {
                Trainer::new(&cfg)?
            };
            eprintln!(
                "training from step {} to {} in {}",
                tr.step_count(),
                cfg.steps,
                out.display()
            );
            tr.run(&out, |line| eprintln!("{line}"))?;
            if export {
                let path = out.join("model.onnx");
                export_run(&tr, &path, WeightType::F16, command)?;
                eprintln!("wrote {}", path.display());
            }
        }
        Cmd::Export { run, out, f32 } => {
            let cfg = TrainConfig::from_json_file(&run.join("config.json"))?;
            let tr = Trainer::resume(&cfg, &checkpoint_path(&run))?;
            let wt = if f32 {
                WeightType::F32
            } else {
                WeightType::F16
            };
            export_run(&tr, &out, wt, command)?;
            eprintln!("wrote {}", out.display());
        }
        Cmd::Convert {
            state_dict,
            arch,
            out,
            f32,
        } => {
            let cfg = UNetConfig::from_json_file(&arch)?;
            let w = read_state_dict(&state_dict)?;
            check_state_dict(&cfg, &w, &state_dict)?;
            let prov = Provenance {
                command: Some(command),
                notes: vec![format!(
                    "converted from the state_dict {}",
                    state_dict.display()
                )],
                ..Default::default()
            };
            let wt = if f32 {
                WeightType::F32
            } else {
                WeightType::F16
            };
            freeze(&cfg, &w, wt, &prov, &out)?;
            eprintln!("wrote {}", out.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msm-train: {e}");
            ExitCode::FAILURE
        }
    }
}
