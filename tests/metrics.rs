//! Metrics against closed forms and an independent direct SSIM (2-D window, no separability).

use msm::metrics::{compare, ls_scale, nmse, psnr, ssim, ssim_object, OBJECT_THRESHOLD};
use msm::C32;
use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn image(h: usize, w: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((h, w), |(i, j)| {
        ((i as f64 / 5.0).sin() + (j as f64 / 7.0).cos()).abs() + 0.1 * rng.random::<f64>()
    })
}

/// SSIM straight from the definition: 11x11 Gaussian weights (sigma 1.5), population moments,
/// mean over every position where the window fits.
fn direct_ssim(x: &Array2<f64>, y: &Array2<f64>) -> f64 {
    direct_ssim_where(x, y, &|_, _| true)
}

/// The same, averaged only over the window centres `(i, j)` where `keep(i, j)`.
fn direct_ssim_where(x: &Array2<f64>, y: &Array2<f64>, keep: &dyn Fn(usize, usize) -> bool) -> f64 {
    let (h, w) = x.dim();
    let range = x.iter().cloned().fold(0.0, f64::max);
    let (c1, c2) = ((0.01 * range).powi(2), (0.03 * range).powi(2));
    let mut g = Array2::from_shape_fn((11, 11), |(a, b)| {
        let (da, db) = (a as f64 - 5.0, b as f64 - 5.0);
        (-(da * da + db * db) / 4.5).exp()
    });
    let s = g.sum();
    g /= s;
    let mut total = 0.0;
    let mut n = 0;
    for i in 5..h - 5 {
        for j in 5..w - 5 {
            if !keep(i, j) {
                continue;
            }
            let (mut mx, mut my, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for a in 0..11 {
                for b in 0..11 {
                    let (p, q) = (x[(i + a - 5, j + b - 5)], y[(i + a - 5, j + b - 5)]);
                    let wgt = g[(a, b)];
                    mx += wgt * p;
                    my += wgt * q;
                    xx += wgt * p * p;
                    yy += wgt * q * q;
                    xy += wgt * p * q;
                }
            }
            let (vx, vy, cxy) = (xx - mx * mx, yy - my * my, xy - mx * my);
            total += ((2.0 * mx * my + c1) * (2.0 * cxy + c2))
                / ((mx * mx + my * my + c1) * (vx + vy + c2));
            n += 1;
        }
    }
    total / n as f64
}

#[test]
fn psnr_and_nmse_closed_forms() {
    let r = image(32, 40, 1);
    let peak = r.iter().cloned().fold(0.0, f64::max);
    let d = 0.05;
    let x = &r + d;
    let expected = 20.0 * (peak / d).log10();
    assert!((psnr(r.view(), x.view()) - expected).abs() < 1e-9);
    let e = nmse(r.view(), x.view());
    let expected_nmse = d * d * r.len() as f64 / r.iter().map(|v| v * v).sum::<f64>();
    assert!((e - expected_nmse).abs() < 1e-12);
}

#[test]
fn ssim_matches_direct_definition() {
    let r = image(40, 36, 2);
    let x = image(40, 36, 3) * 0.9;
    let a = ssim(r.view(), x.view());
    let b = direct_ssim(&r, &x);
    assert!((a - b).abs() < 1e-10, "separable {a} vs direct {b}");
    assert!((ssim(r.view(), r.view()) - 1.0).abs() < 1e-12);
    assert!(a < 0.99);
}

#[test]
fn least_squares_scaling_undoes_a_complex_factor() {
    let r = image(24, 24, 4).mapv(|v| C32::new(v as f32, 0.5 * v as f32));
    let a = C32::new(0.3, -2.5);
    let x = r.mapv(|v| v / a);
    let s = ls_scale(r.view(), x.view());
    assert!((s - a).norm() < 1e-4, "{s} vs {a}");
    let q = compare(r.view(), x.view(), true).unwrap();
    assert!(
        q.psnr > 80.0 && (q.ssim - 1.0).abs() < 1e-4 && q.nmse < 1e-8,
        "{q:?}"
    );
    let q0 = compare(r.view(), x.view(), false).unwrap();
    assert!(q0.psnr < 25.0, "unscaled PSNR {:.2} should be low", q0.psnr);
    assert!(compare(r.view(), Array2::zeros((3, 3)).view(), false).is_err());
}

#[test]
fn object_ssim_matches_direct_definition_over_the_object() {
    // An object (a disc) on a zero background, and an image with errors everywhere.
    let (h, w) = (48, 44);
    let disc = |i: usize, j: usize| (i as f64 - 24.0).powi(2) + (j as f64 - 22.0).powi(2) < 225.0;
    let tex = image(h, w, 4);
    let r = Array2::from_shape_fn((h, w), |(i, j)| if disc(i, j) { tex[(i, j)] } else { 0.0 });
    let x = &r * 0.7 + image(h, w, 5) * 0.3;
    let peak = r.iter().cloned().fold(0.0, f64::max);
    let a = ssim_object(r.view(), x.view());
    let b = direct_ssim_where(&r, &x, &|i, j| r[(i, j)] >= OBJECT_THRESHOLD * peak);
    assert!((a - b).abs() < 1e-10, "separable {a} vs direct {b}");
    assert!((ssim_object(r.view(), r.view()) - 1.0).abs() < 1e-12);
    assert!(a < 0.99);
}

#[test]
fn object_ssim_ignores_error_that_stays_in_the_background() {
    // Error only more than a window radius outside the object: the object's SSIM is exact,
    // the whole image's is not.
    let (h, w) = (64, 64);
    let inside = |i: usize, j: usize| (i as f64 - 32.0).powi(2) + (j as f64 - 32.0).powi(2) < 144.0;
    let far = |i: usize, j: usize| (i as f64 - 32.0).powi(2) + (j as f64 - 32.0).powi(2) > 400.0;
    let tex = image(h, w, 6);
    let r = Array2::from_shape_fn(
        (h, w),
        |(i, j)| if inside(i, j) { tex[(i, j)] } else { 0.0 },
    );
    let noise = image(h, w, 7);
    let x = Array2::from_shape_fn((h, w), |(i, j)| {
        r[(i, j)] + if far(i, j) { 0.02 * noise[(i, j)] } else { 0.0 }
    });
    assert!((ssim_object(r.view(), x.view()) - 1.0).abs() < 1e-12);
    assert!(
        ssim(r.view(), x.view()) < 0.9,
        "{}",
        ssim(r.view(), x.view())
    );
}

#[test]
fn a_zero_reference_is_refused() {
    let zero = Array2::<C32>::zeros((16, 16));
    let img = image(16, 16, 3).mapv(|v| C32::new(v as f32, 0.0));
    for scale in [false, true] {
        let e = compare(zero.view(), img.view(), scale)
            .unwrap_err()
            .to_string();
        assert!(e.contains("zero everywhere"), "{e}");
    }
    assert!(compare(img.view(), zero.view(), false).is_ok());
}
