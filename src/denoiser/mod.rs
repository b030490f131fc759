//! The network behind the sampler: given partial zero-filled images (two channels, real and
//! imaginary) and a timestep, it returns its estimate of the noise in them.
//!
//! [`Denoiser`] is the abstraction the sampler and trainer code against; [`onnx::OnnxDenoiser`]
//! runs a model file, on the native UNet executor or on tract ([`Backend`]).

pub mod onnx;

use ndarray::{Array4, ArrayView4};

use crate::{Error, Result};

pub use self::onnx::{Backend, OnnxDenoiser};

/// A network that predicts the noise in a batch of partial zero-filled images.
///
/// Implementations are shared between threads: several rayon workers may call
/// [`Denoiser::predict_eps`] at the same time (the sampler's parallel mode evaluates its partial
/// scores one per worker), and each call must give the same numbers as a call made alone.
pub trait Denoiser: Send + Sync {
    /// (height, width) the network takes.
    fn image_size(&self) -> (usize, usize);

    /// Noise estimate for `x` of shape [n, 2, H, W] (channel 0 real, 1 imaginary) at timesteps
    /// `t` (length n, on the 0..999 training scale). Returns [n, 2, H, W].
    fn predict_eps(&self, x: ArrayView4<f32>, t: &[f32]) -> Result<Array4<f32>>;
}

/// Checks that `x` is [n, 2, H, W] for the network's `(H, W)` = `size`, that `t` has one finite
/// timestep per image, and that `x` holds only finite values. For use by [`Denoiser`]
/// implementations before they run.
pub fn check_batch(size: (usize, usize), x: &ArrayView4<f32>, t: &[f32]) -> Result<()> {
    let (n, c, h, w) = x.dim();
    if (c, h, w) != (2, size.0, size.1) {
        return Err(Error::invalid(format!(
            "denoiser input has shape [{n}, {c}, {h}, {w}]; the network takes [n, 2, {}, {}] \
             (real and imaginary channels)",
            size.0, size.1
        )));
    }
    if t.len() != n {
        return Err(Error::invalid(format!(
            "denoiser got {n} images but {} timesteps; expected one timestep per image",
            t.len()
        )));
    }
    if let Some(bad) = t.iter().find(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "denoiser timestep {bad} is not a finite number"
        )));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "denoiser input holds NaN or infinite values; expected finite image values",
        ));
    }
    Ok(())
}
