//! The UNet architecture description and its validation.
//!
//! Field names follow the guided-diffusion `UNetModel` constructor (and its `script_util` flags),
//! so that a published checkpoint of that family can be described by copying its settings.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Number of groups of every GroupNorm in the network (guided-diffusion's `normalization`).
pub const GROUPS: usize = 32;

/// Architecture of a guided-diffusion `UNetModel` (2-D, unconditional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UNetConfig {
    /// Height of the input images, and their width unless `image_width` says otherwise.
    pub image_size: usize,
    /// Width of the input images when they are not square (`None`: `image_size`). Not a
    /// guided-diffusion flag: its networks are square.
    pub image_width: Option<usize>,
    /// Input channels (2: real and imaginary part).
    pub in_channels: usize,
    /// Output channels: `in_channels` (eps) or `2 * in_channels` (eps and a learned variance, as in
    /// `learn_sigma` checkpoints; the exported graph then keeps only the eps channels).
    pub out_channels: usize,
    /// Base channel count (`num_channels`).
    pub model_channels: usize,
    /// Channel multiplier per resolution level.
    pub channel_mult: Vec<usize>,
    /// Residual blocks per level.
    pub num_res_blocks: usize,
    /// Feature-map sizes (in pixels, e.g. 16 for 16x16; the heights of non-square maps) at
    /// which self-attention is applied, as in guided-diffusion's `--attention_resolutions` flag.
    pub attention_resolutions: Vec<usize>,
    /// Attention heads, used when `num_head_channels` is `None`.
    pub num_heads: usize,
    /// Channels per attention head (overrides `num_heads`); guided-diffusion's -1 is `None`.
    pub num_head_channels: Option<usize>,
    /// Heads in the decoder's attention blocks (`None`: same as `num_heads`).
    pub num_heads_upsample: Option<usize>,
    /// FiLM-like conditioning: GroupNorm output scaled by (1 + scale) and shifted.
    pub use_scale_shift_norm: bool,
    /// Residual blocks (instead of plain layers) for up- and down-sampling.
    pub resblock_updown: bool,
    /// Learned 3x3 convolutions in plain up/down-sampling layers.
    pub conv_resample: bool,
    /// Split q, k, v before heads (`QKVAttention`) instead of after (`QKVAttentionLegacy`).
    pub use_new_attention_order: bool,
    /// Dropout probability inside residual blocks (training only).
    pub dropout: f64,
}

impl Default for UNetConfig {
    /// The 128x128 base-32 configuration used for the project's brain model.
    fn default() -> Self {
        UNetConfig {
            image_size: 128,
            image_width: None,
            in_channels: 2,
            out_channels: 2,
            model_channels: 32,
            channel_mult: vec![1, 2, 2, 4],
            num_res_blocks: 1,
            attention_resolutions: vec![16],
            num_heads: 1,
            num_head_channels: Some(32),
            num_heads_upsample: None,
            use_scale_shift_norm: true,
            resblock_updown: true,
            conv_resample: true,
            use_new_attention_order: false,
            dropout: 0.0,
        }
    }
}

