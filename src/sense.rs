//! Measurement operators: the multi-coil SENSE operator `A_S = S F C` for k-space and its
//! adjoint `A_S^H y = sum_c conj(C_c) F^H (S y_c)`, and the image-domain case (one "coil", no
//! FFT, pixel or block masks) used for natural images (MSM.md section 1).

use crate::fft::Fft2;
use crate::mask::Mask;
use crate::{Error, Result, C32};
use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis, Zip};
use rayon::prelude::*;

/// A linear measurement operator from an image `(height, width)` to measurements
/// `(coils, height, width)`, restricted to a mask.
pub trait Operator: Send + Sync {
    /// `(height, width)` of the image and of each coil's measurement grid.
    fn image_shape(&self) -> (usize, usize);

    /// Number of coils (1 for image-domain problems).
    fn coils(&self) -> usize;

    /// `A_S x`: measurements of `x`, zero outside the mask (`None` = everything measured).
    fn forward(&self, x: ArrayView2<C32>, mask: Option<&Mask>) -> Array3<C32>;

    /// `A_S^H y`: the adjoint applied to `y` (entries outside the mask are ignored).
    fn adjoint(&self, y: ArrayView3<C32>, mask: Option<&Mask>) -> Array2<C32>;

    /// `A^H A x` with the given mask (the normal operator).
    fn normal(&self, x: ArrayView2<C32>, mask: Option<&Mask>) -> Array2<C32> {
        let y = self.forward(x, mask);
        self.adjoint(y.view(), mask)
    }

    /// The measurement shape `(coils, height, width)`.
    fn measurement_shape(&self) -> (usize, usize, usize) {
        let (h, w) = self.image_shape();
        (self.coils(), h, w)
    }
}

/// Zeroes the entries of every coil of `y` that `mask` does not keep.
pub fn apply_mask(y: &mut Array3<C32>, mask: &Mask) {
    let zero = C32::new(0.0, 0.0);
    match mask {
        Mask::Columns(cols) => {
            for mut lane in y.lanes_mut(Axis(2)) {
                for (v, &k) in lane.iter_mut().zip(cols) {
                    if !k {
                        *v = zero;
                    }
                }
            }
        }
        Mask::Pattern(p) => {
            for mut coil in y.axis_iter_mut(Axis(0)) {
                Zip::from(&mut coil).and(p).for_each(|v, &k| {
                    if !k {
                        *v = zero;
                    }
                });
            }
        }
    }
}

/// The multi-coil Cartesian SENSE operator `S F C` with centred orthonormal FFTs.
#[derive(Clone, Debug)]
pub struct Sense {
    maps: Array3<C32>,
    fft: Fft2,
}

impl Sense {
    /// An operator for coil maps of shape `(coils, height, width)`. The maps are used as
    /// given (not renormalised).
    pub fn new(maps: Array3<C32>) -> Result<Self> {
        let (nc, h, w) = maps.dim();
        if nc == 0 || h == 0 || w == 0 {
            return Err(Error::invalid(format!(
                "coil maps must be non-empty, got shape ({nc}, {h}, {w})"
            )));
        }
        if maps.iter().any(|v| !v.re.is_finite() || !v.im.is_finite()) {
            return Err(Error::invalid("coil maps contain NaN or Inf"));
        }
        if maps.iter().all(|v| v.re == 0.0 && v.im == 0.0) {
            return Err(Error::invalid(
                "coil maps are zero everywhere (the operator would be zero); expected coil \
                 sensitivities, e.g. from `msm ecalib`",
            ));
        }
        let maps = maps.as_standard_layout().into_owned();
        Ok(Sense {
            fft: Fft2::new(h, w),
            maps,
        })
    }

    /// The coil maps.
    pub fn maps(&self) -> &Array3<C32> {
        &self.maps
    }

    /// The planned FFT.
    pub fn fft(&self) -> &Fft2 {
        &self.fft
    }
}

impl Operator for Sense {
    fn image_shape(&self) -> (usize, usize) {
        (self.maps.dim().1, self.maps.dim().2)
    }

    fn coils(&self) -> usize {
        self.maps.dim().0
    }

