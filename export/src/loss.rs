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
use msm::schedule::Schedule;

/// A minibatch of measurements on the device: all a scanner gives, nothing else.
#[derive(Debug)]
pub struct MeasBatch {
    /// Undersampled (zero outside the mask), possibly noisy k-space `[B, Nc, H, W]` complex.
    pub kspace: Tensor,
    /// Coil maps `[B, Nc, H, W]` complex.
    pub maps: Tensor,
    /// Masks `[B, H, W]` (1 measured, 0 not; column masks repeat down the rows).
    pub mask: Tensor,
    /// Measurement noise std per real component, one per example: all 0 (noiseless) or all
    /// > 0 (noisy; a real scan's level differs from slice to slice).
    pub eta: Vec<f64>,
}

impl MeasBatch {
    /// Whether the measurements hold noise (the noisy loss applies).
    pub fn is_noisy(&self) -> bool {
        self.eta.iter().any(|&e| e > 0.0)
    }
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

/// [`net_x0`] with each example at its own step `ts[i]`.
pub fn net_x0_each(
    net: &dyn Fn(&Tensor, &Tensor) -> Tensor,
    u: &Tensor,
    ts: &[usize],
    sched: &Schedule,
) -> Tensor {
    let steps: Vec<f64> = ts.iter().map(|&t| t as f64).collect();
    let eps = net(&to_channels(u), &per_example(&steps, &[-1], u));
    let ab: Vec<f64> = ts.iter().map(|&t| sched.alpha_bar(t)).collect();
    let inv_root: Vec<f64> = ab.iter().map(|a| 1.0 / a.sqrt()).collect();
    let noise: Vec<f64> = ab.iter().map(|a| (1.0 / a - 1.0).sqrt()).collect();
    u * per_example(&inv_root, &[-1, 1, 1], u)
        - from_channels(&eps) * per_example(&noise, &[-1, 1, 1], u)
}

/// One real value per example, shaped `[B, 1, 1, 1]` (k-space) or `[B, 1, 1]` (images) by
/// `shape`, on the device of `like`.
fn per_example(values: &[f64], shape: &[i64], like: &Tensor) -> Tensor {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Tensor::from_slice(&v).view(shape).to_device(like.device())
}

/// The SURE estimate of the per-real-value MSE of a denoiser f applied to the examples `y`
/// (`[B, ...]`; example i has noise std `eta[i]` on its `m[i]` measured real values): the sum
/// over examples of |f(y_i) - y_i|^2 - m_i eta_i^2 + (2 eta_i^2 / tau) <probe_i, f(y_i + tau
/// probe_i) - f(y_i)>, over M = sum m_i, with `probe` standard Gaussian on the measured values
/// (zero elsewhere). With one eta this is |f(y) - y|^2 / M - eta^2 + (2 eta^2 / (tau M))
/// <probe, f(y + tau probe) - f(y)>.
pub fn sure(
    y: &Tensor,
    f_y: &Tensor,
    f_probe: &Tensor,
    probe: &Tensor,
    eta: &[f64],
    tau: f64,
    m: &[f64],
) -> Tensor {
    let total: f64 = m.iter().sum();
    let eta2: Vec<f64> = eta.iter().map(|e| e * e).collect();
    let floor: f64 = eta2.iter().zip(m).map(|(e2, mi)| e2 * mi).sum();
    let dims: Vec<i64> = (1..y.dim() as i64).collect();
    let div = (probe.conj() * (f_probe - f_y)).real().sum_dim_intlist(
        dims.as_slice(),
        false,
        Kind::Float,
    );
    let weighted = (div * per_example(&eta2, &[-1], y)).sum(Kind::Float);
    (sq_norm(&(f_y - y)) - floor + weighted * (2.0 / tau)) / total
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

/// The loss for noisy data (every eta > 0) at step `t` with diffusion noise `n` and SURE probe
/// `probe` (both complex standard Gaussian `[B, Nc, H, W]`), per MSM.md section 3, example by
/// example with each example's own eta (`sigma_t > eta`: Tweedie's correction of the
/// eta-noisy measurement; `sigma_t <= eta`: the pseudo-clean reference), in one network pass.
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
    let eta = &batch.eta;
    let m = op.measured_reals_each();
    let s = op.restrict(&batch.kspace);
    let ab = sched.alpha_bar(t);
    let sigma = sched.sigma(t);
    let w = ab / (1.0 - ab);

    // The network as a denoiser of each eta-noisy measurement itself, at the step whose sigma
    // is that example's eta.
    let t_eta: Vec<usize> = eta.iter().map(|&e| sched.timestep_for_sigma(e)).collect();
    let root_ab_eta: Vec<f64> = t_eta.iter().map(|&t| sched.alpha_bar(t).sqrt()).collect();
    let root_ab_eta = per_example(&root_ab_eta, &[-1, 1, 1, 1], &s);
    let denoise = |y: &Tensor| {
        op.forward(&net_x0_each(
            net,
            &op.adjoint(&(y * &root_ab_eta)),
            &t_eta,
            sched,
        ))
    };
    let y1 = denoise(&s);
    let probe = op.restrict(probe);
    let y2 = denoise(&(&s + &probe * opts.sure_tau));
    let sure_term = sure(&s, &y1, &y2, &probe, eta, opts.sure_tau, &m);

    // Per example: the target (the measurement where sigma > eta, else the pseudo-clean y1),
    // the noise added to it (sqrt(sigma^2 - eta^2), else sigma) and Tweedie's weight g
    // ((sigma^2 - eta^2) / sigma^2, else 1, where s_hat is x0 itself).
    let tweedie: Vec<bool> = eta.iter().map(|&e| sigma > e).collect();
    let g: Vec<f64> = eta
        .iter()
        .zip(&tweedie)
        .map(|(&e, &tw)| {
            if tw {
                (sigma * sigma - e * e) / (sigma * sigma)
            } else {
                1.0
            }
        })
        .collect();
    let added: Vec<f64> = g.iter().map(|gi| sigma * gi.sqrt()).collect();
    let keep: Vec<f64> = tweedie.iter().map(|&tw| f64::from(u8::from(tw))).collect();
    let keep = per_example(&keep, &[-1, 1, 1, 1], &s);
    let target = &s * &keep + y1.detach() * (1.0 - &keep);
    let st = (&target + op.restrict(n) * per_example(&added, &[-1, 1, 1, 1], &s)) * ab.sqrt();
    let u = op.adjoint(&st);
    let x0 = net_x0(net, &u, t, sched);
    let u_meas = &u / ab.sqrt();
    let s_hat = &u_meas + (x0 - &u_meas) * per_example(&g, &[-1, 1, 1], &s);
    let main = sq_norm(&(&target - op.forward(&s_hat))) * w / m.iter().sum::<f64>();
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
    if batch.is_noisy() {
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
