//! Calibration of a posterior uncertainty map: whether the spread of the posterior samples
//! (`msm reconstruct --std`, the bottom row of `msm demo`'s panels) predicts the error of
//! their mean.
//!
//! If the true image and the `N` samples were independent draws from one distribution, with a
//! Gaussian magnitude at each pixel, the mean of the samples `m` and their standard deviation
//! `s` (`N - 1` in the denominator, as [`crate::sampler::Reconstruction::std`]) would give
//! `(truth - m) / (s sqrt(1 + 1/N)) ~ t(N - 1)`, Student's t with `N - 1` degrees of freedom
//! (the prediction interval of a normal sample). So a calibrated map covers
//! `|error| <= k s sqrt(1 + 1/N)` on a fraction [`students_t_within`]`(k, N - 1)` of the
//! pixels ([`expected_coverage`]: 0.50, 0.70, 0.80 for k = 1, 2, 3 at `N = 2`; 0.68, 0.95, 1.00
//! for many samples), and `E[error^2] = E[s^2] (1 + 1/N)`, so the ratio of their root means
//! is 1. A ratio above 1 and coverage below the expected says the map is over-confident (the
//! error is larger than the samples' spread admits); the rank correlation between `s` and
//! `|error|` says whether the map at least points at where the error is.

use crate::metrics::{check_reference, ls_scale, OBJECT_THRESHOLD};
use crate::{Error, Result, C32};
use ndarray::ArrayView2;
use std::f64::consts::PI;

/// The multiples `k` of the predicted std at which coverage is reported.
pub const LEVELS: [f64; 3] = [1.0, 2.0, 3.0];

/// How well a std map predicts the error of the mean over one set of pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// Number of pixels scored.
    pub pixels: usize,
    /// `rms(|error|) / rms(s sqrt(1 + 1/N))`: 1 when calibrated, above 1 when over-confident
    /// (infinite when the map is zero and the error is not).
    pub ratio: f64,
    /// Fraction of the pixels with `|error| <= k s sqrt(1 + 1/N)`, for each `k` of [`LEVELS`].
    pub coverage: [f64; 3],
    /// Spearman's rank correlation between the std and `|error|` over the pixels (ties ranked
    /// by their mean rank; NaN when either is constant).
    pub spearman: f64,
    /// The same between the rms predicted std and the rms error of [`BLOCK`] x [`BLOCK`]
    /// blocks (of the region's pixels, over the blocks at least half in the region): whether
    /// the map points at where the error is at the scale of a few pixels, which one pixel's
    /// error, a single draw, cannot say.
    pub block_spearman: f64,
}

/// The side of the blocks of [`Calibration::block_spearman`].
pub const BLOCK: usize = 8;

/// A std map's calibration over the whole image and over the object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Uncertainty {
    /// Every pixel.
    pub whole: Calibration,
    /// The pixels where the reference is at least [`OBJECT_THRESHOLD`] of its maximum (where
    /// the magnitude is far from 0, so its error is close to Gaussian; the background's
    /// magnitudes are Rician).
    pub object: Calibration,
    /// The number of samples `N` the map was computed from.
    pub samples: usize,
}

/// The mean of each figure of the maps' calibration over the object, over several slices
/// (`pixels` summed); `None` for no slices.
pub fn mean_object(slices: &[Uncertainty]) -> Option<Calibration> {
    let n = slices.len() as f64;
    let mean =
        |f: &dyn Fn(&Calibration) -> f64| slices.iter().map(|u| f(&u.object)).sum::<f64>() / n;
    (!slices.is_empty()).then(|| Calibration {
        pixels: slices.iter().map(|u| u.object.pixels).sum(),
        ratio: mean(&|c| c.ratio),
        coverage: [0, 1, 2].map(|k| mean(&|c| c.coverage[k])),
        spearman: mean(&|c| c.spearman),
        block_spearman: mean(&|c| c.block_spearman),
    })
}

