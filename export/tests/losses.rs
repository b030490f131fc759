//! The tch operator against independent references, and the MSM loss algebra.

use msm_export::loss::{noiseless_loss, noisy_loss, sure, LossOptions, MeasBatch};
use msm_export::operator::{fft2c, ifft2c, Operator};
use msm_export::schedule::Schedule;
use tch::{Device, Kind, Tensor};

fn crandn(shape: &[i64]) -> Tensor {
    let o = (Kind::Float, Device::Cpu);
    Tensor::complex(&Tensor::randn(shape, o), &Tensor::randn(shape, o))
}

fn cval(t: &Tensor, idx: &[i64]) -> (f64, f64) {
    let r = t.view_as_real();
    let mut i = idx.to_vec();
    i.push(0);
    let re = r.double_value(&i);
    i.pop();
    i.push(1);
    (re, r.double_value(&i))
}

/// Complex inner product <a, b> = sum conj(a) b.
fn inner(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let p = (a.conj() * b).sum(Kind::ComplexFloat);
    (p.real().double_value(&[]), p.imag().double_value(&[]))
}

#[test]
fn fft2c_equals_naive_centred_dft() {
    tch::manual_seed(3);
    let (h, w) = (6i64, 8i64);
    let x = crandn(&[h, w]);
    let y = fft2c(&x);
    let scale = 1.0 / ((h * w) as f64).sqrt();
    for k in 0..h {
        for l in 0..w {
            let (mut re, mut im) = (0.0, 0.0);
            for m in 0..h {
                for n in 0..w {
                    let ph = -2.0
                        * std::f64::consts::PI
                        * (((k - h / 2) * (m - h / 2)) as f64 / h as f64
                            + ((l - w / 2) * (n - w / 2)) as f64 / w as f64);
                    let (a, b) = cval(&x, &[m, n]);
                    re += a * ph.cos() - b * ph.sin();
                    im += a * ph.sin() + b * ph.cos();
                }
            }
            let (gr, gi) = cval(&y, &[k, l]);
            assert!(
                (gr - re * scale).abs() < 1e-5 && (gi - im * scale).abs() < 1e-5,
                "({k},{l})"
            );
        }
    }
    let back = ifft2c(&y);
    let err = (back - &x).abs().max().double_value(&[]);
    assert!(err < 1e-5, "ifft2c(fft2c(x)) != x: {err}");
}

#[test]
fn adjoint_is_the_adjoint_of_forward() {
    tch::manual_seed(4);
    let (b, nc, h, w) = (2, 3, 8, 10);
    let maps = crandn(&[b, nc, h, w]);
    let mask = Tensor::from_slice(&[
        1f32, 0., 1., 1., 0., 0., 1., 0., 1., 1., 0., 1., 1., 0., 0., 1., 1., 0., 1., 0.,
    ])
    .reshape([b, w]);
    let op = Operator::new(&maps, &mask);
    let x = crandn(&[b, h, w]);
    let y = crandn(&[b, nc, h, w]);
    let (l1, l2) = inner(&op.forward(&x), &y);
    let (r1, r2) = inner(&x, &op.adjoint(&y));
    let scale = l1.abs() + l2.abs();
    assert!(
        (l1 - r1).abs() < 1e-4 * scale && (l2 - r2).abs() < 1e-4 * scale,
        "<Ax,y> {l1},{l2} vs <x,A^H y> {r1},{r2}"
    );
    // The forward output is zero on unmeasured columns.
    let ax = op.forward(&x);
    assert_eq!(
        ax.select(0, 0).select(2, 1).abs().max().double_value(&[]),
        0.0
    );
    assert_eq!(op.measured_reals(), 2.0 * (nc * h) as f64 * 11.0);
}

/// A fixed, non-trivial "network": eps = 0.3 x + 0.2 roll(x) + 0.05 t/1000.
fn toy_net(x: &Tensor, t: &Tensor) -> Tensor {
    x * 0.3 + x.roll([1i64], [3i64]) * 0.2 + t.view([-1, 1, 1, 1]) * 5e-5
}

#[test]
fn noiseless_loss_is_eps_loss_on_measured_entries() {
    // Single coil, C = 1: A_S = S F, so the loss must equal |S (F eps_hat - n)|^2 / M.
    tch::manual_seed(5);
    let (b, h, w) = (2, 8, 8);
    let maps = Tensor::ones([b, 1, h, w], (Kind::ComplexFloat, Device::Cpu));
    let mask = Tensor::from_slice(&[
        1f32, 1., 0., 1., 0., 0., 1., 0., 0., 1., 1., 1., 0., 1., 0., 0.,
    ])
    .reshape([b, w]);
    let op = Operator::new(&maps, &mask);
    let kspace = op.restrict(&crandn(&[b, 1, h, w]));
    let batch = MeasBatch {
        kspace: kspace.shallow_clone(),
        maps,
        mask,
        eta: 0.0,
    };
    let sched = Schedule::reference();
    for t in [0usize, 250, 995] {
        let n = crandn(&[b, 1, h, w]);
        let loss = noiseless_loss(&toy_net, &batch, &sched, t, &n).double_value(&[]);
        // The eps loss: the network's eps, mapped to k-space, against the true noise.
        let ab = sched.alpha_bar(t);
        let u = op.adjoint(&((&kspace + op.restrict(&n) * sched.sigma(t)) * ab.sqrt()));
        let tt = Tensor::full([b], t as f64, (Kind::Float, Device::Cpu));
        let eps = toy_net(&msm_export::operator::to_channels(&u), &tt);
        let eps_k = op.forward(&msm_export::operator::from_channels(&eps));
        let want = (eps_k - op.restrict(&n))
            .abs()
            .square()
            .sum(Kind::Double)
            .double_value(&[])
            / op.measured_reals();
        assert!(
            (loss - want).abs() < 1e-4 * want,
            "t {t}: loss {loss} vs eps loss {want}"
        );
    }
}

