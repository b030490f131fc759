//! [`NativeUNet`]: the guided-diffusion UNet run directly on this crate's kernels
//! ([`super::kernels`]), one image at a time.
//!
//! It computes the same function as the ONNX graph [`super::emit`] writes for the same
//! [`UNetConfig`] and weights (the graph form tract runs), op for op in the same order:
//! the timestep embedding, the residual blocks (GroupNorm, SiLU, resampling, 3x3 convolutions,
//! scale-shift conditioning, 1x1 skip), the attention blocks (q, k, v per head, softmax), the
//! skip concatenations and the output head. What differs is only rounding: GroupNorm statistics
//! are summed in f64, the affine, scale-shift and SiLU are fused into one pass, and the
//! exponential is a polynomial (about 2 ulp).

use super::config::{UNetConfig, GROUPS};
use super::kernels::{
    add_assign, add_upsampled, avgpool2, buffer, concat, matmul, matmul_at, pool_normed, recycle,
    silu, softmax_cols, upsample2, zeros, Conv, Dense, GroupNorm, NormEpilogue,
};
use super::layout::{Layer, Layout, UpDown};
use crate::{Error, Result};

/// Whether [`NativeUNet::use_bf16`] can run here (AMX tiles or AVX512-BF16).
pub fn bf16_available() -> bool {
    super::kernels::bf16_units().is_some()
}

/// Where [`NativeUNet::new`] gets its parameters: `get(name, shape)` returns the f32 values of
/// the weight `name` (the emitted graph's weight names, see [`super::emit`]) and checks that it
/// has shape `shape`.
pub trait WeightSource {
    /// The values of weight `name`, which must have shape `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
}

/// A residual block.
#[derive(Debug, Clone)]
struct ResBlock {
    in_norm: GroupNorm,
    in_conv: Conv,
    /// `emb_layers.1`: `[2 cout, ted]` (scale rows, then shift rows) or `[cout, ted]`.
    emb: Dense,
    out_norm: GroupNorm,
    out_conv: Conv,
    skip: Option<Conv>,
    updown: UpDown,
    scale_shift: bool,
}

/// An attention block.
#[derive(Debug, Clone)]
struct Attention {
    norm: GroupNorm,
    /// q, k and v weights `[ch, ch]` with rows ordered head by head.
    q: Dense,
    k: Dense,
    v: Dense,
    proj: Dense,
    heads: usize,
    /// The q, k, v and output projections' bf16 weight pairs, in that order (the bf16
    /// executor's; empty otherwise): with them the projections, logits and value products
    /// run on the bf16 pointwise kernel, and the four projections' f32 weights are dropped.
    pairs: Vec<Vec<u32>>,
}

#[derive(Debug, Clone)]
enum Unit {
    Conv(Conv),
    Res(Box<ResBlock>),
    Attn(Box<Attention>),
    /// Plain downsampling: a stride-2 convolution, or average pooling.
    Down(Option<Conv>),
    /// Plain upsampling, optionally followed by a convolution.
    Up(Option<Conv>),
}

/// The guided-diffusion UNet with its weights in f32, ready to run.
#[derive(Debug, Clone)]
pub struct NativeUNet {
    cfg: UNetConfig,
    time0: Dense,
    time2: Dense,
    input_blocks: Vec<Vec<Unit>>,
    middle: Vec<Unit>,
    output_blocks: Vec<Vec<Unit>>,
    out_norm: GroupNorm,
    out_conv: Conv,
    /// Convolutions running in bf16.
    bf16_convs: usize,
    /// Convolutions with the F(4x4) Winograd form ([`NativeUNet::use_fast`]).
    fast_convs: usize,
}

/// An activation `[c, h, w]`.
struct Act {
    data: Vec<f32>,
    c: usize,
    h: usize,
    w: usize,
}

fn norm(src: &dyn WeightSource, prefix: &str, dims: &[usize]) -> Result<GroupNorm> {
    Ok(GroupNorm {
        gamma: src.get(&format!("{prefix}.weight"), dims)?,
        beta: src.get(&format!("{prefix}.bias"), dims)?,
        groups: GROUPS,
    })
}

fn conv(
    src: &dyn WeightSource,
    prefix: &str,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
) -> Result<Conv> {
    Ok(Conv::new(
        src.get(&format!("{prefix}.weight"), &[cout, cin, k, k])?,
        src.get(&format!("{prefix}.bias"), &[cout])?,
        cin,
        cout,
        k,
        stride,
    ))
}

