//! Image quality metrics as `shared/DATA.md` defines them, computed on magnitude images:
//! PSNR with peak = max of the reference, SSIM (Gaussian window 11, sigma 1.5, K1 = 0.01,
//! K2 = 0.03, data range = reference max, mean over the region the window fits), the same SSIM
//! averaged over the object only (window centres where the reference is at least
//! [`OBJECT_THRESHOLD`] of its maximum), and NMSE. Optional least-squares complex scaling of
//! the image onto the reference.

use crate::{Error, Result, C32};
use ndarray::{Array2, ArrayView2, Zip};

/// PSNR, SSIM and NMSE of one image against a reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quality {
    /// Peak signal-to-noise ratio in dB (peak = max |reference|).
    pub psnr: f64,
    /// Structural similarity in [-1, 1].
    pub ssim: f64,
    /// The same SSIM map averaged over the object only (see [`ssim_object`]): the near-zero
    /// background, where SSIM's small constants make any residual count as a large loss,
    /// left out.
    pub ssim_object: f64,
    /// Normalised mean squared error `||ref - img||^2 / ||ref||^2` on magnitudes.
    pub nmse: f64,
}

/// The complex factor `a` minimising `||ref - a img||^2`.
pub fn ls_scale(reference: ArrayView2<C32>, image: ArrayView2<C32>) -> C32 {
    let mut num = C32::new(0.0, 0.0);
    let mut den = 0.0f64;
    Zip::from(&reference).and(&image).for_each(|&r, &x| {
        num += x.conj() * r;
        den += x.norm_sqr() as f64;
    });
    if den == 0.0 {
        C32::new(1.0, 0.0)
    } else {
        num / den as f32
    }
}

/// Checks that `reference` can be scored against: an error if it is zero everywhere (PSNR's
/// peak and NMSE's denominator would be 0).
pub fn check_reference(reference: ArrayView2<C32>) -> Result<()> {
    if reference.iter().all(|v| v.norm() == 0.0) {
        return Err(Error::invalid(
            "the reference is zero everywhere, so PSNR's peak and NMSE's denominator are 0; \
             expected a reference image with signal",
        ));
    }
    Ok(())
}

/// Compares `image` with `reference` (complex), optionally after least-squares complex scaling.
pub fn compare(reference: ArrayView2<C32>, image: ArrayView2<C32>, scale: bool) -> Result<Quality> {
    if reference.dim() != image.dim() {
        return Err(Error::invalid(format!(
            "reference is {}x{} but image is {}x{}",
            reference.dim().0,
            reference.dim().1,
            image.dim().0,
            image.dim().1
        )));
    }
    check_reference(reference)?;
    let a = if scale {
        ls_scale(reference, image)
    } else {
        C32::new(1.0, 0.0)
    };
    let r = reference.mapv(|v| v.norm() as f64);
    let x = image.mapv(|v| (v * a).norm() as f64);
    let map = ssim_map(r.view(), x.view());
    Ok(Quality {
        psnr: psnr(r.view(), x.view()),
        ssim: map.as_ref().map_or(f64::NAN, whole_mean),
        ssim_object: map.as_ref().map_or(f64::NAN, |m| object_mean(m, r.view())),
        nmse: nmse(r.view(), x.view()),
    })
}

/// PSNR in dB of magnitude `image` against magnitude `reference`, peak = max of the reference.
pub fn psnr(reference: ArrayView2<f64>, image: ArrayView2<f64>) -> f64 {
    let peak = reference.iter().cloned().fold(0.0, f64::max);
    let mse = Zip::from(&reference)
        .and(&image)
        .fold(0.0, |acc, &r, &x| acc + (r - x) * (r - x))
        / reference.len() as f64;
    10.0 * (peak * peak / mse).log10()
}

/// NMSE `||ref - img||^2 / ||ref||^2`.
pub fn nmse(reference: ArrayView2<f64>, image: ArrayView2<f64>) -> f64 {
    let (num, den) = Zip::from(&reference)
        .and(&image)
        .fold((0.0, 0.0), |(n, d), &r, &x| {
            (n + (r - x) * (r - x), d + r * r)
        });
    num / den
}

