//! Shared pieces of the sampler tests: a small 2-coil k-space problem with a complex Gaussian
//! image prior, and dense linear algebra written independently of the library's prior.
#![allow(dead_code)]

use msm::mask::{Acs, PartialKind};
use msm::sampler::{GaussianPrior, C64};
use msm::sense::{Operator, Sense};
use msm::{coils, C32};
use nalgebra::{DMatrix, DVector};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Image side of the test problem.
pub const N: usize = 8;

/// The test problem: 2-coil birdcage SENSE on 8x8, a smooth complex mean and a squared-
/// exponential covariance (correlation length 1.5 pixels) plus a small white part.
pub struct Problem {
    pub op: Sense,
    pub mean: Array2<C32>,
    pub cov: DMatrix<C64>,
}

pub fn problem() -> Problem {
    let maps = coils::birdcage(2, N, N).unwrap();
    let op = Sense::new(maps).unwrap();
    let mean = Array2::from_shape_fn((N, N), |(i, j)| {
        let (y, x) = (i as f32 - 3.5, j as f32 - 3.5);
        let r2 = (x * x + y * y) / 8.0;
        C32::from_polar((-r2).exp(), 0.3 * x / 4.0)
    });
    let n = N * N;
    let cov = DMatrix::from_fn(n, n, |p, q| {
        let (pi, pj) = ((p / N) as f64, (p % N) as f64);
        let (qi, qj) = ((q / N) as f64, (q % N) as f64);
        let d2 = (pi - qi).powi(2) + (pj - qj).powi(2);
        let white = if p == q { 0.01 } else { 0.0 };
        C64::new(0.25 * (-d2 / (2.0 * 1.5f64.powi(2))).exp() + white, 0.0)
    });
    Problem { op, mean, cov }
}

impl Problem {
    pub fn prior(&self) -> GaussianPrior {
        GaussianPrior::new(&self.op, &self.mean, self.cov.clone()).unwrap()
    }
}

/// Partial masks of the tests: 4 of 8 columns (2 ACS + 2 drawn), 15 possible masks.
pub fn kind() -> PartialKind {
    PartialKind::Columns {
        width: N,
        accel: 2.0,
        acs: Acs::Lines(2),
    }
}

/// Partial masks of the theorem test: 3 of 8 columns (2 ACS + 1 drawn), 6 possible masks,
/// so that w = 1, 2, 4 leave columns uncovered and w = 8 covers all.
pub fn narrow_kind() -> PartialKind {
    PartialKind::Columns {
        width: N,
        accel: 8.0 / 3.0,
        acs: Acs::Lines(2),
    }
}

/// Dense forward matrix of `op`, built here by applying it to unit images.
pub fn dense(op: &dyn Operator) -> DMatrix<C64> {
    let (h, w) = op.image_shape();
    let n = h * w;
    let m = op.coils() * n;
    let mut a = DMatrix::<C64>::zeros(m, n);
    for p in 0..n {
        let mut e = Array2::<C32>::zeros((h, w));
        e[(p / w, p % w)] = C32::new(1.0, 0.0);
        for (r, v) in op.forward(e.view(), None).iter().enumerate() {
            a[(r, p)] = C64::new(v.re as f64, v.im as f64);
        }
    }
    a
}

pub fn to_vec(x: &Array2<C32>) -> DVector<C64> {
    DVector::from_iterator(
        x.len(),
        x.iter().map(|v| C64::new(v.re as f64, v.im as f64)),
    )
}

/// Draws `x ~ CN(mean, cov)` with a Cholesky factor.
pub fn draw_prior(p: &Problem, rng: &mut ChaCha8Rng) -> DVector<C64> {
    let l = p.cov.clone().cholesky().unwrap().l();
    let s = std::f64::consts::FRAC_1_SQRT_2;
    let xi = DVector::from_fn(N * N, |_, _| {
        C64::new(
            rng.sample::<f64, _>(StandardNormal) * s,
            rng.sample::<f64, _>(StandardNormal) * s,
        )
    });
    to_vec(&p.mean) + l * xi
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Sample mean and covariance `E[(x - m)(x - m)^H]` (1/(n-1)) of images.
pub fn moments(xs: &[Array2<C32>]) -> (DVector<C64>, DMatrix<C64>) {
    let n = xs.len() as f64;
    let vs: Vec<DVector<C64>> = xs.iter().map(to_vec).collect();
    let d = vs[0].len();
    let mut m = DVector::<C64>::zeros(d);
    for v in &vs {
        m += v;
    }
    m /= C64::new(n, 0.0);
    let mut c = DMatrix::<C64>::zeros(d, d);
    for v in &vs {
        let e = v - &m;
        c += &e * e.adjoint();
    }
    c /= C64::new(n - 1.0, 0.0);
    (m, c)
}

/// Exact posterior mean `E[x | B x + noise = y_rows]` for `rows` of the dense forward matrix,
/// noise complex with std `noise_std` on each part: the `m x m` form.
pub fn posterior_mean(
    p: &Problem,
    rows: &[usize],
    y_rows: &DVector<C64>,
    noise_std: f64,
) -> DVector<C64> {
    let a = dense(&p.op);
    let b = DMatrix::from_fn(rows.len(), a.ncols(), |i, j| a[(rows[i], j)]);
    let mu = to_vec(&p.mean);
    let mut gram = &b * &p.cov * b.adjoint();
    for i in 0..rows.len() {
        gram[(i, i)] += C64::new(2.0 * noise_std * noise_std, 0.0);
    }
    let gain = &p.cov * b.adjoint() * gram.try_inverse().unwrap();
    &mu + gain * (y_rows - &b * &mu)
}

/// Exact posterior covariance `Cov[x | B x + noise = y_rows]` (`E[e e^H]`) for `rows` of the
/// dense forward matrix, noise as in [`posterior_mean`]; it does not depend on the data.
pub fn posterior_cov(p: &Problem, rows: &[usize], noise_std: f64) -> DMatrix<C64> {
    let a = dense(&p.op);
    let b = DMatrix::from_fn(rows.len(), a.ncols(), |i, j| a[(rows[i], j)]);
    let mut gram = &b * &p.cov * b.adjoint();
    for i in 0..rows.len() {
        gram[(i, i)] += C64::new(2.0 * noise_std * noise_std, 0.0);
    }
    let gain = &p.cov * b.adjoint() * gram.try_inverse().unwrap();
    &p.cov - gain * &b * &p.cov
}

/// A real affine map on the packed `[re; im]` vector equivalent to the complex map
/// `v -> l v + c`: returns the `2n x 2n` matrix (row-major) and the bias.
pub fn real_affine(l: &DMatrix<C64>, c: &DVector<C64>) -> (Vec<f32>, Vec<f32>) {
    let n = c.len();
    let mut m = vec![0f32; 4 * n * n];
    for i in 0..n {
        for j in 0..n {
            let v = l[(i, j)];
            m[i * 2 * n + j] = v.re as f32;
            m[i * 2 * n + n + j] = -v.im as f32;
            m[(n + i) * 2 * n + j] = v.im as f32;
            m[(n + i) * 2 * n + n + j] = v.re as f32;
        }
    }
    let mut b = vec![0f32; 2 * n];
    for i in 0..n {
        b[i] = c[i].re as f32;
        b[n + i] = c[i].im as f32;
    }
    (m, b)
}
