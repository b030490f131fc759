//! Emits the guided-diffusion UNet as an ONNX graph (opset 17) from a state_dict, with the
//! runtime's [`OnnxBuilder`].
//!
//! Graph interface: inputs `x` `[N, 2, H, W]` f32 and `t` `[N]` f32 (timestep on the 0..999 scale),
//! output `eps` `[N, 2, H, W]`. `N` is symbolic; `H = image_size` and `W` (`image_width`, else
//! `image_size`) are fixed.
//!
//! Op mapping: GroupNorm(32) = Reshape to `[N, 32, -1]` + InstanceNormalization + Reshape + affine;
//! SiLU = x * Sigmoid(x); nearest 2x upsampling = Reshape + Expand + Reshape (exact); average
//! pooling = AveragePool; attention = MatMul / Softmax with q, k, v weights split per head at export
//! time (legacy or new order); scale-shift conditioning uses the two halves of `emb_layers.1`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::config::{UNetConfig, GROUPS};
use super::layout::{Layer, Layout, UpDown};
use crate::onnx::{Attr, Dim, ModelMeta, OnnxBuilder, WeightType};
use crate::{Error, Result};

/// A state_dict: parameter name -> (shape, values in row-major order).
#[derive(Debug, Clone, Default)]
pub struct Weights {
    map: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Where the emitter reads parameters from: a state_dict by guided-diffusion name.
pub trait StateDict {
    /// The values of `name`, which must have shape `shape` (row-major).
    fn param(&self, name: &str, shape: &[usize]) -> Result<Cow<'_, [f32]>>;
}

impl StateDict for Weights {
    fn param(&self, name: &str, shape: &[usize]) -> Result<Cow<'_, [f32]>> {
        self.get(name, shape).map(Cow::Borrowed)
    }
}

/// A state_dict of zeros of whatever shape is asked for: emitting with it gives the graph's
/// structure (nodes, constants, weight names and shapes) without any trained values.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroWeights;

impl StateDict for ZeroWeights {
    fn param(&self, _name: &str, shape: &[usize]) -> Result<Cow<'_, [f32]>> {
        Ok(Cow::Owned(vec![0.0; shape.iter().product()]))
    }
}

impl Weights {
    /// An empty state_dict.
    pub fn new() -> Weights {
        Weights::default()
    }

    /// Adds (or replaces) one parameter.
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) {
        self.map.insert(name.into(), (shape, data));
    }

    /// Parameter names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(|s| s.as_str())
    }

    /// The values of `name`, checked to have shape `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        match self.map.get(name) {
            None => Err(Error::invalid(format!(
                "state_dict has no parameter `{name}` (expected shape {shape:?}); is the architecture config right?"
            ))),
            Some((s, d)) if s.as_slice() != shape => Err(Error::invalid(format!(
                "state_dict parameter `{name}` has shape {s:?}, the architecture expects {shape:?}"
            ))),
            Some((_, d)) => Ok(d),
        }
    }
}

struct Emitter<'a> {
    g: OnnxBuilder,
    /// Shared constants already added (shapes, scales).
    consts: HashSet<String>,
    w: &'a dyn StateDict,
    cfg: &'a UNetConfig,
}

