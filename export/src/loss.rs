//! The MSM training losses (MSM.md section 3), computed from measurements only.
//!
//! Conventions (stated here because MSM.md leaves them implicit):
//! - Complex noise has independent real and imaginary parts, each of standard deviation 1 for the
//!   diffusion noise `n` and `eta` for the measurement noise, so `eta` is the per-real-component
//!   standard deviation and "m" counts real measured values (2 per measured complex entry).
//! - "mean |r|^2" is the sum over measured real values divided by `b m` (the batch's measured reals).
//! - In Tweedie's correction the network input is used on the measurement scale:
//!   `u' = u / sqrt(ab_t) = A_S^H (s + c S n)`, so that `s_hat = u' + ((sigma^2 - eta^2) / sigma^2)
//!   (x0 - u')` is the posterior mean of the eta-noisy image given the sigma-noisy one.

use tch::{Kind, Tensor};

use crate::operator::{from_channels, to_channels, Operator};
use crate::schedule::Schedule;

/// A minibatch of measurements on the device: all a scanner gives, nothing else.
#[derive(Debug)]
pub struct MeasBatch {
    /// Undersampled (zero outside the mask), possibly noisy k-space `[B, Nc, H, W]` complex.
    pub kspace: Tensor,
    /// Coil maps `[B, Nc, H, W]` complex.
    pub maps: Tensor,
    /// Column masks `[B, W]` (1 measured, 0 not).
    pub mask: Tensor,
    /// Measurement noise std per real component (0: noiseless).
    pub eta: f64,
}

/// Loss options.
#[derive(Debug, Clone, Copy)]
pub struct LossOptions {
    /// Probe size of the Monte-Carlo divergence.
    pub sure_tau: f64,
    /// Weight of the SURE term in the total loss.
    pub sure_weight: f64,
}

impl Default for LossOptions {
    /// The reference values: tau = 0.005, weight 0.05.
    fn default() -> Self {
        LossOptions {
            sure_tau: 0.005,
            sure_weight: 0.05,
        }
    }
}

/// The terms of one loss evaluation.
#[derive(Debug)]
pub struct LossParts {
    /// The loss to minimise (main + weight * sure).
    pub total: Tensor,
    /// The weighted measurement-domain denoising loss.
    pub main: Tensor,
    /// The SURE term (noisy data only).
    pub sure: Option<Tensor>,
}

/// Complex standard Gaussian noise (re, im ~ N(0, 1)) shaped like `like`.
pub fn complex_randn(like: &Tensor) -> Tensor {
    let size = like.size();
    let opts = (Kind::Float, like.device());
    Tensor::complex(
        &Tensor::randn(size.as_slice(), opts),
        &Tensor::randn(size.as_slice(), opts),
    )
}

/// Sum of |z|^2 over all entries (real scalar).
pub fn sq_norm(z: &Tensor) -> Tensor {
    z.abs().square().sum(Kind::Float)
}

/// The network seen as an x0 estimator: input image `u` (complex `[B, H, W]`, on the
/// `sqrt(ab_t)` scale) -> x0 = u / sqrt(ab) - sqrt(1/ab - 1) eps.
pub fn x0_from_eps(u: &Tensor, eps: &Tensor, ab: f64) -> Tensor {
    u / ab.sqrt() - from_channels(eps) * (1.0 / ab - 1.0).sqrt()
}

/// Runs `net` (eps prediction, `[B, 2, H, W]`, `[B]` -> `[B, 2, H, W]`) on complex `u` at step `t`
/// and returns x0.
pub fn net_x0(
    net: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    u: &Tensor,
    t: usize,
    sched: &Schedule,
) -> Tensor {
    let b = u.size()[0];
    let tt = Tensor::full([b], t as f64, (Kind::Float, u.device()));
    let eps = net(&to_channels(u), &tt);
    x0_from_eps(u, &eps, sched.alpha_bar(t))
}

/// The SURE estimate of the per-real-value MSE of a denoiser f applied to `y` (noise std `eta`):
/// |f(y) - y|^2 / M - eta^2 + (2 eta^2 / (tau M)) <probe, f(y + tau probe) - f(y)>, with `probe`
/// standard Gaussian on the M measured real values (zero elsewhere).
pub fn sure(
    y: &Tensor,
    f_y: &Tensor,
    f_probe: &Tensor,
    probe: &Tensor,
    eta: f64,
    tau: f64,
    m: f64,
) -> Tensor {
    let fit = sq_norm(&(f_y - y)) / m;
    let div = (probe.conj() * (f_probe - f_y)).real().sum(Kind::Float);
    fit - eta * eta + div * (2.0 * eta * eta / (tau * m))
}

