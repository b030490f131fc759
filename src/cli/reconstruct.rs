//! `msm reconstruct`: MSM posterior sampling of undersampled multi-coil k-space: one slice
//! (`.cfl`/`.npy`), or every slice of a volume: a fastMRI / ISMRMRD `.h5` file, a 4-D `.npy` or
//! a `.cfl` with slices along BART dimension 13 ([`super::volume`]).

use super::{coilmaps, data, model, progress, scan, volume};
use msm::denoiser::OnnxDenoiser;
use msm::io::atomic;
use msm::sampler::{self, NetworkPrior, ReconOptions, Stats};
use msm::{Error, Result};
use std::path::PathBuf;

/// Options of `msm reconstruct`.
#[derive(clap::Args, Debug)]
#[command(
    override_usage = "msm reconstruct [OPTIONS] <KSPACE> <MAPS> <OUTPUT>\n       \
                            msm reconstruct [OPTIONS] <VOLUME> [MAPS] <OUTPUT>"
)]
pub struct Args {
    /// KSPACE [MAPS] OUTPUT. One slice: k-space (.cfl [H, W, 1, coils] or .npy (coils, H, W)),
    /// coil maps in the same layout, and the output image, the posterior mean (.cfl, .npy, or
    /// magnitude .png, .nii, .nii.gz). A volume (a fastMRI / ISMRMRD .h5 file, a .npy
    /// (slices, coils, H, W), or a .cfl [H, W, 1, coils] with slices along BART dim 13): MAPS is
    /// optional (default: estimated per slice from the ACS, --maps-method; given, one set for
    /// every slice or one per slice) and OUTPUT is a volume: .nii / .nii.gz (magnitude), .npy
    /// (complex, (slices, H, W)) or .cfl (complex, slices along BART dim 13).
    #[arg(num_args = 2..=3, required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Sampling mask (vector over the width or 2-D pattern); default: the non-zero entries (for
    /// a volume: an .h5 file's `mask` dataset, else the columns with data, per slice; the
    /// entries with data for a 3-D scan read along the readout). A 2-D pattern
    /// needs a model of exactly the slices' grid.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Data-consistency step lambda, in [0, 2] (1 = replace the estimate by the data on acquired
    /// entries; 2 = the paper's MRI value).
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f64,
    /// Number of posterior samples (their mean is the output).
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Conjugate-gradient iterations of final data consistency on each sample (0: none).
    #[arg(long, default_value_t = ReconOptions::default().final_dc)]
    pub final_dc: usize,
    /// Compress the k-space (and given maps) to this many virtual coils first (SVD over all
    /// measured entries, as bart cc -p N -S -A; for a volume, per slice, before its maps are
    /// estimated): a cheaper operator and ESPIRiT for a little of the data's energy.
    #[arg(long, value_parser = super::at_least_one)]
    pub virtual_coils: Option<usize>,
    /// How ISMRMRD raw data is read.
    #[command(flatten)]
    pub raw: super::scan::RawArgs,
    /// Write the pixel-wise standard deviation of the samples' magnitude here (.png, .nii,
    /// .nii.gz, .npy, .cfl): an uncertainty map (zero for one sample). For a volume, a volume
    /// in the output's layout (.nii, .nii.gz, float32 .npy or .cfl), resumed with it. `msm
    /// metrics REF OUT --std FILE --samples N` scores how well it predicts the error.
    #[arg(long)]
    pub std: Option<PathBuf>,
    /// Scale the k-space so that the 99th percentile of the zero-filled magnitude equals this
    /// (default: the model's training scale from its metadata, else no scaling).
    #[arg(long)]
    pub scale_target: Option<f64>,
    /// Volume input: the slices to reconstruct, `a..b` (a to b - 1), `a..`, `..b` or one index
    /// `a` (default: all).
    #[arg(long)]
    pub slices: Option<String>,
    /// Volume input without maps: how the coil maps of each slice are estimated from its ACS
    /// [default: espirit].
    #[arg(long, value_enum)]
    pub maps_method: Option<coilmaps::Method>,
    #[command(flatten)]
    pub maps_opts: coilmaps::MapsArgs,
    /// Volume input: the output grid `HxW` (height x width) when the file states none or
    /// another (a stack states none; an .h5 file's ISMRMRD header or reconstruction_rss does):
    /// the image is centre-cropped (or padded) to it, and a readout longer than the model is
    /// cropped to the model only where that keeps these rows.
    #[arg(long, value_parser = super::image_size)]
    pub recon_size: Option<(usize, usize)>,
    /// Volume input: write the volume here too (another format: .nii, .nii.gz, .npy or .cfl).
    #[arg(long)]
    pub also: Option<PathBuf>,
    /// Volume input: discard the finished slices of an earlier run (in <OUTPUT>.parts/) and
    /// start over.
    #[arg(long)]
    pub restart: bool,
    #[command(flatten)]
    pub sampler: model::SamplerArgs,
}