/// `P(|T| <= k)` for Student's t with `dof` degrees of freedom (at least 1), by the finite
/// series of Abramowitz and Stegun 26.7.3 (odd) and 26.7.4 (even): exact for every integer
/// `dof`, and the degrees of freedom here are always integers (`N - 1`).
pub fn students_t_within(k: f64, dof: usize) -> f64 {
    assert!(dof >= 1, "Student's t needs at least one degree of freedom");
    if k <= 0.0 {
        return 0.0;
    }
    let theta = (k / (dof as f64).sqrt()).atan();
    let (s, c) = theta.sin_cos();
    let c2 = c * c;
    if dof % 2 == 1 {
        // (2 / pi) (theta + sin cos (1 + 2/3 cos^2 + (2 4)/(3 5) cos^4 + ...)), dof - 2 powers.
        let (mut term, mut sum) = (c, if dof == 1 { 0.0 } else { c });
        for j in 1..=(dof.saturating_sub(3) / 2) {
            term *= c2 * (2 * j) as f64 / (2 * j + 1) as f64;
            sum += term;
        }
        2.0 / PI * (theta + s * sum)
    } else {
        // sin (1 + 1/2 cos^2 + (1 3)/(2 4) cos^4 + ...), dof - 2 powers.
        let (mut term, mut sum) = (1.0, 1.0);
        for j in 1..=((dof - 2) / 2) {
            term *= c2 * (2 * j - 1) as f64 / (2 * j) as f64;
            sum += term;
        }
        s * sum
    }
}

/// The coverage a calibrated map of `samples` samples (at least 2) has at each of [`LEVELS`].
pub fn expected_coverage(samples: usize) -> [f64; 3] {
    LEVELS.map(|k| students_t_within(k, samples - 1))
}

/// Scores the std map `std` of `samples` posterior samples (at least 2) against the error of
/// their mean `mean` on `reference`: magnitudes, after the least-squares complex scaling of
/// `mean` onto `reference` when `scale` is set (the std then scaled by the factor's modulus),
/// as [`crate::metrics::compare`] scores the mean.
pub fn calibrate(
    reference: ArrayView2<C32>,
    mean: ArrayView2<C32>,
    std: ArrayView2<f32>,
    samples: usize,
    scale: bool,
) -> Result<Uncertainty> {
    if samples < 2 {
        return Err(Error::invalid(format!(
            "a std map of {samples} sample has no spread to score; expected at least 2 samples"
        )));
    }
    for (what, dim) in [("image", mean.dim()), ("std map", std.dim())] {
        if dim != reference.dim() {
            return Err(Error::invalid(format!(
                "reference is {}x{} but the {what} is {}x{}",
                reference.dim().0,
                reference.dim().1,
                dim.0,
                dim.1
            )));
        }
    }
    if let Some(v) = std.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return Err(Error::invalid(format!(
            "the std map holds {v}; expected finite values of at least 0"
        )));
    }
    check_reference(reference)?;
    let a = if scale {
        ls_scale(reference, mean)
    } else {
        C32::new(1.0, 0.0)
    };
    let inflate = a.norm() as f64 * (1.0 + 1.0 / samples as f64).sqrt();
    let peak = reference.iter().map(|v| v.norm()).fold(0.0, f32::max) as f64;
    let (h, w) = reference.dim();
    let across = w.div_ceil(BLOCK);
    let blocks = h.div_ceil(BLOCK) * across;
    let mut whole = Pixels::new(blocks);
    let mut object = Pixels::new(blocks);
    for (((i, j), r), (m, s)) in reference.indexed_iter().zip(mean.iter().zip(std.iter())) {
        let r = r.norm() as f64;
        let err = ((*m * a).norm() as f64 - r).abs();
        let pred = *s as f64 * inflate;
        let block = (i / BLOCK) * across + j / BLOCK;
        whole.push(err, pred, block);
        if r >= OBJECT_THRESHOLD * peak {
            object.push(err, pred, block);
        }
    }
    let sizes: Vec<usize> = whole.blocks.iter().map(|b| b.0).collect();
    Ok(Uncertainty {
        whole: whole.score(&sizes),
        object: object.score(&sizes),
        samples,
    })
}

