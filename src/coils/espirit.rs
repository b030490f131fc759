//! ESPIRiT coil sensitivity maps (Uecker et al., "ESPIRiT - an eigenvalue approach to
//! autocalibrating parallel MRI: where SENSE meets GRAPPA", MRM 71:990, 2014), computed as BART's
//! `ecalib -m1` computes them, with BART's defaults (kernel 6x6, calibration region up to 24x24,
//! threshold 0.001, crop 0.8).
//!
//! # Algorithm
//! 1. The calibration region is found as [`super::calib`] describes.
//! 2. Calibration matrix: every `k x k` patch of the region (all coils) is one row. Its right
//!    singular vectors come from the Hermitian eigen-decomposition of the patch covariance
//!    `sum_p a_p a_p^H` (`N = coils k^2` square, in `f64`, with nalgebra), as BART does. The
//!    vectors whose singular value `sigma_j` satisfies `sigma_j / sigma_0 > sqrt(threshold)`
//!    span the signal subspace (BART's rule for `-t`).
//! 3. With `P` the projection onto that subspace, every k-space point is the average over the
//!    `k^2` patches that contain it of its projection:
//!    `y_c(q) = sum_{c', e} g_{c c'}(e) y_{c'}(q + e)` with
//!    `g_{c c'}(e) = k^-2 sum_d P[(c, d), (c', d + e)]` over the kernel offsets `d`, `d + e`.
//!    In image space this is, at every pixel `x`, the Hermitian `coils x coils` matrix
//!    `G(x) = sum_e g(e) exp(-2 pi i e.x / N)`, and the coil sensitivities at `x` are its
//!    eigenvector of eigenvalue 1. `G` is a trigonometric polynomial with offsets
//!    `|e| < k`, so placing `g` on the image grid and taking one centred FFT per coil pair gives
//!    it exactly (BART computes it on a `2k x 2k` grid and sinc-interpolates, which is the same
//!    polynomial).
//! 4. Per pixel (in parallel on rayon), the dominant eigenvector of `G(x)` is found by power
//!    iteration as BART's `orthiter` finds it: from the first coil's unit vector, at most 30
//!    steps (stopping early once converged), eigenvalue `|G v|`; it has unit norm over the coils.
//!    Where the eigenvalue is at most `crop` the map is zero (BART's hard crop).
//! 5. Phase: eigenvectors are defined up to a phase per pixel. As BART does (`fixphase2` with
//!    the first principal component of the calibration data), the phase is chosen so that the
//!    projection `u^H s(x)` of the map onto the dominant coil combination `u` of the calibration
//!    data (the leading eigenvector of `sum y y^H` over the calibration samples) is real and
//!    positive. This gives maps whose phase is smooth and follows the coils' common phase.
//!
//! `tests/espirit.rs` checks the result against BART 0.8 `ecalib -m1` on the same k-space
//! (same calibration region and kernel count, eigenvalue maps within 1e-5, maps equal up to a
//! global phase) and against the true maps of a simulation.

use super::calib::{calibration_region, check_kspace, CalRegion};
use crate::fft::Fft2;
use crate::mask::Mask;
use crate::{Error, Result, C32};
use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{Array2, Array3, ArrayView3, Axis};
use rayon::prelude::*;
use rustfft::num_complex::Complex64;

/// Options of [`espirit`]; the defaults are BART's `ecalib` defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EspiritOptions {
    /// Kernel size `k` (a `k x k` kernel; BART `-k`, default 6).
    pub kernel: usize,
    /// Largest side of the calibration region (BART `-r`, default 24); the region is further
    /// limited to the fully sampled centre.
    pub cal: usize,
    /// Singular vectors with `sigma_j / sigma_0 > sqrt(threshold)` are kept (BART `-t`,
    /// default 0.001).
    pub threshold: f32,
    /// Maps are zero where the largest eigenvalue of the pixel's matrix is at most `crop`
    /// (BART `-c`, default 0.8).
    pub crop: f32,
    /// The per-pixel power iteration stops when `|G v - (v^H G v) v| <= tolerance |G v|`
    /// (default 1e-5) ...
    pub tolerance: f32,
    /// ... or after this many iterations (default 30, BART's number of orthogonal iterations).
    /// Where the two largest eigenvalues are close (typically at the edge of the field of view,
    /// where the object wraps around) 30 iterations do not converge, and BART's maps there are
    /// the unconverged iterate; a larger number gives the dominant eigenvector.
    pub max_iterations: usize,
}

