//! The tch UNet and its exported ONNX graph agree, run in tract through the runtime's
//! `OnnxDenoiser` (and in onnxruntime through `tests/ort_check.py`), with f32 and f16 weights,
//! over architecture variants.

use std::path::Path;

use msm::denoiser::{Denoiser, OnnxDenoiser};
use msm::onnx::{ModelMeta, WeightType};
use msm_export::config::UNetConfig;
use msm_export::onnx::emit::emit_unet;
use msm_export::train::tensors_to_weights;
use msm_export::unet::{Precision, UNet};
use ndarray::ArrayView4;
use tch::{nn, Device, Kind, Tensor};

mod small_unet;
use small_unet::tiny;

mod python;

/// A network with every parameter random (the zero-initialised convs too).
fn random_net(cfg: &UNetConfig, seed: i64) -> (nn::VarStore, UNet) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = UNet::new(&vs.root(), cfg).expect("valid config");
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            let r = Tensor::randn_like(&t);
            let v = if name.ends_with("in_layers.0.weight")
                || name.ends_with("out_layers.0.weight")
                || name.ends_with("norm.weight")
                || name == "out.0.weight"
            {
                r * 0.2 + 1.0
            } else {
                let fan_in: i64 = t.size().iter().skip(1).product::<i64>().max(1);
                r / (fan_in as f64).sqrt()
            };
            t.copy_(&v);
        }
    });
    (vs, net)
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.contiguous().reshape([-1])).expect("f32 tensor")
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Runs the model file with the runtime's tract executor.
fn tract_run(path: &Path, x: &Tensor, t: &Tensor) -> Vec<f32> {
    let net = OnnxDenoiser::load(path).expect("the runtime loads the model");
    let dims: Vec<usize> = x.size().iter().map(|&d| d as usize).collect();
    let xs = to_vec(x);
    let view = ArrayView4::from_shape((dims[0], dims[1], dims[2], dims[3]), &xs).expect("shape");
    net.predict_eps(view, &to_vec(t))
        .expect("the runtime runs the model")
        .into_iter()
        .collect()
}

fn write_npy(path: &Path, shape: &[i64], data: &[f32]) {
    let dims = shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let dims = if shape.len() == 1 {
        format!("{dims},")
    } else {
        dims
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).expect("write npy");
}

/// Exports `cfg` and compares tch with tract (and onnxruntime when `ort` is set).
fn check(cfg: &UNetConfig, weights: WeightType, tol: f64, ort: bool) {
    let (vs, net) = random_net(cfg, 7);
    let n = 2;
    let (h, w) = (cfg.image_size as i64, cfg.width() as i64);
    let x = Tensor::randn([n, 2, h, w], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[17.0f32, 940.0]);
    let expected = tch::no_grad(|| net.eps(&x, &t, false));
    let vars = vs.variables();
    let w = tensors_to_weights(vars.iter().map(|(k, v)| (k.as_str(), v))).expect("weights");
    let meta = ModelMeta::new(cfg.image_size, cfg.width());
    let model = emit_unet(cfg, &w, weights, &meta).expect("emit");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.onnx");
    model.write(&path).expect("write");
    let exp = to_vec(&expected);
    let got = tract_run(&path, &x, &t);
    let err = rel_l2(&got, &exp);
    eprintln!("tract vs tch ({weights:?}): rel L2 {err:.3e}");
    assert!(
        err < tol,
        "tract vs tch: rel L2 {err:.3e} >= {tol:e} for {weights:?} {}",
        cfg.describe()
    );
    if ort {
        let (xp, tp, ep) = (
            dir.path().join("x.npy"),
            dir.path().join("t.npy"),
            dir.path().join("eps.npy"),
        );
        write_npy(&xp, &x.size(), &to_vec(&x));
        write_npy(&tp, &[n], &to_vec(&t));
        write_npy(&ep, &expected.size(), &exp);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ort_check.py");
        let tol = tol.to_string();
        let (ok, text) = python::run(&[
            script.as_os_str(),
            path.as_os_str(),
            xp.as_os_str(),
            tp.as_os_str(),
            ep.as_os_str(),
            tol.as_ref(),
        ]);
        eprintln!("{text}");
        assert!(ok, "onnxruntime check failed ({weights:?}): {text}");
    }
}

#[test]
fn default_variant_matches_in_tract_and_onnxruntime_f32() {
    check(&tiny(|_| {}), WeightType::F32, 1e-4, true);
}

#[test]
fn default_variant_matches_in_tract_and_onnxruntime_f16() {
    check(&tiny(|_| {}), WeightType::F16, 5e-3, true);
}

/// A non-square grid (the `(phase encode, partition)` slices of a 3-D scan): 16 x 24, the
/// attention block on 8 x 12 feature maps.
#[test]
fn non_square_network_matches_in_tract_and_onnxruntime() {
    check(
        &tiny(|c| c.image_width = Some(24)),
        WeightType::F32,
        1e-4,
        true,
    );
}

#[test]
fn plain_resampling_no_scale_shift_matches() {
    check(
        &tiny(|c| {
            c.use_scale_shift_norm = false;
            c.resblock_updown = false;
            c.conv_resample = true;
        }),
        WeightType::F32,
        1e-4,
        false,
    );
}

