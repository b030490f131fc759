//! fastMRI multi-coil HDF5 input (and ISMRMRD-style complex compounds).
//!
//! # Layout read
//! - `kspace`: `(slices, coils, height, width)`, complex, stored as an HDF5 compound of two
//!   floating-point fields: `r`/`i` (h5py's complex64, fastMRI), `real`/`imag` (ISMRMRD) or
//!   `re`/`im`. Fields may be 32- or 64-bit, either byte order; values are returned as
//!   [`C32`]. A 3-D `kspace` is fastMRI's single-coil layout `(slices, height, width)` and reads
//!   as one coil. The height axis is the readout, the width axis the phase encode (the mask's
//!   axis), as everywhere in `msm`.
//! - `ismrmrd_header` (optional): XML string (fixed or variable length, or a 1-D byte array);
//!   its encoded and recon matrix sizes, see [`IsmrmrdHeader`]. A header that is present but
//!   cannot be parsed is an error.
//! - `mask` (optional): 1-D, length = width, numeric or boolean (h5py's enum); non-zero = kept.
//! - `reconstruction_rss` (optional): `(slices, h, w)` real, fastMRI's cropped reference.
//!
//! The file is checked when it is opened (datasets, types, shapes, header, mask); k-space is read
//! one slice at a time with a hyperslab, so a volume never has to fit in memory.
//!
//! # Which HDF5 crate, and why
//! `msm` reads HDF5 with [`hdf5_reader`] (pure Rust, read-only, part of the `netcdf-rust`
//! project) rather than `hdf5-metno` (bindings to the HDF5 C library). Measured on this project's
//! 2-core machine while other builds ran (load average 5-8, so times are rough), with a small
//! reader built on each crate, on a 16-coil 320 x 320 x 10-slice complex64 file written by h5py
//! 3.16 and read slice by slice (10 hyperslabs of 16 x 320 x 320):
//!
//! | | `hdf5-reader` 0.12.1 | `hdf5-metno` 0.15.1 + libhdf5 1.10.8 |
//! |---|---|---|
//! | build added to `msm` (its deps already built) | 23 s wall, 13 s CPU | 45 s wall, 25 s CPU |
//! | cold build of the reader with all its deps | 74 s wall, 33 s CPU | 58 s wall, 34 s CPU |
//! | crates added to `msm`'s tree | 5 | 19 (`regex`, `toml_edit`, a proc macro, ...) |
//! | system library | none | `libhdf5-dev` to build, `libhdf5` `.so` to run |
//! | reader binary (release) | 1.3 MB, self-contained | 0.85 MB + 3.9 MB `libhdf5_serial.so` |
//! | read, contiguous (h5py's default) | 0.45-0.49 s | 0.07 s |
//! | read, gzip level 4, chunks of one coil image | 0.82-0.89 s | 0.74-0.79 s |
//!
//! (h5py itself: 0.10 s and 0.80 s; [`FastMriFile::slice_kspace`] on the same files, at load 8:
//! 0.26-0.58 s and 0.9-1.4 s.) Both crates read both files to identical sums. The C library is
//! several times faster on contiguous data (the pure reader is bound by page faults on its memory
//! map), but some 40 ms per 16-coil slice is nothing next to a diffusion reconstruction of that
//! slice, and on gzip data, where decompression dominates, the two are within 10 %. What
//! decides: no system library to install on CI, on users' machines or with release binaries,
//! about half the added compile time, and a reader that is bounds-checked and fuzzed against
//! malformed files (bad input must give an error, never a crash). The crate is young (0.x); all
//! its use is in this module, so replacing it touches one file.
//!
//! One cost to know: `hdf5-reader` pulls `lru`, which turns on extra features of `hashbrown`
//! 0.16, a dependency of `tract-data`; an existing `target/` therefore rebuilds `tract` once
//! after this dependency arrives (a clean CI build pays only the few crates above).

pub mod geometry;
mod header;
mod image;
mod raw;
mod scan;
mod select;
mod slab;

