//! `msm-export`: trains measurement-score diffusion (MSM) priors from undersampled, possibly noisy
//! multi-coil measurements only (tch / libtorch), and freezes them to ONNX for the `msm` runtime.
//!
//! - [`config`], [`layout`], [`unet`]: the guided-diffusion `UNetModel` with state_dict names.
//! - [`operator`], [`loss`]: the measurement operator in tch and the MSM losses (the noise
//!   schedule is the runtime's [`msm::schedule::Schedule`]).
//! - [`data`]: simulated scanner measurements (on the runtime's NIfTI reader, masks, coil maps,
//!   phase, noise and SENSE operator); clean images are unreachable by construction.
//! - [`train`]: AdamW, EMA, clipping, checkpoint and resume; [`store`]: the safetensors files
//!   msm-train writes (checkpoints, prepared scans); [`validation`]: the loss of held-out
//!   scans during training.
//! - [`onnx`]: the ONNX emitter (on the runtime's `OnnxBuilder` and `ModelMeta`), the input
//!   scale, the model card; [`convert`]: state_dict -> ONNX.

pub mod config;
pub mod convert;
pub mod data;
pub mod layout;
pub mod loss;
pub mod onnx;
pub mod operator;
pub mod store;
pub mod train;
pub mod unet;
pub mod validation;