#[test]
fn pooling_without_conv_new_attention_order_heads_matches() {
    check(
        &tiny(|c| {
            c.resblock_updown = false;
            c.conv_resample = false;
            c.use_new_attention_order = true;
            c.num_head_channels = None;
            c.num_heads = 2;
            c.channel_mult = vec![1, 2, 2];
            c.num_res_blocks = 2;
            c.attention_resolutions = vec![8, 4];
        }),
        WeightType::F32,
        1e-4,
        false,
    );
}

#[test]
fn learned_sigma_network_exports_eps_channels_only() {
    check(&tiny(|c| c.out_channels = 4), WeightType::F32, 1e-4, false);
}

/// Gradients of `(net(x, t) * probe).sum()` with respect to every parameter, flattened and
/// joined in the VarStore's name order.
fn gradient(vs: &nn::VarStore, net: &UNet, x: &Tensor, t: &Tensor, probe: &Tensor) -> Vec<f32> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, v) in &mut vars {
        v.zero_grad();
    }
    (net.forward_t(x, t, false) * probe)
        .sum(Kind::Float)
        .backward();
    vars.iter().flat_map(|(_, v)| to_vec(&v.grad())).collect()
}

/// bf16 mixed precision (`Precision::Bf16`) computes the convolutions in bf16: the output
/// differs from f32 (so the bf16 path ran) by about bf16's rounding, stays f32, and the
/// gradients the optimizer gets point the same way as f32's.
#[test]
fn bf16_convolutions_stay_close_to_f32() {
    let cfg = tiny(|_| {});
    let (vs, mut net) = random_net(&cfg, 5);
    tch::manual_seed(6);
    let x = Tensor::randn([2, 2, 16, 16], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[30.0f32, 700.0]);
    let probe = Tensor::randn([2, 2, 16, 16], (Kind::Float, Device::Cpu));
    assert_eq!(net.precision(), Precision::F32);
    let out32 = tch::no_grad(|| net.forward_t(&x, &t, false));
    let g32 = gradient(&vs, &net, &x, &t, &probe);
    net.set_precision(Precision::Bf16);
    let out16 = tch::no_grad(|| net.forward_t(&x, &t, false));
    assert_eq!(out16.kind(), Kind::Float);
    let g16 = gradient(&vs, &net, &x, &t, &probe);
    let err = rel_l2(&to_vec(&out16), &to_vec(&out32));
    assert!(
        (1e-4..2e-2).contains(&err),
        "bf16 output against f32: relative L2 {err:.2e}, expected bf16 rounding (1e-4 to 2e-2)"
    );
    let dot: f64 = g16.iter().zip(&g32).map(|(a, b)| (a * b) as f64).sum();
    let norm = |g: &[f32]| g.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
    let cos = dot / (norm(&g16) * norm(&g32));
    assert!(
        cos > 0.999,
        "bf16 gradient against f32: cosine {cos:.6}, expected > 0.999"
    );
    let gerr = rel_l2(&g16, &g32);
    eprintln!(
        "bf16 against f32: output relative L2 {err:.2e}, gradient {gerr:.2e}, cosine {cos:.6}"
    );
    assert!(gerr < 3e-2, "bf16 gradient relative L2 {gerr:.2e}");
}

#[test]
fn state_dict_names_follow_guided_diffusion() {
    let cfg = tiny(|_| {});
    let (vs, _) = random_net(&cfg, 1);
    let vars = vs.variables();
    for (name, shape) in [
        ("time_embed.0.weight", vec![128, 32]),
        ("time_embed.2.bias", vec![128]),
        ("input_blocks.0.0.weight", vec![32, 2, 3, 3]),
        ("input_blocks.1.0.in_layers.0.weight", vec![32]),
        ("input_blocks.1.0.in_layers.2.weight", vec![32, 32, 3, 3]),
        ("input_blocks.1.0.emb_layers.1.weight", vec![64, 128]),
        ("input_blocks.1.0.out_layers.3.weight", vec![32, 32, 3, 3]),
        ("input_blocks.2.0.in_layers.2.weight", vec![32, 32, 3, 3]),
        (
            "input_blocks.3.0.skip_connection.weight",
            vec![64, 32, 1, 1],
        ),
        ("input_blocks.3.1.qkv.weight", vec![192, 64, 1]),
        ("input_blocks.3.1.proj_out.weight", vec![64, 64, 1]),
        ("middle_block.1.norm.weight", vec![64]),
        ("middle_block.2.out_layers.3.bias", vec![64]),
        (
            "output_blocks.0.0.skip_connection.weight",
            vec![64, 128, 1, 1],
        ),
        ("output_blocks.1.2.in_layers.2.weight", vec![64, 64, 3, 3]),
        ("output_blocks.3.0.in_layers.0.weight", vec![64]),
        ("out.0.weight", vec![32]),
        ("out.2.weight", vec![2, 32, 3, 3]),
    ] {
        let t = vars.get(name).unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(t.size(), shape, "{name}");
    }
}