impl Default for EspiritOptions {
    fn default() -> Self {
        EspiritOptions {
            kernel: 6,
            cal: 24,
            threshold: 0.001,
            crop: 0.8,
            tolerance: 1e-5,
            max_iterations: 30,
        }
    }
}

/// The result of [`espirit_full`]: the maps and what they were computed from.
#[derive(Clone, Debug)]
pub struct Espirit {
    /// Coil maps `(coils, height, width)`, unit norm over the coils where not cropped, zero
    /// where cropped.
    pub maps: Array3<C32>,
    /// The largest eigenvalue of each pixel's matrix `(height, width)` (BART's eigenvalue map),
    /// in `[0, 1]`.
    pub eigenvalues: Array2<f32>,
    /// The calibration region used.
    pub region: CalRegion,
    /// Number of kept singular vectors (kernels).
    pub kernels: usize,
    /// All singular values of the calibration matrix, largest first.
    pub singular_values: Vec<f64>,
}

/// ESPIRiT coil maps `(coils, height, width)` from multi-coil k-space `(coils, height, width)`.
/// `mask` (if given) says which entries were sampled; without it, entries that are zero in all
/// coils count as not sampled. See the module documentation for the algorithm.
///
/// Errors: zero coils, an empty grid, a mask of another grid, NaN or Inf in the k-space,
/// invalid options, a calibration region smaller than the kernel (the message gives both
/// sizes), and a calibration region without signal.
pub fn espirit(
    kspace: ArrayView3<C32>,
    mask: Option<&Mask>,
    opts: &EspiritOptions,
) -> Result<Array3<C32>> {
    Ok(espirit_full(kspace, mask, opts)?.maps)
}

/// [`espirit`] returning the eigenvalue map, the calibration region and the singular values
/// as well.
pub fn espirit_full(
    kspace: ArrayView3<C32>,
    mask: Option<&Mask>,
    opts: &EspiritOptions,
) -> Result<Espirit> {
    check_options(opts)?;
    check_kspace(kspace, mask)?;
    let region = calibration_region(kspace, mask, opts.cal)?;
    let k = opts.kernel;
    if region.height() < k || region.width() < k {
        return Err(Error::invalid(format!(
            "the fully sampled calibration region is {}x{} (height x width) but the ESPIRiT \
             kernel is {k}x{k}: the region must be at least as large as the kernel in both \
             directions (sample more ACS lines, or use a smaller kernel)",
            region.height(),
            region.width()
        )));
    }
    let nc = kspace.dim().0;
    let cal = kspace
        .slice(ndarray::s![.., region.rows.clone(), region.cols.clone()])
        .to_owned();
    let (values, vectors) = patch_eigen(&cal, k);
    let sigma: Vec<f64> = values.iter().map(|&v| v.max(0.0).sqrt()).collect();
    if sigma[0].is_nan() || sigma[0] <= 0.0 {
        return Err(Error::invalid(format!(
            "the calibration region (rows {:?}, columns {:?}) holds no signal: all its k-space \
             values are zero",
            region.rows, region.cols
        )));
    }
    let keep = sigma
        .iter()
        .take_while(|&&s| s / sigma[0] > (opts.threshold as f64).sqrt())
        .count();
    if keep == 0 {
        return Err(Error::invalid(format!(
            "no singular vector passes the threshold {} (need sigma / sigma_max > {})",
            opts.threshold,
            (opts.threshold as f64).sqrt()
        )));
    }
    let (_, h, w) = kspace.dim();
    let cov = image_matrices(&vectors, keep, nc, k, h, w);
    let rot = principal_coil_combination(&cal);
    let (maps, eigenvalues) = pixel_eigenvectors(&cov, nc, h, w, &rot, opts);
    Ok(Espirit {
        maps,
        eigenvalues,
        region,
        kernels: keep,
        singular_values: sigma,
    })
}

