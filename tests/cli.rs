//! The `msm` binary end to end: simulate -> recon -> metrics, BART as an independent peer
//! (when `bart` is on PATH; CI installs it), and bad input (clear error, non-zero exit, no
//! output left behind).

mod common;

use common::{fails, ok, s};
use std::path::{Path, PathBuf};
use std::process::Command;

fn has_bart() -> bool {
    Command::new("bart")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn bart(args: &[&str]) {
    let out = Command::new("bart").args(args).output().expect("run bart");
    assert!(
        out.status.success(),
        "bart {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A phantom magnitude image written as .npy through the library (no external data needed).
fn phantom_npy(dir: &Path) -> PathBuf {
    let img = ndarray::Array2::from_shape_fn((96, 80), |(i, j)| {
        let (y, x) = ((i as f32 - 48.0) / 40.0, (j as f32 - 40.0) / 34.0);
        let r = x * x + y * y;
        if r < 1.0 {
            0.6 + 0.4 * ((5.0 * x).sin() * (3.0 * y).cos()).abs()
        } else {
            0.0
        }
    });
    let p = dir.join("phantom.npy");
    msm::io::npy::write_npy(&p, &img).unwrap();
    p
}

fn cfl_values(base: &Path) -> Vec<msm::C32> {
    msm::io::cfl::read_array(base).unwrap().data
}

#[test]
fn simulate_recon_metrics_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let input = phantom_npy(dir.path());
    let pre = dir.path().join("acq");
    ok(&[
        "simulate",
        "--size",
        "64",
        "--acs",
        "8",
        "--coils",
        "4",
        "--seed",
        "3",
        "--npy",
        s(&input),
        s(&pre),
    ]);
    for suffix in ["_ksp", "_maps", "_mask", "_ref"] {
        for ext in [".cfl", ".hdr", ".npy"] {
            let f = dir.path().join(format!("acq{suffix}{ext}"));
            assert!(f.exists(), "{} missing", f.display());
        }
    }
    // Same seed, same bytes.
    let pre2 = dir.path().join("again");
    ok(&[
        "simulate",
        "--size",
        "64",
        "--acs",
        "8",
        "--coils",
        "4",
        "--seed",
        "3",
        s(&input),
        s(&pre2),
    ]);
    assert_eq!(
        std::fs::read(dir.path().join("acq_ksp.cfl")).unwrap(),
        std::fs::read(dir.path().join("again_ksp.cfl")).unwrap()
    );
    let ksp = dir.path().join("acq_ksp");
    let maps = dir.path().join("acq_maps");
    let zf = dir.path().join("zf");
    let cg = dir.path().join("cg.npy");
    ok(&[
        "recon",
        "--method",
        "zero-filled",
        s(&ksp),
        s(&maps),
        s(&zf),
    ]);
    let mask = dir.path().join("acq_mask");
    let cg_sense_to = |out: &Path| {
        ok(&[
            "recon",
            "--method",
            "cg-sense",
            "--mask",
            s(&mask),
            s(&ksp),
            s(&maps),
            s(out),
        ])
    };
    cg_sense_to(&cg);
    ok(&[
        "recon",
        "--method",
        "cg-sense",
        s(&ksp),
        s(&maps),
        s(&dir.path().join("cg.png")),
    ]);
    // As many virtual coils as coils: a unitary change of coil basis, the same CG-SENSE image
    // (to rounding); fewer: a close one; more than the coils: refused, naming the file.
    let cg_npy = |extra: &[&str], name: &str| {
        let out = dir.path().join(name);
        let mut args = vec!["recon", "--method", "cg-sense"];
        args.extend_from_slice(extra);
        args.extend([s(&ksp), s(&maps), s(&out)]);
        ok(&args);
        msm::io::npy::read_npy_as::<msm::C32, ndarray::Ix2>(&out).unwrap()
    };
    let plain = cg_npy(&[], "cg_plain.npy");
    let rel = |x: &ndarray::Array2<msm::C32>| {
        let num: f32 = x.iter().zip(&plain).map(|(a, b)| (a - b).norm_sqr()).sum();
        (num / plain.iter().map(|v| v.norm_sqr()).sum::<f32>()).sqrt()
    };
    let all = cg_npy(&["--virtual-coils", "4"], "cg_cc4.npy");
    assert!(rel(&all) < 1e-4, "4 of 4 virtual coils: {}", rel(&all));
    let two = cg_npy(&["--virtual-coils", "2"], "cg_cc2.npy");
    // (Measured: 5.0% relative difference.)
    assert!(rel(&two) < 0.08, "2 of 4 virtual coils: {}", rel(&two));
    fails(
        &["recon", "--virtual-coils", "5", s(&ksp), s(&maps), s(&zf)],
        &["acq_ksp", "5 virtual coils", "4 coils"],
    );
    let reference = dir.path().join("acq_ref");
    let metrics = |img: &Path| -> serde_json::Value {
        let out = ok(&["metrics", "--json", "--scale", s(&reference), s(img)]);
        serde_json::from_slice(&out.stdout).expect("metrics --json is JSON")
    };
    let score = |img: &Path| -> f64 { metrics(img)["psnr"].as_f64().unwrap() };
    // The reference against itself (unscaled): an infinite PSNR is JSON's null, not `inf`.
    let out = ok(&["metrics", "--json", s(&reference), s(&reference)]);
    let same: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(same["psnr"].is_null(), "{same}");
    assert_eq!(same["ssim"].as_f64(), Some(1.0), "{same}");
    let (p_zf, p_cg) = (score(&zf), score(&cg));
    assert!(
        p_cg > p_zf + 2.0,
        "CG-SENSE {p_cg:.2} dB should beat zero-filled {p_zf:.2} dB"
    );

    // A .nii / .nii.gz output is a one-slice NIfTI magnitude image (not a .cfl pair named
    // cg.nii.cfl): the same values as the .npy output's magnitude, and metrics reads it back.
    let complex: ndarray::Array2<msm::C32> = msm::io::npy::read_npy_as(&cg).unwrap();
    let magnitude = dir.path().join("cg_magnitude.npy");
    msm::io::npy::write_npy(&magnitude, &complex.mapv(|x| msm::C32::new(x.norm(), 0.0))).unwrap();
    let p_magnitude = score(&magnitude);
    for name in ["cg.nii", "cg.nii.gz"] {
        let nii = dir.path().join(name);
        cg_sense_to(&nii);
        assert!(!dir.path().join(format!("{name}.cfl")).exists());
        let v = msm::io::nifti::read_nifti(&nii).unwrap();
        assert_eq!(v.data.dim(), (64, 64, 1), "{name}");
        for ((r, c), x) in complex.indexed_iter() {
            assert_eq!(v.data[(r, c, 0)], x.norm(), "{name} at ({r}, {c})");
        }
        assert_eq!(score(&nii), p_magnitude, "{name}: metrics reads it back");
    }
    // Multi-coil data has no NIfTI form.
    fails(
        &["ecalib", s(&ksp), s(&dir.path().join("maps.nii"))],
        &["maps.nii", "NIfTI", "expected a .cfl or .npy file"],
    );
}

/// `msm simulate --pattern random-2d` undersamples along both axes: a 2-D mask (`_mask.npy`
/// `(H, W)`) of random entries around the `--acs` square, R of the grid, nothing measured off
/// it; CG-SENSE unfolds it far beyond zero-filled, and a model of 2-D masks reconstructs it.
/// `--pattern variable-density-2d` does the same with masks denser at the centre than at the
/// edge, for a model that records its density, and `--pattern poisson-disc-2d` with masks of
/// that density whose outer entries are never next to each other.
#[test]
fn simulate_2d_masks_for_cg_sense_and_2d_models() {
    for pattern in ["random-2d", "variable-density-2d", "poisson-disc-2d"] {
        simulate_2d_masks(pattern);
    }
}

fn simulate_2d_masks(pattern: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = phantom_npy(d);
    let pre = d.join("acq");
    ok(&[
        "simulate",
        "--size",
        "32",
        "--acs",
        "8",
        "--accel",
        "3",
        "--coils",
        "4",
        "--pattern",
        pattern,
        "--seed",
        "3",
        "--npy",
        s(&input),
        s(&pre),
    ]);
    let mask: ndarray::Array2<f32> = msm::io::npy::read_npy_as(&d.join("acq_mask.npy")).unwrap();
    let mask = mask.mapv(|v| v != 0.0);
    assert_eq!(mask.dim(), (32, 32));
    assert!(msm::mask::acs_side(&mask) >= 8, "the 8x8 ACS square");
    let fraction = mask.iter().filter(|&&k| k).count() as f64 / 1024.0;
    assert!(
        (fraction - 1.0 / 3.0).abs() < 0.05,
        "{pattern}: kept fraction {fraction}"
    );
    // Entries near the centre (radius 0.2 to 0.4, outside the ACS square) against those near
    // the corners (radius over 0.7): equally often for random-2d, far more often for
    // variable-density-2d and poisson-disc-2d.
    let kept_at = |lo: f64, hi: f64| {
        let (mut kept, mut all) = (0.0, 0.0);
        for ((i, j), &k) in mask.indexed_iter() {
            let r = msm::mask::density::normalised_radius(i, j, 32, 32);
            if (lo..hi).contains(&r) {
                all += 1.0;
                kept += f64::from(u8::from(k));
            }
        }
        kept / all
    };
    let (inner, outer) = (kept_at(0.2, 0.4), kept_at(0.7, 1.1));
    if pattern == "random-2d" {
        assert!(
            (inner - outer).abs() < 0.15,
            "{pattern}: {inner} vs {outer}"
        );
    } else {
        assert!(inner > 3.0 * outer, "{pattern}: {inner} vs {outer}");
    }
    // Near the corners the Poisson disc's radius is several grid steps: no two kept entries
    // there touch, not even diagonally.
    if pattern == "poisson-disc-2d" {
        for ((i, j), &k) in mask.indexed_iter() {
            if k && msm::mask::density::normalised_radius(i, j, 32, 32) > 0.7 {
                for (a, b) in [
                    (i + 1, j),
                    (i, j + 1),
                    (i + 1, j + 1),
                    (i + 1, j.wrapping_sub(1)),
                ] {
                    assert!(
                        !mask.get((a, b)).copied().unwrap_or(false),
                        "kept neighbours ({i}, {j}) and ({a}, {b})"
                    );
                }
            }
        }
    }
    assert!(
        mask.columns()
            .into_iter()
            .any(|c| c.iter().any(|&k| !k) && c.iter().any(|&k| k)),
        "a column mask"
    );
    let ksp: ndarray::Array3<msm::C32> = msm::io::npy::read_npy_as(&d.join("acq_ksp.npy")).unwrap();
    for ((_, i, j), v) in ksp.indexed_iter() {
        assert!(
            mask[(i, j)] || v.norm() == 0.0,
            "data off the mask at ({i}, {j})"
        );
    }
    let reference: ndarray::Array2<msm::C32> =
        msm::io::npy::read_npy_as(&d.join("acq_ref.npy")).unwrap();
    let (ksp, maps) = (d.join("acq_ksp"), d.join("acq_maps"));
    let psnr = |method: &str| {
        let out = d.join(format!("{method}.npy"));
        ok(&["recon", "--method", method, s(&ksp), s(&maps), s(&out)]);
        let image: ndarray::Array2<msm::C32> = msm::io::npy::read_npy_as(&out).unwrap();
        msm::metrics::compare(reference.view(), image.view(), true)
            .unwrap()
            .psnr
    };
    let (cg, zf) = (psnr("cg-sense"), psnr("zero-filled"));
    assert!(
        cg > zf + 6.0,
        "{pattern}: CG-SENSE {cg:.2} dB, zero-filled {zf:.2} dB"
    );
    let model = d.join("tiny2d.onnx");
    let mut meta = common::tiny_meta(32);
    if pattern == "random-2d" {
        meta.train_mask = msm::onnx::meta::MaskPattern::Random2d;
    } else {
        // Poisson-disc scans have the variable density such a model trained on.
        meta.train_mask = msm::onnx::meta::MaskPattern::VariableDensity2d;
        meta.train_density = Some(msm::mask::RadialDensity::polynomial(2.0).unwrap());
    }
    meta.train_acceleration = 3.0;
    meta.train_acs_lines = 8;
    common::tiny_model_with(&model, 32, Some(meta));
    let out = d.join("msm.npy");
    ok(&[
        "reconstruct",
        "--model",
        s(&model),
        "--steps",
        "4",
        "--quiet",
        s(&ksp),
        s(&maps),
        s(&out),
    ]);
    let image: ndarray::Array2<msm::C32> = msm::io::npy::read_npy_as(&out).unwrap();
    assert!(image.iter().all(|v| v.re.is_finite() && v.im.is_finite()));
}

/// `msm simulate --pattern poisson-disc-2d --density-of` a `bart poisson -v` mask (BART's
/// `[1, H, W]` layout) draws a Poisson disc spaced as BART's: the same kept count, and the
/// mean distance from each kept entry outside the centre to its nearest kept neighbour within
/// 5% of BART's (the two were level, 2.50 grid steps, at 128 x 128 on tuning slice 60), where
/// independent draws of the same density (`variable-density-2d`) are far closer (1.71).
#[test]
fn poisson_disc_is_spaced_as_bart_poisson() {
    if !has_bart() {
        eprintln!("SKIPPED: bart is not installed (apt-get install bart)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let theirs = d.join("bart_mask");
    bart(&[
        "poisson",
        "-Y",
        "96",
        "-Z",
        "96",
        "-y",
        "1.2",
        "-z",
        "1.2",
        "-C",
        "16",
        "-v",
        "-s",
        "1",
        s(&theirs),
    ]);
    let pattern = |m: msm::mask::Mask| match m {
        msm::mask::Mask::Pattern(p) => p,
        other => panic!("a 2-D mask, got {other:?}"),
    };
    let bart_mask = pattern(msm::io::cfl::read_mask(&theirs).unwrap());
    assert_eq!(bart_mask.dim(), (96, 96));
    let count = |m: &ndarray::Array2<bool>| m.iter().filter(|&&k| k).count();
    let accel = (96 * 96) as f64 / count(&bart_mask) as f64;
    // Mean distance to the nearest kept entry, over the kept entries outside the central
    // 32 x 32 (where both are fully sampled or nearly).
    let spacing = |m: &ndarray::Array2<bool>| {
        let pts: Vec<(f64, f64)> = m
            .indexed_iter()
            .filter(|((i, j), &k)| k && (i.abs_diff(48) >= 16 || j.abs_diff(48) >= 16))
            .map(|((i, j), _)| (i as f64, j as f64))
            .collect();
        let nearest = |&(y, x): &(f64, f64)| {
            pts.iter()
                .filter(|&&(a, b)| (a, b) != (y, x))
                .map(|&(a, b)| ((a - y).powi(2) + (b - x).powi(2)).sqrt())
                .fold(f64::INFINITY, f64::min)
        };
        pts.iter().map(nearest).sum::<f64>() / pts.len() as f64
    };
    let input = phantom_npy(d);
    let ours = |pattern_name: &str| {
        let pre = d.join(pattern_name);
        ok(&[
            "simulate",
            "--size",
            "96",
            "--coils",
            "2",
            "--acs",
            "16",
            "--accel",
            &accel.to_string(),
            "--pattern",
            pattern_name,
            "--density-of",
            s(&theirs),
            "--seed",
            "1",
            s(&input),
            s(&pre),
        ]);
        let mut mask_file = pre.into_os_string();
        mask_file.push("_mask");
        pattern(msm::io::cfl::read_mask(PathBuf::from(mask_file)).unwrap())
    };
    let (disc, independent) = (ours("poisson-disc-2d"), ours("variable-density-2d"));
    let n = count(&bart_mask) as f64;
    assert!(
        (count(&disc) as f64 - n).abs() <= 0.01 * n,
        "{} kept, BART {n}",
        count(&disc)
    );
    let (b, p, v) = (spacing(&bart_mask), spacing(&disc), spacing(&independent));
    assert!(
        (p / b - 1.0).abs() < 0.05,
        "mean nearest-neighbour distance {p:.3}, BART's {b:.3}"
    );
    assert!(
        v < 0.85 * b,
        "independent draws {v:.3} against BART's {b:.3}"
    );
}

#[test]
fn zero_filled_matches_bart() {
    if !has_bart() {
        eprintln!("SKIPPED: bart is not installed (apt-get install bart)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = phantom_npy(dir.path());
    let pre = dir.path().join("acq");
    ok(&[
        "simulate",
        "--size",
        "128",
        "--coils",
        "8",
        "--seed",
        "9",
        s(&input),
        s(&pre),
    ]);
    let ksp = dir.path().join("acq_ksp");
    let maps = dir.path().join("acq_maps");
    let ours = dir.path().join("ours");
    ok(&[
        "recon",
        "--method",
        "zero-filled",
        s(&ksp),
        s(&maps),
        s(&ours),
    ]);
    let coil_img = dir.path().join("coilimg");
    let theirs = dir.path().join("theirs");
    bart(&["fft", "-u", "-i", "3", s(&ksp), s(&coil_img)]);
    bart(&["fmac", "-C", "-s", "8", s(&coil_img), s(&maps), s(&theirs)]);
    let (a, b) = (cfl_values(&ours), cfl_values(&theirs));
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).norm_sqr() as f64)
        .sum();
    let den: f64 = b.iter().map(|y| y.norm_sqr() as f64).sum();
    let rel = (num / den).sqrt();
    assert!(
        rel < 1e-5,
        "msm vs BART zero-filled: relative error {rel:e}"
    );
}

#[test]
fn reads_bart_phantom_kspace() {
    if !has_bart() {
        eprintln!("SKIPPED: bart is not installed (apt-get install bart)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ksp = dir.path().join("ph");
    let maps = dir.path().join("sens");
    bart(&["phantom", "-k", "-s", "8", "-x", "64", s(&ksp)]);
    bart(&["phantom", "-S", "8", "-x", "64", s(&maps)]);
    let img = dir.path().join("img.npy");
    ok(&[
        "recon",
        "--method",
        "zero-filled",
        s(&ksp),
        s(&maps),
        s(&img),
    ]);
    let v: ndarray::Array2<msm::C32> = msm::io::npy::read_npy_as(&img).unwrap();
    assert_eq!(v.dim(), (64, 64));
    assert!(v.iter().any(|z| z.norm() > 0.0));
}

fn write_text(p: &Path, t: &str) {
    std::fs::write(p, t).unwrap();
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn bad_input_gives_clear_errors_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = phantom_npy(d);
    let pre = d.join("acq");
    ok(&[
        "simulate",
        "--size",
        "32",
        "--acs",
        "4",
        "--coils",
        "2",
        s(&input),
        s(&pre),
    ]);
    let ksp = d.join("acq_ksp");
    let maps = d.join("acq_maps");
    let out = d.join("out");
    let before = dir_entries(d);

    // Missing file.
    fails(
        &["recon", s(&d.join("nope")), s(&maps), s(&out)],
        &["nope.hdr"],
    );
    // A sampling density measured from a column mask, or given to a pattern that takes none.
    let column_mask = d.join("acq_mask");
    let sim = |extra: &[&str], needles: &[&str]| {
        let mut args = vec!["simulate", "--size", "32", "--acs", "4", "--coils", "2"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[s(&input), s(&out)]);
        fails(&args, needles);
    };
    sim(
        &[
            "--pattern",
            "poisson-disc-2d",
            "--density-of",
            s(&column_mask),
        ],
        &["acq_mask", "column mask", "expected a 2-D mask"],
    );
    sim(
        &["--pattern", "random", "--density", "1,0.5"],
        &["poisson-disc-2d", "not for random ones"],
    );
    // Truncated .cfl.
    let trunc = d.join("trunc");
    std::fs::copy(d.join("acq_ksp.hdr"), d.join("trunc.hdr")).unwrap();
    let bytes = std::fs::read(d.join("acq_ksp.cfl")).unwrap();
    std::fs::write(d.join("trunc.cfl"), &bytes[..bytes.len() - 8]).unwrap();
    fails(
        &["recon", s(&trunc), s(&maps), s(&out)],
        &["trunc.cfl", "bytes"],
    );
    // Header dimensions that do not match the data size.
    let wrong = d.join("wrong");
    std::fs::copy(d.join("acq_ksp.cfl"), d.join("wrong.cfl")).unwrap();
    write_text(
        &d.join("wrong.hdr"),
        "# Dimensions\n32 32 1 3 1 1 1 1 1 1 1 1 1 1 1 1\n",
    );
    fails(
        &["recon", s(&wrong), s(&maps), s(&out)],
        &["wrong.cfl", "size mismatch"],
    );
    // Non-numeric header.
    let nonnum = d.join("nonnum");
    std::fs::copy(d.join("acq_ksp.cfl"), d.join("nonnum.cfl")).unwrap();
    write_text(&d.join("nonnum.hdr"), "# Dimensions\n32 x 1 2\n");
    fails(&["recon", s(&nonnum), s(&maps), s(&out)], &["nonnum.hdr"]);
    // Mask whose length does not match the k-space.
    let short = d.join("short.npy");
    msm::io::npy::write_npy(&short, &ndarray::Array1::<f32>::ones(20)).unwrap();
    fails(
        &["recon", "--mask", s(&short), s(&ksp), s(&maps), s(&out)],
        &["short.npy", "20", "32"],
    );
    // NaN in k-space.
    let nan = d.join("nan");
    std::fs::copy(d.join("acq_ksp.hdr"), d.join("nan.hdr")).unwrap();
    let mut b = bytes.clone();
    b[8 * 5..8 * 5 + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(d.join("nan.cfl"), &b).unwrap();
    fails(
        &["recon", s(&nan), s(&maps), s(&out)],
        &["nan.cfl", "non-finite"],
    );
    // Coil count mismatch between k-space and maps.
    let pre3 = d.join("three");
    ok(&[
        "simulate",
        "--size",
        "32",
        "--acs",
        "4",
        "--coils",
        "3",
        s(&input),
        s(&pre3),
    ]);
    fails(
        &["recon", s(&ksp), s(&d.join("three_maps")), s(&out)],
        &["three_maps", "shape"],
    );
    // Data that cannot be reconstructed: coil maps that are zero everywhere, a mask that keeps
    // nothing, and k-space that is zero everywhere with no mask to say what was sampled (each
    // used to give an all-zero image and exit code 0).
    let zeros = |name: &str, like: &std::path::Path| {
        let a = msm::io::cfl::read_array(like).unwrap();
        let zero = vec![msm::C32::new(0.0, 0.0); a.data.len()];
        msm::io::cfl::write_array(d.join(name), &a.dims, &zero).unwrap();
        d.join(name)
    };
    let zero_maps = zeros("zero_maps", &maps);
    fails(
        &["recon", s(&ksp), s(&zero_maps), s(&out)],
        &[
            "zero_maps",
            "zero everywhere",
            "expected coil sensitivities",
        ],
    );
    let zero_mask = zeros("zero_mask", &d.join("acq_mask"));
    fails(
        &["recon", "--mask", s(&zero_mask), s(&ksp), s(&maps), s(&out)],
        &["zero_mask", "keeps no k-space entry"],
    );
    let zero_ref = zeros("zero_ref", &d.join("acq_ref"));
    fails(
        &["metrics", s(&zero_ref), s(&d.join("acq_ref"))],
        &[
            "zero_ref",
            "zero everywhere",
            "expected a reference image with signal",
        ],
    );
    let zero_ksp = zeros("zero_ksp", &ksp);
    fails(
        &["recon", s(&zero_ksp), s(&maps), s(&out)],
        &["zero_ksp", "zero everywhere", "--mask"],
    );
    // Unknown simulate input.
    fails(
        &["simulate", s(&d.join("x.txt")), s(&d.join("sim"))],
        &["x.txt"],
    );
    // simulate writes its outputs as one set: when the last of them (the PNG) cannot be
    // written, here because its path is a folder, none of the others is left behind.
    std::fs::create_dir(d.join("half_ref.png")).unwrap();
    fails(
        &["simulate", "--size", "32", "--acs", "4", "--npy", "--png"]
            .into_iter()
            .chain([s(&input), s(&d.join("half"))])
            .collect::<Vec<_>>(),
        &["half_ref.png", "is a folder"],
    );

    // No output of any failed command survives (no `out*`, no temporary files).
    let after = dir_entries(d);
    let new: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
    for f in &new {
        assert!(
            f.starts_with("trunc")
                || f.starts_with("wrong")
                || f.starts_with("nonnum")
                || f.starts_with("nan")
                || f.starts_with("short")
                || f.starts_with("three")
                || f.starts_with("zero_")
                || *f == "half_ref.png",
            "unexpected file left behind: {f}"
        );
    }
}
