//! FFT, SENSE operator and CG-SENSE checked against independent references: a naive O(N^2)
//! DFT, the explicit adjoint identity <A x, y> = <x, A^H y>, and exact recovery from full data.

use msm::fft::Fft2;
use msm::mask::{self, Acs, Mask};
use msm::recon::{cg_sense, zero_filled, CgOptions};
use msm::sense::{ImageDomain, Operator, Sense};
use msm::{coils, C32};
use ndarray::{Array2, Array3};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

fn randn2(h: usize, w: usize, rng: &mut ChaCha8Rng) -> Array2<C32> {
    Array2::from_shape_simple_fn((h, w), || {
        C32::new(rng.sample(StandardNormal), rng.sample(StandardNormal))
    })
}

fn randn3(c: usize, h: usize, w: usize, rng: &mut ChaCha8Rng) -> Array3<C32> {
    Array3::from_shape_simple_fn((c, h, w), || {
        C32::new(rng.sample(StandardNormal), rng.sample(StandardNormal))
    })
}

/// Centred orthonormal DFT written directly from its definition, in f64:
/// X[k] = 1/sqrt(HW) sum_n x[n] exp(-2 pi i (k - H/2)(n - H/2) / H) ... realised via explicit
/// index shifts so that it shares no code with the implementation.
fn naive_centred_dft(x: &Array2<C32>, inverse: bool) -> Array2<C32> {
    let (h, w) = x.dim();
    let sign = if inverse { 1.0 } else { -1.0 };
    // ifftshift: y[i] = x[(i + n/2) % n]; fftshift: y[i] = x[(i + n - n/2) % n].
    let ifs = |i: usize, n: usize| (i + n / 2) % n;
    let fs = |i: usize, n: usize| (i + n - n / 2) % n;
    let mut shifted = Array2::<(f64, f64)>::from_elem((h, w), (0.0, 0.0));
    for i in 0..h {
        for j in 0..w {
            let v = x[(ifs(i, h), ifs(j, w))];
            shifted[(i, j)] = (v.re as f64, v.im as f64);
        }
    }
    let mut spec = Array2::<(f64, f64)>::from_elem((h, w), (0.0, 0.0));
    for k in 0..h {
        for l in 0..w {
            let (mut re, mut im) = (0.0, 0.0);
            for m in 0..h {
                for n in 0..w {
                    let ph = sign
                        * 2.0
                        * std::f64::consts::PI
                        * ((k * m) as f64 / h as f64 + (l * n) as f64 / w as f64);
                    let (c, s) = (ph.cos(), ph.sin());
                    let (a, b) = shifted[(m, n)];
                    re += a * c - b * s;
                    im += a * s + b * c;
                }
            }
            let sc = 1.0 / ((h * w) as f64).sqrt();
            spec[(k, l)] = (re * sc, im * sc);
        }
    }
    Array2::from_shape_fn((h, w), |(i, j)| {
        let (a, b) = spec[(fs(i, h), fs(j, w))];
        C32::new(a as f32, b as f32)
    })
}

fn rel_err(a: &Array2<C32>, b: &Array2<C32>) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).norm_sqr() as f64)
        .sum();
    let den: f64 = b.iter().map(|y| y.norm_sqr() as f64).sum();
    (num / den).sqrt()
}

#[test]
fn fft_matches_naive_dft_even_and_odd_sizes() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for &(h, w) in &[(8, 8), (7, 9), (6, 5), (16, 12), (1, 4), (9, 1)] {
        let x = randn2(h, w, &mut rng);
        let fft = Fft2::new(h, w);
        for inverse in [false, true] {
            let mut y = x.clone();
            if inverse {
                fft.inverse(y.as_slice_mut().unwrap());
            } else {
                fft.forward(y.as_slice_mut().unwrap());
            }
            let r = naive_centred_dft(&x, inverse);
            let e = rel_err(&y, &r);
            assert!(e < 1e-5, "{h}x{w} inverse={inverse}: relative error {e:e}");
        }
    }
}

