//! The exact partial denoiser of a complex Gaussian image prior, for tests: with it the true
//! partial scores, the exact posterior and the exact samplers are known in closed form.
//!
//! Prior: `x ~ CN(mu, Sigma)` (circular: `E[(x - mu)(x - mu)^H] = Sigma`). At level `t` the
//! sampler's state is `z_t = sqrt(ab) A x + sqrt(1 - ab) n` with `n` complex of `E|n|^2 = 2`.
//! Writing `B = S A` for the measured rows, `y' = S z_t / sqrt(ab) = B x + sigma_t S n` with
//! `sigma_t^2 = (1 - ab) / ab`, so the noise covariance is `c I`, `c = 2 sigma_t^2`. Gaussian
//! conditioning with the push-through identity gives
//! `x0 = E[x | S z_t] = mu + (Sigma G + c I)^{-1} Sigma (u / sqrt(ab) - G mu)`, with
//! `G = B^H B` and `u = A_S^H z_t`, an affine map of `u`: `x0 = K u + b`,
//! `K = (Sigma G + c I)^{-1} Sigma / sqrt(ab)`, `b = c (Sigma G + c I)^{-1} mu`.
//! The noise image is `eps = (u / sqrt(ab) - x0) / sigma_t`, so `x0` is recovered from it by
//! the network formula unchanged.
//!
//! The maps are solved once per (mask, timestep) in f64 with nalgebra's LU and cached.

use super::partial::{Denoised, PartialDenoiser};
use crate::mask::Mask;
use crate::schedule::Schedule;
use crate::sense::Operator;
use crate::{Error, Result, C32};
use nalgebra::{Complex, DMatrix, DVector};
use ndarray::{Array2, Array3};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Double-precision complex number of the dense solves.
pub type C64 = Complex<f64>;

/// Largest image (pixels) the dense Gaussian prior accepts.
pub const MAX_PIXELS: usize = 4096;

/// The affine denoiser `x0 = K u + b` of one mask and timestep.
#[derive(Debug)]
struct Affine {
    k: DMatrix<C64>,
    b: DVector<C64>,
}

type CacheKey = (usize, Vec<bool>);

/// The exact partial denoiser of a complex Gaussian image prior `CN(mean, cov)` for one
/// measurement operator (small problems: the operator is held as a dense matrix).
#[derive(Debug)]
pub struct GaussianPrior {
    mean: DVector<C64>,
    cov: DMatrix<C64>,
    /// The full forward operator `A = F C` as a dense `(coils H W) x (H W)` matrix.
    a: DMatrix<C64>,
    shape: (usize, usize, usize),
    cache: Mutex<HashMap<CacheKey, Arc<Affine>>>,
}

/// Converts an image to a vector (row-major).
pub fn image_to_vec(x: &Array2<C32>) -> DVector<C64> {
    DVector::from_iterator(
        x.len(),
        x.iter().map(|v| C64::new(v.re as f64, v.im as f64)),
    )
}

/// Converts a row-major vector back to an image of `shape`.
pub fn vec_to_image(v: &DVector<C64>, shape: (usize, usize)) -> Array2<C32> {
    Array2::from_shape_fn(shape, |(i, j)| {
        let c = v[i * shape.1 + j];
        C32::new(c.re as f32, c.im as f32)
    })
}

/// The dense matrix of `op`'s full forward operator, `(coils H W) x (H W)`, built by applying
/// it to unit images.
pub fn dense_forward(op: &dyn Operator) -> DMatrix<C64> {
    let (h, w) = op.image_shape();
    let (nc, _, _) = op.measurement_shape();
    let n = h * w;
    let mut a = DMatrix::<C64>::zeros(nc * n, n);
    let mut e = Array2::<C32>::zeros((h, w));
    for p in 0..n {
        e[(p / w, p % w)] = C32::new(1.0, 0.0);
        let col = op.forward(e.view(), None);
        for (r, v) in col.iter().enumerate() {
            a[(r, p)] = C64::new(v.re as f64, v.im as f64);
        }
        e[(p / w, p % w)] = C32::new(0.0, 0.0);
    }
    a
}