fn dense(
    src: &dyn WeightSource,
    weight: &str,
    bias: &str,
    dout: usize,
    din: usize,
    bias_dims: &[usize],
) -> Result<Dense> {
    Ok(Dense {
        weight: src.get(weight, &[dout, din])?,
        bias: src.get(bias, bias_dims)?,
        din,
        dout,
    })
}

impl NativeUNet {
    /// Builds the network `cfg` (validated here) with the weights from `src`; fails if a weight
    /// is missing or has another shape than the configuration implies.
    pub fn new(cfg: &UNetConfig, src: &dyn WeightSource) -> Result<NativeUNet> {
        cfg.validate()?;
        if cfg.in_channels != 2 {
            return Err(Error::invalid(format!(
                "the network takes {} input channels; MSM models take 2 (real, imaginary)",
                cfg.in_channels
            )));
        }
        let layout = Layout::new(cfg);
        let mc = cfg.model_channels;
        let ted = cfg.time_embed_dim();
        let time0 = dense(
            src,
            "time_embed.0.weight",
            "time_embed.0.bias",
            ted,
            mc,
            &[ted],
        )?;
        let time2 = dense(
            src,
            "time_embed.2.weight",
            "time_embed.2.bias",
            ted,
            ted,
            &[ted],
        )?;
        let block = |p: &str, layers: &[Layer]| -> Result<Vec<Unit>> {
            layers
                .iter()
                .enumerate()
                .map(|(j, l)| unit(cfg, src, &format!("{p}.{j}"), l))
                .collect()
        };
        let input_blocks = layout
            .input_blocks
            .iter()
            .enumerate()
            .map(|(i, b)| block(&format!("input_blocks.{i}"), b))
            .collect::<Result<_>>()?;
        let middle = block("middle_block", &layout.middle_block)?;
        let output_blocks = layout
            .output_blocks
            .iter()
            .enumerate()
            .map(|(i, b)| block(&format!("output_blocks.{i}"), b))
            .collect::<Result<_>>()?;
        let oc = layout.out_ch;
        let mut net = NativeUNet {
            cfg: cfg.clone(),
            time0,
            time2,
            input_blocks,
            middle,
            output_blocks,
            out_norm: norm(src, "out.0", &[oc, 1, 1])?,
            out_conv: conv(src, "out.2", oc, cfg.in_channels, 3, 1)?,
            bf16_convs: 0,
            fast_convs: 0,
        };
        net.use_winograd();
        Ok(net)
    }

    /// Every unit of the encoder, the middle block and the decoder, in the order a pass runs
    /// them.
    fn units_mut(&mut self) -> impl Iterator<Item = &mut Unit> {
        self.input_blocks
            .iter_mut()
            .chain(std::iter::once(&mut self.middle))
            .chain(&mut self.output_blocks)
            .flatten()
    }

    /// Gives the residual blocks' and the upsampling units' 3x3 convolutions their Winograd
    /// form ([`Conv::use_winograd`]) where the size they run at takes it (128, 64, 32 and 16
    /// pixels in the shipped model: all its convolution work but the ends). The input and output
    /// convolutions keep the direct kernel: with 2 image channels on one side, the transforms
    /// would cost more than the products they save.
    fn use_winograd(&mut self) {
        self.each_inner_conv(|c, h, w| {
            c.use_winograd(h, w);
        });
    }

    /// Calls `f(conv, h, w)` for the residual blocks' and the upsampling units' 3x3
    /// convolutions, with the input size each runs at in a pass at the model's image size.
    fn each_inner_conv(&mut self, mut f: impl FnMut(&mut Conv, usize, usize)) {
        let (mut h, mut w) = (self.cfg.image_size, self.cfg.width());
        for u in self.units_mut() {
            match u {
                Unit::Conv(_) | Unit::Attn(_) => {}
                Unit::Down(_) => (h, w) = (h / 2, w / 2),
                Unit::Up(c) => {
                    (h, w) = (2 * h, 2 * w);
                    if let Some(c) = c {
                        f(c, h, w);
                    }
                }
                Unit::Res(r) => {
                    match r.updown {
                        UpDown::Up => (h, w) = (2 * h, 2 * w),
                        UpDown::Down => (h, w) = (h / 2, w / 2),
                        UpDown::None => {}
                    }
                    f(&mut r.in_conv, h, w);
                    f(&mut r.out_conv, h, w);
                }
            }
        }
    }

