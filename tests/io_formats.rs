//! File-format tests for `msm::io`: round trips, axis mappings, files written by peers (BART,
//! NumPy, the Colin27 NIfTI template), hand-built files, and every rejected input.

use msm::io::atomic;
use msm::io::cfl;
use msm::io::nifti::{self, Plane, Volume};
use msm::io::npy::{self, NpyArray};
use msm::io::png::{self, Window};
use msm::mask::Mask;
use msm::C32;
use ndarray::{Array1, Array2, Array3, ArrayD, Ix2, Ix3, IxDyn};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Asserts that `result` failed with a message naming `file` and containing every one of `words`.
fn assert_err<T: std::fmt::Debug>(result: msm::Result<T>, file: &Path, words: &[&str]) {
    let msg = result.expect_err("expected an error").to_string();
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "error `{msg}` does not name `{name}`");
    for w in words {
        assert!(msg.contains(w), "error `{msg}` does not mention `{w}`");
    }
}

/// Names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Deterministic, varied test values (no RNG needed): a scrambled sequence in [-1, 1).
fn value(i: usize) -> f32 {
    let x = (i as u64).wrapping_mul(2654435761) % 1_000_003;
    (x as f32 / 500_001.5) - 1.0
}

fn complex_values(n: usize) -> Vec<C32> {
    (0..n)
        .map(|i| C32::new(value(2 * i), value(2 * i + 1)))
        .collect()
}

fn bits(z: &[C32]) -> Vec<(u32, u32)> {
    z.iter().map(|z| (z.re.to_bits(), z.im.to_bits())).collect()
}

/// Writes a raw `.cfl/.hdr` pair without using the library.
fn raw_cfl(base: &Path, header: &str, data: &[C32]) {
    fs::write(base.with_extension("hdr"), header).unwrap();
    let mut bytes = Vec::new();
    for z in data {
        bytes.extend_from_slice(&z.re.to_le_bytes());
        bytes.extend_from_slice(&z.im.to_le_bytes());
    }
    fs::write(base.with_extension("cfl"), bytes).unwrap();
}

fn have_numpy() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

// ---------------------------------------------------------------------------------------------
// Atomic writes

#[test]
fn atomic_write_creates_file_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.bin");
    atomic::write_atomic(&path, |w| w.write_all(b"hello")).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"hello");
    assert_eq!(entries(dir.path()), ["out.bin"]);
}

#[test]
fn atomic_write_failing_halfway_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.bin");
    let result = atomic::write_atomic(&path, |w| {
        w.write_all(&[7u8; 100_000])?;
        Err(std::io::Error::other("writer gave up halfway"))
    });
    assert_err(result, &path, &["writer gave up halfway"]);
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn atomic_write_failing_keeps_previous_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.bin");
    fs::write(&path, b"old").unwrap();
    let result = atomic::write_atomic(&path, |w| {
        w.write_all(b"new, partial")?;
        Err(std::io::Error::other("stop"))
    });
    assert!(result.is_err());
    assert_eq!(fs::read(&path).unwrap(), b"old");
    assert_eq!(entries(dir.path()), ["out.bin"]);
}

#[test]
fn atomic_set_writes_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = ["a.cfl", "a.hdr", "b.npy"]
        .iter()
        .map(|n| (dir.path().join(n), n.as_bytes().to_vec()))
        .collect();
    atomic::write_atomic_set(&files).unwrap();
    for (path, bytes) in &files {
        assert_eq!(&fs::read(path).unwrap(), bytes);
    }
    assert_eq!(entries(dir.path()), ["a.cfl", "a.hdr", "b.npy"]);
}

#[test]
fn atomic_set_with_one_unwritable_file_writes_none() {
    let dir = tempfile::tempdir().unwrap();
    // The first destination holds an older file; the last one is a folder.
    let (old, new, folder) = (
        dir.path().join("x.cfl"),
        dir.path().join("x.hdr"),
        dir.path().join("x.png"),
    );
    fs::write(&old, b"old").unwrap();
    fs::create_dir(&folder).unwrap();
    let files = [
        (old.clone(), b"new data".to_vec()),
        (new.clone(), b"# Dimensions".to_vec()),
        (folder.clone(), b"png".to_vec()),
    ];
    assert_err(
        atomic::write_atomic_set(&files),
        &folder,
        &["is a folder", "expected a file path"],
    );
    assert_eq!(fs::read(&old).unwrap(), b"old");
    assert_eq!(entries(dir.path()), ["x.cfl", "x.png"]);
    assert!(folder.is_dir());
}

#[test]
fn atomic_write_into_missing_folder_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_such_folder").join("out.bin");
    assert_err(
        atomic::write_atomic(&path, |w| w.write_all(b"x")),
        &path,
        &["the folder", "no_such_folder", "does not exist"],
    );
    assert!(entries(dir.path()).is_empty());
    assert!(atomic::check_folder(&path).is_err());
    assert!(atomic::check_folder(&dir.path().join("out.bin")).is_ok());
}

// ---------------------------------------------------------------------------------------------
// BART .cfl/.hdr

