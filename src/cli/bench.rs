//! `msm bench`: this runtime's speed on one model and one simulated slice, in one run: the
//! machine's f32 matrix-product peak, one network evaluation on each executor (native and
//! tract; batch 1 and batch w; one worker, and two workers at once), and whole posterior
//! reconstructions at 1 and 2 threads with their PSNR. Prints a table; `--json` writes the
//! figures for `benches/compare.py`, which sets them beside onnxruntime and PyTorch.

use super::model::DEFAULT_MODEL;
use super::progress;
use msm::denoiser::{Backend, Denoiser, OnnxDenoiser};
use msm::mask::Acs;
use msm::metrics::compare;
use msm::onnx::meta::DEFAULT_RECON_ETA;
use msm::recon::zero_filled;
use msm::sampler::{self, model_partial_kind, pack, NetworkPrior, ReconOptions, SamplerOptions};
use msm::sense::Sense;
use msm::simulate::{simulate, SimOptions};
use msm::unet::kernels::product_rate;
use msm::{Error, Result};
use ndarray::{Array4, Ix2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `msm bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ONNX model.
    #[arg(long, default_value = DEFAULT_MODEL, value_parser = super::shipped::path_arg)]
    pub model: PathBuf,
    /// Magnitude image (2-D .npy) to simulate the scan from.
    #[arg(long, default_value = super::demo::SHIPPED_SLICE, value_parser = super::shipped::path_arg)]
    pub image: PathBuf,
    /// Partial scores per step w (also the batch of the batched evaluation).
    #[arg(long, default_value_t = 3)]
    pub partials: usize,
    /// Sampling steps K of the whole reconstructions.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Timed rounds per network figure (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Skip tract (it is several times slower).
    #[arg(long)]
    pub no_tract: bool,
    /// Skip the whole reconstructions.
    #[arg(long)]
    pub no_recon: bool,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Median seconds per evaluation: `workers` calls at once on a pool of `threads` threads,
/// each evaluating a batch of `batch` images per round. With one call on two threads, the
/// native executor splits each layer across both (intra-op pieces); two calls on two threads
/// run one each.
fn per_eval(
    net: &OnnxDenoiser,
    x: &Array4<f32>,
    batch: usize,
    (threads, workers): (usize, usize),
    repeats: usize,
) -> Result<f64> {
    let xb = ndarray::concatenate(ndarray::Axis(0), &vec![x.view(); batch])
        .map_err(|e| Error::invalid(e.to_string()))?;
    let t: Vec<f32> = (0..batch).map(|i| 500.0 + i as f32).collect();
    // A persistent pool, as the sampler's rayon workers are: the executor keeps buffers per
    // thread, so threads made afresh for every round would measure their first pass only.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::invalid(e.to_string()))?;
    let round = || -> Result<f64> {
        let start = Instant::now();
        pool.install(|| {
            (0..workers)
                .into_par_iter()
                .try_for_each(|_| net.predict_eps(xb.view(), &t).map(|_| ()))
        })?;
        Ok(start.elapsed().as_secs_f64() / (workers * batch) as f64)
    };
    round()?;
    let v = (0..repeats)
        .map(|_| round())
        .collect::<Result<Vec<f64>>>()?;
    Ok(median(v))
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

struct NetRow {
    backend: Backend,
    threads: usize,
    workers: usize,
    batch: usize,
    ms: f64,
    gflops: f64,
}

struct ReconRow {
    backend: Backend,
    threads: usize,
    seconds: f64,
    network_share: f64,
    psnr: f64,
}

/// Runs `msm bench`.
pub fn run(a: Args) -> Result<()> {
    if a.partials == 0 || a.repeats == 0 || a.steps == 0 {
        return Err(Error::invalid(
            "--partials, --repeats and --steps must be at least 1",
        ));
    }
    if let Some(path) = &a.json {
        msm::io::atomic::check_folder(path)?;
    }
    eprintln!("measuring the f32 matrix-product peak ...");
    let peak1 = product_rate(1024, 1, a.repeats);
    let peak2 = product_rate(1024, 2, a.repeats);

    let native = OnnxDenoiser::load_with(&a.model, Backend::Native)?;
    let meta = native.meta().clone();
    let gflop = native.native().map_or(f64::NAN, |n| n.flops() / 1e9);
    let (h, w) = (meta.height, meta.width);
    let image = msm::io::npy::read_npy_as::<f32, Ix2>(&a.image)?;
    let sim = SimOptions {
        height: h,
        width: w,
        coils: 8,
        accel: 4.0,
        acs: Acs::Lines(20),
        ..SimOptions::default()
    };
    let acq = simulate(image.view(), &sim, &mut ChaCha8Rng::seed_from_u64(1))?;
    let op = Sense::new(acq.maps.clone())?;
    let mask = acq.mask.clone();
    let zf = zero_filled(&op, acq.kspace.view(), &mask);
    let x = pack(&zf);

    let mut nets = Vec::new();
    let mut loaded = vec![(Backend::Native, native)];
    if msm::unet::native::bf16_available() {
        loaded.push((
            Backend::NativeBf16,
            OnnxDenoiser::load_with(&a.model, Backend::NativeBf16)?,
        ));
    } else {
        eprintln!(
            "no AMX-BF16 or AVX512-BF16 kernels here, {}: native-bf16 not measured",
            msm::unet::kernels::missing_avx512_reason()
        );
    }
    if msm::unet::winograd4_available() {
        loaded.push((
            Backend::NativeFast,
            OnnxDenoiser::load_with(&a.model, Backend::NativeFast)?,
        ));
    } else {
        eprintln!(
            "no AVX512-BF16 kernels here, {}: native-fast not measured",
            msm::unet::kernels::missing_avx512_reason()
        );
    }
    if !a.no_tract {
        let t = Instant::now();
        let tract = OnnxDenoiser::load_with(&a.model, Backend::Tract)?;
        eprintln!("tract plan built in {:.1} s", t.elapsed().as_secs_f64());
        loaded.push((Backend::Tract, tract));
    }
    for (backend, net) in &loaded {
        let configs = [(1, 1), (2, 1), (2, 2)];
        for (threads, workers) in configs {
            for batch in [1, a.partials] {
                eprintln!(
                    "network: {backend}, {threads} thread(s), {workers} call(s) at once, batch {batch} ..."
                );
                let s = per_eval(net, &x, batch, (threads, workers), a.repeats)?;
                nets.push(NetRow {
                    backend: *backend,
                    threads,
                    workers,
                    batch,
                    ms: 1e3 * s,
                    gflops: gflop / s,
                });
            }
        }
    }

    let mut recons = Vec::new();
    if !a.no_recon {
        let schedule = meta.schedule(&a.model)?;
        for (backend, net) in loaded {
            let prior = NetworkPrior::new(net);
            for threads in [1, 2] {
                eprintln!(
                    "reconstruction: {backend}, {threads} thread(s), K = {} ...",
                    a.steps
                );
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| Error::invalid(e.to_string()))?;
                let (cb, bar) = progress::bar(true, "bench");
                let opts = SamplerOptions {
                    steps: a.steps,
                    partials: a.partials,
                    eta: DEFAULT_RECON_ETA,
                    seed: 0,
                    partial: Some(model_partial_kind(&meta)),
                    schedule: schedule.clone(),
                    progress: cb,
                    ..SamplerOptions::default()
                };
                let recon = ReconOptions {
                    scale_target: meta.scale_p99(&a.model)?,
                    ..ReconOptions::default()
                };
                let start = Instant::now();
                let out = pool.install(|| {
                    sampler::reconstruct(&prior, &op, acq.kspace.view(), &mask, &opts, &recon)
                })?;
                let seconds = start.elapsed().as_secs_f64();
                bar.finish_and_clear();
                let q = compare(acq.reference.view(), out.mean.view(), true)?;
                recons.push(ReconRow {
                    backend,
                    threads,
                    seconds,
                    network_share: out.stats.shares().0,
                    psnr: q.psnr,
                });
            }
        }
    }
    let rss = peak_rss_mib();

    let mut t = String::new();
    let _ = writeln!(
        t,
        "model {} ({h}x{w}, {gflop:.2} GFLOP a pass); kernels {}; f32 matrix-product peak {peak1:.0} GFLOP/s on 1 thread, {peak2:.0} on 2\n",
        a.model.display(),
        msm::unet::kernels::kernel_set()
    );
    let _ = writeln!(
        t,
        "| executor | threads | calls at once | batch | ms per evaluation | GFLOP/s | share of the f32 peak per thread |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|");
    for r in &nets {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.0}% |",
            r.backend,
            r.threads,
            r.workers,
            r.batch,
            r.ms,
            r.gflops,
            100.0 * r.gflops / r.threads as f64 / peak1
        );
    }
    if !recons.is_empty() {
        let _ = writeln!(
            t,
            "\n| executor | threads | reconstruction (K = {}, w = {}) s | network share | PSNR (dB) |",
            a.steps, a.partials
        );
        let _ = writeln!(t, "|---|---|---|---|---|");
        for r in &recons {
            let _ = writeln!(
                t,
                "| {} | {} | {:.2} | {:.1}% | {:.2} |",
                r.backend,
                r.threads,
                r.seconds,
                100.0 * r.network_share,
                r.psnr
            );
        }
    }
    let _ = writeln!(
        t,
        "\n(GFLOP/s count a pass's flops as direct convolutions and matrix products do them; \
         the native executors run most 3x3 convolutions by Winograd's F(2x2, 3x3), with 2.25x \
         fewer multiplies, so their shares of the f32 peak may exceed 100%.)"
    );
    if nets.iter().any(|r| r.backend == Backend::NativeBf16) {
        let _ = writeln!(
            t,
            "(native-bf16 runs its 3x3 convolutions on the CPU's bf16 units ({}), whose rate \
             is not bounded by the f32 peak either.)",
            msm::unet::kernels::bf16_units().unwrap_or("none")
        );
    }
    if nets.iter().any(|r| r.backend == Backend::NativeFast) {
        let _ = writeln!(
            t,
            "(native-fast is native-bf16 with its 64- and 128-pixel 3x3 convolutions on \
             Winograd F(4x4, 3x3): 36 multiplies for 16 outputs where F(2x2) does 64.)"
        );
    }
    if let Some(m) = rss {
        let _ = writeln!(
            t,
            "\npeak resident memory of this run (all executors loaded): {m:.0} MiB"
        );
    }
    println!("{t}");

    if let Some(path) = &a.json {
        let json = serde_json::json!({
            "model": a.model.display().to_string(),
            "image": [h, w],
            "network_gflop": gflop,
            "sgemm_peak_gflops": {"1": peak1, "2": peak2},
            "kernels": msm::unet::kernels::kernel_set(),
            "repeats": a.repeats,
            "network": nets.iter().map(|r| serde_json::json!({
                "backend": r.backend.to_string(),
                "threads": r.threads,
                "workers": r.workers,
                "batch": r.batch,
                "median_ms_per_eval": r.ms,
                "gflops": r.gflops,
            })).collect::<Vec<_>>(),
            "reconstruction": recons.iter().map(|r| serde_json::json!({
                "backend": r.backend.to_string(),
                "threads": r.threads,
                "steps": a.steps,
                "partials": a.partials,
                "seconds": r.seconds,
                "network_share": r.network_share,
                "psnr": r.psnr,
            })).collect::<Vec<_>>(),
            "peak_rss_mib": rss,
        });
        let text =
            serde_json::to_string_pretty(&json).map_err(|e| Error::invalid(e.to_string()))?;
        msm::io::atomic::write_atomic(path, |f| f.write_all(text.as_bytes()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