/// SSIM with an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range = max of
/// the reference, population covariances, averaged over the positions where the window fits
/// (as `skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
/// use_sample_covariance=False)` does after cropping its border).
pub fn ssim(reference: ArrayView2<f64>, image: ArrayView2<f64>) -> f64 {
    ssim_map(reference, image)
        .as_ref()
        .map_or(f64::NAN, whole_mean)
}

/// Fraction of the reference's maximum above which a pixel counts as object for
/// [`ssim_object`].
pub const OBJECT_THRESHOLD: f64 = 0.1;

/// [`ssim`]'s map averaged over the window centres where the reference is at least
/// [`OBJECT_THRESHOLD`] of its maximum (NaN when there are none): SSIM of the object, without
/// the background, where the reference is near zero and SSIM's constants (1% and 3% of the
/// range) make any residual there a large loss however small its share of the error.
pub fn ssim_object(reference: ArrayView2<f64>, image: ArrayView2<f64>) -> f64 {
    ssim_map(reference, image)
        .as_ref()
        .map_or(f64::NAN, |m| object_mean(m, reference))
}

/// Half the SSIM window: 11 taps.
const RADIUS: usize = 5;

/// The mean of an SSIM map (NaN for an empty one).
fn whole_mean(map: &Array2<f64>) -> f64 {
    map.mean().unwrap_or(f64::NAN)
}

/// The mean of an SSIM map over the window centres where `reference` is at least
/// [`OBJECT_THRESHOLD`] of its maximum (NaN when there are none).
fn object_mean(map: &Array2<f64>, reference: ArrayView2<f64>) -> f64 {
    let peak = reference.iter().cloned().fold(0.0, f64::max);
    let (mut total, mut count) = (0.0, 0usize);
    for ((i, j), &v) in map.indexed_iter() {
        if reference[(i + RADIUS, j + RADIUS)] >= OBJECT_THRESHOLD * peak {
            total += v;
            count += 1;
        }
    }
    if count == 0 {
        f64::NAN
    } else {
        total / count as f64
    }
}

/// The SSIM map over the window centres where the 11-tap window fits (`(h - 10) x (w - 10)`),
/// or `None` for an image smaller than the window.
fn ssim_map(reference: ArrayView2<f64>, image: ArrayView2<f64>) -> Option<Array2<f64>> {
    let (h, w) = reference.dim();
    if h <= 2 * RADIUS || w <= 2 * RADIUS {
        return None;
    }
    let range = reference.iter().cloned().fold(0.0, f64::max);
    let c1 = (0.01 * range).powi(2);
    let c2 = (0.03 * range).powi(2);
    let g: Vec<f64> = {
        let raw: Vec<f64> = (0..=2 * RADIUS)
            .map(|i| {
                let d = i as f64 - RADIUS as f64;
                (-d * d / (2.0 * 1.5 * 1.5)).exp()
            })
            .collect();
        let s: f64 = raw.iter().sum();
        raw.into_iter().map(|v| v / s).collect()
    };
    let filt = |a: &Array2<f64>| -> Array2<f64> {
        // Valid separable filtering: output (h - 2R) x (w - 2R).
        let rows = Array2::from_shape_fn((h, w - 2 * RADIUS), |(i, j)| {
            (0..=2 * RADIUS).map(|k| g[k] * a[(i, j + k)]).sum::<f64>()
        });
        Array2::from_shape_fn((h - 2 * RADIUS, w - 2 * RADIUS), |(i, j)| {
            (0..=2 * RADIUS)
                .map(|k| g[k] * rows[(i + k, j)])
                .sum::<f64>()
        })
    };
    let x = reference.to_owned();
    let y = image.to_owned();
    let mx = filt(&x);
    let my = filt(&y);
    let mxx = filt(&(&x * &x));
    let myy = filt(&(&y * &y));
    let mxy = filt(&(&x * &y));
    Some(
        Zip::from(&mx)
            .and(&my)
            .and(&mxx)
            .and(&myy)
            .and(&mxy)
            .map_collect(|&mx, &my, &mxx, &myy, &mxy| {
                let vx = mxx - mx * mx;
                let vy = myy - my * my;
                let cxy = mxy - mx * my;
                ((2.0 * mx * my + c1) * (2.0 * cxy + c2))
                    / ((mx * mx + my * my + c1) * (vx + vy + c2))
            }),
    )
}