impl GaussianPrior {
    /// The prior `CN(mean, cov)` for images of `op`'s shape; `cov` is `(H W) x (H W)`
    /// Hermitian positive semi-definite, pixels in row-major order.
    pub fn new(op: &dyn Operator, mean: &Array2<C32>, cov: DMatrix<C64>) -> Result<Self> {
        let (h, w) = op.image_shape();
        let n = h * w;
        if n > MAX_PIXELS {
            return Err(Error::invalid(format!(
                "the dense Gaussian prior handles at most {MAX_PIXELS} pixels, got {h}x{w}"
            )));
        }
        if mean.dim() != (h, w) {
            return Err(Error::invalid(format!(
                "the prior mean is {}x{} but the images are {h}x{w}",
                mean.dim().0,
                mean.dim().1
            )));
        }
        if cov.shape() != (n, n) {
            return Err(Error::invalid(format!(
                "the prior covariance is {}x{} but the images have {n} pixels",
                cov.nrows(),
                cov.ncols()
            )));
        }
        let scale = cov.iter().fold(0.0f64, |m, v| m.max(v.norm()));
        let asym = (&cov - cov.adjoint())
            .iter()
            .fold(0.0f64, |m, v| m.max(v.norm()));
        if !scale.is_finite() || asym > 1e-9 * scale.max(1.0) {
            return Err(Error::invalid(
                "the prior covariance must be finite and Hermitian",
            ));
        }
        Ok(GaussianPrior {
            mean: image_to_vec(mean),
            cov,
            a: dense_forward(op),
            shape: op.measurement_shape(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The prior mean as a vector.
    pub fn mean(&self) -> &DVector<C64> {
        &self.mean
    }

    /// The prior covariance.
    pub fn cov(&self) -> &DMatrix<C64> {
        &self.cov
    }

    /// The dense full forward operator `A` the prior was built with.
    pub fn forward_matrix(&self) -> &DMatrix<C64> {
        &self.a
    }

    fn affine(&self, mask: &Mask, t: usize, schedule: &Schedule) -> Result<Arc<Affine>> {
        let (_, h, w) = self.shape;
        mask.check_shape(h, w)?;
        let pattern: Vec<bool> = mask.to_pattern(h).iter().copied().collect();
        let key = (t, pattern);
        if let Some(a) = self.cache.lock().expect("cache lock").get(&key) {
            return Ok(a.clone());
        }
        let affine = Arc::new(self.solve(&key.1, t, schedule)?);
        self.cache
            .lock()
            .expect("cache lock")
            .insert(key, affine.clone());
        Ok(affine)
    }

    fn solve(&self, pattern: &[bool], t: usize, schedule: &Schedule) -> Result<Affine> {
        let (nc, h, w) = self.shape;
        let n = h * w;
        // G = B^H B with B the rows of A on the measured entries (every coil).
        let mut g = DMatrix::<C64>::zeros(n, n);
        for c in 0..nc {
            for (p, &keep) in pattern.iter().enumerate() {
                if keep {
                    let row = self.a.row(c * n + p);
                    g += row.adjoint() * row;
                }
            }
        }
        let ab = schedule.alpha_bar(t);
        let c = 2.0 * (1.0 - ab) / ab;
        let mut lhs = &self.cov * &g;
        for i in 0..n {
            lhs[(i, i)] += C64::new(c, 0.0);
        }
        let lu = lhs.lu();
        let k = lu.solve(&self.cov).ok_or_else(|| {
            Error::invalid(format!(
                "the Gaussian prior's system is singular at t = {t}"
            ))
        })? / C64::new(ab.sqrt(), 0.0);
        let b = lu.solve(&self.mean).ok_or_else(|| {
            Error::invalid(format!(
                "the Gaussian prior's system is singular at t = {t}"
            ))
        })? * C64::new(c, 0.0);
        Ok(Affine { k, b })
    }

    /// The noise image as an affine map of the partial zero-filled image:
    /// `eps = L u + l` for `mask` at timestep `t` (what a network trained on this prior would
    /// compute there).
    pub fn eps_affine(
        &self,
        mask: &Mask,
        t: usize,
        schedule: &Schedule,
    ) -> Result<(DMatrix<C64>, DVector<C64>)> {
        let aff = self.affine(mask, t, schedule)?;
        let ab = schedule.alpha_bar(t);
        let sigma = schedule.sigma(t);
        let n = aff.b.len();
        let mut l = -&aff.k;
        for i in 0..n {
            l[(i, i)] += C64::new(1.0 / ab.sqrt(), 0.0);
        }
        Ok((l / C64::new(sigma, 0.0), -&aff.b / C64::new(sigma, 0.0)))
    }
}

impl PartialDenoiser for GaussianPrior {
    fn check(&self, op: &dyn Operator) -> Result<()> {
        if op.measurement_shape() != self.shape {
            let (c, h, w) = op.measurement_shape();
            let (pc, ph, pw) = self.shape;
            return Err(Error::invalid(format!(
                "the Gaussian prior was built for {pc} coils of {ph}x{pw} but the operator has \
                 {c} coils of {h}x{w}"
            )));
        }
        // The operator must be the one the prior holds: compare on a fixed probe image.
        let (h, w) = op.image_shape();
        let probe = Array2::from_shape_fn((h, w), |(i, j)| {
            let k = (i * w + j) as f32;
            C32::new((0.7 * k).sin(), (1.3 * k + 0.5).cos())
        });
        let got = op.forward(probe.view(), None);
        let want = &self.a * image_to_vec(&probe);
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for (g, e) in got.iter().zip(want.iter()) {
            diff += (C64::new(g.re as f64, g.im as f64) - e).norm_sqr();
            norm += e.norm_sqr();
        }
        if diff > 1e-8 * norm.max(1e-30) {
            return Err(Error::invalid(
                "the Gaussian prior was built for a different operator (coil maps differ)",
            ));
        }
        Ok(())
    }

    fn denoise(
        &self,
        op: &dyn Operator,
        z: &Array3<C32>,
        mask: &Mask,
        t: usize,
        schedule: &Schedule,
    ) -> Result<Denoised> {
        let u = op.adjoint(z.view(), Some(mask));
        let start = Instant::now();
        let aff = self.affine(mask, t, schedule)?;
        let uv = image_to_vec(&u);
        let x0 = &aff.k * &uv + &aff.b;
        let ab = schedule.alpha_bar(t);
        let sigma = schedule.sigma(t);
        let eps = (uv / C64::new(ab.sqrt(), 0.0) - &x0) / C64::new(sigma, 0.0);
        let network = start.elapsed();
        Ok(Denoised {
            x0: vec_to_image(&x0, u.dim()),
            eps: vec_to_image(&eps, u.dim()),
            network,
        })
    }
}
