//! `msm reconstruct` on fastMRI-layout `.h5` volumes and `msm ecalib`, end to end through the
//! binary: files written by h5py (`tests/volume/make_files.py`), a tiny ONNX model built here.
//! Covers the whole-volume outputs and their axis layout, the model-grid fit, resuming a killed
//! run to the same bytes, and bad input (clear error naming the file, exit code 1, no panic, no
//! output). Needs `python3` with `h5py` and `numpy` (CI installs them); without them each test
//! prints a note and returns, except on CI (environment variable `CI` set), where that fails.

mod common;

use common::{fails, h5py_fixtures, kill_after_a_part, ok, s, tiny_model};
use msm::io::fastmri::{detect_mask, FastMriFile};
use msm::io::{cfl, nifti, npy};
use msm::mask::Mask;
use msm::volume::Parts;
use msm::C32;
use ndarray::{Array2, Array3, Axis};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary folder with the files of `make_files.py` and the tiny 32 x 32 model, or `None`
/// (with a note) when h5py is not installed.
fn fixtures() -> Option<(tempfile::TempDir, PathBuf)> {
    let dir = h5py_fixtures("tests/volume/make_files.py", ".h5 volume test")?;
    let model = dir.path().join("tiny.onnx");
    tiny_model(&model, 32, true);
    Some((dir, model))
}

/// The complex volume of a `.cfl` written by `reconstruct`, as `(slices, H, W)`.
fn read_cfl_volume(path: &Path) -> Array3<C32> {
    let a = cfl::read_array(path).unwrap();
    let (h, w, n) = (a.dim(0), a.dim(1), a.dim(13));
    assert_eq!(
        a.data.len(),
        h * w * n,
        "only READ, PHS1 and SLICE are non-trivial"
    );
    Array3::from_shape_fn((n, h, w), |(k, r, c)| a.data[r + h * c + h * w * k])
}

/// Pearson correlation of two images' values.
fn correlation(a: &Array2<f32>, b: &Array2<f32>) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|&v| v as f64).sum::<f64>() / n,
        b.iter().map(|&v| v as f64).sum::<f64>() / n,
    );
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

/// Arguments of a small, fast volume reconstruction.
fn recon_args<'a>(model: &'a Path, steps: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "reconstruct",
        "--model",
        s(model),
        "--steps",
        steps,
        "--seed",
        "3",
    ];
    args.extend_from_slice(rest);
    args
}

