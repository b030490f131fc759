//! The guided-diffusion `UNetModel` in tch, with the same parameter names and shapes as its
//! PyTorch `state_dict` (`time_embed.0.weight`, `input_blocks.1.0.in_layers.2.weight`, ...).

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::config::{UNetConfig, GROUPS};
use crate::layout::{Layer, Layout, UpDown};
use msm::Result;

/// Sinusoidal timestep embedding of guided-diffusion (`timestep_embedding`): `[cos, sin]` of
/// `t * 10000^(-i/half)`, zero-padded to `dim` when odd. `t`: `[N]` float.
pub fn timestep_embedding(t: &Tensor, dim: usize) -> Tensor {
    let half = (dim / 2) as i64;
    let freqs =
        (Tensor::arange(half, (Kind::Float, t.device())) * (-(10000f64.ln()) / half as f64)).exp();
    let args = t.to_kind(Kind::Float).unsqueeze(1) * freqs.unsqueeze(0);
    let emb = Tensor::cat(&[args.cos(), args.sin()], 1);
    if dim % 2 == 1 {
        Tensor::cat(&[&emb, &emb.narrow(1, 0, 1).zeros_like()], 1)
    } else {
        emb
    }
}

/// The number format the network's 2-D convolutions compute in.
///
/// `Bf16` is mixed precision, like PyTorch's CPU autocast for convolutions except that each
/// returns f32: each convolution rounds its input, weights and bias to bf16; the parameters, their
/// gradients, the optimizer state and the EMA stay f32, and the normalisations, attention,
/// embeddings and losses run in f32. On CPUs with bf16 units (AMX, AVX512-BF16) libtorch's
/// oneDNN convolutions then run on them; elsewhere they are emulated and slower than f32.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// 2-D convolutions in bf16 with f32 results (mixed precision).
    Bf16,
}

impl Precision {
    fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }
}

/// A 2-D convolution that remembers its stride (tch keeps its own config private), so that it
/// can also run in another number format. Padding is "same" (`kernel / 2`).
#[derive(Debug)]
struct Conv {
    c: nn::Conv2D,
    stride: i64,
}

impl Conv {
    fn forward(&self, x: &Tensor, kind: Kind) -> Tensor {
        if kind == Kind::Float {
            return self.c.forward(x);
        }
        let pad = self.c.ws.size()[2] / 2;
        let bias = self.c.bs.as_ref().map(|b| b.to_kind(kind));
        x.to_kind(kind)
            .conv2d(
                &self.c.ws.to_kind(kind),
                bias.as_ref(),
                [self.stride; 2],
                [pad; 2],
                [1, 1],
                1,
            )
            .to_kind(Kind::Float)
    }
}

fn group_norm(p: nn::Path, ch: usize) -> nn::GroupNorm {
    nn::group_norm(p, GROUPS as i64, ch as i64, Default::default())
}

fn conv3(p: nn::Path, cin: usize, cout: usize, stride: i64, zero: bool) -> Conv {
    let mut cfg = nn::ConvConfig {
        padding: 1,
        stride,
        ..Default::default()
    };
    if zero {
        cfg.ws_init = nn::Init::Const(0.0);
        cfg.bs_init = nn::Init::Const(0.0);
    }
    Conv {
        c: nn::conv2d(p, cin as i64, cout as i64, 3, cfg),
        stride,
    }
}

fn conv1d(p: nn::Path, cin: usize, cout: usize, zero: bool) -> nn::Conv1D {
    let mut cfg = nn::ConvConfig::default();
    if zero {
        cfg.ws_init = nn::Init::Const(0.0);
        cfg.bs_init = nn::Init::Const(0.0);
    }
    nn::conv1d(p, cin as i64, cout as i64, 1, cfg)
}

fn resample(x: &Tensor, updown: UpDown) -> Tensor {
    match updown {
        UpDown::None => x.shallow_clone(),
        UpDown::Up => {
            let (h, w) = (x.size()[2], x.size()[3]);
            x.upsample_nearest2d([2 * h, 2 * w], None, None)
        }
        UpDown::Down => x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None),
    }
}

/// guided-diffusion `ResBlock`.
#[derive(Debug)]
struct ResBlock {
    in_norm: nn::GroupNorm,
    in_conv: Conv,
    emb: nn::Linear,
    out_norm: nn::GroupNorm,
    out_conv: Conv,
    skip: Option<Conv>,
    updown: UpDown,
    scale_shift: bool,
    dropout: f64,
}

