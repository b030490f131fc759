//! `msm metrics`: PSNR / SSIM / NMSE of an image against a reference, or of every slice of a
//! volume against a reference volume (such as a fastMRI file's `reconstruction_rss`).

use super::data;
use super::slices::parse_slices;
use msm::io::fastmri::{is_raw, FastMriFile};
use msm::io::{cfl, npy};
use msm::metrics::{check_reference, compare, Quality};
use msm::uncertainty::{
    calibrate, expected_coverage, mean_object, Calibration, Uncertainty, BLOCK, LEVELS,
};
use msm::volume::output::BART_SLICE_DIM;
use msm::volume::read_volume;
use msm::{Error, Result, C32};
use ndarray::Array2;
use std::path::{Path, PathBuf};

/// Options of `msm metrics`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Reference: an image (.cfl, .npy, .png, or a one-slice .nii / .nii.gz), or a volume: a
    /// fastMRI / ISMRMRD .h5 file (its `reconstruction_rss`), a .nii / .nii.gz of several
    /// slices, a .npy (slices, H, W) or a .cfl with slices along BART dimension 13.
    pub reference: PathBuf,
    /// Image to score, in the same layouts (a volume for a volume reference, as msm reconstruct
    /// and msm recon write them).
    pub image: PathBuf,
    /// Scale the image by the least-squares complex factor onto the reference first (for a
    /// volume, slice by slice). Against a real reference (a magnitude image: RSS, NIfTI, PNG)
    /// the image's magnitude is scored, scaled or not.
    #[arg(long)]
    pub scale: bool,
    /// Volume reference: the reference slices the image holds, `a..b` (a to b - 1), `a..`,
    /// `..b` or one index (default: all, in order).
    #[arg(long)]
    pub slices: Option<String>,
    /// A posterior std map to score as the image's uncertainty (as `msm reconstruct --std`
    /// writes it; a volume of maps for a volume): how well its spread predicts the image's
    /// error (magnitudes, scaled with the image), against what a calibrated map of `--samples`
    /// samples would give.
    #[arg(long, value_name = "STD", requires = "samples")]
    pub std: Option<PathBuf>,
    /// The number of posterior samples the `--std` map is the std of (at least 2).
    #[arg(long, value_name = "N", requires = "std")]
    pub samples: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A reference, read once: one image, or the slices of a volume.
enum Reference {
    Image(Array2<C32>),
    Volume(Vec<Array2<C32>>),
}

/// Runs `msm metrics`.
pub fn run(a: Args) -> Result<()> {
    let r = match read_reference(&a.reference)? {
        Reference::Volume(slices) => return run_volume(&a, slices),
        Reference::Image(r) => r,
    };
    if a.slices.is_some() {
        return Err(Error::format(
            &a.reference,
            "--slices applies to a volume reference; this reference is one image",
        ));
    }
    let x = magnitude_if_real(&r, data::read_image(&a.image)?);
    check_reference(r.view()).map_err(|e| Error::format(&a.reference, e.to_string()))?;
    let q = compare(r.view(), x.view(), a.scale).map_err(|e| {
        Error::format(
            &a.image,
            format!("{e} (reference {})", a.reference.display()),
        )
    })?;
    let uncertainty = match (&a.std, a.samples) {
        (Some(path), Some(n)) => {
            let std = real_map(path, data::read_image(path)?)?;
            Some(score_std(path, &r, &x, &std, n, a.scale)?)
        }
        _ => None,
    };
    if a.json {
        let u = uncertainty.map_or(String::new(), |u| {
            format!(", \"uncertainty\": {}", uncertainty_json(&u))
        });
        println!("{{{}{u}, \"scaled\": {}}}", json_fields(&q), a.scale);
    } else {
        println!(
            "{}  (magnitude, peak = reference max, {})",
            text(&q),
            scaling(a.scale)
        );
        if let Some(u) = uncertainty {
            println!("{}", uncertainty_text(&u));
        }
    }
    Ok(())
}

