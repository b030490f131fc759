//! Emits the guided-diffusion UNet as an ONNX graph (opset 17) from a state_dict.
//!
//! Graph interface: inputs `x` `[N, 2, H, W]` f32 and `t` `[N]` f32 (timestep on the 0..999 scale),
//! output `eps` `[N, 2, H, W]`. `N` is symbolic; `H = W = image_size` are fixed.
//!
//! Op mapping: GroupNorm(32) = Reshape to `[N, 32, -1]` + InstanceNormalization + Reshape + affine;
//! SiLU = x * Sigmoid(x); nearest 2x upsampling = Reshape + Expand + Reshape (exact); average
//! pooling = AveragePool; attention = MatMul / Softmax with q, k, v weights split per head at export
//! time (legacy or new order); scale-shift conditioning uses the two halves of `emb_layers.1`.

use std::collections::HashMap;

use crate::config::{UNetConfig, GROUPS};
use crate::layout::{Layer, Layout, UpDown};
use crate::onnx::graph::{Attr, Graph, WeightType};
use msm::{Error, Result};

/// A state_dict: parameter name -> (shape, values in row-major order).
#[derive(Debug, Clone, Default)]
pub struct Weights {
    map: HashMap<String, (Vec<usize>, Vec<f32>)>,
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
    g: Graph,
    w: &'a Weights,
    cfg: &'a UNetConfig,
    gn_scale: String,
    gn_bias: String,
}

