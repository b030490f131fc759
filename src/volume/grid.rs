//! Fitting a scan's k-space grid to the model's image grid, and the model's image to the output.
//!
//! A model takes images of one size `(Hm, Wm)`; a scan's k-space is `(H0, W0)` per coil, and
//! fastMRI crops its reference image to the file's recon size `(Hr, Wr)` (the shape of
//! `reconstruction_rss`, else the header's recon matrix). [`GridPlan`] decides how a slice
//! travels between the three grids:
//!
//! 1. **Width (phase encode) must equal the model's: `W0 = Wm`.** The scan is undersampled
//!    along the width, in whole columns. Cropping or zero-padding the image along that axis
//!    would spread every acquired column into the missing ones (it is a convolution across
//!    columns in k-space), so the measured data could no longer be matched exactly. A scan
//!    whose width differs is refused.
//! 2. **Height (readout): centre crop or zero pad in image space to `Hm`.** Every acquired
//!    column is fully sampled along the readout, so each column is taken to image space along
//!    the height (centred orthonormal 1-D inverse FFT), centre-cropped or zero-padded to `Hm`
//!    rows with fastMRI's offsets ([`crate::io::fastmri::crop_or_pad`]) and transformed back.
//!    This is exact: acquired columns stay acquired, missing ones stay exactly zero, and it is
//!    fastMRI's "k-space -> image -> crop" along that axis (typically removing the 2x readout
//!    oversampling, 640 -> 320).
//! 3. **Output: the file's recon size `(Hr, Wr)`, else the scan's `(H0, W0)`.** The model's
//!    `Hm x W0` image is placed back on the scan's `H0` rows (the inverse of step 2) and
//!    centre-cropped (or zero-padded) to the output size, as fastMRI crops its reference.
//!
//! A crop in step 2 may only remove rows outside the output: the model must have at least
//! `min(Hr, H0)` rows (`H0` when the file has no recon size). A smaller model, or a different
//! width, cannot be made to fit and [`GridPlan::new`] says so, with the sizes.

use crate::io::fastmri::crop_or_pad;
use crate::{Error, Result, C32};
use ndarray::{s, Array2, Array3, ArrayView2, ArrayView3};
use rustfft::{Fft, FftPlanner};

/// How a scan's slices reach the model's grid and the output grid (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridPlan {
    /// One coil's k-space grid of the scan, `(height, width)`.
    pub scan: (usize, usize),
    /// The model's image grid, `(height, width)`.
    pub model: (usize, usize),
    /// The output image grid, `(height, width)`: the recon size, else the scan's grid.
    pub output: (usize, usize),
    /// Whether `output` is the file's recon size (rather than the scan's grid).
    pub from_recon: bool,
}

impl GridPlan {
    /// Plans a scan with k-space grid `scan` and optional recon size `recon` for a model of grid
    /// `model` (all `(height, width)`). Errors (without a file name; the caller adds it) when
    /// the widths differ or the model has fewer rows than the output needs.
    pub fn new(
        scan: (usize, usize),
        recon: Option<(usize, usize)>,
        model: (usize, usize),
    ) -> Result<GridPlan> {
        let (h0, w0) = scan;
        let (hm, wm) = model;
        if [h0, w0, hm, wm].contains(&0) || recon.is_some_and(|(a, b)| a == 0 || b == 0) {
            return Err(Error::invalid(format!(
                "empty grid: k-space {h0}x{w0}, model {hm}x{wm}, recon size {recon:?}; expected \
                 sizes of at least 1"
            )));
        }
        if w0 != wm {
            return Err(Error::invalid(format!(
                "the k-space is {h0}x{w0} (height x width) but the model's grid is {hm}x{wm}: \
                 the widths differ and cannot be made to fit. The width is the phase-encode \
                 axis, along which the scan is undersampled; cropping or padding the image \
                 along it would spread the acquired columns into the missing ones. Expected a \
                 model {w0} wide (any height of at least the rows the output needs)"
            )));
        }
        let output = recon.unwrap_or(scan);
        let need = output.0.min(h0);
        if hm < need {
            let why = match recon {
                Some((hr, wr)) => format!("the file's recon size is {hr}x{wr}"),
                None => format!(
                    "the file gives no recon size, so the whole {h0}-row image is the output"
                ),
            };
            return Err(Error::invalid(format!(
                "the k-space is {h0}x{w0} (height x width) and {why}, but the model's grid is \
                 {hm}x{wm}: cropping the image to {hm} rows would cut into the output. Expected \
                 a model with at least {need} rows"
            )));
        }
        Ok(GridPlan {
            scan,
            model,
            output,
            from_recon: recon.is_some(),
        })
    }

