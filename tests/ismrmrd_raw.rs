//! ISMRMRD raw data (one acquisition per readout line, as `siemens_to_ismrmrd` writes it)
//! assembled into k-space: against the k-space the h5py writer placed
//! (`tests/ismrmrd/make_raw.py`): lines on their columns, averages averaged, calibration lines
//! kept, navigators skipped, prewhitened with the noise scan's covariance (against NumPy's
//! Cholesky), the noise scan's level; files of several images (repetitions, contrasts) read
//! one at a time; a 3-D encoding read as slices (against NumPy's FFT along the partitions, or
//! along the readout when it is undersampled along both phase encodes, then reconstructed);
//! files written by the ISMRMRD project's own Python library (`tests/ismrmrd/make_official.py`);
//! then through the CLI (`msm info`, `msm recon`), and bad files. A series (`--repetition
//! all`): one output with an axis per counter, in NumPy, NIfTI (its header read here) and BART
//! (`bart slice` picking an image) layouts, each image as it reconstructs alone.

mod common;

use common::{
    fails, h5py_fixtures, kill_after_a_part, msm, ok, python_fixtures, s, tiny_model, zero_filled,
};
use msm::io::fastmri::{is_raw, RawOptions, RawScan, Selection, Slicing};
use msm::io::{cfl, npy};
use msm::volume::Parts;
use msm::C32;
use ndarray::{Array3, Array4, ArrayView3, Axis};
use std::path::Path;
use std::process::Command;

/// Asserts that every slice of `scan` equals the `(slices, coils, H, W)` k-space in `expected`
/// within `tolerance` (largest entry difference).
fn assert_assembled(scan: &RawScan, expected: &Path, tolerance: f32) {
    let expected: Array4<C32> = npy::read_npy_as(expected).unwrap();
    assert_eq!(scan.num_slices(), expected.dim().0);
    for (k, want) in expected.outer_iter().enumerate() {
        let err = max_diff(&scan.slice_kspace(k).unwrap(), want);
        assert!(err < tolerance, "slice {k} differs by {err}");
    }
}

/// Asserts that every slice of `scan` has the separate reference scan the NumPy file
/// `expected` holds `(slices, coils, H, W)`.
fn assert_references(scan: &RawScan, expected: &Path) {
    let expected: Array4<C32> = npy::read_npy_as(expected).unwrap();
    for (k, want) in expected.outer_iter().enumerate() {
        let got = scan
            .slice_reference(k)
            .expect("a reference for every slice");
        let err = max_diff(got, want);
        assert!(err < 2e-5, "slice {k}: the reference differs by {err}");
    }
}

