//! Software coil compression (SCC; Buehrer et al. 2007, Huang et al. 2008): the measured
//! k-space of many receive coils is projected onto the few "virtual coils" that carry most of
//! its energy, as BART's `cc -p N -S -A` does. The compression matrix holds the leading
//! eigenvectors of the coils' covariance over every measured entry, `sum_k y(k) y(k)^H`; a
//! virtual coil is `y'_v = sum_c conj(U[c, v]) y_c`.
//!
//! The same matrix compresses coil maps, `S'_v = sum_c conj(U[c, v]) S_c`, and SENSE stays
//! exact: `U^H F P S x = F P (U^H S) x`. With as many virtual coils as coils the compression is
//! unitary and changes no least-squares reconstruction. MSM's prior works on the coil-combined
//! image, so compression only makes the operator (and ESPIRiT) cheaper and lets scans with
//! different coil counts share one coil count.

use crate::{Error, Result, C32};
use nalgebra::{Complex, DMatrix, SymmetricEigen};
use ndarray::{Array2, Array3, ArrayView3, Axis};

/// A coil-compression matrix for one scan.
#[derive(Clone, Debug, PartialEq)]
pub struct Compression {
    /// `(virtual, physical)`: row `v` is `conj(U[.., v])`, so `y' = matrix . y` per entry.
    matrix: Array2<C32>,
    /// The fraction of the measured k-space energy the virtual coils keep.
    kept: f64,
}

impl Compression {
    /// The compression of `kspace` `(coils, H, W)` (unmeasured entries zero) to
    /// `virtual_coils` virtual coils: the leading eigenvectors of the coil covariance over all
    /// entries (BART `cc -p N -S -A`).
    ///
    /// Errors: zero or more virtual coils than coils, non-finite values, k-space that is zero
    /// everywhere.
    pub fn svd(kspace: ArrayView3<C32>, virtual_coils: usize) -> Result<Compression> {
        let (nc, h, w) = kspace.dim();
        if virtual_coils == 0 || virtual_coils > nc {
            return Err(Error::invalid(format!(
                "coil compression to {virtual_coils} virtual coils: expected 1 to the {nc} coils \
                 of the k-space"
            )));
        }
        if kspace
            .iter()
            .any(|v| !(v.re.is_finite() && v.im.is_finite()))
        {
            return Err(Error::invalid(
                "coil compression: the k-space holds NaN or infinite values",
            ));
        }
        // Covariance in f64, one entry (all coils) at a time.
        let flat = kspace
            .to_shape((nc, h * w))
            .map_err(|e| Error::invalid(format!("coil compression: k-space layout ({e})")))?;
        let mut cov = DMatrix::<Complex<f64>>::zeros(nc, nc);
        for entry in flat.axis_iter(Axis(1)) {
            if entry.iter().all(|v| v.re == 0.0 && v.im == 0.0) {
                continue;
            }
            for (a, ya) in entry.iter().enumerate() {
                let ya = Complex::new(ya.re as f64, ya.im as f64);
                for (b, yb) in entry.iter().enumerate().skip(a) {
                    cov[(a, b)] += ya * Complex::new(yb.re as f64, -yb.im as f64);
                }
            }
        }
        for a in 0..nc {
            for b in 0..a {
                cov[(a, b)] = cov[(b, a)].conj();
            }
        }
        let total: f64 = (0..nc).map(|c| cov[(c, c)].re).sum();
        if total <= 0.0 || !total.is_finite() {
            return Err(Error::invalid(
                "coil compression: the k-space is zero everywhere; expected measured data",
            ));
        }
        let eig = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..nc).collect();
        order.sort_by(|&i, &j| eig.eigenvalues[j].total_cmp(&eig.eigenvalues[i]));
        let kept = order[..virtual_coils]
            .iter()
            .map(|&i| eig.eigenvalues[i].max(0.0))
            .sum::<f64>()
            / total;
        let matrix = Array2::from_shape_fn((virtual_coils, nc), |(v, c)| {
            let u = eig.eigenvectors[(c, order[v])];
            C32::new(u.re as f32, -u.im as f32)
        });
        Ok(Compression { matrix, kept })
    }

    /// Number of virtual coils.
    pub fn virtual_coils(&self) -> usize {
        self.matrix.nrows()
    }

    /// The fraction of the measured k-space energy the virtual coils keep (1 with as many
    /// virtual coils as coils).
    pub fn kept_energy(&self) -> f64 {
        self.kept
    }

    /// `data` `(coils, H, W)` (k-space or coil maps) on the virtual coils `(virtual, H, W)`.
    pub fn apply(&self, data: ArrayView3<C32>) -> Result<Array3<C32>> {
        let (nc, h, w) = data.dim();
        if nc != self.matrix.ncols() {
            return Err(Error::invalid(format!(
                "coil compression: the data have {nc} coils but the compression matrix was made \
                 for {}",
                self.matrix.ncols()
            )));
        }
        let flat = data
            .to_shape((nc, h * w))
            .map_err(|e| Error::invalid(format!("coil compression: data layout ({e})")))?;
        let out = self.matrix.dot(&flat);
        out.into_shape_with_order((self.virtual_coils(), h, w))
            .map_err(|e| Error::invalid(format!("coil compression: output layout ({e})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// K-space whose coils are mixtures of two sources: two virtual coils keep all of it.
    fn rank_two(nc: usize, seed: u64) -> Array3<C32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut c = || C32::new(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0));
        let src: Vec<C32> = (0..2 * 64).map(|_| c()).collect();
        let mix: Vec<C32> = (0..2 * nc).map(|_| c()).collect();
        Array3::from_shape_fn((nc, 8, 8), |(k, i, j)| {
            let p = i * 8 + j;
            mix[2 * k] * src[p] + mix[2 * k + 1] * src[64 + p]
        })
    }

    #[test]
    fn two_sources_compress_to_two_virtual_coils_without_loss() {
        let k = rank_two(6, 1);
        let cc = Compression::svd(k.view(), 2).unwrap();
        assert!(
            (cc.kept_energy() - 1.0).abs() < 1e-6,
            "{}",
            cc.kept_energy()
        );
        let y = cc.apply(k.view()).unwrap();
        assert_eq!(y.dim(), (2, 8, 8));
        // The rows are orthonormal, and no energy is lost at any entry.
        let e_in: f32 = k.iter().map(|v| v.norm_sqr()).sum();
        let e_out: f32 = y.iter().map(|v| v.norm_sqr()).sum();
        assert!((e_in - e_out).abs() < 1e-4 * e_in, "{e_in} vs {e_out}");
        let one = Compression::svd(k.view(), 1).unwrap();
        assert!(one.kept_energy() < 1.0 && one.kept_energy() > 0.5);
    }

    #[test]
    fn bad_requests_are_errors() {
        let k = rank_two(3, 2);
        assert!(Compression::svd(k.view(), 0).is_err());
        assert!(Compression::svd(k.view(), 4).is_err());
        let zero = Array3::<C32>::zeros((3, 4, 4));
        let e = Compression::svd(zero.view(), 2).unwrap_err().to_string();
        assert!(e.contains("zero everywhere"), "{e}");
        let cc = Compression::svd(k.view(), 2).unwrap();
        assert!(cc.apply(Array3::<C32>::zeros((4, 2, 2)).view()).is_err());
    }
}
