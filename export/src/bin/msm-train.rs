//! `msm-train`: train an MSM prior from simulated measurements, export it to ONNX, or convert a
//! guided-diffusion state_dict.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use msm::onnx::WeightType;
use msm_export::config::UNetConfig;
use msm_export::convert::{check_state_dict, read_state_dict};
use msm_export::data::{Loader, NoiseEta};
use msm_export::onnx::{export_run, freeze, Provenance};
use msm_export::train::{checkpoint_path, TrainConfig, Trainer};
use msm_export::unet::Precision;
use msm_export::validation::ValidationConfig;

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
        /// Override the measurement noise std: a number, or `estimate` (scans only: each
        /// slice's own, estimated from its image rows with the least signal).
        #[arg(long)]
        noise_eta: Option<NoiseEta>,
        /// Continue from OUT/checkpoint.safetensors.
        #[arg(long, conflicts_with = "init_from")]
        resume: bool,
        /// Start a new run (step 0, fresh optimizer) from the EMA weights of this checkpoint
        /// (same architecture): fine-tuning, e.g. on noisy measurements.
        #[arg(long)]
        init_from: Option<PathBuf>,
        /// Torch intra-op threads.
        #[arg(long)]
        threads: Option<i32>,
        /// Override the number format of the convolutions: bf16 is mixed precision, 1.2-1.4x
        /// as fast as f32 on a 2-core AMX Xeon (and slower than f32 without AMX or
        /// AVX512-BF16).
        #[arg(long, value_enum)]
        precision: Option<Precision>,
        /// Also write OUT/model.onnx (EMA weights, f16) and its card at the end.
        #[arg(long)]
        export: bool,
    },
    /// Prepare the scans of a config's `data.scans` once (k-space on the model's grid, masks,
    /// ESPIRiT maps, gains, noise estimates) and write them to one .safetensors file, which a
    /// config may list in `data.scans` in their place, here and in export/gpu/train.py.
    Prepare {
        /// JSON training config whose `data` section lists the scans.
        #[arg(long)]
        config: PathBuf,
        /// The .safetensors file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// The validation loss of a run's checkpoint (EMA weights) on held-out scans: the config's
    /// `validation` settings, or these scans with its defaults.
    Validate {
        /// Run folder holding checkpoint.safetensors and config.json.
        #[arg(long)]
        run: PathBuf,
        /// Held-out scans (.h5, or prepared .safetensors) in place of the config's.
        #[arg(long, num_args = 1..)]
        scans: Vec<PathBuf>,
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
        /// The DDIM eta reconstruction should take for this model unless told otherwise
        /// (written as `msm.recon_eta`, 0 to 1; default: not recorded, the runtime's 0.85).
        #[arg(long)]
        recon_eta: Option<f64>,
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
        /// The 99th percentile of the zero-filled magnitude of the data the network was trained
        /// on, on the network's input scale (written as `msm.scale_p99`; default: not recorded).
        #[arg(long)]
        scale_p99: Option<f64>,
    },
    /// Print the default training config as JSON.
    PrintConfig,
}

