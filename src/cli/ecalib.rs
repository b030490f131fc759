//! `msm ecalib`: coil sensitivity maps from the ACS of one slice, as BART `ecalib -m1`.

use super::coilmaps::{MapsArgs, Method};
use super::data;
use super::scan::{self, Scan};
use msm::io::atomic;
use msm::mask::Mask;
use msm::{Error, Result, C32};
use ndarray::Array3;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `msm ecalib`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Multi-coil k-space: .cfl [H, W, 1, coils], .npy (coils, H, W), or one slice (--slice)
    /// of a volume: a fastMRI / ISMRMRD .h5 file, a .npy (slices, coils, H, W), a .cfl with
    /// slices along BART dimension 13.
    pub kspace: PathBuf,
    /// Output coil maps (coils, H, W): .npy, else .cfl [H, W, 1, coils].
    pub maps: PathBuf,
    /// Estimator.
    #[arg(long, value_enum, default_value_t = Method::Espirit)]
    pub method: Method,
    /// Slice of a volume (default 0).
    #[arg(long)]
    pub slice: Option<usize>,
    /// Sampling mask (vector over the width or 2-D pattern); default: a .h5 file's `mask`
    /// dataset, else the non-zero entries of the k-space.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Also write ESPIRiT's eigenvalue map (H, W) here (.npy, .png or .cfl).
    #[arg(long)]
    pub eigenvalues: Option<PathBuf>,
    #[command(flatten)]
    pub opts: MapsArgs,
    /// How ISMRMRD raw data is read.
    #[command(flatten)]
    pub raw: super::scan::RawArgs,
}

/// K-space of one slice and its mask (`None`: the non-zero entries).
fn read_input(a: &Args) -> Result<(Array3<C32>, Option<Mask>, String)> {
    if scan::is_volume(&a.kspace)? {
        let file = Scan::open(&a.kspace, &a.raw.options()?)?;
        let index = a.slice.unwrap_or(0);
        // A separate reference scan is what calibrates the maps (as msm reconstruct uses it).
        let (kspace, source) = match file.slice_reference(index) {
            Some(r) if a.mask.is_none() => (r.clone(), ", its separate reference scan"),
            _ => (file.slice_kspace(index)?, ""),
        };
        let (_, h, w) = kspace.dim();
        let mask = match &a.mask {
            Some(p) => data::read_mask(p, h, w)?,
            None => match file.mask() {
                Some(m) => Mask::Columns(m.to_vec()),
                None => file.detected_mask(&kspace),
            },
        };
        let what = format!("slice {index} of {} slices{source}", file.num_slices());
        return Ok((kspace, Some(mask), what));
    }
    if a.slice.is_some() {
        return Err(Error::format(
            &a.kspace,
            "--slice applies to volumes (.h5, a 4-D .npy, a .cfl with slices along BART \
             dimension 13); this file holds one slice",
        ));
    }
    let kspace = data::read_coils(&a.kspace)?;
    let (_, h, w) = kspace.dim();
    let mask = a
        .mask
        .as_deref()
        .map(|p| data::read_mask(p, h, w))
        .transpose()?;
    Ok((kspace, mask, "one slice".to_string()))
}

/// Runs `msm ecalib`.
pub fn run(a: Args) -> Result<()> {
    data::check_coils_output(&a.maps)?;
    if let Some(p) = &a.eigenvalues {
        if a.method != Method::Espirit {
            return Err(Error::invalid(
                "--eigenvalues needs --method espirit (ratio maps have no eigenvalues)",
            ));
        }
        atomic::check_folder(p)?;
    }
    a.opts.check_for(a.method)?;
    let (kspace, mask, what) = read_input(&a)?;
    let start = Instant::now();
    let est = a
        .opts
        .estimate(a.method, kspace.view(), mask.as_ref())
        .map_err(|e| in_file(&a.kspace, &what, e))?;
    let secs = start.elapsed().as_secs_f64();
    data::write_coils(&a.maps, &est.maps)?;
    if let (Some(p), Some(ev)) = (&a.eigenvalues, &est.eigenvalues) {
        data::write_real(p, ev)?;
    }
    let (nc, h, w) = kspace.dim();
    let region = est
        .region
        .map(|r| {
            format!(
                ", calibration region {}x{} (rows {:?}, columns {:?}), {} kernels",
                r.height(),
                r.width(),
                r.rows,
                r.cols,
                est.kernels
            )
        })
        .unwrap_or_default();
    eprintln!(
        "{}: {nc} coils, {h}x{w} ({what}){region}, {secs:.3} s",
        a.opts.describe(a.method)
    );
    Ok(())
}

/// An estimation error of `file` (the library's errors name no file).
pub fn in_file(file: &Path, what: &str, e: Error) -> Error {
    match e {
        Error::Invalid(msg) => Error::format(file, format!("{what}: coil maps: {msg}")),
        other => other,
    }
}
