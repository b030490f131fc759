//! The multi-coil MRI operator in tch (MSM.md section 1): A_S x = S F C x and its adjoint
//! A_S^H y = sum_c conj(C_c) F^H (S y_c), with F the centred orthonormal 2-D DFT.
//!
//! Batched: images `[B, H, W]` complex, k-space and maps `[B, Nc, H, W]` complex, masks `[B, W]`
//! (1 keeps a phase-encode column of the width axis, 0 drops it) or `[B, H, W]` (1 keeps an
//! entry: 2-D masks).

use tch::{Kind, Tensor};

/// Centred orthonormal 2-D DFT over the last two axes: ifftshift, fft2 (ortho), fftshift.
pub fn fft2c(x: &Tensor) -> Tensor {
    x.fft_ifftshift(Some([-2i64, -1].as_slice()))
        .fft_fft2(None::<&[i64]>, [-2i64, -1], "ortho")
        .fft_fftshift(Some([-2i64, -1].as_slice()))
}

/// Inverse of [`fft2c`]: ifftshift, ifft2 (ortho), fftshift.
pub fn ifft2c(x: &Tensor) -> Tensor {
    x.fft_ifftshift(Some([-2i64, -1].as_slice()))
        .fft_ifft2(None::<&[i64]>, [-2i64, -1], "ortho")
        .fft_fftshift(Some([-2i64, -1].as_slice()))
}

/// Complex `[B, H, W]` -> real `[B, 2, H, W]` (real, imaginary channels).
pub fn to_channels(x: &Tensor) -> Tensor {
    x.view_as_real().permute([0, 3, 1, 2]).contiguous()
}

/// Real `[B, 2, H, W]` -> complex `[B, H, W]`.
pub fn from_channels(x: &Tensor) -> Tensor {
    Tensor::complex(&x.select(1, 0), &x.select(1, 1))
}

/// A_S for a batch: coil maps and masks.
#[derive(Debug)]
pub struct Operator {
    maps: Tensor,
    mask: Tensor,
}

impl Operator {
    /// `maps` `[B, Nc, H, W]` complex, `mask` real (0 or 1): `[B, W]` (columns) or
    /// `[B, H, W]` (entries).
    pub fn new(maps: &Tensor, mask: &Tensor) -> Operator {
        let mut mask = mask.to_kind(Kind::Float).unsqueeze(1);
        if mask.dim() == 3 {
            mask = mask.unsqueeze(1);
        }
        Operator {
            maps: maps.shallow_clone(),
            mask,
        }
    }

    /// The mask broadcast to `[B, 1, 1, W]` (columns) or `[B, 1, H, W]` (entries).
    pub fn mask(&self) -> &Tensor {
        &self.mask
    }

    /// S applied to multi-coil k-space.
    pub fn restrict(&self, y: &Tensor) -> Tensor {
        y * &self.mask
    }

    /// A_S x: image `[B, H, W]` -> masked multi-coil k-space `[B, Nc, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        fft2c(&(&self.maps * x.unsqueeze(1))) * &self.mask
    }

    /// A_S^H y: masked k-space `[B, Nc, H, W]` -> coil-combined image `[B, H, W]`.
    pub fn adjoint(&self, y: &Tensor) -> Tensor {
        (ifft2c(&(y * &self.mask)) * self.maps.conj()).sum_dim_intlist(
            [1i64].as_slice(),
            false,
            None::<Kind>,
        )
    }

    /// Number of real measured values (2 per measured complex entry), over the whole batch.
    pub fn measured_reals(&self) -> f64 {
        self.measured_reals_each().iter().sum()
    }

    /// Number of real measured values of each example.
    pub fn measured_reals_each(&self) -> Vec<f64> {
        let size = self.maps.size();
        // Entries per coil: a column mask's sum counts each column once, for all its rows.
        let (nc, rows) = (size[1], size[2] / self.mask.size()[2]);
        let kept = Vec::<f64>::try_from(
            self.mask
                .sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Double)
                .to_device(tch::Device::Cpu),
        )
        .expect("a real mask");
        kept.iter().map(|c| 2.0 * (nc * rows) as f64 * c).collect()
    }
}
