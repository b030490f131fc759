//! NIfTI outputs of ISMRMRD raw data placed in scanner coordinates: point objects at known
//! positions (`tests/ismrmrd/make_geometry.py`, whose k-space is the MR signal equation's, not
//! `msm`'s transforms) must land, through `msm recon` and `msm reconstruct`, on the voxel that
//! nibabel's reading of the written affine maps to their position; the qform must agree with
//! the sform, and `msm info` must name the axes as nibabel does. And read: a volume stored in
//! any voxel order turns to the order closest to RAS as nibabel's `as_closest_canonical` turns
//! it, so that `msm simulate --plane axial` cuts an axial slice whatever the file's order.

mod common;

use common::{msm, ok, python_fixtures, s, tiny_meta, tiny_model_with, zero_filled};
use msm::io::nifti::{read_nifti, read_nifti_canonical, write_nifti_nd, Volume};
use msm::io::space::VoxelSpace;
use ndarray::Array3;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// What nibabel reads from a NIfTI file: its sform and qform (4 x 4), `aff2axcodes` of its
/// affine, and its voxel sizes.
struct Nibabel {
    sform: Vec<Vec<f64>>,
    qform: Vec<Vec<f64>>,
    codes: String,
    zooms: Vec<f64>,
    /// `sform_code` and `qform_code`.
    form_codes: [i64; 2],
}

fn nibabel(path: &Path) -> Nibabel {
    let script = "import json, sys, nibabel as nib\n\
                  img = nib.load(sys.argv[1])\n\
                  print(json.dumps({'sform': img.get_sform().tolist(), \
                  'qform': img.get_qform().tolist(), \
                  'codes': ''.join(nib.aff2axcodes(img.affine)), \
                  'zooms': [float(z) for z in img.header.get_zooms()[:3]], \
                  'sform_code': int(img.header['sform_code']), \
                  'qform_code': int(img.header['qform_code'])}))";
    let out = Command::new("python3")
        .args(["-c", script, s(path)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let matrix = |name: &str| -> Vec<Vec<f64>> { serde_json::from_value(v[name].clone()).unwrap() };
    Nibabel {
        sform: matrix("sform"),
        qform: matrix("qform"),
        codes: v["codes"].as_str().unwrap().to_string(),
        zooms: serde_json::from_value(v["zooms"].clone()).unwrap(),
        form_codes: [
            v["sform_code"].as_i64().unwrap(),
            v["qform_code"].as_i64().unwrap(),
        ],
    }
}

/// The world position (RAS mm) of voxel `(i, j, k)` under `affine`.
fn world(affine: &[Vec<f64>], ijk: [usize; 3]) -> [f64; 3] {
    std::array::from_fn(|r| {
        (0..3).map(|c| affine[r][c] * ijk[c] as f64).sum::<f64>() + affine[r][3]
    })
}

/// The voxel `(i, j)` of largest magnitude in slice `k` of the NIfTI volume `path`.
fn peak(path: &Path, k: usize) -> [usize; 3] {
    let volume = read_nifti(path).unwrap();
    let (mut best, mut at) = (f32::MIN, [0; 3]);
    for ((i, j, kk), &v) in volume.data.indexed_iter() {
        if kk == k && v > best {
            (best, at) = (v, [i, j, k]);
        }
    }
    at
}

/// Asserts that each point of `expected` (`points`: RAS mm; `slices`: its output slice,
/// less `first`, the first slice written) is the peak of its slice, at its position under the
/// affine nibabel reads; and that the qform agrees with the sform.
fn assert_placed(out: &Path, expected: &Value, first: usize) -> Nibabel {
    let nib = nibabel(out);
    assert_eq!(nib.form_codes, [1, 1], "scanner coordinates");
    let points = expected["points"].as_array().unwrap();
    let slices = expected["slices"].as_array().unwrap();
    for (point, k) in points.iter().zip(slices) {
        let Some(k) = (k.as_u64().unwrap() as usize).checked_sub(first) else {
            continue;
        };
        let want: Vec<f64> = serde_json::from_value(point.clone()).unwrap();
        let got = world(&nib.sform, peak(out, k));
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() < 0.01,
                "{}: slice {k}'s point at {got:?} mm, expected {want:?}",
                out.display()
            );
        }
    }
    for (q, f) in nib.qform.iter().flatten().zip(nib.sform.iter().flatten()) {
        assert!(
            (q - f).abs() < 1e-3,
            "qform {:?} sform {:?}",
            nib.qform,
            nib.sform
        );
    }
    nib
}

