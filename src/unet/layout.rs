//! The block layout of a guided-diffusion `UNetModel`: which layers sit in `input_blocks.N`,
//! `middle_block` and `output_blocks.N`, with their channels. The tch network and the ONNX emitter
//! both walk this one description, so their parameter names cannot drift apart.

use super::config::UNetConfig;

/// Resampling done inside a residual block (`resblock_updown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpDown {
    /// Same resolution.
    None,
    /// Nearest-neighbour 2x upsampling of both paths.
    Up,
    /// 2x2 average pooling of both paths.
    Down,
}

/// One layer of a `TimestepEmbedSequential` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// The input 3x3 convolution (`input_blocks.0.0`).
    Conv {
        /// Input channels.
        cin: usize,
        /// Output channels.
        cout: usize,
    },
    /// A residual block (`in_layers`, `emb_layers`, `out_layers`, optional `skip_connection`).
    Res {
        /// Input channels.
        cin: usize,
        /// Output channels.
        cout: usize,
        /// Resampling inside the block.
        updown: UpDown,
    },
    /// Self-attention (`norm`, `qkv`, `proj_out`).
    Attn {
        /// Channels.
        ch: usize,
        /// Heads.
        heads: usize,
    },
    /// Plain downsampling (`op`: stride-2 3x3 conv, or 2x2 average pooling without parameters).
    Down {
        /// Channels.
        ch: usize,
        /// Whether `op` is a convolution.
        conv: bool,
    },
    /// Plain nearest 2x upsampling, optionally followed by a 3x3 conv (`conv`).
    Up {
        /// Channels.
        ch: usize,
        /// Whether a convolution follows.
        conv: bool,
    },
}

/// The whole network's layout.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `input_blocks`, each a list of layers.
    pub input_blocks: Vec<Vec<Layer>>,
    /// `middle_block` (ResBlock, AttentionBlock, ResBlock).
    pub middle_block: Vec<Layer>,
    /// `output_blocks`.
    pub output_blocks: Vec<Vec<Layer>>,
    /// Channels entering the final `out` GroupNorm + SiLU + conv.
    pub out_ch: usize,
}

impl Layout {
    /// Builds the layout exactly as guided-diffusion's `UNetModel.__init__` does.
    /// The config must have been validated.
    pub fn new(cfg: &UNetConfig) -> Layout {
        let mc = cfg.model_channels;
        let mut ch = cfg.channel_mult[0] * mc;
        let mut input_blocks = vec![vec![Layer::Conv {
            cin: cfg.in_channels,
            cout: ch,
        }]];
        let mut chans = vec![ch];
        let mut ds = 1;
        let levels = cfg.channel_mult.len();
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let cout = mult * mc;
                let mut layers = vec![Layer::Res {
                    cin: ch,
                    cout,
                    updown: UpDown::None,
                }];
                ch = cout;
                if cfg.attention_at(ds) {
                    layers.push(Layer::Attn {
                        ch,
                        heads: cfg.heads(ch, false),
                    });
                }
                input_blocks.push(layers);
                chans.push(ch);
            }
            if level != levels - 1 {
                let layer = if cfg.resblock_updown {
                    Layer::Res {
                        cin: ch,
                        cout: ch,
                        updown: UpDown::Down,
                    }
                } else {
                    Layer::Down {
                        ch,
                        conv: cfg.conv_resample,
                    }
                };
                input_blocks.push(vec![layer]);
                chans.push(ch);
                ds *= 2;
            }
        }
        let middle_block = vec![
            Layer::Res {
                cin: ch,
                cout: ch,
                updown: UpDown::None,
            },
            Layer::Attn {
                ch,
                heads: cfg.heads(ch, false),
            },
            Layer::Res {
                cin: ch,
                cout: ch,
                updown: UpDown::None,
            },
        ];
        let mut output_blocks = Vec::new();
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let ich = chans.pop().expect("skip channels follow the encoder");
                let cout = mc * mult;
                let mut layers = vec![Layer::Res {
                    cin: ch + ich,
                    cout,
                    updown: UpDown::None,
                }];
                ch = cout;
                if cfg.attention_at(ds) {
                    layers.push(Layer::Attn {
                        ch,
                        heads: cfg.heads(ch, true),
                    });
                }
                if level > 0 && i == cfg.num_res_blocks {
                    layers.push(if cfg.resblock_updown {
                        Layer::Res {
                            cin: ch,
                            cout: ch,
                            updown: UpDown::Up,
                        }
                    } else {
                        Layer::Up {
                            ch,
                            conv: cfg.conv_resample,
                        }
                    });
                    ds /= 2;
                }
                output_blocks.push(layers);
            }
        }
        Layout {
            input_blocks,
            middle_block,
            output_blocks,
            out_ch: ch,
        }
    }
}