    fn forward(&self, x: ArrayView2<C32>, mask: Option<&Mask>) -> Array3<C32> {
        assert_eq!(x.dim(), self.image_shape(), "image shape mismatch");
        let mut out = Array3::zeros(self.maps.dim());
        // A column mask is applied inside the FFT, which then transforms the kept columns only.
        let cols = match mask {
            Some(Mask::Columns(cols)) => Some(&cols[..]),
            _ => None,
        };
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(self.maps.axis_iter(Axis(0)).into_par_iter())
            .for_each(|(mut o, c)| {
                Zip::from(&mut o)
                    .and(&c)
                    .and(&x)
                    .for_each(|o, &c, &x| *o = c * x);
                let o = o.as_slice_mut().expect("fresh array is contiguous");
                match cols {
                    Some(keep) => self.fft.forward_kept(o, keep),
                    None => self.fft.forward(o),
                }
            });
        if let Some(m @ Mask::Pattern(_)) = mask {
            apply_mask(&mut out, m);
        }
        out
    }

    fn adjoint(&self, y: ArrayView3<C32>, mask: Option<&Mask>) -> Array2<C32> {
        assert_eq!(y.dim(), self.maps.dim(), "measurement shape mismatch");
        let tmp = match mask {
            // The FFT reads the kept columns only: no masked copy of the data is made.
            Some(Mask::Columns(keep)) => {
                let y = y.as_standard_layout();
                let src = y.as_slice().expect("standard layout is contiguous");
                let mut tmp = Array3::zeros(y.dim());
                let (h, w) = self.image_shape();
                tmp.as_slice_mut()
                    .expect("fresh array is contiguous")
                    .par_chunks_mut(h * w)
                    .zip(src.par_chunks(h * w))
                    .for_each(|(dst, src)| self.fft.inverse_kept(src, dst, keep));
                tmp
            }
            _ => {
                let mut tmp = y.as_standard_layout().into_owned();
                if let Some(m) = mask {
                    apply_mask(&mut tmp, m);
                }
                self.fft.inverse_coils(&mut tmp);
                tmp
            }
        };
        let (nc, h, w) = self.maps.dim();
        let maps = self.maps.as_slice().expect("maps are in standard layout");
        let coil_images = tmp.as_slice().expect("fresh array is contiguous");
        let mut out = Array2::zeros((h, w));
        out.as_slice_mut()
            .expect("fresh array is contiguous")
            .par_chunks_mut(w)
            .enumerate()
            .for_each(|(r, row)| {
                for c in 0..nc {
                    let off = c * h * w + r * w;
                    let m = &maps[off..off + w];
                    let t = &coil_images[off..off + w];
                    for ((o, m), t) in row.iter_mut().zip(m).zip(t) {
                        *o += m.conj() * t;
                    }
                }
            });
        out
    }
}

/// The image-domain operator of natural-image problems: one "coil", identity maps, no FFT;
/// the mask selects pixels or blocks.
#[derive(Clone, Copy, Debug)]
pub struct ImageDomain {
    height: usize,
    width: usize,
}

impl ImageDomain {
    /// An operator for `height x width` images.
    pub fn new(height: usize, width: usize) -> Self {
        ImageDomain { height, width }
    }
}

impl Operator for ImageDomain {
    fn image_shape(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    fn coils(&self) -> usize {
        1
    }

    fn forward(&self, x: ArrayView2<C32>, mask: Option<&Mask>) -> Array3<C32> {
        assert_eq!(x.dim(), self.image_shape(), "image shape mismatch");
        let mut out = x.to_owned().insert_axis(Axis(0));
        if let Some(m) = mask {
            apply_mask(&mut out, m);
        }
        out
    }

    fn adjoint(&self, y: ArrayView3<C32>, mask: Option<&Mask>) -> Array2<C32> {
        assert_eq!(
            y.dim(),
            (1, self.height, self.width),
            "measurement shape mismatch"
        );
        let mut tmp = y.to_owned();
        if let Some(m) = mask {
            apply_mask(&mut tmp, m);
        }
        tmp.index_axis_move(Axis(0), 0)
    }
}
