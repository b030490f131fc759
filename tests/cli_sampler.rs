//! `msm reconstruct` and `msm generate` end to end on a tiny ONNX model built in the test, and
//! their bad-input handling: clear error, exit code 1, no panic, no output file.

mod common;

use common::{fails, ok, s, tiny_meta, tiny_model, tiny_model_with};
use std::path::{Path, PathBuf};

fn phantom(dir: &Path) -> PathBuf {
    let img = ndarray::Array2::from_shape_fn((40, 40), |(i, j)| {
        let (y, x) = ((i as f32 - 20.0) / 16.0, (j as f32 - 20.0) / 14.0);
        if x * x + y * y < 1.0 {
            0.5 + 0.5 * (4.0 * x).cos().abs()
        } else {
            0.0
        }
    });
    let p = dir.join("phantom.npy");
    msm::io::npy::write_npy(&p, &img).unwrap();
    p
}

fn setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let model = dir.join("tiny.onnx");
    tiny_model(&model, 32, true);
    let pre = dir.join("acq");
    ok(&[
        "simulate",
        "--size",
        "32",
        "--acs",
        "4",
        "--coils",
        "4",
        s(&phantom(dir)),
        s(&pre),
    ]);
    (model, dir.join("acq_ksp"), dir.join("acq_maps"))
}

#[test]
fn reconstruct_and_generate_run_end_to_end_and_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, ksp, maps) = setup(d);
    for (name, mode) in [("par", "parallel"), ("seq", "sequential")] {
        let out = d.join(format!("{name}.npy"));
        let std = d.join(format!("{name}_std.png"));
        let args = [
            "reconstruct",
            "--model",
            s(&model),
            "--steps",
            "6",
            "--samples",
            "2",
            "--mode",
            mode,
            "--seed",
            "5",
            "--quiet",
            "--std",
            s(&std),
            s(&ksp),
            s(&maps),
            s(&out),
        ];
        ok(&args);
        assert!(std.exists());
        let img: ndarray::Array2<msm::C32> = msm::io::npy::read_npy_as(&out).unwrap();
        assert_eq!(img.dim(), (32, 32));
        assert!(img.iter().all(|v| v.re.is_finite() && v.im.is_finite()));
        // Same seed, same bytes.
        let again = d.join(format!("{name}_again.npy"));
        let mut args2 = args;
        args2[args2.len() - 1] = s(&again);
        ok(&args2);
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    }
    let gen = d.join("gen");
    ok(&[
        "generate",
        "--model",
        s(&model),
        "--steps",
        "4",
        "--count",
        "3",
        "--quiet",
        s(&gen),
    ]);
    let stack: ndarray::Array3<msm::C32> = msm::io::npy::read_npy_as(d.join("gen.npy")).unwrap();
    assert_eq!(stack.dim(), (3, 32, 32));
    assert!(d.join("gen.png").exists());
    // A prefix in a missing folder fails before sampling, naming the folder.
    fails(
        &[
            "generate",
            "--model",
            s(&model),
            "--steps",
            "4",
            "--quiet",
            s(&d.join("missing").join("gen")),
        ],
        &["missing", "does not exist"],
    );
}

/// `tiny_model` at 32 pixels with `msm.recon_eta` = `eta`, in `dir`.
fn model_with_recon_eta(dir: &Path, eta: &str) -> PathBuf {
    let path = dir.join(format!("eta_{eta}.onnx"));
    let mut meta = tiny_meta(32);
    meta.extra
        .insert(msm::onnx::meta::RECON_ETA_KEY.into(), eta.into());
    tiny_model_with(&path, 32, Some(meta));
    path
}

