//! Variable-density 2-D masks: a radial density of k-space, the masks drawn from it, and the
//! density estimated from measured masks.
//!
//! Compressed-sensing 3-D protocols sample their `(phase encode, partition)` plane more densely
//! near its centre than at its edge (BART's `poisson -v`, the vendors' CS sequences). The
//! trainer simulates such masks, or measures the density of the scans it reads, and the model
//! records the density (`msm.train_density`).
//!
//! The runtime's partial masks for such a model are nevertheless uniform random entries, tiled
//! by the coverage-aware sampler. Partial masks drawn with the training density were measured
//! and lost: the sampler builds the whole k-space from its partial estimates, and entries that
//! the density rarely draws (the outermost bins keep under 1% of their entries) are rarely
//! written, so the image loses its high frequencies. On a tuning slice at K = 200 the
//! density's partial masks gave 29.57 dB against 31.09 for uniform ones with the same model,
//! and 1.10 dB less on 5 held-out slices (docs/results.md, "Variable-density 2-D masks").
//!
//! The density is a function of the normalised radius ([`normalised_radius`]): 0 at the centre
//! entry, 1 at the corners of the grid, with the two axes scaled to the same extent (an ellipse on
//! a grid that is not square). It is stored as relative weights over equal bins of the radius;
//! an entry outside the ACS square is kept with probability `min(1, c w(r))`, `c` chosen so
//! that the expected kept count is the mask's.

use super::{acs_square, check_accel_square};
use crate::{Error, Result};
use ndarray::Array2;
use rand::{Rng, RngExt};
use std::fmt;
use std::str::FromStr;

/// Number of radius bins of the densities this crate makes ([`RadialDensity::polynomial`],
/// [`RadialDensity::estimate`]).
pub const DENSITY_BINS: usize = 16;

/// Power `p` of the simulated variable density `(1 - r)^p` (`msm simulate --pattern
/// variable-density-2d`, `msm-train` `data.mask = "variable-density-2d"` on simulated data).
pub const SIMULATED_DENSITY_POWER: f64 = 2.0;

/// Relative sampling density of a 2-D k-space grid as a function of the normalised radius:
/// one weight per equal bin of `r` in `[0, 1]`, centre to corners, the largest weight 1.
#[derive(Clone, Debug, PartialEq)]
pub struct RadialDensity {
    weights: Vec<f64>,
}

/// The normalised radius of entry `(i, j)` of a `height x width` grid: its distance from the
/// centre entry `(height / 2, width / 2)` (where the centred FFT puts DC), each axis divided by
/// half its size, over `sqrt(2)`, so that the corners are at 1 (clamped to 1).
pub fn normalised_radius(i: usize, j: usize, height: usize, width: usize) -> f64 {
    let y = (i as f64 - (height / 2) as f64) / (height as f64 / 2.0);
    let x = (j as f64 - (width / 2) as f64) / (width as f64 / 2.0);
    ((y * y + x * x).sqrt() / std::f64::consts::SQRT_2).min(1.0)
}

