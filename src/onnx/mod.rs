//! ONNX model files: the metadata an MSM model carries ([`meta`]) and a graph builder that writes
//! such files ([`builder`]). Running a model is [`crate::denoiser::onnx`].

pub mod builder;
pub mod meta;

pub use builder::{Attr, Dim, OnnxBuilder, WeightType};
pub use meta::ModelMeta;
