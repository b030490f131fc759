//! A 3-D slab's k-space made 2-D k-space slices, which the 2-D reconstructions take one at a
//! time.
//!
//! A slab is `Z` partitions (second phase-encode steps) of `(coils, X, Y)` k-space: `X` readout
//! samples by `Y` first phase-encode lines. Any axis that is fully sampled can be inverse
//! Fourier-transformed on its own, which separates the 3-D problem into independent 2-D ones
//! along that axis. Two are used ([`Slicing`]):
//! - **along the partitions**: when every partition acquired holds the same phase-encode lines
//!   (undersampling along the first phase encode only), an inverse FFT along the partitions
//!   gives `Z` slices of `(coils, X, Y)` k-space, each with the column mask of the lines. The
//!   recon matrix's central `z` partitions are kept (slice oversampling removed).
//! - **along the readout**: when the partitions hold different lines (undersampling along both
//!   phase encodes: CAIPIRINHA, Poisson-disc and other `ky-kz` patterns) or some are missing
//!   between acquired ones (undersampling along the second phase encode), the readout is the
//!   only fully sampled axis. An inverse FFT along it gives `X` slices of `(coils, Y, Z)`
//!   k-space, each with the mask of the lines acquired, by partition: 2-D, or whole columns
//!   when only the partitions are undersampled. The recon matrix's central `x`
//!   readout positions are kept (readout oversampling removed). Rows are the first phase encode
//!   and columns the second, so a slice is the plane the two phase encodes span.
//!
//! Both transforms are centred and orthonormal, as [`crate::fft::Fft2`], so the noise level of a
//! fully sampled axis is kept; both run coils in parallel.

use crate::fft::Fft2;
use crate::C32;
use ndarray::{Array3, ArrayView1, ArrayViewMut2};
use rayon::prelude::*;

/// Which axis of a 3-D slab becomes the slices (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slicing {
    /// Slices along the partitions: `(coils, readout, phase encode)` k-space, column masks.
    Partitions,
    /// Slices along the readout: `(coils, phase encode, partition)` k-space, 2-D masks (or
    /// whole columns).
    Readout,
}

/// How a 3-D encoding became 2-D slices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Encoding3d {
    /// The encoded matrix's partitions (second phase-encode steps).
    pub encoded: usize,
    /// The slices kept from each slab: the recon matrix's central `z` partitions, or its
    /// central `x` readout positions.
    pub kept: usize,
    /// The partitions that hold lines, per slab (fewer than `encoded` under partial Fourier
    /// or a 2-D pattern that skips whole partitions; they are zero-filled).
    pub filled: f64,
    /// Which axis became the slices.
    pub slicing: Slicing,
}

impl Encoding3d {
    /// The share of the acquired noise power each slice entry holds: partitions zero-filled
    /// carry no noise into an inverse FFT along the partitions (`filled / encoded` of it);
    /// along the readout, fully sampled, every entry keeps the whole level (1).
    pub fn noise_share(&self) -> f64 {
        match self.slicing {
            Slicing::Partitions => self.filled / self.encoded as f64,
            Slicing::Readout => 1.0,
        }
    }
}

/// One slab's partitions `(coils, X, Y)` as `keep` 2-D k-space slices along `slicing` (module
/// documentation): the central `keep` of the slab's partitions or readout positions.
pub(super) fn slab_slices(
    parts: Vec<Array3<C32>>,
    slicing: Slicing,
    keep: usize,
) -> Vec<Array3<C32>> {
    match slicing {
        Slicing::Partitions => along_partitions(parts, keep),
        Slicing::Readout => along_readout(parts, keep),
    }
}

/// The partitions inverse-Fourier-transformed along the partitions into `keep` slices
/// `(coils, X, Y)`. In place: the slices are the kept partitions' arrays, so the slab is never
/// held twice.
fn along_partitions(mut parts: Vec<Array3<C32>>, keep: usize) -> Vec<Array3<C32>> {
    let depth = parts.len();
    let coils = parts[0].dim().0;
    // A `depth x 1` image's centred 2-D transform is the centred 1-D one along the depth.
    let fft = Fft2::new(depth, 1);
    let first = depth / 2 - keep / 2;
    // Each coil's image in every partition, so that coils run in parallel.
    let mut by_coil: Vec<Vec<ArrayViewMut2<C32>>> = (0..coils).map(|_| Vec::new()).collect();
    for part in &mut parts {
        for (list, view) in by_coil.iter_mut().zip(part.outer_iter_mut()) {
            list.push(view);
        }
    }
    by_coil.into_par_iter().for_each(|mut views| {
        let (h, w) = views[0].dim();
        let mut buf = vec![C32::new(0.0, 0.0); depth];
        for r in 0..h {
            for col in 0..w {
                for (b, v) in buf.iter_mut().zip(&views) {
                    *b = v[(r, col)];
                }
                if buf.iter().all(|v| v.norm_sqr() == 0.0) {
                    continue;
                }
                fft.inverse(&mut buf);
                for (v, x) in views[first..first + keep].iter_mut().zip(&buf[first..]) {
                    v[(r, col)] = *x;
                }
            }
        }
    });
    parts.drain(first..first + keep).collect()
}