/// A std map read as an image: its real values, refused when it holds a complex value or
/// comes from a PNG (which holds a display window of the map, not its values).
fn real_map(path: &Path, map: Array2<C32>) -> Result<Array2<f32>> {
    if data::kind(path) == data::Kind::Png {
        return Err(Error::format(
            path,
            "is a PNG, which holds a display window of the std map, not its values; expected \
             the map as .npy, .nii, .nii.gz or .cfl",
        ));
    }
    if map.iter().any(|v| v.im != 0.0) {
        return Err(Error::format(
            path,
            "holds complex values; expected a real std map (msm reconstruct --std writes one)",
        ));
    }
    Ok(map.mapv(|v| v.re))
}

/// The calibration of the std map in `path` (of `samples` samples) against the image's error,
/// its errors naming the file.
fn score_std(
    path: &Path,
    reference: &Array2<C32>,
    image: &Array2<C32>,
    std: &Array2<f32>,
    samples: usize,
    scale: bool,
) -> Result<Uncertainty> {
    calibrate(reference.view(), image.view(), std.view(), samples, scale)
        .map_err(|e| Error::format(path, e.to_string()))
}

/// One region's calibration as JSON fields.
fn calibration_json(c: &Calibration) -> String {
    format!(
        "{{\"pixels\": {}, \"ratio\": {}, \"coverage\": [{}], \"spearman\": {}, \
         \"block_spearman\": {}}}",
        c.pixels,
        num(c.ratio),
        c.coverage.map(num).join(", "),
        num(c.spearman),
        num(c.block_spearman)
    )
}

/// A std map's calibration as a JSON object.
fn uncertainty_json(u: &Uncertainty) -> String {
    format!(
        "{{\"samples\": {}, \"levels\": [{}], \"expected_coverage\": [{}], \"whole\": {}, \
         \"object\": {}}}",
        u.samples,
        LEVELS.map(|k| k.to_string()).join(", "),
        expected_coverage(u.samples).map(num).join(", "),
        calibration_json(&u.whole),
        calibration_json(&u.object)
    )
}

/// One region's calibration as text.
fn calibration_text(c: &Calibration) -> String {
    format!(
        "rms |error| / rms predicted std {:.2}, |error| within 1 / 2 / 3 predicted std on {:.3} \
         / {:.3} / {:.3} of {} pixels, Spearman(std, |error|) {:.3} over pixels, {:.3} over \
         {BLOCK} x {BLOCK} blocks",
        c.ratio,
        c.coverage[0],
        c.coverage[1],
        c.coverage[2],
        c.pixels,
        c.spearman,
        c.block_spearman
    )
}

/// A std map's calibration as text: the object, the whole image and what a calibrated map
/// would give.
fn uncertainty_text(u: &Uncertainty) -> String {
    let e = expected_coverage(u.samples);
    format!(
        "uncertainty, object: {}\nuncertainty, whole image: {}\n(predicted std = std x sqrt(1 \
         + 1/{n}); a calibrated map of {n} samples: ratio 1, coverage {:.3} / {:.3} / {:.3}, \
         Student's t with {} degrees of freedom)",
        calibration_text(&u.object),
        calibration_text(&u.whole),
        e[0],
        e[1],
        e[2],
        u.samples - 1,
        n = u.samples
    )
}