fn weight_type(f32: bool) -> WeightType {
    if f32 {
        WeightType::F32
    } else {
        WeightType::F16
    }
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
            init_from,
            threads,
            precision,
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
            if let Some(p) = precision {
                cfg.precision = p;
            }
            if cfg.precision == Precision::Bf16 && !msm::unet::native::bf16_available() {
                eprintln!(
                    "warning: this CPU has neither AMX nor AVX512-BF16; bf16 convolutions are \
                     emulated and slower than f32 (--precision f32)"
                );
            }
            if let Some(p) = &init_from {
                cfg.init_from = Some(p.display().to_string());
            }
            cfg.validate()?;
            // The data (a volume, or scans) are opened before the run folder is made, so a
            // missing or bad file leaves no folder behind.
            let mut tr = if resume {
                Trainer::resume(&cfg, &checkpoint_path(&out))?
            } else if let Some(p) = &init_from {
                Trainer::init_from(&cfg, p)?
            } else {
                Trainer::new(&cfg)?
            };
            std::fs::create_dir_all(&out).map_err(|e| msm::Error::io(&out, e))?;
            let cfg_path = out.join("config.json");
            let json = serde_json::to_string_pretty(&cfg).unwrap_or_default();
            msm::io::atomic::write_atomic(&cfg_path, |f| f.write_all(json.as_bytes()))?;
            if let Some(noise) = tr.loader().scan_noise() {
                let used = match cfg.data.noise_eta {
                    NoiseEta::Estimate => "each slice trains with its own estimate".to_string(),
                    eta => format!("data.noise_eta is {eta} for every slice"),
                };
                eprintln!(
                    "{} scan slices; their noise std per real component on the training scale, \
                     estimated from the image rows with the least signal: {noise} ({used})",
                    tr.loader().scan_slices(),
                );
                if cfg.data.noise_eta == NoiseEta::Fixed(0.0) {
                    eprintln!(
                        "warning: data.noise_eta is 0, so the scans train with the noiseless \
                         loss, which takes their noise for signal; `--noise-eta estimate` (or \
                         \"noise_eta\": \"estimate\") gives each slice its own level for the \
                         SURE loss"
                    );
                }
            }
            if let Some(coverage) = tr.loader().mask_coverage() {
                eprintln!("scan masks: {coverage}");
                if let Some(w) = coverage.warning() {
                    eprintln!("warning: {w}");
                }
            }
            if let Some(density) = tr.loader().mask_density() {
                eprintln!(
                    "mask density (msm.train_density; weights over {} bins of the k-space \
                     radius, centre to corners): {density}",
                    density.weights().len()
                );
            }
            eprintln!(
                "training from step {} to {} in {}",
                tr.step_count(),
                cfg.steps,
                out.display()
            );
            tr.run(&out, |line| eprintln!("{line}"))?;
            if export {
                let path = out.join("model.onnx");
                export_run(&tr, &path, WeightType::F16, command, None)?;
                eprintln!("wrote {}", path.display());
            }
        }
        Cmd::Prepare { config, out } => {
            if out.extension().is_none_or(|e| e != "safetensors") {
                return Err(msm::Error::invalid(format!(
                    "{}: expected a .safetensors file name (a config's data.scans reads prepared \
                     scans by that extension)",
                    out.display()
                )));
            }
            let cfg = TrainConfig::from_json_file(&config)?;
            cfg.validate()?;
            let loader = Loader::open(&cfg.data)?;
            loader.write_prepared(&out)?;
            eprintln!(
                "wrote {} slices of {} to {}; their noise estimates: {}",
                loader.scan_slices(),
                loader.scan_sources().unwrap_or_default(),
                out.display(),
                loader
                    .scan_noise()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            );
        }
        Cmd::Validate { run, scans } => {
            let mut cfg = TrainConfig::from_json_file(&run.join("config.json"))?;
            if !scans.is_empty() {
                cfg.validation = Some(ValidationConfig {
                    scans,
                    ..cfg.validation.unwrap_or_default()
                });
            }
            if cfg.validation.is_none() {
                return Err(msm::Error::invalid(format!(
                    "{}: the run's config has no `validation` section; expected --scans",
                    run.display()
                )));
            }
            let mut tr = Trainer::resume(&cfg, &checkpoint_path(&run))?;
            if let Some(loss) = tr.validation_loss()? {
                println!("step {} validation loss {loss:.6}", tr.step_count());
            }
        }
        Cmd::Export {
            run,
            out,
            f32,
            recon_eta,
        } => {
            let cfg = TrainConfig::from_json_file(&run.join("config.json"))?;
            let tr = Trainer::resume(&cfg, &checkpoint_path(&run))?;
            export_run(&tr, &out, weight_type(f32), command, recon_eta)?;
            eprintln!("wrote {}", out.display());
        }
        Cmd::Convert {
            state_dict,
            arch,
            out,
            f32,
            scale_p99,
        } => {
            if let Some(v) = scale_p99.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(msm::Error::invalid(format!(
                    "--scale-p99 {v}: expected a finite number > 0"
                )));
            }
            let cfg = UNetConfig::from_json_file(&arch)?;
            let w = read_state_dict(&state_dict)?;
            check_state_dict(&cfg, &w, &state_dict)?;
            let mut notes = vec![
                format!("converted from the state_dict {}", state_dict.display()),
                "training data and masks unknown: the training-mask entries of the metadata are \
                 the MSM reference settings (random Cartesian, R = 4, 20 ACS lines per 256)"
                    .to_string(),
            ];
            if scale_p99.is_some() {
                notes.push("input scale given on the command line (--scale-p99)".to_string());
            }
            let prov = Provenance {
                scale_p99,
                command: Some(command),
                notes,
                ..Default::default()
            };
            freeze(&cfg, &w, weight_type(f32), &prov, &out)?;
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
