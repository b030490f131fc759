//! BART `.cfl`/`.hdr` pairs.
//!
//! The `.hdr` file is text: a `# Dimensions` line followed by one line of integers (BART writes
//! 16; fewer are accepted and the missing ones are 1). Other `#` sections may follow. The `.cfl`
//! file holds the elements as complex64 (interleaved little-endian float32 real and imaginary
//! parts), column-major: dimension 0 varies fastest.
//!
//! # Axis mapping
//! BART dimension 0 (READ) is our height (row) axis, dimension 1 (PHS1) our width (column, the
//! phase-encode) axis and dimension 3 (COIL) our coil axis:
//!
//! | our array                         | BART dims          | element `(c, h, w)` / `(h, w)` at  |
//! |-----------------------------------|--------------------|------------------------------------|
//! | k-space, maps `(coils, H, W)`     | `[H, W, 1, coils]` | `h + H * w + H * W * c`            |
//! | image `(H, W)`                    | `[H, W]`           | `h + H * w`                        |
//! | mask, 2-D pattern `(H, W)`        | `[H, W]`           | `h + H * w`                        |
//! | mask, 1-D over the width `(W)`    | `[1, W]` or `[W]`  | `w`                                |
//!
//! Masks are [`crate::mask::Mask`]. A mask file is read as [`Mask::Columns`] when it has a
//! single non-trivial dimension (`[1, W]`, or `[W]` as some tools write it) and is written as
//! `[1, W]`; a pattern is `[H, W]`. Mask values are real: non-zero means kept.
//! All other dimensions must be 1 for the typed readers (one slice, one map set, ...).
//!
//! Every path argument may be the base name or either file of the pair (`x`, `x.cfl`, `x.hdr`).
//! Non-finite values are rejected when reading and when writing.

use super::{atomic, first_non_finite};
use crate::mask::Mask;
use crate::{Error, Result, C32};
use ndarray::{Array2, Array3, ArrayRef2, ArrayRef3, ShapeBuilder};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Number of dimensions BART uses and that [`write_array`] always writes.
pub const BART_DIMS: usize = 16;

/// BART's names for its 16 dimensions, used in error messages.
const DIM_NAMES: [&str; BART_DIMS] = [
    "READ", "PHS1", "PHS2", "COIL", "MAPS", "TE", "COEFF", "COEFF2", "ITER", "CSHIFT", "TIME",
    "TIME2", "LEVEL", "SLICE", "AVG", "BATCH",
];

/// A BART array as stored: its dimensions (as many as the header lists) and its elements in
/// column-major order (dimension 0 fastest).
#[derive(Debug, Clone, PartialEq)]
pub struct CflArray {
    /// Dimensions from the header; absent trailing dimensions are 1.
    pub dims: Vec<usize>,
    /// Elements, column-major; `data.len()` is the product of `dims`.
    pub data: Vec<C32>,
}

impl CflArray {
    /// Size of dimension `i`; 1 for dimensions beyond those listed.
    pub fn dim(&self, i: usize) -> usize {
        self.dims.get(i).copied().unwrap_or(1)
    }
}

/// The `.cfl` and `.hdr` paths for a base name given with or without either extension.
pub fn pair_paths(path: impl AsRef<Path>) -> (PathBuf, PathBuf) {
    let path = path.as_ref();
    let base = match path.extension().and_then(|e| e.to_str()) {
        Some("cfl") | Some("hdr") => path.with_extension(""),
        _ => path.to_path_buf(),
    };
    let with = |ext: &str| {
        let mut name = OsString::from(base.as_os_str());
        name.push(ext);
        PathBuf::from(name)
    };
    (with(".cfl"), with(".hdr"))
}

/// Reads a `.cfl`/`.hdr` pair as stored.
///
/// Errors (each naming the file): a missing file, a header without `# Dimensions` or with
/// non-numeric or zero dimensions, a `.cfl` whose size is not the product of the dimensions times
/// 8 bytes, and NaN or infinite values (with the index of the first one).
pub fn read_array(path: impl AsRef<Path>) -> Result<CflArray> {
    let (cfl, hdr) = pair_paths(&path);
    let dims = read_dims(path)?;
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|n| n.checked_mul(8).is_some())
        .ok_or_else(|| Error::format(&hdr, format!("dimensions {dims:?} are too large")))?;
    let expected = count * 8;
    let bytes = std::fs::read(&cfl).map_err(|e| Error::io(&cfl, e))?;
    if bytes.len() != expected {
        return Err(Error::format(
            &cfl,
            format!(
                "size mismatch: dimensions {dims:?} need {expected} bytes ({count} complex64 \
                 values), the file has {} bytes",
                bytes.len()
            ),
        ));
    }
    let data: Vec<C32> = bytes
        .chunks_exact(8)
        .map(|b| {
            C32::new(
                f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                f32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            )
        })
        .collect();
    if let Some(i) = first_non_finite(data.iter().flat_map(|z| [z.re, z.im])) {
        let element = i / 2;
        return Err(Error::format(
            &cfl,
            format!(
                "non-finite value {} at element {element} (BART position {:?}); expected finite \
                 numbers",
                data[element],
                position(&dims, element)
            ),
        ));
    }
    Ok(CflArray { dims, data })
}