fn check_options(opts: &EspiritOptions) -> Result<()> {
    if opts.kernel == 0 {
        return Err(Error::invalid("the ESPIRiT kernel size must be at least 1"));
    }
    if !(opts.threshold.is_finite() && (0.0..1.0).contains(&opts.threshold)) {
        return Err(Error::invalid(format!(
            "the ESPIRiT singular value threshold must be in [0, 1), got {}",
            opts.threshold
        )));
    }
    if !(opts.crop.is_finite() && (0.0..1.0).contains(&opts.crop)) {
        return Err(Error::invalid(format!(
            "the ESPIRiT crop threshold must be in [0, 1), got {}",
            opts.crop
        )));
    }
    if !(opts.tolerance.is_finite() && opts.tolerance > 0.0) || opts.max_iterations == 0 {
        return Err(Error::invalid(format!(
            "the power iteration needs a tolerance > 0 and at least one iteration, got {} and {}",
            opts.tolerance, opts.max_iterations
        )));
    }
    Ok(())
}

/// Index of kernel entry `(coil, dy, dx)` in a patch vector.
#[inline]
fn patch_index(c: usize, dy: usize, dx: usize, k: usize) -> usize {
    (c * k + dy) * k + dx
}

/// Eigenvalues (descending) and eigenvectors (columns, same order) of the patch covariance
/// `sum_p a_p a_p^H` of the calibration data `(coils, rows, cols)` with `k x k` patches.
fn patch_eigen(cal: &Array3<C32>, k: usize) -> (Vec<f64>, DMatrix<Complex64>) {
    let (nc, rh, rw) = cal.dim();
    let n = nc * k * k;
    let (py, px) = (rh - k + 1, rw - k + 1);
    // Rows of `a` are the conjugated patches, so that a^H a = sum_p a_p a_p^H.
    let mut a = DMatrix::<Complex64>::zeros(py * px, n);
    for y in 0..py {
        for x in 0..px {
            let row = y * px + x;
            for c in 0..nc {
                for dy in 0..k {
                    for dx in 0..k {
                        let v = cal[(c, y + dy, x + dx)];
                        a[(row, patch_index(c, dy, dx, k))] =
                            Complex64::new(v.re as f64, -(v.im as f64));
                    }
                }
            }
        }
    }
    let cov = hermitian_gram(&a);
    let eig = SymmetricEigen::new(cov);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| eig.eigenvalues[j].total_cmp(&eig.eigenvalues[i]));
    let values = order.iter().map(|&i| eig.eigenvalues[i]).collect();
    let vectors = DMatrix::from_fn(n, n, |r, j| eig.eigenvectors[(r, order[j])]);
    (values, vectors)
}

/// `a^H a` for a tall matrix, computed column pair by column pair in parallel (only the upper
/// triangle, mirrored).
fn hermitian_gram(a: &DMatrix<Complex64>) -> DMatrix<Complex64> {
    let n = a.ncols();
    let cols: Vec<&[Complex64]> = (0..n)
        .map(|j| {
            let start = j * a.nrows();
            &a.as_slice()[start..start + a.nrows()]
        })
        .collect();
    let upper: Vec<Vec<Complex64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            (i..n)
                .map(|j| {
                    cols[i]
                        .iter()
                        .zip(cols[j])
                        .fold(Complex64::new(0.0, 0.0), |acc, (x, y)| acc + x.conj() * y)
                })
                .collect()
        })
        .collect();
    DMatrix::from_fn(n, n, |r, c| {
        if r <= c {
            upper[r][c - r]
        } else {
            upper[c][r - c].conj()
        }
    })
}

