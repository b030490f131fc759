//! Running the Python helpers of the trainer's tests (used by the binaries that call python3).

use std::ffi::OsStr;
use std::process::Command;

/// Runs `python3 args...`; returns whether it succeeded and its stdout followed by its stderr.
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> (bool, String) {
    let out = Command::new("python3")
        .args(args)
        .output()
        .expect("python3 runs (install python3 with torch, numpy, onnxruntime and safetensors)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
