//! Centred orthonormal 2-D FFT on rustfft (the convention of fastMRI, SigPy and BART `fft -u`):
//! `F x = fftshift(fft2(ifftshift(x))) / sqrt(H W)`, and its inverse.
//!
//! Plans are made once in [`Fft2::new`] and reused. Each thread keeps one scratch buffer that
//! grows to the largest size it has seen, so repeated transforms allocate nothing.
//! [`Fft2::forward_coils`] and [`Fft2::inverse_coils`] run the coils of a multi-coil array in
//! parallel on rayon.

use crate::C32;
use ndarray::{Array3, Axis};
use rayon::prelude::*;
use rustfft::{Fft, FftPlanner};
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    static SCRATCH: RefCell<Vec<C32>> = const { RefCell::new(Vec::new()) };
}

/// Direction of a transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Forward,
    Inverse,
}

/// A planned centred orthonormal 2-D FFT for images of one size.
#[derive(Clone)]
pub struct Fft2 {
    h: usize,
    w: usize,
    rows_fwd: Arc<dyn Fft<f32>>,
    rows_inv: Arc<dyn Fft<f32>>,
    cols_fwd: Arc<dyn Fft<f32>>,
    cols_inv: Arc<dyn Fft<f32>>,
    fft_scratch: usize,
}

impl std::fmt::Debug for Fft2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fft2({}x{})", self.h, self.w)
    }
}

impl Fft2 {
    /// Plans transforms for `height x width` images (any sizes >= 1, even or odd).
    pub fn new(height: usize, width: usize) -> Self {
        assert!(height > 0 && width > 0, "FFT size must be positive");
        let mut planner = FftPlanner::<f32>::new();
        let rows_fwd = planner.plan_fft_forward(width);
        let rows_inv = planner.plan_fft_inverse(width);
        let cols_fwd = planner.plan_fft_forward(height);
        let cols_inv = planner.plan_fft_inverse(height);
        let fft_scratch = [&rows_fwd, &rows_inv, &cols_fwd, &cols_inv]
            .iter()
            .map(|p| p.get_inplace_scratch_len())
            .max()
            .unwrap_or(0);
        Fft2 {
            h: height,
            w: width,
            rows_fwd,
            rows_inv,
            cols_fwd,
            cols_inv,
            fft_scratch,
        }
    }

    /// Image height (first axis).
    pub fn height(&self) -> usize {
        self.h
    }

    /// Image width (second axis).
    pub fn width(&self) -> usize {
        self.w
    }

    /// In-place centred orthonormal forward FFT of one row-major `height x width` image.
    pub fn forward(&self, data: &mut [C32]) {
        self.transform(data, Direction::Forward);
    }

    /// In-place centred orthonormal inverse FFT of one row-major `height x width` image.
    pub fn inverse(&self, data: &mut [C32]) {
        self.transform(data, Direction::Inverse);
    }

    /// Forward FFT of every coil of a `(coils, height, width)` array, coils in parallel.
    pub fn forward_coils(&self, data: &mut Array3<C32>) {
        self.coils(data, Direction::Forward);
    }

    /// Inverse FFT of every coil of a `(coils, height, width)` array, coils in parallel.
    pub fn inverse_coils(&self, data: &mut Array3<C32>) {
        self.coils(data, Direction::Inverse);
    }

