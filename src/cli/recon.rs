//! `msm recon`: the classical floor, zero-filled and CG-SENSE, on one slice or on every slice of
//! a volume (as `msm reconstruct` reads it: [`super::slices`]).

use super::coilmaps::{self, MapsArgs};
use super::data;
use super::scan::{self, Scan, SeriesPlacement};
use super::slices::{parse_slices, MapsChoice, SliceInputs};
use msm::io::atomic;
use msm::mask::Mask;
use msm::recon::{cg_sense, zero_filled, CgOptions};
use msm::sense::Sense;
use msm::volume::{write_series, GridPlan, VolumeFormat};
use msm::{Error, Result, C32};
use ndarray::{Array2, Array3};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `msm recon`.
#[derive(clap::Args, Debug)]
#[command(
    override_usage = "msm recon [OPTIONS] <KSPACE> <MAPS> <OUTPUT>\n       \
                            msm recon [OPTIONS] <VOLUME> [MAPS] <OUTPUT>"
)]
pub struct Args {
    /// KSPACE [MAPS] OUTPUT. One slice: multi-coil k-space (.cfl [H, W, 1, coils] or .npy
    /// (coils, H, W)), coil maps in the same layout, and the output image (.cfl, .npy, or
    /// magnitude .png preview, .nii, .nii.gz). A volume (a fastMRI / ISMRMRD .h5 file, a .npy
    /// (slices, coils, H, W), or a .cfl with slices along BART dim 13), read slice by slice as
    /// msm reconstruct reads it: MAPS is optional (default: estimated per slice from the ACS,
    /// --maps-method) and OUTPUT is a volume (.nii / .nii.gz magnitude, .npy or .cfl complex)
    /// on the file's recon size, as msm reconstruct writes it.
    #[arg(num_args = 2..=3, required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Method.
    #[arg(long, value_enum, default_value_t = Method::CgSense)]
    pub method: Method,
    /// Sampling mask (vector over the width or 2-D pattern); default: the non-zero entries of
    /// the k-space (for a volume: an .h5 file's `mask` dataset, else the columns with data, per
    /// slice; the entries with data for a 3-D scan read along the readout).
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Tikhonov weight of CG-SENSE.
    #[arg(long, default_value_t = 0.0)]
    pub lambda: f32,
    /// Compress the k-space and maps to this many virtual coils first (SVD over all measured
    /// entries, as bart cc -p N -S -A): a cheaper operator for a little of the data's energy.
    #[arg(long, value_parser = super::at_least_one)]
    pub virtual_coils: Option<usize>,
    /// How ISMRMRD raw data is read.
    #[command(flatten)]
    pub raw: super::scan::RawArgs,
    /// CG iterations (at least 1).
    #[arg(long, default_value_t = 30, value_parser = super::at_least_one)]
    pub iters: usize,
    /// Volume input: the slices, `a..b` (a to b - 1), `a..`, `..b` or one index `a` (default:
    /// all).
    #[arg(long)]
    pub slices: Option<String>,
    /// Volume input without maps: how the coil maps of each slice are estimated from its ACS
    /// [default: espirit].
    #[arg(long, value_enum)]
    pub maps_method: Option<coilmaps::Method>,
    #[command(flatten)]
    pub maps_opts: MapsArgs,
    /// Volume input: the output grid `HxW` when the file states none or another (as msm
    /// reconstruct's --recon-size).
    #[arg(long, value_parser = super::image_size)]
    pub recon_size: Option<(usize, usize)>,
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
    let (kspace_path, maps_path, output) = match &a.files[..] {
        [k, o] => (k.clone(), None, o.clone()),
        [k, m, o] => (k.clone(), Some(m.clone()), o.clone()),
        _ => unreachable!("clap takes 2 or 3 paths"),
    };
    if scan::is_volume(&kspace_path)? {
        return run_volume(&a, &kspace_path, maps_path.as_deref(), &output);
    }
    if a.slices.is_some() || a.maps_method.is_some() || a.recon_size.is_some() {
        return Err(Error::format(
            &kspace_path,
            "--slices, --maps-method and --recon-size apply to volumes (.h5, a 4-D .npy, a .cfl with slices \
             along BART dimension 13); this k-space is one slice",
        ));
    }
    let Some(maps_path) = maps_path else {
        return Err(Error::format(
            &kspace_path,
            "coil maps are needed for one-slice .cfl / .npy k-space: msm recon <kspace> <maps> \
             <output> (estimate them with msm ecalib <kspace> <maps>)",
        ));
    };
    a.maps_opts
        .check_none(&format!("the coil maps come from {}", maps_path.display()))?;
    let data::Acquisition { kspace, op, mask } = data::read_acquisition(
        &kspace_path,
        &maps_path,
        a.mask.as_deref(),
    )?
    .compressed(a.virtual_coils, &kspace_path, false)?;
    let (_, h, w) = kspace.dim();
    let start = Instant::now();
    let image = solve(&a, &op, &kspace, &mask)?;
    let secs = start.elapsed().as_secs_f64();
    data::write_image(&output, &image)?;
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

/// The image of one slice by `a.method`.
fn solve(a: &Args, op: &Sense, kspace: &Array3<C32>, mask: &Mask) -> Result<Array2<C32>> {
    Ok(match a.method {
        Method::ZeroFilled => zero_filled(op, kspace.view(), mask),
        Method::CgSense => {
            let opts = CgOptions {
                lambda: a.lambda,
                iterations: a.iters,
                ..CgOptions::default()
            };
            cg_sense(op, kspace.view(), mask, opts)?.0
        }
    })
}

/// Every selected slice of the volume `kspace` on its own grid, the output on the file's recon
/// size (the grid of `msm reconstruct`'s output), written as one volume; with a counter chosen
/// `all` (`--repetition all`), every image of the series, written with the series' axes.
fn run_volume(a: &Args, kspace: &Path, maps: Option<&Path>, output: &Path) -> Result<()> {
    let format = VolumeFormat::of(output)?;
    atomic::check_folder(output)?;
    let choice = MapsChoice::new(maps, a.maps_method, &a.maps_opts)?;
    let series = a.raw.choice().series(kspace)?;
    let file = Scan::open(kspace, &a.raw.options_for(series.images[0]))?;
    let range = parse_slices(a.slices.as_deref(), file.num_slices(), kspace)?;
    let grid = file.kspace_size();
    let plan = GridPlan::new(grid, a.recon_size.or(file.recon_size()), grid)
        .map_err(|e| Error::format(kspace, e.to_string()))?;
    let mut first = SliceInputs::new(file, plan, a.mask.as_deref(), choice, a.virtual_coils)?;
    first.name_image(series.label(0));
    let start = Instant::now();
    // The output has the first image's placement; the others are checked against it.
    let (space, placed) = first.scan().voxel_space(&range, first.plan())?;
    let mut elsewhere = SeriesPlacement::new(&space, &placed, range.len(), first.plan());
    let mut volumes = Vec::with_capacity(series.images.len());
    for (i, select) in series.images.iter().enumerate() {
        let other;
        let inputs = if i == 0 {
            &first
        } else {
            let file = Scan::open(kspace, &a.raw.options_for(*select))?;
            other = first.for_image(file, series.label(i))?;
            elsewhere.check(other.scan(), other.image(), &range, other.plan())?;
            &other
        };
        volumes.push(
            range
                .clone()
                .into_par_iter()
                .map(|index| {
                    let (k, mask, op) = inputs.acquire(index)?;
                    let image = solve(a, &op, &k, &mask).map_err(|e| inputs.in_slice(index, e))?;
                    Ok(inputs.plan().image_to_output(image.view()))
                })
                // All slices are solved before the first failure (in slice order) is
                // reported, so the error does not depend on which thread finished first.
                .collect::<Vec<Result<Array2<C32>>>>()
                .into_iter()
                .collect::<Result<Vec<_>>>()?,
        );
    }
    if format == VolumeFormat::Nifti {
        for note in [placed.note(kspace), elsewhere.note(kspace)]
            .into_iter()
            .flatten()
        {
            eprintln!("{note}");
        }
    }
    write_series(output, format, &series.shape(), &volumes, &space)?;
    let (ho, wo) = first.plan().output;
    eprintln!(
        "{:?}: wrote {} ({}{} slices {}..{}, {ho}x{wo}) in {:.2} s",
        a.method,
        output.display(),
        match volumes.len() {
            1 => String::new(),
            n => format!("{n} images of "),
        },
        range.len(),
        range.start,
        range.end,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
