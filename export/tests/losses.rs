//! The tch operator against independent references and against the runtime's SENSE operator,
//! and the MSM loss algebra.

use msm::mask::Mask;
use msm::schedule::Schedule;
use msm::sense::{Operator as _, Sense};
use msm::C32;
use msm_export::loss::{noiseless_loss, noisy_loss, sure, LossOptions, MeasBatch};
use msm_export::operator::{fft2c, ifft2c, Operator};
use ndarray::{Array2, Array3};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
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

fn crandn_nd<Sh: ndarray::ShapeBuilder>(
    shape: Sh,
    rng: &mut ChaCha8Rng,
) -> ndarray::Array<C32, Sh::Dim> {
    ndarray::Array::from_shape_simple_fn(shape, || {
        C32::new(
            rng.random_range(-1.0f32..1.0),
            rng.random_range(-1.0f32..1.0),
        )
    })
}

/// Complex ndarray -> complex tch tensor of the same shape.
fn to_tensor<D: ndarray::Dimension>(a: &ndarray::Array<C32, D>) -> Tensor {
    let flat: Vec<f32> = a.iter().flat_map(|v| [v.re, v.im]).collect();
    let mut shape: Vec<i64> = a.shape().iter().map(|&d| d as i64).collect();
    shape.push(2);
    Tensor::from_slice(&flat).reshape(shape).view_as_complex()
}

/// Complex tch tensor -> flat values in row-major order.
fn to_values(t: &Tensor) -> Vec<C32> {
    let re = Vec::<f32>::try_from(t.real().contiguous().reshape([-1])).unwrap();
    let im = Vec::<f32>::try_from(t.imag().contiguous().reshape([-1])).unwrap();
    re.into_iter()
        .zip(im)
        .map(|(r, i)| C32::new(r, i))
        .collect()
}

fn rel_err(a: &[C32], b: &[C32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).norm_sqr() as f64)
        .sum();
    let den: f64 = b.iter().map(|y| y.norm_sqr() as f64).sum();
    (num / den).sqrt()
}

#[test]
fn tch_operator_equals_runtime_sense_operator() {
    // Odd and even sizes, so that the centring shifts of both FFTs are exercised; each batch
    // item has its own maps and mask: columns (`[B, W]`), or entries (`[B, H, W]`, 2-D masks).
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for ((nc, h, w), entries) in [(3usize, 12usize, 9usize), (4, 16, 16), (2, 7, 10)]
        .into_iter()
        .flat_map(|size| [(size, false), (size, true)])
    {
        let b = 2;
        let maps: Vec<Array3<C32>> = (0..b).map(|_| crandn_nd((nc, h, w), &mut rng)).collect();
        let masks: Vec<Mask> = (0..b)
            .map(|_| match entries {
                false => Mask::Columns((0..w).map(|_| rng.random_bool(0.5)).collect()),
                true => Mask::Pattern(Array2::from_shape_simple_fn((h, w), || {
                    rng.random_bool(0.4)
                })),
            })
            .collect();
        let xs: Vec<Array2<C32>> = (0..b).map(|_| crandn_nd((h, w), &mut rng)).collect();
        let ys: Vec<Array3<C32>> = (0..b).map(|_| crandn_nd((nc, h, w), &mut rng)).collect();
        let stack = |parts: Vec<Tensor>| Tensor::stack(&parts, 0);
        let maps_t = stack(maps.iter().map(to_tensor).collect());
        let kept: Vec<f32> = masks
            .iter()
            .flat_map(|m| match m {
                Mask::Columns(c) => c.iter().map(|&k| f32::from(k)).collect::<Vec<_>>(),
                Mask::Pattern(p) => p.iter().map(|&k| f32::from(k)).collect(),
            })
            .collect();
        let mask_t = match entries {
            false => Tensor::from_slice(&kept).reshape([b as i64, w as i64]),
            true => Tensor::from_slice(&kept).reshape([b as i64, h as i64, w as i64]),
        };
        let op = Operator::new(&maps_t, &mask_t);
        let counts: Vec<f64> = masks
            .iter()
            .map(|m| 2.0 * (nc * m.count(h)) as f64)
            .collect();
        assert_eq!(op.measured_reals_each(), counts, "measured real values");
        let fwd = op.forward(&stack(xs.iter().map(to_tensor).collect()));
        let adj = op.adjoint(&stack(ys.iter().map(to_tensor).collect()));
        for i in 0..b {
            let sense = Sense::new(maps[i].clone()).unwrap();
            let mask = &masks[i];
            let want_fwd = sense.forward(xs[i].view(), Some(mask));
            let want_adj = sense.adjoint(ys[i].view(), Some(mask));
            let got_fwd = to_values(&fwd.select(0, i as i64));
            let got_adj = to_values(&adj.select(0, i as i64));
            let (ef, ea) = (
                rel_err(&got_fwd, want_fwd.as_slice().unwrap()),
                rel_err(&got_adj, want_adj.as_slice().unwrap()),
            );
            eprintln!(
                "({nc}, {h}, {w}) entries {entries} item {i}: forward {ef:.2e}, adjoint {ea:.2e}"
            );
            assert!(
                ef < 1e-5 && ea < 1e-5,
                "({nc}, {h}, {w}) entries {entries} item {i}: forward rel err {ef:.2e}, adjoint \
                 rel err {ea:.2e}"
            );
        }
    }
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
        eta: vec![0.0; b as usize],
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
        eta: vec![0.0],
    };
    let noisy = MeasBatch {
        kspace,
        maps,
        mask,
        eta: vec![1e-7],
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
        let est =
            sure(&y, &fy, &f(&(&y + &probe * tau)), &probe, &[eta], tau, &[m]).double_value(&[]);
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
    // The divergence term matters: without it the estimate is biased far beyond that error.
    assert_unbiased_and_powerful(&diffs, &fit_only, "without the divergence term");
}