    /// The forward FFT of one image, `data`, kept in the k-space columns `keep` (length
    /// `width`) and zero in the others: what [`Fft2::forward`] followed by a column mask gives
    /// (to rounding), with the transforms along the height run only for the kept columns.
    pub fn forward_kept(&self, data: &mut [C32], keep: &[bool]) {
        let (h, w) = (self.h, self.w);
        assert_eq!(
            data.len(),
            h * w,
            "buffer does not match the planned FFT size"
        );
        assert_eq!(keep.len(), w, "column mask does not match the FFT width");
        let kept = kept_columns(keep);
        let scale = 1.0 / ((h * w) as f32).sqrt();
        self.with_scratch(kept.len(), |tmp, cols, fft_scratch| {
            ifftshift_into(data, tmp, h, w);
            self.rows_fwd.process_with_scratch(tmp, fft_scratch);
            // Output column c is column (c + w - w / 2) % w of the unshifted transform.
            let fw = w - w / 2;
            for (col, &c) in cols.chunks_exact_mut(h).zip(&kept) {
                let cc = (c + fw) % w;
                for (r, v) in col.iter_mut().enumerate() {
                    *v = tmp[r * w + cc];
                }
            }
            if !kept.is_empty() {
                self.cols_fwd.process_with_scratch(cols, fft_scratch);
            }
            data.fill(C32::new(0.0, 0.0));
            let fh = h - h / 2;
            for (col, &c) in cols.chunks_exact(h).zip(&kept) {
                for r in 0..h {
                    data[r * w + c] = col[(r + fh) % h] * scale;
                }
            }
        });
    }

    /// The inverse FFT of one image whose k-space `src` is read only in the columns `keep`
    /// (length `width`; the others count as zero), into `dst`: [`Fft2::inverse`] of the
    /// masked data (to rounding), with the transforms along the height run only for the kept
    /// columns.
    pub fn inverse_kept(&self, src: &[C32], dst: &mut [C32], keep: &[bool]) {
        let (h, w) = (self.h, self.w);
        assert_eq!(
            src.len(),
            h * w,
            "buffer does not match the planned FFT size"
        );
        assert_eq!(
            dst.len(),
            h * w,
            "buffer does not match the planned FFT size"
        );
        assert_eq!(keep.len(), w, "column mask does not match the FFT width");
        let kept = kept_columns(keep);
        let scale = 1.0 / ((h * w) as f32).sqrt();
        self.with_scratch(kept.len(), |tmp, cols, fft_scratch| {
            // ifftshift along the height while gathering the kept columns.
            let sh = h / 2;
            for (col, &c) in cols.chunks_exact_mut(h).zip(&kept) {
                for (r, v) in col.iter_mut().enumerate() {
                    *v = src[((r + sh) % h) * w + c];
                }
            }
            if !kept.is_empty() {
                self.cols_inv.process_with_scratch(cols, fft_scratch);
            }
            // ifftshift along the width: kept column c lands at (c + w - w / 2) % w.
            tmp.fill(C32::new(0.0, 0.0));
            let fw = w - w / 2;
            for (col, &c) in cols.chunks_exact(h).zip(&kept) {
                let cc = (c + fw) % w;
                for (r, &v) in col.iter().enumerate() {
                    tmp[r * w + cc] = v;
                }
            }
            self.rows_inv.process_with_scratch(tmp, fft_scratch);
            // fftshift both axes with the orthonormal scale: dst[r][c] = tmp[(r + fh) % h][(c +
            // fw) % w].
            let fh = h - h / 2;
            for r in 0..h {
                let row = &tmp[((r + fh) % h) * w..][..w];
                let out = &mut dst[r * w..][..w];
                for (o, &v) in out[..w - fw].iter_mut().zip(&row[fw..]) {
                    *o = v * scale;
                }
                for (o, &v) in out[w - fw..].iter_mut().zip(&row[..fw]) {
                    *o = v * scale;
                }
            }
        });
    }

    /// Runs `f(tmp, cols, fft_scratch)` on this thread's scratch: `tmp` an image, `cols`
    /// `columns` columns of the height, `fft_scratch` the plans' scratch.
    fn with_scratch(&self, columns: usize, f: impl FnOnce(&mut [C32], &mut [C32], &mut [C32])) {
        let n = self.h * self.w;
        let nc = columns * self.h;
        SCRATCH.with(|cell| {
            let mut buf = cell.borrow_mut();
            let need = n + nc + self.fft_scratch;
            if buf.len() < need {
                buf.resize(need, C32::new(0.0, 0.0));
            }
            let (tmp, rest) = buf.split_at_mut(n);
            let (cols, fft_scratch) = rest.split_at_mut(nc);
            f(tmp, cols, &mut fft_scratch[..self.fft_scratch]);
        });
    }