#[test]
fn cfl_generic_round_trip_is_bit_exact_and_writes_16_dims() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("arr");
    let dims = [4, 3, 1, 2, 1, 5];
    let data = complex_values(4 * 3 * 2 * 5);
    cfl::write_array(&base, &dims, &data).unwrap();
    let header = fs::read_to_string(dir.path().join("arr.hdr")).unwrap();
    let mut lines = header.lines();
    assert_eq!(lines.next(), Some("# Dimensions"));
    let written: Vec<usize> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(written, [4, 3, 1, 2, 1, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert_eq!(
        fs::metadata(dir.path().join("arr.cfl")).unwrap().len(),
        data.len() as u64 * 8
    );
    // Any of the three spellings of the name reads the same pair.
    for name in ["arr", "arr.cfl", "arr.hdr"] {
        let back = cfl::read_array(dir.path().join(name)).unwrap();
        assert_eq!(back.dims.len(), 16);
        assert_eq!(&back.dims[..6], &dims);
        assert_eq!(bits(&back.data), bits(&data));
    }
    assert_eq!(entries(dir.path()), ["arr.cfl", "arr.hdr"]);
}

#[test]
fn cfl_axis_mapping_matches_bart_column_major_layout() {
    // Element (h, w, c) of BART dims [H, W, 1, C] sits at h + H*w + H*W*c; encode its position
    // in its value and check it lands at (c, h, w) of our array.
    let (hh, ww, cc) = (3, 5, 2);
    let mut data = vec![C32::new(0.0, 0.0); hh * ww * cc];
    for c in 0..cc {
        for w in 0..ww {
            for h in 0..hh {
                data[h + hh * w + hh * ww * c] = C32::new((100 * c + 10 * h + w) as f32, -1.0);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("k");
    // Fewer than 16 dims, extra sections around the dimensions, as BART writes them.
    raw_cfl(
        &base,
        "# Command\nphantom -k\n# Dimensions\n3 5 1 2\n# Files\n >k\n# Creator\nBART\n",
        &data,
    );
    let k = cfl::read_coils(&base).unwrap();
    assert_eq!(k.dim(), (cc, hh, ww));
    for ((c, h, w), z) in k.indexed_iter() {
        assert_eq!(*z, C32::new((100 * c + 10 * h + w) as f32, -1.0));
    }
    // Writing our array back reproduces the same bytes.
    let out = dir.path().join("k2");
    cfl::write_coils(&out, &k).unwrap();
    assert_eq!(
        fs::read(dir.path().join("k2.cfl")).unwrap(),
        fs::read(dir.path().join("k.cfl")).unwrap()
    );
    // The same data as an image: coil 0 only.
    let image_base = dir.path().join("img");
    raw_cfl(&image_base, "# Dimensions\n3 5\n", &data[..hh * ww]);
    let image = cfl::read_image(&image_base).unwrap();
    assert_eq!(image.dim(), (hh, ww));
    for ((h, w), z) in image.indexed_iter() {
        assert_eq!(z.re, (10 * h + w) as f32);
    }
}

#[test]
fn cfl_typed_round_trips_are_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let k = Array3::from_shape_vec((4, 6, 5), complex_values(120)).unwrap();
    cfl::write_coils(dir.path().join("k.cfl"), &k).unwrap();
    let k_back = cfl::read_coils(dir.path().join("k")).unwrap();
    assert_eq!(
        bits(k_back.as_slice().unwrap()),
        bits(k.as_slice().unwrap())
    );
    assert_eq!(
        cfl::read_array(dir.path().join("k")).unwrap().dims[..4],
        [6, 5, 1, 4]
    );

    let image = Array2::from_shape_vec((7, 3), complex_values(21)).unwrap();
    cfl::write_image(dir.path().join("img"), &image).unwrap();
    let image_back = cfl::read_image(dir.path().join("img")).unwrap();
    assert_eq!(
        bits(image_back.as_slice().unwrap()),
        bits(image.as_slice().unwrap())
    );

    let columns = Mask::Columns(vec![true, false, false, true, true]);
    cfl::write_mask(dir.path().join("m1"), &columns).unwrap();
    let stored = cfl::read_array(dir.path().join("m1")).unwrap();
    assert_eq!(stored.dims[..2], [1, 5]);
    let values: Vec<f32> = stored.data.iter().map(|z| z.re).collect();
    assert_eq!(values, [1.0, 0.0, 0.0, 1.0, 1.0]);
    assert_eq!(cfl::read_mask(dir.path().join("m1")).unwrap(), columns);

    let pattern = Mask::Pattern(Array2::from_shape_fn((4, 6), |(h, w)| (h * w) % 3 == 1));
    cfl::write_mask(dir.path().join("m2"), &pattern).unwrap();
    assert_eq!(cfl::read_mask(dir.path().join("m2")).unwrap(), pattern);
}

#[test]
fn cfl_mask_shapes() {
    let dir = tempfile::tempdir().unwrap();
    // Odd elements kept, with weights other than 1 (non-zero = kept).
    let ones = |n: usize| -> Vec<C32> {
        (0..n)
            .map(|i| C32::new((i % 2) as f32 * 0.5 * i as f32, 0.0))
            .collect()
    };
    // [W] as written by some tools: one dimension only.
    let vector = dir.path().join("vec");
    raw_cfl(&vector, "# Dimensions\n6\n", &ones(6));
    assert_eq!(
        cfl::read_mask(&vector).unwrap(),
        Mask::Columns(vec![false, true, false, true, false, true])
    );
    // [H, W] pattern: element (h, w) at h + H*w.
    let pattern = dir.path().join("pat");
    raw_cfl(&pattern, "# Dimensions\n2 3 1 1\n", &ones(6));
    let expected = Array2::from_shape_fn((2, 3), |(h, w)| (h + 2 * w) % 2 == 1);
    assert_eq!(
        cfl::read_mask(&pattern).unwrap(),
        Mask::Pattern(expected.clone())
    );
    // [1, H, W], the phase-encode plane `bart poisson` writes: the same pattern.
    let plane = dir.path().join("plane");
    raw_cfl(&plane, "# Dimensions\n1 2 3 1\n", &ones(6));
    assert_eq!(cfl::read_mask(&plane).unwrap(), Mask::Pattern(expected));
    // [H, W, D] is a volume, not a mask.
    let volume = dir.path().join("vol");
    raw_cfl(&volume, "# Dimensions\n2 2 3\n", &ones(12));
    assert_err(cfl::read_mask(&volume), &volume, &["READ", "[1, H, W]"]);
    // Complex mask values are refused.
    let complex = dir.path().join("cplx");
    raw_cfl(
        &complex,
        "# Dimensions\n1 2\n",
        &[C32::new(1.0, 0.0), C32::new(1.0, 0.5)],
    );
    assert_err(
        cfl::read_mask(&complex),
        &complex,
        &["element 1", "imaginary"],
    );
    // A mask with a coil dimension is refused.
    let coils = dir.path().join("coils");
    raw_cfl(&coils, "# Dimensions\n2 3 1 2\n", &ones(12));
    assert_err(cfl::read_mask(&coils), &coils, &["COIL", "mask"]);
}

#[test]
fn cfl_reads_bart_phantom_kspace() {
    if !have("bart", "version") {
        eprintln!("NOTE: `bart` is not on PATH; skipping the BART phantom test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("ph");
    let status = Command::new("bart")
        .args(["phantom", "-k", "-s", "8", "-x", "64"])
        .arg(&base)
        .status()
        .unwrap();
    assert!(status.success());
    let k = cfl::read_coils(&base).unwrap();
    assert_eq!(k.dim(), (8, 64, 64));
    assert!(k.iter().all(|z| z.re.is_finite() && z.im.is_finite()));
    // Real k-space: energy in every coil, peak near the centre of k-space.
    for coil in k.outer_iter() {
        let energy: f32 = coil.iter().map(|z| z.norm_sqr()).sum();
        assert!(energy > 0.0);
    }
    let (mut peak, mut at) = (0.0f32, (0, 0));
    for ((_, h, w), z) in k.indexed_iter() {
        if z.norm() > peak {
            (peak, at) = (z.norm(), (h, w));
        }
    }
    assert!(
        at.0.abs_diff(32) <= 2 && at.1.abs_diff(32) <= 2,
        "peak at {at:?}"
    );
}

#[test]
fn cfl_axis_mapping_agrees_with_bart_index() {
    if !have("bart", "version") {
        eprintln!("NOTE: `bart` is not on PATH; skipping the BART index test");
        return;
    }
    // Let BART build v = h + 10 w + 100 c over dims [3, 5, 1, 2].
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let status = Command::new("bart").args(args).status().unwrap();
        assert!(status.success(), "bart {args:?}");
    };
    let expand = |name: &str, steps: &[(&str, &str)]| {
        let mut current = p(name);
        for (i, (dim, n)) in steps.iter().enumerate() {
            let next = p(&format!("{name}{i}"));
            run(&["repmat", dim, n, &current, &next]);
            current = next;
        }
        current
    };
    run(&["index", "0", "3", &p("h")]);
    run(&["index", "1", "5", &p("w")]);
    run(&["index", "3", "2", &p("c")]);
    let h = expand("h", &[("1", "5"), ("3", "2")]);
    let w = expand("w", &[("0", "3"), ("3", "2")]);
    let c = expand("c", &[("0", "3"), ("1", "5")]);
    run(&["saxpy", "10", &w, &h, &p("hw")]);
    run(&["saxpy", "100", &c, &p("hw"), &p("all")]);
    let k = cfl::read_coils(p("all")).unwrap();
    assert_eq!(k.dim(), (2, 3, 5));
    for ((c, h, w), z) in k.indexed_iter() {
        assert_eq!(z.re, (h + 10 * w + 100 * c) as f32, "at ({c}, {h}, {w})");
    }
    // And BART reads what we write: `bart show` of our image.
    let image = Array2::from_shape_fn((2, 3), |(h, w)| C32::new((h + 10 * w) as f32, 0.0));
    cfl::write_image(p("ours"), &image).unwrap();
    let out = Command::new("bart")
        .args(["show", &p("ours")])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let shown: Vec<f32> = text
        .split_whitespace()
        .map(|t| {
            // Tokens look like `+1.000000e+01+0.000000e+00i`: the real part ends at the first
            // sign that does not belong to an exponent.
            let bytes = t.as_bytes();
            let end = (1..bytes.len())
                .find(|&i| matches!(bytes[i], b'+' | b'-') && bytes[i - 1] != b'e')
                .unwrap();
            t[..end].parse().unwrap()
        })
        .collect();
    // `bart show` prints dim 0 along a line: rows of the output are our columns.
    assert_eq!(
        shown,
        [0.0, 1.0, 10.0, 11.0, 20.0, 21.0],
        "bart show: {text}"
    );
}

#[test]
fn cfl_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let good = complex_values(6);

    // Missing header, missing data.
    assert_err(cfl::read_array(d("none")), &d("none.hdr"), &[]);
    fs::write(d("nodata.hdr"), "# Dimensions\n2 3\n").unwrap();
    assert_err(cfl::read_array(d("nodata")), &d("nodata.cfl"), &[]);

    // Truncated data: expected vs actual bytes.
    raw_cfl(&d("short"), "# Dimensions\n2 3 1 1\n", &good[..5]);
    assert_err(
        cfl::read_array(d("short")),
        &d("short.cfl"),
        &["48 bytes", "40 bytes"],
    );

    // Header problems.
    raw_cfl(&d("nodims"), "# Size\n2 3\n", &good);
    assert_err(
        cfl::read_array(d("nodims")),
        &d("nodims.hdr"),
        &["# Dimensions"],
    );
    raw_cfl(&d("empty"), "# Dimensions\n# Files\n", &good);
    assert_err(
        cfl::read_array(d("empty")),
        &d("empty.hdr"),
        &["no dimensions"],
    );
    raw_cfl(&d("text"), "# Dimensions\n2 three 1\n", &good);
    assert_err(cfl::read_array(d("text")), &d("text.hdr"), &["`three`"]);
    raw_cfl(&d("zero"), "# Dimensions\n2 0 3\n", &good);
    assert_err(
        cfl::read_array(d("zero")),
        &d("zero.hdr"),
        &["dimension 1 is 0"],
    );
    raw_cfl(&d("neg"), "# Dimensions\n2 -3\n", &good);
    assert_err(cfl::read_array(d("neg")), &d("neg.hdr"), &["`-3`"]);

    // Non-finite values, with the index of the first one.
    let mut nan = good.clone();
    nan[4].im = f32::NAN;
    nan[5].re = f32::INFINITY;
    raw_cfl(&d("nan"), "# Dimensions\n2 3\n", &nan);
    assert_err(
        cfl::read_array(d("nan")),
        &d("nan.cfl"),
        &["element 4", "[0, 2]"],
    );
    let mut inf = good.clone();
    inf[1].re = f32::NEG_INFINITY;
    raw_cfl(&d("inf"), "# Dimensions\n2 3\n", &inf);
    assert_err(
        cfl::read_array(d("inf")),
        &d("inf.cfl"),
        &["element 1", "inf"],
    );

    // Dimensions that do not fit the typed shape.
    let many = complex_values(3 * 2 * 2 * 3);
    let mut dims = [1; 16];
    dims[0] = 3;
    dims[1] = 2;
    dims[3] = 2;
    dims[13] = 3;
    let header = format!(
        "# Dimensions\n{}\n",
        dims.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    raw_cfl(&d("slices"), &header, &many);
    assert_err(
        cfl::read_coils(d("slices")),
        &d("slices"),
        &["SLICE", "is 3"],
    );
    raw_cfl(&d("phs2"), "# Dimensions\n3 2 2\n", &many[..12]);
    assert_err(cfl::read_coils(d("phs2")), &d("phs2"), &["PHS2"]);
    raw_cfl(&d("coils"), "# Dimensions\n3 2 1 2\n", &many[..12]);
    assert_err(cfl::read_image(d("coils")), &d("coils"), &["COIL", "image"]);
}

#[test]
fn cfl_failing_writes_leave_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("w");
    // Data length does not match the dimensions.
    assert_err(
        cfl::write_array(&base, &[2, 3], &complex_values(5)),
        &dir.path().join("w.cfl"),
        &["5 values"],
    );
    // Non-finite data.
    let mut data = complex_values(6);
    data[3].re = f32::NAN;
    assert_err(
        cfl::write_array(&base, &[2, 3], &data),
        &dir.path().join("w.cfl"),
        &["element 3"],
    );
    let mut k = Array3::from_shape_vec((1, 2, 3), complex_values(6)).unwrap();
    k[(0, 1, 1)].im = f32::INFINITY;
    assert!(cfl::write_coils(&base, &k).is_err());
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

// ---------------------------------------------------------------------------------------------
// NumPy .npy

#[test]
fn npy_round_trips_are_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let real = Array3::from_shape_fn((3, 4, 5), |(i, j, k)| value(20 * i + 5 * j + k));
    let path = dir.path().join("real.npy");
    npy::write_npy(&path, &real).unwrap();
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    assert_eq!(bytes.len(), 10 + header_len + 60 * 4);
    let back = npy::read_npy_as::<f32, Ix3>(&path).unwrap();
    assert_eq!(back.shape(), real.shape());
    assert!(back
        .iter()
        .zip(&real)
        .all(|(a, b)| a.to_bits() == b.to_bits()));

    let complex = Array2::from_shape_vec((6, 7), complex_values(42)).unwrap();
    let path = dir.path().join("complex.npy");
    npy::write_npy(&path, &complex).unwrap();
    let back = npy::read_npy_as::<C32, Ix2>(&path).unwrap();
    assert_eq!(
        bits(back.as_slice().unwrap()),
        bits(complex.as_slice().unwrap())
    );

    // 1-D (shape "(n,)") and 0-D shapes.
    let vector = Array1::from_vec(vec![1.0f32, 0.0, 0.0, 1.0]);
    let path = dir.path().join("mask.npy");
    npy::write_npy(&path, &vector).unwrap();
    match npy::read_npy(&path).unwrap() {
        NpyArray::Real(a) => assert_eq!(a, vector.into_dyn()),
        other => panic!("expected real, got {other:?}"),
    }
    let scalar = ArrayD::from_elem(IxDyn(&[]), C32::new(2.5, -1.0));
    let path = dir.path().join("scalar.npy");
    npy::write_npy(&path, &scalar).unwrap();
    assert_eq!(npy::read_npy(&path).unwrap(), NpyArray::Complex(scalar));
}

#[test]
fn npy_typed_reads_check_dtype_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let real = Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f32);
    let path = dir.path().join("r.npy");
    npy::write_npy(&path, &real).unwrap();
    // Real widens to complex.
    let widened = npy::read_npy_as::<C32, Ix2>(&path).unwrap();
    assert_eq!(widened, real.mapv(|v| C32::new(v, 0.0)));
    // Wrong dimensionality.
    assert_err(
        npy::read_npy_as::<f32, Ix3>(&path),
        &path,
        &["3-D", "[2, 3]"],
    );
    // Complex does not narrow to real.
    let path = dir.path().join("c.npy");
    npy::write_npy(&path, &real.mapv(|v| C32::new(v, 1.0))).unwrap();
    assert_err(
        npy::read_npy_as::<f32, Ix2>(&path),
        &path,
        &["real", "complex", "[2, 3]"],
    );
}

#[test]
fn headers_alone_give_the_shape_and_the_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    // .npy: the shape the full read gives, from the header; a file cut inside its header fails
    // as the full read does, and one cut in its data still has its shape.
    let a = ndarray::Array3::<C32>::zeros((2, 3, 4));
    npy::write_npy(d("a.npy"), &a).unwrap();
    assert_eq!(npy::read_shape(d("a.npy")).unwrap(), [2, 3, 4]);
    let bytes = fs::read(d("a.npy")).unwrap();
    fs::write(d("head.npy"), &bytes[..20]).unwrap();
    assert_err(npy::read_shape(d("head.npy")), &d("head.npy"), &["header"]);
    assert_err(npy::read_npy(d("head.npy")), &d("head.npy"), &["header"]);
    fs::write(d("cut.npy"), &bytes[..bytes.len() - 8]).unwrap();
    assert_eq!(npy::read_shape(d("cut.npy")).unwrap(), [2, 3, 4]);
    fs::write(d("text.npy"), b"not numpy").unwrap();
    assert_err(
        npy::read_shape(d("text.npy")),
        &d("text.npy"),
        &["bad magic"],
    );
    // .cfl: the dimensions read_array gives, from the .hdr alone.
    cfl::write_array(d("b"), &[4, 3, 1, 2], &[C32::new(1.0, 0.0); 24]).unwrap();
    assert_eq!(
        cfl::read_dims(d("b")).unwrap(),
        cfl::read_array(d("b")).unwrap().dims
    );
    fs::remove_file(d("b.cfl")).unwrap();
    assert_eq!(cfl::read_dims(d("b.cfl")).unwrap()[..4], [4, 3, 1, 2]);
}