#[test]
fn nifti_outputs_lie_where_the_acquisitions_put_the_slices() {
    let Some(dir) = python_fixtures(
        "tests/ismrmrd/make_geometry.py",
        &["h5py", "numpy", "nibabel"],
        "the NIfTI placement test",
    ) else {
        return;
    };
    let d = dir.path();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(d.join("geometry.json")).unwrap()).unwrap();
    for name in ["geom_2d.h5", "geom_3d.h5", "geom_kykz.h5"] {
        let input = d.join(name);
        let out = d.join(name.replace(".h5", ".nii.gz"));
        zero_filled(&input, &out, &[]);
        let nib = assert_placed(&out, &expected[name], 0);
        // Oblique slices: the axes nibabel names, which `msm info` states too.
        let info = ok(&["info", s(&input), "--json"]);
        let info: Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["placement"]["axes"], nib.codes.as_str(), "{name}");
        // 4 mm pixels; the slice step is the distance between slice centres (a 2 mm gap
        // between 4 mm slices) or the partition spacing. Slices along the readout have
        // 4 mm phase-encode rows, 3 mm partition columns and 4 mm readout steps.
        let zooms = match name {
            "geom_2d.h5" => [4.0, 4.0, 6.0],
            "geom_3d.h5" => [4.0, 4.0, 3.0],
            _ => [4.0, 3.0, 4.0],
        };
        for (z, want) in nib.zooms.iter().zip(zooms) {
            assert!((z - want).abs() < 1e-4, "{name}: zooms {:?}", nib.zooms);
        }
    }
    // A range of slices starts the affine at the first slice written.
    let part = d.join("part.nii");
    zero_filled(&d.join("geom_2d.h5"), &part, &["--slices", "1..3"]);
    assert_placed(&part, &expected["geom_2d.h5"], 1);
    // The model's reconstruction writes the same placement.
    let model = d.join("tiny.onnx");
    // Partial masks of a 16-wide grid at R = 2 around the 4 ACS columns.
    let mut meta = tiny_meta(16);
    meta.train_acceleration = 2.0;
    tiny_model_with(&model, 16, Some(meta));
    // Slices along the readout too, with 2-D masks and maps from the 8 x 8 centre (the
    // slices' 16 x 16 grid is the model's): where the zero-filled recon put them.
    for name in ["geom_3d", "geom_kykz"] {
        let out = d.join(format!("msm_{name}.nii"));
        let input = d.join(format!("{name}.h5"));
        ok(&[
            "reconstruct",
            "--model",
            s(&model),
            "--steps",
            "3",
            "--quiet",
            s(&input),
            s(&out),
        ]);
        let zf = nibabel(&d.join(format!("{name}.nii.gz")));
        assert_eq!(nibabel(&out).sform, zf.sform, "{name}");
    }
    // A series has its first image's placement; an image that lies elsewhere is named in a
    // note (by msm recon and msm reconstruct), one in the same place is not.
    for (name, moved) in [("geom_series.h5", false), ("geom_moved.h5", true)] {
        let input = d.join(name);
        let out = zero_filled(&input, &d.join("series.nii"), &["--repetition", "all"]);
        let recon_err = String::from_utf8_lossy(&out.stderr).to_string();
        let out = msm(&[
            "reconstruct",
            "--model",
            s(&model),
            "--steps",
            "2",
            "--repetition",
            "all",
            "--maps-method",
            "ratio",
            s(&input),
            s(&d.join("series_msm.nii")),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for err in [recon_err, String::from_utf8_lossy(&out.stderr).to_string()] {
            assert_eq!(
                err.contains("repetition 1 up to 2.00 mm away"),
                moved,
                "{name}: {err}"
            );
        }
    }
    // Slices not evenly spaced share no affine: a note, and axes along the world's.
    let uneven = d.join("uneven.nii");
    let out = zero_filled(&d.join("geom_uneven.h5"), &uneven, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not placed in scanner coordinates") && err.contains("evenly spaced"),
        "{err}"
    );
    assert_eq!(nibabel(&uneven).codes, "RAS");
    let info = msm(&["info", s(&d.join("geom_uneven.h5")), "--json"]);
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(info["placement"]["unusable"]
        .as_str()
        .unwrap()
        .contains("evenly spaced"));
}

#[test]
fn a_volume_stored_in_another_order_reads_back_in_ras_order() {
    // V in RAS order, 1 x 2 x 3 mm voxels, voxel 0 at (10, 20, 30) mm. Stored: axis 0 is y
    // reversed, axis 1 is z, axis 2 is x, so S[i, j, k] = V[k, 3 - i, j].
    let v = Array3::from_shape_fn((3, 4, 5), |(x, y, z)| (100 * x + 10 * y + z) as f32);
    let stored = Array3::from_shape_fn((4, 5, 3), |(i, j, k)| v[(k, 3 - i, j)]);
    let affine = [
        [0.0, 0.0, 1.0, 10.0],
        [-2.0, 0.0, 0.0, 26.0],
        [0.0, 3.0, 0.0, 30.0],
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stored.nii");
    write_nifti_nd(
        &path,
        &stored.view().into_dyn(),
        &VoxelSpace::new(affine).unwrap(),
    )
    .unwrap();
    assert_eq!(read_nifti(&path).unwrap().data, stored, "stored order");
    let back = read_nifti_canonical(&path).unwrap();
    assert_eq!(back.data, v);
    assert_eq!(back.voxel_size, [1.0, 2.0, 3.0]);
    let (_, space) = Volume {
        data: stored,
        voxel_size: [2.0, 3.0, 1.0],
    }
    .reoriented(&VoxelSpace::new(affine).unwrap());
    assert_eq!(
        space.affine(),
        [
            [1.0, 0.0, 0.0, 10.0],
            [0.0, 2.0, 0.0, 20.0],
            [0.0, 0.0, 3.0, 30.0]
        ]
    );
}

#[test]
fn real_volumes_turn_to_ras_as_nibabel_turns_them() {
    // natbrainlab is stored LAS (radiological); ch2 turned to P, I, L by nibabel itself.
    let templates = Path::new("/usr/share/mricron/templates");
    if !templates.join("ch2.nii.gz").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "mricron-data is required on CI"
        );
        eprintln!("note: mricron-data is missing; skipping");
        return;
    }
    let Some(dir) = python_fixtures(
        "tests/nifti/make_reoriented.py",
        &["nibabel", "numpy"],
        "the NIfTI reorientation test",
    ) else {
        return;
    };
    let d = dir.path();
    let lab = read_nifti_canonical(templates.join("natbrainlab.nii.gz")).unwrap();
    let want: ndarray::Array3<f32> =
        msm::io::npy::read_npy_as(d.join("natbrainlab_canonical.npy")).unwrap();
    assert_eq!(lab.data, want);
    let stored = read_nifti(templates.join("natbrainlab.nii.gz")).unwrap();
    assert_ne!(stored.data, want, "stored LAS: x reversed");
    // `msm info` names the stored axes as nibabel does, and the planes simulate cuts.
    let lab_path = templates.join("natbrainlab.nii.gz");
    let info = ok(&["info", s(&lab_path), "--json"]);
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["placement"]["axes"], nibabel(&lab_path).codes.as_str());
    assert_eq!(info["placement"]["form"], "sform");
    let (_, _, nz) = want.dim();
    assert_eq!(info["slices"]["axial"], nz);
    let ch2 = read_nifti(templates.join("ch2.nii.gz")).unwrap();
    let turned = d.join("ch2_pil.nii.gz");
    assert_eq!(nibabel(&turned).codes, "PIL");
    assert_ne!(read_nifti(&turned).unwrap().data.dim(), ch2.data.dim());
    assert_eq!(read_nifti_canonical(&turned).unwrap().data, ch2.data);
}
