//! Noise prewhitening: the coil-space transform that makes the receive channels' noise white
//! (uncorrelated, of equal variance), computed from a noise scan, as Gadgetron's noise
//! adjustment and BART `whiten` do before reconstruction. Receive channels share noise through
//! their coupling and preamplifiers; MSM's data consistency and the trainer's SURE loss assume
//! independent noise of one std on every measured value.
//!
//! From noise samples `n` (coils x N) the covariance is `Psi = n n^H / N`, its mean channel
//! variance `s2 = trace(Psi) / coils`, and the transform `W = L^-1` for the Cholesky factor
//! `Psi / s2 = L L^H`. Applied to every k-space sample's coil vector, it leaves noise of
//! covariance `s2 I`: white, on the scale of the data (the mean channel's noise level is kept).

use crate::{Error, Result, C32};
use nalgebra::{Complex, DMatrix, SymmetricEigen};
use ndarray::{Array2, Array3, ArrayView2};

/// The prewhitening transform of one receive array.
#[derive(Debug, Clone)]
pub struct Whitening {
    /// `W = L^-1`, `(coils, coils)`.
    w: Array2<C32>,
    /// Mean channel variance of the complex noise, `trace(Psi) / coils`.
    level: f64,
    /// Largest over smallest eigenvalue of `Psi`.
    condition: f64,
}

impl Whitening {
    /// The transform for noise samples `noise` `(coils, N)`: at least as many samples as
    /// coils, and a covariance with no channel silent or a copy of others (positive definite).
    pub fn from_noise(noise: ArrayView2<C32>) -> Result<Whitening> {
        let (nc, n) = noise.dim();
        if nc == 0 || n < nc {
            return Err(Error::invalid(format!(
                "{n} noise samples for {nc} coils; expected at least one per coil"
            )));
        }
        let c64 = |v: C32| Complex::new(f64::from(v.re), f64::from(v.im));
        let mut psi = DMatrix::<Complex<f64>>::zeros(nc, nc);
        for s in 0..n {
            for a in 0..nc {
                let va = c64(noise[(a, s)]);
                for b in 0..nc {
                    psi[(a, b)] += va * c64(noise[(b, s)]).conj();
                }
            }
        }
        psi /= Complex::new(n as f64, 0.0);
        let level = (0..nc).map(|a| psi[(a, a)].re).sum::<f64>() / nc as f64;
        let singular = || {
            Error::invalid(
                "the noise covariance is not positive definite (a silent channel, or one that \
                 copies others); expected independent receive channels",
            )
        };
        if !(level > 0.0 && level.is_finite()) {
            return Err(singular());
        }
        let eig = SymmetricEigen::new(psi.clone());
        let (lo, hi) = eig
            .eigenvalues
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), &e| {
                (lo.min(e), hi.max(e))
            });
        let l = (psi / Complex::new(level, 0.0))
            .cholesky()
            .ok_or_else(singular)?
            .unpack();
        let w = l
            .solve_lower_triangular(&DMatrix::identity(nc, nc))
            .ok_or_else(singular)?;
        Ok(Whitening {
            w: Array2::from_shape_fn((nc, nc), |(a, b)| {
                C32::new(w[(a, b)].re as f32, w[(a, b)].im as f32)
            }),
            level,
            condition: if lo > 0.0 { hi / lo } else { f64::INFINITY },
        })
    }

    /// Whitens multi-coil k-space `(coils, H, W)` in place: every sample's coil vector `v`
    /// becomes `W v`.
    pub fn apply(&self, kspace: &mut Array3<C32>) -> Result<()> {
        let nc = self.w.dim().0;
        let (c, h, w) = kspace.dim();
        if c != nc {
            return Err(Error::invalid(format!(
                "k-space of {c} coils for a noise covariance of {nc}; expected the same"
            )));
        }
        let mut v = vec![C32::new(0.0, 0.0); nc];
        for y in 0..h {
            for x in 0..w {
                for (a, va) in v.iter_mut().enumerate() {
                    *va = kspace[(a, y, x)];
                }
                for a in 0..nc {
                    // W is lower triangular.
                    kspace[(a, y, x)] = (0..=a).map(|b| self.w[(a, b)] * v[b]).sum();
                }
            }
        }
        Ok(())
    }

    /// The noise std per real component after whitening (and, averaged over channels, before).
    pub fn noise_std(&self) -> f64 {
        (self.level / 2.0).sqrt()
    }

    /// Largest over smallest eigenvalue of the noise covariance: 1 for independent channels of
    /// equal noise, large when channels share much of their noise.
    pub fn condition(&self) -> f64 {
        self.condition
    }

    /// The transform `W`, `(coils, coils)`, lower triangular.
    pub fn matrix(&self) -> &Array2<C32> {
        &self.w
    }
}

