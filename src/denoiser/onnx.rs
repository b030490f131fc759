//! [`OnnxDenoiser`]: an MSM model file, run by the native UNet executor or by tract.
//!
//! Two executors ([`Backend`]): a file that is exactly the guided-diffusion graph this project's
//! emitter writes (checked node by node, see [`crate::unet::from_onnx`]) runs on the native
//! executor ([`crate::unet::NativeUNet`]: the same function on SIMD matrix kernels, several
//! times faster than tract here; `docs/performance.md`); any other MSM model file runs on
//! tract. [`Backend::Auto`] (the default) picks the native one when it can.
//!
//! Loading reads the file through a memory map, checks that it is an ONNX model, reads and checks
//! its MSM metadata ([`ModelMeta`]) and its interface (inputs `x` `[N, 2, H, W]` and `t`
//! `[N]`, output `eps` `[N, 2, H, W]`, all f32) before building anything, then builds one optimized f32 plan for
//! a single image (N = 1): tract's fast convolution path is for batch 1, so a batch runs image by
//! image. Weights stored as f16 are cast to f32 once at load time (tract folds the `Cast` nodes),
//! and any arithmetic a graph still does in f16 is turned to f32 (tract's `f16_to_f32`
//! transform), so all computing is f32. tract's direct spatial convolution is off by default (see
//! `build_plan`; the environment variable `TRACT_DISABLE_DIRECT_SPATIAL=0` turns it on).
//!
//! Memory: the mapped file is decoded once into the protobuf structures, which are dropped as soon
//! as tract has built its plan; the map itself is released before that. So loading holds about
//! two copies of the weights for a moment, and the loaded model one (in f32).
//!
//! The plan is shared by all callers. Each call takes a run state from a pool (one per thread that
//! is running the model at that moment) and puts it back afterwards, so concurrent calls from
//! rayon workers never share a state. (Making a fresh state per call was measured at 4 to 8 us,
//! under 0.1% of a 64x64 run, so the pool is for tidiness rather than speed.)

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use memmap2::Mmap;
use ndarray::{Array4, ArrayView4, Axis};
use prost::Message;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::pb::{type_proto, GraphProto, ModelProto, ValueInfoProto};
use tract_onnx::prelude::tract_data::knobs::KnobScope;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::transform::get_transform;

use super::{check_batch, Denoiser};
use crate::onnx::meta::ModelMeta;
use crate::unet::{native_from_proto, NativeUNet};
use crate::{Error, Result};

/// Name of the image input.
pub const INPUT_X: &str = "x";
/// Name of the timestep input.
pub const INPUT_T: &str = "t";
/// Name of the noise-estimate output.
pub const OUTPUT_EPS: &str = "eps";

/// Which executor runs a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The native executor when the file is a graph it runs exactly, tract otherwise.
    #[default]
    Auto,
    /// tract, for any MSM model file.
    Tract,
    /// The native UNet executor; loading fails for a file it cannot run exactly.
    Native,
    /// The native executor with its 3x3 convolutions in bf16 on AMX tiles or AVX512-BF16
    /// registers (f32 accumulation; inputs and weights rounded to 8 significant bits). Loading
    /// fails on a CPU with neither or for a file the native executor cannot run.
    NativeBf16,
    /// The bf16 executor with its 64- and 128-pixel 3x3 convolutions on Winograd F(4x4, 3x3)
    /// ([`NativeUNet::use_fast`]): fewer multiplies, at a larger rounding error (its network
    /// output further from f32 than [`Backend::NativeBf16`]'s), held to the reconstruction's
    /// PSNR instead. Loading fails on a CPU without AVX512-BF16 or for a file the native
    /// executor cannot run.
    NativeFast,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::Tract => "tract",
            Backend::Native => "native",
            Backend::NativeBf16 => "native-bf16",
            Backend::NativeFast => "native-fast",
        })
    }
}

/// tract's optimized plan with its pool of run states.
struct TractEngine {
    plan: Arc<TypedSimplePlan>,
    /// Position of `x` among the plan inputs (`t` is the other one).
    x_index: usize,
    /// Idle run states; a call takes one (or makes one when none is idle) and returns it.
    states: Mutex<Vec<TypedSimpleState>>,
}

enum Engine {
    Tract(TractEngine),
    Native(Box<NativeUNet>),
}

/// An MSM noise-prediction network loaded from an ONNX file.
pub struct OnnxDenoiser {
    path: PathBuf,
    meta: ModelMeta,
    engine: Engine,
}

