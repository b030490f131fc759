//! `msm metrics --std`: the calibration of a posterior std map against an independent NumPy
//! implementation (one image and a volume), end to end on `msm reconstruct --std`'s output,
//! and its refusals of bad input.

mod common;

use common::{fails, ok, python_fixtures, s};
use serde_json::Value;
use std::path::Path;

/// Runs `msm metrics --json --scale --std` with 5 samples and returns its JSON.
fn metrics_json(dir: &Path, reference: &str, image: &str, std: &str) -> Value {
    let out = ok(&[
        "metrics",
        s(&dir.join(reference)),
        s(&dir.join(image)),
        "--scale",
        "--std",
        s(&dir.join(std)),
        "--samples",
        "5",
        "--json",
    ]);
    serde_json::from_slice(&out.stdout).expect("metrics --json prints JSON")
}

/// One region's figures against NumPy's: pixel counts exact, the rest to rounding (the
/// image is scaled in single precision here, in double there).
fn same_region(got: &Value, want: &Value, what: &str) {
    assert_eq!(got["pixels"], want["pixels"], "{what}: pixels");
    let close = |g: &Value, w: &Value, tol: f64, name: &str| {
        let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
        assert!(
            (g - w).abs() <= tol,
            "{what}: {name} {g} against NumPy's {w}"
        );
    };
    close(&got["ratio"], &want["ratio"], 1e-4, "ratio");
    for k in 0..3 {
        // A pixel on the boundary |error| = k std may fall either side of it in rounding.
        close(
            &got["coverage"][k],
            &want["coverage"][k],
            2.0 / want["pixels"].as_f64().unwrap(),
            "coverage",
        );
    }
    close(&got["spearman"], &want["spearman"], 1e-3, "spearman");
    close(
        &got["block_spearman"],
        &want["block_spearman"],
        1e-3,
        "block_spearman",
    );
}

fn same_uncertainty(got: &Value, want: &Value, what: &str) {
    assert_eq!(got["samples"], 5);
    for region in ["whole", "object"] {
        same_region(&got[region], &want[region], &format!("{what}, {region}"));
    }
}

/// An image (40 x 36, partial blocks at its edge) and a volume of two slices, their error 1.5
/// times wider than their samples' spread: every figure as NumPy computes it.
#[test]
fn calibration_matches_numpy() {
    let Some(dir) = python_fixtures(
        "tests/uncertainty/make_files.py",
        &["numpy"],
        "the NumPy uncertainty reference",
    ) else {
        return;
    };
    let d = dir.path();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("expected.json")).unwrap()).unwrap();

    let image = metrics_json(d, "ref.npy", "mean.npy", "std.npy");
    same_uncertainty(&image["uncertainty"], &expected["image"], "image");
    // The draws' error is 1.5 times the samples' spread: an over-confident map.
    let ratio = image["uncertainty"]["object"]["ratio"].as_f64().unwrap();
    assert!(ratio > 1.3, "ratio {ratio}");
    assert_eq!(image["uncertainty"]["levels"], serde_json::json!([1, 2, 3]));

    let volume = metrics_json(d, "ref_vol.npy", "mean_vol.npy", "std_vol.npy");
    let slices = volume["uncertainty"].as_array().expect("one entry a slice");
    assert_eq!(slices.len(), 2);
    for (k, got) in slices.iter().enumerate() {
        same_uncertainty(got, &expected["volume"][k], &format!("slice {k}"));
    }

    // The text form names the regions and what a calibrated map of 5 samples gives.
    let text = ok(&[
        "metrics",
        s(&d.join("ref_vol.npy")),
        s(&d.join("mean_vol.npy")),
        "--scale",
        "--std",
        s(&d.join("std_vol.npy")),
        "--samples",
        "5",
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("slice 1: uncertainty, object:"), "{text}");
    assert!(
        text.contains("uncertainty, object, mean over 2 slices")
            && text
                .contains("a calibrated map of 5 samples: ratio 1, coverage 0.626 / 0.884 / 0.960"),
        "{text}"
    );
}