/// The noiseless-data loss at step `t` with diffusion noise `n` (complex, `[B, Nc, H, W]`):
/// s_t = sqrt(ab)(s + sigma S n), u = A^H s_t, x0 from the network,
/// loss = ab / (1 - ab) * |s - A_S x0|^2 / (b m).
pub fn noiseless_loss(
    net: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    batch: &MeasBatch,
    sched: &Schedule,
    t: usize,
    n: &Tensor,
) -> Tensor {
    let op = Operator::new(&batch.maps, &batch.mask);
    let ab = sched.alpha_bar(t);
    let sigma = sched.sigma(t);
    let s = op.restrict(&batch.kspace);
    let st = (&s + op.restrict(n) * sigma) * ab.sqrt();
    let x0 = net_x0(net, &op.adjoint(&st), t, sched);
    sq_norm(&(&s - op.forward(&x0))) * (ab / (1.0 - ab)) / op.measured_reals()
}

/// The loss for noisy data (eta > 0) at step `t` with diffusion noise `n` and SURE probe `probe`
/// (both complex standard Gaussian `[B, Nc, H, W]`), per MSM.md section 3.
pub fn noisy_loss(
    net: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    batch: &MeasBatch,
    sched: &Schedule,
    t: usize,
    n: &Tensor,
    probe: &Tensor,
    opts: &LossOptions,
) -> LossParts {
    let op = Operator::new(&batch.maps, &batch.mask);
    let eta = batch.eta;
    let m = op.measured_reals();
    let s = op.restrict(&batch.kspace);
    let ab = sched.alpha_bar(t);
    let sigma = sched.sigma(t);
    let w = ab / (1.0 - ab);

    // The network as a denoiser of the eta-noisy measurement itself, at the step whose sigma is eta.
    let t_eta = sched.step_for_sigma(eta);
    let ab_eta = sched.alpha_bar(t_eta);
    let denoise = |y: &Tensor| {
        op.forward(&net_x0(
            net,
            &op.adjoint(&(y * ab_eta.sqrt())),
            t_eta,
            sched,
        ))
    };
    let y1 = denoise(&s);
    let probe = op.restrict(probe);
    let y2 = denoise(&(&s + &probe * opts.sure_tau));
    let sure_term = sure(&s, &y1, &y2, &probe, eta, opts.sure_tau, m);

    let main = if sigma > eta {
        let c2 = sigma * sigma - eta * eta;
        let st = (&s + op.restrict(n) * c2.sqrt()) * ab.sqrt();
        let u = op.adjoint(&st);
        let x0 = net_x0(net, &u, t, sched);
        let u_meas = &u / ab.sqrt();
        let s_hat = &u_meas + (x0 - &u_meas) * (c2 / (sigma * sigma));
        sq_norm(&(&s - op.forward(&s_hat))) * w / m
    } else {
        let target = y1.detach();
        let st = (&target + op.restrict(n) * sigma) * ab.sqrt();
        let x0 = net_x0(net, &op.adjoint(&st), t, sched);
        sq_norm(&(&target - op.forward(&x0))) * w / m
    };
    LossParts {
        total: &main + &sure_term * opts.sure_weight,
        main,
        sure: Some(sure_term),
    }
}

/// The loss for `batch` at step `t`: noiseless or noisy according to `batch.eta`, drawing the
/// diffusion noise and the SURE probe from torch's generator.
pub fn msm_loss(
    net: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    batch: &MeasBatch,
    sched: &Schedule,
    t: usize,
    opts: &LossOptions,
) -> LossParts {
    let n = complex_randn(&batch.kspace);
    if batch.eta > 0.0 {
        let probe = complex_randn(&batch.kspace);
        noisy_loss(net, batch, sched, t, &n, &probe, opts)
    } else {
        let main = noiseless_loss(net, batch, sched, t, &n);
        LossParts {
            total: main.shallow_clone(),
            main,
            sure: None,
        }
    }
}
