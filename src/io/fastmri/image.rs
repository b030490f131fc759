//! fastMRI's image-space conventions: the sampling mask seen in the data, the root-sum-of-squares
//! reference image, and centre crop / zero pad between image grids.
//!
//! Crop offsets follow fastMRI's `center_crop`: a crop of size `m` from `n` starts at
//! `(n - m) / 2` (integer division). [`zero_pad`] places the image at the same offset inside the
//! larger grid, so cropping a padded image gives back the original exactly.

use crate::fft::Fft2;
use crate::mask::Mask;
use crate::{Error, Result, C32};
use ndarray::{s, Array2, ArrayView2, ArrayView3, Axis, Zip};

/// The columns of one slice's `(coils, height, width)` k-space that hold a non-zero sample in
/// any coil and any row: the sampling mask of a file that does not store one.
///
/// Unsampled columns of fastMRI's undersampled files are exactly zero. A fully sampled scan whose
/// k-space was zero-padded along the width reports the padded columns as unsampled, which is
/// harmless: they hold no data either way.
pub fn detect_mask(kspace: ArrayView3<C32>) -> Vec<bool> {
    let mut mask = vec![false; kspace.dim().2];
    for coil in kspace.outer_iter() {
        for row in coil.rows() {
            for (m, v) in mask.iter_mut().zip(row) {
                *m |= v.re != 0.0 || v.im != 0.0;
            }
        }
    }
    mask
}

/// The entries of one slice's `(coils, height, width)` k-space that hold a non-zero sample in
/// any coil: the sampling pattern of data undersampled along both axes (the slices of a 3-D
/// scan taken along its readout), as [`Mask::Columns`] when it keeps whole columns.
pub fn detect_entries(kspace: ArrayView3<C32>) -> Mask {
    let (_, h, w) = kspace.dim();
    let mut p = Array2::from_elem((h, w), false);
    for coil in kspace.outer_iter() {
        Zip::from(&mut p)
            .and(&coil)
            .for_each(|m, v| *m |= v.re != 0.0 || v.im != 0.0);
    }
    Mask::Pattern(p).simplified()
}

/// fastMRI's multi-coil image of one slice: per coil `fftshift(ifft2(ifftshift(k)))` with the
/// orthonormal scaling ([`Fft2::inverse`]), then the root sum of squares over coils.
pub fn rss_image(kspace: ArrayView3<C32>) -> Result<Array2<f32>> {
    let (coils, height, width) = kspace.dim();
    if coils == 0 || height == 0 || width == 0 {
        return Err(Error::invalid(format!(
            "root-sum-of-squares image of an empty k-space ({coils} coils, {height} x {width}): \
             expected at least one coil and a non-empty grid"
        )));
    }
    let mut images = kspace.to_owned();
    Fft2::new(height, width).inverse_coils(&mut images);
    let mut sum = Array2::<f64>::zeros((height, width));
    for coil in images.axis_iter(Axis(0)) {
        Zip::from(&mut sum)
            .and(&coil)
            .for_each(|acc, v| *acc += f64::from(v.norm_sqr()));
    }
    Ok(sum.mapv(|v| v.sqrt() as f32))
}

/// The fastMRI reference image of one slice: [`rss_image`] cropped to `recon_size`
/// `(height, width)` when given (fastMRI crops to the recon matrix, e.g. 320 x 320).
pub fn reference_image(
    kspace: ArrayView3<C32>,
    recon_size: Option<(usize, usize)>,
) -> Result<Array2<f32>> {
    let image = rss_image(kspace)?;
    match recon_size {
        Some(size) => center_crop(image.view(), size),
        None => Ok(image),
    }
}

