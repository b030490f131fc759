//! ISMRMRD raw data (one acquisition per readout line, as `siemens_to_ismrmrd` writes it)
//! assembled into k-space: against the k-space the h5py writer placed
//! (`tests/ismrmrd/make_raw.py`): lines on their columns, averages averaged, calibration lines
//! kept, navigators skipped, prewhitened with the noise scan's covariance (against NumPy's
//! Cholesky), the noise scan's level; then through the CLI (`msm info`, `msm
//! recon`), and bad files.

mod common;

use common::{fails, h5py_fixtures, ok, s};
use msm::io::fastmri::{is_raw, RawScan};
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
    let recorded = RawScan::open_with(&raw, false).unwrap();
    assert!(!recorded.prewhitened());
    assert_eq!(recorded.noise_std(), scan.noise_std());
    assert_assembled(&recorded, &d.join("raw_expected_as_recorded.npy"), 1e-6);
    assert!(scan
        .slice_kspace(2)
        .unwrap_err()
        .to_string()
        .contains("out of range"));

    // Acquisitions that this reader must not mix into one image are refused, naming them.
    let e = RawScan::open(d.join("raw_contrast.h5"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("raw_contrast.h5") && e.contains("contrast 1"),
        "{e}"
    );
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
        &["raw_contrast.h5", "contrast 1"],
    );
    fails(
        &["metrics", s(&raw), s(&img)],
        &["raw.h5", "ISMRMRD raw data, which holds no reference image"],
    );
}
