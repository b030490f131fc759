//! `OnnxDenoiser` against independent references: ONNX files are built here with the crate's
//! builder, loaded and run with tract, and compared with the same networks computed directly in
//! Rust (f64).

use std::path::{Path, PathBuf};

use half::f16;
use msm::denoiser::{Denoiser, OnnxDenoiser};
use msm::onnx::builder::{Attr, Dim, OnnxBuilder, WeightType};
use msm::onnx::meta::{MaskPattern, ModelMeta};
use ndarray::{s, Array4, ArrayView4};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

const H: usize = 8;
const W: usize = 8;
const D: usize = 2 * H * W;

fn uniform(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn image_dims() -> [Dim; 4] {
    [Dim::Batch, Dim::Fixed(2), Dim::Fixed(H), Dim::Fixed(W)]
}

fn rel_err(got: &Array4<f32>, want: &Array4<f64>) -> f64 {
    assert_eq!(got.dim(), want.dim());
    let num: f64 = got
        .iter()
        .zip(want.iter())
        .map(|(&a, &b)| (a as f64 - b).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

fn batch(rng: &mut ChaCha8Rng, n: usize) -> Array4<f32> {
    Array4::from_shape_vec((n, 2, H, W), uniform(rng, n * D, 1.0)).unwrap()
}

/// The linear denoiser eps = M vec(x) + b0 + t b1, with M stored transposed for MatMul.
struct Linear {
    mt: Vec<f32>,
    b0: Vec<f32>,
    b1: Vec<f32>,
}

impl Linear {
    fn random(seed: u64) -> Linear {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Linear {
            mt: uniform(&mut rng, D * D, 1.0 / (D as f32).sqrt()),
            b0: uniform(&mut rng, D, 0.5),
            b1: uniform(&mut rng, D, 1e-3),
        }
    }

    /// Direct computation in f64.
    fn eval(&self, x: ArrayView4<f32>, t: &[f32]) -> Array4<f64> {
        let n = x.dim().0;
        let mut out = Array4::<f64>::zeros((n, 2, H, W));
        for (b, &tb) in t.iter().enumerate().take(n) {
            let v: Vec<f64> = x
                .slice(s![b, .., .., ..])
                .iter()
                .map(|&a| a as f64)
                .collect();
            let o = out.slice_mut(s![b, .., .., ..]);
            for (j, oj) in o.into_iter().enumerate() {
                let mut acc = self.b0[j] as f64 + tb as f64 * self.b1[j] as f64;
                for (i, vi) in v.iter().enumerate() {
                    acc += vi * self.mt[i * D + j] as f64;
                }
                *oj = acc;
            }
        }
        out
    }

    /// x -> Reshape [-1, D] -> MatMul -> Add (b0 + t b1) -> Reshape [-1, 2, H, W].
    fn builder(&self, weights: WeightType) -> OnnxBuilder {
        let mut b = OnnxBuilder::new("linear", weights);
        b.add_input("x", &image_dims()).unwrap();
        b.add_input("t", &[Dim::Batch]).unwrap();
        let mt = b.add_weight("mt", &[D, D], &self.mt).unwrap();
        let b0 = b.add_weight("b0", &[D], &self.b0).unwrap();
        let b1 = b.add_weight("b1", &[1, D], &self.b1).unwrap();
        let flat = b.add_i64("flat", &[2], &[-1, D as i64]).unwrap();
        let img = b
            .add_i64("img", &[4], &[-1, 2, H as i64, W as i64])
            .unwrap();
        let ax1 = b.add_i64("ax1", &[1], &[1]).unwrap();
        let v = b.op("Reshape", &["x", &flat], vec![]).unwrap();
        let mv = b.op("MatMul", &[&v, &mt], vec![]).unwrap();
        let tc = b.op("Unsqueeze", &["t", &ax1], vec![]).unwrap();
        let tb = b.op("Mul", &[&tc, &b1], vec![]).unwrap();
        let bias = b.op("Add", &[&tb, &b0], vec![]).unwrap();
        let sum = b.op("Add", &[&mv, &bias], vec![]).unwrap();
        b.add_node("Reshape", &[&sum, &img], &["eps"], vec![])
            .unwrap();
        b.add_output("eps", &image_dims());
        b
    }

    fn write(&self, dir: &Path, weights: WeightType, meta: &ModelMeta) -> PathBuf {
        let mut b = self.builder(weights);
        b.set_meta(meta);
        let path = dir.join(format!("linear_{weights:?}.onnx"));
        b.write(&path).unwrap();
        path
    }
}

fn full_meta() -> ModelMeta {
    let mut m = ModelMeta::new(H, W);
    m.train_mask = MaskPattern::Equispaced;
    m.train_acceleration = 3.5;
    m.train_acs_lines = 2;
    m.train_noise_eta = 0.01;
    m.coils = Some(4);
    m.architecture = Some("linear test network".into());
    m.data_source = Some("random".into());
    m.held_out_slices = Some("none".into());
    m.steps_trained = Some(7);
    m.final_loss = Some(0.125);
    m.git_commit = Some("0123abcd".into());
    m.created = Some("2025-06-01T00:00:00Z".into());
    m.extra
        .insert("msm.unknown_future_key".into(), "kept".into());
    m
}

#[test]
fn linear_model_matches_direct_computation_f32_and_f16() {
    let dir = tempfile::tempdir().unwrap();
    let lin = Linear::random(1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = batch(&mut rng, 4);
    let t = [0.0, 17.0, 500.0, 999.0];
    let want = lin.eval(x.view(), &t);
    for (weights, tol) in [(WeightType::F32, 1e-5), (WeightType::F16, 5e-3)] {
        let path = lin.write(dir.path(), weights, &ModelMeta::new(H, W));
        let den = OnnxDenoiser::load(&path).unwrap();
        assert_eq!(den.image_size(), (H, W));
        let got = den.predict_eps(x.view(), &t).unwrap();
        let err = rel_err(&got, &want);
        assert!(err < tol, "{weights:?}: relative error {err}");
        // f16 storage must actually round the weights (the check is not vacuous).
        if weights == WeightType::F16 {
            assert!(err > 1e-6, "f16 weights gave error {err}");
        }
    }
    // The f16 file stores half the weight bytes.
    let f32_len = std::fs::metadata(dir.path().join("linear_F32.onnx"))
        .unwrap()
        .len();
    let f16_len = std::fs::metadata(dir.path().join("linear_F16.onnx"))
        .unwrap()
        .len();
    assert!(f16_len * 10 < f32_len * 6, "{f16_len} vs {f32_len}");
}

/// A graph that computes in f16 (inputs cast down, f16 weights used without a cast up, the
/// result cast back to f32), as a mixed-precision export would write it: the loader turns the
/// arithmetic to f32, so the result matches the f16-rounded weights applied in f32 arithmetic to
/// the unrounded input, far closer than f16 arithmetic does (2.4e-4 relative error measured).
#[test]
fn graphs_computing_in_f16_are_run_in_f32() {
    let dir = tempfile::tempdir().unwrap();
    let lin = Linear::random(14);
    let mut b = OnnxBuilder::new("half", WeightType::F16);
    b.add_input("x", &image_dims()).unwrap();
    b.add_input("t", &[Dim::Batch]).unwrap();
    b.add_weight("mt", &[D, D], &lin.mt).unwrap();
    b.add_weight("b0", &[D], &lin.b0).unwrap();
    b.add_weight("b1", &[1, D], &lin.b1).unwrap();
    let flat = b.add_i64("flat", &[2], &[-1, D as i64]).unwrap();
    let img = b
        .add_i64("img", &[4], &[-1, 2, H as i64, W as i64])
        .unwrap();
    let ax1 = b.add_i64("ax1", &[1], &[1]).unwrap();
    let to_half = || vec![Attr::int("to", 10)];
    let xh = b.op("Cast", &["x"], to_half()).unwrap();
    let th = b.op("Cast", &["t"], to_half()).unwrap();
    let v = b.op("Reshape", &[&xh, &flat], vec![]).unwrap();
    let mv = b.op("MatMul", &[&v, "mt.f16"], vec![]).unwrap();
    let tc = b.op("Unsqueeze", &[&th, &ax1], vec![]).unwrap();
    let tb = b.op("Mul", &[&tc, "b1.f16"], vec![]).unwrap();
    let bias = b.op("Add", &[&tb, "b0.f16"], vec![]).unwrap();
    let sum = b.op("Add", &[&mv, &bias], vec![]).unwrap();
    let back = b.op("Cast", &[&sum], vec![Attr::int("to", 1)]).unwrap();
    b.add_node("Reshape", &[&back, &img], &["eps"], vec![])
        .unwrap();
    b.add_output("eps", &image_dims());
    b.set_meta(&ModelMeta::new(H, W));
    let path = dir.path().join("half.onnx");
    b.write(&path).unwrap();

    let rounded = Linear {
        mt: round_f16(&lin.mt),
        b0: round_f16(&lin.b0),
        b1: round_f16(&lin.b1),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let x = batch(&mut rng, 2);
    let t = [100.0, 900.0];
    let den = OnnxDenoiser::load(&path).unwrap();
    let got = den.predict_eps(x.view(), &t).unwrap();
    let err = rel_err(&got, &rounded.eval(x.view(), &t));
    assert!(err < 1e-5, "relative error {err}");
}

#[test]
fn metadata_round_trips_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let meta = full_meta();
    let path = Linear::random(3).write(dir.path(), WeightType::F16, &meta);
    let den = OnnxDenoiser::load(&path).unwrap();
    assert_eq!(den.meta(), &meta);
    assert_eq!(den.path(), path.as_path());
}

#[test]
fn batch_equals_single_calls_and_strided_views_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = Linear::random(4).write(dir.path(), WeightType::F32, &ModelMeta::new(H, W));
    let den = OnnxDenoiser::load(&path).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = batch(&mut rng, 3);
    let t = [3.0, 250.5, 998.0];
    let all = den.predict_eps(x.view(), &t).unwrap();
    assert_eq!(all.dim(), (3, 2, H, W));
    for i in 0..3 {
        let one = den
            .predict_eps(x.slice(s![i..i + 1, .., .., ..]), &t[i..i + 1])
            .unwrap();
        assert_eq!(one.slice(s![0, .., .., ..]), all.slice(s![i, .., .., ..]));
    }
    // A non-contiguous view (every other image, columns reversed) gives the same numbers as
    // its contiguous copy.
    let big = batch(&mut rng, 4);
    let view = big.slice(s![..;2, .., .., ..;-1]);
    let owned = view.to_owned();
    assert_eq!(
        den.predict_eps(view, &[1.0, 2.0]).unwrap(),
        den.predict_eps(owned.view(), &[1.0, 2.0]).unwrap()
    );
}

#[test]
fn concurrent_calls_match_serial_calls() {
    let dir = tempfile::tempdir().unwrap();
    let lin = Linear::random(6);
    let path = lin.write(dir.path(), WeightType::F16, &ModelMeta::new(H, W));
    let den = OnnxDenoiser::load(&path).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let inputs: Vec<(Array4<f32>, Vec<f32>)> = (0..24)
        .map(|i| (batch(&mut rng, 1 + i % 3), vec![(i * 40) as f32; 1 + i % 3]))
        .collect();
    let serial: Vec<Array4<f32>> = inputs
        .iter()
        .map(|(x, t)| den.predict_eps(x.view(), t).unwrap())
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    for _ in 0..3 {
        let parallel: Vec<Array4<f32>> = pool.install(|| {
            inputs
                .par_iter()
                .map(|(x, t)| den.predict_eps(x.view(), t).unwrap())
                .collect()
        });
        assert_eq!(parallel, serial);
    }
    // The serial results are right, too.
    for ((x, t), got) in inputs.iter().zip(&serial) {
        assert!(rel_err(got, &lin.eval(x.view(), t)) < 5e-3);
    }
}

fn load_err(path: &Path) -> String {
    OnnxDenoiser::load(path).unwrap_err().to_string()
}

#[test]
fn files_that_are_not_onnx_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("text.onnx", b"hello, this is not a model\n".to_vec()),
        ("empty.onnx", Vec::new()),
        (
            "random.onnx",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = load_err(&path);
        assert!(e.contains(name) && e.contains("not an ONNX model"), "{e}");
    }
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.onnx");
    let e = OnnxDenoiser::load(&path).unwrap_err();
    assert!(matches!(e, msm::Error::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("absent.onnx"), "{e}");
}

#[test]
fn metadata_is_checked_before_the_graph_is_built() {
    let dir = tempfile::tempdir().unwrap();
    // No metadata at all: the first required key is named.
    let path = dir.path().join("bare.onnx");
    Linear::random(8)
        .builder(WeightType::F32)
        .write(&path)
        .unwrap();
    let e = load_err(&path);
    assert!(
        e.contains("bare.onnx") && e.contains("msm.format_version"),
        "{e}"
    );

    // One key missing, and a graph tract cannot build: the metadata error comes first.
    let mut b = OnnxBuilder::new("bad", WeightType::F32);
    b.add_input("x", &image_dims()).unwrap();
    b.add_input("t", &[Dim::Batch]).unwrap();
    b.add_node("NoSuchOperator", &["x", "t"], &["eps"], vec![])
        .unwrap();
    b.add_output("eps", &image_dims());
    b.set_meta(&ModelMeta::new(H, W));
    let mut proto = b.to_model().unwrap();
    proto
        .metadata_props
        .retain(|p| p.key != "msm.num_timesteps");
    let path = dir.path().join("partial.onnx");
    std::fs::write(&path, prost::Message::encode_to_vec(&proto)).unwrap();
    let e = load_err(&path);
    assert!(
        e.contains("partial.onnx") && e.contains("msm.num_timesteps"),
        "{e}"
    );

    // With full metadata the same graph fails in tract, naming the file.
    let path = dir.path().join("unsupported.onnx");
    b.write(&path).unwrap();
    let e = load_err(&path);
    assert!(e.contains("unsupported.onnx") && e.contains("tract"), "{e}");
}

#[test]
fn interface_must_match_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let lin = Linear::random(9);
    // Metadata says 16x16, graph takes 8x8.
    let path = lin.write(dir.path(), WeightType::F32, &ModelMeta::new(16, 16));
    let e = load_err(&path);
    assert!(e.contains("[N, 2, 16, 16]") && e.contains("`x`"), "{e}");

    // Inputs named differently.
    let mut b = OnnxBuilder::new("renamed", WeightType::F32);
    b.add_input("image", &image_dims()).unwrap();
    b.add_input("t", &[Dim::Batch]).unwrap();
    b.add_node("Identity", &["image"], &["eps"], vec![])
        .unwrap();
    b.add_output("eps", &image_dims());
    b.set_meta(&ModelMeta::new(H, W));
    let path = dir.path().join("renamed.onnx");
    b.write(&path).unwrap();
    let e = load_err(&path);
    assert!(
        e.contains("renamed.onnx") && e.contains("expected `x`"),
        "{e}"
    );
}

#[test]
fn check_data_names_both_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = Linear::random(10).write(dir.path(), WeightType::F32, &ModelMeta::new(H, W));
    let den = OnnxDenoiser::load(&path).unwrap();
    den.check_data(H, W, 2).unwrap();
    let e = den.check_data(16, 8, 2).unwrap_err().to_string();
    assert!(
        e.contains("linear_F32.onnx") && e.contains("8x8") && e.contains("16x8"),
        "{e}"
    );
    assert!(den.check_data(H, W, 1).is_err());
}

#[test]
fn bad_calls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = Linear::random(11).write(dir.path(), WeightType::F32, &ModelMeta::new(H, W));
    let den = OnnxDenoiser::load(&path).unwrap();
    let x = Array4::<f32>::zeros((2, 2, H, W));
    assert!(den.predict_eps(x.view(), &[1.0]).is_err());
    assert!(den.predict_eps(x.view(), &[1.0, f32::NAN]).is_err());
    assert!(den.predict_eps(x.view(), &[1.0, 1000.0]).is_err());
    assert!(den.predict_eps(x.view(), &[1.0, -1.0]).is_err());
    let wrong = Array4::<f32>::zeros((1, 2, H, W + 1));
    let e = den
        .predict_eps(wrong.view(), &[1.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("[n, 2, 8, 8]"), "{e}");
    let mut nan = x.clone();
    nan[[1, 0, 3, 3]] = f32::INFINITY;
    assert!(den.predict_eps(nan.view(), &[1.0, 2.0]).is_err());
    // An empty batch is fine.
    let none = den
        .predict_eps(Array4::<f32>::zeros((0, 2, H, W)).view(), &[])
        .unwrap();
    assert_eq!(none.dim(), (0, 2, H, W));
}

// ---------------------------------------------------------------------------------------------
// A tiny UNet-like conv net: Conv, SiLU (Sigmoid * x), a sinusoidal time embedding (Sin, Cos,
// Concat, Gemm), group normalization (either the InstanceNormalization form torch exports at
// opset 17, or GroupNormalization at opset 21), AveragePool, Resize and a skip Concat, with f16
// weights. The reference below computes the same net naively in f64 from the f16-rounded weights.

const C: usize = 8;
const G: usize = 2;
const FREQS: usize = C / 2;
const GN_EPS: f32 = 1e-5;

struct ConvNet {
    w1: Vec<f32>, // [C, 2, 3, 3]
    b1: Vec<f32>, // [C]
    freqs: Vec<f32>,
    wt: Vec<f32>, // [C, 2 * FREQS] (Gemm, transB)
    bt: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    w2: Vec<f32>, // [2, 2C, 1, 1]
    b2: Vec<f32>,
}

fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&a| f16::from_f32(a).to_f32()).collect()
}

