//! Helpers shared by the CLI integration tests: run the `msm` binary and check its outcome.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

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
