//! NumPy `.npy` files holding complex64 or float32 arrays.
//!
//! Reading accepts format versions 1.0, 2.0 and 3.0, the little-endian dtypes `<f4`, `<c8`
//! (stored as is) and `<f8`, `<c16` (converted to single precision), and both C and Fortran
//! order (Fortran-ordered data is returned in C order with the same shape). Writing produces
//! version 1.0, C order, `<f4` or `<c8`. NaN and infinite values are rejected both ways.

use super::{atomic, first_non_finite};
use crate::{Error, Result, C32};
use ndarray::{ArrayD, ArrayRef, Dimension, IxDyn, ShapeBuilder};
use std::io::Read;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// An array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyArray {
    /// A real array (stored as `<f4` or `<f8`).
    Real(ArrayD<f32>),
    /// A complex array (stored as `<c8` or `<c16`).
    Complex(ArrayD<C32>),
}

impl NpyArray {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            NpyArray::Real(a) => a.shape(),
            NpyArray::Complex(a) => a.shape(),
        }
    }
}

/// Element types that `.npy` files store: `f32` (`<f4`) and [`C32`] (`<c8`). Sealed.
pub trait NpyElement: sealed::Element {}
impl NpyElement for f32 {}
impl NpyElement for C32 {}

mod sealed {
    use super::{NpyArray, C32};
    use ndarray::ArrayD;

    /// The per-type conversions behind [`super::NpyElement`].
    pub trait Element: Copy + Sized {
        /// The dtype written to file headers.
        const DESCR: &'static str;
        /// Human-readable name of what a reader of this type expects.
        const EXPECTED: &'static str;
        /// Appends the little-endian bytes of `self`.
        fn put(self, out: &mut Vec<u8>);
        /// The real and imaginary parts (imaginary 0 for reals), for the finiteness check.
        fn parts(self) -> [f32; 2];
        /// Takes the array out of `array` when its kind allows (reals widen to complex).
        fn from_npy(array: NpyArray) -> Option<ArrayD<Self>>;
    }

    impl Element for f32 {
        const DESCR: &'static str = "<f4";
        const EXPECTED: &'static str = "a real array (<f4 or <f8)";
        fn put(self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.to_le_bytes());
        }
        fn parts(self) -> [f32; 2] {
            [self, 0.0]
        }
        fn from_npy(array: NpyArray) -> Option<ArrayD<Self>> {
            match array {
                NpyArray::Real(a) => Some(a),
                NpyArray::Complex(_) => None,
            }
        }
    }

    impl Element for C32 {
        const DESCR: &'static str = "<c8";
        const EXPECTED: &'static str = "a complex or real array (<c8, <c16, <f4 or <f8)";
        fn put(self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.re.to_le_bytes());
            out.extend_from_slice(&self.im.to_le_bytes());
        }
        fn parts(self) -> [f32; 2] {
            [self.re, self.im]
        }
        fn from_npy(array: NpyArray) -> Option<ArrayD<Self>> {
            match array {
                NpyArray::Real(a) => Some(a.mapv(|v| C32::new(v, 0.0))),
                NpyArray::Complex(a) => Some(a),
            }
        }
    }
}

/// The dtypes a reader accepts.
#[derive(Clone, Copy)]
enum Dtype {
    F4,
    F8,
    C8,
    C16,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F4 => 4,
            Dtype::F8 | Dtype::C8 => 8,
            Dtype::C16 => 16,
        }
    }
}