#[test]
fn reconstruct_takes_the_models_recon_eta_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (plain, ksp, maps) = setup(d);
    let with_eta = model_with_recon_eta(d, "0.3");
    let recon = |model: &Path, extra: &[&str], name: &str| {
        let out = d.join(name);
        let mut args = vec!["reconstruct", "--model", s(model), "--steps", "5"];
        args.extend_from_slice(extra);
        args.extend([s(&ksp), s(&maps), s(&out)]);
        let run = ok(&args);
        (
            std::fs::read(&out).unwrap(),
            String::from_utf8_lossy(&run.stderr).into_owned(),
        )
    };
    // The same network; only the metadata differs.
    let (from_model, note) = recon(&with_eta, &[], "model.npy");
    let (told, _) = recon(&plain, &["--quiet", "--eta", "0.3"], "told.npy");
    let (default, _) = recon(&plain, &["--quiet"], "default.npy");
    let (overridden, _) = recon(&with_eta, &["--quiet", "--eta", "0.85"], "over.npy");
    assert_eq!(from_model, told, "the model's eta 0.3 was not used");
    assert_eq!(
        overridden, default,
        "--eta did not override the model's eta"
    );
    assert_ne!(from_model, default, "eta 0.3 and 0.85 gave the same image");
    assert!(note.contains("msm.recon_eta"), "no note: {note}");
}

#[test]
fn reconstruct_refuses_bad_input_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, ksp, maps) = setup(d);
    let out = d.join("out.npy");
    let run = |extra: &[&str], needles: &[&str]| {
        let mut args = vec!["reconstruct", "--quiet", "--steps", "3"];
        args.extend_from_slice(extra);
        fails(&args, needles);
        assert!(
            !out.exists(),
            "output written despite the error ({extra:?})"
        );
    };
    // Model size differs from the data.
    let small = d.join("small.onnx");
    tiny_model(&small, 16, true);
    run(
        &["--model", s(&small), s(&ksp), s(&maps), s(&out)],
        &["16", "32"],
    );
    // A reconstruction eta outside 0..=1 in the metadata.
    let bad_eta = model_with_recon_eta(d, "2");
    run(
        &["--model", s(&bad_eta), s(&ksp), s(&maps), s(&out)],
        &["eta_2.onnx", "msm.recon_eta", "0..=1"],
    );
    // Not an ONNX file.
    let junk = d.join("junk.onnx");
    std::fs::write(&junk, b"this is not a model").unwrap();
    run(
        &["--model", s(&junk), s(&ksp), s(&maps), s(&out)],
        &["junk.onnx", "not an ONNX model"],
    );
    // ONNX without MSM metadata.
    let bare = d.join("bare.onnx");
    tiny_model(&bare, 32, false);
    run(
        &["--model", s(&bare), s(&ksp), s(&maps), s(&out)],
        &["bare.onnx", "msm."],
    );
    // Missing model.
    run(
        &[
            "--model",
            s(&d.join("none.onnx")),
            s(&ksp),
            s(&maps),
            s(&out),
        ],
        &["none.onnx"],
    );
    // w = 0, K = 0, K larger than the schedule.
    run(
        &[
            "--model",
            s(&model),
            "--partials",
            "0",
            s(&ksp),
            s(&maps),
            s(&out),
        ],
        &["w"],
    );
    fails(
        &[
            "reconstruct",
            "--quiet",
            "--model",
            s(&model),
            "--steps",
            "0",
            s(&ksp),
            s(&maps),
            s(&out),
        ],
        &["steps"],
    );
    fails(
        &[
            "reconstruct",
            "--quiet",
            "--model",
            s(&model),
            "--steps",
            "1001",
            s(&ksp),
            s(&maps),
            s(&out),
        ],
        &["1001"],
    );
    // A mask shorter than the k-space width.
    let short = d.join("short.npy");
    msm::io::npy::write_npy(&short, &ndarray::Array1::<f32>::ones(20)).unwrap();
    run(
        &[
            "--model",
            s(&model),
            "--mask",
            s(&short),
            s(&ksp),
            s(&maps),
            s(&out),
        ],
        &["short.npy", "20", "32"],
    );
    // The uncertainty map's folder is missing: refused before the reconstruction, and the
    // posterior mean is not written either.
    run(
        &[
            "--model",
            s(&model),
            "--std",
            s(&d.join("missing").join("std.png")),
            s(&ksp),
            s(&maps),
            s(&out),
        ],
        &["std.png", "missing", "does not exist"],
    );
    // Coil maps with another coil count.
    let pre = d.join("two");
    ok(&[
        "simulate",
        "--size",
        "32",
        "--acs",
        "4",
        "--coils",
        "2",
        s(&phantom(d)),
        s(&pre),
    ]);
    run(
        &[
            "--model",
            s(&model),
            s(&ksp),
            s(&d.join("two_maps")),
            s(&out),
        ],
        &["two_maps", "coils"],
    );
    assert!(!out.exists());
}