impl ConvNet {
    fn random(seed: u64) -> ConvNet {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        ConvNet {
            w1: uniform(&mut rng, C * 2 * 9, 0.4),
            b1: uniform(&mut rng, C, 0.1),
            freqs: (0..FREQS).map(|k| (-(k as f32) * 2.0).exp()).collect(),
            wt: uniform(&mut rng, C * 2 * FREQS, 0.3),
            bt: uniform(&mut rng, C, 0.1),
            gamma: uniform(&mut rng, C, 0.5).iter().map(|g| 1.0 + g).collect(),
            beta: uniform(&mut rng, C, 0.2),
            w2: uniform(&mut rng, 2 * 2 * C, 0.3),
            b2: uniform(&mut rng, 2, 0.1),
        }
    }

    /// The weights as the file stores them (f16) and tract computes with them.
    fn rounded(&self) -> ConvNet {
        ConvNet {
            w1: round_f16(&self.w1),
            b1: round_f16(&self.b1),
            freqs: self.freqs.clone(), // stored f32
            wt: round_f16(&self.wt),
            bt: round_f16(&self.bt),
            gamma: round_f16(&self.gamma),
            beta: round_f16(&self.beta),
            w2: round_f16(&self.w2),
            b2: round_f16(&self.b2),
        }
    }

