//! PNG previews and PNG inputs.
//!
//! Writing turns a magnitude image into 8-bit grayscale through a display window; reading turns
//! any 8- or 16-bit PNG (gray, gray+alpha, RGB, RGBA, palette) into luminance in `[0, 1]`.
//! In both directions row 0 of the array is the top row of the picture and column 0 its left
//! column.

use super::atomic;
use crate::{Error, Result};
use ndarray::{s, Array2, ArrayRef2};
use std::fs::File;
use std::io::BufReader;
use std::ops::Deref;
use std::path::Path;

/// The range of values mapped onto black..white; values outside are clipped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// From 0 to the 99.5th percentile of the image's absolute values (the maximum if that
    /// percentile is 0; `(0, 1)` for an all-zero image).
    Auto,
    /// From `lo` (black) to `hi` (white); requires `lo < hi`.
    Fixed(f32, f32),
}

impl Window {
    /// The concrete `(lo, hi)` this window gives for `image`; use it to show several images
    /// with one window (resolve on the reference, then pass `Window::Fixed`).
    pub fn resolve(self, image: &ArrayRef2<f32>) -> (f32, f32) {
        match self {
            Window::Fixed(lo, hi) => (lo, hi),
            Window::Auto => {
                let mut values: Vec<f32> = image
                    .iter()
                    .map(|v| v.abs())
                    .filter(|v| v.is_finite())
                    .collect();
                if values.is_empty() {
                    return (0.0, 1.0);
                }
                // Nearest-rank percentile: the smallest value with at least 99.5 % at or below.
                let rank = ((values.len() as f64 * 0.995).ceil() as usize).clamp(1, values.len());
                let (_, &mut p, _) = values.select_nth_unstable_by(rank - 1, f32::total_cmp);
                let hi = if p > 0.0 {
                    p
                } else {
                    values.iter().copied().fold(0.0, f32::max)
                };
                (0.0, if hi > 0.0 { hi } else { 1.0 })
            }
        }
    }
}

/// Writes `image` as an 8-bit grayscale PNG through `window`, atomically: a value `v` becomes
/// `round(255 * clamp((v - lo) / (hi - lo), 0, 1))`.
///
/// Errors: an empty image, a window with `lo >= hi` or non-finite bounds, a NaN or infinite
/// pixel, or an I/O failure.
pub fn write_png(path: impl AsRef<Path>, image: &ArrayRef2<f32>, window: Window) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode_png(path, image, window)?;
    atomic::write_atomic(path, |out| out.write_all(&bytes))
}

/// The bytes [`write_png`] writes, for a caller that writes them with other files (one atomic
/// pair, say); `path` names the destination in errors.
pub fn encode_png(path: &Path, image: &ArrayRef2<f32>, window: Window) -> Result<Vec<u8>> {
    let invalid = |msg: String| Error::invalid(format!("{}: {msg}", path.display()));
    let (height, width) = image.dim();
    let (Ok(h), Ok(w)) = (u32::try_from(height), u32::try_from(width)) else {
        return Err(invalid(format!("image {height}x{width} is too large")));
    };
    if h == 0 || w == 0 {
        return Err(invalid(format!(
            "cannot write an empty {height}x{width} image"
        )));
    }
    if let Some(((r, c), v)) = image.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(invalid(format!(
            "non-finite pixel {v} at row {r}, column {c}"
        )));
    }
    let (lo, hi) = window.resolve(image);
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(invalid(format!(
            "bad window ({lo}, {hi}); expected finite lo < hi"
        )));
    }
    let scale = 255.0 / (hi as f64 - lo as f64);
    let pixels: Vec<u8> = image
        .iter()
        .map(|&v| ((v as f64 - lo as f64) * scale).clamp(0.0, 255.0).round() as u8)
        .collect();
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, w, h);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| {
            writer.write_image_data(&pixels)?;
            writer.finish()
        })
        .map_err(|e| invalid(format!("PNG encoding failed: {e}")))?;
    Ok(bytes)
}

/// Tiles equally sized images into one grid, row by row, `columns` images a row, with `gap`
/// pixels of value 0 between neighbours. Missing cells of the last row are 0.
///
/// Accepts `&[Array2<f32>]` or `&[ArrayView2<f32>]`. Errors on an empty list, `columns == 0` or
/// differing shapes.
pub fn tile<T>(images: &[T], columns: usize, gap: usize) -> Result<Array2<f32>>
where
    T: Deref<Target = ArrayRef2<f32>>,
{
    let first = images
        .first()
        .ok_or_else(|| Error::invalid("tile: no images given"))?;
    if columns == 0 {
        return Err(Error::invalid("tile: columns must be at least 1"));
    }
    let (h, w) = first.dim();
    if let Some((i, other)) = images.iter().enumerate().find(|(_, a)| a.dim() != (h, w)) {
        return Err(Error::invalid(format!(
            "tile: image {i} is {:?}, expected {:?} like image 0",
            other.dim(),
            (h, w)
        )));
    }
    let cols = columns.min(images.len());
    let rows = images.len().div_ceil(cols);
    let mut grid = Array2::zeros((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap));
    for (i, image) in images.iter().enumerate() {
        let (top, left) = ((i / cols) * (h + gap), (i % cols) * (w + gap));
        grid.slice_mut(s![top..top + h, left..left + w])
            .assign(&**image);
    }
    Ok(grid)
}

/// Reads a PNG as luminance in `[0, 1]`, shaped `(height, width)`. Colour is combined with the
/// ITU-R BT.601 weights `0.299 R + 0.587 G + 0.114 B`; alpha is ignored; 16-bit samples keep
/// their precision.
pub fn read_png(path: impl AsRef<Path>) -> Result<Array2<f32>> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: png::DecodingError| match e {
        png::DecodingError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::format(
                path,
                "not a readable PNG: the file ends early; expected a complete PNG image",
            )
        }
        png::DecodingError::IoError(e) => Error::io(path, e),
        e => Error::format(path, format!("not a readable PNG: {e}")),
    };
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(bad)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Error::format(path, "image too large"))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    let (width, height) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let (depth, max) = match info.bit_depth {
        png::BitDepth::Eight => (1, 255.0),
        png::BitDepth::Sixteen => (2, 65535.0),
        d => {
            return Err(Error::format(
                path,
                format!("unexpected bit depth {d:?} after expansion"),
            ))
        }
    };
    let line = info.line_size;
    let sample = |row: &[u8], k: usize| -> f32 {
        let v = if depth == 1 {
            row[k] as f32
        } else {
            u16::from_be_bytes([row[2 * k], row[2 * k + 1]]) as f32
        };
        v / max
    };
    let mut image = Array2::zeros((height, width));
    for (r, mut out) in image.rows_mut().into_iter().enumerate() {
        let row = &buf[r * line..(r + 1) * line];
        for (c, px) in out.iter_mut().enumerate() {
            let k = c * channels;
            *px = match info.color_type {
                png::ColorType::Grayscale | png::ColorType::GrayscaleAlpha => sample(row, k),
                png::ColorType::Rgb | png::ColorType::Rgba => {
                    0.299 * sample(row, k) + 0.587 * sample(row, k + 1) + 0.114 * sample(row, k + 2)
                }
                png::ColorType::Indexed => {
                    return Err(Error::format(path, "palette was not expanded"));
                }
            };
        }
    }
    Ok(image)
}