impl RadialDensity {
    /// A density from its bin weights (centre to corners): at least one bin, every weight
    /// finite and >= 0, one of them > 0. The weights are rescaled so that the largest is 1.
    pub fn new(weights: Vec<f64>) -> Result<Self> {
        if weights.is_empty() || weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(Error::invalid(format!(
                "a radial density needs one or more finite weights >= 0, got {weights:?}"
            )));
        }
        let top = weights.iter().copied().fold(0.0, f64::max);
        if top == 0.0 {
            return Err(Error::invalid(
                "a radial density needs a weight > 0: all its weights are 0",
            ));
        }
        Ok(RadialDensity {
            weights: weights.into_iter().map(|w| w / top).collect(),
        })
    }

    /// The density `(1 - r)^power` at the centres of [`DENSITY_BINS`] bins (a polynomial
    /// variable density, as Lustig's sparse MRI uses); `power` finite and >= 0 (0: uniform).
    pub fn polynomial(power: f64) -> Result<Self> {
        if !(power.is_finite() && power >= 0.0) {
            return Err(Error::invalid(format!(
                "the power of a variable density must be finite and >= 0, got {power}"
            )));
        }
        let n = DENSITY_BINS as f64;
        RadialDensity::new(
            (0..DENSITY_BINS)
                .map(|b| (1.0 - (b as f64 + 0.5) / n).powf(power))
                .collect(),
        )
    }

    /// The density of simulated variable-density masks: `(1 - r)^p` with
    /// [`SIMULATED_DENSITY_POWER`] (`msm simulate --pattern variable-density-2d`, and
    /// `msm-train` on simulated data).
    pub fn simulated() -> Self {
        RadialDensity::polynomial(SIMULATED_DENSITY_POWER).expect("a finite power >= 0")
    }

    /// The bin weights, centre to corners (the largest is 1).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The density of a set of measured 2-D masks of one shape: per bin, the fraction of its
    /// entries outside the central `acs x acs` square that the masks keep, over all masks, in
    /// [`DENSITY_BINS`] bins. A bin with no entries outside the square takes the value of the
    /// nearest bin that has some. Errors when there are no masks, their shapes differ, or no
    /// mask keeps an entry outside the square.
    pub fn estimate<'a>(
        masks: impl IntoIterator<Item = &'a Array2<bool>>,
        acs: usize,
    ) -> Result<Self> {
        let mut masks = masks.into_iter().peekable();
        let (h, w) = masks
            .peek()
            .map(|m| m.dim())
            .ok_or_else(|| Error::invalid("no masks to estimate a sampling density from"))?;
        let bins = bin_map(h, w, acs, DENSITY_BINS);
        let mut kept = [0u64; DENSITY_BINS];
        let mut total = [0u64; DENSITY_BINS];
        for m in masks {
            if m.dim() != (h, w) {
                return Err(Error::invalid(format!(
                    "masks of {}x{} and {h}x{w}: a sampling density is estimated from masks of \
                     one grid",
                    m.dim().0,
                    m.dim().1
                )));
            }
            for (&keep, bin) in m.iter().zip(bins.iter()) {
                if let Some(b) = *bin {
                    total[b] += 1;
                    kept[b] += u64::from(keep);
                }
            }
        }
        let measured: Vec<Option<f64>> = (0..DENSITY_BINS)
            .map(|b| (total[b] > 0).then(|| kept[b] as f64 / total[b] as f64))
            .collect();
        let weights = (0..DENSITY_BINS)
            .map(|b| {
                measured[b].unwrap_or_else(|| {
                    // The nearest bin with entries, the inner one on a tie.
                    (1..DENSITY_BINS)
                        .find_map(|d| {
                            b.checked_sub(d)
                                .and_then(|i| measured[i])
                                .or_else(|| measured.get(b + d).copied().flatten())
                        })
                        .unwrap_or(0.0)
                })
            })
            .collect::<Vec<_>>();
        if weights.iter().all(|&v| v == 0.0) {
            return Err(Error::invalid(format!(
                "no mask keeps an entry outside the central {acs}x{acs} ACS square: there is no \
                 sampling density to estimate"
            )));
        }
        RadialDensity::new(weights)
    }

    /// The probability that a mask keeps each entry of a `height x width` grid: 1 in the
    /// central `acs x acs` square, `min(1, c w(r))` elsewhere, with `c` such that `count`
    /// entries outside the square are kept on average. Errors when fewer than `count` entries
    /// outside the square have a weight > 0.
    pub fn inclusion(
        &self,
        height: usize,
        width: usize,
        acs: usize,
        count: usize,
    ) -> Result<Array2<f64>> {
        let bins = bin_map(height, width, acs, self.weights.len());
        let mut per_bin = vec![0usize; self.weights.len()];
        for b in bins.iter().flatten() {
            per_bin[*b] += 1;
        }
        let expected = |c: f64| -> f64 {
            per_bin
                .iter()
                .zip(&self.weights)
                .map(|(&n, &w)| n as f64 * (c * w).min(1.0))
                .sum()
        };
        let drawable: usize = per_bin
            .iter()
            .zip(&self.weights)
            .filter(|(_, &w)| w > 0.0)
            .map(|(&n, _)| n)
            .sum();
        if count > drawable {
            return Err(Error::invalid(format!(
                "the sampling density is 0 on too much of the {height}x{width} grid: {drawable} \
                 entries outside the ACS square can be kept, a mask needs {count}"
            )));
        }
        // Bisection for c: every weight > 0 reaches 1 at the smallest weight's inverse.
        let smallest = self
            .weights
            .iter()
            .copied()
            .filter(|&w| w > 0.0)
            .fold(1.0, f64::min);
        let (mut lo, mut hi) = (0.0, 1.0 / smallest);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if expected(mid) < count as f64 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let c = if count == drawable {
            1.0 / smallest
        } else {
            hi
        };
        Ok(bins.mapv(|b| b.map_or(1.0, |b| (c * self.weights[b]).min(1.0))))
    }
}