impl Emitter<'_> {
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<String> {
        let data = self.w.get(name, shape)?.to_vec();
        self.g.weight(name, shape, &data)
    }

    /// A weight read as `src_shape` and stored reshaped to `dst_shape` (same element count).
    fn weight_as(&mut self, name: &str, src: &[usize], dst: &[usize]) -> Result<String> {
        let data = self.w.get(name, src)?.to_vec();
        self.g.weight(name, dst, &data)
    }

    fn shape(&mut self, dims: &[i64]) -> String {
        let name = format!(
            "shape_{}",
            dims.iter()
                .map(|d| d.to_string().replace('-', "m"))
                .collect::<Vec<_>>()
                .join("_")
        );
        if !self.g.has(&name) {
            self.g.const_i64(&name, dims);
        }
        name
    }

    fn reshape(&mut self, x: &str, dims: &[i64]) -> String {
        let s = self.shape(dims);
        self.g.node("Reshape", &[x, &s], &[])
    }

    fn silu(&mut self, x: &str) -> String {
        let s = self.g.node("Sigmoid", &[x], &[]);
        self.g.node("Mul", &[x, &s], &[])
    }

    /// GroupNorm(32) of `x` whose shape is `[N, dims...]` (`dims` without N).
    fn group_norm(&mut self, prefix: &str, x: &str, dims: &[i64]) -> Result<String> {
        let c = dims[0] as usize;
        let grouped = self.reshape(x, &[0, GROUPS as i64, -1]);
        let (sc, bi) = (self.gn_scale.clone(), self.gn_bias.clone());
        let normed = self.g.node(
            "InstanceNormalization",
            &[&grouped, &sc, &bi],
            &[("epsilon", Attr::Float(1e-5))],
        );
        let mut full = vec![0i64];
        full.extend_from_slice(dims);
        let back = self.reshape(&normed, &full);
        let mut affine = vec![c];
        affine.extend(std::iter::repeat_n(1, dims.len() - 1));
        let gamma = self.weight_as(&format!("{prefix}.weight"), &[c], &affine)?;
        let beta = self.weight_as(&format!("{prefix}.bias"), &[c], &affine)?;
        let y = self.g.node("Mul", &[&back, &gamma], &[]);
        Ok(self.g.node("Add", &[&y, &beta], &[]))
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
        Ok(self.g.node(
            "Conv",
            &[x, &w, &b],
            &[
                ("kernel_shape", Attr::Ints(vec![3, 3])),
                ("pads", Attr::Ints(vec![1, 1, 1, 1])),
                ("strides", Attr::Ints(vec![stride, stride])),
            ],
        ))
    }

    fn conv1x1(&mut self, prefix: &str, x: &str, cin: usize, cout: usize) -> Result<String> {
        let w = self.weight(&format!("{prefix}.weight"), &[cout, cin, 1, 1])?;
        let b = self.weight(&format!("{prefix}.bias"), &[cout])?;
        Ok(self.g.node(
            "Conv",
            &[x, &w, &b],
            &[("kernel_shape", Attr::Ints(vec![1, 1]))],
        ))
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
            .get(&format!("{prefix}.weight"), &[dout_total, din])?;
        let b = self.w.get(&format!("{prefix}.bias"), &[dout_total])?;
        let wr = w[rows.start * din..rows.end * din].to_vec();
        let br = b[rows.clone()].to_vec();
        let n = rows.len();
        let wn = self
            .g
            .weight(&format!("{prefix}.weight{suffix}"), &[n, din], &wr)?;
        let bn = self
            .g
            .weight(&format!("{prefix}.bias{suffix}"), &[n], &br)?;
        Ok(self
            .g
            .node("Gemm", &[x, &wn, &bn], &[("transB", Attr::Int(1))]))
    }

    fn resample(&mut self, x: &str, c: i64, h: i64, w: i64, updown: UpDown) -> String {
        match updown {
            UpDown::None => x.to_string(),
            UpDown::Up => {
                let r = self.reshape(x, &[0, c, h, 1, w, 1]);
                let e = self.shape(&[1, 1, 1, 2, 1, 2]);
                let ex = self.g.node("Expand", &[&r, &e], &[]);
                self.reshape(&ex, &[0, c, 2 * h, 2 * w])
            }
            UpDown::Down => self.g.node(
                "AveragePool",
                &[x],
                &[
                    ("kernel_shape", Attr::Ints(vec![2, 2])),
                    ("strides", Attr::Ints(vec![2, 2])),
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
        res: i64,
    ) -> Result<String> {
        let (ci, co) = (cin as i64, cout as i64);
        let h = self.group_norm(&format!("{p}.in_layers.0"), x, &[ci, res, res])?;
        let h = self.silu(&h);
        let h = self.resample(&h, ci, res, res, updown);
        let xs = self.resample(x, ci, res, res, updown);
        let r = match updown {
            UpDown::None => res,
            UpDown::Up => 2 * res,
            UpDown::Down => res / 2,
        };
        let h = self.conv3(&format!("{p}.in_layers.2"), &h, cin, cout, 1)?;
        let ted = self.cfg.time_embed_dim();
        let emb_p = format!("{p}.emb_layers.1");
        let axes = self.shape(&[2, 3]);
        let h = if self.cfg.use_scale_shift_norm {
            let scale = self.linear_rows(&emb_p, emb_silu, ted, 2 * cout, 0..cout, ".scale")?;
            let shift =
                self.linear_rows(&emb_p, emb_silu, ted, 2 * cout, cout..2 * cout, ".shift")?;
            let scale = self.g.node("Unsqueeze", &[&scale, &axes], &[]);
            let shift = self.g.node("Unsqueeze", &[&shift, &axes], &[]);
            let n = self.group_norm(&format!("{p}.out_layers.0"), &h, &[co, r, r])?;
            let one = self.one();
            let s1 = self.g.node("Add", &[&scale, &one], &[]);
            let m = self.g.node("Mul", &[&n, &s1], &[]);
            self.g.node("Add", &[&m, &shift], &[])
        } else {
            let e = self.linear_rows(&emb_p, emb_silu, ted, cout, 0..cout, "")?;
            let e = self.g.node("Unsqueeze", &[&e, &axes], &[]);
            let s = self.g.node("Add", &[&h, &e], &[]);
            self.group_norm(&format!("{p}.out_layers.0"), &s, &[co, r, r])?
        };
        let h = self.silu(&h);
        let h = self.conv3(&format!("{p}.out_layers.3"), &h, cout, cout, 1)?;
        let skip = if cin == cout {
            xs
        } else {
            self.conv1x1(&format!("{p}.skip_connection"), &xs, cin, cout)?
        };
        Ok(self.g.node("Add", &[&skip, &h], &[]))
    }

    fn one(&mut self) -> String {
        if !self.g.has("one") {
            self.g.const_f32("one", &[1], &[1.0]);
        }
        "one".into()
    }

    fn attention(&mut self, p: &str, x: &str, ch: usize, heads: usize, res: i64) -> Result<String> {
        let c = ch as i64;
        let t = res * res;
        let hc = ch / heads;
        let flat = self.reshape(x, &[0, c, t]);
        let n = self.group_norm(&format!("{p}.norm"), &flat, &[c, t])?;
        let wqkv = self
            .w
            .get(&format!("{p}.qkv.weight"), &[3 * ch, ch, 1])?
            .to_vec();
        let bqkv = self.w.get(&format!("{p}.qkv.bias"), &[3 * ch])?.to_vec();
        // Row of the qkv output holding part `part` (0 q, 1 k, 2 v) of channel `i` of head `h`.
        let row = |part: usize, h: usize, i: usize| {
            if self.cfg.use_new_attention_order {
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
                .weight(&format!("{p}.qkv.weight.{name}"), &[ch, ch], &wm)?;
            let bn = self
                .g
                .weight(&format!("{p}.qkv.bias.{name}"), &[ch, 1], &bm)?;
            let y = self.g.node("MatMul", &[&wn, &n], &[]);
            let y = self.g.node("Add", &[&y, &bn], &[]);
            qkv.push(self.reshape(&y, &[-1, hc as i64, t]));
        }
        let perm = [("perm", Attr::Ints(vec![0, 2, 1]))];
        let qt = self.g.node("Transpose", &[&qkv[0]], &perm);
        let logits = self.g.node("MatMul", &[&qt, &qkv[1]], &[]);
        let sname = format!("attn_scale_{hc}");
        if !self.g.has(&sname) {
            self.g
                .const_f32(&sname, &[1], &[(1.0 / (hc as f64).sqrt()) as f32]);
        }
        let logits = self.g.node("Mul", &[&logits, &sname], &[]);
        let wts = self
            .g
            .node("Softmax", &[&logits], &[("axis", Attr::Int(-1))]);
        let wtt = self.g.node("Transpose", &[&wts], &perm);
        let a = self.g.node("MatMul", &[&qkv[2], &wtt], &[]);
        let a = self.reshape(&a, &[-1, c, t]);
        let wp = self.weight_as(&format!("{p}.proj_out.weight"), &[ch, ch, 1], &[ch, ch])?;
        let bp = self.weight_as(&format!("{p}.proj_out.bias"), &[ch], &[ch, 1])?;
        let y = self.g.node("MatMul", &[&wp, &a], &[]);
        let y = self.g.node("Add", &[&y, &bp], &[]);
        let y = self.g.node("Add", &[&flat, &y], &[]);
        Ok(self.reshape(&y, &[0, c, res, res]))
    }

    fn layer(
        &mut self,
        p: &str,
        layer: &Layer,
        x: &str,
        emb: &str,
        res: &mut i64,
    ) -> Result<String> {
        match *layer {
            Layer::Conv { cin, cout } => self.conv3(p, x, cin, cout, 1),
            Layer::Res { cin, cout, updown } => {
                let y = self.resblock(p, x, emb, cin, cout, updown, *res)?;
                match updown {
                    UpDown::Up => *res *= 2,
                    UpDown::Down => *res /= 2,
                    UpDown::None => {}
                }
                Ok(y)
            }
            Layer::Attn { ch, heads } => self.attention(p, x, ch, heads, *res),
            Layer::Down { ch, conv } => {
                let y = if conv {
                    self.conv3(&format!("{p}.op"), x, ch, ch, 2)?
                } else {
                    self.resample(x, ch as i64, *res, *res, UpDown::Down)
                };
                *res /= 2;
                Ok(y)
            }
            Layer::Up { ch, conv } => {
                let y = self.resample(x, ch as i64, *res, *res, UpDown::Up);
                *res *= 2;
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
        res: &mut i64,
    ) -> Result<String> {
        let mut h = x.to_string();
        for (j, l) in layers.iter().enumerate() {
            h = self.layer(&format!("{p}.{j}"), l, &h, emb, res)?;
        }
        Ok(h)
    }
}

/// Builds the ONNX model of the UNet `cfg` with the parameters `w` (a guided-diffusion
/// state_dict), weights stored as `weights`, and `metadata` as `metadata_props`.
pub fn emit_unet(
    cfg: &UNetConfig,
    w: &Weights,
    weights: WeightType,
    metadata: &[(String, String)],
) -> Result<tract_onnx::pb::ModelProto> {
    cfg.validate()?;
    let layout = Layout::new(cfg);
    let mut g = Graph::new(weights);
    let size = cfg.image_size as i64;
    let cin = cfg.in_channels as i64;
    g.input(
        "x",
        &[None, Some(cin), Some(size), Some(size)],
        &["N", "", "", ""],
    );
    g.input("t", &[None], &["N"]);
    g.output(
        "eps",
        &[None, Some(cin), Some(size), Some(size)],
        &["N", "", "", ""],
    );
    let gn_scale = g.const_f32("gn_ones", &[GROUPS], &[1.0; GROUPS]);
    let gn_bias = g.const_f32("gn_zeros", &[GROUPS], &[0.0; GROUPS]);
    let mut e = Emitter {
        g,
        w,
        cfg,
        gn_scale,
        gn_bias,
    };

    // Timestep embedding.
    let mc = cfg.model_channels;
    let half = mc / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let fr = e.g.const_f32("time_freqs", &[1, half], &freqs);
    let ax1 = e.shape(&[1]);
    let tt = e.g.node("Unsqueeze", &["t", &ax1], &[]);
    let args = e.g.node("Mul", &[&tt, &fr], &[]);
    let cos = e.g.node("Cos", &[&args], &[]);
    let sin = e.g.node("Sin", &[&args], &[]);
    let mut temb = e.g.node("Concat", &[&cos, &sin], &[("axis", Attr::Int(1))]);
    if mc % 2 == 1 {
        let pads = e.shape(&[0, 0, 0, 1]);
        temb = e.g.node("Pad", &[&temb, &pads], &[]);
    }
    let ted = cfg.time_embed_dim();
    let h = e.linear_rows("time_embed.0", &temb, mc, ted, 0..ted, "")?;
    let h = e.silu(&h);
    let emb = e.linear_rows("time_embed.2", &h, ted, ted, 0..ted, "")?;
    // Every residual block starts its emb_layers with SiLU: compute it once.
    let emb_silu = e.silu(&emb);

    let mut res = size;
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
        let cat = e.g.node("Concat", &[&h, &skip], &[("axis", Attr::Int(1))]);
        h = e.block(&format!("output_blocks.{i}"), b, &cat, &emb_silu, &mut res)?;
    }
    let oc = layout.out_ch as i64;
    let h = e.group_norm("out.0", &h, &[oc, size, size])?;
    let h = e.silu(&h);
    // Keep only the eps channels of a learned-variance network.
    let wo = w.get("out.2.weight", &[cfg.out_channels, layout.out_ch, 3, 3])?;
    let bo = w.get("out.2.bias", &[cfg.out_channels])?;
    let keep = cfg.in_channels;
    let wk = wo[..keep * layout.out_ch * 9].to_vec();
    let bk = bo[..keep].to_vec();
    let wn =
        e.g.weight("out.2.weight", &[keep, layout.out_ch, 3, 3], &wk)?;
    let bn = e.g.weight("out.2.bias", &[keep], &bk)?;
    e.g.node_named(
        "Conv",
        &[&h, &wn, &bn],
        &[
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("pads", Attr::Ints(vec![1, 1, 1, 1])),
        ],
        "eps",
    );
    Ok(e.g.into_model("msm_unet", metadata))
}
