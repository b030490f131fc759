//! fastMRI / ISMRMRD HDF5 input against files written by h5py (`tests/fastmri/make_files.py`),
//! with reference numbers computed by NumPy the fastMRI way. Needs `python3` with `h5py` and
//! `numpy` (CI installs them); without them each test prints a note and returns, except on CI
//! (environment variable `CI` set), where that fails.

mod common;

use common::h5py_fixtures;
use msm::io::fastmri::{detect_mask, reference_image, FastMriFile, IsmrmrdHeader};
use msm::{Error, C32};
use ndarray::{Array2, Array3, Axis};
use std::path::{Path, PathBuf};

/// A temporary folder holding the files of `make_files.py`, or `None` (with a printed note) when
/// h5py is not installed.
fn fixtures() -> Option<tempfile::TempDir> {
    h5py_fixtures("tests/fastmri/make_files.py", "fastMRI HDF5 test")
}

fn read_c64(path: &Path) -> Vec<C32> {
    std::fs::read(path)
        .expect("reference file")
        .chunks_exact(8)
        .map(|b| {
            C32::new(
                f32::from_le_bytes(b[..4].try_into().unwrap()),
                f32::from_le_bytes(b[4..].try_into().unwrap()),
            )
        })
        .collect()
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("reference file")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn read_bools(path: &Path) -> Vec<bool> {
    std::fs::read(path)
        .expect("reference file")
        .iter()
        .map(|&b| b != 0)
        .collect()
}

/// Every slice of `file` concatenated, checking each slice's shape.
fn all_kspace(file: &FastMriFile) -> Vec<C32> {
    let (h, w) = file.kspace_size();
    let mut all = Vec::new();
    for s in 0..file.num_slices() {
        let k = file.slice_kspace(s).unwrap();
        assert_eq!(k.dim(), (file.coils(), h, w));
        all.extend(k.iter().copied());
    }
    all
}

/// Bit-exact equality of complex values (NaN-free data).
fn assert_bits_equal(got: &[C32], want: &[C32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.re.to_bits() == w.re.to_bits() && g.im.to_bits() == w.im.to_bits(),
            "element {i}: {g} != {w}"
        );
    }
}

/// `got` equals `want` within `1e-5` of the largest reference value.
fn assert_close_rel(got: &Array2<f32>, want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: size");
    let peak = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(peak > 0.0, "{what}: reference is all zero");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-5 * peak,
        "{what}: max difference {worst} > 1e-5 x {peak}"
    );
}

#[test]
fn fastmri_layout_reads_back_to_the_same_numbers() {
    let Some(dir) = fixtures() else { return };
    let d = dir.path();
    let f = FastMriFile::open(d.join("fastmri.h5")).unwrap();
    assert_eq!(
        (f.num_slices(), f.coils(), f.kspace_size()),
        (3, 4, (32, 24))
    );
    assert!(!f.is_single_coil());
    assert_eq!(
        f.header(),
        Some(&IsmrmrdHeader {
            encoded_size: (32, 24, 1),
            recon_size: (20, 16, 1),
            kspace_center: None,
            kspace_center_2: None,
            encoded_fov_mm: Some((280.0, 210.0, 4.5)),
            recon_fov_mm: Some((140.0, 140.0, 4.5)),
            calibration_mode: None,
            second_encoding: None,
        })
    );
    // The recon field of view over the recon matrix.
    assert_eq!(f.header().unwrap().voxel_size_mm(), Some([7.0, 8.75, 4.5]));
    assert_eq!(f.recon_size(), Some((20, 16)));
    assert_eq!(f.mask(), Some(&read_bools(&d.join("fastmri_mask.bin"))[..]));

    let kspace = read_c64(&d.join("fastmri_kspace.bin"));
    assert_bits_equal(&all_kspace(&f), &kspace);

    let rss_ref = read_f32(&d.join("fastmri_rss.bin"));
    let rss = f
        .reconstruction_rss()
        .unwrap()
        .expect("file has reconstruction_rss");
    assert_eq!(rss.dim(), (3, 20, 16));
    assert_eq!(rss.iter().copied().collect::<Vec<_>>(), rss_ref);

    // Our fastMRI reference image of each slice against NumPy's.
    for s in 0..3 {
        let k = f.slice_kspace(s).unwrap();
        let image = reference_image(k.view(), f.recon_size()).unwrap();
        assert_eq!(image.dim(), (20, 16));
        let want = rss.index_axis(Axis(0), s);
        assert_close_rel(&image, want.as_slice().unwrap(), &format!("slice {s}"));
    }
}

#[test]
fn gzip_chunked_file_reads_like_the_contiguous_one() {
    let Some(dir) = fixtures() else { return };
    let d = dir.path();
    let f = FastMriFile::open(d.join("gzip.h5")).unwrap();
    // Chunks of (2, 3, 8, 7) do not align with slices, coils or the 32 x 24 grid.
    assert_bits_equal(&all_kspace(&f), &read_c64(&d.join("fastmri_kspace.bin")));
    // Boolean mask (h5py's enum) and a variable-length header string.
    assert_eq!(f.mask(), Some(&read_bools(&d.join("fastmri_mask.bin"))[..]));
    assert_eq!(f.header().unwrap().recon_size, (20, 16, 1));
    let rss = f.reconstruction_rss().unwrap().unwrap();
    assert_eq!(
        rss.iter().copied().collect::<Vec<_>>(),
        read_f32(&d.join("fastmri_rss.bin"))
    );
}

