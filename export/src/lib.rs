//! `msm-export`: trains measurement-score diffusion (MSM) priors from undersampled, possibly noisy
//! multi-coil measurements only (tch / libtorch), and freezes them to ONNX for the `msm` runtime.
//!
//! - [`config`], [`layout`], [`unet`]: the guided-diffusion `UNetModel` with state_dict names.
//! - [`operator`], [`schedule`], [`loss`]: the measurement operator and the MSM losses.
//! - [`data`]: simulated scanner measurements; clean images are unreachable by construction.
//! - [`train`]: AdamW, EMA, clipping, checkpoint and resume.
//! - [`onnx`]: the ONNX emitter, metadata and model card; [`convert`]: state_dict -> ONNX.

pub mod config;
pub mod convert;
pub mod data;
pub mod layout;
pub mod loss;
pub mod onnx;
pub mod operator;
pub mod schedule;
pub mod train;
pub mod unet;
