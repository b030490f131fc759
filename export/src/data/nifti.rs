//! Minimal NIfTI-1 reader for magnitude volumes (`.nii`, `.nii.gz`), enough for the Colin27
//! template. (To be replaced by `msm::io::nifti` once that is on `main`.)

use std::io::Read;
use std::path::Path;

use ndarray::Array3;

use msm::{Error, Result};

/// Reads a NIfTI-1 volume as f32, indexed `[x, y, z]` (NIfTI's i, j, k), with the header's
/// `scl_slope` / `scl_inter` applied.
pub fn read_volume(path: &Path) -> Result<Array3<f32>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("corrupt gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    if bytes.len() < 352 {
        return Err(Error::format(
            path,
            format!(
                "{} bytes is too short for a NIfTI-1 file (header is 348 bytes)",
                bytes.len()
            ),
        ));
    }
    let le = i32::from_le_bytes(bytes[0..4].try_into().unwrap_or_default()) == 348;
    let be = i32::from_be_bytes(bytes[0..4].try_into().unwrap_or_default()) == 348;
    if !le && !be {
        return Err(Error::format(
            path,
            "sizeof_hdr is not 348: not a NIfTI-1 file",
        ));
    }
    let i16_at = |o: usize| {
        let b = [bytes[o], bytes[o + 1]];
        if le {
            i16::from_le_bytes(b)
        } else {
            i16::from_be_bytes(b)
        }
    };
    let f32_at = |o: usize| {
        let b = [bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]];
        if le {
            f32::from_le_bytes(b)
        } else {
            f32::from_be_bytes(b)
        }
    };
    let ndim = i16_at(40);
    if !(3..=7).contains(&ndim) {
        return Err(Error::format(
            path,
            format!("dim[0] = {ndim}; expected a 3-D volume"),
        ));
    }
    let dims: Vec<usize> = (1..=3)
        .map(|i| i16_at(40 + 2 * i).max(0) as usize)
        .collect();
    for i in 4..=ndim as usize {
        if i16_at(40 + 2 * i) > 1 {
            return Err(Error::format(
                path,
                "volume has more than 3 non-trivial dimensions; expected one 3-D volume",
            ));
        }
    }
    let datatype = i16_at(70);
    let offset = f32_at(108).max(352.0) as usize;
    let (mut slope, inter) = (f32_at(112), f32_at(116));
    if slope == 0.0 || !slope.is_finite() {
        slope = 1.0;
    }
    let inter = if inter.is_finite() { inter } else { 0.0 };
    let n: usize = dims.iter().product();
    let size = match datatype {
        2 => 1,
        4 | 512 => 2,
        8 | 16 => 4,
        64 => 8,
        other => {
            return Err(Error::format(
                path,
                format!("datatype {other} not supported; expected uint8 (2), int16 (4), uint16 (512), int32 (8), float32 (16) or float64 (64)"),
            ))
        }
    };
    let data = bytes.get(offset..offset + n * size).ok_or_else(|| {
        Error::format(
            path,
            format!(
                "file holds {} bytes of voxel data but {dims:?} voxels of {size} bytes need {}",
                bytes.len().saturating_sub(offset),
                n * size
            ),
        )
    })?;
    let value = |i: usize| -> f32 {
        let c = &data[i * size..(i + 1) * size];
        let v = match datatype {
            2 => c[0] as f32,
            4 => {
                let b = [c[0], c[1]];
                (if le {
                    i16::from_le_bytes(b)
                } else {
                    i16::from_be_bytes(b)
                }) as f32
            }
            512 => {
                let b = [c[0], c[1]];
                (if le {
                    u16::from_le_bytes(b)
                } else {
                    u16::from_be_bytes(b)
                }) as f32
            }
            8 => {
                let b = [c[0], c[1], c[2], c[3]];
                (if le {
                    i32::from_le_bytes(b)
                } else {
                    i32::from_be_bytes(b)
                }) as f32
            }
            16 => {
                let b = [c[0], c[1], c[2], c[3]];
                if le {
                    f32::from_le_bytes(b)
                } else {
                    f32::from_be_bytes(b)
                }
            }
            _ => {
                let b: [u8; 8] = c.try_into().unwrap_or_default();
                (if le {
                    f64::from_le_bytes(b)
                } else {
                    f64::from_be_bytes(b)
                }) as f32
            }
        };
        v * slope + inter
    };
    // NIfTI stores x fastest: element (x, y, z) is at x + nx (y + ny z).
    Ok(Array3::from_shape_fn(
        (dims[0], dims[1], dims[2]),
        |(x, y, z)| value(x + dims[0] * (y + dims[1] * z)),
    ))
}