    fn builder(&self, group_norm_op: bool) -> OnnxBuilder {
        let mut b = OnnxBuilder::new("convnet", WeightType::F16);
        if group_norm_op {
            b.set_opset(21).unwrap();
        }
        b.add_input("x", &image_dims()).unwrap();
        b.add_input("t", &[Dim::Batch]).unwrap();
        let w1 = b.add_weight("w1", &[C, 2, 3, 3], &self.w1).unwrap();
        let b1 = b.add_weight("b1", &[C], &self.b1).unwrap();
        let h = b
            .op(
                "Conv",
                &["x", &w1, &b1],
                vec![
                    Attr::ints("kernel_shape", &[3, 3]),
                    Attr::ints("pads", &[1, 1, 1, 1]),
                ],
            )
            .unwrap();
        let silu = |b: &mut OnnxBuilder, v: &str| {
            let s = b.op("Sigmoid", &[v], vec![]).unwrap();
            b.op("Mul", &[v, &s], vec![]).unwrap()
        };
        let a1 = silu(&mut b, &h);
        // Time embedding [sin(t f), cos(t f)] -> Gemm -> [N, C, 1, 1].
        let ax1 = b.add_i64("ax1", &[1], &[1]).unwrap();
        let ax23 = b.add_i64("ax23", &[2], &[2, 3]).unwrap();
        let f = b
            .add_weight_as("freqs", &[1, FREQS], &self.freqs, WeightType::F32)
            .unwrap();
        let tc = b.op("Unsqueeze", &["t", &ax1], vec![]).unwrap();
        let arg = b.op("Mul", &[&tc, &f], vec![]).unwrap();
        let sin = b.op("Sin", &[&arg], vec![]).unwrap();
        let cos = b.op("Cos", &[&arg], vec![]).unwrap();
        let emb = b
            .op("Concat", &[&sin, &cos], vec![Attr::int("axis", 1)])
            .unwrap();
        let wt = b.add_weight("wt", &[C, 2 * FREQS], &self.wt).unwrap();
        let bt = b.add_weight("bt", &[C], &self.bt).unwrap();
        let temb = b
            .op(
                "Gemm",
                &[&emb, &wt, &bt],
                vec![Attr::int("transB", 1), Attr::float("alpha", 1.0)],
            )
            .unwrap();
        let temb = b.op("Unsqueeze", &[&temb, &ax23], vec![]).unwrap();
        let hsum = b.op("Add", &[&a1, &temb], vec![]).unwrap();
        // Group normalization.
        let gamma = b.add_weight("gamma", &[C, 1, 1], &self.gamma).unwrap();
        let beta = b.add_weight("beta", &[C, 1, 1], &self.beta).unwrap();
        let normed = if group_norm_op {
            let ones = b
                .add_weight_as("gn_one", &[C], &[1.0; C], WeightType::F32)
                .unwrap();
            let zeros = b
                .add_weight_as("gn_zero", &[C], &[0.0; C], WeightType::F32)
                .unwrap();
            b.op(
                "GroupNormalization",
                &[&hsum, &ones, &zeros],
                vec![
                    Attr::int("num_groups", G as i64),
                    Attr::float("epsilon", GN_EPS),
                ],
            )
            .unwrap()
        } else {
            let grouped = b.add_i64("grouped", &[3], &[0, G as i64, -1]).unwrap();
            let back = b
                .add_i64("back", &[4], &[0, C as i64, H as i64, W as i64])
                .unwrap();
            let ones = b
                .add_weight_as("in_one", &[G], &[1.0; G], WeightType::F32)
                .unwrap();
            let zeros = b
                .add_weight_as("in_zero", &[G], &[0.0; G], WeightType::F32)
                .unwrap();
            let r = b.op("Reshape", &[&hsum, &grouped], vec![]).unwrap();
            let n = b
                .op(
                    "InstanceNormalization",
                    &[&r, &ones, &zeros],
                    vec![Attr::float("epsilon", GN_EPS)],
                )
                .unwrap();
            b.op("Reshape", &[&n, &back], vec![]).unwrap()
        };
        let scaled = b.op("Mul", &[&normed, &gamma], vec![]).unwrap();
        let shifted = b.op("Add", &[&scaled, &beta], vec![]).unwrap();
        let a2 = silu(&mut b, &shifted);
        // Down, up, skip.
        let pooled = b
            .op(
                "AveragePool",
                &[&a2],
                vec![
                    Attr::ints("kernel_shape", &[2, 2]),
                    Attr::ints("strides", &[2, 2]),
                ],
            )
            .unwrap();
        let scales = b
            .add_weight_as("scales", &[4], &[1.0, 1.0, 2.0, 2.0], WeightType::F32)
            .unwrap();
        let up = b
            .op(
                "Resize",
                &[&pooled, "", &scales],
                vec![Attr::string("mode", "nearest")],
            )
            .unwrap();
        let cat = b
            .op("Concat", &[&up, &a1], vec![Attr::int("axis", 1)])
            .unwrap();
        let w2 = b.add_weight("w2", &[2, 2 * C, 1, 1], &self.w2).unwrap();
        let b2 = b.add_weight("b2", &[2], &self.b2).unwrap();
        b.add_node("Conv", &[&cat, &w2, &b2], &["eps"], vec![])
            .unwrap();
        b.add_output("eps", &image_dims());
        b.set_meta(&ModelMeta::new(H, W));
        b
    }