impl ResBlock {
    fn new(p: nn::Path, cin: usize, cout: usize, updown: UpDown, cfg: &UNetConfig) -> Self {
        let emb_out = if cfg.use_scale_shift_norm {
            2 * cout
        } else {
            cout
        };
        ResBlock {
            in_norm: group_norm(&p / "in_layers" / 0, cin),
            in_conv: conv3(&p / "in_layers" / 2, cin, cout, 1, false),
            emb: nn::linear(
                &p / "emb_layers" / 1,
                cfg.time_embed_dim() as i64,
                emb_out as i64,
                Default::default(),
            ),
            out_norm: group_norm(&p / "out_layers" / 0, cout),
            out_conv: conv3(&p / "out_layers" / 3, cout, cout, 1, true),
            skip: (cin != cout).then(|| Conv {
                c: nn::conv2d(
                    &p / "skip_connection",
                    cin as i64,
                    cout as i64,
                    1,
                    Default::default(),
                ),
                stride: 1,
            }),
            updown,
            scale_shift: cfg.use_scale_shift_norm,
            dropout: cfg.dropout,
        }
    }

    fn forward(&self, x: &Tensor, emb: &Tensor, train: bool, kind: Kind) -> Tensor {
        let h = self.in_norm.forward(x).silu();
        let h = resample(&h, self.updown);
        let x = resample(x, self.updown);
        let h = self.in_conv.forward(&h, kind);
        let e = self.emb.forward(&emb.silu()).unsqueeze(-1).unsqueeze(-1);
        let h = if self.scale_shift {
            let parts = e.chunk(2, 1);
            self.out_norm.forward(&h) * (1.0 + &parts[0]) + &parts[1]
        } else {
            self.out_norm.forward(&(h + e))
        };
        let h = h.silu().dropout(self.dropout, train);
        let h = self.out_conv.forward(&h, kind);
        match &self.skip {
            Some(s) => s.forward(&x, kind) + h,
            None => x + h,
        }
    }
}

/// guided-diffusion `AttentionBlock` (legacy or new q/k/v order).
#[derive(Debug)]
struct AttentionBlock {
    norm: nn::GroupNorm,
    qkv: nn::Conv1D,
    proj: nn::Conv1D,
    heads: i64,
    new_order: bool,
}

impl AttentionBlock {
    fn new(p: nn::Path, ch: usize, heads: usize, new_order: bool) -> Self {
        AttentionBlock {
            norm: group_norm(&p / "norm", ch),
            qkv: conv1d(&p / "qkv", ch, 3 * ch, false),
            proj: conv1d(&p / "proj_out", ch, ch, true),
            heads: heads as i64,
            new_order,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let size = x.size();
        let (b, c) = (size[0], size[1]);
        let x = x.reshape([b, c, -1]);
        let t = x.size()[2];
        let qkv = self.qkv.forward(&self.norm.forward(&x));
        let ch = c / self.heads;
        let (q, k, v) = if self.new_order {
            let p = qkv.chunk(3, 1);
            (
                p[0].reshape([b * self.heads, ch, t]),
                p[1].reshape([b * self.heads, ch, t]),
                p[2].reshape([b * self.heads, ch, t]),
            )
        } else {
            let p = qkv.reshape([b * self.heads, 3 * ch, t]).split(ch, 1);
            (
                p[0].shallow_clone(),
                p[1].shallow_clone(),
                p[2].shallow_clone(),
            )
        };
        let scale = 1.0 / (ch as f64).sqrt().sqrt();
        let w = (q * scale).transpose(1, 2).matmul(&(k * scale));
        let w = w.softmax(-1, Kind::Float);
        let a = v.matmul(&w.transpose(1, 2)).reshape([b, c, t]);
        (x + self.proj.forward(&a)).reshape(size.as_slice())
    }
}

/// One layer of a block.
#[derive(Debug)]
enum Unit {
    Conv(Conv),
    Res(Box<ResBlock>),
    Attn(Box<AttentionBlock>),
    Pool,
    Up(Option<Conv>),
}

impl Unit {
    fn new(p: nn::Path, layer: &Layer, cfg: &UNetConfig) -> Unit {
        match *layer {
            Layer::Conv { cin, cout } => Unit::Conv(conv3(p, cin, cout, 1, false)),
            Layer::Res { cin, cout, updown } => {
                Unit::Res(Box::new(ResBlock::new(p, cin, cout, updown, cfg)))
            }
            Layer::Attn { ch, heads } => Unit::Attn(Box::new(AttentionBlock::new(
                p,
                ch,
                heads,
                cfg.use_new_attention_order,
            ))),
            Layer::Down { ch, conv: true } => Unit::Conv(conv3(&p / "op", ch, ch, 2, false)),
            Layer::Down { conv: false, .. } => Unit::Pool,
            Layer::Up { ch, conv } => Unit::Up(conv.then(|| conv3(&p / "conv", ch, ch, 1, false))),
        }
    }