impl std::fmt::Debug for OnnxDenoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxDenoiser")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl OnnxDenoiser {
    /// Loads the model file `path` with [`Backend::Auto`] (see the module documentation for
    /// what is checked).
    pub fn load(path: impl AsRef<Path>) -> Result<OnnxDenoiser> {
        Self::load_with(path, Backend::Auto)
    }

    /// Loads the model file `path` to run on `backend`.
    pub fn load_with(path: impl AsRef<Path>, backend: Backend) -> Result<OnnxDenoiser> {
        let path = path.as_ref();
        let proto = read_proto(path)?;
        let meta = ModelMeta::from_props(
            path,
            proto
                .metadata_props
                .iter()
                .map(|p| (p.key.clone(), p.value.clone())),
        )?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| not_onnx(path, "the protobuf holds no graph"))?;
        let x_index = check_interface(path, graph, &meta)?;
        let native = match backend {
            Backend::Tract => None,
            Backend::Auto => native_from_proto(&proto, &meta).ok(),
            Backend::Native | Backend::NativeBf16 | Backend::NativeFast => {
                let mut n = native_from_proto(&proto, &meta).map_err(|e| {
                    Error::format(
                        path,
                        format!(
                            "the native executor cannot run this model ({e}); expected a UNet \
                             written by msm-train, or use the tract backend"
                        ),
                    )
                })?;
                match backend {
                    Backend::NativeBf16 => {
                        n.use_bf16()?;
                    }
                    Backend::NativeFast => {
                        n.use_fast()?;
                    }
                    _ => {}
                }
                Some(n)
            }
        };
        let engine = match native {
            Some(n) => Engine::Native(Box::new(n)),
            None => Engine::Tract(TractEngine {
                plan: build_plan(path, &proto, &meta, x_index)?,
                x_index,
                states: Mutex::new(Vec::new()),
            }),
        };
        drop(proto);
        Ok(OnnxDenoiser {
            path: path.to_path_buf(),
            meta,
            engine,
        })
    }

    /// The executor the model runs on ([`Backend::Tract`], [`Backend::Native`],
    /// [`Backend::NativeBf16`] or [`Backend::NativeFast`]).
    pub fn backend(&self) -> Backend {
        match &self.engine {
            Engine::Tract(_) => Backend::Tract,
            Engine::Native(n) if n.uses_fast() => Backend::NativeFast,
            Engine::Native(n) if n.uses_bf16() => Backend::NativeBf16,
            Engine::Native(_) => Backend::Native,
        }
    }

    /// The native network, when the model runs on it.
    pub fn native(&self) -> Option<&NativeUNet> {
        match &self.engine {
            Engine::Native(n) => Some(n),
            Engine::Tract(_) => None,
        }
    }

    /// The model's metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that images of `height` x `width` with `channels` channels fit the model; the error
    /// names the model file, both sizes and what to do.
    pub fn check_data(&self, height: usize, width: usize, channels: usize) -> Result<()> {
        let m = &self.meta;
        if (height, width, channels) != (m.height, m.width, m.channels) {
            return Err(Error::format(
                &self.path,
                format!(
                    "the model takes {}-channel {}x{} images (height x width), but the data is \
                     {}-channel {}x{}; use a model trained at the data's size, or resample the \
                     data to {}x{}",
                    m.channels, m.height, m.width, channels, height, width, m.height, m.width
                ),
            ));
        }
        Ok(())
    }

    fn run_error(&self, e: impl std::fmt::Display) -> Error {
        Error::format(&self.path, format!("running the model failed: {e}"))
    }
}

impl TractEngine {
    /// Runs one image [1, 2, h, w] at timestep `t` through `state`, appending the result to `out`.
    fn run_one(
        &self,
        state: &mut TypedSimpleState,
        (h, w): (usize, usize),
        image: &[f32],
        t: f32,
        out: &mut Vec<f32>,
    ) -> TractResult<()> {
        let x = Tensor::from_shape(&[1, 2, h, w], image)?.into_tvalue();
        let t = Tensor::from_shape(&[1], &[t])?.into_tvalue();
        let inputs = if self.x_index == 0 {
            tvec![x, t]
        } else {
            tvec![t, x]
        };
        let result = state.run(inputs)?;
        let eps = result[0].try_as_plain_ram()?;
        out.extend_from_slice(eps.as_slice::<f32>()?);
        Ok(())
    }
}

impl Denoiser for OnnxDenoiser {
    fn image_size(&self) -> (usize, usize) {
        (self.meta.height, self.meta.width)
    }

