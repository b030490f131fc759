//! The block layout of a guided-diffusion `UNetModel`: the runtime's [`msm::unet::layout`], which
//! the tch network, the ONNX emitter and the runtime's native executor all walk.

pub use msm::unet::layout::*;
