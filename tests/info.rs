//! `msm info` through the binary: a model's metadata and executor, and a scan's layout, masks
//! and noise level, against what the files were written with (the shipped model's metadata as
//! the runtime reads it; the h5py fixtures of `tests/volume/make_files.py`; a `msm simulate`
//! acquisition and its mask), and bad input.

mod common;

use common::{fails, h5py_fixtures, ok, s, tiny_model};
use msm::denoiser::OnnxDenoiser;
use msm::io::npy;
use serde_json::Value;
use std::path::Path;

fn info(path: &Path) -> Value {
    let out = ok(&["info", s(path), "--json"]);
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn a_model_shows_its_metadata_and_executor() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/msm-brain-128-noisy.onnx");
    let v = info(&model);
    assert_eq!(v["kind"], "model");
    assert_eq!(v["executor"], "native");
    let meta = OnnxDenoiser::load(&model).unwrap().meta().to_props();
    assert_eq!(v["metadata"].as_object().unwrap().len(), meta.len());
    for (k, want) in &meta {
        assert_eq!(v["metadata"][k], *want, "{k}");
    }
    assert!(v["card"]
        .as_str()
        .unwrap()
        .ends_with("msm-brain-128-noisy.md"));
    let text = String::from_utf8(ok(&["info", s(&model)]).stdout).unwrap();
    assert!(text.contains("executor: native") && text.contains("msm.train_noise_eta      0.01"));

    // A graph the native executor does not run: tract, and why.
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny.onnx");
    tiny_model(&tiny, 32, true);
    let v = info(&tiny);
    assert_eq!(v["executor"], "tract");
    assert!(v["native_declined"]
        .as_str()
        .unwrap()
        .contains("native executor cannot run"));
    assert!(v["card"].is_null());
}

#[test]
fn a_scan_shows_its_layout_masks_and_noise() {
    let Some(dir) = h5py_fixtures("tests/volume/make_files.py", "the msm info scan test") else {
        return;
    };
    // scan.h5: 6 slices, 4 coils, 40 x 32 k-space, recon 32 x 32, a stored mask keeping every
    // third column and 10 central ones (18 of 32), white noise of std 1e-4, an RSS reference.
    let v = info(&dir.path().join("scan.h5"));
    assert_eq!(v["kind"], "kspace");
    assert_eq!(v["slices"], 6);
    assert_eq!(v["coils"], 4);
    assert_eq!(v["kspace_size"], serde_json::json!([40, 32]));
    assert_eq!(v["recon_size"], serde_json::json!([32, 32]));
    assert_eq!(v["mask"], "stored");
    assert_eq!(v["reconstruction_rss"], serde_json::json!([6, 32, 32]));
    for slice in v["per_slice"].as_array().unwrap() {
        assert_eq!(slice["kept_columns"], 18);
        assert!((slice["acceleration"].as_f64().unwrap() - 32.0 / 18.0).abs() < 1e-9);
        // The central block of 10, joined by the every-third column next to it.
        assert_eq!(slice["acs_lines"], 11);
        let noise = slice["noise_std"].as_f64().unwrap();
        assert!((noise / 1e-4 - 1.0).abs() < 0.25, "noise {noise}");
    }
    // plain.h5: no mask stored; each slice's own columns are found.
    let v = info(&dir.path().join("plain.h5"));
    assert_eq!(v["mask"], "detected");
    let kept: Vec<u64> = v["per_slice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kept_columns"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [21, 15]);
}

#[test]
fn a_simulated_slice_shows_its_mask_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = d.join("img.npy");
    let img = ndarray::Array2::from_shape_fn((48, 48), |(y, x)| {
        if (y as i64 - 24).pow(2) + (x as i64 - 24).pow(2) < 300 {
            1.0f32
        } else {
            0.0
        }
    });
    npy::write_npy(&image, &img).unwrap();
    let pre = d.join("acq");
    ok(&[
        "simulate",
        s(&image),
        s(&pre),
        "--size",
        "48",
        "--coils",
        "4",
        "--accel",
        "3",
        "--acs",
        "8",
        "--npy",
        "--seed",
        "5",
    ]);
    let mask: ndarray::Array1<f32> = npy::read_npy_as(d.join("acq_mask.npy")).unwrap();
    let kept = mask.iter().filter(|&&m| m > 0.0).count();
    let cols: Vec<bool> = mask.iter().map(|&m| m > 0.0).collect();
    for file in ["acq_ksp.npy", "acq_ksp.cfl"] {
        let v = info(&d.join(file));
        assert_eq!(v["slices"], 1);
        assert_eq!(v["coils"], 4);
        assert_eq!(v["kspace_size"], serde_json::json!([48, 48]));
        assert_eq!(v["per_slice"][0]["kept_columns"], kept);
        assert_eq!(v["per_slice"][0]["acs_lines"], msm::mask::acs_lines(&cols));
        assert!(msm::mask::acs_lines(&cols) >= 8);
    }
    fails(
        &["info", s(&d.join("acq_ref.npy"))],
        &[
            "acq_ref.npy",
            "msm info reads a model (.onnx), a NIfTI volume",
        ],
    );
    std::fs::write(d.join("junk.onnx"), b"junk").unwrap();
    fails(
        &["info", s(&d.join("junk.onnx"))],
        &["junk.onnx", "not an ONNX model"],
    );
    fails(&["info", s(&d.join("missing.h5"))], &["missing.h5"]);
}