impl Emitter<'_> {
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<String> {
        let data = self.w.param(name, shape)?.into_owned();
        self.g.add_weight(name, shape, &data)
    }

    /// A weight read as `src_shape` and stored reshaped to `dst_shape` (same element count).
    fn weight_as(&mut self, name: &str, src: &[usize], dst: &[usize]) -> Result<String> {
        let data = self.w.param(name, src)?.into_owned();
        self.g.add_weight(name, dst, &data)
    }

    /// An exact f32 constant shared by name (kept f32 whatever the weight type).
    fn const_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> Result<String> {
        if self.consts.insert(name.to_string()) {
            self.g.add_weight_as(name, dims, data, WeightType::F32)?;
        }
        Ok(name.to_string())
    }

    fn shape(&mut self, dims: &[i64]) -> Result<String> {
        let name = format!(
            "shape_{}",
            dims.iter()
                .map(|d| d.to_string().replace('-', "m"))
                .collect::<Vec<_>>()
                .join("_")
        );
        if self.consts.insert(name.clone()) {
            self.g.add_i64(&name, &[dims.len()], dims)?;
        }
        Ok(name)
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>) -> Result<String> {
        self.g.op(op, inputs, attrs)
    }

    fn reshape(&mut self, x: &str, dims: &[i64]) -> Result<String> {
        let s = self.shape(dims)?;
        self.node("Reshape", &[x, &s], vec![])
    }

    fn silu(&mut self, x: &str) -> Result<String> {
        let s = self.node("Sigmoid", &[x], vec![])?;
        self.node("Mul", &[x, &s], vec![])
    }

    /// GroupNorm(32) of `x` whose shape is `[N, dims...]` (`dims` without N), in the opset-17
    /// form Reshape to `[N, 32, -1]` -> InstanceNormalization -> Reshape -> per-channel affine.
    fn group_norm(&mut self, prefix: &str, x: &str, dims: &[i64]) -> Result<String> {
        let c = dims[0] as usize;
        let grouped = self.reshape(x, &[0, GROUPS as i64, -1])?;
        let sc = self.const_f32("gn_ones", &[GROUPS], &[1.0; GROUPS])?;
        let bi = self.const_f32("gn_zeros", &[GROUPS], &[0.0; GROUPS])?;
        let normed = self.node(
            "InstanceNormalization",
            &[&grouped, &sc, &bi],
            vec![Attr::float("epsilon", 1e-5)],
        )?;
        let mut full = vec![0i64];
        full.extend_from_slice(dims);
        let back = self.reshape(&normed, &full)?;
        let mut affine = vec![c];
        affine.extend(std::iter::repeat_n(1, dims.len() - 1));
        let gamma = self.weight_as(&format!("{prefix}.weight"), &[c], &affine)?;
        let beta = self.weight_as(&format!("{prefix}.bias"), &[c], &affine)?;
        let y = self.node("Mul", &[&back, &gamma], vec![])?;
        self.node("Add", &[&y, &beta], vec![])
    }

    fn conv3(
        &mut self,
        prefix: &str,
        x: &str,
        cin: usize,
        cout: usize,
        stride: i64,
    ) -> Result<String> {
        let w = self.weight(&format!("{prefix}.weight"), &[cout, cin, 3, 3])?;
        let b = self.weight(&format!("{prefix}.bias"), &[cout])?;
        self.node(
            "Conv",
            &[x, &w, &b],
            vec![
                Attr::ints("kernel_shape", &[3, 3]),
                Attr::ints("pads", &[1, 1, 1, 1]),
                Attr::ints("strides", &[stride, stride]),
            ],
        )
    }

    fn conv1x1(&mut self, prefix: &str, x: &str, cin: usize, cout: usize) -> Result<String> {
        let w = self.weight(&format!("{prefix}.weight"), &[cout, cin, 1, 1])?;
        let b = self.weight(&format!("{prefix}.bias"), &[cout])?;
        self.node(
            "Conv",
            &[x, &w, &b],
            vec![Attr::ints("kernel_shape", &[1, 1])],
        )
    }

    /// Linear layer on `[N, din]` using rows `rows` of the weight `[dout_total, din]`.
    fn linear_rows(
        &mut self,
        prefix: &str,
        x: &str,
        din: usize,
        dout_total: usize,
        rows: std::ops::Range<usize>,
        suffix: &str,
    ) -> Result<String> {
        let w = self
            .w
            .param(&format!("{prefix}.weight"), &[dout_total, din])?;
        let b = self.w.param(&format!("{prefix}.bias"), &[dout_total])?;
        let wr = w[rows.start * din..rows.end * din].to_vec();
        let br = b[rows.clone()].to_vec();
        let n = rows.len();
        let wn = self
            .g
            .add_weight(&format!("{prefix}.weight{suffix}"), &[n, din], &wr)?;
        let bn = self
            .g
            .add_weight(&format!("{prefix}.bias{suffix}"), &[n], &br)?;
        self.node("Gemm", &[x, &wn, &bn], vec![Attr::int("transB", 1)])
    }

    fn resample(&mut self, x: &str, c: i64, h: i64, w: i64, updown: UpDown) -> Result<String> {
        match updown {
            UpDown::None => Ok(x.to_string()),
            UpDown::Up => {
                let r = self.reshape(x, &[0, c, h, 1, w, 1])?;
                let e = self.shape(&[1, 1, 1, 2, 1, 2])?;
                let ex = self.node("Expand", &[&r, &e], vec![])?;
                self.reshape(&ex, &[0, c, 2 * h, 2 * w])
            }
            UpDown::Down => self.node(
                "AveragePool",
                &[x],
                vec![
                    Attr::ints("kernel_shape", &[2, 2]),
                    Attr::ints("strides", &[2, 2]),
                ],
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn resblock(
        &mut self,
        p: &str,
        x: &str,
        emb_silu: &str,
        cin: usize,
        cout: usize,
        updown: UpDown,
        res: (i64, i64),
    ) -> Result<String> {
        let (ci, co) = (cin as i64, cout as i64);
        let h = self.group_norm(&format!("{p}.in_layers.0"), x, &[ci, res.0, res.1])?;
        let h = self.silu(&h)?;
        let h = self.resample(&h, ci, res.0, res.1, updown)?;
        let xs = self.resample(x, ci, res.0, res.1, updown)?;
        let r = resampled(res, updown);
        let h = self.conv3(&format!("{p}.in_layers.2"), &h, cin, cout, 1)?;
        let ted = self.cfg.time_embed_dim();
        let emb_p = format!("{p}.emb_layers.1");
        let axes = self.shape(&[2, 3])?;
        let h = if self.cfg.use_scale_shift_norm {
            let scale = self.linear_rows(&emb_p, emb_silu, ted, 2 * cout, 0..cout, ".scale")?;
            let shift =
                self.linear_rows(&emb_p, emb_silu, ted, 2 * cout, cout..2 * cout, ".shift")?;
            let scale = self.node("Unsqueeze", &[&scale, &axes], vec![])?;
            let shift = self.node("Unsqueeze", &[&shift, &axes], vec![])?;
            let n = self.group_norm(&format!("{p}.out_layers.0"), &h, &[co, r.0, r.1])?;
            let one = self.const_f32("one", &[1], &[1.0])?;
            let s1 = self.node("Add", &[&scale, &one], vec![])?;
            let m = self.node("Mul", &[&n, &s1], vec![])?;
            self.node("Add", &[&m, &shift], vec![])?
        } else {
            let e = self.linear_rows(&emb_p, emb_silu, ted, cout, 0..cout, "")?;
            let e = self.node("Unsqueeze", &[&e, &axes], vec![])?;
            let s = self.node("Add", &[&h, &e], vec![])?;
            self.group_norm(&format!("{p}.out_layers.0"), &s, &[co, r.0, r.1])?
        };
        let h = self.silu(&h)?;
        let h = self.conv3(&format!("{p}.out_layers.3"), &h, cout, cout, 1)?;
        let skip = if cin == cout {
            xs
        } else {
            self.conv1x1(&format!("{p}.skip_connection"), &xs, cin, cout)?
        };
        self.node("Add", &[&skip, &h], vec![])
    }

    fn attention(
        &mut self,
        p: &str,
        x: &str,
        ch: usize,
        heads: usize,
        res: (i64, i64),
    ) -> Result<String> {
        let c = ch as i64;
        let t = res.0 * res.1;
        let hc = ch / heads;
        let flat = self.reshape(x, &[0, c, t])?;
        let n = self.group_norm(&format!("{p}.norm"), &flat, &[c, t])?;
        let wqkv = self
            .w
            .param(&format!("{p}.qkv.weight"), &[3 * ch, ch, 1])?
            .into_owned();
        let bqkv = self
            .w
            .param(&format!("{p}.qkv.bias"), &[3 * ch])?
            .into_owned();
        // Row of the qkv output holding part `part` (0 q, 1 k, 2 v) of channel `i` of head `h`.
        let new_order = self.cfg.use_new_attention_order;
        let row = |part: usize, h: usize, i: usize| {
            if new_order {
                part * ch + h * hc + i
            } else {
                h * 3 * hc + part * hc + i
            }
        };
        let mut qkv = Vec::new();
        for (part, name) in ["q", "k", "v"].iter().enumerate() {
            let mut wm = Vec::with_capacity(ch * ch);
            let mut bm = Vec::with_capacity(ch);
            for h in 0..heads {
                for i in 0..hc {
                    let r = row(part, h, i);
                    wm.extend_from_slice(&wqkv[r * ch..(r + 1) * ch]);
                    bm.push(bqkv[r]);
                }
            }
            let wn = self
                .g
                .add_weight(&format!("{p}.qkv.weight.{name}"), &[ch, ch], &wm)?;
            let bn = self
                .g
                .add_weight(&format!("{p}.qkv.bias.{name}"), &[ch, 1], &bm)?;
            let y = self.node("MatMul", &[&wn, &n], vec![])?;
            let y = self.node("Add", &[&y, &bn], vec![])?;
            qkv.push(self.reshape(&y, &[-1, hc as i64, t])?);
        }
        let perm = || vec![Attr::ints("perm", &[0, 2, 1])];
        let qt = self.node("Transpose", &[&qkv[0]], perm())?;
        let logits = self.node("MatMul", &[&qt, &qkv[1]], vec![])?;
        let scale = self.const_f32(
            &format!("attn_scale_{hc}"),
            &[1],
            &[(1.0 / (hc as f64).sqrt()) as f32],
        )?;
        let logits = self.node("Mul", &[&logits, &scale], vec![])?;
        let wts = self.node("Softmax", &[&logits], vec![Attr::int("axis", -1)])?;
        let wtt = self.node("Transpose", &[&wts], perm())?;
        let a = self.node("MatMul", &[&qkv[2], &wtt], vec![])?;
        let a = self.reshape(&a, &[-1, c, t])?;
        let wp = self.weight_as(&format!("{p}.proj_out.weight"), &[ch, ch, 1], &[ch, ch])?;
        let bp = self.weight_as(&format!("{p}.proj_out.bias"), &[ch], &[ch, 1])?;
        let y = self.node("MatMul", &[&wp, &a], vec![])?;
        let y = self.node("Add", &[&y, &bp], vec![])?;
        let y = self.node("Add", &[&flat, &y], vec![])?;
        self.reshape(&y, &[0, c, res.0, res.1])
    }

    fn layer(
        &mut self,
        p: &str,
        layer: &Layer,
        x: &str,
        emb: &str,
        res: &mut (i64, i64),
    ) -> Result<String> {
        match *layer {
            Layer::Conv { cin, cout } => self.conv3(p, x, cin, cout, 1),
            Layer::Res { cin, cout, updown } => {
                let y = self.resblock(p, x, emb, cin, cout, updown, *res)?;
                *res = resampled(*res, updown);
                Ok(y)
            }
            Layer::Attn { ch, heads } => self.attention(p, x, ch, heads, *res),
            Layer::Down { ch, conv } => {
                let y = if conv {
                    self.conv3(&format!("{p}.op"), x, ch, ch, 2)?
                } else {
                    self.resample(x, ch as i64, res.0, res.1, UpDown::Down)?
                };
                *res = resampled(*res, UpDown::Down);
                Ok(y)
            }
            Layer::Up { ch, conv } => {
                let y = self.resample(x, ch as i64, res.0, res.1, UpDown::Up)?;
                *res = resampled(*res, UpDown::Up);
                if conv {
                    self.conv3(&format!("{p}.conv"), &y, ch, ch, 1)
                } else {
                    Ok(y)
                }
            }
        }
    }

    fn block(
        &mut self,
        p: &str,
        layers: &[Layer],
        x: &str,
        emb: &str,
        res: &mut (i64, i64),
    ) -> Result<String> {
        let mut h = x.to_string();
        for (j, l) in layers.iter().enumerate() {
            h = self.layer(&format!("{p}.{j}"), l, &h, emb, res)?;
        }
        Ok(h)
    }
}

/// The feature-map size `(height, width)` after `updown`.
fn resampled(res: (i64, i64), updown: UpDown) -> (i64, i64) {
    match updown {
        UpDown::None => res,
        UpDown::Up => (2 * res.0, 2 * res.1),
        UpDown::Down => (res.0 / 2, res.1 / 2),
    }
}

/// Builds the ONNX model of the UNet `cfg` with the parameters `w` (a guided-diffusion
/// state_dict), weights stored as `weights`, and `meta` as `metadata_props`. The network must
/// take 2 channels (real, imaginary), as the runtime does; its image size must be the one of
/// `meta`.
pub fn emit_unet(
    cfg: &UNetConfig,
    w: &dyn StateDict,
    weights: WeightType,
    meta: &ModelMeta,
) -> Result<OnnxBuilder> {
    emit(cfg, w, weights, meta).map(|(g, _)| g)
}

/// [`emit_unet`], also returning the names of the graph's constants (the initializers that are
/// not weights: shapes, normalisation constants, frequencies, scales).
pub fn emit(
    cfg: &UNetConfig,
    w: &dyn StateDict,
    weights: WeightType,
    meta: &ModelMeta,
) -> Result<(OnnxBuilder, HashSet<String>)> {
    cfg.validate()?;
    if cfg.in_channels != 2 {
        return Err(Error::invalid(format!(
            "the network takes {} input channels; an MSM model for the runtime takes 2 (real, \
             imaginary)",
            cfg.in_channels
        )));
    }
    let (rows, cols) = (cfg.image_size, cfg.width());
    if (meta.height, meta.width) != (rows, cols) {
        return Err(Error::invalid(format!(
            "model metadata says {}x{} images but the network is built for {rows}x{cols}",
            meta.height, meta.width
        )));
    }
    let layout = Layout::new(cfg);
    let mut g = OnnxBuilder::new("msm_unet", weights);
    let image = [
        Dim::Batch,
        Dim::Fixed(cfg.in_channels),
        Dim::Fixed(rows),
        Dim::Fixed(cols),
    ];
    g.add_input("x", &image)?;
    g.add_input("t", &[Dim::Batch])?;
    g.add_output("eps", &image);
    g.set_meta(meta);
    let mut e = Emitter {
        g,
        consts: HashSet::new(),
        w,
        cfg,
    };

    // Timestep embedding.
    let mc = cfg.model_channels;
    let half = mc / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let fr = e.const_f32("time_freqs", &[1, half], &freqs)?;
    let ax1 = e.shape(&[1])?;
    let tt = e.node("Unsqueeze", &["t", &ax1], vec![])?;
    let args = e.node("Mul", &[&tt, &fr], vec![])?;
    let cos = e.node("Cos", &[&args], vec![])?;
    let sin = e.node("Sin", &[&args], vec![])?;
    let mut temb = e.node("Concat", &[&cos, &sin], vec![Attr::int("axis", 1)])?;
    if mc % 2 == 1 {
        let pads = e.shape(&[0, 0, 0, 1])?;
        temb = e.node("Pad", &[&temb, &pads], vec![])?;
    }
    let ted = cfg.time_embed_dim();
    let h = e.linear_rows("time_embed.0", &temb, mc, ted, 0..ted, "")?;
    let h = e.silu(&h)?;
    let emb = e.linear_rows("time_embed.2", &h, ted, ted, 0..ted, "")?;
    // Every residual block starts its emb_layers with SiLU: compute it once.
    let emb_silu = e.silu(&emb)?;

    let mut res = (rows as i64, cols as i64);
    let mut hs = Vec::new();
    let mut h = "x".to_string();
    for (i, b) in layout.input_blocks.iter().enumerate() {
        h = e.block(&format!("input_blocks.{i}"), b, &h, &emb_silu, &mut res)?;
        hs.push(h.clone());
    }
    h = e.block(
        "middle_block",
        &layout.middle_block,
        &h,
        &emb_silu,
        &mut res,
    )?;
    for (i, b) in layout.output_blocks.iter().enumerate() {
        let skip = hs.pop().expect("one skip per output block");
        let cat = e.node("Concat", &[&h, &skip], vec![Attr::int("axis", 1)])?;
        h = e.block(&format!("output_blocks.{i}"), b, &cat, &emb_silu, &mut res)?;
    }
    let oc = layout.out_ch as i64;
    let h = e.group_norm("out.0", &h, &[oc, res.0, res.1])?;
    let h = e.silu(&h)?;
    // Keep only the eps channels of a learned-variance network.
    let wo = w.param("out.2.weight", &[cfg.out_channels, layout.out_ch, 3, 3])?;
    let bo = w.param("out.2.bias", &[cfg.out_channels])?;
    let keep = cfg.in_channels;
    let wk = wo[..keep * layout.out_ch * 9].to_vec();
    let bk = bo[..keep].to_vec();
    let wn =
        e.g.add_weight("out.2.weight", &[keep, layout.out_ch, 3, 3], &wk)?;
    let bn = e.g.add_weight("out.2.bias", &[keep], &bk)?;
    e.g.add_node(
        "Conv",
        &[&h, &wn, &bn],
        &["eps"],
        vec![
            Attr::ints("kernel_shape", &[3, 3]),
            Attr::ints("pads", &[1, 1, 1, 1]),
        ],
    )?;
    Ok((e.g, e.consts))
}