/// The parsed header.
struct Header {
    dtype: Dtype,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Reads a `.npy` file.
///
/// Errors (each naming the file): bad magic or version, a malformed header, an unsupported,
/// big-endian or structured dtype (named), a data size that does not match the shape, and NaN or
/// infinite values (with the index of the first one).
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (header, data) = split_header(path, &bytes)?;
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(header.dtype.size()));
    let Some(expected) = count else {
        return Err(Error::format(
            path,
            format!("shape {:?} is too large", header.shape),
        ));
    };
    if data.len() != expected {
        return Err(Error::format(
            path,
            format!(
                "data size mismatch: shape {:?} needs {expected} bytes, the file has {} after \
                 the header",
                header.shape,
                data.len()
            ),
        ));
    }
    let f4 = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let f8 = |b: &[u8]| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let array = match header.dtype {
        Dtype::F4 => NpyArray::Real(shaped(path, &header, data.chunks_exact(4).map(f4))?),
        Dtype::F8 => NpyArray::Real(shaped(
            path,
            &header,
            data.chunks_exact(8).map(|b| f8(b) as f32),
        )?),
        Dtype::C8 => NpyArray::Complex(shaped(
            path,
            &header,
            data.chunks_exact(8).map(|b| C32::new(f4(b), f4(&b[4..]))),
        )?),
        Dtype::C16 => NpyArray::Complex(shaped(
            path,
            &header,
            data.chunks_exact(16)
                .map(|b| C32::new(f8(b) as f32, f8(&b[8..]) as f32)),
        )?),
    };
    let bad = match &array {
        NpyArray::Real(a) => first_non_finite(a.iter().copied()),
        NpyArray::Complex(a) => {
            first_non_finite(a.iter().flat_map(|z| [z.re, z.im])).map(|i| i / 2)
        }
    };
    if let Some(i) = bad {
        return Err(Error::format(
            path,
            format!(
                "non-finite value at element {i} (C-order index {:?}); expected finite numbers",
                unravel(array.shape(), i)
            ),
        ));
    }
    Ok(array)
}

/// Reads a `.npy` file as an array of element type `T` and dimensionality `D`, for example
/// `read_npy_as::<C32, Ix3>(path)` for multi-coil k-space. Real files are accepted where complex
/// is asked for (imaginary part 0), not the reverse.
///
/// Errors name the file and the expected versus the actual dtype or shape.
pub fn read_npy_as<T: NpyElement, D: Dimension>(
    path: impl AsRef<Path>,
) -> Result<ndarray::Array<T, D>> {
    let path = path.as_ref();
    let array = read_npy(path)?;
    let shape = array.shape().to_vec();
    let found = match &array {
        NpyArray::Real(_) => "a real array",
        NpyArray::Complex(_) => "a complex array",
    };
    let typed = T::from_npy(array).ok_or_else(|| {
        Error::format(
            path,
            format!("expected {}, found {found} of shape {shape:?}", T::EXPECTED),
        )
    })?;
    typed.into_dimensionality::<D>().map_err(|_| {
        let wanted = D::NDIM.map_or("an array".to_string(), |n| format!("a {n}-D array"));
        Error::format(path, format!("expected {wanted}, found shape {shape:?}"))
    })
}

/// Writes `array` as a version 1.0, C-order `.npy` file (`<f4` for `f32`, `<c8` for [`C32`]),
/// atomically. Errors on non-finite values or I/O failure.
pub fn write_npy<T: NpyElement, D: Dimension>(
    path: impl AsRef<Path>,
    array: &ArrayRef<T, D>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode_npy(path, array)?;
    atomic::write_atomic(path, |w| w.write_all(&bytes))
}

/// The bytes [`write_npy`] writes, for a caller that writes them with other files (one atomic
/// pair, say); `path` names the destination in errors.
pub fn encode_npy<T: NpyElement, D: Dimension>(
    path: &Path,
    array: &ArrayRef<T, D>,
) -> Result<Vec<u8>> {
    if let Some(i) = first_non_finite(array.iter().flat_map(|v| v.parts())) {
        return Err(Error::invalid(format!(
            "{}: refusing to write a non-finite value at element {} (C order)",
            path.display(),
            i / 2
        )));
    }
    let shape = match array.shape() {
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        T::DESCR
    );
    // Pad with spaces so that the data starts on a 64-byte boundary; the header ends in '\n'.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| {
        Error::invalid(format!(
            "{}: shape {:?} gives a header too long for .npy version 1.0",
            path.display(),
            array.shape()
        ))
    })?;
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + header.len() + array.len() * 8);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&header_len.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for &v in array.iter() {
        v.put(&mut bytes);
    }
    Ok(bytes)
}

/// Splits a file into its parsed header and its data bytes.
fn split_header<'a>(path: &Path, bytes: &'a [u8]) -> Result<(Header, &'a [u8])> {
    let (start, end) = header_span(path, bytes)?;
    if end > bytes.len() {
        return Err(Error::format(path, "file ends inside the header"));
    }
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| Error::format(path, "header is not text"))?;
    Ok((parse_header(path, text)?, &bytes[end..]))
}

/// The shape a `.npy` file's header gives, reading the header only: what the array is, before
/// (or instead of) reading its data. Errors as [`read_npy`]'s for the header.
pub fn read_shape(path: impl AsRef<Path>) -> Result<Vec<usize>> {
    let path = path.as_ref();
    let io = |e| Error::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    // The magic, the version and the header length take at most 12 bytes.
    let mut bytes = Vec::with_capacity(MAGIC.len() + 6);
    (&mut file)
        .take(MAGIC.len() as u64 + 6)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let (_, end) = header_span(path, &bytes)?;
    (&mut file)
        .take(end.saturating_sub(bytes.len()) as u64)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(split_header(path, &bytes)?.0.shape)
}