/// The dimensions a pair's `.hdr` lists (as many as it lists), reading the header only: what
/// the array is, before (or instead of) reading its data. Errors as [`read_array`]'s for the
/// header.
pub fn read_dims(path: impl AsRef<Path>) -> Result<Vec<usize>> {
    let (_, hdr) = pair_paths(path);
    let text = std::fs::read(&hdr).map_err(|e| Error::io(&hdr, e))?;
    parse_header(&hdr, &String::from_utf8_lossy(&text))
}

/// Writes a `.cfl`/`.hdr` pair atomically (both files or neither). The header always lists 16
/// dimensions; `dims` may be shorter (padded with 1) or longer only by trailing 1s.
///
/// Errors: `data.len()` differs from the product of `dims`, a zero dimension, more than 16
/// non-trivial dimensions, non-finite values, or an I/O failure.
pub fn write_array(path: impl AsRef<Path>, dims: &[usize], data: &[C32]) -> Result<()> {
    atomic::write_atomic_set(&encode_array(path, dims, data)?)
}

/// The two files [`write_array`] writes, `.cfl` then `.hdr`, each with its bytes, for a caller
/// that writes them in one set with other files ([`atomic::write_atomic_set`]). Same errors as
/// [`write_array`] but I/O.
pub fn encode_array(
    path: impl AsRef<Path>,
    dims: &[usize],
    data: &[C32],
) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let (cfl, hdr) = pair_paths(path);
    if dims.iter().skip(BART_DIMS).any(|&d| d != 1) {
        return Err(Error::invalid(format!(
            "{}: cannot write dimensions {dims:?}: BART allows {BART_DIMS}",
            cfl.display()
        )));
    }
    let mut dims16 = [1usize; BART_DIMS];
    for (d, &n) in dims16.iter_mut().zip(dims) {
        *d = n;
    }
    let count: Option<usize> = dims16.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if dims16.contains(&0) || count != Some(data.len()) {
        return Err(Error::invalid(format!(
            "{}: dimensions {dims:?} (all must be at least 1) do not match {} values",
            cfl.display(),
            data.len()
        )));
    }
    if let Some(i) = first_non_finite(data.iter().flat_map(|z| [z.re, z.im])) {
        return Err(Error::invalid(format!(
            "{}: refusing to write non-finite value {} at element {}",
            cfl.display(),
            data[i / 2],
            i / 2
        )));
    }
    let header = format!(
        "# Dimensions\n{}\n",
        dims16
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut bytes = Vec::with_capacity(8 * data.len());
    for z in data {
        bytes.extend_from_slice(&z.re.to_le_bytes());
        bytes.extend_from_slice(&z.im.to_le_bytes());
    }
    Ok(vec![(cfl, bytes), (hdr, header.into_bytes())])
}

/// Reads multi-coil k-space or coil maps stored as BART `[H, W, 1, coils]` into `(coils, H, W)`.
/// A file without a coil dimension gives one coil. Any other dimension above 1 is an error.
pub fn read_coils(path: impl AsRef<Path>) -> Result<Array3<C32>> {
    let path = path.as_ref();
    let array = read_array(path)?;
    expect_dims(
        path,
        &array,
        &[0, 1, 3],
        "2-D multi-coil data [H, W, 1, coils]",
    )?;
    let (h, w, c) = (array.dim(0), array.dim(1), array.dim(3));
    let stored = Array3::from_shape_vec((h, w, c).f(), array.data)
        .map_err(|e| Error::format(path, e.to_string()))?;
    Ok(stored
        .permuted_axes([2, 0, 1])
        .as_standard_layout()
        .into_owned())
}

/// Writes multi-coil k-space or coil maps `(coils, H, W)` as BART `[H, W, 1, coils]`.
pub fn write_coils(path: impl AsRef<Path>, array: &ArrayRef3<C32>) -> Result<()> {
    atomic::write_atomic_set(&encode_coils(path, array)?)
}

/// The files [`write_coils`] writes, as [`encode_array`] gives them.
pub fn encode_coils(
    path: impl AsRef<Path>,
    array: &ArrayRef3<C32>,
) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let (c, h, w) = array.dim();
    // Column-major order of [h, w, c] is row-major order of [c, w, h].
    let data: Vec<C32> = array
        .view()
        .permuted_axes([0, 2, 1])
        .iter()
        .copied()
        .collect();
    encode_array(path, &[h, w, 1, c], &data)
}

/// Reads a single-coil image stored as BART `[H, W]` into `(H, W)`.
pub fn read_image(path: impl AsRef<Path>) -> Result<Array2<C32>> {
    let path = path.as_ref();
    let array = read_array(path)?;
    expect_dims(path, &array, &[0, 1], "a 2-D image [H, W]")?;
    let stored = Array2::from_shape_vec((array.dim(0), array.dim(1)).f(), array.data)
        .map_err(|e| Error::format(path, e.to_string()))?;
    Ok(stored.as_standard_layout().into_owned())
}