#[test]
fn zero_counts_are_refused_not_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("none");
    let o = s(&out);
    for (option, args) in [
        ("--count", vec!["generate", "--count", "0", o]),
        ("--columns", vec!["generate", "--columns", "0", o]),
        ("--coils", vec!["generate", "--coils", "0", o]),
        ("--samples", vec!["demo", "--samples", "0", "--out", o]),
        ("--slices", vec!["demo", "--slices", "0", "--out", o]),
        ("--cg-iters", vec!["demo", "--cg-iters", "0", "--out", o]),
        ("--iters", vec!["recon", "--iters", "0", "k", "m", o]),
    ] {
        let run = common::msm(&args);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(option) && err.contains("at least 1"),
            "{args:?}: the error does not name the option and the bound: {err}"
        );
        let written: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(written.is_empty(), "{args:?}: wrote {written:?}");
    }
}

/// Runs `exe` (an `msm` binary) in the folder `cwd` with `args`.
fn run_in(exe: &Path, cwd: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(exe)
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run msm")
}

#[test]
fn shipped_model_is_found_from_any_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let built = Path::new(env!("CARGO_BIN_EXE_msm"));
    let default = "models/msm-brain-128-noisy.onnx";

    // One sample with the default model, run by `exe` in `cwd`: the side of the grid it
    // wrote, which says which model it found.
    let side = |exe: &Path, cwd: &Path| -> usize {
        let args = [
            "generate",
            "--count",
            "1",
            "--steps",
            "1",
            "--partials",
            "1",
            "--quiet",
            "g",
        ];
        let out = run_in(exe, cwd, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let grid = msm::io::npy::read_npy(cwd.join("g.npy")).unwrap();
        assert_eq!(grid.shape()[..2], [1, grid.shape()[2]]);
        grid.shape()[2]
    };
    // Run from a folder without models/: the default model is the source checkout's.
    assert_eq!(side(built, d), 128, "not the shipped 128x128 model");

    // A copy of the binary with a models/ folder beside it takes the model there first (a tiny
    // 32x32 one here, under the shipped name), as an install that ships both would.
    let bin = d.join("bin");
    std::fs::create_dir_all(bin.join("models")).unwrap();
    std::fs::copy(built, bin.join("msm")).unwrap();
    tiny_model(&bin.join(default), 32, true);
    let work = d.join("work");
    std::fs::create_dir(&work).unwrap();
    assert_eq!(
        side(&bin.join("msm"), &work),
        32,
        "not the model beside the executable"
    );

    // A model under models/ found nowhere: the error lists every place searched, and a path
    // outside models/ is taken as given.
    let out = run_in(
        built,
        d,
        &["generate", "--model", "models/none.onnx", "--quiet", "n"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/none.onnx");
    for place in [
        "models/none.onnx".to_string(),
        s(&built.parent().unwrap().join("models/none.onnx")).to_string(),
        s(&source).to_string(),
    ] {
        assert!(err.contains(&place), "{place} not in: {err}");
    }
    let out = run_in(built, d, &["generate", "--model", "none.onnx", "n"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("none.onnx") && !err.contains(s(&source)),
        "{err}"
    );
}