    /// What the plan does, for a message on stderr; `None` when the scan, the model and the
    /// output all have the same grid.
    pub fn describe(&self) -> Option<String> {
        let (h0, w0) = self.scan;
        let (hm, wm) = self.model;
        let (ho, wo) = self.output;
        if self.scan == self.model && self.output == self.scan {
            return None;
        }
        let to_model = match h0.cmp(&hm) {
            std::cmp::Ordering::Greater => format!(
                "centre-cropped along the readout (height) from {h0} to {hm} rows in image space"
            ),
            std::cmp::Ordering::Less => format!(
                "zero-padded along the readout (height) from {h0} to {hm} rows in image space"
            ),
            std::cmp::Ordering::Equal => "used as it is".to_string(),
        };
        let source = if self.from_recon {
            "the file's recon size"
        } else {
            "the k-space grid"
        };
        Some(format!(
            "k-space {h0}x{w0} (height x width), model grid {hm}x{wm}: each slice is \
             {to_model}; output images are {ho}x{wo} ({source})"
        ))
    }

    /// One slice's k-space `(coils, H0, W0)` on the model's grid `(coils, Hm, W0)` (step 2 of
    /// the module documentation). Panics if the k-space is not on the scan's grid.
    pub fn kspace_to_model(&self, kspace: ArrayView3<C32>) -> Array3<C32> {
        let (nc, h0, w0) = kspace.dim();
        assert_eq!(
            (h0, w0),
            self.scan,
            "k-space is not on the planned scan grid"
        );
        let hm = self.model.0;
        if h0 == hm {
            return kspace.to_owned();
        }
        let mut planner = FftPlanner::<f32>::new();
        let inverse = planner.plan_fft_inverse(h0);
        let forward = planner.plan_fft_forward(hm);
        // fastMRI's centre offsets, as in `crop_or_pad`: (source start, destination start, length).
        let (src, dst, len) = if hm <= h0 {
            ((h0 - hm) / 2, 0, hm)
        } else {
            (0, (hm - h0) / 2, h0)
        };
        let mut out = Array3::<C32>::zeros((nc, hm, w0));
        let mut column = vec![C32::new(0.0, 0.0); h0];
        let mut resized = vec![C32::new(0.0, 0.0); hm];
        for c in 0..nc {
            for x in 0..w0 {
                let lane = kspace.slice(s![c, .., x]);
                if lane.iter().all(|v| v.re == 0.0 && v.im == 0.0) {
                    continue; // A missing column stays exactly zero.
                }
                column.iter_mut().zip(lane).for_each(|(d, v)| *d = *v);
                centred(&mut column, inverse.as_ref());
                resized.fill(C32::new(0.0, 0.0));
                resized[dst..dst + len].copy_from_slice(&column[src..src + len]);
                centred(&mut resized, forward.as_ref());
                out.slice_mut(s![c, .., x])
                    .iter_mut()
                    .zip(&resized)
                    .for_each(|(d, v)| *d = *v);
            }
        }
        out
    }

    /// Coil maps on the scan's grid `(coils, H0, W0)` (image space) on the model's grid
    /// `(coils, Hm, W0)`: centre-cropped or zero-padded along the height like the image.
    pub fn maps_to_model(&self, maps: ArrayView3<C32>) -> Array3<C32> {
        let (nc, _, _) = maps.dim();
        let (hm, w0) = (self.model.0, self.scan.1);
        let mut out = Array3::<C32>::zeros((nc, hm, w0));
        for (mut dst, src) in out.outer_iter_mut().zip(maps.outer_iter()) {
            dst.assign(&crop_or_pad(src, (hm, w0)));
        }
        out
    }

    /// Where the scan grid's centre lies on the output grid, `[row, column]`: index `n / 2` of
    /// each axis of the scan's image (the field of view's centre, in the centred transform),
    /// moved by step 3's crop or zero pad.
    pub fn output_centre(&self) -> [f64; 2] {
        let at = |n: usize, m: usize| {
            if m <= n {
                (n / 2 - (n - m) / 2) as f64
            } else {
                (n / 2 + (m - n) / 2) as f64
            }
        };
        [
            at(self.scan.0, self.output.0),
            at(self.scan.1, self.output.1),
        ]
    }

    /// A reconstructed image on the model's grid `(Hm, W0)` on the output grid (step 3): back on
    /// the scan's `H0` rows, then centre-cropped or zero-padded to the output size.
    pub fn image_to_output(&self, image: ArrayView2<C32>) -> Array2<C32> {
        let scan = crop_or_pad(image, self.scan);
        crop_or_pad(scan.view(), self.output)
    }
}

