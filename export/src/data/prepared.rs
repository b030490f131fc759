//! Prepared scans (private to `data`): every slice of a data config's scans as the loader
//! prepares it (module `scans`: k-space on the model's grid, mask, ESPIRiT maps, gain), with
//! its noise estimate, in one safetensors file. `msm-train prepare` writes it; both trainers
//! (this one and `export/gpu/train.py`, which has no HDF5 reader or ESPIRiT) read it in place of
//! the `.h5` files, so a run, a resume and an export skip the per-slice preparation.
//!
//! Entries: `kspace` and `maps` `[N, coils, H, W, 2]` f32 (real, imaginary), `mask` `[N, W]`
//! u8 (column masks) or `[N, H, W]` u8 (when any slice has a 2-D mask), `noise` `[N]` f64 (each slice's estimate, on the training scale), and `__meta` (JSON:
//! format, grid, coils, and each slice's source file and index).
//!
//! Reading maps the file into memory ([`PreparedFile`]): the masks, noise estimates and sources
//! are read when it opens, each slice's k-space and maps when it is drawn, so a set larger than
//! the machine's memory trains (the system pages in the slices drawn).

use std::path::{Path, PathBuf};

use ndarray::Array3;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::Measurement;
use crate::store;
use memmap2::Mmap;
use msm::mask::Mask;
use msm::{Error, Result, C32};

/// The `format` of a prepared-scans file.
pub const PREPARED_FORMAT: &str = "msm-train prepared scans 1";

/// What a prepared-scans file says of itself.
#[derive(Debug, Serialize, Deserialize)]
struct PreparedMeta {
    format: String,
    /// Rows and columns of every slice (the model's grid).
    height: usize,
    width: usize,
    /// Coils (virtual coils after compression) of every slice.
    coils: usize,
    /// Each slice's source: the scan file and the slice index in it.
    sources: Vec<(PathBuf, usize)>,
}

/// One prepared slice: its source file and index, its measurement (eta not set: 0) and its
/// noise estimate.
pub(super) struct PreparedSlice {
    pub(super) source: PathBuf,
    pub(super) index: usize,
    pub(super) measurement: Measurement,
    pub(super) noise: f64,
}

/// Whether `path` names a prepared-scans file (by its `.safetensors` extension) rather than a
/// scan.
pub(super) fn is_prepared(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// Interleaved real, imaginary parts of complex arrays, one after another.
fn interleave<'a>(arrays: impl Iterator<Item = &'a Array3<C32>>) -> Vec<f32> {
    arrays
        .flat_map(|a| a.iter().flat_map(|v| [v.re, v.im]))
        .collect()
}

/// Writes `slices` (at least one, all of one shape) to `path` (atomically).
pub(super) fn write(path: &Path, slices: &[PreparedSlice]) -> Result<()> {
    let first = slices
        .first()
        .ok_or_else(|| Error::invalid("no slices to write"))?;
    let (coils, height, width) = first.measurement.kspace.dim();
    let n = slices.len() as i64;
    let shape = [n, coils as i64, height as i64, width as i64, 2];
    let kspace = interleave(slices.iter().map(|s| &s.measurement.kspace));
    let maps = interleave(slices.iter().map(|s| &s.measurement.maps));
    let columns: Option<Vec<&[bool]>> = slices
        .iter()
        .map(|s| s.measurement.mask.columns())
        .collect();
    let (mask, mask_shape): (Vec<u8>, Vec<i64>) = match columns {
        Some(cols) => (
            cols.iter()
                .flat_map(|c| c.iter().map(|&k| u8::from(k)))
                .collect(),
            vec![n, width as i64],
        ),
        None => (
            slices
                .iter()
                .flat_map(|s| {
                    s.measurement
                        .mask
                        .to_pattern(height)
                        .into_iter()
                        .map(u8::from)
                })
                .collect(),
            vec![n, height as i64, width as i64],
        ),
    };
    let noise: Vec<f64> = slices.iter().map(|s| s.noise).collect();
    let meta = PreparedMeta {
        format: PREPARED_FORMAT.into(),
        height,
        width,
        coils,
        sources: slices.iter().map(|s| (s.source.clone(), s.index)).collect(),
    };
    store::write(
        path,
        &meta,
        vec![
            ("kspace".into(), Tensor::from_slice(&kspace).view(shape)),
            ("maps".into(), Tensor::from_slice(&maps).view(shape)),
            (
                "mask".into(),
                Tensor::from_slice(&mask).view(mask_shape.as_slice()),
            ),
            ("noise".into(), Tensor::from_slice(&noise)),
        ],
        "prepared scans",
    )
}

/// One slice of a prepared file, as listed when it opens: source, mask and noise estimate.
pub(super) struct PreparedEntry {
    pub(super) source: PathBuf,
    pub(super) index: usize,
    pub(super) mask: Mask,
    pub(super) noise: f64,
}

/// A prepared-scans file, memory-mapped; slices are decoded when asked for.
pub(super) struct PreparedFile {
    map: Mmap,
    /// Byte offsets of the `kspace` and `maps` data in the file.
    kspace: usize,
    maps: usize,
    /// `(coils, H, W)` of every slice.
    shape: (usize, usize, usize),
}

/// One entry of a safetensors header: its dtype, shape and byte range in the data section.
#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

