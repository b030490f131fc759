//! ISMRMRD raw data (one acquisition per readout line, as `siemens_to_ismrmrd` writes it)
//! assembled into k-space: against the k-space the h5py writer placed
//! (`tests/ismrmrd/make_raw.py`): lines on their columns, averages averaged, calibration lines
//! kept, navigators skipped, prewhitened with the noise scan's covariance (against NumPy's
//! Cholesky), the noise scan's level; files of several images (repetitions, contrasts) read
//! one at a time; a 3-D encoding read as slices (against NumPy's FFT along the partitions);
//! files written by the ISMRMRD project's own Python library (`tests/ismrmrd/make_official.py`);
//! then through the CLI (`msm info`, `msm recon`), and bad files.

mod common;

use common::{fails, h5py_fixtures, ok, python_fixtures, s};
use msm::io::fastmri::{is_raw, RawOptions, RawScan, Selection};
use msm::io::npy;
use msm::C32;
use ndarray::Array4;
use std::path::Path;

/// Asserts that every slice of `scan` equals the `(slices, coils, H, W)` k-space in `expected`
/// within `tolerance` (largest entry difference).
fn assert_assembled(scan: &RawScan, expected: &Path, tolerance: f32) {
    let expected: Array4<C32> = npy::read_npy_as(expected).unwrap();
    for (k, want) in expected.outer_iter().enumerate() {
        let got = scan.slice_kspace(k).unwrap();
        let err = got
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).norm())
            .fold(0.0f32, f32::max);
        assert!(err < tolerance, "slice {k} differs by {err}");
    }
}