/// Writes an image `(H, W)` as BART `[H, W]`.
pub fn write_image(path: impl AsRef<Path>, image: &ArrayRef2<C32>) -> Result<()> {
    atomic::write_atomic_set(&encode_image(path, image)?)
}

/// The files [`write_image`] writes, as [`encode_array`] gives them.
pub fn encode_image(
    path: impl AsRef<Path>,
    image: &ArrayRef2<C32>,
) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let (h, w) = image.dim();
    let data: Vec<C32> = image.t().iter().copied().collect();
    encode_array(path, &[h, w], &data)
}

/// Reads a sampling mask: `[1, W]` or `[W]` gives [`Mask::Columns`], `[H, W]` with `H > 1` and
/// `W > 1` gives [`Mask::Pattern`], and so does `[1, H, W]`, the phase-encode plane of a 3-D
/// scan as `bart poisson` writes it. Non-zero values are kept samples; values must be real
/// (zero imaginary part).
pub fn read_mask(path: impl AsRef<Path>) -> Result<Mask> {
    let path = path.as_ref();
    let array = read_array(path)?;
    let what = "a mask [1, W], [W], [H, W] or [1, H, W]";
    if array.dim(2) > 1 {
        // [1, H, W]: the same column-major order as [H, W].
        expect_dims(path, &array, &[1, 2], what)?;
    } else {
        expect_dims(path, &array, &[0, 1], what)?;
    }
    if let Some(i) = array.data.iter().position(|z| z.im != 0.0) {
        return Err(Error::format(
            path,
            format!(
                "mask value {} at element {i} has a non-zero imaginary part; expected a real mask",
                array.data[i]
            ),
        ));
    }
    let kept: Vec<bool> = array.data.iter().map(|z| z.re != 0.0).collect();
    let (h, w) = match array.dim(2) {
        1 => (array.dim(0), array.dim(1)),
        w => (array.dim(1), w),
    };
    if h == 1 || w == 1 {
        return Ok(Mask::Columns(kept));
    }
    let stored =
        Array2::from_shape_vec((h, w).f(), kept).map_err(|e| Error::format(path, e.to_string()))?;
    Ok(Mask::Pattern(stored.as_standard_layout().into_owned()))
}

/// Writes a sampling mask as 1 (kept) and 0: [`Mask::Columns`] as `[1, W]`, [`Mask::Pattern`]
/// as `[H, W]`.
pub fn write_mask(path: impl AsRef<Path>, mask: &Mask) -> Result<()> {
    atomic::write_atomic_set(&encode_mask(path, mask)?)
}

/// The files [`write_mask`] writes, as [`encode_array`] gives them.
pub fn encode_mask(path: impl AsRef<Path>, mask: &Mask) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let (dims, kept): ([usize; 2], Vec<bool>) = match mask {
        Mask::Columns(c) => ([1, c.len()], c.clone()),
        Mask::Pattern(p) => ([p.nrows(), p.ncols()], p.t().iter().copied().collect()),
    };
    let data: Vec<C32> = kept
        .into_iter()
        .map(|k| C32::new(if k { 1.0 } else { 0.0 }, 0.0))
        .collect();
    encode_array(path, &dims, &data)
}

/// Parses the dimensions that follow the `# Dimensions` line of a header.
fn parse_header(hdr: &Path, text: &str) -> Result<Vec<usize>> {
    let mut lines = text.lines().map(str::trim);
    if !lines.any(|l| l.starts_with('#') && l[1..].trim() == "Dimensions") {
        return Err(Error::format(
            hdr,
            "no `# Dimensions` line; expected a BART header",
        ));
    }
    let line = lines.find(|l| !l.is_empty()).unwrap_or("");
    if line.is_empty() || line.starts_with('#') {
        return Err(Error::format(
            hdr,
            "no dimensions after `# Dimensions`; expected a line of integers",
        ));
    }
    line.split_whitespace()
        .enumerate()
        .map(|(i, token)| match token.parse::<usize>() {
            Ok(0) => Err(Error::format(
                hdr,
                format!("dimension {i} is 0; expected sizes of at least 1"),
            )),
            Ok(d) => Ok(d),
            Err(_) => Err(Error::format(
                hdr,
                format!("dimension {i} is `{token}`; expected a positive integer"),
            )),
        })
        .collect()
}

/// Checks that every dimension outside `allowed` is 1.
fn expect_dims(path: &Path, array: &CflArray, allowed: &[usize], what: &str) -> Result<()> {
    match (0..array.dims.len()).find(|i| !allowed.contains(i) && array.dims[*i] != 1) {
        None => Ok(()),
        Some(i) => Err(Error::format(
            path,
            format!(
                "expected {what}, found BART dimensions {:?}: dimension {i} ({}) is {}, expected 1",
                array.dims,
                DIM_NAMES.get(i).copied().unwrap_or("extra"),
                array.dims[i]
            ),
        )),
    }
}

/// The column-major position of element `index` in an array with dimensions `dims`.
fn position(dims: &[usize], mut index: usize) -> Vec<usize> {
    dims.iter()
        .map(|&d| {
            let p = index % d;
            index /= d;
            p
        })
        .collect()
}