impl UNetConfig {
    /// Checks that the network can be built: channels fit GroupNorm(32) and the heads, every
    /// attention resolution occurs, the image halves cleanly at every level.
    pub fn validate(&self) -> Result<()> {
        if self.channel_mult.is_empty() {
            return Err(Error::invalid("unet config: channel_mult is empty; expected at least one level, e.g. [1, 2, 2, 4]"));
        }
        if self.num_res_blocks == 0 {
            return Err(Error::invalid(
                "unet config: num_res_blocks is 0; expected at least 1",
            ));
        }
        if self.in_channels == 0 {
            return Err(Error::invalid(
                "unet config: in_channels is 0; expected 2 (real, imaginary)",
            ));
        }
        if self.out_channels != self.in_channels && self.out_channels != 2 * self.in_channels {
            return Err(Error::invalid(format!(
                "unet config: out_channels {} must equal in_channels {} (eps) or twice it (eps and learned variance)",
                self.out_channels, self.in_channels
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(format!(
                "unet config: dropout {} is outside [0, 1)",
                self.dropout
            )));
        }
        let levels = self.channel_mult.len();
        let factor = 1usize << (levels - 1);
        for (name, n) in [
            ("image_size", self.image_size),
            ("image_width", self.width()),
        ] {
            if n == 0 || !n.is_multiple_of(factor) {
                return Err(Error::invalid(format!(
                    "unet config: {name} {n} must be a positive multiple of {factor} (halved {} \
                     times by {levels} levels)",
                    levels - 1
                )));
            }
        }
        for (level, &mult) in self.channel_mult.iter().enumerate() {
            let ch = self.model_channels * mult;
            if ch == 0 || !ch.is_multiple_of(GROUPS) {
                return Err(Error::invalid(format!(
                    "unet config: level {level} has {ch} channels (model_channels {} x channel_mult {mult}), \
                     which is not a positive multiple of {GROUPS} as GroupNorm({GROUPS}) requires",
                    self.model_channels
                )));
            }
        }
        let reachable = self.resolutions();
        for &res in &self.attention_resolutions {
            if !reachable.contains(&res) {
                return Err(Error::invalid(format!(
                    "unet config: attention resolution {res} never occurs; with image_size {} and {levels} levels \
                     the feature maps are {reachable:?} pixels high",
                    self.image_size
                )));
            }
        }
        // Heads: every attention block (chosen levels and the middle block) must split evenly.
        let mut attn_channels: Vec<(String, usize, usize)> = Vec::new();
        for (level, &mult) in self.channel_mult.iter().enumerate() {
            if self
                .attention_resolutions
                .contains(&(self.image_size >> level))
            {
                let ch = self.model_channels * mult;
                attn_channels.push((format!("level {level}"), ch, self.num_heads));
                attn_channels.push((
                    format!("decoder level {level}"),
                    ch,
                    self.num_heads_upsample.unwrap_or(self.num_heads),
                ));
            }
        }
        let mid = self.model_channels * self.channel_mult[levels - 1];
        attn_channels.push(("middle block".into(), mid, self.num_heads));
        for (what, ch, heads) in attn_channels {
            match self.num_head_channels {
                Some(hc) => {
                    if hc == 0 || ch % hc != 0 {
                        return Err(Error::invalid(format!(
                            "unet config: attention in the {what} has {ch} channels, not divisible by num_head_channels {hc}"
                        )));
                    }
                }
                None => {
                    if heads == 0 || ch % heads != 0 {
                        return Err(Error::invalid(format!(
                            "unet config: attention in the {what} has {ch} channels, not divisible by {heads} heads"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Width of the input images: `image_width`, else `image_size` (square).
    pub fn width(&self) -> usize {
        self.image_width.unwrap_or(self.image_size)
    }

    /// Feature-map heights at each level (image_size, image_size / 2, ...).
    pub fn resolutions(&self) -> Vec<usize> {
        (0..self.channel_mult.len())
            .map(|l| self.image_size >> l)
            .collect()
    }

    /// Whether attention is applied at downsampling rate `ds` (1, 2, 4, ...).
    pub fn attention_at(&self, ds: usize) -> bool {
        self.attention_resolutions
            .iter()
            .any(|&r| r * ds == self.image_size)
    }

    /// Heads of an attention block with `channels` channels (`upsample`: in the decoder).
    pub fn heads(&self, channels: usize, upsample: bool) -> usize {
        match self.num_head_channels {
            Some(hc) => channels / hc,
            None if upsample => self.num_heads_upsample.unwrap_or(self.num_heads),
            None => self.num_heads,
        }
    }

    /// Channels of the timestep embedding (4 x model_channels).
    pub fn time_embed_dim(&self) -> usize {
        4 * self.model_channels
    }

    /// One-line human description, for metadata and logs.
    pub fn describe(&self) -> String {
        format!(
            "guided-diffusion UNetModel: image {0}x{12}, in {1}, out {2}, base {3}, mult {4:?}, {5} res-block(s)/level, \
             attention at {6:?} (head channels {7}, heads {8}), scale-shift norm {9}, resblock up/down {10}, \
             attention order {11}",
            self.image_size,
            self.in_channels,
            self.out_channels,
            self.model_channels,
            self.channel_mult,
            self.num_res_blocks,
            self.attention_resolutions,
            self.num_head_channels.map_or("-".to_string(), |c| c.to_string()),
            self.num_heads,
            self.use_scale_shift_norm,
            self.resblock_updown,
            if self.use_new_attention_order { "new" } else { "legacy" },
            self.width(),
        )
    }

    /// Reads a JSON architecture file (missing fields take the defaults).
    pub fn from_json_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: UNetConfig = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                path,
                format!("not a valid UNet architecture (JSON object with UNetConfig fields): {e}"),
            )
        })?;
        cfg.validate()
            .map_err(|e| Error::format(path, e.to_string()))?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::UNetConfig;

    #[test]
    fn both_sides_must_halve_cleanly_and_attention_is_named_by_height() {
        let square = UNetConfig::default();
        assert_eq!((square.image_size, square.width()), (128, 128));
        let wide = UNetConfig {
            image_width: Some(96),
            ..UNetConfig::default()
        };
        wide.validate().unwrap();
        assert!(wide.describe().contains("image 128x96"));
        // Four levels halve three times: 100 is not a multiple of 8.
        let e = UNetConfig {
            image_width: Some(100),
            ..UNetConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("image_width 100") && e.contains("multiple of 8"),
            "{e}"
        );
        // Attention resolutions are feature-map heights: 16 is 128 / 8, whatever the width.
        let e = UNetConfig {
            image_size: 96,
            image_width: Some(128),
            ..UNetConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("attention resolution 16 never occurs"), "{e}");
    }
}