#[test]
fn noisy_loss_tends_to_noiseless_loss_as_eta_vanishes() {
    tch::manual_seed(6);
    let (b, nc, h, w) = (1, 2, 8, 8);
    let maps = crandn(&[b, nc, h, w]) * 0.5;
    let mask = Tensor::from_slice(&[1f32, 0., 1., 1., 0., 1., 0., 1.]).reshape([b, w]);
    let op = Operator::new(&maps, &mask);
    let kspace = op.restrict(&crandn(&[b, nc, h, w]));
    let sched = Schedule::reference();
    let n = crandn(&[b, nc, h, w]);
    let probe = crandn(&[b, nc, h, w]);
    let t = 400;
    let clean = MeasBatch {
        kspace: kspace.shallow_clone(),
        maps: maps.shallow_clone(),
        mask: mask.shallow_clone(),
        eta: 0.0,
    };
    let noisy = MeasBatch {
        kspace,
        maps,
        mask,
        eta: 1e-7,
    };
    let a = noiseless_loss(&toy_net, &clean, &sched, t, &n).double_value(&[]);
    let parts = noisy_loss(
        &toy_net,
        &noisy,
        &sched,
        t,
        &n,
        &probe,
        &LossOptions::default(),
    );
    let m = parts.main.double_value(&[]);
    assert!(
        (a - m).abs() < 1e-4 * a,
        "noiseless {a} vs noisy(eta->0) {m}"
    );
    let total = parts.total.double_value(&[]);
    let s = parts.sure.expect("sure term").double_value(&[]);
    assert!((total - (m + 0.05 * s)).abs() < 1e-5 * total.abs().max(1.0));
}

#[test]
fn sure_expectation_matches_true_mse_of_linear_denoiser() {
    // Linear denoiser f(y) = 0.6 y + 0.3 roll(y); clean z fixed; y = z + eta * noise on the
    // measured entries. E[SURE] must equal E|f(y) - z|^2 / M.
    tch::manual_seed(8);
    let (h, w) = (16i64, 16i64);
    let mask = Tensor::from_slice(
        &(0..w)
            .map(|j| if j % 3 == 0 { 0f32 } else { 1. })
            .collect::<Vec<_>>(),
    )
    .view([1, 1, 1, w]);
    let z = crandn(&[1, 1, h, w]) * &mask;
    let m = 2.0 * h as f64 * mask.sum(Kind::Double).double_value(&[]);
    let f = |y: &Tensor| (y * 0.6 + y.roll([1i64], [2i64]) * 0.3) * &mask;
    let (eta, tau) = (0.3, 0.005);
    let draws = 400;
    let mut diffs = Vec::with_capacity(draws);
    let mut fit_only = Vec::with_capacity(draws);
    for _ in 0..draws {
        let y = &z + crandn(&[1, 1, h, w]) * &mask * eta;
        let probe = crandn(&[1, 1, h, w]) * &mask;
        let fy = f(&y);
        let est = sure(&y, &fy, &f(&(&y + &probe * tau)), &probe, eta, tau, m).double_value(&[]);
        let mse = (&fy - &z)
            .abs()
            .square()
            .sum(Kind::Double)
            .double_value(&[])
            / m;
        diffs.push(est - mse);
        fit_only.push(
            (&fy - &y)
                .abs()
                .square()
                .sum(Kind::Double)
                .double_value(&[])
                / m
                - eta * eta
                - mse,
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sd = |v: &[f64]| {
        let mu = mean(v);
        (v.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    };
    let se = sd(&diffs) / (draws as f64).sqrt();
    assert!(
        mean(&diffs).abs() < 4.0 * se,
        "E[SURE] - MSE = {} (standard error {se})",
        mean(&diffs)
    );
    // The divergence term matters: without it the estimate is biased far beyond that error.
    let bias = mean(&fit_only);
    assert!(
        bias.abs() > 10.0 * se,
        "the check has no power: bias without divergence {bias}, se {se}"
    );
}

#[test]
fn schedule_matches_guided_diffusion_linear() {
    let s = Schedule::reference();
    assert_eq!(s.len(), 1000);
    // ab_0 = 1 - 1e-4; ab_999 = prod(1 - linspace(1e-4, 0.02, 1000)) ~ 4.0358e-5.
    assert!((s.alpha_bar(0) - 0.9999).abs() < 1e-12);
    let direct: f64 = (0..1000)
        .map(|i| 1.0 - (1e-4 + (0.02 - 1e-4) * i as f64 / 999.0))
        .product();
    assert!((s.alpha_bar(999) - direct).abs() < 1e-15);
    assert_eq!(s.respaced(200)[..3], [0, 5, 10]);
    assert_eq!(*s.respaced(200).last().unwrap(), 995);
    let t = s.step_for_sigma(0.1);
    assert!((s.sigma(t) - 0.1).abs() <= (s.sigma(t + 1) - s.sigma(t)).abs());
}