    /// The fast executor: [`NativeUNet::use_bf16`], and the residual blocks' and upsampling
    /// units' 3x3 convolutions at sizes Winograd F(4x4, 3x3) fits (64 and 128 pixels in the
    /// shipped model: [`Conv::use_winograd4`]) on that bf16 form. Its network output is
    /// further from f32 than the bf16 executor's (see `docs/performance.md`); it is held to
    /// the reconstruction's PSNR instead (`tests/fast_executor.rs`). Returns how many
    /// convolutions run in bf16 and how many of them on F(4x4), or an error when this CPU has
    /// no bf16 units.
    pub fn use_fast(&mut self) -> Result<(usize, usize)> {
        if !super::winograd4_available() {
            return Err(Error::invalid(format!(
                "the fast executor needs a CPU with AVX512-BF16 (AMD Zen 4 or later, Intel \
                 Cooper Lake Xeons or later); {} (use the f32 native executor)",
                super::kernels::missing_avx512_reason()
            )));
        }
        let mut n4 = 0;
        self.each_inner_conv(|c, h, w| n4 += usize::from(c.use_winograd4(h, w)));
        let n = self.use_bf16()?;
        self.fast_convs = n4;
        Ok((n, n4))
    }

    /// Runs the 3x3 convolutions in bf16 (inputs and weights rounded to bf16, f32 sums) on
    /// the CPU's bf16 units ([`super::kernels::bf16_units`]: AMX tiles where the channel counts
    /// fit them, else AVX512-BF16 registers), except the input and output ones; everything
    /// else stays f32. Returns how many
    /// convolutions switched, or an error when this CPU has neither.
    pub fn use_bf16(&mut self) -> Result<usize> {
        if !bf16_available() {
            return Err(Error::invalid(format!(
                "bf16 convolutions need a CPU with AMX-BF16 (Intel Xeon 4th generation or \
                 later, Linux 5.16 or later) or AVX512-BF16 (AMD Zen 4 or later, Intel Cooper \
                 Lake Xeons); {} (use the f32 native executor)",
                super::kernels::missing_avx512_reason()
            )));
        }
        let mut n = 0;
        let mut switch = |c: &mut Conv| n += usize::from(c.use_bf16());
        for u in self.units_mut() {
            match u {
                // The input convolution (image channels in) and, below, the output one
                // (predicted noise out) stay f32: they cost under 1% of a pass, and in bf16
                // they tripled the output error on the shipped model (rms 0.6% to 1.9% at
                // t = 250).
                Unit::Conv(_) => {}
                Unit::Down(Some(c)) | Unit::Up(Some(c)) => switch(c),
                Unit::Res(r) => {
                    switch(&mut r.in_conv);
                    // The 1x1 skip convolutions stay f32: they carry the residual stream, and
                    // in bf16 they raised the output error on the shipped model from 0.5% to
                    // 2.4% (rms).
                    switch(&mut r.out_conv);
                }
                // Attention in bf16 (its four projections, logits and value products, sums
                // f32): output error on the shipped model rms 0.744% -> 0.747% at t = 250.
                #[cfg(target_arch = "x86_64")]
                Unit::Attn(a) if super::pointwise::bf16_available() => {
                    let c = a.q.din;
                    a.pairs = [&a.q, &a.k, &a.v, &a.proj]
                        .iter()
                        .map(|d| super::pointwise::bf16_weights(&d.weight, c))
                        .collect();
                    // The f32 weights are not read again: the pairs replace them.
                    for d in [&mut a.q, &mut a.k, &mut a.v, &mut a.proj] {
                        d.weight = Vec::new();
                    }
                }
                Unit::Attn(_) | Unit::Down(None) | Unit::Up(None) => {}
            }
        }
        self.bf16_convs = n;
        Ok(n)
    }

    /// Whether [`NativeUNet::use_bf16`] switched any convolution.
    pub fn uses_bf16(&self) -> bool {
        self.bf16_convs > 0
    }

    /// Whether [`NativeUNet::use_fast`] gave any convolution the F(4x4) form.
    pub fn uses_fast(&self) -> bool {
        self.fast_convs > 0
    }