/// The largest entry-wise difference of two arrays of one shape (asserted).
fn max_diff(got: &Array3<C32>, want: ArrayView3<C32>) -> f32 {
    assert_eq!(got.dim(), want.dim(), "shapes");
    got.iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).norm())
        .fold(0.0f32, f32::max)
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
        zero_filled(input, &img, extra);
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
    let out = ok(&["info", s(&vol), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["slices"], 4);
    assert_eq!(
        v["encoding_3d"],
        serde_json::json!({"partitions": 6, "acquired_per_slab": 5.0, "slices_per_slab": 4,
                           "slices_along": "partitions"})
    );
    // Undersampled along both phase encodes (partition 2 lacks line 4): read along the
    // readout, against NumPy: each of the recon matrix's central 8 readout positions a
    // (coils, lines, partitions) slice.
    let mixed = d.join("raw_3d_mixed.h5");
    let scan = RawScan::open(&mixed).unwrap();
    assert!(scan.along_readout());
    assert_eq!((scan.kspace_size(), scan.recon_size()), ((12, 6), (12, 4)));
    assert_assembled(&scan, &d.join("raw_3d_mixed_expected.npy"), 2e-5);
    let e = scan.encoding_3d().unwrap();
    assert_eq!(
        (e.encoded, e.kept, e.filled, e.slicing),
        (6, 8, 5.0, Slicing::Readout)
    );
    // Every entry keeps the scan's whole noise level: the readout is fully sampled.
    let (got, want) = (scan.noise_std().unwrap(), two_d.noise_std().unwrap());
    assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
    let out = ok(&["info", s(&mixed), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["slices"], 8);
    assert_eq!(v["kspace_size"], serde_json::json!([12, 6]));
    assert_eq!(v["encoding_3d"]["slices_along"], "readout");
    // 8 lines in each of partitions 1..5, less one: 39 of 72 entries.
    assert_eq!(v["per_slice"][0]["kept_entries"], 39);
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
    // The header's recon field of view (the library's 220 mm over 24 columns, 220 * 16 / 24
    // mm over 16 rows, 5 mm slices) gives the NIfTI output's voxel size.
    let voxel = [220.0 / 24.0, 220.0 / 24.0, 5.0];
    let info = ok(&["info", s(&file), "--json", "--repetition", "1"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    for (got, want) in v["voxel_size_mm"].as_array().unwrap().iter().zip(voxel) {
        assert!((got.as_f64().unwrap() - want).abs() < 1e-5, "{v}");
    }
    // The library's acquisition geometry (sagittal slices) places the output: rows along P,
    // columns along I, slices along L (RAS+), voxel (0, 0, 0) 8 rows and 12 columns from the
    // first slice's centre (-10, 4, 12) mm LPS.
    assert_eq!(v["placement"]["axes"], "PIL", "{v}");
    let affine = &v["placement"]["affine_ras_mm"];
    let origin = [10.0, -4.0 + 8.0 * voxel[0], 12.0 + 12.0 * voxel[1]];
    for (r, want) in origin.iter().enumerate() {
        let got = affine[r][3].as_f64().unwrap();
        assert!((got - want).abs() < 1e-3, "{affine}");
    }
    let nii = d.join("zf.nii");
    ok(&[
        "recon",
        s(&file),
        s(&nii),
        "--repetition",
        "1",
        "--method",
        "zero-filled",
    ]);
    let vol = msm::io::nifti::read_nifti(&nii).unwrap();
    assert_eq!(vol.data.dim(), (16, 24, 2));
    for (got, want) in vol.voxel_size.iter().zip(voxel) {
        assert!((*got as f64 - want).abs() < 1e-5, "{:?}", vol.voxel_size);
    }
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
    assert_eq!(
        v["voxel_size_mm"],
        serde_json::Value::Null,
        "no field of view in its header"
    );
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

#[test]
fn a_series_of_images_is_one_output_with_an_axis_per_counter() {
    let Some(dir) = h5py_fixtures("tests/ismrmrd/make_raw.py", "the ISMRMRD series test") else {
        return;
    };
    let d = dir.path();
    let series = d.join("raw_series.h5");
    // Each image alone, [contrast * 2 + repetition].
    let alone: Vec<ndarray::Array3<C32>> = (0..4)
        .map(|n| {
            let (c, r) = ((n / 2).to_string(), (n % 2).to_string());
            let p = d.join(format!("c{c}r{r}.npy"));
            zero_filled(&series, &p, &["--contrast", &c, "--repetition", &r]);
            npy::read_npy_as(&p).unwrap()
        })
        .collect();
    // The file's contrast 1 holds the other repetition's contrast-0 lines.
    assert_eq!(alone[2], alone[1]);
    assert_eq!(alone[3], alone[0]);
    assert_ne!(alone[0], alone[1]);

    // NumPy: (contrast, repetition, slices, H, W).
    let all_npy = d.join("all.npy");
    zero_filled(
        &series,
        &all_npy,
        &["--contrast", "all", "--repetition", "all"],
    );
    let all: ndarray::ArrayD<C32> = npy::read_npy_as(&all_npy).unwrap();
    assert_eq!(all.shape(), &[2, 2, 2, 8, 12]);
    for (n, image) in alone.iter().enumerate() {
        let got = all.index_axis(Axis(0), n / 2);
        assert_eq!(got.index_axis(Axis(0), n % 2), image.view().into_dyn());
    }
    // One counter "all", the other fixed: that counter's axis only.
    let reps = d.join("reps.npy");
    zero_filled(&series, &reps, &["--contrast", "1", "--repetition", "all"]);
    let reps: ndarray::Array4<C32> = npy::read_npy_as(&reps).unwrap();
    assert_eq!(reps.index_axis(Axis(0), 0), alone[2]);
    assert_eq!(reps.index_axis(Axis(0), 1), alone[3]);

    // NIfTI: [H, W, slices, contrast, repetition] magnitude, read here from the header's
    // fields (dim at byte 40, vox_offset at 108) and the little-endian float32 data.
    let nii = d.join("all.nii");
    zero_filled(&series, &nii, &["--contrast", "all", "--repetition", "all"]);
    let bytes = std::fs::read(&nii).unwrap();
    let i16_at = |at: usize| i16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let f32_at = |at: usize| f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let dim: Vec<i16> = (0..8).map(|i| i16_at(40 + 2 * i)).collect();
    assert_eq!(dim, [5, 8, 12, 2, 2, 2, 1, 1]);
    // pixdim: 1 mm (the header states no field of view), a spacing of 1 along the counters.
    let pixdim: Vec<f32> = (1..6).map(|i| f32_at(76 + 4 * i)).collect();
    assert_eq!(pixdim, [1.0; 5]);
    let offset = f32_at(108) as usize;
    assert_eq!(bytes.len(), offset + 4 * 8 * 12 * 2 * 4);
    for (n, image) in alone.iter().enumerate() {
        let (c, r) = (n / 2, n % 2);
        for ((k, row, col), v) in image.indexed_iter() {
            let at = row + 8 * (col + 12 * (k + 2 * (c + 2 * r)));
            assert!((f32_at(offset + 4 * at) - v.norm()).abs() < 1e-6);
        }
    }

    // BART: contrast on TE (dimension 5), repetition on TIME (10), slices on SLICE (13).
    let base = d.join("all");
    zero_filled(
        &series,
        &base,
        &["--contrast", "all", "--repetition", "all"],
    );
    let a = cfl::read_array(&base).unwrap();
    let mut dims = [1usize; 14];
    (dims[0], dims[1], dims[5], dims[10], dims[13]) = (8, 12, 2, 2, 2);
    assert_eq!(a.dims[..14], dims);
    for (n, image) in alone.iter().enumerate() {
        let (c, r) = (n / 2, n % 2);
        for ((k, row, col), v) in image.indexed_iter() {
            let at = row + 8 * col + 96 * c + 192 * r + 384 * k;
            assert_eq!(a.data[at], *v);
        }
    }
    // And BART itself picks an image out of it: contrast 1, repetition 0.
    if Command::new("bart")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let pick = d.join("pick");
        let out = Command::new("bart")
            .args(["slice", "5", "1", "10", "0"])
            .args([&base, &pick])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = cfl::read_array(&pick).unwrap();
        assert_eq!(p.data.len(), 8 * 12 * 2);
        for ((k, row, col), v) in alone[2].indexed_iter() {
            assert_eq!(p.data[row + 8 * col + 96 * k], *v);
        }
    } else if std::env::var_os("CI").is_some() {
        panic!("`bart` is not on PATH on CI");
    }

    // Refusals: a series with a hole, `all` where one image is read, `all` on a file without
    // counters; nothing written.
    let out = d.join("refused.npy");
    let hole = d.join("raw_hole.h5");
    fails(
        &[
            "recon",
            s(&hole),
            s(&out),
            "--contrast",
            "all",
            "--repetition",
            "all",
        ],
        &[
            "raw_hole.h5",
            "3 of the 4 images",
            "contrast 1, repetition 1",
        ],
    );
    fails(
        &["info", s(&series), "--repetition", "all"],
        &["--repetition all", "msm reconstruct", "--repetition N"],
    );
    fails(
        &[
            "ecalib",
            s(&series),
            s(&out),
            "--contrast",
            "all",
            "--repetition",
            "0",
        ],
        &["--contrast all", "one value"],
    );
    fails(
        &[
            "recon",
            s(&d.join("raw_as_fastmri.h5")),
            s(&out),
            "--repetition",
            "all",
        ],
        &["raw_as_fastmri.h5", "not ISMRMRD raw data"],
    );
    // A bad word is a usage error (clap's exit code 2) that says what a choice is.
    let bad = msm(&["recon", s(&series), s(&out), "--repetition", "every"]);
    let e = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{e}");
    assert!(
        e.contains("\"every\" is not a counter value (a number >= 0) or \"all\""),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn reconstruct_runs_a_series_as_its_images_run_alone() {
    let Some(dir) = h5py_fixtures("tests/ismrmrd/make_raw.py", "the ISMRMRD series test") else {
        return;
    };
    let d = dir.path();
    let model = d.join("tiny.onnx");
    tiny_model(&model, 32, true);
    let scan = d.join("scan_raw_reps.h5");
    let run = |out: &Path, repetition: &str, threads: &str, steps: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_msm"))
            .args([
                "reconstruct",
                "--model",
                s(&model),
                "--steps",
                steps,
                "--seed",
                "3",
            ])
            .args(["--repetition", repetition, "--quiet"])
            .args([&scan, out])
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (first, second, all) = (d.join("r0.npy"), d.join("r1.npy"), d.join("all.npy"));
    run(&first, "0", "1", "4");
    run(&second, "1", "1", "4");
    run(&all, "all", "2", "4");
    let first: ndarray::Array3<C32> = npy::read_npy_as(&first).unwrap();
    let second: ndarray::Array3<C32> = npy::read_npy_as(&second).unwrap();
    let all: Array4<C32> = npy::read_npy_as(&all).unwrap();
    assert_eq!(all.dim(), (2, 3, 32, 32));
    // Each image's slices are those of its run alone, to the bit (the seed is keyed by the
    // image, never by what ran before it or how many threads ran).
    assert_eq!(all.index_axis(Axis(0), 0), first);
    assert_eq!(all.index_axis(Axis(0), 1), second);
    assert_ne!(first, second);
    // With more threads than partial scores, the slices of both images run together (an image
    // has 3 slices, fewer than the 4 threads): the same bytes.
    let together = d.join("together.npy");
    run(&together, "all", "4", "4");
    let together: Array4<C32> = npy::read_npy_as(&together).unwrap();
    assert_eq!(together, all);
    assert!(!Parts::dir_for(&d.join("all.npy")).exists());
    // The seed is keyed by the image: scan_raw.h5 holds repetition 0's lines alone, the same
    // k-space (zero-filled alike), yet its one image is sampled with other noise than the
    // series' image 0.
    let (single, zf_single, zf_first) = (d.join("single.npy"), d.join("zs.npy"), d.join("zr.npy"));
    zero_filled(&d.join("scan_raw.h5"), &zf_single, &[]);
    zero_filled(&scan, &zf_first, &["--repetition", "0"]);
    let zf: Vec<ndarray::Array3<C32>> = [&zf_single, &zf_first]
        .iter()
        .map(|p| npy::read_npy_as(p).unwrap())
        .collect();
    assert_eq!(zf[0], zf[1]);
    ok(&[
        "reconstruct",
        "--model",
        s(&model),
        "--steps",
        "4",
        "--seed",
        "3",
        "--quiet",
        s(&d.join("scan_raw.h5")),
        s(&single),
    ]);
    let single: ndarray::Array3<C32> = npy::read_npy_as(&single).unwrap();
    assert_ne!(single, first);

    // A killed series resumes to the uninterrupted run's bytes: the parts of both images
    // (slice s of image i is part 3 i + s) are found and skipped.
    let args = |out: &Path| -> Vec<String> {
        [
            "reconstruct",
            "--model",
            s(&model),
            "--steps",
            "60",
            "--seed",
            "3",
        ]
        .into_iter()
        .chain(["--repetition", "all", s(&scan), s(out)])
        .map(String::from)
        .collect()
    };
    let reference = d.join("reference.npy");
    run(&reference, "all", "1", "60");
    let reference = std::fs::read(&reference).unwrap();
    let out = d.join("killed.npy");
    let parts = Parts::dir_for(&out);
    let owned = args(&out);
    let argv: Vec<&str> = owned.iter().map(String::as_str).collect();
    let caught = kill_after_a_part(&argv, &[("RAYON_NUM_THREADS", "1")], &parts);
    assert!(caught, "the run ended before its first slice was stored");
    let stored = std::fs::read_dir(&parts)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("slice-")
        })
        .count();
    eprintln!("killed with {stored} of 6 slices stored");
    assert!((1..6).contains(&stored), "{stored} parts");
    let log = msm(&argv);
    let err = String::from_utf8_lossy(&log.stderr);
    assert!(log.status.success(), "{err}");
    assert!(
        err.contains(&format!("{stored} of 6 slices already done"))
            && err.contains("a series of 2 images (2 repetitions)"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), reference);
}

#[test]
fn a_noise_scan_taken_apart_prewhitens_the_file_without_one() {
    let Some(dir) = h5py_fixtures("tests/ismrmrd/make_raw.py", "the ISMRMRD noise-file test")
    else {
        return;
    };
    let d = dir.path();
    let (plain, noise) = (d.join("raw_nonoise.h5"), d.join("raw_noise_dep.h5"));
    // Alone, the imaging lines have no noise scan: read as recorded.
    let alone = RawScan::open(&plain).unwrap();
    assert!(!alone.prewhitened() && alone.noise_std().is_none());
    assert_assembled(&alone, &d.join("raw_expected_as_recorded.npy"), 1e-6);
    // With the noise scan from its own file: what raw.h5 (both in one file) gives.
    let with_noise = RawOptions {
        noise_file: Some(noise.clone()),
        ..RawOptions::default()
    };
    let scan = RawScan::open_with(&plain, &with_noise).unwrap();
    assert!(scan.prewhitened());
    assert_assembled(&scan, &d.join("raw_expected.npy"), 2e-5);
    let together = RawScan::open(d.join("raw.h5")).unwrap();
    assert_eq!(scan.noise_std(), together.noise_std());
    assert_eq!(
        scan.skipped(),
        alone.skipped(),
        "the noise file's navigator is not the scan's"
    );

    // Through the CLI: `msm info` names the noise file, `msm recon` gives raw.h5's volume.
    let out = ok(&["info", s(&plain), "--json", "--noise", s(&noise)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["prewhitened"], true);
    assert_eq!(v["noise_file"], s(&noise));
    let text = ok(&["info", s(&plain), "--noise", s(&noise)]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("the noise scan in"));
    let (from_parts, from_one) = (d.join("parts.npy"), d.join("one.npy"));
    zero_filled(&plain, &from_parts, &["--noise", s(&noise)]);
    zero_filled(&d.join("raw.h5"), &from_one, &[]);
    let a: ndarray::Array3<C32> = npy::read_npy_as(&from_parts).unwrap();
    let b: ndarray::Array3<C32> = npy::read_npy_as(&from_one).unwrap();
    let err = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).norm())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-5, "{err}");

    // Refusals name the noise file: no noise line in it, other channels; and a file in
    // fastMRI's layout, which is not prewhitened, refuses a noise file it would ignore.
    let open = |noise: &Path| {
        RawScan::open_with(
            &plain,
            &RawOptions {
                noise_file: Some(noise.to_path_buf()),
                ..RawOptions::default()
            },
        )
        .unwrap_err()
        .to_string()
    };
    let e = open(&plain);
    assert!(
        e.contains("raw_nonoise.h5") && e.contains("has no noise measurement among its"),
        "{e}"
    );
    let e = open(&d.join("raw_noise_2ch.h5"));
    assert!(
        e.contains("raw_noise_2ch.h5") && e.contains("2 channels") && e.contains("have 3"),
        "{e}"
    );
    let e = open(&d.join("missing.h5"));
    assert!(e.contains("missing.h5"), "{e}");
    let out = d.join("refused.npy");
    fails(
        &[
            "recon",
            s(&d.join("raw_as_fastmri.h5")),
            s(&out),
            "--noise",
            s(&noise),
        ],
        &["raw_as_fastmri.h5", "fastMRI's layout", "raw_noise_dep.h5"],
    );
    assert!(!out.exists());
}

#[test]
fn a_separate_reference_scan_calibrates_the_maps_and_is_not_image_data() {
    let Some(dir) = h5py_fixtures("tests/ismrmrd/make_raw.py", "the reference-scan test") else {
        return;
    };
    let d = dir.path();
    let path = d.join("raw_separate.h5");
    // Its lines are tagged repetition 1 and the image's 0: a reference scan serves every
    // image, so the file is still one image.
    let scan = RawScan::open(&path).unwrap();
    assert_assembled(&scan, &d.join("raw_separate_expected.npy"), 2e-5);
    assert_references(&scan, &d.join("raw_separate_reference.npy"));
    let want: Array4<C32> = npy::read_npy_as(d.join("raw_separate_reference.npy")).unwrap();
    // Under calibration mode `embedded` the same lines are image data: columns 3..8 filled.
    let embedded = RawScan::open(d.join("raw_separate_embedded.h5")).unwrap();
    assert!(embedded.slice_reference(0).is_none());
    let k = embedded.slice_kspace(0).unwrap();
    for col in [3, 5, 7] {
        assert!(k
            .slice(ndarray::s![.., .., col])
            .iter()
            .any(|v| v.norm() > 0.0));
    }
    let info = ok(&["info", s(&path), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        v["reference_scan"],
        serde_json::json!({ "slices": 2, "columns": 6 })
    );
    assert_eq!(
        v["per_slice"][0]["kept_columns"], 6,
        "the image's lines only"
    );
    // The maps of a slice are those of its reference scan alone.
    let (from_scan, from_ref) = (d.join("maps.npy"), d.join("maps_ref.npy"));
    let ecalib = |input: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec!["ecalib", s(input), s(out), "--method", "ratio"];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let out = ecalib(&path, &from_scan, &["--slice", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("separate reference scan"));
    let one = d.join("ref1.npy");
    npy::write_npy(&one, &want.index_axis(Axis(0), 1).to_owned()).unwrap();
    ecalib(&one, &from_ref, &[]);
    let a: ndarray::Array3<C32> = npy::read_npy_as(&from_scan).unwrap();
    let b: ndarray::Array3<C32> = npy::read_npy_as(&from_ref).unwrap();
    let err = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).norm())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-5, "maps differ by {err}");
    // Reconstructions estimate the maps so too: slice 1 with maps estimated in the run equals
    // slice 1 with the reference's maps given.
    let (estimated, given) = (d.join("sep.npy"), d.join("sep_given.npy"));
    let sl = ["--slices", "1"];
    ok(&[
        &["recon", s(&path), s(&estimated), "--maps-method", "ratio"][..],
        &sl,
    ]
    .concat());
    ok(&[&["recon", s(&path), s(&from_scan), s(&given)][..], &sl].concat());
    let a: ndarray::Array3<C32> = npy::read_npy_as(&estimated).unwrap();
    let b: ndarray::Array3<C32> = npy::read_npy_as(&given).unwrap();
    assert_eq!(a.dim(), (1, 8, 12));
    assert_eq!(a, b);
    // A separately encoded reference (the header's second encoding, 8 x 6 of the same field of
    // view, so the same k-space spacing): placed on the image's grid by its own centre line,
    // its 8 samples on the central rows; the image as without it.
    let encoded = RawScan::open(d.join("raw_encoding_ref.h5")).unwrap();
    assert_assembled(&encoded, &d.join("raw_separate_expected.npy"), 2e-5);
    assert_references(&encoded, &d.join("raw_encoding_ref_reference.npy"));
    assert_eq!(encoded.unselected(), 0);
    // Of another field of view (another k-space spacing), it cannot be placed: not read.
    let other = RawScan::open(d.join("raw_encoding_other.h5")).unwrap();
    assert!(other.slice_reference(0).is_none());
    assert_eq!(other.unselected(), 12);
    assert_assembled(&other, &d.join("raw_separate_expected.npy"), 2e-5);
}