/// The reference in `path`, each file read once: a volume for an `.h5` file (its
/// `reconstruction_rss`), a NIfTI of several slices, a 3-D `.npy` or a `.cfl` with slices
/// (known from their headers); else one image.
fn read_reference(path: &Path) -> Result<Reference> {
    if data::is_hdf5(path) {
        let file = FastMriFile::open(path).map_err(|e| {
            if is_raw(path) {
                Error::format(
                    path,
                    "is ISMRMRD raw data, which holds no reference image; expected an .h5 \
                     reference with the fully sampled root-sum-of-squares images (fastMRI's \
                     training and validation files), or a volume file",
                )
            } else {
                e
            }
        })?;
        let Some(rss) = file.reconstruction_rss()? else {
            return Err(Error::format(
                path,
                "has no `reconstruction_rss` dataset; expected an .h5 reference with the fully \
                 sampled root-sum-of-squares images (fastMRI's training and validation files)",
            ));
        };
        return Ok(Reference::Volume(
            rss.outer_iter()
                .map(|s| s.mapv(|v| C32::new(v, 0.0)))
                .collect(),
        ));
    }
    let volume = match data::kind(path) {
        data::Kind::Nifti => {
            let mut slices = read_volume(path)?;
            return Ok(match slices.len() {
                1 => Reference::Image(slices.remove(0)),
                _ => Reference::Volume(slices),
            });
        }
        data::Kind::Npy => npy::read_shape(path)?.len() == 3,
        data::Kind::Cfl => cfl::read_dims(path)?
            .get(BART_SLICE_DIM)
            .is_some_and(|&n| n > 1),
        data::Kind::Png => false,
    };
    Ok(if volume {
        Reference::Volume(read_volume(path)?)
    } else {
        Reference::Image(data::read_image(path)?)
    })
}

/// Scores every slice of the image volume against the reference slices it holds.
fn run_volume(a: &Args, reference: Vec<Array2<C32>>) -> Result<()> {
    let range = parse_slices(a.slices.as_deref(), reference.len(), &a.reference)?;
    let image = read_volume(&a.image)?;
    if image.len() != range.len() {
        return Err(Error::format(
            &a.image,
            format!(
                "holds {} slices but the reference slices {}..{} of {} are {}; expected one \
                 image slice for each (--slices says which reference slices the image holds)",
                image.len(),
                range.start,
                range.end,
                a.reference.display(),
                range.len()
            ),
        ));
    }
    let std = match &a.std {
        Some(path) => {
            let maps = read_volume(path)?;
            if maps.len() != image.len() {
                return Err(Error::format(
                    path,
                    format!(
                        "holds {} std maps but the image {} holds {} slices; expected one map \
                         for each",
                        maps.len(),
                        a.image.display(),
                        image.len()
                    ),
                ));
            }
            maps.into_iter()
                .map(|m| real_map(path, m).map(Some))
                .collect::<Result<Vec<_>>>()?
        }
        None => vec![None; image.len()],
    };
    let mut rows = Vec::with_capacity(range.len());
    let mut uncertainty = Vec::new();
    for ((k, x), std) in range.clone().zip(image).zip(std) {
        let r = &reference[k];
        let in_slice = |path: &Path, e: Error| Error::format(path, format!("slice {k}: {e}"));
        check_reference(r.view()).map_err(|e| in_slice(&a.reference, e))?;
        let x = magnitude_if_real(r, x);
        let q = compare(r.view(), x.view(), a.scale).map_err(|e| in_slice(&a.image, e))?;
        rows.push((k, q));
        if let (Some(std), Some(path), Some(n)) = (std, &a.std, a.samples) {
            let u = calibrate(r.view(), x.view(), std.view(), n, a.scale)
                .map_err(|e| in_slice(path, e))?;
            uncertainty.push(u);
        }
    }
    // Mean and sample standard deviation over the slices (NaN, JSON's null, for one slice).
    let mean = |f: fn(&Quality) -> f64| {
        let v: Vec<f64> = rows.iter().map(|(_, q)| f(q)).collect();
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m, if v.len() > 1 { var.sqrt() } else { f64::NAN })
    };
    let stats = [
        ("psnr", mean(|q| q.psnr)),
        ("ssim", mean(|q| q.ssim)),
        ("ssim_object", mean(|q| q.ssim_object)),
        ("nmse", mean(|q| q.nmse)),
    ];
    if a.json {
        let slices: Vec<String> = rows
            .iter()
            .map(|(k, q)| format!("{{\"slice\": {k}, {}}}", json_fields(q)))
            .collect();
        let summary: Vec<String> = stats
            .iter()
            .map(|(name, (m, s))| {
                format!(
                    "\"{name}\": {{\"mean\": {}, \"std\": {}}}",
                    num(*m),
                    num(*s)
                )
            })
            .collect();
        let u = if uncertainty.is_empty() {
            String::new()
        } else {
            let each: Vec<String> = uncertainty.iter().map(uncertainty_json).collect();
            format!(", \"uncertainty\": [{}]", each.join(", "))
        };
        println!(
            "{{\"slices\": [{}], {}{u}, \"scaled\": {}}}",
            slices.join(", "),
            summary.join(", "),
            a.scale
        );
    } else {
        for (i, (k, q)) in rows.iter().enumerate() {
            println!("slice {k}: {}", text(q));
            if let Some(u) = uncertainty.get(i) {
                println!(
                    "slice {k}: uncertainty, object: {}",
                    calibration_text(&u.object)
                );
            }
        }
        let [p, s, so, n] = stats.map(|(_, v)| v);
        println!(
            "mean (std) over {} slices: PSNR {:.2} ({:.2}) dB  SSIM {:.4} ({:.4})  SSIM (object) \
             {:.4} ({:.4})  NMSE {:.4e} ({:.1e})  (magnitude, peak = each reference slice's max, \
             {})",
            rows.len(),
            p.0,
            p.1,
            s.0,
            s.1,
            so.0,
            so.1,
            n.0,
            n.1,
            scaling(a.scale)
        );
        if !uncertainty.is_empty() {
            println!("{}", uncertainty_summary(&uncertainty));
        }
    }
    Ok(())
}

