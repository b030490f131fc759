//! Prepared scans (private to `data`): every slice of a data config's scans as the loader
//! prepares it (module `scans`: k-space on the model's grid, mask, ESPIRiT maps, gain), with
//! its noise estimate, in one safetensors file. `msm-train prepare` writes it; both trainers
//! (this one and `export/gpu/train.py`, which has no HDF5 reader or ESPIRiT) read it in place of
//! the `.h5` files, so a run, a resume and an export skip the per-slice preparation.
//!
//! Entries: `kspace` and `maps` `[N, coils, H, W, 2]` f32 (real, imaginary), `mask` `[N, W]`
//! u8, `noise` `[N]` f64 (each slice's estimate, on the training scale), and `__meta` (JSON:
//! format, grid, coils, and each slice's source file and index).

use std::path::{Path, PathBuf};

use ndarray::Array3;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::Measurement;
use crate::store;
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
    let mask: Vec<u8> = slices
        .iter()
        .flat_map(|s| s.measurement.mask.iter().map(|&k| u8::from(k)))
        .collect();
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
                Tensor::from_slice(&mask).view([n, width as i64]),
            ),
            ("noise".into(), Tensor::from_slice(&noise)),
        ],
        "prepared scans",
    )
}

/// Reads a prepared-scans file for a model grid of `image_size` and `coils` coils.
pub(super) fn read(path: &Path, image_size: usize, coils: usize) -> Result<Vec<PreparedSlice>> {
    let (meta, map): (PreparedMeta, _) = store::read(path, PREPARED_FORMAT, "prepared scans")?;
    let fmt = |msg: String| Error::format(path, msg);
    if (meta.height, meta.width, meta.coils) != (image_size, image_size, coils) {
        return Err(fmt(format!(
            "prepared for a {} x {} grid with {} coils, but the data config says image_size {} \
             and coils {}; expected the same (run `msm-train prepare` again with this config)",
            meta.height, meta.width, meta.coils, image_size, coils
        )));
    }
    let n = meta.sources.len();
    let (h, w) = (meta.height, meta.width);
    let entry = |name: &str, kind: Kind, shape: &[i64]| -> Result<Tensor> {
        let t = map
            .get(name)
            .ok_or_else(|| fmt(format!("has no `{name}` entry")))?;
        if t.size() != shape || t.kind() != kind {
            return Err(fmt(format!(
                "`{name}` is {:?} {:?}, expected {kind:?} {shape:?}",
                t.kind(),
                t.size()
            )));
        }
        Ok(t.contiguous().view([-1]))
    };
    let shape = [n as i64, coils as i64, h as i64, w as i64, 2];
    let floats = |name: &str| -> Result<Vec<f32>> {
        Vec::<f32>::try_from(entry(name, Kind::Float, &shape)?)
            .map_err(|e| fmt(format!("`{name}`: {e}")))
    };
    let (kspace, maps) = (floats("kspace")?, floats("maps")?);
    let mask = Vec::<u8>::try_from(entry("mask", Kind::Uint8, &[n as i64, w as i64])?)
        .map_err(|e| fmt(format!("`mask`: {e}")))?;
    let noise = Vec::<f64>::try_from(entry("noise", Kind::Double, &[n as i64])?)
        .map_err(|e| fmt(format!("`noise`: {e}")))?;
    let per = 2 * coils * h * w;
    let complex = |values: &[f32], i: usize| {
        let part = &values[i * per..(i + 1) * per];
        Array3::from_shape_fn((coils, h, w), |(c, y, x)| {
            let k = 2 * ((c * h + y) * w + x);
            C32::new(part[k], part[k + 1])
        })
    };
    Ok(meta
        .sources
        .into_iter()
        .enumerate()
        .map(|(i, (source, index))| PreparedSlice {
            source,
            index,
            measurement: Measurement {
                kspace: complex(&kspace, i),
                maps: complex(&maps, i),
                mask: mask[i * w..(i + 1) * w].iter().map(|&k| k != 0).collect(),
                eta: 0.0,
            },
            noise: noise[i],
        })
        .collect())
}
