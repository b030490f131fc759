//! The training loop: AdamW, EMA of weights, gradient clipping, seeds, checkpoint and resume.
//!
//! Determinism: parameters are initialised from `seed`; everything random in step `k` (the
//! minibatch, the timestep, the diffusion noise and SURE probe) is seeded from (`seed`, `k`), and the
//! optimizer state is part of the checkpoint, so a run resumed at step k continues exactly as the
//! uninterrupted run would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::config::UNetConfig;
use crate::data::{mix_seed, to_batch, DataConfig, Loader, Measurement};
use crate::loss::{msm_loss, LossOptions};
use crate::onnx::emit::Weights;
use crate::store;
use crate::unet::{Precision, UNet};
use crate::validation::{Validation, ValidationConfig};
use msm::schedule::Schedule;
use msm::{Error, Result};

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Network architecture.
    pub unet: UNetConfig,
    /// Measurement simulation.
    pub data: DataConfig,
    /// Total optimizer steps.
    pub steps: u64,
    /// Examples per minibatch.
    pub batch_size: usize,
    /// AdamW learning rate (reference: 5e-5 for MRI); the rate until `lr_decay_from`.
    pub lr: f64,
    /// Learning rate at the last step (`steps`) of a cosine decay from `lr` that starts at
    /// step `lr_decay_from`; `None`: `lr` throughout.
    pub lr_final: Option<f64>,
    /// Step at which the cosine decay to `lr_final` starts.
    pub lr_decay_from: u64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW (beta1, beta2).
    pub adam_betas: [f64; 2],
    /// AdamW epsilon.
    pub adam_eps: f64,
    /// EMA decay of the exported weights (reference: 0.9999).
    pub ema_decay: f64,
    /// Use min(ema_decay, (1 + k) / (10 + k)) at step k, so short runs get a useful average.
    pub ema_warmup: bool,
    /// Clip the global gradient norm to this value (0: no clipping).
    pub grad_clip: f64,
    /// Run seed.
    pub seed: u64,
    /// Number K of respaced timesteps the training timestep is drawn from.
    pub respaced_steps: usize,
    /// SURE probe size.
    pub sure_tau: f64,
    /// SURE weight.
    pub sure_weight: f64,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: u64,
    /// Print and log a progress line every this many steps.
    pub log_every: u64,
    /// Number format of the network's convolutions (`"f32"` or `"bf16"` mixed precision,
    /// 1.2-1.4x as fast on a 2-core AMX Xeon; see [`Precision`]). A run may be resumed in the
    /// other one.
    pub precision: Precision,
    /// Where the run's weights started when it did not start from `seed`'s initialisation: the
    /// checkpoint whose EMA weights [`Trainer::init_from`] copied (provenance, for the card).
    pub init_from: Option<String>,
    /// Held-out scans whose loss is logged during training (none: no validation). It does not
    /// change training, so a run may be resumed with other validation settings.
    pub validation: Option<ValidationConfig>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            unet: UNetConfig::default(),
            data: DataConfig::default(),
            steps: 20_000,
            batch_size: 4,
            lr: 1e-4,
            lr_final: None,
            lr_decay_from: 0,
            weight_decay: 0.0,
            adam_betas: [0.9, 0.999],
            adam_eps: 1e-8,
            ema_decay: 0.9999,
            ema_warmup: true,
            grad_clip: 1.0,
            seed: 0,
            respaced_steps: 200,
            sure_tau: 0.005,
            sure_weight: 0.05,
            checkpoint_every: 500,
            log_every: 10,
            precision: Precision::F32,
            init_from: None,
            validation: None,
        }
    }
}

