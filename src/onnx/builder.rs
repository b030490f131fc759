//! A small builder for ONNX graphs over the `tract_onnx::pb` protobuf types.
//!
//! It writes what the trainer needs to freeze a network: f32 inputs and outputs with a symbolic
//! batch dimension `N`, weights stored as f32 or f16 initializers (an f16 weight is followed by a
//! `Cast` to f32, so every other node sees f32 and tract folds the cast away at load time), int64
//! constants (shapes, axes), nodes of any ONNX operator with their attributes, and the model
//! metadata ([`ModelMeta`]) in `metadata_props`.
//!
//! The builder checks as it goes that every node input names a value defined before it (graph
//! input, initializer or earlier node output) and that no value is defined twice, so the graph it
//! emits is in topological order as ONNX requires.
//!
//! ```
//! use msm::onnx::builder::{Attr, Dim, OnnxBuilder, WeightType};
//! use msm::onnx::meta::ModelMeta;
//!
//! let mut b = OnnxBuilder::new("scale", WeightType::F16);
//! b.add_input("x", &[Dim::Batch, Dim::Fixed(2), Dim::Fixed(8), Dim::Fixed(8)]).unwrap();
//! let w = b.add_weight("w", &[2, 2, 1, 1], &[1.0, 0.0, 0.0, 1.0]).unwrap();
//! let y = b.op("Conv", &["x", &w], vec![Attr::ints("kernel_shape", &[1, 1])]).unwrap();
//! b.add_node("Identity", &[&y], &["eps"], vec![]).unwrap();
//! b.add_output("eps", &[Dim::Batch, Dim::Fixed(2), Dim::Fixed(8), Dim::Fixed(8)]);
//! b.set_meta(&ModelMeta::new(8, 8));
//! let bytes = b.to_bytes().unwrap();
//! assert!(!bytes.is_empty());
//! ```

use std::collections::HashSet;
use std::path::Path;

use half::f16;
use prost::Message;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::meta::ModelMeta;
use crate::{Error, Result};

/// Operator set the builder targets unless told otherwise.
pub const DEFAULT_OPSET: i64 = 17;

/// Name of the symbolic batch dimension of inputs and outputs.
pub const BATCH_DIM: &str = "N";

/// One dimension of a graph input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// The symbolic batch dimension [`BATCH_DIM`].
    Batch,
    /// A fixed size.
    Fixed(usize),
}

/// How weights are stored in the file. Computation is always f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (half the file size), cast to f32 by a `Cast` node after the initializer.
    F16,
}

/// One node attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr(AttributeProto);

impl Attr {
    fn proto(name: &str, kind: AttributeType) -> AttributeProto {
        AttributeProto {
            name: name.to_string(),
            r#type: kind as i32,
            ..Default::default()
        }
    }

    /// An integer attribute.
    pub fn int(name: &str, value: i64) -> Attr {
        Attr(AttributeProto {
            i: value,
            ..Self::proto(name, AttributeType::Int)
        })
    }

    /// A float attribute.
    pub fn float(name: &str, value: f32) -> Attr {
        Attr(AttributeProto {
            f: value,
            ..Self::proto(name, AttributeType::Float)
        })
    }

    /// A list-of-integers attribute.
    pub fn ints(name: &str, values: &[i64]) -> Attr {
        Attr(AttributeProto {
            ints: values.to_vec(),
            ..Self::proto(name, AttributeType::Ints)
        })
    }

    /// A list-of-floats attribute.
    pub fn floats(name: &str, values: &[f32]) -> Attr {
        Attr(AttributeProto {
            floats: values.to_vec(),
            ..Self::proto(name, AttributeType::Floats)
        })
    }

    /// A string attribute.
    pub fn string(name: &str, value: &str) -> Attr {
        Attr(AttributeProto {
            s: value.as_bytes().to_vec(),
            ..Self::proto(name, AttributeType::String)
        })
    }
}

/// Builds an ONNX model graph node by node.
#[derive(Debug, Clone)]
pub struct OnnxBuilder {
    graph: GraphProto,
    opset: i64,
    weight_type: WeightType,
    props: Vec<(String, String)>,
    defined: HashSet<String>,
    next_id: usize,
}

impl OnnxBuilder {
    /// An empty graph called `graph_name`, opset [`DEFAULT_OPSET`], storing weights added by
    /// [`Self::add_weight`] as `weight_type`.
    pub fn new(graph_name: &str, weight_type: WeightType) -> OnnxBuilder {
        OnnxBuilder {
            graph: GraphProto {
                name: graph_name.to_string(),
                ..Default::default()
            },
            opset: DEFAULT_OPSET,
            weight_type,
            props: Vec::new(),
            defined: HashSet::new(),
            next_id: 0,
        }
    }