    /// The architecture.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// Number of f32 parameters held.
    pub fn parameter_count(&self) -> usize {
        fn conv_n(c: &Conv) -> usize {
            c.len()
        }
        fn dense_n(d: &Dense) -> usize {
            d.din * d.dout + d.bias.len()
        }
        fn norm_n(n: &GroupNorm) -> usize {
            n.gamma.len() + n.beta.len()
        }
        let unit_n = |u: &Unit| match u {
            Unit::Conv(c) => conv_n(c),
            Unit::Res(r) => {
                norm_n(&r.in_norm)
                    + conv_n(&r.in_conv)
                    + dense_n(&r.emb)
                    + norm_n(&r.out_norm)
                    + conv_n(&r.out_conv)
                    + r.skip.as_ref().map_or(0, conv_n)
            }
            Unit::Attn(a) => {
                norm_n(&a.norm) + dense_n(&a.q) + dense_n(&a.k) + dense_n(&a.v) + dense_n(&a.proj)
            }
            Unit::Down(c) | Unit::Up(c) => c.as_ref().map_or(0, conv_n),
        };
        let blocks: usize = self
            .input_blocks
            .iter()
            .chain(std::iter::once(&self.middle))
            .chain(&self.output_blocks)
            .flatten()
            .map(unit_n)
            .sum();
        dense_n(&self.time0)
            + dense_n(&self.time2)
            + blocks
            + norm_n(&self.out_norm)
            + conv_n(&self.out_conv)
    }

    /// Floating-point operations of one pass for one image (multiply-adds count two; the
    /// matrix products and convolutions only, which are all but a fraction of a percent).
    pub fn flops(&self) -> f64 {
        fn conv_f(c: &Conv, h: usize, w: usize) -> (f64, usize, usize) {
            let (oh, ow) = c.out_size(h, w);
            let f = 2.0 * (c.cout * c.cin * c.k * c.k * oh * ow) as f64;
            (f, oh, ow)
        }
        fn unit_f(u: &Unit, c: &mut usize, h: &mut usize, w: &mut usize) -> f64 {
            match u {
                Unit::Conv(k) | Unit::Down(Some(k)) => {
                    let (f, oh, ow) = conv_f(k, *h, *w);
                    (*c, *h, *w) = (k.cout, oh, ow);
                    f
                }
                Unit::Down(None) => {
                    (*h, *w) = (*h / 2, *w / 2);
                    0.0
                }
                Unit::Up(k) => {
                    (*h, *w) = (*h * 2, *w * 2);
                    k.as_ref().map_or(0.0, |k| conv_f(k, *h, *w).0)
                }
                Unit::Res(r) => {
                    let (mut hh, mut ww) = (*h, *w);
                    match r.updown {
                        UpDown::Up => (hh, ww) = (hh * 2, ww * 2),
                        UpDown::Down => (hh, ww) = (hh / 2, ww / 2),
                        UpDown::None => {}
                    }
                    let mut f = conv_f(&r.in_conv, hh, ww).0 + conv_f(&r.out_conv, hh, ww).0;
                    f += r.skip.as_ref().map_or(0.0, |s| conv_f(s, hh, ww).0);
                    f += 2.0 * (r.emb.din * r.emb.dout) as f64;
                    (*c, *h, *w) = (r.in_conv.cout, hh, ww);
                    f
                }
                Unit::Attn(_) => {
                    let t = (*h * *w) as f64;
                    let ch = *c as f64;
                    // q, k, v and the projection; logits and the weighted sum per head.
                    4.0 * 2.0 * ch * ch * t + 2.0 * 2.0 * ch * t * t
                }
            }
        }
        let (mut c, mut h, mut w) = (self.cfg.in_channels, self.cfg.image_size, self.cfg.width());
        let mut total =
            2.0 * (self.time0.din * self.time0.dout + self.time2.din * self.time2.dout) as f64;
        let mut skips = Vec::new();
        for b in &self.input_blocks {
            for u in b {
                total += unit_f(u, &mut c, &mut h, &mut w);
            }
            skips.push(c);
        }
        for u in &self.middle {
            total += unit_f(u, &mut c, &mut h, &mut w);
        }
        for b in &self.output_blocks {
            c += skips.pop().unwrap_or(0);
            for u in b {
                total += unit_f(u, &mut c, &mut h, &mut w);
            }
        }
        total + conv_f(&self.out_conv, h, w).0
    }