pub use header::{CalibrationMode, EncodedSpace, HeaderError, IsmrmrdHeader};
pub use image::{
    center_crop, crop_or_pad, detect_entries, detect_mask, reference_image, rss_image, zero_pad,
};
pub use raw::{is_raw, CounterValues, RawOptions, RawScan, Selection, COUNTERS};
pub use scan::HdfScan;
pub use select::{CounterChoice, ImageChoice, ImageSeries};
pub use slab::{Encoding3d, Slicing};

use crate::{Error, Result, C32};
use hdf5_reader::error::{Error as H5Error, Result as H5Result};
use hdf5_reader::{Dataset, Datatype, H5Type, Hdf5File, OpenOptions, SliceInfo, SliceInfoElem};
use ndarray::{Array3, Ix3};
use std::path::{Path, PathBuf};

/// Largest single read (one k-space slice, the mask, the header, the whole
/// `reconstruction_rss`): 4 GiB, far above any scan (a 16-coil 640 x 368 slice is 30 MB), so that
/// a damaged file claiming an absurd size gives an error instead of an allocation failure.
const MAX_READ_BYTES: usize = 4 << 30;

/// Opens `path` as HDF5 with this module's read limit. A missing file is an I/O error; a file
/// that is not HDF5 a format error that ends with `expected`.
fn open_hdf5(path: &Path, expected: &str) -> Result<Hdf5File> {
    std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let options = OpenOptions::default().with_max_read_bytes(MAX_READ_BYTES);
    Hdf5File::open_with_options(path, options).map_err(|e| {
        Error::format(
            path,
            format!("cannot be read as HDF5 ({e}); expected {expected}"),
        )
    })
}

/// Appended to errors from the HDF5 decoder on a file that passed the signature check.
const DAMAGED: &str = "; the file may be truncated or damaged, expected a complete HDF5 file";

/// Names accepted for the real and imaginary fields of a complex compound.
const COMPLEX_FIELDS: [(&str, &str); 3] = [("r", "i"), ("real", "imag"), ("re", "im")];

/// An open fastMRI (or ISMRMRD-compound) HDF5 file, checked on open.
pub struct FastMriFile {
    path: PathBuf,
    kspace: Dataset,
    /// `(slices, coils, height, width)`; 1 coil for the single-coil layout.
    shape: (usize, usize, usize, usize),
    single_coil: bool,
    header: Option<IsmrmrdHeader>,
    mask: Option<Vec<bool>>,
    rss: Option<Dataset>,
    rss_size: Option<(usize, usize)>,
}

impl std::fmt::Debug for FastMriFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastMriFile")
            .field("path", &self.path)
            .field("shape", &self.shape)
            .field("single_coil", &self.single_coil)
            .field("header", &self.header)
            .field("has_mask", &self.mask.is_some())
            .field("rss_size", &self.rss_size)
            .finish()
    }
}