/// The mean over slices of the std maps' calibration over the object, and what a calibrated
/// map would give.
fn uncertainty_summary(slices: &[Uncertainty]) -> String {
    let m = mean_object(slices).expect("a summary of at least one slice");
    let samples = slices[0].samples;
    let e = expected_coverage(samples);
    format!(
        "uncertainty, object, mean over {} slices: rms |error| / rms predicted std {:.2}, \
         |error| within 1 / 2 / 3 predicted std on {:.3} / {:.3} / {:.3}, Spearman(std, \
         |error|) {:.3} over pixels, {:.3} over {BLOCK} x {BLOCK} blocks (a calibrated map of \
         {samples} samples: ratio 1, coverage {:.3} / {:.3} / {:.3})",
        slices.len(),
        m.ratio,
        m.coverage[0],
        m.coverage[1],
        m.coverage[2],
        m.spearman,
        m.block_spearman,
        e[0],
        e[1],
        e[2]
    )
}

/// The image's magnitude when the reference is real (a magnitude image: fastMRI's
/// root-sum-of-squares, NIfTI, PNG), else the image: a complex image's phase has nothing to
/// match in a real reference, and the least-squares complex scale onto one shrinks with the
/// image's phase variation (2.6 dB on the test scan's CG-SENSE slices against their RSS).
fn magnitude_if_real(reference: &Array2<C32>, image: Array2<C32>) -> Array2<C32> {
    if reference.iter().all(|v| v.im == 0.0) {
        image.mapv(|v| C32::new(v.norm(), 0.0))
    } else {
        image
    }
}

/// A figure for JSON: non-finite figures are not JSON, so null instead (PSNR of an image equal
/// to the reference is infinite; SSIM of an image smaller than the window is NaN).
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        "null".to_string()
    }
}

/// The four figures as JSON fields.
fn json_fields(q: &Quality) -> String {
    format!(
        "\"psnr\": {}, \"ssim\": {}, \"ssim_object\": {}, \"nmse\": {}",
        num(q.psnr),
        num(q.ssim),
        num(q.ssim_object),
        if q.nmse.is_finite() {
            format!("{:.6e}", q.nmse)
        } else {
            "null".to_string()
        }
    )
}

/// The four figures as text.
fn text(q: &Quality) -> String {
    format!(
        "PSNR {:.2} dB  SSIM {:.4}  SSIM (object) {:.4}  NMSE {:.4e}",
        q.psnr, q.ssim, q.ssim_object, q.nmse
    )
}

/// How the image was scaled, for the text output.
fn scaling(scale: bool) -> &'static str {
    if scale {
        "least-squares complex scaling"
    } else {
        "no scaling"
    }
}
