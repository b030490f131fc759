//! The native UNet executor against tract (the correctness oracle) on the same ONNX files:
//! random-weight UNets of several architectures written by the emitter, and the shipped model;
//! the structural check that decides which executor runs a file.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use msm::denoiser::onnx::Backend;
use msm::denoiser::{Denoiser, OnnxDenoiser};
use msm::onnx::{ModelMeta, WeightType};
use msm::unet::emit::{emit_unet, StateDict};
use msm::unet::{UNetConfig, UNET_CONFIG_KEY};
use ndarray::Array4;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Deterministic random parameters, seeded by name: weights with std 1/sqrt(fan-in), norm
/// scales near 1 and shifts and biases near 0, so activations stay of order one.
struct RandomWeights(u64);

impl StateDict for RandomWeights {
    fn param(&self, name: &str, shape: &[usize]) -> msm::Result<Cow<'_, [f32]>> {
        let seed = name.bytes().fold(self.0 ^ 0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        let is_norm = name.contains("norm")
            || name.contains("in_layers.0")
            || name.contains("out_layers.0")
            || name.starts_with("out.0");
        let v = (0..n)
            .map(|_| {
                let u: f32 = rng.random::<f32>() * 2.0 - 1.0;
                if shape.len() == 1 {
                    if is_norm && name.ends_with("weight") {
                        1.0 + 0.2 * u
                    } else {
                        0.1 * u
                    }
                } else {
                    u * (3.0 / fan_in as f32).sqrt()
                }
            })
            .collect();
        Ok(Cow::Owned(v))
    }
}

fn meta_for(cfg: &UNetConfig) -> ModelMeta {
    let mut m = ModelMeta::new(cfg.image_size, cfg.width());
    m.extra.insert(
        UNET_CONFIG_KEY.to_string(),
        serde_json::to_string(cfg).unwrap(),
    );
    m
}

fn write_unet(
    dir: &Path,
    name: &str,
    cfg: &UNetConfig,
    meta: &ModelMeta,
    wt: WeightType,
) -> PathBuf {
    let path = dir.join(format!("{name}.onnx"));
    emit_unet(cfg, &RandomWeights(7), wt, meta)
        .unwrap()
        .write(&path)
        .unwrap();
    path
}

fn inputs(size: (usize, usize), n: usize, seed: u64) -> Array4<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array4::from_shape_simple_fn((n, 2, size.0, size.1), || rng.random::<f32>() * 2.0 - 1.0)
}

/// Largest |a - b| over the largest |b|.
fn rel_max(a: &Array4<f32>, b: &Array4<f32>) -> f64 {
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max);
    let s = b.iter().map(|y| f64::from(y.abs())).fold(0.0, f64::max);
    d / s.max(1e-12)
}

fn small(image: usize) -> UNetConfig {
    UNetConfig {
        image_size: image,
        model_channels: 32,
        channel_mult: vec![1, 2],
        attention_resolutions: vec![image / 2],
        ..UNetConfig::default()
    }
}

fn architectures() -> Vec<(&'static str, UNetConfig)> {
    vec![
        ("scale-shift, resblock up/down, legacy attention", small(16)),
        (
            "plain norm, conv resampling, new attention order, 2 res-blocks, 2 heads",
            UNetConfig {
                use_scale_shift_norm: false,
                resblock_updown: false,
                conv_resample: true,
                use_new_attention_order: true,
                num_res_blocks: 2,
                num_head_channels: None,
                num_heads: 2,
                ..small(16)
            },
        ),
        (
            "pooling and plain upsampling, learned variance, three levels",
            UNetConfig {
                resblock_updown: false,
                conv_resample: false,
                out_channels: 4,
                channel_mult: vec![1, 1, 2],
                attention_resolutions: vec![8, 4],
                ..small(16)
            },
        ),
        (
            "non-square 16 x 24 (a ky-kz grid), attention at 8 x 12",
            UNetConfig {
                image_width: Some(24),
                ..small(16)
            },
        ),
    ]
}

#[test]
fn native_matches_tract_on_emitted_unets() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (what, cfg)) in architectures().into_iter().enumerate() {
        for wt in [WeightType::F32, WeightType::F16] {
            let path = write_unet(dir.path(), &format!("net{i}"), &cfg, &meta_for(&cfg), wt);
            let native = OnnxDenoiser::load_with(&path, Backend::Native).unwrap();
            let tract = OnnxDenoiser::load_with(&path, Backend::Tract).unwrap();
            assert_eq!(native.backend(), Backend::Native);
            assert_eq!(tract.backend(), Backend::Tract);
            assert_eq!(
                OnnxDenoiser::load(&path).unwrap().backend(),
                Backend::Native,
                "{what}: auto should pick the native executor"
            );
            let x = inputs((cfg.image_size, cfg.width()), 3, i as u64);
            let t = [0.0, 431.0, 999.0];
            let a = native.predict_eps(x.view(), &t).unwrap();
            let b = tract.predict_eps(x.view(), &t).unwrap();
            let err = rel_max(&a, &b);
            println!("{what} ({wt:?}): native vs tract max error {err:.2e} of the output range");
            assert!(
                err < 2e-5,
                "{what} ({wt:?}): native differs from tract by {err:.2e}"
            );
        }
    }
}

