//! File input and output: BART `.cfl`/`.hdr` ([`cfl`]), NumPy `.npy` ([`npy`]), NIfTI-1 volumes
//! ([`nifti`]) placed in scanner space ([`space`]), PNG images ([`png`]) and fastMRI / ISMRMRD
//! HDF5 k-space ([`fastmri`], read only). Every writer goes through [`atomic`], so a failed write leaves no partial file. Every
//! reader rejects malformed input and NaN/infinite values with an error that names the file, the
//! problem and what was expected.

pub mod atomic;
pub mod cfl;
pub mod fastmri;
pub mod nifti;
pub mod npy;
pub mod png;
pub mod space;

/// Index of the first NaN or infinite value in `values`.
fn first_non_finite(values: impl IntoIterator<Item = f32>) -> Option<usize> {
    values.into_iter().position(|v| !v.is_finite())
}