/// The partitions inverse-Fourier-transformed along the readout into `keep` slices
/// `(coils, Y, Z)`: entry `(c, y, p)` of slice `q` is readout position `X / 2 - keep / 2 + q`
/// of line `y` of partition `p`; lines not acquired stay exactly zero. First each partition
/// is transformed to its kept readout positions `(coils, keep, Y)` and dropped, then the
/// slices are gathered from those: each step's arrays take the memory the previous step
/// freed, so the slab is not held twice. Coils, then slices, in parallel.
fn along_readout(parts: Vec<Array3<C32>>, keep: usize) -> Vec<Array3<C32>> {
    let depth = parts.len();
    let (coils, h, w) = parts[0].dim();
    let fft = Fft2::new(h, 1);
    let first = h / 2 - keep / 2;
    let kept: Vec<Array3<C32>> = parts
        .into_iter()
        .map(|part| {
            let mut out = Array3::<C32>::zeros((coils, keep, w));
            out.outer_iter_mut()
                .into_par_iter()
                .zip(part.outer_iter().into_par_iter())
                .for_each(|(mut dst, coil)| {
                    let mut buf = vec![C32::new(0.0, 0.0); h];
                    for col in 0..w {
                        let lane = coil.column(col);
                        if lane.iter().all(|v| v.norm_sqr() == 0.0) {
                            continue;
                        }
                        buf.iter_mut().zip(lane).for_each(|(b, v)| *b = *v);
                        fft.inverse(&mut buf);
                        dst.column_mut(col)
                            .assign(&ArrayView1::from(&buf[first..first + keep]));
                    }
                });
            out
        })
        .collect();
    (0..keep)
        .into_par_iter()
        .map(|q| Array3::from_shape_fn((coils, w, depth), |(c, col, p)| kept[p][(c, q, col)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;
    use rustfft::num_complex::Complex64 as C64;

    /// A slab `(Z, coils, X, Y)` of distinct values, lines `(y, p)` with `kept(y, p)` false
    /// zero.
    fn slab(z: usize, x: usize, y: usize, kept: impl Fn(usize, usize) -> bool) -> Vec<Array3<C32>> {
        (0..z)
            .map(|p| {
                Array3::from_shape_fn((2, x, y), |(c, r, col)| {
                    if kept(col, p) {
                        C32::new(
                            (c * 7 + r * 3 + col * 5 + p * 11) as f32 % 13.0 - 6.0,
                            (c + 2 * r + 3 * col + p) as f32 % 5.0 - 2.0,
                        )
                    } else {
                        C32::new(0.0, 0.0)
                    }
                })
            })
            .collect()
    }

    /// The centred orthonormal inverse DFT of `x`, written out: `sum_k x_k e^{2 pi i (n - N/2)
    /// (k - N/2) / N} / sqrt(N)`.
    fn naive_inverse(x: &[C32]) -> Vec<C32> {
        let n = x.len();
        let half = (n / 2) as f64;
        (0..n)
            .map(|i| {
                let mut sum = C64::new(0.0, 0.0);
                for (k, v) in x.iter().enumerate() {
                    let phase = 2.0 * std::f64::consts::PI * (i as f64 - half) * (k as f64 - half)
                        / n as f64;
                    sum += C64::new(v.re as f64, v.im as f64) * C64::from_polar(1.0, phase);
                }
                let v = sum / (n as f64).sqrt();
                C32::new(v.re as f32, v.im as f32)
            })
            .collect()
    }

    #[test]
    fn readout_slices_are_the_naive_inverse_dft_along_the_readout() {
        for (z, x, y, keep) in [(5, 8, 6, 4), (4, 7, 3, 7), (3, 9, 4, 5)] {
            // A 2-D pattern: line y of partition p when (y + p) is even or y is central.
            let kept = |col: usize, p: usize| (col + p).is_multiple_of(2) || col == y / 2;
            let parts = slab(z, x, y, kept);
            let slices = slab_slices(parts.clone(), Slicing::Readout, keep);
            assert_eq!(slices.len(), keep);
            let first = x / 2 - keep / 2;
            for (q, slice) in slices.iter().enumerate() {
                assert_eq!(slice.dim(), (2, y, z));
                for ((c, col, p), v) in slice.indexed_iter() {
                    let lane: Vec<C32> = parts[p].slice(s![c, .., col]).to_vec();
                    let want = naive_inverse(&lane)[first + q];
                    assert!((v - want).norm() < 1e-4, "{z}x{x}x{y}: {v} vs {want}");
                    if !kept(col, p) {
                        assert_eq!(*v, C32::new(0.0, 0.0), "a line not acquired stays zero");
                    }
                }
            }
        }
    }

    #[test]
    fn partition_slices_are_the_naive_inverse_dft_along_the_partitions() {
        let (z, x, y, keep) = (6, 4, 5, 4);
        let parts = slab(z, x, y, |col, p| col != 2 && p != 0);
        let slices = slab_slices(parts.clone(), Slicing::Partitions, keep);
        let first = z / 2 - keep / 2;
        for (q, slice) in slices.iter().enumerate() {
            for ((c, r, col), v) in slice.indexed_iter() {
                let lane: Vec<C32> = parts.iter().map(|p| p[(c, r, col)]).collect();
                let want = naive_inverse(&lane)[first + q];
                assert!((v - want).norm() < 1e-4, "{v} vs {want}");
            }
        }
    }
}