/// The column-masked transforms against the naive DFT of the masked data (inverse) and the
/// masked naive DFT (forward): even and odd sizes, no column, one, several and all.
#[test]
fn column_masked_fft_matches_masked_naive_dft() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for &(h, w) in &[(8, 8), (7, 9), (6, 5), (16, 12), (1, 4), (9, 1)] {
        let fft = Fft2::new(h, w);
        let masks: Vec<Vec<bool>> = vec![
            vec![false; w],
            (0..w).map(|c| c == w / 2).collect(),
            (0..w).map(|c| c % 3 != 1).collect(),
            vec![true; w],
        ];
        for keep in &masks {
            let masked = |x: &Array2<C32>| {
                Array2::from_shape_fn((h, w), |(i, j)| {
                    if keep[j] {
                        x[(i, j)]
                    } else {
                        C32::new(0.0, 0.0)
                    }
                })
            };
            let x = randn2(h, w, &mut rng);
            let mut y = x.clone();
            fft.forward_kept(y.as_slice_mut().unwrap(), keep);
            let r = masked(&naive_centred_dft(&x, false));
            let scale = r.iter().map(|v| v.norm()).fold(1.0f32, f32::max);
            for (a, b) in y.iter().zip(&r) {
                assert!(
                    (a - b).norm() < 1e-5 * scale,
                    "{h}x{w} forward {keep:?}: {a} vs {b}"
                );
            }
            let mut z = Array2::<C32>::from_elem((h, w), C32::new(f32::NAN, 0.0));
            fft.inverse_kept(x.as_slice().unwrap(), z.as_slice_mut().unwrap(), keep);
            let r = naive_centred_dft(&masked(&x), true);
            let scale = r.iter().map(|v| v.norm()).fold(1.0f32, f32::max);
            for (a, b) in z.iter().zip(&r) {
                assert!(
                    (a - b).norm() < 1e-5 * scale,
                    "{h}x{w} inverse {keep:?}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn fft_forward_then_inverse_is_identity() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for &(h, w) in &[(128, 128), (33, 64), (65, 47)] {
        let x = randn3(3, h, w, &mut rng);
        let fft = Fft2::new(h, w);
        let mut y = x.clone();
        fft.forward_coils(&mut y);
        fft.inverse_coils(&mut y);
        let num: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).norm_sqr() as f64)
            .sum();
        let den: f64 = x.iter().map(|a| a.norm_sqr() as f64).sum();
        let e = (num / den).sqrt();
        assert!(e < 1e-5, "{h}x{w}: round trip error {e:e}");
        // Orthonormal: energy preserved.
        let mut z = x.clone();
        fft.forward_coils(&mut z);
        let ez: f64 = z.iter().map(|a| a.norm_sqr() as f64).sum();
        assert!(((ez - den) / den).abs() < 1e-5, "energy not preserved");
    }
}

#[test]
fn fft_of_centred_delta_is_flat() {
    // A delta at the centre pixel (index n/2) has a flat spectrum 1/sqrt(N) with zero phase.
    for &(h, w) in &[(8, 8), (7, 5)] {
        let mut x = Array2::<C32>::zeros((h, w));
        x[(h / 2, w / 2)] = C32::new(1.0, 0.0);
        Fft2::new(h, w).forward(x.as_slice_mut().unwrap());
        let v = 1.0 / ((h * w) as f32).sqrt();
        for z in x.iter() {
            assert!((z.re - v).abs() < 1e-6 && z.im.abs() < 1e-6, "{h}x{w}: {z}");
        }
    }
}

fn inner3(a: &Array3<C32>, b: &Array3<C32>) -> (f64, f64) {
    a.iter().zip(b).fold((0.0, 0.0), |(r, i), (x, y)| {
        let p = x.conj() * y;
        (r + p.re as f64, i + p.im as f64)
    })
}

fn inner2(a: &Array2<C32>, b: &Array2<C32>) -> (f64, f64) {
    a.iter().zip(b).fold((0.0, 0.0), |(r, i), (x, y)| {
        let p = x.conj() * y;
        (r + p.re as f64, i + p.im as f64)
    })
}

fn norm3(a: &Array3<C32>) -> f64 {
    a.iter().map(|v| v.norm_sqr() as f64).sum::<f64>().sqrt()
}

fn check_adjoint(op: &dyn Operator, mask: Option<&Mask>, rng: &mut ChaCha8Rng, what: &str) {
    let (c, h, w) = op.measurement_shape();
    let x = randn2(h, w, rng);
    let y = randn3(c, h, w, rng);
    let ax = op.forward(x.view(), mask);
    let ahy = op.adjoint(y.view(), mask);
    let (l_re, l_im) = inner3(&ax, &y);
    let (r_re, r_im) = inner2(&x, &ahy);
    let diff = ((l_re - r_re).powi(2) + (l_im - r_im).powi(2)).sqrt();
    let rel = diff / (norm3(&ax) * norm3(&y));
    assert!(rel < 1e-5, "{what}: adjoint mismatch {rel:e}");
}