/// Where the header text lies, `(start, end)`, from the first 12 bytes of a `.npy` file (the
/// magic, the version and the header length); `end` may lie beyond `bytes`.
fn header_span(path: &Path, bytes: &[u8]) -> Result<(usize, usize)> {
    if !bytes.starts_with(MAGIC) || bytes.len() < MAGIC.len() + 2 {
        return Err(Error::format(
            path,
            "bad magic: expected a NumPy .npy file starting with \\x93NUMPY",
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_size, header_len) = match major {
        1 if bytes.len() >= 10 => (2, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (
            4,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        1..=3 => return Err(Error::format(path, "file ends inside the header")),
        _ => {
            return Err(Error::format(
                path,
                format!("unsupported .npy version {major}.{minor}; expected 1.0, 2.0 or 3.0"),
            ))
        }
    };
    let start = 8usize + len_size;
    let end = start
        .checked_add(header_len)
        .ok_or_else(|| Error::format(path, "file ends inside the header"))?;
    Ok((start, end))
}

/// Parses the header dictionary, e.g. `{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }`.
fn parse_header(path: &Path, text: &str) -> Result<Header> {
    let bad = |what: &str| {
        Error::format(
            path,
            format!("malformed header ({what}): `{}`", text.trim_end()),
        )
    };
    let descr = dict_value(text, "descr").ok_or_else(|| bad("no 'descr'"))?;
    let order = dict_value(text, "fortran_order").ok_or_else(|| bad("no 'fortran_order'"))?;
    let shape = dict_value(text, "shape").ok_or_else(|| bad("no 'shape'"))?;
    let dtype = match descr.trim_matches(|c| c == '\'' || c == '"') {
        "<f4" => Dtype::F4,
        "<f8" => Dtype::F8,
        "<c8" => Dtype::C8,
        "<c16" => Dtype::C16,
        d if d.starts_with('>') => {
            return Err(Error::format(
                path,
                format!(
                    "big-endian dtype {d} is not supported; expected little-endian <f4, <f8, \
                     <c8 or <c16"
                ),
            ))
        }
        d => {
            return Err(Error::format(
                path,
                format!("unsupported dtype {d}; expected <f4, <f8, <c8 or <c16"),
            ))
        }
    };
    let fortran_order = match order {
        "True" => true,
        "False" => false,
        _ => return Err(bad("'fortran_order' is neither True nor False")),
    };
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad("'shape' is not a tuple"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad("'shape' holds a non-integer"))?;
    Ok(Header {
        dtype,
        fortran_order,
        shape,
    })
}

/// The raw text of the value of `key` in a Python dict literal: a quoted string, a tuple, or a
/// list (a structured dtype, later reported as unsupported) or a bare word (`True`).
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text
        .find(&format!("'{key}'"))
        .or_else(|| text.find(&format!("\"{key}\"")))?;
    let rest = text[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let end = match rest.chars().next()? {
        '(' => rest.find(')')? + 1,
        '[' => rest.find(']')? + 1,
        q @ ('\'' | '"') => rest[1..].find(q)? + 2,
        _ => rest.find([',', '}']).unwrap_or(rest.len()),
    };
    Some(rest[..end].trim())
}

/// Builds a C-order array from values in file order.
fn shaped<T>(path: &Path, header: &Header, values: impl Iterator<Item = T>) -> Result<ArrayD<T>>
where
    T: Clone,
{
    let shape = IxDyn(&header.shape);
    let values: Vec<T> = values.collect();
    let array = if header.fortran_order {
        ArrayD::from_shape_vec(shape.f(), values).map(|a| a.as_standard_layout().into_owned())
    } else {
        ArrayD::from_shape_vec(shape, values)
    };
    array.map_err(|e| Error::format(path, format!("shape {:?}: {e}", header.shape)))
}

/// The C-order multi-index of flat element `index` in `shape`.
fn unravel(shape: &[usize], mut index: usize) -> Vec<usize> {
    let mut position = vec![0; shape.len()];
    for (p, &d) in position.iter_mut().zip(shape).rev() {
        *p = index % d;
        index /= d;
    }
    position
}