    /// The noise estimate for one image `x` (`[2, H, W]` row-major, `H = image_size`, `W` its
    /// width) at timestep `t`; returns `[2, H, W]`.
    pub fn eps(&self, x: &[f32], t: f32) -> Result<Vec<f32>> {
        let (rows, cols) = (self.cfg.image_size, self.cfg.width());
        let c = self.cfg.in_channels;
        if x.len() != c * rows * cols {
            return Err(Error::invalid(format!(
                "native UNet input has {} values; expected {c} x {rows} x {cols}",
                x.len()
            )));
        }
        let emb = self.time_embedding(t);
        let mut h = Act {
            data: x.to_vec(),
            c,
            h: rows,
            w: cols,
        };
        // Each input block's output is kept for the decoder: it is the next unit's input as
        // well, so it moves into `skips` when that unit has run instead of being copied.
        let mut skips: Vec<Act> = Vec::with_capacity(self.input_blocks.len());
        let mut keep = false;
        for b in &self.input_blocks {
            for u in b {
                advance(u, &mut h, &mut keep, &mut skips, &emb);
            }
            keep = true;
        }
        for u in &self.middle {
            advance(u, &mut h, &mut keep, &mut skips, &emb);
        }
        if keep {
            let mut copy = buffer(h.data.len());
            copy.extend_from_slice(&h.data);
            skips.push(Act { data: copy, ..h });
        }
        for b in &self.output_blocks {
            let skip = skips.pop().ok_or_else(|| {
                Error::invalid("native UNet: decoder has more blocks than the encoder")
            })?;
            let mut units = b.iter();
            // The first unit reads the input and the skip in place where it is a residual
            // block that does not resample (every decoder block of guided-diffusion's UNet);
            // anything else gets their concatenation.
            let y = match units.next() {
                Some(Unit::Res(r)) if r.updown == UpDown::None => run_res_parts(r, &h, &skip, &emb),
                first => {
                    let x = Act {
                        data: concat(&h.data, &skip.data),
                        c: h.c + skip.c,
                        h: h.h,
                        w: h.w,
                    };
                    match first {
                        Some(u) => {
                            let y = run_unit(u, &x, &emb);
                            recycle(x.data);
                            y
                        }
                        None => x,
                    }
                }
            };
            recycle(std::mem::replace(&mut h, y).data);
            recycle(skip.data);
            for u in units {
                let y = run_unit(u, &h, &emb);
                recycle(std::mem::replace(&mut h, y).data);
            }
        }
        let plane = h.h * h.w;
        let coef = self.out_norm.coefficients(&h.data, plane, NORM_SILU);
        let out = self.out_conv.forward_normed(&h.data, h.h, h.w, &coef, true);
        recycle(h.data);
        Ok(out)
    }