    /// Targets ONNX operator set `opset` (17 to 21) instead of [`DEFAULT_OPSET`]. Operators whose
    /// signature changed between sets (GroupNormalization's scale is per group before 21 and
    /// per channel from 21 on) follow the chosen set.
    pub fn set_opset(&mut self, opset: i64) -> Result<()> {
        if !(17..=21).contains(&opset) {
            return Err(Error::invalid(format!(
                "ONNX opset {opset} is not supported by the builder; expected 17 to 21"
            )));
        }
        self.opset = opset;
        Ok(())
    }

    /// The operator set the model will declare.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    fn define(&mut self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid("ONNX value names must not be empty"));
        }
        if !self.defined.insert(name.to_string()) {
            return Err(Error::invalid(format!(
                "ONNX value `{name}` is defined twice; every value needs its own name"
            )));
        }
        Ok(())
    }

    fn fresh(&mut self, stem: &str) -> String {
        loop {
            let name = format!("{stem}_{}", self.next_id);
            self.next_id += 1;
            if !self.defined.contains(&name) {
                return name;
            }
        }
    }

    /// Adds an f32 graph input `name` of shape `dims`.
    pub fn add_input(&mut self, name: &str, dims: &[Dim]) -> Result<()> {
        self.define(name)?;
        self.graph.input.push(value_info(name, dims));
        Ok(())
    }

    /// Declares the f32 value `name` (defined by the time the model is built) as a graph output
    /// of shape `dims`.
    pub fn add_output(&mut self, name: &str, dims: &[Dim]) {
        self.graph.output.push(value_info(name, dims));
    }

    /// Adds a weight stored as the builder's [`WeightType`]; returns the name of its f32 value.
    pub fn add_weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> Result<String> {
        self.add_weight_as(name, dims, data, self.weight_type)
    }

    /// Adds a weight stored as `weight_type`; returns the name of its f32 value (`name` itself).
    /// With [`WeightType::F16`] the initializer is `name` + `.f16` and a `Cast` node makes `name`.
    pub fn add_weight_as(
        &mut self,
        name: &str,
        dims: &[usize],
        data: &[f32],
        weight_type: WeightType,
    ) -> Result<String> {
        check_len(name, dims, data.len())?;
        match weight_type {
            WeightType::F32 => {
                self.define(name)?;
                let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.graph
                    .initializer
                    .push(tensor(name, dims, DataType::Float, raw));
            }
            WeightType::F16 => {
                let stored = format!("{name}.f16");
                self.define(&stored)?;
                let raw = data
                    .iter()
                    .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                    .collect();
                self.graph
                    .initializer
                    .push(tensor(&stored, dims, DataType::Float16, raw));
                self.add_node(
                    "Cast",
                    &[&stored],
                    &[name],
                    vec![Attr::int("to", DataType::Float as i64)],
                )?;
            }
        }
        Ok(name.to_string())
    }

    /// Adds an int64 constant (shapes, axes, pads given as inputs); returns its name.
    pub fn add_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> Result<String> {
        check_len(name, dims, data.len())?;
        self.define(name)?;
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.graph
            .initializer
            .push(tensor(name, dims, DataType::Int64, raw));
        Ok(name.to_string())
    }

    /// Adds a node of operator `op_type` reading `inputs` (an empty name skips an optional input)
    /// and defining `outputs`.
    pub fn add_node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<Attr>,
    ) -> Result<()> {
        for input in inputs {
            if !input.is_empty() && !self.defined.contains(*input) {
                return Err(Error::invalid(format!(
                    "ONNX node {op_type} reads `{input}`, which is not defined yet; define \
                     inputs, weights and earlier nodes first"
                )));
            }
        }
        if outputs.is_empty() {
            return Err(Error::invalid(format!(
                "ONNX node {op_type} needs at least one output"
            )));
        }
        for output in outputs {
            self.define(output)?;
        }
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: outputs[0].to_string(),
            op_type: op_type.to_string(),
            attribute: attrs.into_iter().map(|a| a.0).collect(),
            ..Default::default()
        });
        Ok(())
    }

    /// Adds a node with a single output under a fresh name, which it returns.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<Attr>) -> Result<String> {
        let out = self.fresh(&op_type.to_ascii_lowercase());
        self.add_node(op_type, inputs, &[&out], attrs)?;
        Ok(out)
    }

    /// Records the model metadata (replacing metadata set before).
    pub fn set_meta(&mut self, meta: &ModelMeta) {
        self.props = meta.to_props();
    }

    /// The complete model. Fails if a declared output was never defined.
    pub fn to_model(&self) -> Result<ModelProto> {
        if self.graph.output.is_empty() {
            return Err(Error::invalid("ONNX graph has no output"));
        }
        for out in &self.graph.output {
            if !self.defined.contains(&out.name) {
                return Err(Error::invalid(format!(
                    "ONNX graph output `{}` is not defined by any input, weight or node",
                    out.name
                )));
            }
        }
        Ok(ModelProto {
            ir_version: ir_version(self.opset),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            producer_name: "msm".to_string(),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            graph: Some(self.graph.clone()),
            metadata_props: self
                .props
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        })
    }

    /// The model serialized as ONNX protobuf bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.to_model()?.encode_to_vec())
    }

    /// Writes the model to `path` atomically: into a temporary file in the same folder, then
    /// renamed over `path`. On error the temporary file is removed and `path` is untouched.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.to_bytes()?;
        crate::io::atomic::write_atomic(path, |w| w.write_all(&bytes))
    }
}