/// The shipped model: real trained weights at the real size, on a realistic input (the
/// zero-filled image of a simulated scan of the shipped example slice).
#[test]
fn native_matches_tract_on_the_shipped_model() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/msm-brain-128.onnx");
    let native = OnnxDenoiser::load(&path).unwrap();
    assert_eq!(
        native.backend(),
        Backend::Native,
        "the shipped model runs natively"
    );
    let tract = OnnxDenoiser::load_with(&path, Backend::Tract).unwrap();
    let packed = shipped_example_input();
    for t in [0.0f32, 250.0, 999.0] {
        let a = native.predict_eps(packed.view(), &[t]).unwrap();
        let b = tract.predict_eps(packed.view(), &[t]).unwrap();
        let err = rel_max(&a, &b);
        println!("shipped model, t = {t}: native vs tract max error {err:.2e} of the output range");
        assert!(
            err < 1e-4,
            "t = {t}: native differs from tract by {err:.2e}"
        );
    }
}

/// The zero-filled image of a simulated scan of the shipped example slice, scaled to peak 1,
/// as the network's input.
fn shipped_example_input() -> Array4<f32> {
    let slice: ndarray::Array2<f32> = msm::io::npy::read_npy_as::<f32, ndarray::Ix2>(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/examples/colin27-axial-90.npy"),
    )
    .unwrap();
    let sim = msm::simulate::SimOptions {
        height: 128,
        width: 128,
        ..msm::simulate::SimOptions::default()
    };
    let acq =
        msm::simulate::simulate(slice.view(), &sim, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
    let op = msm::sense::Sense::new(acq.maps.clone()).unwrap();
    let zf = msm::recon::zero_filled(&op, acq.kspace.view(), &acq.mask);
    let peak = zf.iter().map(|v| v.norm()).fold(0.0f32, f32::max);
    msm::sampler::pack(&zf.mapv(|v| v / peak))
}

#[test]
fn a_graph_the_emitter_did_not_write_runs_on_tract() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(16);
    // The metadata claims another architecture than the graph has.
    let mut claimed = cfg.clone();
    claimed.num_res_blocks = 2;
    let path = write_unet(
        dir.path(),
        "mismatch",
        &cfg,
        &meta_for(&claimed),
        WeightType::F32,
    );
    let auto = OnnxDenoiser::load(&path).unwrap();
    assert_eq!(auto.backend(), Backend::Tract);
    let err = OnnxDenoiser::load_with(&path, Backend::Native)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mismatch.onnx")
            && err.contains("native executor cannot run")
            && err.contains("nodes"),
        "{err}"
    );
    // No architecture at all.
    let path = write_unet(
        dir.path(),
        "plain",
        &cfg,
        &ModelMeta::new(16, 16),
        WeightType::F16,
    );
    assert_eq!(OnnxDenoiser::load(&path).unwrap().backend(), Backend::Tract);
    let err = OnnxDenoiser::load_with(&path, Backend::Native)
        .unwrap_err()
        .to_string();
    assert!(err.contains(UNET_CONFIG_KEY), "{err}");
    // Same structure, one constant changed (the attention scale): not the emitter's graph.
    let mut model = emit_unet(&cfg, &RandomWeights(7), WeightType::F32, &meta_for(&cfg))
        .unwrap()
        .to_model()
        .unwrap();
    let graph = model.graph.as_mut().unwrap();
    let scale = graph
        .initializer
        .iter_mut()
        .find(|t| t.name.starts_with("attn_scale"))
        .unwrap();
    scale.raw_data = 0.5f32.to_le_bytes().to_vec();
    let path = dir.path().join("scaled.onnx");
    std::fs::write(&path, prost::Message::encode_to_vec(&model)).unwrap();
    assert_eq!(OnnxDenoiser::load(&path).unwrap().backend(), Backend::Tract);
    let err = OnnxDenoiser::load_with(&path, Backend::Native)
        .unwrap_err()
        .to_string();
    assert!(err.contains("attn_scale"), "{err}");
}

