//! HDF5 test files written by Python scripts (shared with the trainer's tests, which include
//! this file by path).

use std::path::Path;
use std::process::Command;
use tempfile::TempDir;

/// A temporary folder holding the files that the h5py script `script` (a path relative to the
/// crate root) writes into it, or `None` with a note naming `what` is skipped when python3 with
/// h5py and NumPy is not available. On CI (the environment variable `CI` set, as .ci/run has it)
/// a missing h5py is a broken setup, not a skip, and fails.
pub fn h5py_fixtures(script: &str, what: &str) -> Option<TempDir> {
    python_fixtures(script, &["h5py", "numpy"], what)
}

/// [`h5py_fixtures`] for a script that imports the Python `modules` (pip package names equal
/// to the module names): `None` with a note where one is missing, a failure on CI.
pub fn python_fixtures(script: &str, modules: &[&str], what: &str) -> Option<TempDir> {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        let list = modules.join(" ");
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with {list} is required on CI (python3 -m pip install {list})"
        );
        eprintln!("note: skipping {what}: python3 with {list} is not available");
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
