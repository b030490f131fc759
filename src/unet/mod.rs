//! The guided-diffusion `UNetModel` family MSM priors use: its architecture ([`config`]), its
//! block layout ([`layout`]), the ONNX graph this project writes for it ([`emit`]), and a native
//! executor for that graph ([`native`], on the SIMD kernels in [`kernels`]) that
//! [`crate::denoiser::OnnxDenoiser`] uses instead of tract when a model file is exactly such a
//! graph ([`from_onnx`]).
//!
//! The trainer (`export/`) builds its tch network and its ONNX files from the same [`config`],
//! [`layout`] and [`emit`], so parameter names and graph forms cannot drift apart.

#[cfg(target_arch = "x86_64")]
pub mod amx;
#[cfg(target_arch = "x86_64")]
pub mod bf16;
pub mod config;
#[cfg(target_arch = "x86_64")]
pub mod direct;
#[cfg(target_arch = "x86_64")]
pub mod direct_bf16;
pub mod emit;
pub mod from_onnx;
pub mod kernels;
pub mod layout;
pub mod native;
mod pieces;
#[cfg(target_arch = "x86_64")]
pub mod pointwise;
#[cfg(test)]
mod test_support;
#[cfg(target_arch = "x86_64")]
pub mod winograd;
#[cfg(target_arch = "x86_64")]
pub mod winograd4;
pub mod winograd_products;

pub use config::UNetConfig;
pub use from_onnx::{native_from_proto, unet_config, NotNative};
pub use native::NativeUNet;

/// Whether the fast executor's Winograd F(4x4, 3x3) form runs on this CPU (AVX512-BF16;
/// [`NativeUNet::use_fast`]).
pub fn winograd4_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        winograd4::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Metadata key of the UNet architecture as JSON ([`UNetConfig`] fields).
pub const UNET_CONFIG_KEY: &str = "msm.unet_config";
