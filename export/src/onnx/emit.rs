//! The ONNX emitter of the guided-diffusion UNet: the runtime's [`msm::unet::emit`], so the
//! files the trainer writes are the graphs the runtime's native executor recognises.

pub use msm::unet::emit::*;