/// The absolute errors and predicted stds of a set of pixels, and their sums of squares over
/// each block.
struct Pixels {
    err: Vec<f64>,
    pred: Vec<f64>,
    /// Per block: the pixels of the set, the sum of squared errors and of squared predictions.
    blocks: Vec<(usize, f64, f64)>,
}

impl Pixels {
    fn new(blocks: usize) -> Self {
        Pixels {
            err: Vec::new(),
            pred: Vec::new(),
            blocks: vec![(0, 0.0, 0.0); blocks],
        }
    }

    fn push(&mut self, err: f64, pred: f64, block: usize) {
        self.err.push(err);
        self.pred.push(pred);
        let b = &mut self.blocks[block];
        *b = (b.0 + 1, b.1 + err * err, b.2 + pred * pred);
    }

    /// Spearman's correlation of the blocks' rms prediction and rms error, over the blocks
    /// at least half in the set (`sizes`: every block's pixels in the image).
    fn block_spearman(&self, sizes: &[usize]) -> f64 {
        let (mut err, mut pred) = (Vec::new(), Vec::new());
        for (&(n, e, p), &size) in self.blocks.iter().zip(sizes) {
            if n > 0 && 2 * n >= size {
                err.push((e / n as f64).sqrt());
                pred.push((p / n as f64).sqrt());
            }
        }
        spearman(&pred, &err)
    }

    /// The calibration over the set (`sizes`: every block's pixels in the image).
    fn score(&self, sizes: &[usize]) -> Calibration {
        let n = self.err.len() as f64;
        let sq = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>();
        let coverage = LEVELS.map(|k| {
            let inside = self
                .err
                .iter()
                .zip(&self.pred)
                .filter(|(e, p)| **e <= k * **p)
                .count();
            inside as f64 / n
        });
        Calibration {
            pixels: self.err.len(),
            ratio: (sq(&self.err) / sq(&self.pred)).sqrt(),
            coverage,
            spearman: spearman(&self.pred, &self.err),
            block_spearman: self.block_spearman(sizes),
        }
    }
}

/// Spearman's rank correlation: Pearson's correlation of the ranks, tied values given the mean
/// of the ranks they span (as `scipy.stats.spearmanr`). NaN when either series is constant or
/// empty.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let mean = (n + 1.0) / 2.0;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        let (dx, dy) = (x - mean, y - mean);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa * sbb).sqrt()
}

