//! Helpers shared by the CLI integration tests: run the `msm` binary and check its outcome.

#![allow(dead_code)]

use msm::onnx::{Dim, ModelMeta, OnnxBuilder, WeightType};
use std::path::Path;
use std::process::{Command, Output};

mod h5py;
// Not every test binary that includes this module reads HDF5 files.
#[allow(unused_imports)]
pub use h5py::{h5py_fixtures, python_fixtures};

/// Runs `msm` with `args`.
pub fn msm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_msm"))
        .args(args)
        .output()
        .expect("run msm")
}

/// Runs `msm` and asserts success.
pub fn ok(args: &[&str]) -> Output {
    let out = msm(args);
    assert!(
        out.status.success(),
        "msm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `msm recon` zero-filled (maps from the ratio to the coil combination) of `input` into
/// `output`, with `extra` options; asserts success.
pub fn zero_filled(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "recon",
        s(input),
        s(output),
        "--method",
        "zero-filled",
        "--maps-method",
        "ratio",
    ];
    args.extend_from_slice(extra);
    ok(&args)
}

/// Runs `msm` and asserts a clean failure: exit code 1, no panic, and an error message that
/// contains every needle.
pub fn fails(args: &[&str], needles: &[&str]) {
    let out = msm(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code for {args:?}: {err}");
    assert!(!err.contains("panicked"), "msm {args:?} panicked: {err}");
    for n in needles {
        assert!(
            err.contains(n),
            "error for {args:?} should mention {n:?}: {err}"
        );
    }
}

/// A path as `&str`.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// eps = a * x + c * t (a shrinking denoiser with a timestep term), `size x size`, with or
/// without MSM metadata.
pub fn tiny_model(path: &Path, size: usize, with_meta: bool) {
    tiny_model_with(path, size, with_meta.then(|| tiny_meta(size)));
}

/// The MSM metadata of [`tiny_model`].
pub fn tiny_meta(size: usize) -> ModelMeta {
    let mut m = ModelMeta::new(size, size);
    m.train_acs_lines = 4;
    m
}

/// [`tiny_model`] with the metadata `meta` (none: a bare ONNX file).
pub fn tiny_model_with(path: &Path, size: usize, meta: Option<ModelMeta>) {
    tiny_model_grid(path, (size, size), meta);
}

/// [`tiny_model_with`] on a `(height, width)` grid.
pub fn tiny_model_grid(path: &Path, (height, width): (usize, usize), meta: Option<ModelMeta>) {
    let dims = [
        Dim::Batch,
        Dim::Fixed(2),
        Dim::Fixed(height),
        Dim::Fixed(width),
    ];
    let mut b = OnnxBuilder::new("tiny", WeightType::F16);
    b.add_input("x", &dims).unwrap();
    b.add_input("t", &[Dim::Batch]).unwrap();
    let a = b.add_weight("a", &[1], &[0.5]).unwrap();
    let c = b.add_weight("c", &[1], &[1e-4]).unwrap();
    let shape = b.add_i64("tshape", &[4], &[-1, 1, 1, 1]).unwrap();
    let ax = b.op("Mul", &["x", &a], vec![]).unwrap();
    let t4 = b.op("Reshape", &["t", &shape], vec![]).unwrap();
    let ct = b.op("Mul", &[&t4, &c], vec![]).unwrap();
    b.add_node("Add", &[&ax, &ct], &["eps"], vec![]).unwrap();
    b.add_output("eps", &dims);
    if let Some(m) = meta {
        b.set_meta(&m);
    }
    b.write(path).unwrap();
}

/// Runs `msm` with `args` (and the environment `env`) until the parts folder `dir` holds a
/// finished slice, then kills it; whether a slice was stored before the run ended.
pub fn kill_after_a_part(args: &[&str], env: &[(&str, &str)], dir: &Path) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_msm"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let mut caught = false;
    while start.elapsed() < std::time::Duration::from_secs(120) {
        let parts = std::fs::read_dir(dir)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("slice-"))
                    .count()
            })
            .unwrap_or(0);
        if parts > 0 {
            caught = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    caught
}