impl TrainConfig {
    /// Reads a JSON config (missing fields take the defaults) and validates it.
    pub fn from_json_file(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: TrainConfig = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                path,
                format!("not a valid training config (JSON with TrainConfig fields): {e}"),
            )
        })?;
        cfg.validate()
            .map_err(|e| Error::format(path, e.to_string()))?;
        Ok(cfg)
    }

    /// Checks the architecture, the data settings against it, and the optimizer settings.
    pub fn validate(&self) -> Result<()> {
        self.unet.validate()?;
        if (self.unet.image_size, self.unet.width()) != self.data.grid() {
            let (h, w) = self.data.grid();
            return Err(Error::invalid(format!(
                "the network's images are {}x{} (unet.image_size, unet.image_width) but the \
                 data's grid is {h}x{w} (data.image_size, data.image_width); expected the same",
                self.unet.image_size,
                self.unet.width()
            )));
        }
        if self.unet.in_channels != 2 {
            return Err(Error::invalid(format!(
                "unet.in_channels is {}; MRI training needs 2 (real, imaginary)",
                self.unet.in_channels
            )));
        }
        if self.batch_size == 0 || self.respaced_steps == 0 || self.respaced_steps > 1000 {
            return Err(Error::invalid(
                "batch_size must be >= 1 and respaced_steps in 1..=1000",
            ));
        }
        if self.lr.is_nan()
            || self.lr <= 0.0
            || !(0.0..1.0).contains(&self.ema_decay)
            || self.grad_clip < 0.0
        {
            return Err(Error::invalid(
                "lr must be > 0, ema_decay in [0, 1), grad_clip >= 0",
            ));
        }
        if let Some(v) = &self.validation {
            v.validate()?;
        }
        if let Some(f) = self.lr_final {
            if !(f > 0.0 && f <= self.lr) || self.lr_decay_from >= self.steps {
                return Err(Error::invalid(format!(
                    "lr_final must be in (0, lr = {}] and lr_decay_from below steps = {}; got \
                     lr_final {f}, lr_decay_from {}",
                    self.lr, self.steps, self.lr_decay_from
                )));
            }
        }
        Ok(())
    }

    /// The learning rate of optimizer step `k` (1-based): `lr` up to `lr_decay_from`, then a
    /// cosine from `lr` down to `lr_final` at step `steps`.
    pub fn lr_at(&self, k: u64) -> f64 {
        match self.lr_final {
            Some(f) if k > self.lr_decay_from => {
                let span = (self.steps - self.lr_decay_from) as f64;
                let done = ((k - self.lr_decay_from) as f64 / span).min(1.0);
                f + 0.5 * (self.lr - f) * (1.0 + (std::f64::consts::PI * done).cos())
            }
            _ => self.lr,
        }
    }
}

/// Statistics of one optimizer step.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// Step number after this step (1-based).
    pub step: u64,
    /// Timestep used.
    pub t: usize,
    /// Total loss.
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointMeta {
    format: String,
    step: u64,
    last_loss: Option<f64>,
    config: TrainConfig,
}

const CHECKPOINT_FORMAT: &str = "msm-export checkpoint 1";

/// Held while a trainer seeds tch's process-wide generator and draws from it.
static TCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A training run in memory.
pub struct Trainer {
    cfg: TrainConfig,
    _vs: nn::VarStore,
    net: UNet,
    names: Vec<String>,
    params: Vec<Tensor>,
    adam_m: Vec<Tensor>,
    adam_v: Vec<Tensor>,
    ema: Vec<Tensor>,
    step: u64,
    last_loss: Option<f64>,
    sched: Schedule,
    loader: Loader,
    validation: Option<Validation>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer").field("step", &self.step).finish()
    }
}

impl Trainer {
    /// A fresh run: parameters initialised from `cfg.seed`, data volume opened.
    pub fn new(cfg: &TrainConfig) -> Result<Trainer> {
        cfg.validate()?;
        let loader = Loader::open(&cfg.data)?;
        let validation = cfg
            .validation
            .as_ref()
            .map(|v| Validation::open(v, &cfg.data))
            .transpose()?;
        let (vs, net) = {
            let _rng = TCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
            tch::manual_seed(cfg.seed as i64);
            let vs = nn::VarStore::new(Device::Cpu);
            let mut net = UNet::new(&vs.root(), &cfg.unet)?;
            net.set_precision(cfg.precision);
            (vs, net)
        };
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, params): (Vec<String>, Vec<Tensor>) = vars.into_iter().unzip();
        let zeros = |ps: &[Tensor]| ps.iter().map(|p| p.zeros_like()).collect::<Vec<_>>();
        let ema = tch::no_grad(|| params.iter().map(|p| p.detach().copy()).collect());
        Ok(Trainer {
            cfg: cfg.clone(),
            adam_m: zeros(&params),
            adam_v: zeros(&params),
            ema,
            names,
            params,
            _vs: vs,
            net,
            step: 0,
            last_loss: None,
            sched: Schedule::reference(),
            loader,
            validation,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Steps done.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Loss of the last step.
    pub fn last_loss(&self) -> Option<f64> {
        self.last_loss
    }

    /// The network (current, not EMA, weights).
    pub fn net(&self) -> &UNet {
        &self.net
    }

    /// The noise schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.sched
    }

    /// The training data.
    pub fn loader(&self) -> &Loader {
        &self.loader
    }

    /// Current weights, by state_dict name.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        self.names
            .iter()
            .cloned()
            .zip(self.params.iter().map(|p| p.detach().copy()))
            .collect()
    }

