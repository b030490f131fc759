//! `msm recon`: the classical floor, zero-filled and CG-SENSE.

use super::data;
use msm::recon::{cg_sense, zero_filled, CgOptions};
use msm::Result;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `msm recon`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Multi-coil k-space (.cfl [H, W, 1, coils] or .npy (coils, H, W)).
    pub kspace: PathBuf,
    /// Coil maps, same layout as the k-space.
    pub maps: PathBuf,
    /// Output image (.cfl, .npy, or magnitude .png preview, .nii, .nii.gz).
    pub output: PathBuf,
    /// Method.
    #[arg(long, value_enum, default_value_t = Method::CgSense)]
    pub method: Method,
    /// Sampling mask (vector over the width or 2-D pattern); default: the non-zero entries of
    /// the k-space.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Tikhonov weight of CG-SENSE.
    #[arg(long, default_value_t = 0.0)]
    pub lambda: f32,
    /// Compress the k-space and maps to this many virtual coils first (SVD over all measured
    /// entries, as bart cc -p N -S -A): a cheaper operator for a little of the data's energy.
    #[arg(long, value_parser = super::at_least_one)]
    pub virtual_coils: Option<usize>,
    /// CG iterations (at least 1).
    #[arg(long, default_value_t = 30, value_parser = super::at_least_one)]
    pub iters: usize,
}

/// Reconstruction methods.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A^H y with the coil maps.
    ZeroFilled,
    /// Conjugate gradients on the normal equations.
    CgSense,
}

/// Runs `msm recon`.
pub fn run(a: Args) -> Result<()> {
    let data::Acquisition { kspace, op, mask } = data::read_acquisition(
        &a.kspace,
        &a.maps,
        a.mask.as_deref(),
    )?
    .compressed(a.virtual_coils, &a.kspace, false)?;
    let (_, h, w) = kspace.dim();
    let start = Instant::now();
    let image = match a.method {
        Method::ZeroFilled => zero_filled(&op, kspace.view(), &mask),
        Method::CgSense => {
            let opts = CgOptions {
                lambda: a.lambda,
                iterations: a.iters,
                ..CgOptions::default()
            };
            cg_sense(&op, kspace.view(), &mask, opts)?.0
        }
    };
    let secs = start.elapsed().as_secs_f64();
    data::write_image(&a.output, &image)?;
    eprintln!(
        "{:?}: {}x{} image from {} coils, {:.1}% sampled, {:.3} s",
        a.method,
        h,
        w,
        kspace.dim().0,
        100.0 * mask.count(h) as f64 / (h * w) as f64,
        secs
    );
    Ok(())
}
