//! The README's main job, `msm demo`, on the shipped model: it runs to completion and writes
//! its table and panel; the shipped model's metadata matches its card.

use msm::denoiser::OnnxDenoiser;
use std::process::Command;

const MODEL: &str = "models/msm-brain-128.onnx";
const CARD: &str = "models/msm-brain-128.md";

#[test]
fn shipped_model_loads_and_matches_its_card() {
    let net = OnnxDenoiser::load(MODEL).expect("shipped model loads");
    let m = net.meta();
    assert_eq!((m.height, m.width, m.channels), (128, 128, 2));
    let card = std::fs::read_to_string(CARD).expect("model card next to the model");
    let steps = m.steps_trained.expect("steps trained recorded");
    assert!(
        card.contains(&format!("{steps}")),
        "card does not state the {steps} training steps recorded in the model"
    );
    assert!(card.contains(&format!("{}", m.train_acs_lines)));
    let scale = m
        .extra
        .get("msm.scale_p99")
        .expect("training scale recorded");
    assert!(
        card.contains(scale.as_str()),
        "card does not state scale {scale}"
    );
}

#[test]
fn demo_runs_and_writes_table_and_panel() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let run = Command::new(env!("CARGO_BIN_EXE_msm"))
        .args(["demo", "--slices", "1", "--steps", "10", "--quiet", "--out"])
        .arg(&out)
        .output()
        .expect("run msm demo");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "msm demo failed: {stderr}");
    let table = std::fs::read_to_string(out.join("results.md")).expect("results table");
    for method in ["zero-filled", "CG-SENSE", "MSM"] {
        assert!(table.contains(method), "table lacks {method}:\n{table}");
    }
    assert!(out.join("slice0.png").exists(), "panel missing");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("PSNR"), "table not printed: {stdout}");
}