/// Asserts that `diffs` (estimate - truth, one per draw) average to 0 within 4 standard errors,
/// and that `biased` (the same for an estimate that should be wrong, `what`) averages more
/// than 10 standard errors away: the check can tell a right estimate from a wrong one.
fn assert_unbiased_and_powerful(diffs: &[f64], biased: &[f64], what: &str) {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mu = mean(diffs);
    let var = diffs.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (diffs.len() - 1) as f64;
    let se = (var / diffs.len() as f64).sqrt();
    assert!(
        mu.abs() < 4.0 * se,
        "E[SURE] - MSE = {mu} (standard error {se})"
    );
    let bias = mean(biased);
    assert!(
        bias.abs() > 10.0 * se,
        "the check has no power: bias {what} {bias}, se {se}"
    );
}

#[test]
fn sure_expectation_matches_true_mse_with_a_noise_level_per_example() {
    // Two examples with their own masks and noise levels (a real scan's slices differ): E[SURE]
    // over the batch must equal the batch's E|f(y) - z|^2 / M, and one stated eta for both
    // (the first's, as one `noise_eta` for all slices would be) must not.
    tch::manual_seed(9);
    let (h, w) = (16i64, 16i64);
    let cols: Vec<f32> = (0..2 * w)
        .map(|j| {
            let (i, c) = (j / w, j % w);
            if c % (3 + i) == 0 {
                0.
            } else {
                1.
            }
        })
        .collect();
    let mask = Tensor::from_slice(&cols).view([2, 1, 1, w]);
    let m: Vec<f64> = (0..2)
        .map(|i| 2.0 * h as f64 * mask.get(i).sum(Kind::Double).double_value(&[]))
        .collect();
    let total: f64 = m.iter().sum();
    let eta = [0.3, 0.08];
    let eta_t = Tensor::from_slice(&[eta[0] as f32, eta[1] as f32]).view([2, 1, 1, 1]);
    let z = crandn(&[2, 1, h, w]) * &mask;
    let f = |y: &Tensor| (y * 0.6 + y.roll([1i64], [2i64]) * 0.3) * &mask;
    let tau = 0.005;
    let draws = 400;
    let (mut diffs, mut shared) = (Vec::new(), Vec::new());
    for _ in 0..draws {
        let y = &z + crandn(&[2, 1, h, w]) * &mask * &eta_t;
        let probe = crandn(&[2, 1, h, w]) * &mask;
        let (fy, fp) = (f(&y), f(&(&y + &probe * tau)));
        let mse = (&fy - &z)
            .abs()
            .square()
            .sum(Kind::Double)
            .double_value(&[])
            / total;
        diffs.push(sure(&y, &fy, &fp, &probe, &eta, tau, &m).double_value(&[]) - mse);
        shared.push(sure(&y, &fy, &fp, &probe, &[eta[0]; 2], tau, &m).double_value(&[]) - mse);
    }
    assert_unbiased_and_powerful(&diffs, &shared, "with one stated eta for both");
}