/// A hand-built `.npy` file: version 1.0 header `dict` and raw data bytes.
fn raw_npy(path: &Path, dict: &str, data: &[u8]) {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    fs::write(path, bytes).unwrap();
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn npy_reads_fortran_order_and_double_precision() {
    let dir = tempfile::tempdir().unwrap();
    // Fortran order: [[0, 1, 2], [3, 4, 5]] is stored column by column.
    let path = dir.path().join("f.npy");
    raw_npy(
        &path,
        "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
        &f32_bytes(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]),
    );
    let a = npy::read_npy_as::<f32, Ix2>(&path).unwrap();
    assert_eq!(
        a,
        Array2::from_shape_fn((2, 3), |(i, j)| (3 * i + j) as f32)
    );
    // <c16 converts to complex64.
    let path = dir.path().join("c16.npy");
    let data: Vec<u8> = [1.5f64, -2.0, 0.25, 1e-3]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    raw_npy(
        &path,
        "{'descr': '<c16', 'fortran_order': False, 'shape': (2,), }",
        &data,
    );
    let c = npy::read_npy_as::<C32, ndarray::Ix1>(&path).unwrap();
    assert_eq!(c.to_vec(), [C32::new(1.5, -2.0), C32::new(0.25, 1e-3)]);
}

#[test]
fn npy_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let six = f32_bytes(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);

    fs::write(d("magic.npy"), b"PK\x03\x04 not numpy at all").unwrap();
    assert_err(npy::read_npy(d("magic.npy")), &d("magic.npy"), &["magic"]);
    assert_err(npy::read_npy(d("absent.npy")), &d("absent.npy"), &[]);

    raw_npy(
        &d("int.npy"),
        "{'descr': '<i4', 'fortran_order': False, 'shape': (6,), }",
        &six,
    );
    assert_err(
        npy::read_npy(d("int.npy")),
        &d("int.npy"),
        &["unsupported dtype <i4"],
    );
    raw_npy(
        &d("be.npy"),
        "{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }",
        &six,
    );
    assert_err(
        npy::read_npy(d("be.npy")),
        &d("be.npy"),
        &["big-endian", ">f4"],
    );
    raw_npy(
        &d("struct.npy"),
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }",
        &six,
    );
    assert_err(
        npy::read_npy(d("struct.npy")),
        &d("struct.npy"),
        &["unsupported dtype"],
    );
    raw_npy(
        &d("noshape.npy"),
        "{'descr': '<f4', 'fortran_order': False, }",
        &six,
    );
    assert_err(
        npy::read_npy(d("noshape.npy")),
        &d("noshape.npy"),
        &["'shape'"],
    );

    raw_npy(
        &d("short.npy"),
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }",
        &six,
    );
    assert_err(
        npy::read_npy(d("short.npy")),
        &d("short.npy"),
        &["32 bytes", "24"],
    );

    let mut nan = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
    nan[4] = f32::NAN;
    raw_npy(
        &d("nan.npy"),
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        &f32_bytes(&nan),
    );
    assert_err(
        npy::read_npy(d("nan.npy")),
        &d("nan.npy"),
        &["element 4", "[1, 1]"],
    );
    let inf: Vec<u8> = [0.0f32, 0.0, f32::INFINITY, 0.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    raw_npy(
        &d("inf.npy"),
        "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }",
        &inf,
    );
    assert_err(npy::read_npy(d("inf.npy")), &d("inf.npy"), &["element 1"]);

    // Writing a non-finite value fails and leaves nothing.
    let out = dir.path().join("sub");
    fs::create_dir(&out).unwrap();
    let bad = Array2::from_shape_fn((2, 2), |(i, j)| if i + j == 2 { f32::NAN } else { 0.0 });
    assert_err(
        npy::write_npy(out.join("x.npy"), &bad),
        &out.join("x.npy"),
        &["element 3"],
    );
    assert!(entries(&out).is_empty());
}