    fn predict_eps(&self, x: ArrayView4<f32>, t: &[f32]) -> Result<Array4<f32>> {
        check_batch(self.image_size(), &x, t)?;
        let last = (self.meta.num_timesteps - 1) as f32;
        if let Some(bad) = t.iter().find(|&&v| !(0.0..=last).contains(&v)) {
            return Err(Error::invalid(format!(
                "timestep {bad} is outside the model's training range 0..={last} ({})",
                self.path.display()
            )));
        }
        let n = x.dim().0;
        let size = (self.meta.height, self.meta.width);
        let per_image = 2 * size.0 * size.1;
        let mut out = Vec::with_capacity(n * per_image);
        let image = |i: usize| -> std::borrow::Cow<'_, [f32]> {
            let item = x.index_axis(Axis(0), i);
            match item.to_slice() {
                Some(s) => std::borrow::Cow::Borrowed(s),
                None => std::borrow::Cow::Owned(item.iter().copied().collect()),
            }
        };
        match &self.engine {
            Engine::Native(net) => {
                for (i, &ti) in t.iter().enumerate() {
                    out.extend(net.eps(&image(i), ti).map_err(|e| self.run_error(e))?);
                }
            }
            Engine::Tract(tr) => {
                let idle = tr.states.lock().ok().and_then(|mut pool| pool.pop());
                let mut state = match idle {
                    Some(s) => s,
                    None => tr.plan.spawn().map_err(|e| self.run_error(e))?,
                };
                for (i, &ti) in t.iter().enumerate() {
                    // A state that failed mid-run is dropped rather than returned to the pool.
                    tr.run_one(&mut state, size, &image(i), ti, &mut out)
                        .map_err(|e| self.run_error(format!("{e:#}")))?;
                }
                if let Ok(mut pool) = tr.states.lock() {
                    pool.push(state);
                }
            }
        }
        if out.len() != n * per_image {
            return Err(self.run_error(format!(
                "output `eps` holds {} values per image; expected {per_image} (2 x {} x {})",
                out.len() / n.max(1),
                self.meta.height,
                self.meta.width
            )));
        }
        Array4::from_shape_vec((n, 2, self.meta.height, self.meta.width), out)
            .map_err(|e| self.run_error(e))
    }
}

/// Maps the file and decodes it as an ONNX `ModelProto`.
fn read_proto(path: &Path) -> Result<ModelProto> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read only and dropped before this function returns; the bytes are
    // decoded (copied) into the protobuf structures at once. A file truncated by another process
    // meanwhile would be a user error outside what the runtime guards against.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let proto = ModelProto::decode(&map[..]).map_err(|e| not_onnx(path, &e.to_string()))?;
    if proto.ir_version <= 0 || proto.opset_import.is_empty() {
        return Err(not_onnx(
            path,
            "the protobuf holds no IR version or operator set",
        ));
    }
    Ok(proto)
}

fn not_onnx(path: &Path, why: &str) -> Error {
    Error::format(
        path,
        format!("not an ONNX model ({why}); expected a model file written by `msm-train`"),
    )
}

/// Dimensions of an f32 graph input or output (`None` for a symbolic or unknown dimension), or
/// an error naming what differs.
fn f32_dims(path: &Path, role: &str, v: &ValueInfoProto) -> Result<Vec<Option<i64>>> {
    let bad = |what: &str| {
        Error::format(
            path,
            format!("model {role} `{}` {what}; expected an f32 tensor", v.name),
        )
    };
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(bad("has no tensor type"));
    };
    if t.elem_type != DataType::Float as i32 {
        return Err(bad(&format!("has element type {}", t.elem_type)));
    }
    let shape = t.shape.as_ref().ok_or_else(|| bad("has no shape"))?;
    Ok(shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(DimValue::DimValue(n)) => Some(n),
            _ => None,
        })
        .collect())
}

