//! `msm reconstruct`: MSM posterior sampling of undersampled multi-coil k-space.

use super::{data, model, progress};
use msm::io::{cfl, npy, png};
use msm::sampler::{self, NetworkPrior, ReconOptions, Stats};
use msm::{Error, Result, C32};
use ndarray::Array2;
use std::path::{Path, PathBuf};

/// Options of `msm reconstruct`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Multi-coil k-space (.cfl [H, W, 1, coils] or .npy (coils, H, W)).
    pub kspace: PathBuf,
    /// Coil maps, same layout as the k-space.
    pub maps: PathBuf,
    /// Output image: the posterior mean (.cfl, .npy, or .png magnitude).
    pub output: PathBuf,
    /// Sampling mask (vector over the width or 2-D pattern); default: the non-zero entries.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Data-consistency step lambda (1 = replace the estimate by the data on acquired entries).
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f64,
    /// Number of posterior samples (their mean is the output).
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Write the pixel-wise standard deviation of the samples' magnitude here (.png, .npy, .cfl).
    #[arg(long)]
    pub std: Option<PathBuf>,
    /// Scale the k-space so that the 99th percentile of the zero-filled magnitude equals this
    /// (default: the model's training scale from its metadata, else no scaling).
    #[arg(long)]
    pub scale_target: Option<f64>,
    #[command(flatten)]
    pub sampler: model::SamplerArgs,
}

/// Writes a real map by extension.
pub fn write_real(path: &Path, map: &Array2<f32>) -> Result<()> {
    match data::kind(path) {
        data::Kind::Npy => npy::write_npy(path, map),
        data::Kind::Png => png::write_png(path, map, png::Window::Auto),
        data::Kind::Cfl => cfl::write_image(path, &map.mapv(|v| C32::new(v, 0.0))),
    }
}

/// Prints the timing summary of a sampler run.
pub fn report(stats: &Stats) {
    let (n, o, r) = stats.shares();
    eprintln!(
        "{} steps, {} network calls in {:.2} s wall; CPU time: network {:.1}%, operators {:.1}%, other {:.1}%",
        stats.steps,
        stats.denoisings,
        stats.wall.as_secs_f64(),
        100.0 * n,
        100.0 * o,
        100.0 * r
    );
}

/// Runs `msm reconstruct`.
pub fn run(a: Args) -> Result<()> {
    let data::Acquisition { kspace, op, mask } =
        data::read_acquisition(&a.kspace, &a.maps, a.mask.as_deref())?;
    let (_, h, w) = kspace.dim();
    let (net, opts) = model::load(&a.sampler, 0.85, 200, Some(w))?;
    net.check_data(h, w, 2)
        .map_err(|e| Error::format(&a.kspace, e.to_string()))?;
    let scale_target = match a.scale_target {
        Some(s) => Some(s),
        None => net.meta().scale_p99(&a.sampler.model)?,
    };
    let (cb, bar) = progress::bar(a.sampler.quiet, "reconstruct");
    let opts = msm::sampler::SamplerOptions {
        progress: cb,
        ..opts
    };
    let recon = ReconOptions {
        samples: a.samples,
        lambda: a.lambda,
        scale_target,
    };
    let prior = NetworkPrior::new(net);
    let out = sampler::reconstruct(&prior, &op, kspace.view(), &mask, &opts, &recon)?;
    bar.finish_and_clear();
    data::write_image(&a.output, &out.mean)?;
    if let Some(p) = &a.std {
        write_real(p, &out.std)?;
    }
    if !a.sampler.quiet {
        report(&out.stats);
    }
    Ok(())
}