#[test]
fn h5_volume_reconstructs_to_nifti_and_cfl_on_the_recon_grid() {
    let Some((dir, model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    let scan = d.join("scan.h5");
    let nii = d.join("vol.nii.gz");
    let cfl_out = d.join("vol.cfl");
    // 60 steps: with the toy denoiser the chain needs some steps to settle on the data.
    let out = ok(&recon_args(
        &model,
        "60",
        &[s(&scan), s(&nii), "--also", s(&cfl_out)],
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    // The readout oversampling is removed to reach the model's 32 rows, and said so.
    assert!(err.contains("from 40 to 32 rows"), "{err}");
    assert!(err.contains("slice 5 done"), "{err}");
    assert!(
        !Parts::dir_for(&nii).exists(),
        "parts folder removed after assembly"
    );

    let complex = read_cfl_volume(&cfl_out);
    assert_eq!(complex.dim(), (6, 32, 32));
    let mag = nifti::read_nifti(&nii).unwrap();
    assert_eq!(
        mag.data.dim(),
        (32, 32, 6),
        "NIfTI [i, j, k] = (row, column, slice)"
    );
    for ((k, r, c), v) in complex.indexed_iter() {
        assert!((mag.data[(r, c, k)] - v.norm()).abs() <= 1e-5 * (1.0 + v.norm()));
    }
    // Each slice matches the file's fully sampled reference of the same slice (and not the
    // others: the slices are in the file's order).
    let rss = FastMriFile::open(&scan)
        .unwrap()
        .reconstruction_rss()
        .unwrap()
        .unwrap();
    for k in 0..6 {
        let got = complex.index_axis(Axis(0), k).mapv(|v| v.norm());
        let corr: Vec<f64> = (0..6)
            .map(|j| correlation(&got, &rss.index_axis(Axis(0), j).to_owned()))
            .collect();
        eprintln!("slice {k}: correlation with the references {corr:.4?}");
        assert!(corr[k] > 0.93, "slice {k}: {corr:?}");
        let best = (0..6).max_by(|&a, &b| corr[a].total_cmp(&corr[b])).unwrap();
        assert_eq!(
            best, k,
            "slice {k} looks most like reference {best}: {corr:?}"
        );
    }

    // A subset of the slices, run on its own, gives the same slices bit for bit (each slice is
    // seeded from the seed and its index, not from the run order).
    let sub = d.join("sub.npy");
    ok(&recon_args(
        &model,
        "60",
        &["--quiet", "--slices", "2..4", s(&scan), s(&sub)],
    ));
    let sub: Array3<C32> = npy::read_npy_as(&sub).unwrap();
    assert_eq!(sub.dim(), (2, 32, 32));
    for k in 0..2 {
        assert_eq!(
            sub.index_axis(Axis(0), k),
            complex.index_axis(Axis(0), k + 2)
        );
    }
}

#[test]
fn a_volume_writes_the_samples_uncertainty_beside_their_mean() {
    let Some((dir, model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    let scan = d.join("scan.h5");
    let (mean, std) = (d.join("mean.npy"), d.join("std.npy"));
    let two = ["--quiet", "--samples", "2"];
    let run = |rest: &[&str]| {
        let args: Vec<&str> = two.iter().chain(rest).copied().collect();
        ok(&recon_args(&model, "20", &args));
    };
    run(&["--std", s(&std), s(&scan), s(&mean)]);
    // The std changes nothing in the mean.
    let alone = d.join("alone.npy");
    run(&[s(&scan), s(&alone)]);
    assert_eq!(
        std::fs::read(&mean).unwrap(),
        std::fs::read(&alone).unwrap()
    );
    // float32 (slices, H, W) on the output grid: the spread of two different samples.
    let map: Array3<f32> = npy::read_npy_as(&std).unwrap();
    assert_eq!(map.dim(), (6, 32, 32));
    assert!(map.iter().all(|v| v.is_finite() && *v >= 0.0));
    for k in 0..6 {
        let slice = map.index_axis(Axis(0), k);
        assert!(slice.iter().any(|&v| v > 0.0), "slice {k}: all zero");
    }
    // A subset of the slices as NIfTI: the same maps, slice for slice.
    let sub = d.join("sub_std.nii");
    run(&[
        "--slices",
        "2..4",
        "--std",
        s(&sub),
        s(&scan),
        s(&d.join("sub.npy")),
    ]);
    let sub = nifti::read_nifti(&sub).unwrap();
    assert_eq!(sub.data.dim(), (32, 32, 2));
    for ((r, c, k), v) in sub.data.indexed_iter() {
        assert!((v - map[(k + 2, r, c)]).abs() <= 1e-6 * (1.0 + v.abs()));
    }
    // One sample has no spread.
    let one = d.join("one_std.npy");
    ok(&recon_args(
        &model,
        "20",
        &[
            "--quiet",
            "--slices",
            "0",
            "--std",
            s(&one),
            s(&scan),
            s(&d.join("one.npy")),
        ],
    ));
    let one: Array3<f32> = npy::read_npy_as(&one).unwrap();
    assert!(one.iter().all(|&v| v == 0.0));
}

/// Runs `msm` with `RAYON_NUM_THREADS=threads`, asserting success; returns its stderr.
fn ok_with_threads(args: &[&str], threads: usize) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_msm"))
        .args(args)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "msm {args:?} failed: {err}");
    err
}

#[test]
fn slices_in_parallel_give_the_same_bytes_as_one_after_another() {
    let Some((dir, model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    let scan = d.join("scan.h5");
    let (one, three) = (d.join("one.npy"), d.join("three.npy"));
    // w = 1 partial score: with 3 threads there are more cores than partial scores, so the
    // slices run in parallel; with 1 thread they run one after another.
    let err1 = ok_with_threads(
        &recon_args(&model, "20", &["--partials", "1", s(&scan), s(&one)]),
        1,
    );
    let err3 = ok_with_threads(
        &recon_args(&model, "20", &["--partials", "1", s(&scan), s(&three)]),
        3,
    );
    assert!(!err1.contains("slices across"), "{err1}");
    assert!(err3.contains("6 slices across 3 threads"), "{err3}");
    assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&three).unwrap());
}

#[test]
fn h5_without_header_or_mask_and_given_maps_or_ratio_maps() {
    let Some((dir, model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    let plain = d.join("plain.h5");
    // Masks detected per slice, ratio maps: the k-space grid is the output grid.
    let out = d.join("ratio.npy");
    ok(&recon_args(
        &model,
        "4",
        &["--quiet", "--maps-method", "ratio", s(&plain), s(&out)],
    ));
    let v: Array3<C32> = npy::read_npy_as(&out).unwrap();
    assert_eq!(v.dim(), (2, 32, 32));
    assert!(v.iter().all(|x| x.re.is_finite() && x.im.is_finite()));
    assert!(v.iter().any(|x| x.norm() > 0.0));

    // ESPIRiT maps of slice 1 by `msm ecalib`, then used for both slices; the maps equal the
    // library's on the same slice and detected mask.
    let maps = d.join("maps.npy");
    let ev = d.join("ev.npy");
    ok(&[
        "ecalib",
        "--slice",
        "1",
        "--eigenvalues",
        s(&ev),
        s(&plain),
        s(&maps),
    ]);
    let got: Array3<C32> = npy::read_npy_as(&maps).unwrap();
    let k = FastMriFile::open(&plain).unwrap().slice_kspace(1).unwrap();
    let mask = Mask::Columns(detect_mask(k.view()));
    let want = msm::coils::espirit(k.view(), Some(&mask), &Default::default()).unwrap();
    assert_eq!(got, want);
    let ev: Array2<f32> = npy::read_npy_as(&ev).unwrap();
    assert_eq!(ev.dim(), (32, 32));
    let with_maps = d.join("given.cfl");
    ok(&recon_args(
        &model,
        "4",
        &["--quiet", s(&plain), s(&maps), s(&with_maps)],
    ));
    assert_eq!(read_cfl_volume(&with_maps).dim(), (2, 32, 32));

    // Ratio maps through ecalib from a one-slice .cfl: unit norm over the coils.
    let ksp = d.join("slice0");
    cfl::write_coils(&ksp, &k).unwrap();
    let ratio = d.join("ratio_maps.cfl");
    ok(&["ecalib", "--method", "ratio", s(&ksp), s(&ratio)]);
    let r = cfl::read_coils(&ratio).unwrap();
    let norms = r.map_axis(Axis(0), |c| c.iter().map(|v| v.norm_sqr()).sum::<f32>());
    assert!(norms.iter().all(|&n| (n - 1.0).abs() < 1e-4), "{norms:?}");
}

#[test]
fn npy_and_cfl_stacks_reconstruct_as_the_h5_file_does() {
    let Some((dir, model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    let plain = d.join("plain.h5");
    let file = FastMriFile::open(&plain).unwrap();
    let slices: Vec<Array3<C32>> = (0..2).map(|i| file.slice_kspace(i).unwrap()).collect();
    let views: Vec<_> = slices.iter().map(|k| k.view()).collect();
    let stack = ndarray::stack(Axis(0), &views).unwrap();
    let (n, c, h, w) = stack.dim();
    // The same slices as a NumPy (slices, coils, H, W) and a BART [H, W, 1, coils] stack with
    // slices along dimension 13, written element by element in BART's column-major order.
    let npy_stack = d.join("stack.npy");
    npy::write_npy(&npy_stack, &stack).unwrap();
    let cfl_stack = d.join("stack");
    let mut data = vec![C32::new(0.0, 0.0); n * c * h * w];
    for ((k, ci, r, col), v) in stack.indexed_iter() {
        data[r + h * col + h * w * ci + h * w * c * k] = *v;
    }
    let mut dims = [1usize; 14];
    (dims[0], dims[1], dims[3], dims[13]) = (h, w, c, n);
    cfl::write_array(&cfl_stack, &dims, &data).unwrap();

    // Masks detected per slice and maps estimated per slice, as for the .h5 file: the same
    // bytes, slice for slice.
    let run = |input: &Path, out: &str| -> Vec<u8> {
        let out = d.join(out);
        ok(&recon_args(&model, "3", &["--quiet", s(input), s(&out)]));
        std::fs::read(&out).unwrap()
    };
    let from_h5 = run(&plain, "h5.npy");
    assert_eq!(
        run(&npy_stack, "npy.npy"),
        from_h5,
        "the .npy stack differs"
    );
    assert_eq!(
        run(&cfl_stack, "cfl.npy"),
        from_h5,
        "the .cfl stack differs"
    );
    // The volume options apply to stacks too.
    let one = d.join("one.npy");
    ok(&recon_args(
        &model,
        "3",
        &["--quiet", "--slices", "1", s(&npy_stack), s(&one)],
    ));
    let v: Array3<C32> = npy::read_npy_as(&one).unwrap();
    assert_eq!(v.dim(), (1, 32, 32));
    // Compressed to 2 virtual coils per slice (maps estimated on them), and more virtual coils
    // than coils refused before any work.
    let cc = d.join("cc.npy");
    ok(&recon_args(
        &model,
        "3",
        &["--quiet", "--virtual-coils", "2", s(&npy_stack), s(&cc)],
    ));
    let v: Array3<C32> = npy::read_npy_as(&cc).unwrap();
    assert_eq!(v.dim(), (2, 32, 32));
    assert_ne!(std::fs::read(&cc).unwrap(), from_h5);
    fails(
        &recon_args(&model, "3", &["--virtual-coils", "4", s(&plain), s(&cc)]),
        &["plain.h5", "--virtual-coils 4", "3 coils"],
    );
    assert!(!Parts::dir_for(&cc).exists());
    // ecalib takes a slice of a stack as of the .h5 file.
    let (from_stack, from_file) = (d.join("m_stack.npy"), d.join("m_h5.npy"));
    ok(&["ecalib", "--slice", "1", s(&cfl_stack), s(&from_stack)]);
    ok(&["ecalib", "--slice", "1", s(&plain), s(&from_file)]);
    assert_eq!(
        std::fs::read(&from_stack).unwrap(),
        std::fs::read(&from_file).unwrap()
    );
    // A stack whose maps do not fit is refused before any work, naming both files.
    let bad_maps = d.join("bad_maps.npy");
    npy::write_npy(&bad_maps, &Array3::<C32>::ones((2, 32, 32))).unwrap();
    fails(
        &recon_args(&model, "3", &[s(&npy_stack), s(&bad_maps), s(&one)]),
        &["bad_maps.npy", "stack.npy", "(2 or 1, 3, 32, 32)"],
    );
}

#[test]
fn recon_runs_every_slice_of_a_volume_as_on_one_slice() {
    let Some((dir, _model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    let plain = d.join("plain.h5");
    let vol = d.join("cg.npy");
    ok(&["recon", "--method", "cg-sense", s(&plain), s(&vol)]);
    let v: Array3<C32> = npy::read_npy_as(&vol).unwrap();
    assert_eq!(v.dim(), (2, 32, 32));
    // Each slice is what the one-slice command gives with that slice's k-space and ESPIRiT
    // maps (msm ecalib --slice: the estimate the volume run makes), bit for bit.
    let file = FastMriFile::open(&plain).unwrap();
    for i in 0..2 {
        let (ksp, maps, one) = (
            d.join(format!("k{i}")),
            d.join(format!("m{i}.npy")),
            d.join(format!("one{i}.npy")),
        );
        cfl::write_coils(&ksp, &file.slice_kspace(i).unwrap()).unwrap();
        ok(&["ecalib", "--slice", &i.to_string(), s(&plain), s(&maps)]);
        ok(&["recon", "--method", "cg-sense", s(&ksp), s(&maps), s(&one)]);
        let one: Array2<C32> = npy::read_npy_as(&one).unwrap();
        assert_eq!(v.index_axis(Axis(0), i), one, "slice {i}");
    }
    // The recon size of an .h5 file is the output grid (40 x 32 k-space, 32 x 32 recon), as for
    // msm reconstruct; --slices selects; options that only estimate maps need no maps file.
    let scan = d.join("scan.h5");
    let zf = d.join("zf.nii");
    ok(&[
        "recon",
        "--method",
        "zero-filled",
        "--slices",
        "2..5",
        s(&scan),
        s(&zf),
    ]);
    let nii = msm::io::nifti::read_nifti(&zf).unwrap();
    assert_eq!(nii.data.dim(), (32, 32, 3));
    fails(
        &[
            "recon",
            "--slices",
            "1",
            s(&d.join("k0")),
            s(&d.join("m0.npy")),
            s(&zf),
        ],
        &["k0", "apply to volumes"],
    );
}

#[test]
fn a_2d_pattern_mask_reconstructs_each_slice_of_a_volume_as_on_one_slice() {
    let Some((dir, model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    let file = FastMriFile::open(d.join("plain.h5")).unwrap();
    // A 2-D pattern: a 12 x 12 centre and two thirds of the other entries.
    let pattern = Array2::from_shape_fn((32, 32), |(r, c)| {
        let centre = (10..22).contains(&r) && (10..22).contains(&c);
        f32::from(u8::from(centre || (r * 7 + c * 3) % 3 != 0))
    });
    let mask = d.join("pattern.npy");
    npy::write_npy(&mask, &pattern).unwrap();
    let slices: Vec<Array3<C32>> = (0..2).map(|i| file.slice_kspace(i).unwrap()).collect();
    let views: Vec<_> = slices.iter().map(|k| k.view()).collect();
    let stack = d.join("stack.npy");
    npy::write_npy(&stack, &ndarray::stack(Axis(0), &views).unwrap()).unwrap();
    // The volume (maps estimated per slice from the pattern's centre) against the one-slice
    // commands with the same mask, bit for bit.
    let vol = d.join("cg.npy");
    ok(&["recon", "--mask", s(&mask), s(&stack), s(&vol)]);
    let v: Array3<C32> = npy::read_npy_as(&vol).unwrap();
    for (i, k) in slices.iter().enumerate() {
        let (ksp, maps, one) = (
            d.join(format!("k{i}.npy")),
            d.join(format!("m{i}.npy")),
            d.join(format!("one{i}.npy")),
        );
        npy::write_npy(&ksp, k).unwrap();
        ok(&["ecalib", "--mask", s(&mask), s(&ksp), s(&maps)]);
        ok(&["recon", "--mask", s(&mask), s(&ksp), s(&maps), s(&one)]);
        let one: Array2<C32> = npy::read_npy_as(&one).unwrap();
        assert_eq!(v.index_axis(Axis(0), i), one, "slice {i}");
    }
    // Under a 2-D pattern no axis is fully sampled, so the rows cannot be padded to the
    // model's: a 24-row stack and the 32 x 32 model are refused, with both grids.
    let short: Vec<_> = slices
        .iter()
        .map(|k| k.slice(ndarray::s![.., 4..28, ..]))
        .collect();
    let short_stack = d.join("short.npy");
    npy::write_npy(&short_stack, &ndarray::stack(Axis(0), &short).unwrap()).unwrap();
    let short_mask = d.join("short_pattern.npy");
    npy::write_npy(
        &short_mask,
        &pattern.slice(ndarray::s![4..28, ..]).to_owned(),
    )
    .unwrap();
    let out = d.join("short_out.npy");
    fails(
        &recon_args(
            &model,
            "3",
            &["--mask", s(&short_mask), s(&short_stack), s(&out)],
        ),
        &["short.npy", "2-D pattern", "24x32", "32x32"],
    );
    assert!(!out.exists());
}

#[test]
fn metrics_scores_a_volume_against_the_files_reference_slice_by_slice() {
    let Some((dir, _model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    let scan = d.join("scan.h5");
    let vol = d.join("cg.npy");
    ok(&["recon", s(&scan), s(&vol)]);
    let json = |args: &[&str]| -> serde_json::Value {
        let out = ok(args);
        serde_json::from_slice(&out.stdout).expect("metrics --json is JSON")
    };
    let all = json(&["metrics", "--scale", "--json", s(&scan), s(&vol)]);
    let rows = all["slices"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    // Each row is what the one-image command gives for that slice: the file's
    // reconstruction_rss slice against the volume's slice (scored as magnitude, the reference
    // being real).
    let rss = FastMriFile::open(&scan)
        .unwrap()
        .reconstruction_rss()
        .unwrap()
        .unwrap();
    let images: Array3<C32> = npy::read_npy_as(&vol).unwrap();
    let mut sum = 0.0;
    for (k, row) in rows.iter().enumerate() {
        let (r, x) = (d.join(format!("r{k}.npy")), d.join(format!("x{k}.npy")));
        npy::write_npy(&r, &rss.index_axis(Axis(0), k).to_owned()).unwrap();
        npy::write_npy(&x, &images.index_axis(Axis(0), k).to_owned()).unwrap();
        let one = json(&["metrics", "--scale", "--json", s(&r), s(&x)]);
        assert_eq!(row["slice"].as_u64(), Some(k as u64));
        for key in ["psnr", "ssim", "ssim_object", "nmse"] {
            assert_eq!(row[key], one[key], "slice {k}, {key}");
        }
        sum += one["psnr"].as_f64().unwrap();
        // Against a real reference, a complex image scores as its magnitude.
        let m = d.join(format!("m{k}.npy"));
        npy::write_npy(&m, &images.index_axis(Axis(0), k).mapv(|v| v.norm())).unwrap();
        let mag = json(&["metrics", "--scale", "--json", s(&r), s(&m)]);
        assert_eq!(mag["psnr"], one["psnr"], "slice {k}");
    }
    let mean = all["psnr"]["mean"].as_f64().unwrap();
    assert!((mean - sum / 6.0).abs() < 1e-5, "{mean} vs {}", sum / 6.0);
    // A volume of a subset of slices says which with --slices; a count that does not match,
    // and an .h5 reference without reconstruction_rss, are errors naming the file.
    let part = d.join("part.nii");
    ok(&["recon", "--slices", "2..4", s(&scan), s(&part)]);
    let two = json(&["metrics", "--json", "--slices", "2..4", s(&scan), s(&part)]);
    assert_eq!(two["slices"][1]["slice"].as_u64(), Some(3));
    fails(
        &["metrics", s(&scan), s(&part)],
        &["part.nii", "holds 2 slices", "--slices"],
    );
    fails(
        &["metrics", s(&d.join("plain.h5")), s(&part)],
        &["plain.h5", "reconstruction_rss"],
    );
}

#[test]
fn recon_size_lets_a_file_without_one_fit_the_model() {
    let Some((dir, model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    // tall.h5: 48 x 32 k-space and no header, so its whole 48-row image is the output, which
    // the 32-row model cannot hold; stated as 32 x 32, the readout is cropped to the model.
    let tall = d.join("tall.h5");
    let out = d.join("tall.npy");
    fails(
        &recon_args(&model, "3", &["--quiet", s(&tall), s(&out)]),
        &["tall.h5", "at least 48 rows"],
    );
    ok(&recon_args(
        &model,
        "3",
        &["--quiet", "--recon-size", "32x32", s(&tall), s(&out)],
    ));
    let v: Array3<C32> = npy::read_npy_as(&out).unwrap();
    assert_eq!(v.dim(), (1, 32, 32));
    // msm recon crops its output the same way; a size that is no HxW is refused by name.
    let cg = d.join("tall_cg.npy");
    ok(&["recon", "--recon-size", "40x32", s(&tall), s(&cg)]);
    let v: Array3<C32> = npy::read_npy_as(&cg).unwrap();
    assert_eq!(v.dim(), (1, 40, 32));
    let bad = common::msm(&["recon", "--recon-size", "32", s(&tall), s(&cg)]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("--recon-size") && err.contains("HxW"),
        "{err}"
    );
}

/// The arguments as `&str`s.
fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn killed_volume_run_resumes_to_the_same_bytes() {
    let Some((dir, model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    let scan = d.join("scan.h5");
    let (reference, ref_cfl) = (d.join("ref.nii"), d.join("ref.cfl"));
    let ref_std = d.join("ref_std.npy");
    let steps = "60";
    // Two samples and their uncertainty map, whose parts resume alongside the image's.
    let with = |out: &Path, also: &Path, std: &Path| -> Vec<String> {
        let rest = ["--quiet", s(&scan), s(out), "--also", s(also)];
        recon_args(&model, steps, &rest)
            .into_iter()
            .chain(["--samples", "2", "--std", s(std)])
            .map(String::from)
            .collect()
    };
    ok(&strs(&with(&reference, &ref_cfl, &ref_std)));

    let (out, out_cfl, out_std) = (d.join("run.nii"), d.join("run.cfl"), d.join("run_std.npy"));
    let parts = Parts::dir_for(&out);
    let owned = with(&out, &out_cfl, &out_std);
    let args = strs(&owned);
    let caught = kill_after_a_part(&args, &[], &parts);
    assert!(caught, "the run ended before its first slice was stored");
    let stored: Vec<String> = std::fs::read_dir(&parts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("slice-"))
        .collect();
    eprintln!(
        "killed with {} of 6 slices stored: {stored:?}",
        stored.len()
    );
    assert!(!stored.is_empty() && stored.len() < 6, "{stored:?}");
    assert!(
        !out.exists() && !out_cfl.exists(),
        "no volume from a killed run"
    );
    assert!(parts.join("manifest.txt").exists());
    assert!(Parts::dir_for(&out_std).join("manifest.txt").exists());

    // Other settings on the same parts: refused, naming what differs; nothing written.
    let mut other = args.clone();
    let seed = other.iter().position(|&a| a == "--seed").unwrap();
    other[seed + 1] = "4";
    fails(&other, &["seed: 3 -> 4", "--restart", "manifest.txt"]);
    assert!(!out.exists());

    // The rerun skips the stored slices and gives the uninterrupted run's bytes.
    let mut resume = args.clone();
    resume.retain(|&a| a != "--quiet");
    let log = ok(&resume);
    let err = String::from_utf8_lossy(&log.stderr);
    assert!(
        err.contains(&format!("{} of 6 slices already done", stored.len())),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&reference).unwrap()
    );
    let (a, b) = (cfl::pair_paths(&out_cfl), cfl::pair_paths(&ref_cfl));
    assert_eq!(std::fs::read(a.0).unwrap(), std::fs::read(b.0).unwrap());
    assert_eq!(std::fs::read(a.1).unwrap(), std::fs::read(b.1).unwrap());
    assert_eq!(
        std::fs::read(&out_std).unwrap(),
        std::fs::read(&ref_std).unwrap()
    );
    assert!(!parts.exists() && !Parts::dir_for(&out_std).exists());

    // --restart discards parts made with other settings and starts over.
    let caught = kill_after_a_part(&other, &[], &parts);
    assert!(caught && parts.join("manifest.txt").exists());
    let mut restart = args.clone();
    restart.push("--restart");
    ok(&restart);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&reference).unwrap()
    );

    // A run killed without --std resumes with it: the slices stored without their uncertainty
    // map are made again, so both volumes match the uninterrupted run.
    let std_at = args.iter().position(|&a| a == "--std").unwrap();
    let mut without = args.clone();
    without.drain(std_at..std_at + 2);
    let caught = kill_after_a_part(&without, &[], &parts);
    assert!(caught && !Parts::dir_for(&out_std).exists());
    ok(&args);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&reference).unwrap()
    );
    assert_eq!(
        std::fs::read(&out_std).unwrap(),
        std::fs::read(&ref_std).unwrap()
    );
}

#[test]
fn bad_h5_input_gives_clear_errors_and_no_output() {
    let Some((dir, model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    let out = d.join("out.nii");
    let check = |file: &str, extra: &[&str], needles: &[&str]| {
        let input = d.join(file);
        let mut args = recon_args(&model, "3", &["--quiet"]);
        args.extend_from_slice(extra);
        args.push(s(&input));
        args.push(s(&out));
        let mut all = vec![file];
        all.extend_from_slice(needles);
        fails(&args, &all);
        assert!(!out.exists(), "{file}: output written");
        assert!(!Parts::dir_for(&out).exists(), "{file}: parts folder left");
    };
    check("no_kspace.h5", &[], &["no `kspace` dataset", "image"]);
    check("real_kspace.h5", &[], &["real numbers", "expected complex"]);
    check("zero_coils.h5", &[], &["zero coils"]);
    check("bad_header.h5", &[], &["`ismrmrd_header` cannot be parsed"]);
    check(
        "small_acs.h5",
        &[],
        &["slice 0", "calibration region is", "kernel is 6x6"],
    );
    check("wide.h5", &[], &["32x30", "widths differ", "tiny.onnx"]);
    check("tall.h5", &[], &["48x32", "at least 48 rows"]);
    check(
        "scan.h5",
        &["--slices", "4..9"],
        &["--slices", "out of range", "6 slices"],
    );
    check("scan.h5", &["--slices", "3..3"], &["empty"]);
    check("missing.h5", &[], &["No such file"]);
    // Bad sampler settings fail before the volume's parts folder is made (a folder whose
    // manifest holds them would refuse the corrected rerun).
    let scan = d.join("scan.h5");
    for (extra, needles) in [
        (["--lambda", "3"], ["lambda must be in [0, 2]", "diverges"]),
        (["--partials", "0"], ["partial scores", "at least 1"]),
        (["--eta", "1.5"], ["eta must be in [0, 1]", "1.5"]),
    ] {
        let mut args = recon_args(&model, "3", &["--quiet"]);
        args.extend_from_slice(&extra);
        args.extend([s(&scan), s(&out)]);
        fails(&args, &needles);
        assert!(
            !Parts::dir_for(&out).exists(),
            "{extra:?}: parts folder left"
        );
    }
    // The same ACS problem through ecalib.
    let maps = d.join("maps.cfl");
    fails(
        &["ecalib", s(&d.join("small_acs.h5")), s(&maps)],
        &["small_acs.h5", "kernel is 6x6"],
    );
    fails(
        &["ecalib", "--slice", "7", s(&d.join("scan.h5")), s(&maps)],
        &["scan.h5", "slice 7 is out of range"],
    );
    assert!(!maps.exists() && !d.join("maps.hdr").exists());
    // A volume cannot be a PNG; a one-slice k-space needs maps.
    let png = d.join("vol.png");
    fails(
        &recon_args(&model, "3", &[s(&d.join("scan.h5")), s(&png)]),
        &["vol.png", "PNG cannot hold a volume"],
    );
    assert!(!png.exists());
    let ksp = d.join("one");
    cfl::write_coils(&ksp, &Array3::<C32>::ones((2, 32, 32))).unwrap();
    fails(
        &recon_args(&model, "3", &[s(&ksp), s(&d.join("one_out.npy"))]),
        &["coil maps are needed", "msm ecalib"],
    );
    let out = common::msm(&["reconstruct", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--maps-method"));
}

#[test]
fn coil_map_options_that_would_be_ignored_are_refused() {
    let Some((dir, model)) = fixtures() else {
        return;
    };
    let d = dir.path();
    let scan = d.join("scan.h5");
    let out = d.join("out.nii");
    let refused = |extra: &[&str], needles: &[&str]| {
        let mut args = recon_args(&model, "3", &["--quiet"]);
        args.extend_from_slice(extra);
        fails(&args, needles);
        assert!(!out.exists(), "{extra:?}: output written");
        assert!(
            !Parts::dir_for(&out).exists(),
            "{extra:?}: parts folder left"
        );
    };
    // An option of the other estimator.
    refused(
        &["--maps-method", "ratio", "-k", "8", s(&scan), s(&out)],
        &["-k/--kernel", "espirit", "estimated by ratio"],
    );
    refused(
        &["--ratio-threshold", "0.1", s(&scan), s(&out)],
        &[
            "--ratio-threshold",
            "ratio coil maps",
            "estimated by espirit",
        ],
    );
    // Estimation options beside a maps file.
    let maps = d.join("maps.npy");
    ok(&["ecalib", "--slice", "0", s(&scan), s(&maps)]);
    refused(
        &["--maps-method", "espirit", s(&scan), s(&maps), s(&out)],
        &["--maps-method", "the coil maps come from", "maps.npy"],
    );
    refused(
        &["-r", "16", s(&scan), s(&maps), s(&out)],
        &["-r/--calib", "the coil maps come from"],
    );
    // One-slice k-space: its maps always come from a file.
    let ksp = d.join("one.npy");
    let k = FastMriFile::open(&scan).unwrap().slice_kspace(0).unwrap();
    npy::write_npy(&ksp, &k).unwrap();
    refused(
        &["--maps-method", "ratio", s(&ksp), s(&maps), s(&out)],
        &["--maps-method", "one slice"],
    );
    refused(
        &["-c", "0.5", s(&ksp), s(&maps), s(&out)],
        &["-c/--crop", "the coil maps come from"],
    );
    // ecalib: ESPIRiT's options with ratio maps; nothing written.
    let ratio = d.join("ratio.npy");
    fails(
        &[
            "ecalib",
            "--method",
            "ratio",
            "-t",
            "0.01",
            s(&scan),
            s(&ratio),
        ],
        &["-t/--threshold", "estimated by ratio"],
    );
    assert!(!ratio.exists());
    // The options the estimator uses are taken.
    ok(&[
        "ecalib",
        "--method",
        "ratio",
        "-r",
        "12",
        s(&scan),
        s(&ratio),
    ]);
    ok(&["ecalib", "-k", "5", "-c", "0.5", s(&scan), s(&maps)]);
}