#[cfg(test)]
mod tests {
    use super::Whitening;
    use crate::C32;
    use ndarray::{Array2, Array3};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    /// `n` samples of noise `A z`, `z` white complex of unit variance per real component.
    fn correlated(a: &Array2<C32>, n: usize, rng: &mut ChaCha8Rng) -> Array2<C32> {
        let nc = a.dim().0;
        let z = Array2::from_shape_fn((nc, n), |_| {
            let (re, im): (f64, f64) = (StandardNormal.sample(rng), StandardNormal.sample(rng));
            C32::new(re as f32, im as f32)
        });
        a.dot(&z)
    }

    #[test]
    fn whitened_noise_is_white_at_the_mean_channel_level() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        // Four channels: unequal levels and strong coupling between the first two.
        let a = Array2::from_shape_fn((4, 4), |(i, j)| match (i, j) {
            _ if i == j => C32::new(1.0 + i as f32 * 0.5, 0.0),
            (1, 0) => C32::new(0.8, 0.3),
            (3, 2) => C32::new(-0.2, 0.4),
            _ => C32::new(0.0, 0.0),
        });
        let wh = Whitening::from_noise(correlated(&a, 40_000, &mut rng).view()).unwrap();
        assert!(wh.condition() > 4.0, "condition {}", wh.condition());
        // Fresh noise from the same array, whitened: covariance s2 I within sampling error.
        let fresh = correlated(&a, 40_000, &mut rng);
        let mut k = Array3::from_shape_fn((4, 1, 40_000), |(c, _, s)| fresh[(c, s)]);
        wh.apply(&mut k).unwrap();
        let s2 = 2.0 * wh.noise_std().powi(2);
        for i in 0..4 {
            for j in 0..4 {
                let cov: C32 = (0..40_000)
                    .map(|s| k[(i, 0, s)] * k[(j, 0, s)].conj())
                    .sum::<C32>()
                    / 40_000.0;
                let want = if i == j { s2 } else { 0.0 };
                assert!(
                    (cov.re as f64 - want).abs() < 0.03 * s2 && (cov.im as f64).abs() < 0.03 * s2,
                    "covariance ({i}, {j}) = {cov} against {want}"
                );
            }
        }
        // The mean channel level is the input's: trace(A A^H) / 4 = 2 (1 + ...) / 4 per complex
        // sample, i.e. twice the squared std per real component.
        let want: f64 = a.iter().map(|v| 2.0 * v.norm_sqr() as f64).sum::<f64>() / 4.0;
        assert!((s2 / want - 1.0).abs() < 0.03, "level {s2} against {want}");
    }

    #[test]
    fn a_silent_channel_is_refused() {
        let mut noise = Array2::from_shape_fn((3, 100), |(c, s)| {
            C32::new(
                ((c * 7 + s * 13) % 11) as f32 - 5.0,
                ((s * 3) % 5) as f32 - 2.0,
            )
        });
        noise.row_mut(1).fill(C32::new(0.0, 0.0));
        let e = Whitening::from_noise(noise.view()).unwrap_err().to_string();
        assert!(e.contains("not positive definite"), "{e}");
        assert!(Whitening::from_noise(noise.slice(ndarray::s![.., ..2]).view()).is_err());
    }
}