#[test]
fn ismrmrd_compound_reads_back_and_masks_are_detected() {
    let Some(dir) = fixtures() else { return };
    let d = dir.path();
    let f = FastMriFile::open(d.join("ismrmrd.h5")).unwrap();
    assert_eq!(
        (f.num_slices(), f.coils(), f.kspace_size()),
        (2, 3, (15, 11))
    );
    assert_eq!(f.mask(), None);
    // No reconstruction_rss: the crop comes from the header's recon matrix (x, y).
    assert_eq!(f.recon_size(), Some((9, 7)));
    assert_bits_equal(&all_kspace(&f), &read_c64(&d.join("ismrmrd_kspace.bin")));

    let masks = read_bools(&d.join("ismrmrd_masks.bin"));
    let refs = read_f32(&d.join("ismrmrd_ref.bin"));
    for s in 0..2 {
        let k = f.slice_kspace(s).unwrap();
        assert_eq!(
            detect_mask(k.view()),
            masks[s * 11..(s + 1) * 11],
            "slice {s}"
        );
        // Odd sizes: fftshift and ifftshift differ; NumPy's result must still match.
        let image = reference_image(k.view(), f.recon_size()).unwrap();
        assert_close_rel(&image, &refs[s * 63..(s + 1) * 63], &format!("slice {s}"));
    }
}

#[test]
fn big_endian_complex128_single_coil_layout() {
    let Some(dir) = fixtures() else { return };
    let d = dir.path();
    let f = FastMriFile::open(d.join("single_be64.h5")).unwrap();
    assert!(f.is_single_coil());
    assert_eq!((f.num_slices(), f.coils(), f.kspace_size()), (2, 1, (8, 6)));
    assert_eq!((f.header(), f.mask(), f.recon_size()), (None, None, None));
    assert!(f.reconstruction_rss().unwrap().is_none());
    // Converted to complex64 exactly as NumPy's astype rounds.
    assert_bits_equal(&all_kspace(&f), &read_c64(&d.join("single_kspace.bin")));
}

/// The message of a format error about `path`, checking that it names the file.
fn format_error(err: Error, path: &Path) -> String {
    let text = err.to_string();
    assert!(
        matches!(&err, Error::Format { path: p, .. } if p == path),
        "expected a format error naming {}: {text}",
        path.display()
    );
    assert!(text.contains(&path.display().to_string()), "{text}");
    text
}

fn open_fails(dir: &Path, name: &str, needles: &[&str]) {
    let path: PathBuf = dir.join(name);
    let err = FastMriFile::open(&path).expect_err(name);
    let text = format_error(err, &path);
    for n in needles {
        assert!(text.contains(n), "{name}: {text:?} should mention {n:?}");
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let Some(dir) = fixtures() else { return };
    let d = dir.path();
    open_fails(
        d,
        "no_kspace.h5",
        &["no `kspace` dataset", "image", "ismrmrd_header"],
    );
    open_fails(
        d,
        "real_kspace.h5",
        &["real numbers (float32)", "expected complex"],
    );
    open_fails(d, "zero_coils.h5", &["zero coils", "[2, 0, 8, 8]"]);
    open_fails(
        d,
        "bad_header.h5",
        &["`ismrmrd_header` cannot be parsed", "truncated"],
    );
    open_fails(
        d,
        "wrong_fields.h5",
        &["[\"a\", \"b\"]", "`real` and `imag`"],
    );
    open_fails(d, "int_fields.h5", &["field `r` holds integers (int32)"]);
    open_fails(d, "two_d.h5", &["[8, 8]", "expected 4 dimensions"]);
    open_fails(
        d,
        "mask_length.h5",
        &["`mask` has shape [25]", "expected [24]"],
    );
    open_fails(d, "mask_empty.h5", &["`mask` keeps no column"]);
    open_fails(
        d,
        "rss_slices.h5",
        &["`reconstruction_rss` has shape [2, 20, 16]"],
    );
    open_fails(
        d,
        "text.h5",
        &["cannot be read as HDF5", "expected a fastMRI HDF5 file"],
    );
    open_fails(d, "empty.h5", &["cannot be read as HDF5"]);

    let missing = d.join("missing.h5");
    match FastMriFile::open(&missing) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("missing file: expected an I/O error, got {other:?}"),
    }

    // A NaN in the data: found when the slice is read, with its position.
    let nan = d.join("nan.h5");
    let f = FastMriFile::open(&nan).unwrap();
    let text = format_error(f.slice_kspace(0).unwrap_err(), &nan);
    assert!(
        text.contains("non-finite value at (coil 2, row 5, column 7)"),
        "{text}"
    );
    let text = format_error(f.reconstruction_rss().unwrap_err(), &nan);
    assert!(
        text.contains("non-finite value at (slice 0, row 3, column 4)"),
        "{text}"
    );
    let text = f.slice_kspace(1).unwrap_err().to_string();
    assert!(
        text.contains("slice 1 is out of range") && text.contains("1 slices"),
        "{text}"
    );

    // Half a file, and a file cut inside the k-space data: an error when opening or when
    // reading, never a panic.
    for name in ["truncated.h5", "data_cut.h5"] {
        let path = d.join(name);
        let result = FastMriFile::open(&path).and_then(|f| {
            (0..f.num_slices())
                .map(|s| f.slice_kspace(s))
                .collect::<msm::Result<Vec<Array3<C32>>>>()
        });
        let text = format_error(result.expect_err(name), &path);
        assert!(text.contains("truncated or damaged"), "{text}");
    }
}