/// Checks the graph's inputs and output against the MSM interface and the metadata; returns the
/// position of `x` among the inputs.
fn check_interface(path: &Path, graph: &GraphProto, meta: &ModelMeta) -> Result<usize> {
    let (h, w) = (meta.height as i64, meta.width as i64);
    let init: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !init.contains(i.name.as_str()))
        .collect();
    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    if sorted != [INPUT_T, INPUT_X] {
        return Err(Error::format(
            path,
            format!(
                "model inputs are {names:?}; expected `{INPUT_X}` [N, 2, {h}, {w}] and \
                 `{INPUT_T}` [N]"
            ),
        ));
    }
    let x_index = names.iter().position(|n| *n == INPUT_X).unwrap_or(0);
    let batch_ok = |d: Option<i64>| d.is_none() || d == Some(1);
    let image_ok = |dims: &[Option<i64>]| {
        dims.len() == 4 && batch_ok(dims[0]) && dims[1..] == [Some(2), Some(h), Some(w)]
    };
    let shape_text = |dims: &[Option<i64>]| {
        let parts: Vec<String> = dims
            .iter()
            .map(|d| d.map_or("?".to_string(), |n| n.to_string()))
            .collect();
        format!("[{}]", parts.join(", "))
    };
    let x_dims = f32_dims(path, "input", inputs[x_index])?;
    if !image_ok(&x_dims) {
        return Err(Error::format(
            path,
            format!(
                "model input `{INPUT_X}` has shape {}; expected [N, 2, {h}, {w}] as the \
                 metadata (msm.image_height, msm.image_width) says",
                shape_text(&x_dims)
            ),
        ));
    }
    let t_dims = f32_dims(path, "input", inputs[1 - x_index])?;
    if t_dims.len() != 1 || !batch_ok(t_dims[0]) {
        return Err(Error::format(
            path,
            format!(
                "model input `{INPUT_T}` has shape {}; expected [N]",
                shape_text(&t_dims)
            ),
        ));
    }
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    if outputs != [OUTPUT_EPS] {
        return Err(Error::format(
            path,
            format!("model outputs are {outputs:?}; expected one output `{OUTPUT_EPS}`"),
        ));
    }
    let eps_dims = f32_dims(path, "output", &graph.output[0])?;
    if !image_ok(&eps_dims) {
        return Err(Error::format(
            path,
            format!(
                "model output `{OUTPUT_EPS}` has shape {}; expected [N, 2, {h}, {w}]",
                shape_text(&eps_dims)
            ),
        ));
    }
    Ok(x_index)
}

/// The tract knob that turns off its direct spatial convolution.
const DIRECT_SPATIAL_KNOB: &str = "TRACT_DISABLE_DIRECT_SPATIAL";

/// Builds the optimized batch-1 f32 plan. tract's direct spatial convolution (chosen for 3x3
/// convolutions on rows of 128 points or more) measured 2 to 3 times slower than its im2col path
/// on this project's x86 machines (`benches/denoiser.rs`), so it is turned off unless the
/// environment sets `TRACT_DISABLE_DIRECT_SPATIAL` itself (`=0` turns it back on).
fn build_plan(
    path: &Path,
    proto: &ModelProto,
    meta: &ModelMeta,
    x_index: usize,
) -> Result<Arc<TypedSimplePlan>> {
    let tract_err = |e: TractError| {
        Error::format(
            path,
            format!("tract could not build the model: {e:#}; expected operators tract supports"),
        )
    };
    let dir = path.parent().and_then(|p| p.to_str());
    let parsed = tract_onnx::onnx().parse(proto, dir).map_err(tract_err)?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(Error::format(
            path,
            format!(
                "model nodes read values nothing defines: {:?}",
                parsed.unresolved_inputs
            ),
        ));
    }
    let (h, w) = (meta.height, meta.width);
    let x_fact = InferenceFact::dt_shape(f32::datum_type(), tvec![1, 2, h, w]);
    let t_fact = InferenceFact::dt_shape(f32::datum_type(), tvec![1]);
    let optimize = || -> TractResult<TypedModel> {
        let mut model = parsed
            .model
            .with_input_fact(x_index, x_fact)?
            .with_input_fact(1 - x_index, t_fact)?
            .into_typed()?
            .into_decluttered()?;
        // Weights stored f16 and cast right away are folded to f32 constants by now; anything
        // still computed in f16 (a graph that casts activations down) is turned to f32 here,
        // since tract's f16 arithmetic is hundreds of times slower on x86.
        let to_f32 = get_transform("f16_to_f32")?
            .ok_or_else(|| TractError::msg("this tract has no f16_to_f32 transform"))?;
        model.transform(&*to_f32)?;
        model.into_optimized()
    };
    let model = if std::env::var_os(DIRECT_SPATIAL_KNOB).is_some() {
        optimize()
    } else {
        KnobScope::new([(DIRECT_SPATIAL_KNOB, "1")]).and_then(|scope| scope.enter(optimize))
    }
    .map_err(tract_err)?;
    let out = model.output_fact(0).map_err(tract_err)?;
    let expected: TVec<TDim> = tvec![1.into(), 2.into(), h.into(), w.into()];
    if out.datum_type != f32::datum_type() || out.shape.dims() != &expected[..] {
        return Err(Error::format(
            path,
            format!(
                "model output `{OUTPUT_EPS}` computes {:?} {:?} for one image; expected f32 \
                 [1, 2, {h}, {w}]",
                out.datum_type,
                out.shape.dims()
            ),
        ));
    }
    model.into_runnable().map_err(tract_err)
}
