//! `msm`: a CPU runtime for measurement-score diffusion (MSM) models that reconstructs
//! accelerated multi-coil MRI and generates images (see `shared/MSM.md` for the method).
//!
//! Array conventions: multi-coil k-space and coil maps are `Array3<C32>` of shape
//! `(coils, height, width)`, row-major; images are `Array2<C32>` of shape `(height, width)`.
//! Cartesian undersampling keeps whole columns (the width axis is the phase-encode axis), as
//! fastMRI does.

/// Single-precision complex number used for all k-space and image data.
pub type C32 = rustfft::num_complex::Complex32;

pub mod coils;
pub mod denoiser;
pub mod error;
pub mod fft;
pub mod io;
pub mod mask;
pub mod metrics;
pub mod noise;
pub mod onnx;
pub mod recon;
pub mod sampler;
pub mod schedule;
pub mod sense;
pub mod simulate;
pub mod uncertainty;
pub mod unet;
pub mod volume;

pub use error::{Error, Result};
