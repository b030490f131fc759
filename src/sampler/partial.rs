//! Partial denoisers: what the sampler asks of a prior at each partial score, and the adapter
//! that turns a noise-predicting network ([`Denoiser`]) into one.

use crate::denoiser::Denoiser;
use crate::mask::Mask;
use crate::schedule::Schedule;
use crate::sense::Operator;
use crate::{Error, Result, C32};
use ndarray::{Array2, Array3, Array4, Axis};
use std::time::{Duration, Instant};

/// The outcome of one partial denoising.
#[derive(Clone, Debug)]
pub struct Denoised {
    /// The clean-image estimate `x0` from the partial measurement.
    pub x0: Array2<C32>,
    /// The noise image `eps`, consistent with `x0 = u / sqrt(ab_t) - sqrt(1/ab_t - 1) eps`
    /// where `u = A_S^H z` is the partial zero-filled image.
    pub eps: Array2<C32>,
    /// Time spent in the prior itself (the network, or the exact Gaussian solve); the rest of
    /// the call counts as operator time.
    pub network: Duration,
}

/// A prior that denoises a partial measurement: the sampler-level interface, so that an exact
/// prior can be plugged in beside networks.
///
/// `z` is the full multi-coil k-space at level `t` in the variance-preserving scale,
/// `z_t = sqrt(ab_t) z_0 + sqrt(1 - ab_t) n` with `n` complex (real and imaginary parts each of
/// std 1). The denoiser sees only the entries `mask` keeps.
pub trait PartialDenoiser: Sync {
    /// Checks, before any work, that the prior fits the operator (image size, channels).
    fn check(&self, op: &dyn Operator) -> Result<()>;

    /// Denoises `S z_t` for `S = mask` at timestep `t` of `schedule`.
    fn denoise(
        &self,
        op: &dyn Operator,
        z: &Array3<C32>,
        mask: &Mask,
        t: usize,
        schedule: &Schedule,
    ) -> Result<Denoised>;
}

/// A noise-predicting network used as a partial denoiser: `u = A_S^H z` packed as
/// `[1, 2, H, W]`, `eps = net(u, t)`, `x0 = u / sqrt(ab_t) - sqrt(1/ab_t - 1) eps`.
#[derive(Clone, Debug)]
pub struct NetworkPrior<D: Denoiser> {
    net: D,
}

impl<D: Denoiser> NetworkPrior<D> {
    /// Wraps a network.
    pub fn new(net: D) -> Self {
        NetworkPrior { net }
    }

    /// The wrapped network.
    pub fn network(&self) -> &D {
        &self.net
    }
}

/// Packs a complex image as `[1, 2, H, W]` (channel 0 real, 1 imaginary).
pub fn pack(u: &Array2<C32>) -> Array4<f32> {
    let (h, w) = u.dim();
    Array4::from_shape_fn((1, 2, h, w), |(_, c, i, j)| {
        let v = u[(i, j)];
        if c == 0 {
            v.re
        } else {
            v.im
        }
    })
}

impl<D: Denoiser> PartialDenoiser for NetworkPrior<D> {
    fn check(&self, op: &dyn Operator) -> Result<()> {
        let (nh, nw) = self.net.image_size();
        let (h, w) = op.image_shape();
        if (nh, nw) != (h, w) {
            return Err(Error::invalid(format!(
                "the model takes {nh}x{nw} images but the data is {h}x{w}"
            )));
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
        let input = pack(&u);
        let start = Instant::now();
        let out = self.net.predict_eps(input.view(), &[t as f32])?;
        let network = start.elapsed();
        let (h, w) = u.dim();
        if out.dim() != (1, 2, h, w) {
            let d = out.dim();
            return Err(Error::invalid(format!(
                "the model returned shape [{}, {}, {}, {}], expected [1, 2, {h}, {w}]",
                d.0, d.1, d.2, d.3
            )));
        }
        let out = out.index_axis_move(Axis(0), 0);
        let ab = schedule.alpha_bar(t);
        let a = (1.0 / ab.sqrt()) as f32;
        let b = (1.0 / ab - 1.0).sqrt() as f32;
        let eps = Array2::from_shape_fn((h, w), |(i, j)| C32::new(out[(0, i, j)], out[(1, i, j)]));
        let x0 = ndarray::Zip::from(&u)
            .and(&eps)
            .map_collect(|&u, &e| u * a - e * b);
        Ok(Denoised { x0, eps, network })
    }
}
