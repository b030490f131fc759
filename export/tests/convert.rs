//! `msm-train convert`: a guided-diffusion state_dict written as `.safetensors` by PyTorch (with
//! parameter names laid out independently by `tests/make_state_dict.py`) becomes an ONNX model
//! that the runtime's `OnnxDenoiser` loads and that computes what the tch UNet computes with the
//! same weights.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use msm::denoiser::{Denoiser, OnnxDenoiser};
use msm_export::config::UNetConfig;
use msm_export::unet::UNet;
use ndarray::ArrayView4;
use tch::{nn, Device, Kind, Tensor};

mod small_unet;
use small_unet::tiny;

/// Whether `python3` can import torch (checked once per test run).
fn torch_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    let ok = *AVAILABLE.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import torch"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        eprintln!("NOTE: python3 with torch is not available; the convert test is skipped");
    }
    ok
}

/// Writes `cfg` as the architecture file and a random state_dict beside it; returns both paths.
fn make_state_dict(dir: &Path, cfg: &UNetConfig, dtype: &str, prefix: &str) -> (PathBuf, PathBuf) {
    let arch = dir.join("arch.json");
    std::fs::write(&arch, serde_json::to_string(cfg).unwrap()).unwrap();
    let sd = dir.join("model.safetensors");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/make_state_dict.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&arch, &sd])
        .args(["--seed", "5", "--dtype", dtype, "--prefix", prefix])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "make_state_dict.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (arch, sd)
}

/// Runs `msm-train convert` with `extra` arguments; returns (success, stderr).
fn convert(sd: &Path, arch: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_msm-train"))
        .arg("convert")
        .arg("--state-dict")
        .arg(sd)
        .arg("--arch")
        .arg(arch)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("msm-train runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The tch UNet with the weights of the safetensors file, read by tch itself.
fn tch_net(cfg: &UNetConfig, sd: &Path, prefix: &str) -> (nn::VarStore, UNet) {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = UNet::new(&vs.root(), cfg).unwrap();
    let file: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(sd).unwrap().into_iter().collect();
    assert_eq!(file.len(), vs.variables().len(), "parameter count");
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let t = &file[&format!("{prefix}{name}")];
            var.copy_(&t.to_kind(Kind::Float));
        }
    });
    (vs, net)
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn check(cfg: &UNetConfig, dtype: &str, prefix: &str, extra: &[&str], tol: f64) {
    let dir = tempfile::tempdir().unwrap();
    let (arch, sd) = make_state_dict(dir.path(), cfg, dtype, prefix);
    let onnx = dir.path().join("model.onnx");
    let (ok, err) = convert(&sd, &arch, &onnx, extra);
    assert!(ok, "convert failed: {err}");

    let model = OnnxDenoiser::load(&onnx).expect("the runtime loads the converted model");
    let meta = model.meta();
    assert_eq!((meta.height, meta.width), (16, 16));
    assert_eq!(
        meta.extra.get("msm.unet_config"),
        Some(&serde_json::to_string(cfg).unwrap())
    );
    let card = std::fs::read_to_string(dir.path().join("model.md")).unwrap();
    assert!(card.contains("model.safetensors"), "{card}");

    tch::manual_seed(21);
    let x = Tensor::randn([2, 2, 16, 16], (Kind::Float, Device::Cpu));
    let t = [3.0f32, 777.0];
    let (_vs, net) = tch_net(cfg, &sd, prefix);
    let want = tch::no_grad(|| net.eps(&x, &Tensor::from_slice(&t), false));
    let want = Vec::<f32>::try_from(want.reshape([-1])).unwrap();
    let xs = Vec::<f32>::try_from(x.reshape([-1])).unwrap();
    let got = model
        .predict_eps(ArrayView4::from_shape((2, 2, 16, 16), &xs).unwrap(), &t)
        .unwrap();
    let err = rel_l2(got.as_slice().unwrap(), &want);
    eprintln!("convert ({dtype} file, prefix {prefix:?}, {extra:?}): rel L2 {err:.3e}");
    assert!(err < tol, "rel L2 {err:.3e} >= {tol:e}");
}

#[test]
fn converted_f32_state_dict_matches_tch_in_the_runtime() {
    if !torch_available() {
        return;
    }
    check(
        &tiny(|_| {}),
        "f32",
        "",
        &["--f32", "--scale-p99", "0.5"],
        1e-4,
    );
}

#[test]
fn converted_f16_dataparallel_state_dict_of_another_layout_matches() {
    if !torch_available() {
        return;
    }
    let cfg = tiny(|c| {
        c.resblock_updown = false;
        c.use_scale_shift_norm = false;
        c.use_new_attention_order = true;
        c.num_head_channels = None;
        c.num_heads = 2;
        c.num_res_blocks = 2;
        c.out_channels = 4;
    });
    check(&cfg, "f16", "module.", &[], 5e-3);
}

#[test]
fn scale_is_recorded_and_mismatches_are_refused() {
    if !torch_available() {
        return;
    }
    let cfg = tiny(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let (arch, sd) = make_state_dict(dir.path(), &cfg, "f32", "");
    let onnx = dir.path().join("m.onnx");
    let (ok, err) = convert(&sd, &arch, &onnx, &["--scale-p99", "0.75"]);
    assert!(ok, "{err}");
    let meta = OnnxDenoiser::load(&onnx).unwrap().meta().clone();
    assert_eq!(
        meta.extra.get("msm.scale_p99").map(String::as_str),
        Some("0.75")
    );
    // A bad scale is refused before anything is written.
    let bad_out = dir.path().join("bad.onnx");
    let (ok, err) = convert(&sd, &arch, &bad_out, &["--scale-p99", "0"]);
    assert!(!ok && err.contains("--scale-p99"), "{err}");
    assert!(!bad_out.exists());
    // An architecture that does not match the state_dict: the file and the parameter are named.
    let other = dir.path().join("other.json");
    let mut wrong = cfg.clone();
    wrong.num_res_blocks = 2;
    std::fs::write(&other, serde_json::to_string(&wrong).unwrap()).unwrap();
    let (ok, err) = convert(&sd, &other, &bad_out, &[]);
    assert!(
        !ok && err.contains("model.safetensors")
            && (err.contains("has no parameter") || err.contains("the architecture expects")),
        "{err}"
    );
    assert!(!bad_out.exists());
}
