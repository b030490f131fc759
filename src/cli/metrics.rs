//! `msm metrics`: PSNR / SSIM / NMSE of an image against a reference.

use super::data;
use msm::metrics::{check_reference, compare};
use msm::{Error, Result};
use std::path::PathBuf;

/// Options of `msm metrics`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Reference image (.cfl, .npy, .png, or a one-slice .nii / .nii.gz).
    pub reference: PathBuf,
    /// Image to score (.cfl, .npy, .png, or a one-slice .nii / .nii.gz).
    pub image: PathBuf,
    /// Scale the image by the least-squares complex factor onto the reference first.
    #[arg(long)]
    pub scale: bool,
    /// Print JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `msm metrics`.
pub fn run(a: Args) -> Result<()> {
    let r = data::read_image(&a.reference)?;
    let x = data::read_image(&a.image)?;
    check_reference(r.view()).map_err(|e| Error::format(&a.reference, e.to_string()))?;
    let q = compare(r.view(), x.view(), a.scale).map_err(|e| {
        Error::format(
            &a.image,
            format!("{e} (reference {})", a.reference.display()),
        )
    })?;
    if a.json {
        // Non-finite figures are not JSON: null instead (PSNR of an image equal to the
        // reference is infinite; SSIM of an image smaller than the window is NaN).
        let num = |v: f64| {
            if v.is_finite() {
                format!("{v:.6}")
            } else {
                "null".to_string()
            }
        };
        println!(
            "{{\"psnr\": {}, \"ssim\": {}, \"ssim_object\": {}, \"nmse\": {:.6e}, \"scaled\": {}}}",
            num(q.psnr),
            num(q.ssim),
            num(q.ssim_object),
            q.nmse,
            a.scale
        );
    } else {
        println!(
            "PSNR {:.2} dB  SSIM {:.4}  SSIM (object) {:.4}  NMSE {:.4e}  (magnitude, peak = reference max, {})",
            q.psnr,
            q.ssim,
            q.ssim_object,
            q.nmse,
            if a.scale {
                "least-squares complex scaling"
            } else {
                "no scaling"
            }
        );
    }
    Ok(())
}