/// In place, the centred orthonormal 1-D transform `fftshift(fft(ifftshift(x))) / sqrt(n)` with
/// the direction of `fft` (the 1-D form of [`crate::fft::Fft2`]).
fn centred(data: &mut [C32], fft: &dyn Fft<f32>) {
    let n = data.len();
    data.rotate_left(n / 2);
    fft.process(data);
    data.rotate_right(n / 2);
    let scale = 1.0 / (n as f32).sqrt();
    data.iter_mut().for_each(|v| *v *= scale);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fft::Fft2;

    fn image(h: usize, w: usize) -> Array2<C32> {
        Array2::from_shape_fn((h, w), |(r, c)| {
            C32::new(
                ((r * 3 + c * 5) % 7) as f32 - 3.0,
                ((r + 2 * c) % 5) as f32 - 2.0,
            )
        })
    }

    fn kspace_of(images: &Array3<C32>) -> Array3<C32> {
        let (_, h, w) = images.dim();
        let mut k = images.clone();
        Fft2::new(h, w).forward_coils(&mut k);
        k
    }

    #[test]
    fn the_output_centre_is_where_the_scan_centre_lands() {
        // A point at the centre of the field of view: k-space of constant phase, whose
        // centred inverse transform peaks at index n / 2.
        for (scan, out) in [((16, 12), (8, 12)), ((9, 7), (12, 4)), ((10, 6), (10, 6))] {
            let mut k = Array3::from_elem((1, scan.0, scan.1), C32::new(1.0, 0.0));
            Fft2::new(scan.0, scan.1).inverse_coils(&mut k);
            let plan = GridPlan::new(scan, Some(out), scan).unwrap();
            let img = plan.image_to_output(k.slice(s![0, .., ..]));
            let peak = img
                .indexed_iter()
                .max_by(|a, b| a.1.norm().total_cmp(&b.1.norm()))
                .map(|(ix, _)| [ix.0 as f64, ix.1 as f64])
                .unwrap();
            assert_eq!(peak, plan.output_centre(), "{scan:?} -> {out:?}");
        }
    }

    #[test]
    fn readout_crop_and_pad_equal_the_image_space_crop_and_keep_missing_columns_zero() {
        for (h0, hm) in [(12, 8), (9, 6), (8, 11), (7, 10)] {
            let w = 6;
            let imgs = Array3::from_shape_fn((2, h0, w), |(c, r, x)| {
                image(h0, w)[(r, x)] * (c as f32 + 1.0)
            });
            let mut k = kspace_of(&imgs);
            // Column 4 missing.
            k.slice_mut(s![.., .., 4]).fill(C32::new(0.0, 0.0));
            let plan = GridPlan::new((h0, w), Some((hm.min(h0), w)), (hm, w)).unwrap();
            let got = plan.kspace_to_model(k.view());
            // Reference: the full 2-D route, image -> crop/pad -> k-space, on the masked data.
            let mut masked_imgs = k.clone();
            Fft2::new(h0, w).inverse_coils(&mut masked_imgs);
            let mut want = Array3::<C32>::zeros((2, hm, w));
            for c in 0..2 {
                want.slice_mut(s![c, .., ..])
                    .assign(&crop_or_pad(masked_imgs.slice(s![c, .., ..]), (hm, w)));
            }
            let want = kspace_of(&want);
            for (g, e) in got.iter().zip(want.iter()) {
                assert!((g - e).norm() < 1e-4, "{h0}->{hm}: {g} vs {e}");
            }
            assert!(got
                .slice(s![.., .., 4])
                .iter()
                .all(|v| *v == C32::new(0.0, 0.0)));
        }
    }

    #[test]
    fn output_undoes_the_readout_crop_and_applies_the_recon_crop() {
        let plan = GridPlan::new((10, 4), Some((6, 2)), (7, 4)).unwrap();
        assert_eq!(plan.output, (6, 2));
        let scan_image = image(10, 4);
        let model_image = crop_or_pad(scan_image.view(), (7, 4));
        let out = plan.image_to_output(model_image.view());
        assert_eq!(out, crop_or_pad(scan_image.view(), (6, 2)));
        // Padding: the scan's rows come back exactly.
        let plan = GridPlan::new((5, 4), None, (8, 4)).unwrap();
        let padded = crop_or_pad(scan_image.slice(s![..5, ..]), (8, 4));
        assert_eq!(
            plan.image_to_output(padded.view()),
            scan_image.slice(s![..5, ..])
        );
    }

    #[test]
    fn sizes_that_cannot_fit_are_refused_with_the_sizes() {
        let e = GridPlan::new((40, 32), None, (40, 30))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("40x32") && e.contains("40x30") && e.contains("widths differ"),
            "{e}"
        );
        let e = GridPlan::new((40, 32), Some((24, 32)), (20, 32))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("recon size is 24x32") && e.contains("at least 24 rows"),
            "{e}"
        );
        let e = GridPlan::new((40, 32), None, (32, 32))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no recon size") && e.contains("at least 40 rows"),
            "{e}"
        );
        assert!(GridPlan::new((40, 32), Some((24, 32)), (24, 32)).is_ok());
        assert!(GridPlan::new((40, 32), Some((50, 32)), (40, 32)).is_ok());
        assert!(GridPlan::new((0, 32), None, (32, 32)).is_err());
        let same = GridPlan::new((8, 8), None, (8, 8)).unwrap();
        assert_eq!(same.describe(), None);
        let d = GridPlan::new((12, 8), Some((8, 8)), (8, 8))
            .unwrap()
            .describe()
            .unwrap();
        assert!(
            d.contains("from 12 to 8 rows") && d.contains("recon size"),
            "{d}"
        );
    }
}