#[test]
fn raw_acquisitions_assemble_into_the_kspace_they_came_from() {
    let Some(dir) = h5py_fixtures("tests/ismrmrd/make_raw.py", "the ISMRMRD raw test") else {
        return;
    };
    let d = dir.path();
    let raw = d.join("raw.h5");
    assert!(is_raw(&raw));
    let scan = RawScan::open(&raw).unwrap();
    assert_eq!(scan.num_slices(), 2);
    assert_eq!(scan.coils(), 3);
    assert_eq!(scan.kspace_size(), (16, 12));
    assert_eq!(scan.recon_size(), (8, 12));
    assert_eq!(scan.skipped(), 1, "the navigator");
    assert_assembled(&scan, &d.join("raw_expected.npy"), 2e-5);
    let noise: ndarray::Array1<f32> = npy::read_npy_as(d.join("raw_noise.npy")).unwrap();
    let (got, want) = (scan.noise_std().unwrap(), f64::from(noise[0]));
    assert!((got - want).abs() < 1e-5 * want, "{got} vs {want}");
    // The coupled channels of the noise scan: the k-space above is prewhitened (NumPy's
    // Cholesky gave the reference), and the covariance was far from white.
    assert!(scan.whitening().unwrap().condition() > 2.0);
    assert!(scan.prewhitened());
    // Without prewhitening: the k-space as recorded, and the same noise level.
    let as_recorded = RawOptions {
        prewhiten: false,
        ..RawOptions::default()
    };
    let recorded = RawScan::open_with(&raw, &as_recorded).unwrap();
    assert!(!recorded.prewhitened());
    assert_eq!(recorded.noise_std(), scan.noise_std());
    assert_assembled(&recorded, &d.join("raw_expected_as_recorded.npy"), 1e-6);
    assert!(scan
        .slice_kspace(2)
        .unwrap_err()
        .to_string()
        .contains("out of range"));

    let e = RawScan::open(d.join("raw_reversed.h5"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("reversed readout"), "{e}");
    let e = RawScan::open(d.join("raw_offcentre.h5"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("falls outside the 12 columns"), "{e}");
    // A fastMRI file is not raw data.
    let other = h5py_fixtures("tests/volume/make_files.py", "the ISMRMRD raw test").unwrap();
    assert!(!is_raw(&other.path().join("scan.h5")));
}

/// Opens `path` reading the given selection, prewhitened.
fn open_selecting(path: &Path, select: Selection) -> msm::Result<RawScan> {
    RawScan::open_with(
        path,
        &RawOptions {
            select,
            ..RawOptions::default()
        },
    )
}

/// Opens `path` reading one repetition.
fn open_repetition(path: &Path, repetition: u64) -> msm::Result<RawScan> {
    let select = Selection {
        repetition: Some(repetition),
        ..Selection::default()
    };
    open_selecting(path, select)
}

/// Opens `path` reading one contrast.
fn open_contrast(path: &Path, contrast: u64) -> msm::Result<RawScan> {
    let select = Selection {
        contrast: Some(contrast),
        ..Selection::default()
    };
    open_selecting(path, select)
}

#[test]
fn a_file_of_several_images_is_read_one_image_at_a_time() {
    let Some(dir) = h5py_fixtures("tests/ismrmrd/make_raw.py", "the ISMRMRD raw test") else {
        return;
    };
    let d = dir.path();
    let multi = d.join("raw_multi.h5");
    // Two repetitions and none chosen: refused, with the values and the option named, rather
    // than averaged into one k-space.
    let e = RawScan::open(&multi).unwrap_err().to_string();
    assert!(
        e.contains("raw_multi.h5") && e.contains("repetition 0, 1") && e.contains("--repetition N"),
        "{e}"
    );
    // The images the file holds, each with every counter given.
    let images = RawScan::images(&multi).unwrap();
    let reps: Vec<[Option<u64>; 4]> = images.iter().map(Selection::values).collect();
    assert_eq!(
        reps,
        [
            [Some(0), Some(0), Some(0), Some(0)],
            [Some(0), Some(0), Some(1), Some(0)]
        ]
    );
    // Each repetition alone is the k-space its lines hold.
    let first = open_repetition(&multi, 0).unwrap();
    assert_assembled(&first, &d.join("raw_expected.npy"), 2e-5);
    assert_eq!(first.unselected(), 16, "the second repetition's lines");
    let second = open_repetition(&multi, 1).unwrap();
    assert_assembled(&second, &d.join("raw_multi_expected.npy"), 2e-5);
    assert_eq!(
        second.unselected(),
        17,
        "the first repetition's lines, the average too"
    );
    let rep = &second.counters()[2];
    assert_eq!(
        (rep.name, rep.values.as_slice(), rep.selected),
        ("repetition", &[0, 1][..], 1)
    );
    assert_eq!(second.noise_std(), first.noise_std());
    // A value the file does not hold.
    let e = open_repetition(&multi, 2).unwrap_err().to_string();
    assert!(
        e.contains("no imaging line of repetition 2") && e.contains("repetition 0, 1"),
        "{e}"
    );

    // A line of a second encoding (as a separately encoded reference scan): not read.
    let encodings = RawScan::open(d.join("raw_encodings.h5")).unwrap();
    assert_assembled(&encodings, &d.join("raw_expected.npy"), 2e-5);
    assert_eq!(encodings.unselected(), 1);

    // One line of another contrast: refused unless a contrast is chosen; contrast 0 is raw.h5.
    let contrast = d.join("raw_contrast.h5");
    let e = RawScan::open(&contrast).unwrap_err().to_string();
    assert!(
        e.contains("raw_contrast.h5") && e.contains("contrast 0, 1"),
        "{e}"
    );
    let zero = open_contrast(&contrast, 0).unwrap();
    assert_assembled(&zero, &d.join("raw_expected.npy"), 2e-5);
    assert_eq!(zero.unselected(), 1);
    // Contrast 1 is one line, of slice 0: a one-slice scan with that column alone.
    let one = open_contrast(&contrast, 1).unwrap();
    assert_eq!(one.num_slices(), 1);
    let k = one.slice_kspace(0).unwrap();
    let filled: Vec<usize> = (0..12)
        .filter(|&c| {
            k.slice(ndarray::s![.., .., c])
                .iter()
                .any(|v| v.norm() > 0.0)
        })
        .collect();
    assert_eq!(
        filled,
        [3],
        "line 3, with the centre counter 6 on column W / 2 = 6"
    );

    // Through the CLI: `msm info` names the counter and what it read, `recon` reads the
    // repetition asked for, and refuses to guess.
    let out = ok(&["info", s(&multi), "--json", "--repetition", "1"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["images"]["repetition"],
        serde_json::json!({"values": [0, 1], "selected": 1})
    );
    assert_eq!(v["unselected_acquisitions"], 17);
    let out = ok(&["info", s(&multi), "--repetition", "1"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("repetition: reading 1 of 0, 1"), "{text}");
    fails(&["info", s(&multi)], &["raw_multi.h5", "--repetition N"]);
    let img = d.join("rep1.npy");
    let zf = |input: &Path, extra: &[&str]| {
        let mut args = vec![
            "recon",
            s(input),
            s(&img),
            "--method",
            "zero-filled",
            "--maps-method",
            "ratio",
        ];
        args.extend_from_slice(extra);
        ok(&args);
        npy::read_npy_as::<C32, ndarray::Ix3>(&img).unwrap()
    };
    let from_multi = zf(&multi, &["--repetition", "1"]);
    let from_first = zf(&multi, &["--repetition", "0"]);
    let from_raw = zf(&d.join("raw.h5"), &[]);
    assert_eq!(from_first, from_raw, "repetition 0 is raw.h5's data");
    assert_ne!(from_multi, from_raw);
    fails(
        &[
            "recon",
            s(&multi),
            s(&d.join("none.npy")),
            "--method",
            "zero-filled",
        ],
        &["repetition 0, 1"],
    );
    assert!(!d.join("none.npy").exists());
}

#[test]
fn a_3d_encoding_is_read_as_2d_slices() {
    let Some(dir) = h5py_fixtures("tests/ismrmrd/make_raw.py", "the ISMRMRD raw test") else {
        return;
    };
    let d = dir.path();
    let vol = d.join("raw_3d.h5");
    // Against NumPy: the partitions placed by their second phase-encode counter (the first
    // zero-filled), an inverse FFT along them, the recon matrix's central 4 kept.
    let scan = RawScan::open(&vol).unwrap();
    assert_eq!(scan.num_slices(), 4);
    assert_assembled(&scan, &d.join("raw_3d_expected.npy"), 2e-5);
    let p = scan.encoding_3d().unwrap();
    assert_eq!((p.encoded, p.kept, p.filled), (6, 4, 5.0));
    // The noise level of the slices: the scan's, less the zero-filled partition's share.
    let two_d = RawScan::open(d.join("raw.h5")).unwrap();
    let (got, want) = (
        scan.noise_std().unwrap(),
        two_d.noise_std().unwrap() * (5.0f64 / 6.0).sqrt(),
    );
    assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
    assert!(two_d.encoding_3d().is_none());
    // Undersampled along both phase encodes: refused, naming the partition.
    let e = RawScan::open(d.join("raw_3d_mixed.h5"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("raw_3d_mixed.h5") && e.contains("partition 2 holds other phase-encode lines"),
        "{e}"
    );
    let out = ok(&["info", s(&vol), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["slices"], 4);
    assert_eq!(
        v["encoding_3d"],
        serde_json::json!({"partitions": 6, "acquired_per_slab": 5.0, "slices_per_slab": 4})
    );
}

#[test]
fn files_the_ismrmrd_library_writes_read_as_written() {
    // The ISMRMRD project's own Python library as the writer: its compound types, a chunked
    // `/dataset/data` grown one acquisition at a time, its own header XML.
    let Some(dir) = python_fixtures(
        "tests/ismrmrd/make_official.py",
        &["ismrmrd", "h5py", "numpy"],
        "the ISMRMRD-library test",
    ) else {
        return;
    };
    let d = dir.path();
    let file = d.join("official.h5");
    for repetition in 0..2u64 {
        let scan = open_repetition(&file, repetition).unwrap();
        assert_eq!(scan.num_slices(), 2);
        assert_eq!(scan.coils(), 4);
        assert_eq!(scan.kspace_size(), (32, 24));
        assert_eq!(scan.recon_size(), (16, 24));
        assert!(scan.prewhitened());
        assert_assembled(
            &scan,
            &d.join(format!("official_rep{repetition}.npy")),
            2e-5,
        );
    }
    let e = RawScan::open(&file).unwrap_err().to_string();
    assert!(e.contains("repetition 0, 1"), "{e}");
    let vol = RawScan::open(d.join("official_3d.h5")).unwrap();
    assert_eq!(vol.num_slices(), 4);
    assert_assembled(&vol, &d.join("official_3d.npy"), 2e-5);
    // And through a reconstruction: both slices of repetition 1 on the recon grid.
    let img = d.join("zf.npy");
    ok(&[
        "recon",
        s(&file),
        s(&img),
        "--repetition",
        "1",
        "--method",
        "zero-filled",
        "--maps-method",
        "ratio",
    ]);
    let out: ndarray::Array3<C32> = npy::read_npy_as(&img).unwrap();
    assert_eq!(out.dim(), (2, 16, 24));
}

#[test]
fn the_cli_reads_raw_data_as_a_volume() {
    let Some(dir) = h5py_fixtures("tests/ismrmrd/make_raw.py", "the ISMRMRD raw test") else {
        return;
    };
    let d = dir.path();
    let raw = d.join("raw.h5");
    let out = ok(&["info", s(&raw), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "ISMRMRD raw data");
    assert_eq!(v["slices"], 2);
    assert_eq!(v["kspace_size"], serde_json::json!([16, 12]));
    assert_eq!(v["recon_size"], serde_json::json!([8, 12]));
    assert_eq!(v["per_slice"][0]["kept_columns"], 8);
    assert!(v["noise_measurement_std"].as_f64().unwrap() > 0.05);
    assert_eq!(v["prewhitened"], true);
    let out = ok(&["info", s(&raw), "--json", "--no-prewhiten"]);
    let kept: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(kept["prewhitened"], false);
    assert_eq!(kept["noise_measurement_std"], v["noise_measurement_std"]);
    assert!(v["noise_condition"].as_f64().unwrap() > 2.0);
    assert_eq!(v["skipped_acquisitions"], 1);
    // Zero-filled reconstruction of both slices on the recon grid.
    let img = d.join("zf.npy");
    ok(&[
        "recon",
        s(&raw),
        s(&img),
        "--method",
        "zero-filled",
        "--maps-method",
        "ratio",
    ]);
    let vol: ndarray::Array3<C32> = npy::read_npy_as(&img).unwrap();
    assert_eq!(vol.dim(), (2, 8, 12));
    // The same k-space in fastMRI's layout reconstructs to the same volume.
    let other = d.join("zf_fastmri.npy");
    let fastmri = d.join("raw_as_fastmri.h5");
    ok(&[
        "recon",
        s(&fastmri),
        s(&other),
        "--method",
        "zero-filled",
        "--maps-method",
        "ratio",
    ]);
    let same: ndarray::Array3<C32> = npy::read_npy_as(&other).unwrap();
    let err = vol
        .iter()
        .zip(same.iter())
        .map(|(a, b)| (a - b).norm())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-5, "raw and fastMRI layouts differ by {err}");
    fails(
        &["info", s(&d.join("raw_contrast.h5"))],
        &["raw_contrast.h5", "contrast 0, 1", "--contrast N"],
    );
    fails(
        &["metrics", s(&raw), s(&img)],
        &["raw.h5", "ISMRMRD raw data, which holds no reference image"],
    );
}