/// IR version matching an operator set (ONNX 1.12 to 1.16).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

fn check_len(name: &str, dims: &[usize], len: usize) -> Result<()> {
    let expected: usize = dims.iter().product();
    if expected != len {
        return Err(Error::invalid(format!(
            "ONNX tensor `{name}` of shape {dims:?} needs {expected} values, got {len}"
        )));
    }
    Ok(())
}

fn tensor(name: &str, dims: &[usize], data_type: DataType, raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        raw_data,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Batch => dimension::Value::DimParam(BATCH_DIM.to_string()),
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(weight_type: WeightType) -> OnnxBuilder {
        let mut b = OnnxBuilder::new("g", weight_type);
        b.add_input("x", &[Dim::Batch, Dim::Fixed(3)]).unwrap();
        let w = b.add_weight("w", &[3], &[1.0, -2.5, 3.0e-3]).unwrap();
        b.add_node("Mul", &["x", &w], &["y"], vec![]).unwrap();
        b.add_output("y", &[Dim::Batch, Dim::Fixed(3)]);
        b
    }

    #[test]
    fn f16_weight_is_stored_half_and_cast() {
        let m = tiny(WeightType::F16).to_model().unwrap();
        let g = m.graph.unwrap();
        assert_eq!(g.initializer[0].name, "w.f16");
        assert_eq!(g.initializer[0].data_type, DataType::Float16 as i32);
        assert_eq!(g.initializer[0].raw_data.len(), 6);
        let v = f16::from_le_bytes([g.initializer[0].raw_data[2], g.initializer[0].raw_data[3]]);
        assert_eq!(v.to_f32(), -2.5);
        assert_eq!(g.node[0].op_type, "Cast");
        assert_eq!(g.node[0].output, vec!["w".to_string()]);
        assert_eq!(g.node[0].attribute[0].i, DataType::Float as i64);
        assert_eq!(m.opset_import[0].version, 17);
        assert_eq!(m.producer_name, "msm");
    }

    #[test]
    fn f32_weight_round_trips_bytes() {
        let g = tiny(WeightType::F32).to_model().unwrap().graph.unwrap();
        let raw = &g.initializer[0].raw_data;
        let back: Vec<f32> = raw
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(back, vec![1.0, -2.5, 3.0e-3]);
        assert_eq!(g.node.len(), 1);
    }

    #[test]
    fn graph_errors_are_caught() {
        let mut b = tiny(WeightType::F32);
        assert!(b.add_node("Relu", &["nope"], &["z"], vec![]).is_err());
        assert!(b.add_node("Relu", &["y"], &["x"], vec![]).is_err());
        assert!(b.add_weight("v", &[2, 2], &[1.0; 3]).is_err());
        b.add_output("missing", &[Dim::Fixed(1)]);
        let e = b.to_model().unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
        assert!(b.set_opset(16).is_err());
    }

    #[test]
    fn write_is_atomic_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        let b = tiny(WeightType::F16);
        b.write(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b.to_bytes().unwrap());
        // Renaming over a folder fails after the temporary file was written: the error names
        // the target and the temporary file is gone.
        let folder = dir.path().join("taken.onnx");
        std::fs::create_dir(&folder).unwrap();
        let e = b.write(&folder).unwrap_err().to_string();
        assert!(e.contains("taken.onnx"), "{e}");
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["m.onnx", "taken.onnx"]);
    }
}