    /// EMA weights as a state_dict for export.
    pub fn ema_weights(&self) -> Result<Weights> {
        tensors_to_weights(self.names.iter().map(|s| s.as_str()).zip(self.ema.iter()))
    }

    /// Evaluates the loss of the minibatch of step `step` with the current weights (no update).
    pub fn eval_loss(&self, step: u64) -> Result<f64> {
        let (loss, _) = tch::no_grad(|| self.loss_at(step))?;
        Ok(loss.double_value(&[]))
    }

    fn loss_at(&self, step: u64) -> Result<(Tensor, usize)> {
        let ms = self
            .loader
            .batch(self.cfg.seed, step, self.cfg.batch_size)?;
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(self.cfg.seed ^ 0x7431_5eed, step));
        let steps = self.sched.respace(self.cfg.respaced_steps)?;
        let t = steps[rng.random_range(0..steps.len())];
        let loss = self.batch_loss(&ms, t, mix_seed(self.cfg.seed, step) >> 1)?;
        Ok((loss, t))
    }

    /// The loss of the measurements `ms` at step `t`, the diffusion noise and SURE probe drawn
    /// from torch's generator seeded with `seed`.
    fn batch_loss(&self, ms: &[Measurement], t: usize, seed: u64) -> Result<Tensor> {
        // tch's generator is one per process: hold it from the seeding to the last draw, so
        // that trainers running side by side (tests) keep their streams.
        let _rng = TCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
        let batch = to_batch(ms, Device::Cpu)?;
        tch::manual_seed(seed as i64);
        let opts = LossOptions {
            sure_tau: self.cfg.sure_tau,
            sure_weight: self.cfg.sure_weight,
        };
        let net = |x: &Tensor, tt: &Tensor| self.net.eps(x, tt, true);
        Ok(msm_loss(&net, &batch, &self.sched, t, &opts).total)
    }

    /// The validation loss ([`crate::validation`]) with the EMA weights: the mean loss of the
    /// held-out minibatches, the same measurements, timesteps and noise at every call; `None`
    /// when the run has no validation.
    pub fn validation_loss(&mut self) -> Result<Option<f64>> {
        let Some(v) = &self.validation else {
            return Ok(None);
        };
        let batches = v.batches(self.cfg.batch_size, &self.sched, self.cfg.respaced_steps)?;
        // The network runs on `params`: swap the EMA weights in, and the current ones back.
        let current: Vec<Tensor> = tch::no_grad(|| {
            self.params
                .iter_mut()
                .zip(&self.ema)
                .map(|(p, e)| {
                    let kept = p.detach().copy();
                    p.copy_(e);
                    kept
                })
                .collect()
        });
        let losses: Result<Vec<f64>> = tch::no_grad(|| {
            batches
                .iter()
                .map(|b| {
                    Ok(self
                        .batch_loss(&b.measurements, b.t, b.seed)?
                        .double_value(&[]))
                })
                .collect()
        });
        tch::no_grad(|| {
            for (p, c) in self.params.iter_mut().zip(&current) {
                p.copy_(c);
            }
        });
        let losses = losses?;
        Ok(Some(losses.iter().sum::<f64>() / losses.len() as f64))
    }

    /// One optimizer step.
    pub fn train_step(&mut self) -> Result<StepStats> {
        for p in &mut self.params {
            p.zero_grad();
        }
        let (loss, t) = self.loss_at(self.step)?;
        let loss_value = loss.double_value(&[]);
        if !loss_value.is_finite() {
            return Err(Error::invalid(format!(
                "loss is {loss_value} at step {} (t = {t}); lower the learning rate",
                self.step
            )));
        }
        loss.backward();
        let k = self.step + 1;
        let cfg = &self.cfg;
        let lr = cfg.lr_at(k);
        let grad_norm = tch::no_grad(|| {
            let sq: f64 = self
                .params
                .iter()
                .map(|p| {
                    let g = p.grad();
                    if g.defined() {
                        g.square().sum(Kind::Double).double_value(&[])
                    } else {
                        0.0
                    }
                })
                .sum();
            let norm = sq.sqrt();
            let clip = if cfg.grad_clip > 0.0 && norm > cfg.grad_clip {
                cfg.grad_clip / (norm + 1e-6)
            } else {
                1.0
            };
            let [b1, b2] = cfg.adam_betas;
            let bc1 = 1.0 - b1.powi(k as i32);
            let bc2 = 1.0 - b2.powi(k as i32);
            let decay = if cfg.ema_warmup {
                cfg.ema_decay.min((1.0 + k as f64) / (10.0 + k as f64))
            } else {
                cfg.ema_decay
            };
            for i in 0..self.params.len() {
                let p = &mut self.params[i];
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = g * clip;
                self.adam_m[i] = &self.adam_m[i] * b1 + &g * (1.0 - b1);
                self.adam_v[i] = &self.adam_v[i] * b2 + g.square() * (1.0 - b2);
                let update =
                    (&self.adam_m[i] / bc1) / ((&self.adam_v[i] / bc2).sqrt() + cfg.adam_eps);
                let new = &*p * (1.0 - lr * cfg.weight_decay) - update * lr;
                p.copy_(&new);
                self.ema[i] = &self.ema[i] * decay + &*p * (1.0 - decay);
            }
            norm
        });
        self.step = k;
        self.last_loss = Some(loss_value);
        Ok(StepStats {
            step: k,
            t,
            loss: loss_value,
            grad_norm,
        })
    }

    /// Writes parameters, EMA, optimizer state, step and config to a safetensors file (atomic).
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let meta = CheckpointMeta {
            format: CHECKPOINT_FORMAT.into(),
            step: self.step,
            last_loss: self.last_loss,
            config: self.cfg.clone(),
        };
        let mut entries: Vec<(String, Tensor)> = Vec::new();
        for (i, n) in self.names.iter().enumerate() {
            entries.push((format!("model.{n}"), self.params[i].detach().copy()));
            entries.push((format!("ema.{n}"), self.ema[i].copy()));
            entries.push((format!("adam_m.{n}"), self.adam_m[i].copy()));
            entries.push((format!("adam_v.{n}"), self.adam_v[i].copy()));
        }
        store::write(path, &meta, entries, "checkpoint")
    }

    /// Resumes a run from `path`, written by [`Trainer::save_checkpoint`] for the same
    /// configuration. The step count and the learning-rate decay (`lr_final`,
    /// `lr_decay_from`) may differ: a run can be extended, and given a decay to finish with.
    pub fn resume(cfg: &TrainConfig, path: &Path) -> Result<Trainer> {
        let mut tr = Trainer::new(cfg)?;
        let (meta, map) = read_checkpoint(path)?;
        let mut same = meta.config.clone();
        same.steps = cfg.steps;
        same.lr_final = cfg.lr_final;
        same.lr_decay_from = cfg.lr_decay_from;
        same.checkpoint_every = cfg.checkpoint_every;
        same.log_every = cfg.log_every;
        same.precision = cfg.precision;
        same.init_from = cfg.init_from.clone();
        same.validation = cfg.validation.clone();
        if &same != cfg {
            return Err(Error::format(
                path,
                "checkpoint was written with a different configuration (architecture, data or optimizer); \
                 resume with the config stored in it",
            ));
        }
        tch::no_grad(|| -> Result<()> {
            for i in 0..tr.names.len() {
                let n = tr.names[i].clone();
                let want = tr.params[i].size();
                let get =
                    |prefix: &str| checkpoint_tensor(&map, path, &format!("{prefix}.{n}"), &want);
                tr.params[i].copy_(get("model")?);
                tr.ema[i] = get("ema")?.copy();
                tr.adam_m[i] = get("adam_m")?.copy();
                tr.adam_v[i] = get("adam_v")?.copy();
            }
            Ok(())
        })?;
        tr.step = meta.step;
        tr.last_loss = meta.last_loss;
        // Provenance stays with the run whether or not the resuming config repeats it.
        tr.cfg.init_from = meta.config.init_from.or(tr.cfg.init_from);
        Ok(tr)
    }

    /// A new run (step 0, fresh optimizer state, `cfg`'s data, schedule and seeds) whose
    /// parameters and EMA start from the EMA weights of the checkpoint at `path`: fine-tuning
    /// a trained prior for other data, e.g. noisy measurements. The architecture must match;
    /// `cfg.init_from` should name `path` (the CLI sets it) so that the card says so.
    pub fn init_from(cfg: &TrainConfig, path: &Path) -> Result<Trainer> {
        let mut tr = Trainer::new(cfg)?;
        let (meta, map) = read_checkpoint(path)?;
        if meta.config.unet != cfg.unet {
            return Err(Error::format(
                path,
                "checkpoint holds a different architecture (`unet` section) than the config; \
                 fine-tuning needs the same network",
            ));
        }
        tch::no_grad(|| -> Result<()> {
            for i in 0..tr.names.len() {
                let key = format!("ema.{}", tr.names[i]);
                let t = checkpoint_tensor(&map, path, &key, &tr.params[i].size())?;
                tr.params[i].copy_(t);
                tr.ema[i] = t.copy();
            }
            Ok(())
        })?;
        Ok(tr)
    }

    /// Trains until `cfg.steps`, checkpointing to `out/checkpoint.safetensors`, appending progress
    /// lines to `out/train.log` and passing each to `progress`.
    pub fn run(&mut self, out: &Path, mut progress: impl FnMut(&str)) -> Result<()> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let log_path = out.join("train.log");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(&log_path, e))?;
        let ckpt = checkpoint_path(out);
        if self.step < self.cfg.steps {
            let precision = match self.cfg.precision {
                Precision::F32 => "f32",
                Precision::Bf16 => "bf16 (mixed precision)",
            };
            writeln!(
                log,
                "# steps {}..{}: convolutions in {precision}",
                self.step, self.cfg.steps
            )
            .map_err(|e| Error::io(&log_path, e))?;
            if let Some(v) = &self.validation {
                let line = format!(
                    "# validation every {} steps on {} (EMA weights)",
                    v.config().every,
                    v.describe(self.cfg.batch_size)
                );
                writeln!(log, "{line}").map_err(|e| Error::io(&log_path, e))?;
                progress(&line);
            }
        }
        let mut window = (Instant::now(), 0u64, 0.0f64);
        while self.step < self.cfg.steps {
            let st = self.train_step()?;
            window.1 += 1;
            window.2 += st.loss;
            if st.step % self.cfg.log_every.max(1) == 0 || st.step == self.cfg.steps {
                let secs = window.0.elapsed().as_secs_f64().max(1e-9);
                let line = format!(
                    "step {}/{} loss {:.6} (mean of last {}: {:.6}) t {} grad_norm {:.3} lr {:.2e} {:.2} examples/s",
                    st.step,
                    self.cfg.steps,
                    st.loss,
                    window.1,
                    window.2 / window.1 as f64,
                    st.t,
                    st.grad_norm,
                    self.cfg.lr_at(st.step),
                    (window.1 as f64 * self.cfg.batch_size as f64) / secs
                );
                writeln!(log, "{line}").map_err(|e| Error::io(&log_path, e))?;
                progress(&line);
                window = (Instant::now(), 0, 0.0);
            }
            let every = self.validation.as_ref().map(|v| v.config().every);
            if every.is_some_and(|e| st.step % e == 0 || st.step == self.cfg.steps) {
                if let Some(loss) = self.validation_loss()? {
                    let line = format!("step {} validation loss {loss:.6}", st.step);
                    writeln!(log, "{line}").map_err(|e| Error::io(&log_path, e))?;
                    progress(&line);
                }
            }
            if st.step % self.cfg.checkpoint_every.max(1) == 0 || st.step == self.cfg.steps {
                self.save_checkpoint(&ckpt)?;
            }
        }
        Ok(())
    }
}

