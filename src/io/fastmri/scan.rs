//! A multi-coil HDF5 scan of either layout: fastMRI's `kspace` array ([`FastMriFile`]) or
//! ISMRMRD raw acquisitions ([`RawScan`]), told apart by their datasets and read slice by slice
//! through one interface.

use super::geometry::SliceGeometry;
use super::{open_hdf5, raw, FastMriFile, IsmrmrdHeader, RawOptions, RawScan};
use crate::{Error, Result, C32};
use ndarray::Array3;
use std::path::Path;

/// An HDF5 scan: fastMRI layout or ISMRMRD raw data.
#[derive(Debug)]
pub enum HdfScan {
    /// fastMRI's layout (`kspace` (slices, coils, H, W), header, mask, reference).
    FastMri(Box<FastMriFile>),
    /// ISMRMRD raw data (`/dataset/data` acquisitions), assembled into k-space.
    Raw(Box<RawScan>),
}

impl HdfScan {
    /// Opens `path` once: ISMRMRD raw data when it has `/dataset/data`, assembled as `raw`
    /// says ([`RawScan::open_with`]), else the fastMRI layout ([`FastMriFile::open`]).
    pub fn open(path: impl AsRef<Path>, raw: &RawOptions) -> Result<HdfScan> {
        let path = path.as_ref();
        let file = open_hdf5(
            path,
            "a fastMRI HDF5 file with a `kspace` dataset, or ISMRMRD raw data (`/dataset/data`)",
        )?;
        Ok(if raw::holds_raw(&file) {
            HdfScan::Raw(Box::new(RawScan::from_file(path, &file, raw)?))
        } else if let Some(noise) = &raw.noise_file {
            return Err(Error::format(
                path,
                format!(
                    "is in fastMRI's layout, which is not prewhitened here, so the noise scan \
                     {} would not be used; expected ISMRMRD raw data (`/dataset/data`) with it",
                    noise.display()
                ),
            ));
        } else {
            HdfScan::FastMri(Box::new(FastMriFile::from_file(path, &file)?))
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            HdfScan::FastMri(f) => f.path(),
            HdfScan::Raw(r) => r.path(),
        }
    }

    /// Number of slices.
    pub fn num_slices(&self) -> usize {
        match self {
            HdfScan::FastMri(f) => f.num_slices(),
            HdfScan::Raw(r) => r.num_slices(),
        }
    }

    /// Number of coils.
    pub fn coils(&self) -> usize {
        match self {
            HdfScan::FastMri(f) => f.coils(),
            HdfScan::Raw(r) => r.coils(),
        }
    }

    /// One coil's k-space grid `(height, width)`.
    pub fn kspace_size(&self) -> (usize, usize) {
        match self {
            HdfScan::FastMri(f) => f.kspace_size(),
            HdfScan::Raw(r) => r.kspace_size(),
        }
    }

    /// The recon size the file states (a raw file's header always does).
    pub fn recon_size(&self) -> Option<(usize, usize)> {
        match self {
            HdfScan::FastMri(f) => f.recon_size(),
            HdfScan::Raw(r) => Some(r.recon_size()),
        }
    }

    /// The voxel size in mm of the reconstructed images, `[readout, phase encode, slice]`,
    /// from the ISMRMRD header's recon field of view ([`IsmrmrdHeader::voxel_size_mm`]);
    /// `None` for a file without one.
    pub fn voxel_size_mm(&self) -> Option<[f32; 3]> {
        match self {
            HdfScan::FastMri(f) => f.header().and_then(IsmrmrdHeader::voxel_size_mm),
            HdfScan::Raw(r) => r.voxel_size_mm(),
        }
    }

    /// Whether the slices were taken along the readout of a 3-D raw scan undersampled along
    /// both phase encodes or along the partitions ([`RawScan::along_readout`]); never for
    /// fastMRI files.
    pub fn along_readout(&self) -> bool {
        match self {
            HdfScan::FastMri(_) => false,
            HdfScan::Raw(r) => r.along_readout(),
        }
    }

    /// Slice `index`'s k-space of a separate reference scan (ISMRMRD raw data whose header's
    /// calibration mode is separate: [`RawScan::slice_reference`]), the source of its coil
    /// maps; fastMRI files keep none.
    pub fn slice_reference(&self, index: usize) -> Option<&Array3<C32>> {
        match self {
            HdfScan::FastMri(_) => None,
            HdfScan::Raw(r) => r.slice_reference(index),
        }
    }

    /// Where slice `index` lies in the scanner: ISMRMRD raw data whose acquisitions state it
    /// ([`RawScan::slice_geometry`]); fastMRI files keep no acquisition headers.
    pub fn slice_geometry(&self, index: usize) -> Option<SliceGeometry> {
        match self {
            HdfScan::FastMri(_) => None,
            HdfScan::Raw(r) => r.slice_geometry(index),
        }
    }

    /// The column mask a fastMRI file stores (raw data stores none: the columns its lines
    /// filled are found from the data).
    pub fn mask(&self) -> Option<&[bool]> {
        match self {
            HdfScan::FastMri(f) => f.mask(),
            HdfScan::Raw(_) => None,
        }
    }

    /// The noise std per real component of the scanner's noise measurements, for raw data that
    /// has them (fastMRI files keep none).
    pub fn noise_scan_std(&self) -> Option<f64> {
        match self {
            HdfScan::FastMri(_) => None,
            HdfScan::Raw(r) => r.noise_std(),
        }
    }

    /// K-space of slice `index`, `(coils, H, W)`.
    pub fn slice_kspace(&self, index: usize) -> Result<Array3<C32>> {
        match self {
            HdfScan::FastMri(f) => f.slice_kspace(index),
            HdfScan::Raw(r) => r.slice_kspace(index),
        }
    }
}