#[test]
fn concurrent_native_calls_match_serial_calls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(16);
    let path = write_unet(dir.path(), "net", &cfg, &meta_for(&cfg), WeightType::F16);
    let net = OnnxDenoiser::load(&path).unwrap();
    let xs: Vec<Array4<f32>> = (0..4).map(|i| inputs((16, 16), 1, 100 + i)).collect();
    let serial: Vec<Array4<f32>> = xs
        .iter()
        .map(|x| net.predict_eps(x.view(), &[500.0]).unwrap())
        .collect();
    let parallel: Vec<Array4<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = xs
            .iter()
            .map(|x| s.spawn(|| net.predict_eps(x.view(), &[500.0]).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(serial, parallel, "native calls must not share state");
}

/// The bf16 executor (AMX tiles or AVX512-BF16, whichever the CPU has) against the f32 one on
/// the shipped model, on the realistic input the f32 test uses: close (bf16 keeps 8
/// significant bits; sums stay f32), deterministic, and the same from concurrent calls. Where
/// the CPU has neither, loading it must fail with a clear error.
#[test]
fn bf16_stays_close_to_f32_on_the_shipped_model() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/msm-brain-128.onnx");
    if !msm::unet::native::bf16_available() {
        let err = OnnxDenoiser::load_with(&path, Backend::NativeBf16)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AMX-BF16") && err.contains("AVX512-BF16"),
            "{err}"
        );
        // A build without the `avx512` feature says so rather than blaming the CPU.
        assert_eq!(
            err.contains("avx512 feature off"),
            !cfg!(feature = "avx512"),
            "{err}"
        );
        eprintln!("no AMX-BF16 or AVX512-BF16 kernels here: bf16 executor not exercised");
        return;
    }
    let f32net = OnnxDenoiser::load_with(&path, Backend::Native).unwrap();
    let bf16net = OnnxDenoiser::load_with(&path, Backend::NativeBf16).unwrap();
    assert_eq!(bf16net.backend(), Backend::NativeBf16);
    let x = shipped_example_input();
    for t in [0.0f32, 250.0, 999.0] {
        let a = bf16net.predict_eps(x.view(), &[t]).unwrap();
        let b = f32net.predict_eps(x.view(), &[t]).unwrap();
        let err = rel_max(&a, &b);
        let rms = rel_rms(&a, &b);
        println!(
            "shipped model, t = {t}, bf16 on {}: vs f32 max error {err:.2e}, rms {rms:.2e}",
            msm::unet::kernels::bf16_units().unwrap_or("none")
        );
        assert!(
            err < 3e-2 && rms < 1e-2,
            "t = {t}: bf16 differs from f32 by {err:.2e} (max), {rms:.2e} (rms)"
        );
        assert_eq!(
            a,
            bf16net.predict_eps(x.view(), &[t]).unwrap(),
            "repeatable"
        );
    }
    let serial = bf16net.predict_eps(x.view(), &[500.0]).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| bf16net.predict_eps(x.view(), &[500.0]).unwrap()))
            .collect();
        for h in handles {
            assert_eq!(
                h.join().unwrap(),
                serial,
                "threads must not share bf16 state"
            );
        }
    });
}

/// The fast executor (bf16 with Winograd F(4x4, 3x3) at 64 and 128 pixels) against f32 on
/// the shipped model: its network output is further from f32 than the bf16 executor's (the
/// F(4x4) rounding, a layer's rms error about 2.4%), within the 3% rms that the tolerance
/// measurement in docs/performance.md found PSNR-neutral, and it is deterministic. Its
/// reconstruction-level contract is `tests/fast_executor.rs`. Where the CPU lacks
/// AVX512-BF16, loading it must fail with a clear error.
#[test]
fn fast_stays_within_its_error_budget_on_the_shipped_model() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/msm-brain-128.onnx");
    if !msm::unet::winograd4_available() {
        let err = OnnxDenoiser::load_with(&path, Backend::NativeFast)
            .unwrap_err()
            .to_string();
        assert!(err.contains("AVX512-BF16"), "{err}");
        eprintln!("no AVX512-BF16 on this CPU: fast executor not exercised");
        return;
    }
    let f32net = OnnxDenoiser::load_with(&path, Backend::Native).unwrap();
    let bf16net = OnnxDenoiser::load_with(&path, Backend::NativeBf16).unwrap();
    let fast = OnnxDenoiser::load_with(&path, Backend::NativeFast).unwrap();
    assert_eq!(fast.backend(), Backend::NativeFast);
    let x = shipped_example_input();
    for t in [0.0f32, 250.0, 999.0] {
        let b = f32net.predict_eps(x.view(), &[t]).unwrap();
        let a = fast.predict_eps(x.view(), &[t]).unwrap();
        let (err, rms) = (rel_max(&a, &b), rel_rms(&a, &b));
        let rms_bf16 = rel_rms(&bf16net.predict_eps(x.view(), &[t]).unwrap(), &b);
        println!(
            "shipped model, t = {t}: fast vs f32 max error {err:.2e}, rms {rms:.2e} (bf16 rms \
             {rms_bf16:.2e})"
        );
        assert!(
            rms < 3e-2 && err < 1e-1,
            "t = {t}: fast differs from f32 by {err:.2e} (max), {rms:.2e} (rms)"
        );
        assert!(rms > rms_bf16, "t = {t}: the F(4x4) form is not running");
        assert_eq!(a, fast.predict_eps(x.view(), &[t]).unwrap(), "repeatable");
    }
}

