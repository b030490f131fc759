//! Building a [`NativeUNet`] from an ONNX model file written by this project's emitter.
//!
//! The native executor is used only when it provably computes what the file's graph computes:
//! the architecture comes from the `msm.unet_config` metadata, the emitter ([`super::emit`]) is
//! run for that architecture with zero weights, and the file's graph must be the same graph
//! node for node (operator, inputs, outputs, attributes), with the same initializers (names,
//! types, shapes) and the same constant values. Only then are the weights read from the file's
//! initializers (f16 or f32, cast to f32 once).

use std::collections::{HashMap, HashSet};

use half::f16;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{ModelProto, NodeProto, TensorProto};

use super::config::UNetConfig;
use super::emit::{emit, ZeroWeights};
use super::native::{NativeUNet, WeightSource};
use super::UNET_CONFIG_KEY;
use crate::onnx::{ModelMeta, WeightType};
use crate::{Error, Result};

/// Why a model file cannot run on the native executor (it still runs on tract).
#[derive(Debug, Clone, PartialEq)]
pub struct NotNative(pub String);

impl std::fmt::Display for NotNative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The architecture recorded in the metadata, if any.
pub fn unet_config(meta: &ModelMeta) -> std::result::Result<UNetConfig, NotNative> {
    let json = meta.extra.get(UNET_CONFIG_KEY).ok_or_else(|| {
        NotNative(format!(
            "the metadata has no `{UNET_CONFIG_KEY}` (architecture)"
        ))
    })?;
    let cfg: UNetConfig = serde_json::from_str(json)
        .map_err(|e| NotNative(format!("`{UNET_CONFIG_KEY}` is not a UNet config: {e}")))?;
    cfg.validate()
        .map_err(|e| NotNative(format!("`{UNET_CONFIG_KEY}`: {e}")))?;
    Ok(cfg)
}

/// Builds the native network for `proto` (whose metadata is `meta`), or says why it cannot.
pub fn native_from_proto(
    proto: &ModelProto,
    meta: &ModelMeta,
) -> std::result::Result<NativeUNet, NotNative> {
    let cfg = unet_config(meta)?;
    if (cfg.image_size, cfg.width()) != (meta.height, meta.width) {
        return Err(NotNative(format!(
            "`{UNET_CONFIG_KEY}` is for {}x{} images, the metadata says {}x{}",
            cfg.image_size,
            cfg.width(),
            meta.height,
            meta.width
        )));
    }
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| NotNative("the file holds no graph".into()))?;
    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let weight_type = if inits.contains_key("time_embed.0.weight.f16") {
        WeightType::F16
    } else {
        WeightType::F32
    };
    let (reference, consts) = emit(&cfg, &ZeroWeights, weight_type, meta)
        .map_err(|e| NotNative(format!("the emitter cannot build this architecture: {e}")))?;
    let reference = reference
        .to_model()
        .map_err(|e| NotNative(format!("the emitter cannot build this architecture: {e}")))?;
    let ref_graph = reference
        .graph
        .as_ref()
        .ok_or_else(|| NotNative("the emitter built no graph".into()))?;
    same_nodes(&graph.node, &ref_graph.node)?;
    same_initializers(&inits, &ref_graph.initializer, &consts)?;
    let src = Initializers { inits };
    NativeUNet::new(&cfg, &src).map_err(|e| NotNative(e.to_string()))
}

fn same_nodes(file: &[NodeProto], reference: &[NodeProto]) -> std::result::Result<(), NotNative> {
    if file.len() != reference.len() {
        return Err(NotNative(format!(
            "the graph has {} nodes; the emitter writes {} for this architecture",
            file.len(),
            reference.len()
        )));
    }
    for (i, (a, b)) in file.iter().zip(reference).enumerate() {
        if a.op_type != b.op_type
            || a.input != b.input
            || a.output != b.output
            || a.attribute != b.attribute
            || a.domain != b.domain
        {
            return Err(NotNative(format!(
                "graph node {i} ({} {:?} -> {:?}) differs from the emitter's ({} {:?} -> {:?})",
                a.op_type, a.input, a.output, b.op_type, b.input, b.output
            )));
        }
    }
    Ok(())
}

fn same_initializers(
    file: &HashMap<&str, &TensorProto>,
    reference: &[TensorProto],
    consts: &HashSet<String>,
) -> std::result::Result<(), NotNative> {
    if file.len() != reference.len() {
        return Err(NotNative(format!(
            "the graph has {} initializers; the emitter writes {}",
            file.len(),
            reference.len()
        )));
    }
    for r in reference {
        let f = file
            .get(r.name.as_str())
            .ok_or_else(|| NotNative(format!("the graph lacks initializer `{}`", r.name)))?;
        if f.dims != r.dims || f.data_type != r.data_type {
            return Err(NotNative(format!(
                "initializer `{}` is {:?} of type {}; the emitter writes {:?} of type {}",
                r.name, f.dims, f.data_type, r.dims, r.data_type
            )));
        }
        if consts.contains(&r.name) && values(f) != values(r) {
            return Err(NotNative(format!(
                "constant `{}` differs from the emitter's",
                r.name
            )));
        }
    }
    Ok(())
}

/// The raw little-endian bytes of a tensor, whichever field holds them.
fn values(t: &TensorProto) -> Vec<u8> {
    if !t.raw_data.is_empty() {
        return t.raw_data.clone();
    }
    let mut out = Vec::new();
    out.extend(t.float_data.iter().flat_map(|v| v.to_le_bytes()));
    out.extend(t.int64_data.iter().flat_map(|v| v.to_le_bytes()));
    out.extend(t.int32_data.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// The file's initializers as a [`WeightSource`].
struct Initializers<'a> {
    inits: HashMap<&'a str, &'a TensorProto>,
}

impl WeightSource for Initializers<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let want: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let n: usize = shape.iter().product();
        let bad = |why: String| Error::invalid(format!("weight `{name}`: {why}"));
        if let Some(t) = self.inits.get(name) {
            if t.dims != want || t.data_type != DataType::Float as i32 {
                return Err(bad(format!("{:?} of type {}", t.dims, t.data_type)));
            }
            if !t.raw_data.is_empty() {
                if t.raw_data.len() != 4 * n {
                    return Err(bad(format!(
                        "{} bytes for {n} f32 values",
                        t.raw_data.len()
                    )));
                }
                return Ok(t
                    .raw_data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect());
            }
            if t.float_data.len() != n {
                return Err(bad(format!("{} values, expected {n}", t.float_data.len())));
            }
            return Ok(t.float_data.clone());
        }
        let key = format!("{name}.f16");
        let t = self
            .inits
            .get(key.as_str())
            .ok_or_else(|| bad("missing".into()))?;
        if t.dims != want || t.data_type != DataType::Float16 as i32 {
            return Err(bad(format!("{:?} of type {}", t.dims, t.data_type)));
        }
        if !t.raw_data.is_empty() {
            if t.raw_data.len() != 2 * n {
                return Err(bad(format!(
                    "{} bytes for {n} f16 values",
                    t.raw_data.len()
                )));
            }
            return Ok(t
                .raw_data
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect());
        }
        // ONNX stores f16 in int32_data (one value, low 16 bits, per entry) without raw data.
        if t.int32_data.len() != n {
            return Err(bad(format!("{} values, expected {n}", t.int32_data.len())));
        }
        Ok(t.int32_data
            .iter()
            .map(|&v| f16::from_bits(v as u16).to_f32())
            .collect())
    }
}