/// Entry `key` of a checkpoint's tensors, which must have shape `want`.
fn checkpoint_tensor<'a>(
    map: &'a std::collections::HashMap<String, Tensor>,
    path: &Path,
    key: &str,
    want: &[i64],
) -> Result<&'a Tensor> {
    let t = map
        .get(key)
        .ok_or_else(|| Error::format(path, format!("checkpoint lacks `{key}`")))?;
    if t.size() != want {
        return Err(Error::format(
            path,
            format!("`{key}` has shape {:?}, expected {want:?}", t.size()),
        ));
    }
    Ok(t)
}

/// The metadata and tensors of a checkpoint written by [`Trainer::save_checkpoint`].
fn read_checkpoint(
    path: &Path,
) -> Result<(CheckpointMeta, std::collections::HashMap<String, Tensor>)> {
    store::read(path, CHECKPOINT_FORMAT, "checkpoint")
}

/// The checkpoint file of a run folder.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    out.join("checkpoint.safetensors")
}

/// Converts named tch tensors into a [`Weights`] state_dict (f32).
pub fn tensors_to_weights<'a>(it: impl Iterator<Item = (&'a str, &'a Tensor)>) -> Result<Weights> {
    let mut w = Weights::new();
    for (n, t) in it {
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let data = Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).contiguous().reshape([-1]))
            .map_err(|e| Error::invalid(format!("parameter {n}: {e}")))?;
        w.insert(n, shape, data);
    }
    Ok(w)
}
