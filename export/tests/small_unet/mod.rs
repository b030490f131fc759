//! The small network of the conversion and parity tests (convert.rs, parity.rs).

use msm_export::config::UNetConfig;

/// A 16 x 16, two-level network with attention at 8, changed by `f`.
pub fn tiny(f: impl FnOnce(&mut UNetConfig)) -> UNetConfig {
    let mut c = UNetConfig {
        image_size: 16,
        model_channels: 32,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_resolutions: vec![8],
        num_head_channels: Some(32),
        ..UNetConfig::default()
    };
    f(&mut c);
    c
}
