//! A minimal ONNX graph writer over `tract_onnx::pb` (prost types): initializers (f16 with a Cast
//! to f32, or f32), nodes with attributes, graph inputs/outputs, metadata, atomic write.
//!
//! This is what the UNet emitter needs and nothing more; it has the same shape as the runtime's
//! `msm::onnx::builder` so that the emitter can move onto it once that is on `main`.

use std::path::Path;

use prost::Message;
use tract_onnx::pb;

use msm::{Error, Result};

/// ONNX opset written into the model.
pub const OPSET: i64 = 17;
/// IR version matching opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;

/// Storage type of the weight initializers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    /// f32 initializers, used directly.
    F32,
    /// f16 initializers, each followed by a `Cast` to f32 (half the file size).
    F16,
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Attr {
    /// Integer.
    Int(i64),
    /// Integer list.
    Ints(Vec<i64>),
    /// Float.
    Float(f32),
    /// String.
    Str(String),
}

/// Accumulates nodes and initializers of one graph.
#[derive(Debug)]
pub struct Graph {
    weights: WeightType,
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    counter: usize,
}

fn value_info(name: &str, dims: &[Option<i64>], params: &[&str]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .zip(params)
        .map(|(d, p)| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Some(v) => Value::DimValue(*v),
                None => Value::DimParam(p.to_string()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

impl Graph {
    /// An empty graph whose weights are stored as `weights`.
    pub fn new(weights: WeightType) -> Graph {
        Graph {
            weights,
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            counter: 0,
        }
    }

    /// Declares an f32 graph input; `None` dimensions are symbolic, named by `params`.
    pub fn input(&mut self, name: &str, dims: &[Option<i64>], params: &[&str]) {
        self.inputs.push(value_info(name, dims, params));
    }

    /// Declares an f32 graph output.
    pub fn output(&mut self, name: &str, dims: &[Option<i64>], params: &[&str]) {
        self.outputs.push(value_info(name, dims, params));
    }

    /// A weight tensor named `name`, stored as the graph's weight type; returns the f32 value name.
    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> Result<String> {
        let n: usize = dims.iter().product();
        if n != data.len() {
            return Err(Error::invalid(format!(
                "weight {name}: shape {dims:?} holds {n} values but {} were given",
                data.len()
            )));
        }
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        match self.weights {
            WeightType::F32 => {
                self.initializers.push(pb::TensorProto {
                    name: name.to_string(),
                    dims,
                    data_type: pb::tensor_proto::DataType::Float as i32,
                    raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    ..Default::default()
                });
                Ok(name.to_string())
            }
            WeightType::F16 => {
                let stored = format!("{name}.f16");
                self.initializers.push(pb::TensorProto {
                    name: stored.clone(),
                    dims,
                    data_type: pb::tensor_proto::DataType::Float16 as i32,
                    raw_data: data
                        .iter()
                        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                        .collect(),
                    ..Default::default()
                });
                self.node_named(
                    "Cast",
                    &[&stored],
                    &[("to", Attr::Int(pb::tensor_proto::DataType::Float as i64))],
                    name,
                );
                Ok(name.to_string())
            }
        }
    }

    /// An exact f32 constant (kept f32 whatever the weight type: scales, frequencies).
    pub fn const_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.to_string(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.to_string()
    }

    /// An int64 constant (shapes, axes).
    pub fn const_i64(&mut self, name: &str, data: &[i64]) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.to_string(),
            dims: vec![data.len() as i64],
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.to_string()
    }

    /// Whether an initializer called `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.initializers.iter().any(|t| t.name == name)
    }

    /// Adds a node with one output named automatically; returns that name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.counter += 1;
        let out = format!("{}_{}", op.to_lowercase(), self.counter);
        self.node_named(op, inputs, attrs, &out);
        out
    }

    /// Adds a node whose single output is `out`.
    pub fn node_named(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)], out: &str) {
        use pb::attribute_proto::AttributeType as T;
        let attribute = attrs
            .iter()
            .map(|(name, a)| {
                let mut p = pb::AttributeProto {
                    name: name.to_string(),
                    ..Default::default()
                };
                match a {
                    Attr::Int(i) => {
                        p.r#type = T::Int as i32;
                        p.i = *i;
                    }
                    Attr::Ints(v) => {
                        p.r#type = T::Ints as i32;
                        p.ints = v.clone();
                    }
                    Attr::Float(f) => {
                        p.r#type = T::Float as i32;
                        p.f = *f;
                    }
                    Attr::Str(s) => {
                        p.r#type = T::String as i32;
                        p.s = s.as_bytes().to_vec();
                    }
                }
                p
            })
            .collect();
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            name: format!("n{}_{}", self.nodes.len(), op),
            op_type: op.to_string(),
            attribute,
            ..Default::default()
        });
    }

    /// The finished model with `metadata` as `metadata_props`.
    pub fn into_model(self, name: &str, metadata: &[(String, String)]) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "msm-export".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(pb::GraphProto {
                node: self.nodes,
                name: name.to_string(),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| pb::StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// Writes `model` to `path` through a temporary file in the same folder and a rename.
pub fn write_model(model: &pb::ModelProto, path: &Path) -> Result<()> {
    write_atomic(path, &model.encode_to_vec())
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