/// The centred `size = (height, width)` window of `image`, starting at `(n - m) / 2` on each
/// axis as fastMRI's `center_crop` does. Fails when the window is larger than the image or empty.
pub fn center_crop<T: Clone>(image: ArrayView2<T>, size: (usize, usize)) -> Result<Array2<T>> {
    let (h, w) = image.dim();
    check_nonempty("crop", size)?;
    if size.0 > h || size.1 > w {
        return Err(Error::invalid(format!(
            "cannot centre-crop a {h} x {w} image to {} x {}: the crop is larger than the image \
             along {}; expected a size of at most {h} x {w} (zero-pad instead)",
            size.0,
            size.1,
            larger_axes(size, (h, w)),
        )));
    }
    let (r0, c0) = ((h - size.0) / 2, (w - size.1) / 2);
    Ok(image.slice(s![r0..r0 + size.0, c0..c0 + size.1]).to_owned())
}

/// `image` centred in a zero-filled `size = (height, width)` grid, at offset `(m - n) / 2` so
/// that [`center_crop`] undoes it. Fails when the grid is smaller than the image or empty.
pub fn zero_pad<T: Clone + Default>(
    image: ArrayView2<T>,
    size: (usize, usize),
) -> Result<Array2<T>> {
    let (h, w) = image.dim();
    check_nonempty("zero-pad", size)?;
    if size.0 < h || size.1 < w {
        return Err(Error::invalid(format!(
            "cannot zero-pad a {h} x {w} image to {} x {}: the grid is smaller than the image \
             along {}; expected a size of at least {h} x {w} (crop instead)",
            size.0,
            size.1,
            larger_axes((h, w), size),
        )));
    }
    Ok(crop_or_pad(image, size))
}

/// `image` brought to `size = (height, width)` axis by axis: centre-cropped along an axis where
/// it is larger, zero-padded where it is smaller, with the offsets of [`center_crop`] and
/// [`zero_pad`]. An empty `size` gives an empty array.
pub fn crop_or_pad<T: Clone + Default>(image: ArrayView2<T>, size: (usize, usize)) -> Array2<T> {
    let (h, w) = image.dim();
    // Per axis: (source start, destination start, length).
    let place = |n: usize, m: usize| {
        if m <= n {
            ((n - m) / 2, 0, m)
        } else {
            (0, (m - n) / 2, n)
        }
    };
    let (sr, dr, lr) = place(h, size.0);
    let (sc, dc, lc) = place(w, size.1);
    let mut out = Array2::from_elem(size, T::default());
    out.slice_mut(s![dr..dr + lr, dc..dc + lc])
        .assign(&image.slice(s![sr..sr + lr, sc..sc + lc]));
    out
}

fn check_nonempty(what: &str, size: (usize, usize)) -> Result<()> {
    if size.0 == 0 || size.1 == 0 {
        return Err(Error::invalid(format!(
            "cannot {what} an image to {} x {}: expected a non-empty size",
            size.0, size.1
        )));
    }
    Ok(())
}