/// Ranks from 1, ties given the mean of the ranks they span.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0.0; v.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && v[order[end]] == v[order[start]] {
            end += 1;
        }
        // Ranks start + 1 ..= end share their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            out[i] = rank;
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    /// Two-sided critical values from printed t tables: `P(|T| <= t) = level`.
    #[test]
    fn students_t_matches_the_tables() {
        for (dof, t, level) in [
            (1, 12.706, 0.95),
            (1, 63.657, 0.99),
            (2, 4.303, 0.95),
            (3, 3.182, 0.95),
            (4, 4.604, 0.99),
            (7, 2.365, 0.95),
            (7, 1.895, 0.90),
            (10, 2.228, 0.95),
            (15, 2.947, 0.99),
            (30, 2.042, 0.95),
        ] {
            let p = students_t_within(t, dof);
            assert!(
                (p - level).abs() < 2e-4,
                "dof {dof}, t {t}: {p} against {level}"
            );
        }
        // Cauchy (1 degree of freedom) in closed form, and the normal limit.
        assert!((students_t_within(1.0, 1) - 0.5).abs() < 1e-12);
        let erf_sqrt2 = [0.682_689_49, 0.954_499_74, 0.997_300_20];
        for (k, g) in LEVELS.iter().zip(erf_sqrt2) {
            let p = students_t_within(*k, 100_000);
            assert!((p - g).abs() < 2e-5, "k {k}: {p} against {g}");
        }
        assert_eq!(students_t_within(0.0, 3), 0.0);
    }

    /// The example of `scipy.stats.spearmanr`'s documentation, a tie included.
    #[test]
    fn spearman_matches_scipy() {
        let r = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]);
        assert!((r - 0.820_782_681_668_123_3).abs() < 1e-12, "{r}");
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        let up: Vec<f64> = (0..50).map(|i| (i as f64).exp()).collect();
        let down: Vec<f64> = (0..50).map(|i| -(i as f64)).collect();
        assert!((spearman(&up, &down) + 1.0).abs() < 1e-12);
        assert!(spearman(&up, &[2.0; 50]).is_nan());
    }

    /// A reference image, and `n` samples drawn around it with a known per-pixel std (`truth`
    /// drawn from the same distribution as the samples): the mean, the samples' std map, and
    /// the true std.
    fn draw(n: usize, seed: u64) -> (Array2<C32>, Array2<C32>, Array2<f32>, Array2<f32>) {
        draw_with(n, seed, |i, j| 0.01 + 0.05 * ((i + 2 * j) % 5) as f32)
    }

    /// [`draw`] with the per-pixel std `sigma(i, j)`.
    #[allow(clippy::type_complexity)]
    fn draw_with(
        n: usize,
        seed: u64,
        sigma: impl Fn(usize, usize) -> f32,
    ) -> (Array2<C32>, Array2<C32>, Array2<f32>, Array2<f32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (h, w) = (96, 96);
        // Magnitudes well above the spread, so magnitudes are as Gaussian as the draws.
        let centre = Array2::from_shape_fn((h, w), |(i, j)| 1.0 + ((i * 7 + j * 3) % 11) as f32);
        let sigma = Array2::from_shape_fn((h, w), |(i, j)| sigma(i, j));
        let mut draw_one = |c: f32, s: f32| c + s * rng.sample::<f32, _>(StandardNormal);
        let mut reference = Array2::zeros((h, w));
        let mut mean = Array2::zeros((h, w));
        let mut std = Array2::zeros((h, w));
        for ((i, j), &c) in centre.indexed_iter() {
            let s = sigma[(i, j)];
            reference[(i, j)] = C32::new(draw_one(c, s), 0.0);
            let xs: Vec<f32> = (0..n).map(|_| draw_one(c, s)).collect();
            let m = xs.iter().sum::<f32>() / n as f32;
            let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f32>() / (n - 1) as f32;
            mean[(i, j)] = C32::new(m, 0.0);
            std[(i, j)] = v.sqrt();
        }
        (reference, mean, std, sigma)
    }

    /// Samples and truth from one distribution: the coverage is Student's t's for the number of
    /// samples (not the normal's), the ratio is 1, and the std map ranks the error. A map half
    /// the true spread is caught as over-confident, one twice as wide as under-confident.
    #[test]
    fn calibrated_draws_score_as_calibrated() {
        for n in [2, 8] {
            let (r, m, s, _) = draw(n, n as u64);
            let u = calibrate(r.view(), m.view(), s.view(), n, false).unwrap();
            let c = u.whole;
            assert_eq!(c.pixels, 96 * 96);
            // Binomial standard error of a fraction over 9216 pixels is at most 0.0052.
            for (got, want) in c.coverage.iter().zip(expected_coverage(n)) {
                assert!(
                    (got - want).abs() < 0.02,
                    "N {n}: {:?} against {want}",
                    c.coverage
                );
            }
            assert!((c.ratio - 1.0).abs() < 0.1, "N {n}: ratio {}", c.ratio);
            assert!(c.spearman > 0.2, "N {n}: Spearman {}", c.spearman);
            // The object leaves out the darkest eleventh of the image (centre 1 of peak 11).
            assert!(u.object.pixels > 8000 && u.object.pixels < 9000);

            let half = s.mapv(|v| v / 2.0);
            let over = calibrate(r.view(), m.view(), half.view(), n, false).unwrap();
            assert!(over.whole.ratio > 1.8);
            assert!(over.whole.coverage[0] < expected_coverage(n)[0] - 0.1);
            let double = s.mapv(|v| v * 2.0);
            let under = calibrate(r.view(), m.view(), double.view(), n, false).unwrap();
            assert!(under.whole.ratio < 0.55);
            assert!(under.whole.coverage[0] > expected_coverage(n)[1] - 0.02);
        }
        // Eight samples: the known std predicts the error as well as a sample std's ranks can
        // only approach.
        let (r, m, s, sigma) = draw(8, 3);
        let known = calibrate(r.view(), m.view(), sigma.view(), 8, false).unwrap();
        let sampled = calibrate(r.view(), m.view(), s.view(), 8, false).unwrap();
        assert!(known.whole.spearman > sampled.whole.spearman);
    }

    /// A spread that changes from block to block: the blocks' rms std ranks their rms error
    /// nearly perfectly, where one pixel's error, a single draw, ranks far worse. Blocks whose
    /// maps are shuffled rank nothing.
    #[test]
    fn blocks_rank_the_error_where_pixels_cannot() {
        let level = |i: usize, j: usize| 0.02 + 0.03 * ((i / BLOCK * 3 + j / BLOCK * 5) % 7) as f32;
        let (r, m, s, _) = draw_with(8, 17, level);
        let c = calibrate(r.view(), m.view(), s.view(), 8, false)
            .unwrap()
            .whole;
        assert!(c.block_spearman > 0.9, "blocks {}", c.block_spearman);
        assert!(c.spearman < c.block_spearman - 0.3, "pixels {}", c.spearman);
        // The map of block (bi, bj) moved to block (bj, bi + 1): unrelated levels.
        let moved = Array2::from_shape_fn(s.dim(), |(i, j)| {
            let (bi, bj) = (i / BLOCK, j / BLOCK);
            let (ti, tj) = (bj, (bi + 1) % (96 / BLOCK));
            s[(ti * BLOCK + i % BLOCK, tj * BLOCK + j % BLOCK)]
        });
        let c = calibrate(r.view(), m.view(), moved.view(), 8, false)
            .unwrap()
            .whole;
        assert!(
            c.block_spearman.abs() < 0.3,
            "moved blocks {}",
            c.block_spearman
        );
    }

    /// The least-squares scale moves the std with the image: a mean and std scaled by 3 (with
    /// a phase) score as the unscaled pair.
    #[test]
    fn scaling_applies_to_the_std_map() {
        let (r, m, s, _) = draw(4, 11);
        let plain = calibrate(r.view(), m.view(), s.view(), 4, true).unwrap();
        let f = C32::new(0.0, 1.0 / 3.0);
        let scaled = calibrate(
            r.view(),
            m.mapv(|v| v * f).view(),
            s.mapv(|v| v / 3.0).view(),
            4,
            true,
        )
        .unwrap();
        assert!((plain.whole.ratio - scaled.whole.ratio).abs() < 1e-4);
        for (a, b) in plain.whole.coverage.iter().zip(scaled.whole.coverage) {
            assert!((a - b).abs() < 1e-3);
        }
        // Without the scaling, the same pair is far off.
        let unscaled = calibrate(
            r.view(),
            m.mapv(|v| v * f).view(),
            s.mapv(|v| v / 3.0).view(),
            4,
            false,
        )
        .unwrap();
        assert!(unscaled.whole.ratio > 10.0);
    }

    #[test]
    fn bad_input_is_refused() {
        let (r, m, s, _) = draw(2, 5);
        let e = calibrate(r.view(), m.view(), s.view(), 1, false).unwrap_err();
        assert!(e.to_string().contains("at least 2 samples"), "{e}");
        let small = Array2::<f32>::zeros((4, 4));
        let e = calibrate(r.view(), m.view(), small.view(), 2, false).unwrap_err();
        assert!(e.to_string().contains("std map is 4x4"), "{e}");
        let mut neg = s.clone();
        neg[(1, 1)] = -1.0;
        let e = calibrate(r.view(), m.view(), neg.view(), 2, false).unwrap_err();
        assert!(e.to_string().contains("at least 0"), "{e}");
        let zero = Array2::<C32>::zeros(r.dim());
        assert!(calibrate(zero.view(), m.view(), s.view(), 2, false).is_err());
    }
}