/// The relative error of `got`'s magnitude against `reference` after the least-squares scale.
fn scaled_error(got: &Array3<C32>, reference: &Array3<f32>) -> f64 {
    let m = got.mapv(|v| f64::from(v.norm()));
    let r = reference.mapv(f64::from);
    let scale = (&m * &r).sum() / (&m * &m).sum();
    (&m * scale - &r).mapv(|v| v * v).sum().sqrt() / r.mapv(|v| v * v).sum().sqrt()
}

#[test]
fn a_3d_scan_undersampled_along_both_phase_encodes_reconstructs_along_the_readout() {
    let Some(dir) = h5py_fixtures("tests/ismrmrd/make_raw.py", "the ISMRMRD raw test") else {
        return;
    };
    let d = dir.path();
    let input = d.join("raw_kykz.h5");
    let reference: Array3<f32> = npy::read_npy_as(&d.join("raw_kykz_reference.npy")).unwrap();
    // CG-SENSE on each readout position's (line, partition) plane, with ESPIRiT maps from its
    // 12 x 12 centre and the 2-D mask of the entries acquired, against the object: the lattice
    // leaves the coils enough to unfold. Zero-filled shows the aliasing it removes; taking
    // whole columns as the mask (every column holds some entry) would leave the CG result
    // as aliased as zero-filled (0.08).
    let (cg, zf) = (d.join("cg.npy"), d.join("zf.npy"));
    ok(&["recon", s(&input), s(&cg)]);
    ok(&["recon", "--method", "zero-filled", s(&input), s(&zf)]);
    let cg: Array3<C32> = npy::read_npy_as(&cg).unwrap();
    let zf: Array3<C32> = npy::read_npy_as(&zf).unwrap();
    assert_eq!(cg.dim(), (8, 24, 20));
    let (e_cg, e_zf) = (scaled_error(&cg, &reference), scaled_error(&zf, &reference));
    assert!(e_cg < 0.02, "CG-SENSE error {e_cg} (zero-filled {e_zf})");
    assert!(
        e_zf > 0.05,
        "zero-filled error {e_zf}: the scan should alias"
    );
    // Undersampled along the partitions only (every other one beyond the central 12): an
    // inverse FFT along them would alias the slices, so they are read along the readout too,
    // with whole-column masks (a model as wide as the partitions, any height).
    let kz = d.join("raw_kz.h5");
    assert!(RawScan::open(&kz).unwrap().along_readout());
    let info = ok(&["info", s(&kz)]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("whole columns"));
    let kz_cg = d.join("kz.npy");
    ok(&["recon", s(&kz), s(&kz_cg)]);
    let e = scaled_error(&npy::read_npy_as(&kz_cg).unwrap(), &reference);
    assert!(
        e < 0.02,
        "CG-SENSE error of the partition-undersampled scan {e}"
    );
    // msm ecalib finds the same 2-D mask and maps as the run: slice 3 with its maps given
    // equals slice 3 with them estimated in the run.
    let (maps, given) = (d.join("maps3.npy"), d.join("given3.npy"));
    ok(&["ecalib", "--slice", "3", s(&input), s(&maps)]);
    ok(&["recon", "--slices", "3", s(&input), s(&maps), s(&given)]);
    let given: Array3<C32> = npy::read_npy_as(&given).unwrap();
    assert_eq!(given.index_axis(Axis(0), 0), cg.index_axis(Axis(0), 3));
    // A separate reference scan is read along the readout too and calibrates the maps: the
    // image's own 4 x 4 centre is smaller than ESPIRiT's kernel (an error without it), and
    // at R = 3.6 the unfolding still holds (zero-filled: 0.24).
    let sep = d.join("sep.npy");
    ok(&["recon", s(&d.join("raw_kykz_separate.h5")), s(&sep)]);
    let e = scaled_error(&npy::read_npy_as(&sep).unwrap(), &reference);
    assert!(
        e < 0.06,
        "CG-SENSE error with the reference scan's maps {e}"
    );
}