    /// Naive f64 reference for one image [2, H, W].
    fn eval_one(&self, x: &[f32], t: f32) -> Vec<f64> {
        let at = |v: &[f64], c: usize, i: usize, j: usize| v[(c * H + i) * W + j];
        let silu = |v: f64| v / (1.0 + (-v).exp());
        // Conv 3x3, pad 1, + bias, SiLU.
        let mut a1 = vec![0.0; C * H * W];
        for o in 0..C {
            for i in 0..H {
                for j in 0..W {
                    let mut acc = self.b1[o] as f64;
                    for c in 0..2 {
                        for di in 0..3 {
                            for dj in 0..3 {
                                let (ii, jj) = (i as isize + di - 1, j as isize + dj - 1);
                                if ii < 0 || jj < 0 || ii >= H as isize || jj >= W as isize {
                                    continue;
                                }
                                let xv = x[(c * H + ii as usize) * W + jj as usize] as f64;
                                let wv = self.w1[((o * 2 + c) * 3 + di as usize) * 3 + dj as usize];
                                acc += xv * wv as f64;
                            }
                        }
                    }
                    a1[(o * H + i) * W + j] = silu(acc);
                }
            }
        }
        // Time embedding.
        let mut emb = Vec::with_capacity(2 * FREQS);
        let args: Vec<f64> = self.freqs.iter().map(|&f| (t * f) as f64).collect();
        emb.extend(args.iter().map(|a| a.sin()));
        emb.extend(args.iter().map(|a| a.cos()));
        let temb: Vec<f64> = (0..C)
            .map(|o| {
                self.bt[o] as f64
                    + (0..2 * FREQS)
                        .map(|k| self.wt[o * 2 * FREQS + k] as f64 * emb[k])
                        .sum::<f64>()
            })
            .collect();
        let hsum: Vec<f64> = (0..C * H * W).map(|k| a1[k] + temb[k / (H * W)]).collect();
        // Group norm (biased variance) + affine + SiLU.
        let per = C / G * H * W;
        let mut a2 = vec![0.0; C * H * W];
        for g in 0..G {
            let v = &hsum[g * per..(g + 1) * per];
            let mean = v.iter().sum::<f64>() / per as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / per as f64;
            for k in 0..per {
                let c = (g * per + k) / (H * W);
                let n = (v[k] - mean) / (var + GN_EPS as f64).sqrt();
                a2[g * per + k] = silu(n * self.gamma[c] as f64 + self.beta[c] as f64);
            }
        }
        // AveragePool 2x2 then nearest 2x upsampling: each 2x2 block gets its mean.
        let mut up = vec![0.0; C * H * W];
        for c in 0..C {
            for i in 0..H {
                for j in 0..W {
                    let (bi, bj) = (i / 2 * 2, j / 2 * 2);
                    up[(c * H + i) * W + j] = (at(&a2, c, bi, bj)
                        + at(&a2, c, bi + 1, bj)
                        + at(&a2, c, bi, bj + 1)
                        + at(&a2, c, bi + 1, bj + 1))
                        / 4.0;
                }
            }
        }
        // Concat [up, a1] and 1x1 conv to 2 channels.
        let mut out = vec![0.0; 2 * H * W];
        for o in 0..2 {
            for p in 0..H * W {
                let mut acc = self.b2[o] as f64;
                for c in 0..C {
                    acc += self.w2[o * 2 * C + c] as f64 * up[c * H * W + p];
                    acc += self.w2[o * 2 * C + C + c] as f64 * a1[c * H * W + p];
                }
                out[o * H * W + p] = acc;
            }
        }
        out
    }
}

#[test]
fn conv_net_with_f16_weights_matches_naive_reference() {
    let dir = tempfile::tempdir().unwrap();
    let net = ConvNet::random(12);
    let reference = net.rounded();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let x = batch(&mut rng, 2);
    let t = [10.0, 731.0];
    let mut want = Array4::<f64>::zeros((2, 2, H, W));
    for (b, &tb) in t.iter().enumerate() {
        let xb: Vec<f32> = x.slice(s![b, .., .., ..]).iter().copied().collect();
        let o = reference.eval_one(&xb, tb);
        want.slice_mut(s![b, .., .., ..])
            .iter_mut()
            .zip(o)
            .for_each(|(w, v)| *w = v);
    }
    for group_norm_op in [false, true] {
        let path = dir.path().join(format!("convnet_{group_norm_op}.onnx"));
        net.builder(group_norm_op).write(&path).unwrap();
        let den = OnnxDenoiser::load(&path).unwrap();
        let got = den.predict_eps(x.view(), &t).unwrap();
        let err = rel_err(&got, &want);
        assert!(
            err < 1e-5,
            "GroupNormalization op {group_norm_op}: relative error {err}"
        );
    }
}