    /// SiLU of the timestep embedding: `silu(W2 silu(W0 [cos, sin](t f) + b0) + b2)`, which every
    /// residual block's `emb_layers` starts with.
    fn time_embedding(&self, t: f32) -> Vec<f32> {
        let mc = self.cfg.model_channels;
        let half = mc / 2;
        let args: Vec<f32> = (0..half)
            .map(|i| t * (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
            .collect();
        let mut e: Vec<f32> = args.iter().map(|a| a.cos()).collect();
        e.extend(args.iter().map(|a| a.sin()));
        e.resize(mc, 0.0);
        let mut h = self.time0.apply(&e);
        silu(&mut h);
        let mut emb = self.time2.apply(&h);
        silu(&mut emb);
        emb
    }
}

fn unit(cfg: &UNetConfig, src: &dyn WeightSource, p: &str, layer: &Layer) -> Result<Unit> {
    Ok(match *layer {
        Layer::Conv { cin, cout } => Unit::Conv(conv(src, p, cin, cout, 3, 1)?),
        Layer::Res { cin, cout, updown } => {
            let ted = cfg.time_embed_dim();
            let emb_p = format!("{p}.emb_layers.1");
            let emb = if cfg.use_scale_shift_norm {
                let sc = dense(
                    src,
                    &format!("{emb_p}.weight.scale"),
                    &format!("{emb_p}.bias.scale"),
                    cout,
                    ted,
                    &[cout],
                )?;
                let sh = dense(
                    src,
                    &format!("{emb_p}.weight.shift"),
                    &format!("{emb_p}.bias.shift"),
                    cout,
                    ted,
                    &[cout],
                )?;
                Dense {
                    weight: [sc.weight, sh.weight].concat(),
                    bias: [sc.bias, sh.bias].concat(),
                    din: ted,
                    dout: 2 * cout,
                }
            } else {
                dense(
                    src,
                    &format!("{emb_p}.weight"),
                    &format!("{emb_p}.bias"),
                    cout,
                    ted,
                    &[cout],
                )?
            };
            Unit::Res(Box::new(ResBlock {
                in_norm: norm(src, &format!("{p}.in_layers.0"), &[cin, 1, 1])?,
                in_conv: conv(src, &format!("{p}.in_layers.2"), cin, cout, 3, 1)?,
                emb,
                out_norm: norm(src, &format!("{p}.out_layers.0"), &[cout, 1, 1])?,
                out_conv: conv(src, &format!("{p}.out_layers.3"), cout, cout, 3, 1)?,
                skip: if cin == cout {
                    None
                } else {
                    Some(conv(src, &format!("{p}.skip_connection"), cin, cout, 1, 1)?)
                },
                updown,
                scale_shift: cfg.use_scale_shift_norm,
            }))
        }
        Layer::Attn { ch, heads } => {
            let qkv = |part: &str| {
                dense(
                    src,
                    &format!("{p}.qkv.weight.{part}"),
                    &format!("{p}.qkv.bias.{part}"),
                    ch,
                    ch,
                    &[ch, 1],
                )
            };
            Unit::Attn(Box::new(Attention {
                norm: norm(src, &format!("{p}.norm"), &[ch, 1])?,
                q: qkv("q")?,
                k: qkv("k")?,
                v: qkv("v")?,
                proj: dense(
                    src,
                    &format!("{p}.proj_out.weight"),
                    &format!("{p}.proj_out.bias"),
                    ch,
                    ch,
                    &[ch, 1],
                )?,
                heads,
                pairs: Vec::new(),
            }))
        }
        Layer::Down { ch, conv: true } => {
            Unit::Down(Some(conv(src, &format!("{p}.op"), ch, ch, 3, 2)?))
        }
        Layer::Down { conv: false, .. } => Unit::Down(None),
        Layer::Up { ch, conv: true } => {
            Unit::Up(Some(conv(src, &format!("{p}.conv"), ch, ch, 3, 1)?))
        }
        Layer::Up { conv: false, .. } => Unit::Up(None),
    })
}

/// `a` upsampled (nearest, x2) when `up`, else average-pooled (x2).
fn resample(a: &Act, up: bool) -> Act {
    if up {
        Act {
            data: upsample2(&a.data, a.c, a.h, a.w),
            c: a.c,
            h: 2 * a.h,
            w: 2 * a.w,
        }
    } else {
        Act {
            data: avgpool2(&a.data, a.c, a.h, a.w),
            c: a.c,
            h: a.h / 2,
            w: a.w / 2,
        }
    }
}

/// `a` resampled as a residual block's `updown` says; `None` when it does not resample.
fn resample_block(a: &Act, updown: UpDown) -> Option<Act> {
    match updown {
        UpDown::None => None,
        UpDown::Up => Some(resample(a, true)),
        UpDown::Down => Some(resample(a, false)),
    }
}

fn run_conv(c: &Conv, a: &Act) -> Act {
    let (oh, ow) = c.out_size(a.h, a.w);
    Act {
        data: c.forward(&a.data, a.h, a.w),
        c: c.cout,
        h: oh,
        w: ow,
    }
}

/// Runs `u` on `h` and makes its output the new `h`; the old one goes to `skips` if `keep`
/// (which is then cleared), else back to the pool.
fn advance(u: &Unit, h: &mut Act, keep: &mut bool, skips: &mut Vec<Act>, emb: &[f32]) {
    let y = run_unit(u, h, emb);
    let old = std::mem::replace(h, y);
    if std::mem::take(keep) {
        skips.push(old);
    } else {
        recycle(old.data);
    }
}

/// Runs `u` on `x`.
fn run_unit(u: &Unit, x: &Act, emb: &[f32]) -> Act {
    match u {
        Unit::Conv(c) | Unit::Down(Some(c)) => run_conv(c, x),
        Unit::Res(r) => run_res(r, x, emb),
        Unit::Attn(a) => run_attention(a, x),
        Unit::Down(None) => resample(x, false),
        Unit::Up(Some(c)) => Act {
            data: c.forward_upsampled(&x.data, x.h, x.w),
            c: c.cout,
            h: 2 * x.h,
            w: 2 * x.w,
        },
        Unit::Up(None) => resample(x, true),
    }
}

/// GroupNorm followed by SiLU, without the scale-shift (a residual block's first
/// normalisation, and the output head's).
const NORM_SILU: NormEpilogue<'static> = NormEpilogue {
    scale_shift: None,
    silu: true,
};

fn run_res(r: &ResBlock, x: &Act, emb: &[f32]) -> Act {
    let plane = x.h * x.w;
    // The input, resampled when the block resamples; an upsampling block with an identity skip
    // adds the upsampling at the end without writing it out.
    let add_up = r.updown == UpDown::Up && r.skip.is_none();
    let xs = if add_up {
        None
    } else {
        resample_block(x, r.updown)
    };
    let h = match &xs {
        None if add_up => {
            // GroupNorm, SiLU and the upsampling go into the convolution's input copy.
            let coef = r.in_norm.coefficients(&x.data, plane, NORM_SILU);
            Act {
                data: r
                    .in_conv
                    .forward_normed_upsampled(&x.data, x.h, x.w, &coef, true),
                c: r.in_conv.cout,
                h: 2 * x.h,
                w: 2 * x.w,
            }
        }
        None => {
            // GroupNorm and SiLU go into the convolution's input packing.
            let coef = r.in_norm.coefficients(&x.data, plane, NORM_SILU);
            Act {
                data: r.in_conv.forward_normed(&x.data, x.h, x.w, &coef, true),
                c: r.in_conv.cout,
                h: x.h,
                w: x.w,
            }
        }
        // Downsampling: GroupNorm, SiLU and the pooling in one pass, then the convolution.
        Some(_) if r.updown == UpDown::Down => {
            let coef = r.in_norm.coefficients(&x.data, plane, NORM_SILU);
            let hr = Act {
                data: pool_normed(&x.data, x.c, x.h, x.w, &coef, true),
                c: x.c,
                h: x.h / 2,
                w: x.w / 2,
            };
            let h = run_conv(&r.in_conv, &hr);
            recycle(hr.data);
            h
        }
        // Upsampling with a skip convolution: the normalised input is written, upsampled, then
        // convolved.
        Some(_) => {
            let up = r.updown == UpDown::Up;
            let hn = Act {
                data: r.in_norm.forward(&x.data, plane, NORM_SILU),
                c: x.c,
                h: x.h,
                w: x.w,
            };
            let hr = resample(&hn, up);
            recycle(hn.data);
            let h = run_conv(&r.in_conv, &hr);
            recycle(hr.data);
            h
        }
    };
    let mut out = res_main(r, h, emb);
    if add_up {
        add_upsampled(&mut out.data, &x.data, x.c, x.h, x.w);
        return out;
    }
    let input = xs.as_ref().unwrap_or(x);
    match &r.skip {
        Some(s) => s.forward_add(&input.data, input.h, input.w, &mut out.data),
        None => add_assign(&mut out.data, &input.data),
    }
    if let Some(xs) = xs {
        recycle(xs.data);
    }
    out
}

/// A decoder block's first residual block (no resampling) on the concatenation of its input
/// `x` and the encoder's skip `s`, read in place: GroupNorm statistics, the first convolution
/// and the skip convolution each take the two parts.
fn run_res_parts(r: &ResBlock, x: &Act, s: &Act, emb: &[f32]) -> Act {
    debug_assert_eq!(r.updown, UpDown::None);
    let plane = x.h * x.w;
    let coef = r
        .in_norm
        .coefficients_parts(&x.data, &s.data, plane, NORM_SILU);
    let h = Act {
        data: r
            .in_conv
            .forward_normed_parts(&x.data, &s.data, x.h, x.w, &coef, true),
        c: r.in_conv.cout,
        h: x.h,
        w: x.w,
    };
    let mut out = res_main(r, h, emb);
    match &r.skip {
        Some(k) => k.forward_add_parts(&x.data, &s.data, x.h, x.w, &mut out.data),
        None => {
            let (oa, ob) = out.data.split_at_mut(x.data.len());
            add_assign(oa, &x.data);
            add_assign(ob, &s.data);
        }
    }
    out
}

/// The part of a residual block after its first convolution's output `h`: the timestep
/// conditioning, the second GroupNorm, SiLU and convolution (the skip is the caller's).
fn res_main(r: &ResBlock, h: Act, emb: &[f32]) -> Act {
    let plane = h.h * h.w;
    let e = r.emb.apply(emb);
    let cout = r.in_conv.cout;
    let mut hd = h.data;
    let epi = if r.scale_shift {
        NormEpilogue {
            scale_shift: Some((&e[..cout], &e[cout..])),
            silu: true,
        }
    } else {
        for (row, &v) in hd.chunks_exact_mut(plane).zip(&e) {
            row.iter_mut().for_each(|x| *x += v);
        }
        NORM_SILU
    };
    let coef = r.out_norm.coefficients(&hd, plane, epi);
    let out = Act {
        data: r.out_conv.forward_normed(&hd, h.h, h.w, &coef, true),
        c: cout,
        h: h.h,
        w: h.w,
    };
    recycle(hd);
    out
}

/// `w` (emptied, then `[t, t]`) `[tk, tq] = sum_i k[i, tk] q[i, tq]` for `q`, `k` `[hc, t]`:
/// the logits transposed (a key per row), so that the softmax runs down the columns and the
/// value product reads the weights as they lie. On the pointwise kernel (`k` transposed into
/// its weights; bf16 pairs of it with `bf16`) where it runs, else a matrix product.
fn logits_t(t: usize, hc: usize, q: &[f32], k: &[f32], bf16: bool, w: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if super::pointwise::available() {
        use super::pointwise::{bf16_weights, pointwise, Weights};
        let mut kt = buffer(t * hc);
        kt.extend((0..t * hc).map(|j| k[(j % hc) * t + j / hc]));
        let bias = zeros(t);
        if bf16 {
            pointwise(q, hc, Weights::Bf16(&bf16_weights(&kt, hc)), &bias, t, w);
        } else {
            pointwise(q, hc, Weights::F32(&kt), &bias, t, w);
        }
        recycle(kt);
        recycle(bias);
        return;
    }
    let _ = bf16;
    w.clear();
    w.resize(t * t, 0.0);
    matmul_at(t, t, hc, w, k, q);
}

/// `out` (`[hc, t]`) `[i, tq] = sum_tk v[i, tk] p[tk, tq]`: the values weighted by the
/// attention `p` (`[t, t]`, a key per row), on the pointwise kernel where it runs (`p` its
/// input, `v` its weights; bf16 pairs of `v` with `bf16`), else a matrix product.
fn weighted_values(t: usize, hc: usize, v: &[f32], p: &[f32], bf16: bool, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::pointwise::available() {
        use super::pointwise::{bf16_weights, pointwise_into, Weights};
        let bias = zeros(hc);
        if bf16 {
            let vp = bf16_weights(v, t);
            pointwise_into(p, t, Weights::Bf16(&vp), &bias, out);
        } else {
            pointwise_into(p, t, Weights::F32(v), &bias, out);
        }
        recycle(bias);
        return;
    }
    let _ = bf16;
    matmul(hc, t, t, out, t, v, t, p, t, false);
}

/// Projection `i` (q, k, v) of `a` of the normalised input `n` (`[c, t]`): on the bf16
/// pointwise kernel with `a`'s pairs where it has them.
fn project(a: &Attention, i: usize, n: &[f32], t: usize) -> Vec<f32> {
    let d = [&a.q, &a.k, &a.v][i];
    #[cfg(target_arch = "x86_64")]
    if !a.pairs.is_empty() {
        let mut out = buffer(d.dout * t);
        let w = super::pointwise::Weights::Bf16(&a.pairs[i]);
        super::pointwise::pointwise(n, d.din, w, &d.bias, t, &mut out);
        return out;
    }
    d.apply_cols(n, t)
}

fn run_attention(a: &Attention, x: &Act) -> Act {
    let (c, t) = (x.c, x.h * x.w);
    let n = a.norm.forward(
        &x.data,
        t,
        NormEpilogue {
            scale_shift: None,
            silu: false,
        },
    );
    let bf16 = !a.pairs.is_empty();
    let [q, k, v] = [0, 1, 2].map(|i| project(a, i, &n, t));
    let hc = c / a.heads;
    let scale = 1.0 / (hc as f32).sqrt();
    let mut att = zeros(c * t);
    let mut w = buffer(t * t);
    for head in 0..a.heads {
        let qh = &q[head * hc * t..(head + 1) * hc * t];
        let kh = &k[head * hc * t..(head + 1) * hc * t];
        let vh = &v[head * hc * t..(head + 1) * hc * t];
        logits_t(t, hc, qh, kh, bf16, &mut w);
        softmax_cols(&mut w, t, scale);
        weighted_values(
            t,
            hc,
            vh,
            &w,
            bf16,
            &mut att[head * hc * t..(head + 1) * hc * t],
        );
    }
    let mut y = buffer(x.data.len());
    y.extend_from_slice(&x.data);
    #[cfg(target_arch = "x86_64")]
    if bf16 {
        let w = super::pointwise::Weights::Bf16(&a.pairs[3]);
        super::pointwise::add_pointwise(&att, c, w, &a.proj.bias, &mut y);
    } else {
        a.proj.add_cols(&att, t, &mut y);
    }
    #[cfg(not(target_arch = "x86_64"))]
    a.proj.add_cols(&att, t, &mut y);
    for b in [n, q, k, v, att, w] {
        recycle(b);
    }
    Act {
        data: y,
        c: x.c,
        h: x.h,
        w: x.w,
    }
}
