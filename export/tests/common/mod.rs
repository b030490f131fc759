//! Shared by the trainer's test binaries.

use msm_export::config::UNetConfig;
use msm_export::data::DataConfig;
use msm_export::train::TrainConfig;

/// A tiny run: a 32x32, 4-coil, two-level network that trains in seconds on the CPU.
pub fn tiny() -> TrainConfig {
    TrainConfig {
        unet: UNetConfig {
            image_size: 32,
            model_channels: 32,
            channel_mult: vec![1, 2],
            num_res_blocks: 1,
            attention_resolutions: vec![16],
            ..UNetConfig::default()
        },
        data: DataConfig {
            image_size: 32,
            coils: 4,
            acs_lines: 4,
            ..DataConfig::default()
        },
        batch_size: 4,
        lr: 1e-3,
        steps: 120,
        seed: 11,
        checkpoint_every: 1000,
        log_every: 1000,
        ..TrainConfig::default()
    }
}