/// Root-mean-square of a - b over that of b.
fn rel_rms(a: &Array4<f32>, b: &Array4<f32>) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let s: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (d / s.max(1e-24)).sqrt()
}

/// A pass cut into pieces for the rayon pool ([`msm::unet`]'s intra-op parallelism): the
/// same bits on pools of 1, 2 and 3 threads, and when three calls share two threads (the
/// sampler's w = 3 on two cores, where waiting workers run pieces of the other calls), for
/// the f32 executor and, where the CPU has bf16 units, the bf16 one.
#[test]
fn pieces_give_the_same_bits_on_any_pool() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/msm-brain-128.onnx");
    let mut backends = vec![Backend::Native];
    if msm::unet::native::bf16_available() {
        backends.push(Backend::NativeBf16);
    }
    if msm::unet::winograd4_available() {
        backends.push(Backend::NativeFast);
    }
    let x = shipped_example_input();
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    for backend in backends {
        let net = OnnxDenoiser::load_with(&path, backend).unwrap();
        let one = pool(1).install(|| net.predict_eps(x.view(), &[400.0]).unwrap());
        for threads in [2, 3] {
            let got = pool(threads).install(|| net.predict_eps(x.view(), &[400.0]).unwrap());
            assert_eq!(got, one, "{backend}: {threads} threads differ from 1");
        }
        let ts = [100.0f32, 400.0, 700.0];
        let serial: Vec<Array4<f32>> = ts
            .iter()
            .map(|&t| net.predict_eps(x.view(), &[t]).unwrap())
            .collect();
        let shared: Vec<Array4<f32>> = pool(2).install(|| {
            use rayon::prelude::*;
            ts.par_iter()
                .map(|&t| net.predict_eps(x.view(), &[t]).unwrap())
                .collect()
        });
        assert_eq!(shared, serial, "{backend}: three calls on two threads");
    }
}

/// Records the shape of every parameter the emitter asks for (some, as the scale-shift
/// embedding, it asks for twice and slices), passing the random values through.
struct Counting<'a>(&'a RandomWeights, RefCell<HashMap<String, usize>>);

impl StateDict for Counting<'_> {
    fn param(&self, name: &str, shape: &[usize]) -> msm::Result<Cow<'_, [f32]>> {
        self.1
            .borrow_mut()
            .insert(name.to_string(), shape.iter().product());
        self.0.param(name, shape)
    }
}

/// `NativeUNet::parameter_count` is the architecture's parameter count (what the emitter
/// asked for, less a learned variance's output channels), and stays so when the bf16 or fast
/// executor replaces weights by their own forms (the attention projections' f32 weights are
/// dropped there).
#[test]
fn parameter_count_is_the_architectures_on_every_executor() {
    for (name, cfg) in architectures() {
        let meta = meta_for(&cfg);
        let weights = RandomWeights(7);
        let counting = Counting(&weights, RefCell::default());
        let proto = emit_unet(&cfg, &counting, WeightType::F32, &meta)
            .unwrap()
            .to_model()
            .unwrap();
        let shapes = counting.1.borrow();
        // The executor keeps the eps channels of the output convolution only (a learned
        // variance's channels are not computed).
        let out_conv = shapes["out.2.weight"] + shapes["out.2.bias"];
        let dropped = out_conv / cfg.out_channels * (cfg.out_channels - cfg.in_channels);
        let expected = shapes.values().sum::<usize>() - dropped;
        let mut net = msm::unet::native_from_proto(&proto, &meta).unwrap();
        assert_eq!(net.parameter_count(), expected, "{name}: f32");
        if msm::unet::winograd4_available() {
            let mut fast = net.clone();
            fast.use_fast().unwrap();
            assert_eq!(fast.parameter_count(), expected, "{name}: fast");
        }
        if net.use_bf16().is_ok() {
            assert_eq!(net.parameter_count(), expected, "{name}: bf16");
        }
    }
}
