//! Low-resolution ratio coil maps: the fast alternative to ESPIRiT.
//!
//! The calibration region (found as [`super::calib`] describes) is multiplied by a separable
//! Hann window (`sin^2(pi (i + 1) / (n + 1))` for `i` in `0..n` along each side, so no kept sample
//! gets weight zero), zero-filled to the full grid and inverse Fourier transformed per coil. The
//! maps are these low-resolution coil images divided by their root-sum-of-squares over the
//! coils, so `sum_c |C_c|^2 = 1` wherever they are not masked. Optionally, pixels whose
//! root-sum-of-squares is below `threshold` times its maximum are set to zero (outside the
//! object, where the ratio is noise).
//!
//! The maps keep the low-resolution image phase of the coils' common combination; SENSE then
//! reconstructs an image with that phase removed.

use super::calib::{calibration_region, check_kspace};
use crate::fft::Fft2;
use crate::mask::Mask;
use crate::{Error, Result, C32};
use ndarray::{Array3, ArrayView3};

/// Options of [`ratio_maps`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatioOptions {
    /// Largest side of the calibration region (default 24, as for ESPIRiT).
    pub cal: usize,
    /// Relative root-sum-of-squares threshold in `[0, 1)`: maps are zero where the
    /// low-resolution RSS is below `threshold * max RSS` (default 0: no masking).
    pub threshold: f32,
}

impl Default for RatioOptions {
    fn default() -> Self {
        RatioOptions {
            cal: 24,
            threshold: 0.0,
        }
    }
}

/// Low-resolution ratio coil maps `(coils, height, width)` from multi-coil k-space
/// `(coils, height, width)`; `mask` as for [`super::espirit()`].
///
/// Errors: zero coils, an empty grid, a mask of another grid, NaN or Inf in the k-space, a
/// threshold outside `[0, 1)`, an unsampled k-space centre, and a calibration region without
/// signal.
pub fn ratio_maps(
    kspace: ArrayView3<C32>,
    mask: Option<&Mask>,
    opts: &RatioOptions,
) -> Result<Array3<C32>> {
    if !(opts.threshold.is_finite() && (0.0..1.0).contains(&opts.threshold)) {
        return Err(Error::invalid(format!(
            "the ratio maps RSS threshold must be in [0, 1), got {}",
            opts.threshold
        )));
    }
    check_kspace(kspace, mask)?;
    let region = calibration_region(kspace, mask, opts.cal)?;
    let (nc, h, w) = kspace.dim();
    let wy = hann(region.height());
    let wx = hann(region.width());
    let mut img = Array3::<C32>::zeros((nc, h, w));
    for c in 0..nc {
        for (iy, y) in region.rows.clone().enumerate() {
            for (ix, x) in region.cols.clone().enumerate() {
                img[(c, y, x)] = kspace[(c, y, x)] * (wy[iy] * wx[ix]);
            }
        }
    }
    Fft2::new(h, w).inverse_coils(&mut img);
    let rss = img.map_axis(ndarray::Axis(0), |coils| {
        coils.iter().map(|v| v.norm_sqr()).sum::<f32>().sqrt()
    });
    let peak = rss.iter().cloned().fold(0.0f32, f32::max);
    if peak.is_nan() || peak <= 0.0 {
        return Err(Error::invalid(format!(
            "the calibration region (rows {:?}, columns {:?}) holds no signal: all its k-space \
             values are zero",
            region.rows, region.cols
        )));
    }
    let floor = opts.threshold * peak;
    for c in 0..nc {
        for y in 0..h {
            for x in 0..w {
                let r = rss[(y, x)];
                img[(c, y, x)] = if r > 0.0 && r >= floor {
                    img[(c, y, x)] / r
                } else {
                    C32::new(0.0, 0.0)
                };
            }
        }
    }
    Ok(img)
}

/// The Hann window of length `n` without zero end points.
fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let s = (std::f64::consts::PI * (i + 1) as f64 / (n + 1) as f64).sin();
            (s * s) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hann_is_symmetric_positive_and_peaks_in_the_middle() {
        let h = hann(7);
        assert!(h.iter().all(|&v| v > 0.0 && v <= 1.0));
        for i in 0..7 {
            assert!((h[i] - h[6 - i]).abs() < 1e-6);
        }
        assert!((h[3] - 1.0).abs() < 1e-6);
    }
}