/// The image-domain matrices `G(x)` for the first `keep` eigenvectors: an array
/// `(pairs, height, width)` holding `G_{c c'}` for `c <= c'` in the order of [`pair_index`].
fn image_matrices(
    vectors: &DMatrix<Complex64>,
    keep: usize,
    nc: usize,
    k: usize,
    h: usize,
    w: usize,
) -> Array3<C32> {
    // Projection P = V V^H onto the kept subspace.
    let v = vectors.columns(0, keep);
    let p = v * v.adjoint();
    let m = (k * k) as f64;
    let span = 2 * k - 1;
    let pairs = nc * (nc + 1) / 2;
    let mut cov = Array3::<C32>::zeros((pairs, h, w));
    cov.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(pair, mut img)| {
            let (c, c2) = pair_coils(pair, nc);
            for ey in 0..span {
                let ey_s = ey as isize - (k as isize - 1);
                for ex in 0..span {
                    let ex_s = ex as isize - (k as isize - 1);
                    let mut g = Complex64::new(0.0, 0.0);
                    for dy in 0..k {
                        let dy2 = dy as isize + ey_s;
                        if dy2 < 0 || dy2 >= k as isize {
                            continue;
                        }
                        for dx in 0..k {
                            let dx2 = dx as isize + ex_s;
                            if dx2 < 0 || dx2 >= k as isize {
                                continue;
                            }
                            g += p[(
                                patch_index(c, dy, dx, k),
                                patch_index(c2, dy2 as usize, dx2 as usize, k),
                            )];
                        }
                    }
                    let y = (h as isize / 2 + ey_s).rem_euclid(h as isize) as usize;
                    let x = (w as isize / 2 + ex_s).rem_euclid(w as isize) as usize;
                    img[(y, x)] += C32::new((g.re / m) as f32, (g.im / m) as f32);
                }
            }
        });
    // G(x) = sum_e g(e) exp(-2 pi i e.x / N): a centred forward DFT without normalisation.
    let fft = Fft2::new(h, w);
    fft.forward_coils(&mut cov);
    let scale = ((h * w) as f32).sqrt();
    cov.mapv_inplace(|v| v * scale);
    cov
}

/// The coil pair `(c, c')`, `c <= c'`, stored at index `pair` (row-major upper triangle).
fn pair_coils(pair: usize, nc: usize) -> (usize, usize) {
    let mut rest = pair;
    for c in 0..nc {
        let len = nc - c;
        if rest < len {
            return (c, c + rest);
        }
        rest -= len;
    }
    unreachable!("pair index {pair} out of range for {nc} coils")
}

/// Index of the pair `(c, c2)` with `c <= c2` (row-major upper triangle).
fn pair_index(c: usize, c2: usize, nc: usize) -> usize {
    c * nc - c * (c + 1) / 2 + c2
}

/// The leading eigenvector `u` of the coil covariance `sum y y^H` of the calibration data.
fn principal_coil_combination(cal: &Array3<C32>) -> Vec<C32> {
    let nc = cal.dim().0;
    let coils: Vec<Vec<Complex64>> = cal
        .outer_iter()
        .map(|c| {
            c.iter()
                .map(|v| Complex64::new(v.re as f64, v.im as f64))
                .collect()
        })
        .collect();
    let r = DMatrix::<Complex64>::from_fn(nc, nc, |i, j| {
        coils[i]
            .iter()
            .zip(&coils[j])
            .fold(Complex64::new(0.0, 0.0), |acc, (a, b)| acc + a * b.conj())
    });
    let eig = SymmetricEigen::new(r);
    let best = (0..nc)
        .max_by(|&i, &j| eig.eigenvalues[i].total_cmp(&eig.eigenvalues[j]))
        .unwrap_or(0);
    (0..nc)
        .map(|c| {
            let v = eig.eigenvectors[(c, best)];
            C32::new(v.re as f32, v.im as f32)
        })
        .collect()
}