/// `msm reconstruct --samples 3 --std` on a simulated slice, then `msm metrics --std`: the
/// map it writes is scored, with finite figures in their ranges.
#[test]
fn reconstruct_std_map_is_scored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/examples/colin27-axial-90.npy");
    let prefix = d.join("scan");
    ok(&[
        "simulate",
        s(&example),
        s(&prefix),
        "--noise",
        "0.01",
        "--seed",
        "3",
        "--npy",
    ]);
    let (image, std) = (d.join("mean.npy"), d.join("std.npy"));
    ok(&[
        "reconstruct",
        s(&d.join("scan_ksp.npy")),
        s(&d.join("scan_maps.npy")),
        s(&image),
        "--steps",
        "3",
        "--samples",
        "3",
        "--std",
        s(&std),
        "--quiet",
    ]);
    let out = ok(&[
        "metrics",
        s(&d.join("scan_ref.npy")),
        s(&image),
        "--scale",
        "--std",
        s(&std),
        "--samples",
        "3",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let u = &v["uncertainty"];
    assert_eq!(u["samples"], 3);
    for region in ["whole", "object"] {
        let c = &u[region];
        let ratio = c["ratio"].as_f64().unwrap();
        assert!(ratio.is_finite() && ratio > 0.0, "{region}: {c}");
        let cov: Vec<f64> = (0..3).map(|k| c["coverage"][k].as_f64().unwrap()).collect();
        assert!(
            cov[0] <= cov[1] && cov[1] <= cov[2] && cov[2] <= 1.0,
            "{region}: {c}"
        );
        for key in ["spearman", "block_spearman"] {
            let r = c[key].as_f64().unwrap();
            assert!((-1.0..=1.0).contains(&r), "{region}: {c}");
        }
    }
    assert!(u["object"]["pixels"].as_u64().unwrap() < u["whole"]["pixels"].as_u64().unwrap());
}

#[test]
fn bad_std_maps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, shape: &[usize], complex: bool| {
        let path = d.join(name);
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32).collect();
        if complex {
            let c: Vec<msm::C32> = values.iter().map(|&v| msm::C32::new(v, 0.5)).collect();
            let a = ndarray::ArrayD::from_shape_vec(shape.to_vec(), c).unwrap();
            msm::io::npy::write_npy(&path, &a).unwrap();
        } else {
            let a = ndarray::ArrayD::from_shape_vec(shape.to_vec(), values).unwrap();
            msm::io::npy::write_npy(&path, &a).unwrap();
        }
        path
    };
    let reference = write("ref.npy", &[16, 16], true);
    let image = write("img.npy", &[16, 16], true);
    let std = write("std.npy", &[16, 16], false);
    let args = |std: &Path, samples: &str| {
        vec![
            "metrics".to_string(),
            s(&reference).to_string(),
            s(&image).to_string(),
            "--std".to_string(),
            s(std).to_string(),
            "--samples".to_string(),
            samples.to_string(),
        ]
    };
    let run = |a: Vec<String>, needles: &[&str]| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        fails(&a, needles);
    };
    run(args(&std, "1"), &["std.npy", "at least 2 samples"]);
    let complex = write("complex.npy", &[16, 16], true);
    run(
        args(&complex, "2"),
        &["complex.npy", "complex values", "real std map"],
    );
    let small = write("small.npy", &[8, 16], false);
    run(
        args(&small, "2"),
        &["small.npy", "std map is 8x16", "reference is 16x16"],
    );
    // A PNG holds a display window, not the std's values.
    let png = d.join("std.png");
    msm::io::png::write_png(
        &png,
        &ndarray::Array2::<f32>::ones((16, 16)),
        msm::io::png::Window::Auto,
    )
    .unwrap();
    run(args(&png, "2"), &["std.png", "display window", ".npy"]);
    // A volume's maps must match its slices one for one.
    let ref_vol = write("ref_vol.npy", &[2, 16, 16], true);
    let img_vol = write("img_vol.npy", &[2, 16, 16], true);
    let std_vol = write("std_vol.npy", &[3, 16, 16], false);
    fails(
        &[
            "metrics",
            s(&ref_vol),
            s(&img_vol),
            "--std",
            s(&std_vol),
            "--samples",
            "2",
        ],
        &["std_vol.npy", "holds 3 std maps", "holds 2 slices"],
    );
    // --std and --samples go together.
    let out = common::msm(&["metrics", s(&reference), s(&image), "--std", s(&std)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--samples"));
}
