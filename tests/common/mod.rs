//! Helpers shared by the CLI integration tests: run the `msm` binary and check its outcome.

#![allow(dead_code)]

use msm::onnx::{Dim, ModelMeta, OnnxBuilder, WeightType};
use std::path::Path;
use std::process::{Command, Output};
use tempfile::TempDir;

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
    let dims = [
        Dim::Batch,
        Dim::Fixed(2),
        Dim::Fixed(size),
        Dim::Fixed(size),
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

/// A temporary folder holding the files that the h5py script `script` (a path relative to the
/// crate root) writes into it, or `None` with a note naming `what` is skipped when python3 with
/// h5py and NumPy is not available. On CI (the environment variable `CI` set, as .ci/run has it)
/// a missing h5py is a broken setup, not a skip, and fails.
pub fn h5py_fixtures(script: &str, what: &str) -> Option<TempDir> {
    let probe = Command::new("python3")
        .args(["-c", "import h5py, numpy"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with h5py and numpy is required on CI (python3 -m pip install h5py numpy)"
        );
        eprintln!("note: skipping {what}: python3 with h5py and numpy is not available");
        return None;
    }
    let dir = tempfile::tempdir().expect("temporary folder");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}