#[test]
fn noisy_loss_of_a_batch_is_the_weighted_mean_of_its_examples_alone() {
    // A batch whose examples have their own noise levels, one on each side of sigma_t (Tweedie's
    // target for the first, the pseudo-clean reference for the second): its main loss and SURE
    // term are each example's alone, weighted by its measured values.
    tch::manual_seed(10);
    let (b, nc, h, w) = (2i64, 2, 8, 8);
    let maps = crandn(&[b, nc, h, w]) * 0.5;
    let mask = Tensor::from_slice(&[
        1f32, 0., 1., 1., 0., 1., 0., 1., 1., 1., 1., 0., 0., 1., 1., 1.,
    ])
    .reshape([b, w]);
    let op = Operator::new(&maps, &mask);
    let kspace = op.restrict(&crandn(&[b, nc, h, w]));
    let sched = Schedule::reference();
    let t = 50;
    let sigma = sched.sigma(t);
    let eta = vec![sigma / 4.0, sigma * 3.0];
    let n = crandn(&[b, nc, h, w]);
    let probe = crandn(&[b, nc, h, w]);
    let opts = LossOptions::default();
    let loss = |i: Option<i64>| {
        let pick = |x: &Tensor| match i {
            Some(i) => x.narrow(0, i, 1),
            None => x.shallow_clone(),
        };
        let batch = MeasBatch {
            kspace: pick(&kspace),
            maps: pick(&maps),
            mask: pick(&mask),
            eta: match i {
                Some(i) => vec![eta[i as usize]],
                None => eta.clone(),
            },
        };
        let parts = noisy_loss(&toy_net, &batch, &sched, t, &pick(&n), &pick(&probe), &opts);
        let reals = Operator::new(&batch.maps, &batch.mask).measured_reals();
        (
            parts.main.double_value(&[]),
            parts.sure.expect("sure term").double_value(&[]),
            reals,
        )
    };
    let (main, sure_term, _) = loss(None);
    let ((main0, sure0, m0), (main1, sure1, m1)) = (loss(Some(0)), loss(Some(1)));
    let want_main = (main0 * m0 + main1 * m1) / (m0 + m1);
    let want_sure = (sure0 * m0 + sure1 * m1) / (m0 + m1);
    assert!(
        (main - want_main).abs() < 1e-5 * want_main.abs(),
        "main {main} vs examples {want_main}"
    );
    assert!(
        (sure_term - want_sure).abs() < 1e-5 * want_sure.abs().max(1e-3),
        "sure {sure_term} vs examples {want_sure}"
    );
    // The two examples' levels matter: the batch with both at the first's level differs.
    let shared = MeasBatch {
        kspace: kspace.shallow_clone(),
        maps: maps.shallow_clone(),
        mask: mask.shallow_clone(),
        eta: vec![eta[0]; 2],
    };
    let other = noisy_loss(&toy_net, &shared, &sched, t, &n, &probe, &opts);
    assert!((other.main.double_value(&[]) - main).abs() > 1e-3 * main.abs());
}
