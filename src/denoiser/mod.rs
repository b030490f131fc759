//! The network interface of the samplers.
use crate::Result;
use ndarray::{Array4, ArrayView4};
/// A network that predicts the noise in a batch of partial zero-filled images.
pub trait Denoiser: Send + Sync {
    /// (height, width) the network takes.
    fn image_size(&self) -> (usize, usize);
    /// Noise estimate for `x` of shape [n, 2, H, W] (channel 0 real, 1 imaginary) at timesteps
    /// `t` (length n, on the 0..999 training scale). Returns [n, 2, H, W].
    fn predict_eps(&self, x: ArrayView4<f32>, t: &[f32]) -> Result<Array4<f32>>;
}