/// Prints the timing summary of a sampler run.
pub fn report(stats: &Stats) {
    let (n, o, r) = stats.shares();
    eprintln!(
        "{} sampler steps in all, {} network calls in {:.2} s wall; CPU time: network {:.1}%, \
         operators {:.1}%, other {:.1}%",
        stats.steps,
        stats.denoisings,
        stats.wall.as_secs_f64(),
        100.0 * n,
        100.0 * o,
        100.0 * r
    );
}

/// The posterior-sampling options of the command line; the scale target defaults to the
/// model's training scale (its metadata), else none.
pub fn recon_options(a: &Args, net: &OnnxDenoiser) -> Result<ReconOptions> {
    let scale_target = match a.scale_target {
        Some(s) => Some(s),
        None => net.meta().scale_p99(&a.sampler.model)?,
    };
    let recon = ReconOptions {
        samples: a.samples,
        lambda: a.lambda,
        scale_target,
        final_dc: a.final_dc,
    };
    recon.check()?;
    Ok(recon)
}

/// Runs `msm reconstruct`.
pub fn run(a: Args) -> Result<()> {
    let (kspace_path, maps_path, output) = match &a.files[..] {
        [k, o] => (k.clone(), None, o.clone()),
        [k, m, o] => (k.clone(), Some(m.clone()), o.clone()),
        _ => unreachable!("clap takes 2 or 3 paths"),
    };
    if scan::is_volume(&kspace_path)? {
        return volume::run(&a, &kspace_path, maps_path.as_deref(), &output);
    }
    let volume_only = [
        ("--slices", a.slices.is_some()),
        ("--also", a.also.is_some()),
        ("--restart", a.restart),
        ("--maps-method", a.maps_method.is_some()),
        ("--recon-size", a.recon_size.is_some()),
    ];
    if let Some((flag, _)) = volume_only.iter().find(|(_, given)| *given) {
        return Err(Error::format(
            &kspace_path,
            format!(
                "{flag} applies to volumes (.h5, a 4-D .npy, a .cfl with slices along BART \
                 dimension 13); this k-space is one slice"
            ),
        ));
    }
    let Some(maps_path) = maps_path else {
        return Err(Error::format(
            &kspace_path,
            "coil maps are needed for one-slice .cfl / .npy k-space: msm reconstruct <kspace> \
             <maps> <output> (estimate them with msm ecalib <kspace> <maps>); only volume input \
             estimates them itself",
        ));
    };
    a.maps_opts
        .check_none(&format!("the coil maps come from {}", maps_path.display()))?;
    // The outputs' folders before the reconstruction, not after it.
    for p in std::iter::once(&output).chain(&a.std) {
        atomic::check_folder(p)?;
    }
    let data::Acquisition { kspace, op, mask } = data::read_acquisition(
        &kspace_path,
        &maps_path,
        a.mask.as_deref(),
    )?
    .compressed(a.virtual_coils, &kspace_path, a.sampler.quiet)?;
    let (_, h, w) = kspace.dim();
    let (net, opts) = model::load(&a.sampler, model::Job::Reconstruction, 200, Some(w))?;
    net.check_data(h, w, 2)
        .map_err(|e| Error::format(&kspace_path, e.to_string()))?;
    let recon = recon_options(&a, &net)?;
    let (cb, bar) = progress::bar(a.sampler.quiet, "reconstruct");
    let opts = msm::sampler::SamplerOptions {
        progress: cb,
        ..opts
    };
    let prior = NetworkPrior::new(net);
    let out = sampler::reconstruct(&prior, &op, kspace.view(), &mask, &opts, &recon)?;
    bar.finish_and_clear();
    data::write_image(&output, &out.mean)?;
    if let Some(p) = &a.std {
        data::write_real(p, &out.std)?;
    }
    if !a.sampler.quiet {
        report(&out.stats);
    }
    Ok(())
}
