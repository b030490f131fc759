//! The noise level of measured k-space, estimated from the data alone.

use ndarray::ArrayView3;

use crate::fft::Fft2;
use crate::C32;

/// The noise std per real component of a scan's k-space `(coils, H, W)` (unmeasured columns
/// zero), estimated in image space: in each coil's zero-filled image a pixel sums the noise of
/// the measured entries with unit-norm weights, so its std is `sigma sqrt(f)` for a kept
/// fraction `f`. The pixels are those of the eighth of rows with the least energy over all
/// coils (for a readout oversampled as fastMRI's, rows outside the object, which aliasing along
/// the phase-encode axis does not reach), and their std is taken robustly as the median of
/// the real and imaginary parts' absolute values over 0.6745 (the median of |x| for
/// x ~ N(0, sigma^2)). Where the object fills every row this is an upper bound.
pub fn row_noise(kspace: ArrayView3<C32>, columns: &[bool]) -> f64 {
    let (_, h, w) = kspace.dim();
    let kept = columns.iter().filter(|&&k| k).count();
    if kept == 0 || h == 0 {
        return 0.0;
    }
    let mut images = kspace.to_owned();
    Fft2::new(h, w).inverse_coils(&mut images);
    let mut energy: Vec<(f32, usize)> = (0..h)
        .map(|r| {
            let e = images
                .slice(ndarray::s![.., r, ..])
                .iter()
                .map(|v| v.norm_sqr())
                .sum::<f32>();
            (e, r)
        })
        .collect();
    energy.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut parts: Vec<f32> = Vec::new();
    for &(_, r) in &energy[..(h / 8).max(1)] {
        for v in images.slice(ndarray::s![.., r, ..]) {
            parts.extend([v.re.abs(), v.im.abs()]);
        }
    }
    let mid = parts.len() / 2;
    let (_, median, _) = parts.select_nth_unstable_by(mid, f32::total_cmp);
    let pixel = *median as f64 / 0.6745;
    pixel / (kept as f64 / w as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::row_noise;
    use crate::fft::Fft2;
    use crate::C32;
    use ndarray::Array3;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn reads_the_noise_of_an_object_with_empty_rows() {
        // A 4-coil object in the middle half of the rows, plus white noise of std 0.02 per
        // real component on every third column: the estimate finds the noise.
        let (c, h, w) = (4, 64, 48);
        let mut images = Array3::from_shape_fn((c, h, w), |(k, y, x)| {
            if (16..48).contains(&y) {
                C32::new(1.0 + (x as f32 * 0.1 + k as f32).sin(), 0.3)
            } else {
                C32::new(0.0, 0.0)
            }
        });
        Fft2::new(h, w).forward_coils(&mut images);
        let columns: Vec<bool> = (0..w)
            .map(|x| x % 3 == 0 || (20..28).contains(&x))
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut draw = || {
            let z: f64 = StandardNormal.sample(&mut rng);
            0.02 * z as f32
        };
        for ((_, _, x), v) in images.indexed_iter_mut() {
            *v = if columns[x] {
                *v + C32::new(draw(), draw())
            } else {
                C32::new(0.0, 0.0)
            };
        }
        let sigma = row_noise(images.view(), &columns);
        assert!((sigma / 0.02 - 1.0).abs() < 0.1, "estimate {sigma}");
        assert_eq!(row_noise(images.view(), &vec![false; w]), 0.0);
    }
}