/// Per-pixel dominant eigenvectors of `G(x)`, cropped and phase-fixed, and the eigenvalues.
fn pixel_eigenvectors(
    cov: &Array3<C32>,
    nc: usize,
    h: usize,
    w: usize,
    rot: &[C32],
    opts: &EspiritOptions,
) -> (Array3<C32>, Array2<f32>) {
    let mut vecs = vec![C32::new(0.0, 0.0); h * w * nc];
    let mut vals = vec![0.0f32; h * w];
    let cov = cov.as_slice().expect("fresh array is contiguous");
    let plane = h * w;
    vecs.par_chunks_mut(w * nc)
        .zip(vals.par_chunks_mut(w))
        .enumerate()
        .for_each(|(y, (vrow, lrow))| {
            let mut g = vec![C32::new(0.0, 0.0); nc * nc];
            let mut tmp = vec![C32::new(0.0, 0.0); nc];
            for x in 0..w {
                let at = y * w + x;
                for c in 0..nc {
                    for c2 in c..nc {
                        let v = cov[pair_index(c, c2, nc) * plane + at];
                        g[c * nc + c2] = v;
                        g[c2 * nc + c] = v.conj();
                    }
                }
                let v = &mut vrow[x * nc..(x + 1) * nc];
                let lambda = dominant_eigenvector(&g, nc, v, &mut tmp, opts);
                lrow[x] = lambda;
                if lambda <= opts.crop {
                    v.fill(C32::new(0.0, 0.0));
                    continue;
                }
                let z: C32 = rot.iter().zip(v.iter()).map(|(u, s)| u.conj() * s).sum();
                let mag = z.norm();
                if mag > 0.0 {
                    let phase = z.conj() / mag;
                    v.iter_mut().for_each(|s| *s *= phase);
                }
            }
        });
    let maps = Array3::from_shape_fn((nc, h, w), |(c, y, x)| vecs[(y * w + x) * nc + c]);
    let eigenvalues = Array2::from_shape_vec((h, w), vals).expect("h * w values");
    (maps, eigenvalues)
}