    fn coils(&self, data: &mut Array3<C32>, dir: Direction) {
        assert_eq!(
            (data.dim().1, data.dim().2),
            (self.h, self.w),
            "array does not match the planned FFT size"
        );
        data.axis_iter_mut(Axis(0))
            .into_par_iter()
            .for_each(|mut coil| match coil.as_slice_mut() {
                Some(s) => self.transform(s, dir),
                None => {
                    let mut owned = coil.to_owned();
                    self.transform(
                        owned.as_slice_mut().expect("owned array is contiguous"),
                        dir,
                    );
                    coil.assign(&owned);
                }
            });
    }

    fn transform(&self, data: &mut [C32], dir: Direction) {
        let (h, w) = (self.h, self.w);
        let n = h * w;
        assert_eq!(data.len(), n, "buffer does not match the planned FFT size");
        let (rows, cols) = match dir {
            Direction::Forward => (&self.rows_fwd, &self.cols_fwd),
            Direction::Inverse => (&self.rows_inv, &self.cols_inv),
        };
        let scale = 1.0 / (n as f32).sqrt();
        SCRATCH.with(|cell| {
            let mut buf = cell.borrow_mut();
            let need = n + self.fft_scratch;
            if buf.len() < need {
                buf.resize(need, C32::new(0.0, 0.0));
            }
            let (tmp, fft_scratch) = buf.split_at_mut(n);
            let fft_scratch = &mut fft_scratch[..self.fft_scratch];
            ifftshift_into(data, tmp, h, w);
            rows.process_with_scratch(tmp, fft_scratch);
            // Transpose tmp (h x w) into data viewed as (w x h).
            transpose(tmp, data, h, w);
            cols.process_with_scratch(data, fft_scratch);
            // Transpose back with fftshift on both axes and the orthonormal scale:
            // out[r][c] = T[(c + w - w/2) % w][(r + h - h/2) % h], T = data as (w x h).
            let (fh, fw) = (h - h / 2, w - w / 2);
            for r in 0..h {
                let rr = (r + fh) % h;
                let dst = &mut tmp[r * w..][..w];
                for (c, d) in dst.iter_mut().enumerate() {
                    let cc = (c + fw) % w;
                    *d = data[cc * h + rr] * scale;
                }
            }
            data.copy_from_slice(tmp);
        });
    }
}

/// The indices of the kept columns.
fn kept_columns(keep: &[bool]) -> Vec<usize> {
    keep.iter()
        .enumerate()
        .filter_map(|(c, &k)| k.then_some(c))
        .collect()
}

/// `tmp` = `data` (`h x w`) ifftshifted along both axes: `tmp[r][c] = data[(r + h/2) % h][(c +
/// w/2) % w]`.
fn ifftshift_into(data: &[C32], tmp: &mut [C32], h: usize, w: usize) {
    let (sh, sw) = (h / 2, w / 2);
    for r in 0..h {
        let src = &data[((r + sh) % h) * w..][..w];
        let dst = &mut tmp[r * w..][..w];
        dst[..w - sw].copy_from_slice(&src[sw..]);
        dst[w - sw..].copy_from_slice(&src[..sw]);
    }
}

/// Blocked transpose of a row-major `h x w` matrix into a row-major `w x h` matrix.
fn transpose(src: &[C32], dst: &mut [C32], h: usize, w: usize) {
    const B: usize = 32;
    for r0 in (0..h).step_by(B) {
        for c0 in (0..w).step_by(B) {
            for r in r0..(r0 + B).min(h) {
                for c in c0..(c0 + B).min(w) {
                    dst[c * h + r] = src[r * w + c];
                }
            }
        }
    }
}