impl PreparedFile {
    /// Opens `path` for a model grid `grid` (height, width) and `coils` coils: checks its format,
    /// grid, coils and every entry's type, shape and extent, and lists its slices.
    pub(super) fn open(
        path: &Path,
        grid: (usize, usize),
        coils: usize,
    ) -> Result<(PreparedFile, Vec<PreparedEntry>)> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read only. A file truncated or rewritten by another process while
        // a run reads it is outside what the trainer guards against (`msm-train prepare`
        // replaces files by renaming, which leaves this map on the old contents).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let fmt = |msg: String| Error::format(path, msg);
        let unreadable = |why: &str| {
            fmt(format!(
                "not a readable prepared scans file ({why}); expected a safetensors file written \
                 by msm-train prepare"
            ))
        };
        let len = map
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
            .ok_or_else(|| unreadable("shorter than a header"))?;
        let start = 8usize
            .checked_add(len)
            .filter(|&s| s <= map.len())
            .ok_or_else(|| unreadable("the header runs past the end"))?;
        let header: std::collections::HashMap<String, serde_json::Value> =
            serde_json::from_slice(&map[8..start])
                .map_err(|e| unreadable(&format!("bad header: {e}")))?;
        // The byte range of entry `name`, which must hold `dtype` values of `shape`.
        let entry = |name: &str, dtype: &str, size: usize, shape: Option<&[usize]>| {
            let e: Entry = header
                .get(name)
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .ok_or_else(|| fmt(format!("has no `{name}` entry")))?;
            let [a, b] = e.data_offsets;
            let count: usize = e.shape.iter().product();
            if e.dtype != dtype
                || shape.is_some_and(|s| s != e.shape.as_slice())
                || b < a
                || b - a != count * size
                || start + b > map.len()
            {
                return Err(fmt(format!(
                    "`{name}` is {} {:?}, expected {dtype}{} within the file",
                    e.dtype,
                    e.shape,
                    shape.map_or(String::new(), |s| format!(" {s:?}"))
                )));
            }
            Ok((start + a, start + b))
        };
        let (m0, m1) = entry(store::META_ENTRY, "U8", 1, None)?;
        let meta: PreparedMeta =
            store::parse_meta(path, &map[m0..m1], PREPARED_FORMAT, "prepared scans")?;
        if (meta.height, meta.width, meta.coils) != (grid.0, grid.1, coils) {
            return Err(fmt(format!(
                "prepared for a {} x {} grid with {} coils, but the data config says {} x {} \
                 (image_size, image_width) with {} coils; expected the same (run `msm-train \
                 prepare` again with this config)",
                meta.height, meta.width, meta.coils, grid.0, grid.1, coils
            )));
        }
        let (n, h, w) = (meta.sources.len(), meta.height, meta.width);
        let shape = [n, coils, h, w, 2];
        let (kspace, _) = entry("kspace", "F32", 4, Some(&shape))?;
        let (maps, _) = entry("maps", "F32", 4, Some(&shape))?;
        let (k0, k1) = entry("mask", "U8", 1, None)?;
        // Column masks `[N, W]`, or 2-D masks `[N, H, W]`.
        let per_slice = match (k1 - k0) / n.max(1) {
            p if p == w && k1 - k0 == n * w => w,
            p if p == h * w && k1 - k0 == n * h * w => h * w,
            _ => {
                return Err(fmt(format!(
                    "`mask` holds {} bytes, expected U8 [{n}, {w}] or [{n}, {h}, {w}]",
                    k1 - k0
                )))
            }
        };
        let (n0, _) = entry("noise", "F64", 8, Some(&[n]))?;
        let entries = meta
            .sources
            .into_iter()
            .enumerate()
            .map(|(i, (source, index))| PreparedEntry {
                source,
                index,
                mask: {
                    let kept = map[k0 + i * per_slice..k0 + (i + 1) * per_slice]
                        .iter()
                        .map(|&k| k != 0);
                    if per_slice == w {
                        Mask::Columns(kept.collect())
                    } else {
                        Mask::Pattern(
                            ndarray::Array2::from_shape_vec((h, w), kept.collect())
                                .expect("h x w entries"),
                        )
                    }
                },
                noise: f64::from_le_bytes(
                    map[n0 + 8 * i..n0 + 8 * i + 8].try_into().unwrap_or([0; 8]),
                ),
            })
            .collect();
        let file = PreparedFile {
            map,
            kspace,
            maps,
            shape: (coils, h, w),
        };
        Ok((file, entries))
    }

    /// K-space and maps of slice `i`, `(coils, H, W)` each.
    pub(super) fn arrays(&self, i: usize) -> (Array3<C32>, Array3<C32>) {
        let (c, h, w) = self.shape;
        let per = 8 * c * h * w;
        let decode = |offset: usize| {
            let bytes = &self.map[offset + i * per..offset + (i + 1) * per];
            let f =
                |k: usize| f32::from_le_bytes(bytes[4 * k..4 * k + 4].try_into().unwrap_or([0; 4]));
            Array3::from_shape_fn((c, h, w), |(ci, y, x)| {
                let k = 2 * ((ci * h + y) * w + x);
                C32::new(f(k), f(k + 1))
            })
        };
        (decode(self.kspace), decode(self.maps))
    }
}