/// Power iteration for the dominant eigenpair of the Hermitian positive semi-definite `n x n`
/// matrix `g` (row-major), as BART's `orthiter` with one vector: start from the first unit
/// vector, multiply and normalise, at most `opts.max_iterations` times, stopping early once
/// `|G v - (v^H G v) v| <= opts.tolerance |G v|`. Writes the unit eigenvector to `v` and returns
/// the eigenvalue estimate `|G v|` of the last step (0, with `v` the first unit vector, for a
/// matrix that maps it to zero).
pub(crate) fn dominant_eigenvector(
    g: &[C32],
    n: usize,
    v: &mut [C32],
    tmp: &mut [C32],
    opts: &EspiritOptions,
) -> f32 {
    v.fill(C32::new(0.0, 0.0));
    v[0] = C32::new(1.0, 0.0);
    let mut lambda = 0.0;
    for _ in 0..opts.max_iterations {
        for (r, t) in tmp.iter_mut().enumerate() {
            *t = g[r * n..(r + 1) * n]
                .iter()
                .zip(v.iter())
                .map(|(a, b)| a * b)
                .sum();
        }
        lambda = tmp.iter().map(|x| x.norm_sqr()).sum::<f32>().sqrt();
        if lambda.is_nan() || lambda <= 0.0 {
            return 0.0;
        }
        let rayleigh: C32 = v.iter().zip(tmp.iter()).map(|(a, b)| a.conj() * b).sum();
        let residual = tmp
            .iter()
            .zip(v.iter())
            .map(|(t, s)| (t - s * rayleigh).norm_sqr())
            .sum::<f32>()
            .sqrt();
        v.iter_mut()
            .zip(tmp.iter())
            .for_each(|(s, t)| *s = t / lambda);
        if residual <= opts.tolerance * lambda {
            break;
        }
    }
    lambda
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn pair_indexing_round_trips() {
        for nc in 1..6 {
            for pair in 0..nc * (nc + 1) / 2 {
                let (c, c2) = pair_coils(pair, nc);
                assert!(c <= c2 && c2 < nc);
                assert_eq!(pair_index(c, c2, nc), pair);
            }
        }
    }

    /// The power iteration agrees with nalgebra's full Hermitian eigen-decomposition on random
    /// positive semi-definite matrices with a gap like ESPIRiT's (top eigenvalue near 1).
    #[test]
    fn power_iteration_matches_full_eigendecomposition() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 8;
        let opts = EspiritOptions {
            max_iterations: 1000,
            tolerance: 1e-6,
            ..EspiritOptions::default()
        };
        for trial in 0..50 {
            let b = DMatrix::<Complex64>::from_fn(n, n, |_, _| {
                Complex64::new(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0))
            });
            let q = b.qr().q();
            let top: f64 = rng.random_range(0.5..1.0);
            let vals: Vec<f64> = (0..n)
                .map(|i| {
                    if i == 0 {
                        top
                    } else {
                        top * rng.random_range(0.0..0.6)
                    }
                })
                .collect();
            let d = DMatrix::from_fn(n, n, |i, j| {
                Complex64::new(if i == j { vals[i] } else { 0.0 }, 0.0)
            });
            let a = &q * d * q.adjoint();
            let g: Vec<C32> = (0..n * n)
                .map(|i| {
                    let v = a[(i / n, i % n)];
                    C32::new(v.re as f32, v.im as f32)
                })
                .collect();
            let mut v = vec![C32::new(0.0, 0.0); n];
            let mut tmp = v.clone();
            let lambda = dominant_eigenvector(&g, n, &mut v, &mut tmp, &opts);
            let eig = SymmetricEigen::new(a.clone());
            let best = (0..n)
                .max_by(|&i, &j| eig.eigenvalues[i].total_cmp(&eig.eigenvalues[j]))
                .unwrap();
            assert!(
                (lambda as f64 - eig.eigenvalues[best]).abs() < 1e-5,
                "trial {trial}: {lambda} vs {}",
                eig.eigenvalues[best]
            );
            let overlap: Complex64 = (0..n)
                .map(|i| {
                    eig.eigenvectors[(i, best)].conj()
                        * Complex64::new(v[i].re as f64, v[i].im as f64)
                })
                .sum();
            assert!(
                (overlap.norm() - 1.0).abs() < 1e-5,
                "trial {trial}: |<u, v>| = {}",
                overlap.norm()
            );
        }
    }

    /// `G(x)` from the FFT equals the direct sum `k^-2 sum_{d, d'} P[(c,d),(c',d')]
    /// exp(-2 pi i (d' - d).x / N)` at a few pixels.
    #[test]
    fn image_matrices_match_the_direct_sum() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (nc, k, h, w) = (2, 3, 10, 12);
        let n = nc * k * k;
        let b = DMatrix::<Complex64>::from_fn(n, n, |_, _| {
            Complex64::new(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0))
        });
        let q = b.qr().q();
        let keep = 5;
        let cov = image_matrices(&q, keep, nc, k, h, w);
        let v = q.columns(0, keep);
        let p = v * v.adjoint();
        for &(y, x) in &[(0usize, 0usize), (3, 7), (5, 6), (9, 11)] {
            for c in 0..nc {
                for c2 in c..nc {
                    let mut direct = Complex64::new(0.0, 0.0);
                    for dy in 0..k {
                        for dx in 0..k {
                            for dy2 in 0..k {
                                for dx2 in 0..k {
                                    let ey = dy2 as f64 - dy as f64;
                                    let ex = dx2 as f64 - dx as f64;
                                    let py = y as f64 - (h / 2) as f64;
                                    let px = x as f64 - (w / 2) as f64;
                                    let ph = -2.0
                                        * std::f64::consts::PI
                                        * (ey * py / h as f64 + ex * px / w as f64);
                                    direct += p
                                        [(patch_index(c, dy, dx, k), patch_index(c2, dy2, dx2, k))]
                                        * Complex64::from_polar(1.0, ph);
                                }
                            }
                        }
                    }
                    direct /= (k * k) as f64;
                    let got = cov[(pair_index(c, c2, nc), y, x)];
                    let err = ((got.re as f64 - direct.re).powi(2)
                        + (got.im as f64 - direct.im).powi(2))
                    .sqrt();
                    assert!(err < 1e-5, "({y}, {x}) pair ({c}, {c2}): {got} vs {direct}");
                }
            }
        }
    }
}