    fn forward(&self, x: &Tensor, emb: &Tensor, train: bool, kind: Kind) -> Tensor {
        match self {
            Unit::Conv(c) => c.forward(x, kind),
            Unit::Res(r) => r.forward(x, emb, train, kind),
            Unit::Attn(a) => a.forward(x),
            Unit::Pool => resample(x, UpDown::Down),
            Unit::Up(conv) => {
                let h = resample(x, UpDown::Up);
                match conv {
                    Some(c) => c.forward(&h, kind),
                    None => h,
                }
            }
        }
    }
}

fn block(p: nn::Path, layers: &[Layer], cfg: &UNetConfig) -> Vec<Unit> {
    layers
        .iter()
        .enumerate()
        .map(|(j, l)| Unit::new(&p / j, l, cfg))
        .collect()
}

fn run(block: &[Unit], x: &Tensor, emb: &Tensor, train: bool, kind: Kind) -> Tensor {
    block
        .iter()
        .fold(x.shallow_clone(), |h, u| u.forward(&h, emb, train, kind))
}

/// The UNet: `forward(x [N, C, H, W], t [N]) -> [N, out_channels, H, W]`.
#[derive(Debug)]
pub struct UNet {
    cfg: UNetConfig,
    time0: nn::Linear,
    time2: nn::Linear,
    input_blocks: Vec<Vec<Unit>>,
    middle: Vec<Unit>,
    output_blocks: Vec<Vec<Unit>>,
    out_norm: nn::GroupNorm,
    out_conv: Conv,
    precision: Precision,
}

impl UNet {
    /// Creates the network's parameters under `p` (normally a `VarStore`'s root), initialised as
    /// guided-diffusion does (the last conv of each residual branch and of the output zeroed).
    /// Fails with a clear message on an invalid configuration.
    pub fn new(p: &nn::Path, cfg: &UNetConfig) -> Result<UNet> {
        cfg.validate()?;
        let layout = Layout::new(cfg);
        let mc = cfg.model_channels as i64;
        let ted = cfg.time_embed_dim() as i64;
        Ok(UNet {
            cfg: cfg.clone(),
            time0: nn::linear(p / "time_embed" / 0, mc, ted, Default::default()),
            time2: nn::linear(p / "time_embed" / 2, ted, ted, Default::default()),
            input_blocks: layout
                .input_blocks
                .iter()
                .enumerate()
                .map(|(i, b)| block(p / "input_blocks" / i, b, cfg))
                .collect(),
            middle: block(p / "middle_block", &layout.middle_block, cfg),
            output_blocks: layout
                .output_blocks
                .iter()
                .enumerate()
                .map(|(i, b)| block(p / "output_blocks" / i, b, cfg))
                .collect(),
            out_norm: group_norm(p / "out" / 0, layout.out_ch),
            out_conv: conv3(p / "out" / 2, layout.out_ch, cfg.out_channels, 1, true),
            precision: Precision::F32,
        })
    }

    /// Sets the number format of the convolutions (f32 when new).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// The number format of the convolutions.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The architecture.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// Runs the network. `train` enables dropout.
    pub fn forward_t(&self, x: &Tensor, t: &Tensor, train: bool) -> Tensor {
        let kind = self.precision.kind();
        let emb = timestep_embedding(t, self.cfg.model_channels);
        let emb = self.time2.forward(&self.time0.forward(&emb).silu());
        let mut hs = Vec::with_capacity(self.input_blocks.len());
        let mut h = x.shallow_clone();
        for b in &self.input_blocks {
            h = run(b, &h, &emb, train, kind);
            hs.push(h.shallow_clone());
        }
        h = run(&self.middle, &h, &emb, train, kind);
        for b in &self.output_blocks {
            let skip = hs.pop().expect("one skip per output block");
            h = run(b, &Tensor::cat(&[&h, &skip], 1), &emb, train, kind);
        }
        self.out_conv
            .forward(&self.out_norm.forward(&h).silu(), kind)
    }

    /// The eps prediction: the first `in_channels` output channels (all of them unless the
    /// network also predicts a variance).
    pub fn eps(&self, x: &Tensor, t: &Tensor, train: bool) -> Tensor {
        let out = self.forward_t(x, t, train);
        if self.cfg.out_channels == self.cfg.in_channels {
            out
        } else {
            out.narrow(1, 0, self.cfg.in_channels as i64)
        }
    }
}
