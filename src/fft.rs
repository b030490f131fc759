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
            // ifftshift both axes while copying: tmp[r][c] = data[(r + h/2) % h][(c + w/2) % w].
            let (sh, sw) = (h / 2, w / 2);
            for r in 0..h {
                let src = &data[((r + sh) % h) * w..][..w];
                let dst = &mut tmp[r * w..][..w];
                dst[..w - sw].copy_from_slice(&src[sw..]);
                dst[w - sw..].copy_from_slice(&src[..sw]);
            }
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
