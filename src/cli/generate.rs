//! `msm generate`: unconditional samples from the model (Algorithm 1).

use super::{data, model, progress, reconstruct};
use msm::io::{atomic, npy, png};
use msm::sampler::{self, NetworkPrior};
use msm::sense::Sense;
use msm::{coils, Error, Result, C32};
use ndarray::{Array3, Axis};
use std::path::PathBuf;

/// Options of `msm generate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output prefix: writes <prefix>.png (a grid of magnitudes) and <prefix>.npy (complex
    /// images, shape (count, H, W)).
    pub output: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 4, value_parser = super::at_least_one)]
    pub count: usize,
    /// Coils of the k-space state: 1 (unit map, the cheapest) or more (birdcage maps).
    #[arg(long, default_value_t = 1, value_parser = super::at_least_one)]
    pub coils: usize,
    /// Columns of the PNG grid.
    #[arg(long, default_value_t = 4, value_parser = super::at_least_one)]
    pub columns: usize,
    #[command(flatten)]
    pub sampler: model::SamplerArgs,
}

/// Runs `msm generate`.
pub fn run(a: Args) -> Result<()> {
    let (png_path, npy_path) = (
        data::with_suffix(&a.output, ".png"),
        data::with_suffix(&a.output, ".npy"),
    );
    atomic::check_folder(&png_path)?;
    let (net, opts) = model::load(&a.sampler, model::Job::Generation, 200, None)?;
    let (h, w) = (net.meta().height, net.meta().width);
    let maps = if a.coils == 1 {
        Array3::from_elem((1, h, w), C32::new(1.0, 0.0))
    } else {
        coils::birdcage(a.coils, h, w)?
    };
    let op = Sense::new(maps)?;
    let (cb, bar) = progress::bar(a.sampler.quiet, "generate");
    let opts = msm::sampler::SamplerOptions {
        progress: cb,
        ..opts
    };
    let prior = NetworkPrior::new(net);
    let out = sampler::generate(&prior, &op, &opts, a.count)?;
    bar.finish_and_clear();
    let mags: Vec<_> = out.images.iter().map(|x| x.mapv(|v| v.norm())).collect();
    let grid = png::tile(&mags, a.columns, 2)?;
    let views: Vec<_> = out.images.iter().map(|x| x.view()).collect();
    let stack = ndarray::stack(Axis(0), &views).map_err(|e| Error::invalid(e.to_string()))?;
    // Both files or neither.
    atomic::write_atomic_set(&[
        (
            png_path.clone(),
            png::encode_png(&png_path, &grid, png::Window::Auto)?,
        ),
        (npy_path.clone(), npy::encode_npy(&npy_path, &stack)?),
    ])?;
    if !a.sampler.quiet {
        reconstruct::report(&out.stats);
    }
    Ok(())
}