/// Each entry's radius bin (of `bins`), `None` inside the central `acs x acs` square.
fn bin_map(height: usize, width: usize, acs: usize, bins: usize) -> Array2<Option<usize>> {
    let (rows, cols) = acs_square(height, width, acs);
    Array2::from_shape_fn((height, width), |(i, j)| {
        if rows.contains(&i) && cols.contains(&j) {
            None
        } else {
            let r = normalised_radius(i, j, height, width);
            Some(((r * bins as f64) as usize).min(bins - 1))
        }
    })
}

impl fmt::Display for RadialDensity {
    /// The weights, comma-separated, each to 4 significant digits (the metadata form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: Vec<String> = self
            .weights
            .iter()
            .map(|w| {
                let s = format!("{w:.4e}");
                s.parse::<f64>().map_or(s, |v| v.to_string())
            })
            .collect();
        f.write_str(&text.join(","))
    }
}

impl FromStr for RadialDensity {
    type Err = Error;

    /// Comma-separated weights, centre to corners (the [`fmt::Display`] form).
    fn from_str(s: &str) -> Result<Self> {
        let weights = s
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| {
                Error::invalid(format!(
                    "`{s}` is not a radial density: expected comma-separated weights such as \
                     1,0.8,0.5"
                ))
            })?;
        RadialDensity::new(weights)
    }
}

/// A variable-density 2-D mask for k-space undersampled along both axes: the central
/// `acs x acs` square is always kept, every other entry independently with the probability
/// [`RadialDensity::inclusion`] gives it, so that the expected kept fraction is `1 / accel`.
/// The variable-density counterpart of [`super::random_entries`].
pub fn variable_density_entries<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    accel: f64,
    acs: usize,
    density: &RadialDensity,
    rng: &mut R,
) -> Result<Array2<bool>> {
    check_accel_square(accel, height, width, acs)?;
    let kept = (height * width) as f64 / accel;
    let count = (kept.round() as usize).saturating_sub(acs * acs);
    let pi = density.inclusion(height, width, acs, count)?;
    Ok(pi.mapv(|p| p >= 1.0 || rng.random::<f64>() < p))
}