/// "height", "width" or "height and width": the axes where `a` exceeds `b`.
fn larger_axes(a: (usize, usize), b: (usize, usize)) -> &'static str {
    match (a.0 > b.0, a.1 > b.1) {
        (true, true) => "height and width",
        (true, false) => "height",
        _ => "width",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array3};

    #[test]
    fn crop_matches_fastmri_offsets() {
        let image = Array2::from_shape_fn((5, 6), |(r, c)| (10 * r + c) as f32);
        // fastMRI: rows from (5 - 2) // 2 = 1, columns from (6 - 3) // 2 = 1.
        let crop = center_crop(image.view(), (2, 3)).unwrap();
        assert_eq!(crop, array![[11.0, 12.0, 13.0], [21.0, 22.0, 23.0]]);
        assert_eq!(center_crop(image.view(), (5, 6)).unwrap(), image);
    }

    #[test]
    fn pad_then_crop_is_identity_for_all_parities() {
        for (h, w) in [(3, 4), (4, 3), (1, 1), (6, 7)] {
            let image = Array2::from_shape_fn((h, w), |(r, c)| C32::new(r as f32 + 1.0, c as f32));
            for (ph, pw) in [(h, w), (h + 1, w + 2), (h + 3, w + 1)] {
                let padded = zero_pad(image.view(), (ph, pw)).unwrap();
                assert_eq!(padded.dim(), (ph, pw));
                let kept = padded.iter().filter(|v| **v != C32::default()).count();
                assert_eq!(kept, h * w, "padding adds only zeros");
                assert_eq!(center_crop(padded.view(), (h, w)).unwrap(), image);
            }
        }
    }

    #[test]
    fn crop_or_pad_mixes_axes() {
        let image = Array2::from_shape_fn((4, 2), |(r, c)| (10 * r + c + 1) as f32);
        let out = crop_or_pad(image.view(), (2, 4));
        assert_eq!(out, array![[0.0, 11.0, 12.0, 0.0], [0.0, 21.0, 22.0, 0.0]]);
    }

    #[test]
    fn sizes_that_cannot_fit_are_errors() {
        let image = Array2::<f32>::zeros((4, 6));
        let err = center_crop(image.view(), (5, 6)).unwrap_err().to_string();
        assert!(
            err.contains("4 x 6") && err.contains("along height"),
            "{err}"
        );
        let err = zero_pad(image.view(), (4, 5)).unwrap_err().to_string();
        assert!(
            err.contains("along width") && err.contains("at least 4 x 6"),
            "{err}"
        );
        assert!(center_crop(image.view(), (0, 3)).is_err());
        assert!(zero_pad(image.view(), (6, 0)).is_err());
    }

    #[test]
    fn detect_mask_finds_columns_with_any_sample() {
        let mut k = Array3::<C32>::zeros((2, 3, 5));
        k[[1, 2, 0]] = C32::new(0.0, -1e-30);
        k[[0, 0, 3]] = C32::new(2.0, 0.0);
        assert_eq!(detect_mask(k.view()), vec![true, false, false, true, false]);
    }

    #[test]
    fn rss_matches_a_naive_centred_inverse_dft() {
        let (coils, h, w) = (3, 5, 4);
        let k = Array3::from_shape_fn((coils, h, w), |(c, r, col)| {
            C32::new(
                ((c * 7 + r * 3 + col) % 5) as f32 - 2.0,
                ((c + 2 * r + 3 * col) % 4) as f32 - 1.5,
            )
        });
        let rss = rss_image(k.view()).unwrap();
        // Naive centred orthonormal inverse DFT: x[p] = sum_k y[k] e^{+2 pi i (p - p0)(k - k0)/n}
        // with p0 = n / 2 for both sides (fftshift / ifftshift centre).
        let norm = 1.0 / ((h * w) as f64).sqrt();
        for p in 0..h {
            for q in 0..w {
                let mut acc = 0.0f64;
                for c in 0..coils {
                    let (mut re, mut im) = (0.0f64, 0.0f64);
                    for r in 0..h {
                        for col in 0..w {
                            let phase = 2.0
                                * std::f64::consts::PI
                                * ((p as f64 - (h / 2) as f64) * (r as f64 - (h / 2) as f64)
                                    / h as f64
                                    + (q as f64 - (w / 2) as f64) * (col as f64 - (w / 2) as f64)
                                        / w as f64);
                            let v = k[[c, r, col]];
                            re += v.re as f64 * phase.cos() - v.im as f64 * phase.sin();
                            im += v.re as f64 * phase.sin() + v.im as f64 * phase.cos();
                        }
                    }
                    acc += (re * re + im * im) * norm * norm;
                }
                let want = acc.sqrt();
                assert!(
                    (rss[[p, q]] as f64 - want).abs() < 1e-5 * (1.0 + want),
                    "({p},{q}): {} vs {want}",
                    rss[[p, q]]
                );
            }
        }
        assert!(rss_image(Array3::<C32>::zeros((0, 2, 2)).view()).is_err());
    }
}