#[test]
fn sense_adjoint_identity_random_maps_and_masks() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for &(nc, h, w) in &[(8, 32, 32), (3, 17, 24), (1, 9, 7)] {
        let maps = randn3(nc, h, w, &mut rng);
        let op = Sense::new(maps).unwrap();
        check_adjoint(&op, None, &mut rng, "sense, full");
        let cols = mask::random_cartesian(w, 3.0, Acs::Lines(2), &mut rng).unwrap();
        check_adjoint(&op, Some(&Mask::Columns(cols)), &mut rng, "sense, columns");
        let pix = mask::random_pixels(h, w, 2.0, &mut rng).unwrap();
        check_adjoint(&op, Some(&Mask::Pattern(pix)), &mut rng, "sense, pixels");
    }
}

#[test]
fn image_domain_adjoint_identity() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let op = ImageDomain::new(20, 30);
    let blocks = mask::random_blocks(20, 30, 4, 2.0, &mut rng).unwrap();
    check_adjoint(
        &op,
        Some(&Mask::Pattern(blocks)),
        &mut rng,
        "image domain, blocks",
    );
    check_adjoint(&op, None, &mut rng, "image domain, full");
}

#[test]
fn birdcage_maps_are_rss_normalised() {
    let maps = coils::birdcage(8, 64, 48).unwrap();
    for i in 0..64 {
        for j in 0..48 {
            let s: f32 = (0..8).map(|c| maps[(c, i, j)].norm_sqr()).sum();
            assert!((s - 1.0).abs() < 1e-4, "sum |C|^2 = {s} at ({i},{j})");
        }
    }
    // Coils differ: coil 0 and coil 4 (opposite sides) have different magnitudes at a side pixel.
    assert!((maps[(0, 32, 40)].norm() - maps[(4, 32, 40)].norm()).abs() > 0.1);
    assert!(coils::birdcage(0, 8, 8).is_err());
}

#[test]
fn cg_sense_recovers_the_image_from_full_data_and_improves_on_zero_filled() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (h, w) = (48, 48);
    let maps = coils::birdcage(8, h, w).unwrap();
    let op = Sense::new(maps).unwrap();
    let x = randn2(h, w, &mut rng);
    // Fully sampled with RSS-normalised maps: A^H A = I, so zero-filled is exact.
    let full = Mask::full(w);
    let y = op.forward(x.view(), Some(&full));
    let zf = zero_filled(&op, y.view(), &full);
    assert!(rel_err(&zf, &x) < 1e-5);
    // R = 2 equispaced, 8 coils: CG-SENSE recovers the image; zero-filled does not.
    let cols = mask::equispaced(w, 2, Acs::Lines(6), 0).unwrap();
    let m = Mask::Columns(cols);
    let y = op.forward(x.view(), Some(&m));
    let zf = zero_filled(&op, y.view(), &m);
    let opts = CgOptions {
        iterations: 200,
        tolerance: 1e-7,
        ..CgOptions::default()
    };
    let (cg, iters) = cg_sense(&op, y.view(), &m, opts).unwrap();
    let (e_zf, e_cg) = (rel_err(&zf, &x), rel_err(&cg, &x));
    assert!(
        e_cg < 1e-3,
        "CG-SENSE error {e_cg:e} after {iters} iterations"
    );
    assert!(e_zf > 0.3, "zero-filled error {e_zf} unexpectedly small");
    // The normal equations hold at the solution: A^H A x = A^H y.
    let lhs = op.normal(cg.view(), Some(&m));
    let rhs = op.adjoint(y.view(), Some(&m));
    assert!(rel_err(&lhs, &rhs) < 1e-4);
    // Tikhonov: a negative weight is refused.
    let bad = CgOptions {
        lambda: -1.0,
        ..opts
    };
    assert!(cg_sense(&op, y.view(), &m, bad).is_err());
}

#[test]
fn sense_rejects_bad_maps() {
    let mut maps = Array3::<C32>::zeros((2, 4, 4));
    maps[(0, 1, 1)] = C32::new(f32::NAN, 0.0);
    assert!(Sense::new(maps).is_err());
    assert!(Sense::new(Array3::<C32>::zeros((0, 4, 4))).is_err());
    let _: f64 = ChaCha8Rng::seed_from_u64(0).random();
}