#[cfg(test)]
/// Mean of `values` over the entries of each radius bin outside the ACS square, for the
/// bins that have such entries.
pub(super) fn per_bin(values: &Array2<f64>, acs: usize) -> Vec<f64> {
    let (h, w) = values.dim();
    let bins = bin_map(h, w, acs, DENSITY_BINS);
    let mut sum = [0.0; DENSITY_BINS];
    let mut n = [0usize; DENSITY_BINS];
    for (v, b) in values.iter().zip(bins.iter()) {
        if let Some(b) = *b {
            sum[b] += v;
            n[b] += 1;
        }
    }
    sum.iter()
        .zip(&n)
        .filter(|(_, &n)| n > 0)
        .map(|(s, &n)| s / n as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn radius_is_zero_at_the_centre_and_one_at_the_corners() {
        assert_eq!(normalised_radius(32, 32, 64, 64), 0.0);
        assert_eq!(normalised_radius(0, 0, 64, 64), 1.0);
        // Each axis is scaled to its own half size: the middle of each edge is at 1/sqrt(2).
        let edge = 1.0 / std::f64::consts::SQRT_2;
        assert!((normalised_radius(0, 16, 64, 32) - edge).abs() < 1e-12);
        assert!((normalised_radius(32, 0, 64, 32) - edge).abs() < 1e-12);
    }

    #[test]
    fn a_density_round_trips_through_its_text_and_bad_text_is_refused() {
        let d = RadialDensity::polynomial(2.0).unwrap();
        assert_eq!(d.weights().len(), DENSITY_BINS);
        assert_eq!(d.weights()[0], 1.0);
        assert!(d.weights().windows(2).all(|p| p[1] < p[0]));
        let back: RadialDensity = d.to_string().parse().unwrap();
        for (a, b) in d.weights().iter().zip(back.weights()) {
            assert!((a - b).abs() <= 1e-4 * a, "{a} {b}");
        }
        // Weights are rescaled to a largest of 1.
        let d: RadialDensity = "2, 1, 0".parse().unwrap();
        assert_eq!(d.weights(), &[1.0, 0.5, 0.0]);
        for bad in ["", "1,x", "0,0", "1,-1", "1,inf", "1,NaN"] {
            assert!(bad.parse::<RadialDensity>().is_err(), "{bad:?}");
        }
        assert!(RadialDensity::polynomial(-1.0).is_err());
    }

    /// With a flat density every entry outside the ACS square has the probability
    /// `random_entries` keeps it with; with `(1 - r)^2` the probabilities fall with the radius,
    /// and in both the expected count is the one asked for.
    #[test]
    fn inclusion_probabilities_give_the_count_asked_for() {
        let (h, w, acs) = (48, 40, 8);
        let free = h * w - acs * acs;
        let count = h * w / 4 - acs * acs;
        let flat = RadialDensity::polynomial(0.0).unwrap();
        let pi = flat.inclusion(h, w, acs, count).unwrap();
        let (rows, cols) = acs_square(h, w, acs);
        let uniform = count as f64 / free as f64;
        for ((i, j), &p) in pi.indexed_iter() {
            let want = if rows.contains(&i) && cols.contains(&j) {
                1.0
            } else {
                uniform
            };
            assert!((p - want).abs() < 1e-9, "({i}, {j}): {p} vs {want}");
        }
        let vd = RadialDensity::polynomial(2.0).unwrap();
        let pi = vd.inclusion(h, w, acs, count).unwrap();
        let total: f64 = pi.sum() - (acs * acs) as f64;
        assert!((total - count as f64).abs() < 1e-6, "{total} vs {count}");
        assert!(pi.iter().all(|&p| (0.0..=1.0).contains(&p)));
        let bins = per_bin(&pi, acs);
        assert!(bins.windows(2).all(|p| p[1] <= p[0]), "{bins:?}");
        assert!(bins[0] > 4.0 * bins[bins.len() - 2], "{bins:?}");
        // More than the entries of weight > 0 cannot be drawn.
        let half: RadialDensity = "1,1,0,0".parse().unwrap();
        let e = half.inclusion(h, w, acs, free).unwrap_err().to_string();
        assert!(e.contains("a mask needs"), "{e}");
    }

    /// Masks drawn with the density keep the ACS square, 1/R of the grid on average, and each
    /// entry about as often as its inclusion probability; the density estimated from them gives
    /// back those probabilities.
    #[test]
    fn variable_density_masks_follow_their_density_and_it_is_estimated_back() {
        let (n, accel, acs) = (64, 4.0, 8);
        let d = RadialDensity::polynomial(2.0).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let masks: Vec<Array2<bool>> = (0..400)
            .map(|_| variable_density_entries(n, n, accel, acs, &d, &mut rng).unwrap())
            .collect();
        let (rows, cols) = acs_square(n, n, acs);
        assert!(masks
            .iter()
            .all(|m| rows.clone().all(|i| cols.clone().all(|j| m[(i, j)]))));
        let kept = masks
            .iter()
            .map(|m| m.iter().filter(|&&k| k).count())
            .sum::<usize>() as f64
            / (masks.len() * n * n) as f64;
        assert!((kept - 0.25).abs() < 0.005, "kept fraction {kept}");
        let count = n * n / 4 - acs * acs;
        let pi = d.inclusion(n, n, acs, count).unwrap();
        let freq = Array2::from_shape_fn((n, n), |(i, j)| {
            masks.iter().filter(|m| m[(i, j)]).count() as f64 / masks.len() as f64
        });
        for (b, (f, p)) in per_bin(&freq, acs)
            .iter()
            .zip(per_bin(&pi, acs))
            .enumerate()
        {
            assert!(
                (f - p).abs() < 0.02,
                "bin {b}: kept {f:.4}, probability {p:.4}"
            );
        }
        let estimate = RadialDensity::estimate(&masks, acs).unwrap();
        let back = estimate.inclusion(n, n, acs, count).unwrap();
        let worst = (&back - &pi).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(worst < 0.03, "estimated probabilities off by {worst}");
    }

    #[test]
    fn estimates_need_masks_of_one_grid_that_keep_something_outside_the_acs() {
        let none: Vec<Array2<bool>> = vec![];
        assert!(RadialDensity::estimate(&none, 4).is_err());
        let a = Array2::from_elem((16, 16), true);
        let b = Array2::from_elem((16, 12), true);
        let e = RadialDensity::estimate([&a, &b], 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("16x12") && e.contains("one grid"), "{e}");
        let mut acs_only = Array2::from_elem((16, 16), false);
        let (rows, cols) = acs_square(16, 16, 4);
        for i in rows {
            for j in cols.clone() {
                acs_only[(i, j)] = true;
            }
        }
        let e = RadialDensity::estimate([&acs_only], 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the central 4x4 ACS square"), "{e}");
    }
}