#[test]
fn npy_interoperates_with_numpy() {
    if !have_numpy() {
        eprintln!("NOTE: python3 with numpy is not available; skipping the NumPy fixture test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    // Values defined by formula on both sides: a[i,j,k] = i + 0.5 j - 0.25 k (+ i(j + 0.125 k)).
    let script = r#"
import sys, numpy as np
out = sys.argv[1]
i, j, k = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing='ij')
re = i + 0.5 * j - 0.25 * k
im = j + 0.125 * k
np.save(out + '/c8.npy', (re + 1j * im).astype(np.complex64))
np.save(out + '/f4.npy', re.astype(np.float32))
np.save(out + '/c16.npy', re + 1j * im)
np.save(out + '/f8.npy', re)
np.save(out + '/f4_fortran.npy', np.asfortranarray(re.astype(np.float32)))
with open(out + '/c8_v2.npy', 'wb') as f:
    np.lib.format.write_array(f, (re + 1j * im).astype(np.complex64), version=(2, 0))
"#;
    let status = Command::new("python3")
        .args(["-c", script, dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let expected = Array3::from_shape_fn((3, 4, 5), |(i, j, k)| {
        C32::new(
            i as f32 + 0.5 * j as f32 - 0.25 * k as f32,
            j as f32 + 0.125 * k as f32,
        )
    });
    for name in ["c8.npy", "c16.npy", "c8_v2.npy"] {
        let a = npy::read_npy_as::<C32, Ix3>(d(name)).unwrap();
        assert_eq!(a, expected, "{name}");
    }
    for name in ["f4.npy", "f8.npy", "f4_fortran.npy"] {
        let a = npy::read_npy_as::<f32, Ix3>(d(name)).unwrap();
        assert_eq!(a, expected.mapv(|z| z.re), "{name}");
    }
    // NumPy reads what we write, with the same values, dtypes and shapes.
    npy::write_npy(d("ours_c8.npy"), &expected).unwrap();
    npy::write_npy(d("ours_f4.npy"), &expected.mapv(|z| z.re)).unwrap();
    let check = r#"
import sys, numpy as np
out = sys.argv[1]
i, j, k = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing='ij')
re = (i + 0.5 * j - 0.25 * k).astype(np.float32)
im = (j + 0.125 * k).astype(np.float32)
c = np.load(out + '/ours_c8.npy')
f = np.load(out + '/ours_f4.npy')
assert c.dtype == np.complex64 and c.shape == (3, 4, 5), (c.dtype, c.shape)
assert f.dtype == np.float32 and f.shape == (3, 4, 5), (f.dtype, f.shape)
assert np.array_equal(c.real, re) and np.array_equal(c.imag, im)
assert np.array_equal(f, re)
"#;
    let status = Command::new("python3")
        .args(["-c", check, dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "numpy rejected our .npy files");
}

// ---------------------------------------------------------------------------------------------
// NIfTI

/// A hand-built single-file NIfTI-1 image.
struct RawNifti {
    big_endian: bool,
    dim: [i16; 8],
    datatype: i16,
    bitpix: i16,
    pixdim: [f32; 8],
    vox_offset: f32,
    slope: f32,
    inter: f32,
    magic: [u8; 4],
    sizeof_hdr: i32,
}

impl RawNifti {
    fn new(dims: [i16; 3], datatype: i16, bitpix: i16) -> Self {
        RawNifti {
            big_endian: false,
            dim: [3, dims[0], dims[1], dims[2], 1, 1, 1, 1],
            datatype,
            bitpix,
            pixdim: [1.0, 0.5, 0.75, 2.0, 0.0, 0.0, 0.0, 0.0],
            vox_offset: 352.0,
            slope: 0.0,
            inter: 0.0,
            magic: *b"n+1\0",
            sizeof_hdr: 348,
        }
    }

    /// Header plus padding up to `vox_offset`, then `data` (already in the file's byte order).
    fn bytes(&self, data: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; self.vox_offset as usize];
        let be = self.big_endian;
        let mut put = |at: usize, b: &[u8]| {
            let mut b = b.to_vec();
            if be {
                b.reverse();
            }
            h[at..at + b.len()].copy_from_slice(&b);
        };
        put(0, &self.sizeof_hdr.to_le_bytes());
        for (i, d) in self.dim.iter().enumerate() {
            put(40 + 2 * i, &d.to_le_bytes());
        }
        put(70, &self.datatype.to_le_bytes());
        put(72, &self.bitpix.to_le_bytes());
        for (i, p) in self.pixdim.iter().enumerate() {
            put(76 + 4 * i, &p.to_le_bytes());
        }
        put(108, &self.vox_offset.to_le_bytes());
        put(112, &self.slope.to_le_bytes());
        put(116, &self.inter.to_le_bytes());
        h[344..348].copy_from_slice(&self.magic);
        h.extend_from_slice(data);
        h
    }
}

/// Encodes `values` (i fastest) in the file's datatype and byte order.
fn encode(values: &[f64], datatype: i16, big_endian: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in values {
        let mut b = match datatype {
            2 => vec![v as u8],
            256 => vec![(v as i8) as u8],
            4 => (v as i16).to_le_bytes().to_vec(),
            512 => (v as u16).to_le_bytes().to_vec(),
            8 => (v as i32).to_le_bytes().to_vec(),
            16 => (v as f32).to_le_bytes().to_vec(),
            64 => v.to_le_bytes().to_vec(),
            _ => unreachable!(),
        };
        if big_endian {
            b.reverse();
        }
        out.extend(b);
    }
    out
}

#[test]
fn nifti_reads_every_datatype_in_both_byte_orders() {
    let dir = tempfile::tempdir().unwrap();
    let (nx, ny, nz) = (4usize, 3usize, 2usize);
    // Value at (x, y, z) = x + 4 y + 12 z - 5 (fits every type but the unsigned ones, see below).
    let at = |x: usize, y: usize, z: usize| (x + nx * y + nx * ny * z) as f64;
    let types: [(i16, i16, f64); 7] = [
        (2, 8, 0.0),
        (256, 8, -5.0),
        (4, 16, -5.0),
        (512, 16, 40000.0),
        (8, 32, -100000.0),
        (16, 32, -0.5),
        (64, 64, -0.25),
    ];
    for (datatype, bitpix, offset) in types {
        for big_endian in [false, true] {
            let values: Vec<f64> = (0..nx * ny * nz).map(|n| n as f64 + offset).collect();
            let mut raw = RawNifti::new([nx as i16, ny as i16, nz as i16], datatype, bitpix);
            raw.big_endian = big_endian;
            let path = dir.path().join(format!("t{datatype}_{big_endian}.nii"));
            fs::write(&path, raw.bytes(&encode(&values, datatype, big_endian))).unwrap();
            let volume = nifti::read_nifti(&path).unwrap();
            assert_eq!(volume.data.dim(), (nx, ny, nz));
            assert_eq!(volume.voxel_size, [0.5, 0.75, 2.0]);
            for ((x, y, z), v) in volume.data.indexed_iter() {
                assert_eq!(
                    *v as f64,
                    at(x, y, z) + offset,
                    "type {datatype} at {x},{y},{z}"
                );
            }
        }
    }
}

#[test]
fn nifti_applies_scaling_offset_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<f64> = (0..24).map(|n| n as f64).collect();
    let mut raw = RawNifti::new([2, 3, 4], 4, 16);
    raw.big_endian = true;
    raw.slope = 0.5;
    raw.inter = -3.0;
    raw.vox_offset = 400.0; // room for an extension
    let bytes = raw.bytes(&encode(&values, 4, true));
    let path = dir.path().join("scaled.nii.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    fs::write(&path, gz.finish().unwrap()).unwrap();
    let volume = nifti::read_nifti(&path).unwrap();
    for ((x, y, z), v) in volume.data.indexed_iter() {
        let n = x + 2 * y + 6 * z;
        assert_eq!(*v, 0.5 * n as f32 - 3.0);
    }
    // A 4-D file whose fourth dimension is 1 is a volume.
    let mut raw = RawNifti::new([2, 3, 4], 2, 8);
    raw.dim[0] = 4;
    let path = dir.path().join("four.nii");
    fs::write(&path, raw.bytes(&encode(&values, 2, false))).unwrap();
    assert_eq!(nifti::read_nifti(&path).unwrap().data.dim(), (2, 3, 4));
    // A 2-D file is a volume with one slice.
    let mut raw = RawNifti::new([4, 6, 7], 2, 8);
    raw.dim[0] = 2;
    let path = dir.path().join("two.nii");
    fs::write(&path, raw.bytes(&encode(&values, 2, false))).unwrap();
    assert_eq!(nifti::read_nifti(&path).unwrap().data.dim(), (4, 6, 1));
}

#[test]
fn nifti_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let volume = Volume {
        data: Array3::from_shape_fn((5, 4, 3), |(x, y, z)| value(x + 5 * y + 20 * z) * 1000.0),
        voxel_size: [1.0, 1.25, 3.0],
    };
    for name in ["v.nii", "v.nii.gz"] {
        let path = dir.path().join(name);
        nifti::write_nifti(&path, &volume).unwrap();
        let back = nifti::read_nifti(&path).unwrap();
        assert_eq!(back.voxel_size, volume.voxel_size);
        assert!(back
            .data
            .iter()
            .zip(&volume.data)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    // The .nii.gz is really compressed, and the plain file has the documented layout.
    let plain = fs::read(dir.path().join("v.nii")).unwrap();
    assert_eq!(plain.len(), 352 + 60 * 4);
    assert_eq!(&plain[344..348], b"n+1\0");
    assert_eq!(
        &fs::read(dir.path().join("v.nii.gz")).unwrap()[..2],
        &[0x1f, 0x8b]
    );
    // x fastest on disk.
    let second = f32::from_le_bytes(plain[356..360].try_into().unwrap());
    assert_eq!(second, volume.data[(1, 0, 0)]);
    assert_eq!(entries(dir.path()), ["v.nii", "v.nii.gz"]);
}

#[test]
fn nifti_slices_are_oriented_for_display() {
    let (nx, ny, nz) = (4, 5, 6);
    let volume = Volume {
        data: Array3::from_shape_fn((nx, ny, nz), |(x, y, z)| (x + 10 * y + 100 * z) as f32),
        voxel_size: [1.0; 3],
    };
    let v = |x: usize, y: usize, z: usize| (x + 10 * y + 100 * z) as f32;
    // Axial: anterior (largest y) on top, x to the right.
    let axial = volume.slice(Plane::Axial, 2).unwrap();
    assert_eq!(axial.dim(), (ny, nx));
    for ((r, c), p) in axial.indexed_iter() {
        assert_eq!(*p, v(c, ny - 1 - r, 2));
    }
    // Coronal: superior (largest z) on top, x to the right.
    let coronal = volume.slice(Plane::Coronal, 3).unwrap();
    assert_eq!(coronal.dim(), (nz, nx));
    for ((r, c), p) in coronal.indexed_iter() {
        assert_eq!(*p, v(c, 3, nz - 1 - r));
    }
    // Sagittal: superior on top, anterior (y) to the right.
    let sagittal = volume.slice(Plane::Sagittal, 1).unwrap();
    assert_eq!(sagittal.dim(), (nz, ny));
    for ((r, c), p) in sagittal.indexed_iter() {
        assert_eq!(*p, v(1, c, nz - 1 - r));
    }
    assert_eq!(volume.slice_count(Plane::Axial), nz);
    assert_eq!(volume.slice_count(Plane::Coronal), ny);
    assert_eq!(volume.slice_count(Plane::Sagittal), nx);
    let err = volume.slice(Plane::Axial, nz).unwrap_err().to_string();
    assert!(
        err.contains("out of range") && err.contains("6 slices"),
        "{err}"
    );
    assert!(volume.slice(Plane::Sagittal, 99).is_err());
}

#[test]
fn nifti_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let data = encode(&(0..24).map(|n| n as f64).collect::<Vec<_>>(), 2, false);
    let write =
        |name: &str, raw: &RawNifti, data: &[u8]| fs::write(d(name), raw.bytes(data)).unwrap();

    let mut raw = RawNifti::new([2, 3, 4], 2, 8);
    raw.sizeof_hdr = 352;
    write("size.nii", &raw, &data);
    assert_err(
        nifti::read_nifti(d("size.nii")),
        &d("size.nii"),
        &["sizeof_hdr", "348"],
    );

    let mut raw = RawNifti::new([2, 3, 4], 2, 8);
    raw.magic = *b"abc\0";
    write("magic.nii", &raw, &data);
    assert_err(
        nifti::read_nifti(d("magic.nii")),
        &d("magic.nii"),
        &["magic"],
    );

    let raw = RawNifti::new([2, 3, 4], 32, 64);
    write("complex.nii", &raw, &[0; 24 * 8]);
    assert_err(
        nifti::read_nifti(d("complex.nii")),
        &d("complex.nii"),
        &["datatype 32", "complex64"],
    );

    let raw = RawNifti::new([2, 3, 4], 4, 16);
    write("short.nii", &raw, &[0; 47]);
    assert_err(
        nifti::read_nifti(d("short.nii")),
        &d("short.nii"),
        &["truncated", "48 bytes", "47"],
    );

    let mut raw = RawNifti::new([2, 3, 2], 2, 8);
    raw.dim[0] = 4;
    raw.dim[4] = 2;
    write("4d.nii", &raw, &data);
    assert_err(
        nifti::read_nifti(d("4d.nii")),
        &d("4d.nii"),
        &["3-D volume"],
    );

    let mut raw = RawNifti::new([2, 3, 4], 16, 32);
    raw.big_endian = true;
    let mut values = vec![1.0; 24];
    values[7] = f64::NAN;
    write("nan.nii", &raw, &encode(&values, 16, true));
    assert_err(
        nifti::read_nifti(d("nan.nii")),
        &d("nan.nii"),
        &["[1, 0, 1]"],
    );

    fs::write(d("tiny.nii"), b"not nifti").unwrap();
    assert_err(
        nifti::read_nifti(d("tiny.nii")),
        &d("tiny.nii"),
        &["shorter"],
    );
    fs::write(d("bad.nii.gz"), [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    assert_err(
        nifti::read_nifti(d("bad.nii.gz")),
        &d("bad.nii.gz"),
        &["gzip"],
    );
    assert_err(nifti::read_nifti(d("absent.nii")), &d("absent.nii"), &[]);

    // A failing write leaves nothing.
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let mut volume = Volume {
        data: Array3::zeros((2, 2, 2)),
        voxel_size: [1.0; 3],
    };
    volume.data[(1, 1, 0)] = f32::INFINITY;
    assert_err(
        nifti::write_nifti(out.join("v.nii.gz"), &volume),
        &out.join("v.nii.gz"),
        &["[1, 1, 0]"],
    );
    assert!(entries(&out).is_empty());
}

fn colin27() -> Option<PathBuf> {
    let listed = Command::new("dpkg")
        .args(["-L", "mricron-data"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.ends_with("/ch2.nii.gz"))
                .map(PathBuf::from)
        });
    listed
        .into_iter()
        .chain([
            PathBuf::from("/usr/share/mricron/templates/ch2.nii.gz"),
            PathBuf::from("/usr/share/data/mricron/templates/ch2.nii.gz"),
        ])
        .find(|p| p.exists())
}

#[test]
fn nifti_reads_colin27_template() {
    let Some(path) = colin27() else {
        eprintln!("NOTE: ch2.nii.gz (package mricron-data) not found; skipping the Colin27 test");
        return;
    };
    let volume = nifti::read_nifti(&path).unwrap();
    assert_eq!(volume.data.dim(), (181, 217, 181));
    assert_eq!(volume.voxel_size, [1.0, 1.0, 1.0]);
    let (min, max) = volume
        .data
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert_eq!(min, 0.0);
    assert!((100.0..=255.0).contains(&max), "max {max}");
    assert!(
        volume.data.iter().all(|v| v.fract() == 0.0),
        "uint8 data must be integral"
    );
    let mean = volume.data.mean().unwrap();
    assert!((10.0..100.0).contains(&mean), "mean {mean}");
    // Head in the middle, air in the corners.
    assert!(volume.data[(90, 108, 90)] > 0.0);
    assert_eq!(volume.data[(0, 0, 0)], 0.0);
    let axial = volume.slice(Plane::Axial, 90).unwrap();
    assert_eq!(axial.dim(), (217, 181));
    // The skull is at the top of the head: the topmost axial slices hold less tissue than the
    // middle one, and in a mid-sagittal slice the top rows (superior) are nearly empty.
    let sagittal = volume.slice(Plane::Sagittal, 90).unwrap();
    assert_eq!(sagittal.dim(), (181, 217));
    let row_mass = |r: usize| sagittal.row(r).sum();
    assert!(
        row_mass(2) < 0.1 * row_mass(90),
        "superior rows should be above the head"
    );
    assert!(
        row_mass(178) > 0.5 * row_mass(90),
        "inferior rows should hold the neck"
    );

    // Independent reference: NumPy reads the raw bytes after the 352-byte header, x fastest.
    if !have_numpy() {
        eprintln!("NOTE: python3 with numpy is not available; skipping the Colin27 cross-check");
        return;
    }
    let script = r#"
import sys, gzip, numpy as np
b = gzip.open(sys.argv[1]).read()
d = np.frombuffer(b[352:], np.uint8).reshape(181, 217, 181).transpose(2, 1, 0)
print(int(d.astype(np.int64).sum()), d[60, 150, 100], d[120, 40, 70], d[90, 108, 90])
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let numbers: Vec<f64> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    let total: f64 = volume.data.iter().map(|&v| v as f64).sum();
    assert_eq!(total, numbers[0]);
    assert_eq!(volume.data[(60, 150, 100)] as f64, numbers[1]);
    assert_eq!(volume.data[(120, 40, 70)] as f64, numbers[2]);
    assert_eq!(volume.data[(90, 108, 90)] as f64, numbers[3]);
}

// ---------------------------------------------------------------------------------------------
// PNG

/// A hand-built PNG (zlib via flate2, filter 0 on every row, optional palette).
fn raw_png(path: &Path, width: u32, height: u32, color: u8, depth: u8, samples: &[u16]) {
    raw_png_with_palette(path, width, height, color, depth, samples, &[]);
}

fn raw_png_with_palette(
    path: &Path,
    width: u32,
    height: u32,
    color: u8,
    depth: u8,
    samples: &[u16],
    palette: &[u8],
) {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let channels = match color {
        0 | 3 => 1,
        4 => 2,
        2 => 3,
        6 => 4,
        _ => unreachable!(),
    };
    let per_row = width as usize * channels;
    let mut raw = Vec::new();
    for row in samples.chunks(per_row) {
        raw.push(0u8);
        for &s in row {
            if depth == 8 {
                raw.push(s as u8);
            } else {
                raw.extend_from_slice(&s.to_be_bytes());
            }
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).unwrap();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[depth, color, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    if !palette.is_empty() {
        chunk(&mut out, b"PLTE", palette);
    }
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    fs::write(path, out).unwrap();
}

#[test]
fn png_reads_gray_alpha_rgb_and_16_bit() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    // 3 wide, 2 high; row 0 is the top row of the file.
    raw_png(&d("g8.png"), 3, 2, 0, 8, &[0, 51, 255, 102, 153, 204]);
    let g = png::read_png(d("g8.png")).unwrap();
    assert_eq!(g.dim(), (2, 3));
    let expected = [[0.0, 51.0, 255.0], [102.0, 153.0, 204.0]];
    for ((r, c), v) in g.indexed_iter() {
        assert_eq!(*v, expected[r][c] as f32 / 255.0);
    }
    // Gray + alpha: alpha ignored.
    raw_png(
        &d("ga.png"),
        3,
        2,
        4,
        8,
        &[0, 9, 51, 9, 255, 0, 102, 1, 153, 2, 204, 3],
    );
    assert_eq!(png::read_png(d("ga.png")).unwrap(), g);
    // 16-bit gray keeps its precision.
    raw_png(&d("g16.png"), 2, 1, 0, 16, &[1, 65535]);
    let g16 = png::read_png(d("g16.png")).unwrap();
    assert_eq!(g16[(0, 0)], 1.0 / 65535.0);
    assert_eq!(g16[(0, 1)], 1.0);
    // RGB (8-bit) and RGBA (16-bit): BT.601 luminance.
    raw_png(&d("rgb.png"), 2, 1, 2, 8, &[255, 0, 0, 10, 200, 30]);
    let rgb = png::read_png(d("rgb.png")).unwrap();
    assert!((rgb[(0, 0)] - 0.299).abs() < 1e-6);
    let lum = (0.299 * 10.0 + 0.587 * 200.0 + 0.114 * 30.0) / 255.0;
    assert!((rgb[(0, 1)] - lum).abs() < 1e-6);
    raw_png(
        &d("rgba.png"),
        1,
        2,
        6,
        16,
        &[0, 65535, 0, 7, 65535, 65535, 65535, 0],
    );
    let rgba = png::read_png(d("rgba.png")).unwrap();
    assert!((rgba[(0, 0)] - 0.587).abs() < 1e-6);
    assert!((rgba[(1, 0)] - 1.0).abs() < 1e-6);
    // Palette: index 1 is pure blue, index 0 white.
    raw_png_with_palette(
        &d("pal.png"),
        2,
        1,
        3,
        8,
        &[1, 0],
        &[255, 255, 255, 0, 0, 255],
    );
    let pal = png::read_png(d("pal.png")).unwrap();
    assert!((pal[(0, 0)] - 0.114).abs() < 1e-6);
    assert!((pal[(0, 1)] - 1.0).abs() < 1e-6);
    // A file cut short is a format error that says so (not the OS's bare "unexpected end of
    // file"), as is one that is no PNG at all.
    let whole = std::fs::read(d("rgb.png")).unwrap();
    std::fs::write(d("cut.png"), &whole[..whole.len() - 20]).unwrap();
    assert_err(
        png::read_png(d("cut.png")),
        &d("cut.png"),
        &["not a readable PNG", "ends early"],
    );
    std::fs::write(d("text.png"), b"not an image").unwrap();
    assert_err(
        png::read_png(d("text.png")),
        &d("text.png"),
        &["not a readable PNG"],
    );
}

#[test]
fn png_round_trip_is_exact_with_unit_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img.png");
    // Every 8-bit level once, in a non-square image with a distinct top row.
    let image = Array2::from_shape_fn((16, 16), |(r, c)| (r * 16 + c) as f32 / 255.0);
    png::write_png(&path, &image, Window::Fixed(0.0, 1.0)).unwrap();
    let back = png::read_png(&path).unwrap();
    assert!(back
        .iter()
        .zip(&image)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let wide = Array2::from_shape_fn((3, 7), |(r, c)| if r == 0 { 1.0 } else { c as f32 / 10.0 });
    png::write_png(&path, &wide, Window::Fixed(0.0, 1.0)).unwrap();
    let back = png::read_png(&path).unwrap();
    assert_eq!(back.dim(), (3, 7));
    assert!(back.row(0).iter().all(|&v| v == 1.0));
    assert_eq!(back[(2, 5)], 128.0 / 255.0);
    assert_eq!(entries(dir.path()), ["img.png"]);
}

#[test]
fn png_windows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.png");
    // 1000 pixels 0..999: the 99.5th percentile (nearest rank 995) is 994.
    let image = Array2::from_shape_fn((10, 100), |(r, c)| (r * 100 + c) as f32);
    assert_eq!(Window::Auto.resolve(&image), (0.0, 994.0));
    png::write_png(&path, &image, Window::Auto).unwrap();
    let back = png::read_png(&path).unwrap();
    assert_eq!(back[(0, 0)], 0.0);
    assert_eq!(back[(9, 94)], 1.0);
    assert_eq!(back[(9, 99)], 1.0); // clipped
    assert_eq!(back[(4, 97)], (497.0f32 * 255.0 / 994.0).round() / 255.0);
    // Negative values count by magnitude for the auto window; a fixed window clips both ends.
    let signed = Array2::from_shape_fn((1, 4), |(_, c)| [-4.0, -1.0, 1.0, 2.0][c]);
    assert_eq!(Window::Auto.resolve(&signed), (0.0, 4.0));
    png::write_png(&path, &signed, Window::Fixed(-1.0, 1.0)).unwrap();
    let back = png::read_png(&path).unwrap();
    assert_eq!(back.row(0).to_vec(), [0.0, 0.0, 1.0, 1.0]);
    // Sparse and all-zero images.
    let mut sparse = Array2::<f32>::zeros((20, 20));
    sparse[(3, 3)] = 5.0;
    assert_eq!(Window::Auto.resolve(&sparse), (0.0, 5.0));
    assert_eq!(
        Window::Auto.resolve(&Array2::<f32>::zeros((2, 2))),
        (0.0, 1.0)
    );
}

#[test]
fn png_tiles_images_into_a_grid() {
    let images: Vec<Array2<f32>> = (0..3)
        .map(|i| Array2::from_elem((2, 3), (i + 1) as f32))
        .collect();
    let grid = png::tile(&images, 2, 1).unwrap();
    assert_eq!(grid.dim(), (5, 7));
    let expected = [
        [1, 1, 1, 0, 2, 2, 2],
        [1, 1, 1, 0, 2, 2, 2],
        [0, 0, 0, 0, 0, 0, 0],
        [3, 3, 3, 0, 0, 0, 0],
        [3, 3, 3, 0, 0, 0, 0],
    ];
    for ((r, c), v) in grid.indexed_iter() {
        assert_eq!(*v, expected[r][c] as f32, "at ({r}, {c})");
    }
    // Views work too; more columns than images gives one row.
    let views: Vec<_> = images.iter().map(|a| a.view()).collect();
    assert_eq!(png::tile(&views, 10, 0).unwrap().dim(), (2, 9));
    assert!(png::tile::<Array2<f32>>(&[], 2, 1).is_err());
    assert!(png::tile(&images, 0, 1).is_err());
    let mixed = vec![Array2::<f32>::zeros((2, 3)), Array2::zeros((3, 2))];
    let err = png::tile(&mixed, 2, 1).unwrap_err().to_string();
    assert!(err.contains("image 1"), "{err}");
}

#[test]
fn png_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    fs::write(d("fake.png"), b"GIF89a not a png").unwrap();
    assert_err(png::read_png(d("fake.png")), &d("fake.png"), &["PNG"]);
    assert_err(png::read_png(d("absent.png")), &d("absent.png"), &[]);
    // A PNG cut short.
    let good = Array2::from_shape_fn((8, 8), |(r, c)| (r * c) as f32);
    png::write_png(d("good.png"), &good, Window::Auto).unwrap();
    let bytes = fs::read(d("good.png")).unwrap();
    fs::write(d("cut.png"), &bytes[..bytes.len() / 2]).unwrap();
    assert_err(png::read_png(d("cut.png")), &d("cut.png"), &[]);

    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let mut nan = good.clone();
    nan[(2, 5)] = f32::NAN;
    assert_err(
        png::write_png(out.join("n.png"), &nan, Window::Auto),
        &out.join("n.png"),
        &["row 2, column 5"],
    );
    assert_err(
        png::write_png(out.join("w.png"), &good, Window::Fixed(1.0, 1.0)),
        &out.join("w.png"),
        &["window"],
    );
    assert_err(
        png::write_png(
            out.join("e.png"),
            &Array2::<f32>::zeros((0, 4)),
            Window::Auto,
        ),
        &out.join("e.png"),
        &["empty"],
    );
    assert!(entries(&out).is_empty());
}