/// A model of 2-D masks (`msm.train_mask` `random-2d`, as `msm-train` records with
/// `data.mask = "random-2d"`) reconstructs the slices of a 3-D scan along its readout
/// (`raw_kykz32.h5`, 32 x 32 (line, partition) slices under a random 2-D pattern), drawing 2-D
/// partial masks on its grid: seeded (the same output twice), not the run of a column-mask
/// model with the same seed; a non-square one (24 x 20) reconstructs `raw_kykz.h5`'s slices,
/// and a model of 2-D masks on another grid is refused with both.
#[test]
fn a_model_of_2d_masks_reconstructs_a_3d_scan_along_its_readout() {
    let Some(dir) = h5py_fixtures("tests/ismrmrd/make_raw.py", "the 2-D mask model test") else {
        return;
    };
    let d = dir.path();
    let scan = d.join("raw_kykz32.h5");
    let meta_2d = |size| {
        let mut m = common::tiny_meta(size);
        m.train_mask = msm::onnx::meta::MaskPattern::Random2d;
        m.train_acceleration = 2.5;
        m.train_acs_lines = 12;
        m
    };
    // The same network, acceleration and ACS size, with column masks.
    let (model_2d, model_cols) = (d.join("tiny2d.onnx"), d.join("tiny.onnx"));
    common::tiny_model_with(&model_2d, 32, Some(meta_2d(32)));
    let columns = msm::onnx::ModelMeta {
        train_mask: msm::onnx::meta::MaskPattern::Random,
        ..meta_2d(32)
    };
    common::tiny_model_with(&model_cols, 32, Some(columns));
    let run = |model: &Path, out: &Path| {
        ok(&[
            "reconstruct",
            "--model",
            s(model),
            "--steps",
            "4",
            "--seed",
            "5",
            "--quiet",
            s(&scan),
            s(out),
        ])
    };
    let (a, b, c) = (d.join("a.npy"), d.join("b.npy"), d.join("c.npy"));
    run(&model_2d, &a);
    run(&model_2d, &b);
    run(&model_cols, &c);
    let a: Array3<C32> = npy::read_npy_as(&a).unwrap();
    assert_eq!(a.dim(), (4, 32, 32));
    assert!(a.iter().all(|v| v.re.is_finite() && v.im.is_finite()));
    assert_eq!(a, npy::read_npy_as::<C32, _>(&b).unwrap(), "not seeded");
    assert_ne!(
        a,
        npy::read_npy_as::<C32, _>(&c).unwrap(),
        "2-D partial masks gave the column masks' run"
    );
    // A non-square model of the slices' grid: the 24 x 20 (line, partition) slices of
    // `raw_kykz.h5` under its CAIPIRINHA-like lattice (12 x 12 centre).
    let model_24x20 = d.join("tiny24x20.onnx");
    let mut meta = msm::onnx::ModelMeta::new(24, 20);
    meta.train_mask = msm::onnx::meta::MaskPattern::Random2d;
    meta.train_acceleration = 2.0;
    meta.train_acs_lines = 12;
    common::tiny_model_grid(&model_24x20, (24, 20), Some(meta));
    let out = d.join("kykz24x20.npy");
    ok(&[
        "reconstruct",
        "--model",
        s(&model_24x20),
        "--steps",
        "4",
        "--quiet",
        s(&d.join("raw_kykz.h5")),
        s(&out),
    ]);
    let image: Array3<C32> = npy::read_npy_as(&out).unwrap();
    assert_eq!(image.dim(), (8, 24, 20));
    assert!(image.iter().all(|v| v.re.is_finite() && v.im.is_finite()));
    let small = d.join("tiny2d16.onnx");
    common::tiny_model_with(&small, 16, Some(meta_2d(16)));
    fails(
        &[
            "reconstruct",
            "--model",
            s(&small),
            "--steps",
            "2",
            s(&scan),
            s(&d.join("no.npy")),
        ],
        &["raw_kykz32.h5", "32x32", "16x16"],
    );
    assert!(!d.join("no.npy").exists());
}