impl FastMriFile {
    /// Opens `path` and checks its datasets; reads the header and the mask, not the k-space.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = open_hdf5(path, "a fastMRI HDF5 file with a `kspace` dataset")?;
        Self::from_file(path, &file)
    }

    /// [`FastMriFile::open`] on a file already open.
    pub(crate) fn from_file(path: &Path, file: &Hdf5File) -> Result<Self> {
        let fmt = |msg: String| Error::format(path, msg);
        let root = file
            .root_group()
            .map_err(|e| fmt(format!("cannot read the HDF5 root group ({e}){DAMAGED}")))?;
        let (_, names) = root
            .member_names()
            .map_err(|e| fmt(format!("cannot list the HDF5 root group ({e}){DAMAGED}")))?;
        if !names.iter().any(|n| n == "kspace") {
            return Err(fmt(format!(
                "no `kspace` dataset (datasets in the file: {}); expected fastMRI's `kspace` of \
                 shape (slices, coils, height, width)",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        let kspace = file
            .dataset("/kspace")
            .map_err(|e| fmt(format!("cannot open dataset `kspace` ({e}){DAMAGED}")))?;
        complex_fields(kspace.dtype()).map_err(|m| fmt(format!("`kspace` {m}")))?;
        let dims = usize_dims(kspace.shape());
        let (shape, single_coil) = match dims[..] {
            [s, c, h, w] => ((s, c, h, w), false),
            [s, h, w] => ((s, 1, h, w), true),
            _ => {
                return Err(fmt(format!(
                    "`kspace` has shape {dims:?}; expected 4 dimensions (slices, coils, height, \
                     width), or 3 (slices, height, width) for single-coil data"
                )))
            }
        };
        let names4 = ["slices", "coils", "height", "width"];
        let sizes = [shape.0, shape.1, shape.2, shape.3];
        if let Some(i) = sizes.iter().position(|&n| n == 0) {
            return Err(fmt(format!(
                "`kspace` has shape {dims:?}: zero {}; expected at least one of each of \
                 (slices, coils, height, width)",
                names4[i]
            )));
        }

        let header = if names.iter().any(|n| n == "ismrmrd_header") {
            let text = read_text(file, "ismrmrd_header").map_err(fmt)?;
            Some(IsmrmrdHeader::parse(&text).map_err(|e| {
                fmt(format!(
                    "`ismrmrd_header` cannot be parsed: {e}; expected ISMRMRD XML with \
                     encoding/encodedSpace and encoding/reconSpace matrix sizes"
                ))
            })?)
        } else {
            None
        };

        let mask = if names.iter().any(|n| n == "mask") {
            Some(read_mask(file, shape.3).map_err(fmt)?)
        } else {
            None
        };

        let (rss, rss_size) = if names.iter().any(|n| n == "reconstruction_rss") {
            let ds = file.dataset("/reconstruction_rss").map_err(|e| {
                fmt(format!(
                    "cannot open dataset `reconstruction_rss` ({e}){DAMAGED}"
                ))
            })?;
            real_kind(ds.dtype()).map_err(|m| {
                fmt(format!(
                    "`reconstruction_rss` has {m}; expected real numbers"
                ))
            })?;
            let d = usize_dims(ds.shape());
            match d[..] {
                [s, h, w] if s == shape.0 && h > 0 && w > 0 => (Some(ds), Some((h, w))),
                _ => {
                    return Err(fmt(format!(
                        "`reconstruction_rss` has shape {d:?}; expected ({}, height, width) with \
                         one image per k-space slice",
                        shape.0
                    )))
                }
            }
        } else {
            (None, None)
        };

        Ok(FastMriFile {
            path: path.to_path_buf(),
            kspace,
            shape,
            single_coil,
            header,
            mask,
            rss,
            rss_size,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of slices.
    pub fn num_slices(&self) -> usize {
        self.shape.0
    }

    /// Number of coils (1 for fastMRI's single-coil layout).
    pub fn coils(&self) -> usize {
        self.shape.1
    }

    /// One coil's k-space grid, `(height, width)`.
    pub fn kspace_size(&self) -> (usize, usize) {
        (self.shape.2, self.shape.3)
    }

    /// Whether `kspace` is fastMRI's single-coil 3-D layout.
    pub fn is_single_coil(&self) -> bool {
        self.single_coil
    }

    /// The parsed `ismrmrd_header`, when the file has one.
    pub fn header(&self) -> Option<&IsmrmrdHeader> {
        self.header.as_ref()
    }

    /// The mask stored in the file (`true` = column kept), length = width. When the file has
    /// none, [`detect_mask`] finds it from a slice's k-space.
    pub fn mask(&self) -> Option<&[bool]> {
        self.mask.as_deref()
    }

    /// The image size `(height, width)` that fastMRI crops its reference to: the shape of
    /// `reconstruction_rss` when present (fastMRI's data transforms prefer it), else the
    /// header's recon matrix `(x, y)`; `None` when the file has neither.
    pub fn recon_size(&self) -> Option<(usize, usize)> {
        self.rss_size.or_else(|| {
            self.header
                .as_ref()
                .map(|h| (h.recon_size.0, h.recon_size.1))
        })
    }

    /// K-space of slice `index` as `(coils, height, width)`, reading only that slice.
    /// Non-finite values are rejected.
    pub fn slice_kspace(&self, index: usize) -> Result<Array3<C32>> {
        let (slices, coils, h, w) = self.shape;
        if index >= slices {
            return Err(Error::invalid(format!(
                "{}: slice {index} is out of range; the file has {slices} slices (0..{slices})",
                self.path.display()
            )));
        }
        let all = SliceInfoElem::Slice {
            start: 0,
            end: u64::MAX,
            step: 1,
        };
        let mut selections = vec![SliceInfoElem::Index(index as u64)];
        selections.extend(std::iter::repeat_n(
            all,
            if self.single_coil { 2 } else { 3 },
        ));
        let values = self
            .kspace
            .read_slice::<ComplexElem>(&SliceInfo { selections })
            .map_err(|e| {
                Error::format(
                    &self.path,
                    format!("cannot read slice {index} of `kspace` ({e}){DAMAGED}"),
                )
            })?;
        let data: Vec<C32> = values.iter().map(|v| v.0).collect();
        if let Some(i) = super::first_non_finite(data.iter().flat_map(|v| [v.re, v.im])) {
            let i = i / 2;
            return Err(Error::format(
                &self.path,
                format!(
                    "`kspace` slice {index} has a non-finite value at (coil {}, row {}, column \
                     {}); expected finite numbers",
                    i / (h * w),
                    i / w % h,
                    i % w
                ),
            ));
        }
        Array3::from_shape_vec((coils, h, w), data).map_err(|e| {
            Error::format(
                &self.path,
                format!("slice {index} of `kspace` has an unexpected size: {e}"),
            )
        })
    }

    /// The whole `reconstruction_rss` volume `(slices, h, w)`, when the file has it.
    /// Non-finite values are rejected.
    pub fn reconstruction_rss(&self) -> Result<Option<Array3<f32>>> {
        let Some(ds) = &self.rss else {
            return Ok(None);
        };
        let read_err = |e: H5Error| {
            Error::format(
                &self.path,
                format!("cannot read `reconstruction_rss` ({e}){DAMAGED}"),
            )
        };
        let values = ds.read_array::<RealElem>().map_err(read_err)?;
        let values = values
            .into_dimensionality::<Ix3>()
            .map_err(|e| Error::format(&self.path, format!("`reconstruction_rss`: {e}")))?;
        let values = values.mapv(|v| v.0);
        if let Some(i) = super::first_non_finite(values.iter().copied()) {
            let (_, h, w) = values.dim();
            return Err(Error::format(
                &self.path,
                format!(
                    "`reconstruction_rss` has a non-finite value at (slice {}, row {}, column \
                     {}); expected finite numbers",
                    i / (h * w),
                    i / w % h,
                    i % w
                ),
            ));
        }
        Ok(Some(values))
    }
}

/// Dataset dimensions as `usize`.
fn usize_dims(shape: &[u64]) -> Vec<usize> {
    shape
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect()
}

/// How one floating-point field is stored.
#[derive(Clone, Copy, Debug)]
struct FloatField {
    offset: usize,
    wide: bool,
    big_endian: bool,
}

impl FloatField {
    fn from_dtype(offset: usize, dtype: &Datatype) -> Option<Self> {
        match dtype {
            Datatype::FloatingPoint { size, byte_order } if *size == 4 || *size == 8 => {
                Some(FloatField {
                    offset,
                    wide: *size == 8,
                    big_endian: *byte_order == hdf5_reader::ByteOrder::BigEndian,
                })
            }
            _ => None,
        }
    }

    /// The field's value in the element `bytes` (long enough: checked against the type size).
    fn get(&self, bytes: &[u8]) -> f32 {
        let o = self.offset;
        if self.wide {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            let v = if self.big_endian {
                f64::from_be_bytes(b)
            } else {
                f64::from_le_bytes(b)
            };
            v as f32
        } else {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[o..o + 4]);
            if self.big_endian {
                f32::from_be_bytes(b)
            } else {
                f32::from_le_bytes(b)
            }
        }
    }

    fn end(&self) -> usize {
        self.offset + if self.wide { 8 } else { 4 }
    }
}

/// The real and imaginary fields of a complex compound type, or why `dtype` is not one (a
/// phrase that follows the dataset's name).
fn complex_fields(dtype: &Datatype) -> std::result::Result<(FloatField, FloatField), String> {
    let expected = "expected complex numbers: a compound of two floating-point fields `r` and \
                    `i` (fastMRI, h5py) or `real` and `imag` (ISMRMRD)";
    let Datatype::Compound { size, fields } = dtype else {
        return Err(format!("holds {}; {expected}", describe_dtype(dtype)));
    };
    let field = |name: &str| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name));
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let (re, im) = COMPLEX_FIELDS
        .iter()
        .find_map(|(r, i)| Some((field(r)?, field(i)?)))
        .ok_or_else(|| format!("is a compound with fields {names:?}; {expected}"))?;
    let float = |f: &hdf5_reader::CompoundField| {
        FloatField::from_dtype(f.byte_offset as usize, &f.datatype)
            .filter(|ff| ff.end() <= *size as usize)
            .ok_or_else(|| {
                format!(
                    "field `{}` holds {}; {expected}",
                    f.name,
                    describe_dtype(&f.datatype)
                )
            })
    };
    Ok((float(re)?, float(im)?))
}

/// Whether `dtype` is a real number type that [`RealElem`] decodes, or a description of it.
fn real_kind(dtype: &Datatype) -> std::result::Result<(), String> {
    match dtype {
        Datatype::FloatingPoint { size: 4 | 8, .. } => Ok(()),
        other => Err(describe_dtype(other)),
    }
}

/// A short description of an HDF5 type for error messages.
fn describe_dtype(dtype: &Datatype) -> String {
    match dtype {
        Datatype::FloatingPoint { size, .. } => format!("real numbers (float{})", 8 * *size as u32),
        Datatype::FixedPoint { size, signed, .. } => {
            format!(
                "integers ({}int{})",
                if *signed { "" } else { "u" },
                8 * *size as u32
            )
        }
        Datatype::String { .. } | Datatype::VarLen { .. } => "strings".to_string(),
        Datatype::Compound { fields, .. } => format!(
            "a compound with fields {:?}",
            fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>()
        ),
        Datatype::Enum { .. } => "an enumeration".to_string(),
        Datatype::Array { .. } => "an array type".to_string(),
        Datatype::Opaque { .. } => "opaque data".to_string(),
        Datatype::Reference { .. } => "references".to_string(),
        Datatype::Bitfield { .. } => "a bit field".to_string(),
    }
}

/// One complex element of `kspace`, decoded from its compound.
#[derive(Clone, Copy, Debug)]
struct ComplexElem(C32);

impl H5Type for ComplexElem {
    fn hdf5_type() -> Datatype {
        let field = |name: &str, offset| hdf5_reader::CompoundField {
            name: name.to_string(),
            byte_offset: offset,
            datatype: f32::hdf5_type(),
        };
        Datatype::Compound {
            size: 8,
            fields: vec![field("r", 0), field("i", 4)],
        }
    }

    fn from_bytes(bytes: &[u8], dtype: &Datatype) -> H5Result<Self> {
        let (re, im) = complex_fields(dtype).map_err(H5Error::InvalidData)?;
        check_len(bytes.len(), re.end().max(im.end()))?;
        Ok(ComplexElem(C32::new(re.get(bytes), im.get(bytes))))
    }

    fn element_size(dtype: &Datatype) -> usize {
        hdf5_reader::dtype_element_size(dtype).unwrap_or(0)
    }

    fn decode_vec(raw: &[u8], dtype: &Datatype, count: usize) -> Option<H5Result<Vec<Self>>> {
        let (re, im) = complex_fields(dtype).ok()?;
        let size = hdf5_reader::dtype_element_size(dtype).ok()?;
        if size == 0 || raw.len() < count.checked_mul(size)? {
            return None;
        }
        Some(Ok(raw
            .chunks_exact(size)
            .take(count)
            .map(|b| ComplexElem(C32::new(re.get(b), im.get(b))))
            .collect()))
    }
}

/// One real element of `reconstruction_rss` (float32 or float64, either byte order).
#[derive(Clone, Copy, Debug)]
struct RealElem(f32);

impl H5Type for RealElem {
    fn hdf5_type() -> Datatype {
        f32::hdf5_type()
    }

    fn from_bytes(bytes: &[u8], dtype: &Datatype) -> H5Result<Self> {
        let field = FloatField::from_dtype(0, dtype).ok_or_else(|| {
            H5Error::InvalidData(format!("expected real numbers, found {dtype:?}"))
        })?;
        check_len(bytes.len(), field.end())?;
        Ok(RealElem(field.get(bytes)))
    }

    fn element_size(dtype: &Datatype) -> usize {
        hdf5_reader::dtype_element_size(dtype).unwrap_or(0)
    }
}

fn check_len(have: usize, need: usize) -> H5Result<()> {
    if have < need {
        return Err(H5Error::InvalidData(format!(
            "element has {have} bytes, its type needs {need}"
        )));
    }
    Ok(())
}

/// The text of a string dataset (fixed or variable length, scalar or one element), or of a 1-D
/// array of bytes.
fn read_text(file: &Hdf5File, name: &str) -> std::result::Result<String, String> {
    let ds = file
        .dataset(&format!("/{name}"))
        .map_err(|e| format!("cannot open dataset `{name}` ({e}){DAMAGED}"))?;
    match ds.dtype() {
        Datatype::String { .. } | Datatype::VarLen { .. } => ds
            .read_string()
            .map_err(|e| format!("cannot read `{name}` as a string ({e}){DAMAGED}")),
        Datatype::FixedPoint { size: 1, .. } if ds.shape().len() <= 1 => {
            let bytes = ds
                .read_raw_bytes()
                .map_err(|e| format!("cannot read `{name}` ({e}){DAMAGED}"))?;
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            String::from_utf8(bytes[..end].to_vec())
                .map_err(|e| format!("`{name}` is not UTF-8 text: {e}"))
        }
        other => Err(format!(
            "`{name}` holds {}; expected an XML string",
            describe_dtype(other)
        )),
    }
}

/// The `mask` dataset: 1-D, length `width`, numbers or booleans; non-zero = kept.
fn read_mask(file: &Hdf5File, width: usize) -> std::result::Result<Vec<bool>, String> {
    let ds = file
        .dataset("/mask")
        .map_err(|e| format!("cannot open dataset `mask` ({e}){DAMAGED}"))?;
    let dims = usize_dims(ds.shape());
    if dims != [width] {
        return Err(format!(
            "`mask` has shape {dims:?}; expected [{width}], one entry per k-space column"
        ));
    }
    let bytes = ds
        .read_raw_bytes()
        .map_err(|e| format!("cannot read `mask` ({e}){DAMAGED}"))?;
    let size = hdf5_reader::dtype_element_size(ds.dtype()).unwrap_or(0);
    if size == 0 || bytes.len() != width * size {
        return Err(format!(
            "`mask` data has {} bytes for {width} entries; expected {} bytes per entry",
            bytes.len(),
            size
        ));
    }
    let mask: Vec<bool> = match ds.dtype() {
        // Integers and h5py's booleans (an enum over int8): non-zero in any byte order.
        Datatype::FixedPoint { .. } | Datatype::Enum { .. } | Datatype::Bitfield { .. } => bytes
            .chunks_exact(size)
            .map(|b| b.iter().any(|&x| x != 0))
            .collect(),
        dtype @ Datatype::FloatingPoint { .. } => {
            let field = FloatField::from_dtype(0, dtype)
                .ok_or_else(|| format!("`mask` holds {}", describe_dtype(dtype)))?;
            let values: Vec<f32> = bytes.chunks_exact(size).map(|b| field.get(b)).collect();
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(format!(
                    "`mask` entry {i} is {}; expected 0 or 1",
                    values[i]
                ));
            }
            values.iter().map(|&v| v != 0.0).collect()
        }
        other => {
            return Err(format!(
                "`mask` holds {}; expected numbers or booleans (non-zero = column kept)",
                describe_dtype(other)
            ))
        }
    };
    if !mask.iter().any(|&m| m) {
        return Err("`mask` keeps no column; expected at least one sampled column".to_string());
    }
    Ok(mask)
}
