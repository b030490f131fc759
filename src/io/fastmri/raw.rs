//! ISMRMRD raw data: the HDF5 layout that `siemens_to_ismrmrd`, Gadgetron and the ISMRMRD tools
//! write from a scanner, one acquisition (readout line) at a time, assembled here into Cartesian
//! multi-coil k-space, slice by slice.
//!
//! # Layout read
//! - `/dataset/xml`: the ISMRMRD XML header ([`IsmrmrdHeader`]): the encoded matrix gives the
//!   grid (`x` readout rows, `y` phase-encode columns), the recon matrix the output size, and
//!   `encodingLimits/kspace_encoding_step_1/center` the counter of the centre line.
//! - `/dataset/data`: a 1-D compound dataset of acquisitions, each with `head` (ISMRMRD's
//!   `AcquisitionHeader`: of its fields this reads `flags`, `number_of_samples`,
//!   `active_channels`, `center_sample`, the encoding counters `idx`, and `position`,
//!   `read_dir`, `phase_dir` and `slice_dir`, which place the slices ([`super::geometry`])),
//!   `traj` (unused) and
//!   `data` (variable length, `float32` pairs: real and imaginary parts, channel-major, so
//!   sample `s` of channel `c` is at `2 (c n + s)` for `n` samples).
//!
//! # Assembly
//! An imaging line (no flag of a non-imaging acquisition: navigator, phase correction, feedback,
//! dummy scan, ...; [`NOT_IMAGING`]) with counters
//! `kspace_encode_step_1 = e1` and `slice = k` fills column `e1 - center + W / 2` of slice `k`,
//! its samples (less `discard_pre` and `discard_post`) centred on row `H / 2` at
//! `center_sample`; samples that do not fit the encoded readout are an error. Lines repeated
//! (averages) are averaged. One image is assembled: one value of each of the counters
//! [`COUNTERS`] (contrast, phase, repetition, set), chosen with [`Selection`]; a file that holds
//! several values of a counter no selection names is refused with the values listed, rather
//! than mixed. A 3-D encoding (encoded matrix `z` > 1) is read as 2-D slices: each line of
//! `kspace_encode_step_2 = e2` fills partition `e2 - center_2 + Z / 2` of its slab (the
//! `slice` counter). When every partition acquired holds the same phase-encode lines and the
//! partitions acquired are contiguous, an inverse FFT along the partitions (centred,
//! orthonormal) makes each of the recon matrix's central `z` partitions a 2-D k-space slice
//! (partitions missing at an edge, as under partial Fourier, are zero-filled); when they hold
//! different lines (undersampling along both phase encodes) or partitions are missing between
//! acquired ones (undersampling along the second), an inverse FFT along the readout makes each
//! of the recon matrix's central `x` readout positions a `(phase encode, partition)` slice
//! with its mask (2-D, or whole columns when only the partitions are undersampled)
//! ([`super::slab`]). Where the header's calibration mode is `separate` or `external`, lines
//! flagged parallel calibration only (flag 20, not 21) are a reference scan of their own:
//! placed on a grid of their own, whatever the image's counters
//! ([`RawScan::slice_reference`]), and not image data. So are the calibration lines (flag 20
//! or 21) of the header's second encoding (`encoding_space_ref` 1, a separately encoded
//! reference scan) when it has the image's encoded field of view (so the same k-space
//! spacing) and a matrix no larger: its centre line and partition are placed on the image's.
//! Other lines of other encodings than the first are not read. Noise
//! measurements (flag 19), which scanners take with the RF off, give the noise covariance of
//! the receive channels:
//! the k-space is prewhitened with it ([`crate::coils::Whitening`]: white noise of the mean
//! channel's level), and its std per real component, corrected for the noise lines' dwell time,
//! is [`RawScan::noise_std`]; navigators, phase correction and other non-imaging acquisitions
//! are skipped. The whole scan is assembled in memory when the file is opened (16 x coils x H x
//! W bytes a slice).

use super::geometry::SliceGeometry;
use super::slab::{slab_slices, Encoding3d, Slicing};
use super::{open_hdf5, read_text, CalibrationMode, EncodedSpace, IsmrmrdHeader, DAMAGED};
use crate::coils::Whitening;
use crate::{Error, Result, C32};
use hdf5_reader::{Dataset, Datatype, Hdf5File};
use ndarray::{Array2, Array3};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The ISMRMRD encoding counters that tell apart images of one scan which must not be mixed
/// into one k-space, in [`Selection`]'s order.
pub const COUNTERS: [&str; 4] = ["contrast", "phase", "repetition", "set"];

/// Which image of a raw file to assemble: a value of each counter of [`COUNTERS`], or `None`
/// where the file must hold a single value (the default: every counter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// The contrast (echo) counter.
    pub contrast: Option<u64>,
    /// The cardiac phase counter.
    pub phase: Option<u64>,
    /// The repetition counter.
    pub repetition: Option<u64>,
    /// The set counter (e.g. flow encodings).
    pub set: Option<u64>,
}

impl Selection {
    /// The values in [`COUNTERS`]' order.
    pub fn values(&self) -> [Option<u64>; 4] {
        [self.contrast, self.phase, self.repetition, self.set]
    }

    /// The selection of `values`, in [`COUNTERS`]' order.
    pub fn from_values(values: [Option<u64>; 4]) -> Selection {
        let [contrast, phase, repetition, set] = values;
        Selection {
            contrast,
            phase,
            repetition,
            set,
        }
    }
}

/// How [`RawScan::open_with`] reads a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawOptions {
    /// Prewhiten the k-space with the noise scan, if there is one (the noise scan's level
    /// and covariance are read either way).
    pub prewhiten: bool,
    /// The image to assemble.
    pub select: Selection,
    /// Take the noise scan from this ISMRMRD raw file instead of the file's own noise
    /// measurements: a noise scan taken as a measurement of its own (Gadgetron's noise
    /// dependency; `siemens_to_ismrmrd -z 1` of a multi-measurement file).
    pub noise_file: Option<PathBuf>,
}

impl Default for RawOptions {
    /// Prewhitened with the file's own noise scan, and every counter with a single value.
    fn default() -> Self {
        RawOptions {
            prewhiten: true,
            select: Selection::default(),
            noise_file: None,
        }
    }
}

/// The values one counter of [`COUNTERS`] takes on a file's imaging lines, and the one read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterValues {
    /// The counter's ISMRMRD name.
    pub name: &'static str,
    /// Every value on the file's imaging lines, ascending.
    pub values: Vec<u64>,
    /// The value assembled.
    pub selected: u64,
}

/// `values` as text, comma-separated.
fn listed(values: &[u64]) -> String {
    values
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl CounterValues {
    /// The values as text, comma-separated (`0, 1, 2`).
    pub fn listed(&self) -> String {
        listed(&self.values)
    }
}

/// ISMRMRD acquisition flags (1-based bit numbers, as `ismrmrd.h` numbers them). Flags 1 to 18
/// (first / last in an encoding step, average, slice, contrast, phase, repetition, set,
/// segment), 20 and 21 (parallel calibration) and 25 (last in measurement) mark imaging lines.
const NOISE_MEASUREMENT: u32 = 19;
const PARALLEL_CALIBRATION: u32 = 20;
const PARALLEL_CALIBRATION_AND_IMAGING: u32 = 21;
const REVERSE: u32 = 22;
/// Navigators (23), phase correction (24), HP feedback (26), dummy scans (27), RT feedback
/// (28), surface-coil correction (29) and phase stabilisation (30, 31): not image data.
const NOT_IMAGING: [u32; 8] = [23, 24, 26, 27, 28, 29, 30, 31];

/// What a raw-data file is expected to be, in the error for one that is not HDF5.
const RAW_LAYOUT: &str = "ISMRMRD raw data (`/dataset/xml` and `/dataset/data`)";

/// Whether `flags` has ISMRMRD flag `bit` (1-based).
fn has_flag(flags: u64, bit: u32) -> bool {
    flags & (1u64 << (bit - 1)) != 0
}

/// A scan's ISMRMRD raw data, assembled into k-space.
pub struct RawScan {
    path: PathBuf,
    header: IsmrmrdHeader,
    /// One `(coils, H, W)` k-space per slice, zero on columns no line filled.
    slices: Vec<Array3<C32>>,
    /// The noise std per real component of the noise measurements, if the file has any
    /// (corrected for their dwell time against the imaging lines').
    noise_std: Option<f64>,
    /// The prewhitening computed from the noise measurements.
    whitening: Option<Whitening>,
    /// Whether it was applied to the k-space.
    prewhitened: bool,
    /// Non-imaging acquisitions skipped (navigators, phase correction, ...).
    skipped: usize,
    /// The counters' values, and those read.
    counters: Vec<CounterValues>,
    /// Imaging lines of other images (counter values not selected), not read.
    unselected: usize,
    /// How a 3-D encoding became slices.
    encoding_3d: Option<Encoding3d>,
    /// Where each slice lies, as its first imaging line states it (`None` where the file
    /// states no usable geometry).
    geometry: Vec<Option<SliceGeometry>>,
    /// A separate reference scan's k-space per slice (calibration only).
    reference: Vec<Option<Array3<C32>>>,
}

impl std::fmt::Debug for RawScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawScan")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("slices", &self.slices.len())
            .field("noise_std", &self.noise_std)
            .field("skipped", &self.skipped)
            .field("counters", &self.counters)
            .field("encoding_3d", &self.encoding_3d)
            .finish()
    }
}

/// Where an integer field of the acquisition header lies in an element of `/dataset/data`.
#[derive(Clone, Copy)]
struct Field {
    offset: usize,
    size: usize,
}

impl Field {
    fn read(self, element: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        b[..self.size].copy_from_slice(&element[self.offset..self.offset + self.size]);
        u64::from_le_bytes(b)
    }
}

/// The field at `path` (nested compound names) of `dtype`, with its byte offset from the start.
fn find<'a>(dtype: &'a Datatype, path: &[&str]) -> Option<(usize, &'a Datatype)> {
    let (first, rest) = path.split_first()?;
    let Datatype::Compound { fields, .. } = dtype else {
        return None;
    };
    let f = fields.iter().find(|f| f.name == *first)?;
    if rest.is_empty() {
        return Some((f.byte_offset as usize, &f.datatype));
    }
    let (offset, dt) = find(&f.datatype, rest)?;
    Some((f.byte_offset as usize + offset, dt))
}

/// An unsigned little-endian integer field of the acquisition header.
fn integer(dtype: &Datatype, path: &[&str]) -> std::result::Result<Field, String> {
    match find(dtype, path) {
        Some((
            offset,
            Datatype::FixedPoint {
                size,
                signed: false,
                ..
            },
        )) if *size <= 8 => Ok(Field {
            offset,
            size: *size as usize,
        }),
        Some(_) => Err(format!(
            "`{}` of `/dataset/data` is not an unsigned integer; expected ISMRMRD's \
             AcquisitionHeader",
            path.join(".")
        )),
        None => Err(format!(
            "`/dataset/data` has no field `{}`; expected ISMRMRD acquisitions (head, traj, data)",
            path.join(".")
        )),
    }
}

/// Offsets of the acquisition header's geometry: `position`, `read_dir`, `phase_dir` and
/// `slice_dir`, each three little-endian float32 values; `None` when the layout lacks one.
#[derive(Clone, Copy)]
struct GeometryFields([usize; 4]);

impl GeometryFields {
    fn new(dtype: &Datatype) -> Option<Self> {
        let vector = |name: &str| match find(dtype, &["head", name])? {
            (offset, Datatype::Array { base, dims })
                if dims.as_slice() == [3]
                    && matches!(**base, Datatype::FloatingPoint { size: 4, .. }) =>
            {
                Some(offset)
            }
            _ => None,
        };
        Some(GeometryFields([
            vector("position")?,
            vector("read_dir")?,
            vector("phase_dir")?,
            vector("slice_dir")?,
        ]))
    }

    /// The geometry `element` states, if usable ([`SliceGeometry::checked`]).
    fn read(&self, element: &[u8]) -> Option<SliceGeometry> {
        let [p, r, ph, s] = self.0.map(|at| {
            std::array::from_fn(|i| {
                let o = at + 4 * i;
                f64::from(f32::from_le_bytes(
                    element[o..o + 4].try_into().unwrap_or([0; 4]),
                ))
            })
        });
        SliceGeometry::checked(p, r, ph, s)
    }
}

/// Whether `path` is an HDF5 file holding ISMRMRD raw data (`/dataset/data`), not fastMRI's
/// `kspace`. Reads the file's structure only.
pub fn is_raw(path: &Path) -> bool {
    Hdf5File::open(path).is_ok_and(|f| holds_raw(&f))
}

/// Whether an open HDF5 file holds ISMRMRD raw data (`/dataset/data`).
pub(super) fn holds_raw(file: &Hdf5File) -> bool {
    file.dataset("/dataset/data").is_ok()
}

/// The header and the acquisitions dataset of an open raw-data file.
fn header_and_data(file: &Hdf5File) -> std::result::Result<(IsmrmrdHeader, Dataset), String> {
    let xml = read_text(file, "dataset/xml")?;
    let header = IsmrmrdHeader::parse(&xml)
        .map_err(|e| format!("`/dataset/xml` is not a usable ISMRMRD header: {e}"))?;
    let data = file
        .dataset("/dataset/data")
        .map_err(|e| format!("cannot open `/dataset/data` ({e}){DAMAGED}"))?;
    Ok((header, data))
}

/// Every acquisition of `/dataset/data` as bytes, and the size of one.
fn acquisition_bytes(data: &Dataset) -> std::result::Result<(Vec<u8>, usize), String> {
    let bytes = data
        .read_native_bytes()
        .map_err(|e| format!("cannot read `/dataset/data` ({e}){DAMAGED}"))?;
    let size = data
        .raw_element_size()
        .map_err(|e| format!("`/dataset/data`: {e}"))?;
    Ok((bytes, size))
}

/// The header's second encoding when its lines can serve as a reference scan on the image's
/// grid: its encoded field of view is the image's (the same k-space spacing), stated for both,
/// and its matrix fits within the image's. `None` otherwise (its lines are then not read).
fn reference_space(header: &IsmrmrdHeader) -> Option<EncodedSpace> {
    let second = header.second_encoding?;
    let ((fx, fy, fz), (gx, gy, gz)) = (header.encoded_fov_mm?, second.fov_mm?);
    let same = |a: f64, b: f64| (a - b).abs() <= 1e-4 * a.abs().max(b.abs());
    let (h, w, d) = header.encoded_size;
    let (x, y, z) = second.size;
    (same(fx, gx) && same(fy, gy) && same(fz, gz) && x <= h && y <= w && z <= d).then_some(second)
}

/// The acquisition-header fields that tell which image a line belongs to.
struct ImageFields {
    /// Whether calibration-only lines are a reference scan of their own (the header's
    /// calibration mode is separate or external), not image data.
    separate: bool,
    /// Whether the header's second encoding is a reference scan on the image's grid
    /// ([`reference_space`]): its calibration lines are then one.
    second: bool,
    flags: Field,
    /// `encoding_space_ref`: which of the header's encodings the line belongs to.
    encoding: Field,
    e2: Field,
    /// The counters of [`COUNTERS`].
    counters: Vec<Field>,
}

impl ImageFields {
    fn new(dtype: &Datatype, header: &IsmrmrdHeader) -> std::result::Result<Self, String> {
        let idx = |name: &str| integer(dtype, &["head", "idx", name]);
        Ok(ImageFields {
            separate: header
                .calibration_mode
                .is_some_and(CalibrationMode::is_separate),
            second: reference_space(header).is_some(),
            flags: integer(dtype, &["head", "flags"])?,
            encoding: integer(dtype, &["head", "encoding_space_ref"])?,
            e2: idx("kspace_encode_step_2")?,
            counters: COUNTERS
                .iter()
                .map(|name| idx(name))
                .collect::<std::result::Result<Vec<Field>, String>>()?,
        })
    }

    /// The image `element` belongs to (its counters in [`COUNTERS`]' order), if it is an
    /// imaging line of the header's first encoding, the one whose geometry this reader places
    /// lines in (lines of other encodings, such as a separately encoded reference scan, are not
    /// read).
    fn image(&self, element: &[u8]) -> Option<[u64; 4]> {
        if !is_imaging(self.flags.read(element))
            || self.encoding.read(element) != 0
            || self.is_reference(element)
        {
            return None;
        }
        let mut image = [0; 4];
        for (v, field) in image.iter_mut().zip(&self.counters) {
            *v = field.read(element);
        }
        Some(image)
    }

    /// Whether `element` is a line of a separate reference scan: of the header's first
    /// encoding, flagged parallel calibration only (not also imaging), in a file whose
    /// calibration mode is separate or external; or of its second encoding, flagged parallel
    /// calibration, when that encoding lies on the image's grid ([`reference_space`]).
    fn is_reference(&self, element: &[u8]) -> bool {
        let flags = self.flags.read(element);
        let calibration = has_flag(flags, PARALLEL_CALIBRATION)
            || has_flag(flags, PARALLEL_CALIBRATION_AND_IMAGING);
        let only = !has_flag(flags, PARALLEL_CALIBRATION_AND_IMAGING);
        is_imaging(flags)
            && calibration
            && match self.encoding.read(element) {
                0 => self.separate && only,
                1 => self.second,
                _ => false,
            }
    }

    /// The combinations of counter values ([`COUNTERS`]' order) on the imaging lines of the
    /// acquisitions `bytes` (elements of `size` bytes), for an encoded matrix of `depth`
    /// partitions; an error when there is no imaging line, or a second phase encode that a
    /// 2-D header does not have.
    fn images(
        &self,
        bytes: &[u8],
        size: usize,
        depth: usize,
    ) -> std::result::Result<BTreeSet<[u64; 4]>, String> {
        let mut images = BTreeSet::new();
        for (i, element) in bytes.chunks_exact(size).enumerate() {
            let Some(image) = self.image(element) else {
                continue;
            };
            let step = self.e2.read(element);
            if depth == 1 && step != 0 {
                return Err(format!(
                    "acquisition {i}: has kspace_encode_step_2 {step} but the header's encoded \
                     matrix has z = 1; expected 0 for a 2-D encoding, or the 3-D matrix size"
                ));
            }
            images.insert(image);
        }
        if images.is_empty() {
            return Err(
                "holds no imaging acquisition; expected readout lines of a Cartesian scan".into(),
            );
        }
        Ok(images)
    }
}

impl RawScan {
    /// The images of the raw-data file `path`: one [`Selection`] (every counter given) for
    /// each combination of contrast, phase, repetition and set its imaging lines have, in
    /// ascending order. Reads the acquisition headers, assembles nothing.
    pub fn images(path: impl AsRef<Path>) -> Result<Vec<Selection>> {
        let path = path.as_ref();
        let fmt = |msg: String| Error::format(path, msg);
        let file = open_hdf5(path, RAW_LAYOUT)?;
        let (header, data) = header_and_data(&file).map_err(fmt)?;
        let (bytes, size) = acquisition_bytes(&data).map_err(fmt)?;
        let images = ImageFields::new(data.dtype(), &header)
            .and_then(|f| f.images(&bytes, size, header.encoded_size.2))
            .map_err(fmt)?;
        Ok(images
            .into_iter()
            .map(|image| Selection::from_values(image.map(Some)))
            .collect())
    }

    /// Reads and assembles `path` with the default [`RawOptions`] (prewhitened with its noise
    /// scan if it has one; a single value of every counter); errors name the file and what is
    /// wrong.
    pub fn open(path: impl AsRef<Path>) -> Result<RawScan> {
        Self::open_with(path, &RawOptions::default())
    }

    /// Reads and assembles `path` as `options` say.
    pub fn open_with(path: impl AsRef<Path>, options: &RawOptions) -> Result<RawScan> {
        let path = path.as_ref();
        let file = open_hdf5(path, RAW_LAYOUT)?;
        Self::from_file(path, &file, options)
    }

    /// [`RawScan::open_with`] on a file already open.
    pub(super) fn from_file(path: &Path, file: &Hdf5File, options: &RawOptions) -> Result<RawScan> {
        let prewhiten = options.prewhiten;
        let fmt = |msg: String| Error::format(path, msg);
        let (header, data) = header_and_data(file).map_err(fmt)?;
        let Assembled {
            mut slices,
            encoding_3d,
            noise,
            imaging_dwell,
            skipped,
            counters,
            unselected,
            geometry,
            mut reference,
        } = assemble(&data, &header, &options.select).map_err(fmt)?;
        let coils = slices[0].dim().0;
        // The noise scan: the file's own, or one taken as a measurement of its own.
        let (noise, noise_path) = match &options.noise_file {
            Some(p) => (Some(noise_file(p)?), p.as_path()),
            None => (noise, path),
        };
        let noise_err = |msg: String| Error::format(noise_path, msg);
        let (whitening, noise_std) = match noise {
            None => (None, None),
            Some((samples, _)) if samples.dim().0 != coils => {
                return Err(noise_err(format!(
                    "the noise measurements have {} channels and the imaging lines of {} have \
                     {coils}; expected the same",
                    samples.dim().0,
                    path.display()
                )))
            }
            Some((samples, dwell)) => {
                let wh = Whitening::from_noise(samples.view())
                    .map_err(|e| noise_err(format!("noise measurements: {e}")))?;
                if prewhiten {
                    for s in slices.iter_mut().chain(reference.iter_mut().flatten()) {
                        wh.apply(s)?;
                    }
                }
                // Noise variance goes as the bandwidth, 1 / dwell time: a noise scan read at
                // another dwell time than the image lines holds another level.
                let ratio = if dwell > 0.0 && imaging_dwell > 0.0 {
                    f64::from(dwell / imaging_dwell).sqrt()
                } else {
                    1.0
                };
                // Partitions zero-filled (partial Fourier along the second phase encode) carry
                // no noise into an inverse FFT along it.
                let share = encoding_3d.map_or(1.0, |e| e.noise_share());
                let std = wh.noise_std() * ratio * share.sqrt();
                (Some(wh), Some(std))
            }
        };
        Ok(RawScan {
            path: path.to_path_buf(),
            header,
            slices,
            noise_std,
            prewhitened: prewhiten && whitening.is_some(),
            whitening,
            skipped,
            counters,
            unselected,
            encoding_3d,
            geometry,
            reference,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header.
    pub fn header(&self) -> &IsmrmrdHeader {
        &self.header
    }

    /// Number of slices.
    pub fn num_slices(&self) -> usize {
        self.slices.len()
    }

    /// Number of coils.
    pub fn coils(&self) -> usize {
        self.slices[0].dim().0
    }

    /// Whether the slices were taken along the readout ([`Slicing::Readout`]: a 3-D scan
    /// undersampled along both phase encodes, or along the partitions), so that each slice's
    /// k-space is `(phase encode, partition)` with a mask per entry.
    pub fn along_readout(&self) -> bool {
        self.encoding_3d
            .is_some_and(|e| e.slicing == Slicing::Readout)
    }

    /// One coil's k-space grid `(height, width)`: the encoded matrix's `(x, y)`, or its
    /// `(y, z)` for slices along the readout.
    pub fn kspace_size(&self) -> (usize, usize) {
        let (x, y, z) = self.header.encoded_size;
        if self.along_readout() {
            (y, z)
        } else {
            (x, y)
        }
    }

    /// The recon matrix `(height, width)`: its `(x, y)`, or its `(y, z)` for slices along the
    /// readout.
    pub fn recon_size(&self) -> (usize, usize) {
        let (x, y, z) = self.header.recon_size;
        if self.along_readout() {
            (y, z)
        } else {
            (x, y)
        }
    }

    /// The voxel size in mm of the reconstructed images, `[rows, columns, slices]`: the
    /// header's recon field of view over its recon matrix ([`IsmrmrdHeader::voxel_size_mm`],
    /// `[readout, phase encode, slice]`), in the order of the slices' axes.
    pub fn voxel_size_mm(&self) -> Option<[f32; 3]> {
        let [x, y, z] = self.header.voxel_size_mm()?;
        Some(if self.along_readout() {
            [y, z, x]
        } else {
            [x, y, z]
        })
    }

    /// K-space of slice `index`, `(coils, H, W)`.
    pub fn slice_kspace(&self, index: usize) -> Result<Array3<C32>> {
        self.slices.get(index).cloned().ok_or_else(|| {
            Error::format(
                &self.path,
                format!(
                    "slice {index} is out of range; the scan has {} slices",
                    self.slices.len()
                ),
            )
        })
    }

    /// The noise std per real component of the file's noise measurements (flag 19), on the
    /// file's scale; `None` when it has none.
    pub fn noise_std(&self) -> Option<f64> {
        self.noise_std
    }

    /// The prewhitening computed from the noise measurements, when the file has them.
    pub fn whitening(&self) -> Option<&Whitening> {
        self.whitening.as_ref()
    }

    /// Whether the k-space was prewhitened ([`RawScan::open_with`]).
    pub fn prewhitened(&self) -> bool {
        self.prewhitened
    }

    /// How many non-imaging acquisitions (navigators, phase correction, ...) were skipped.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The values each counter of [`COUNTERS`] takes on the imaging lines, and the one read.
    pub fn counters(&self) -> &[CounterValues] {
        &self.counters
    }

    /// How a 3-D encoding was read as 2-D slices; `None` for a 2-D encoding.
    pub fn encoding_3d(&self) -> Option<Encoding3d> {
        self.encoding_3d
    }

    /// How many imaging lines belong to other images (counter values not selected, or other
    /// encodings than the header's first) and were not read.
    pub fn unselected(&self) -> usize {
        self.unselected
    }

    /// Slice `index`'s k-space of the separate reference scan, `(coils, H, W)` on the image's
    /// grid (prewhitened as the image): lines flagged parallel calibration only, in a file whose
    /// header's calibration mode is separate or external. They are calibration for the coil
    /// maps, not image data, so they are not in [`RawScan::slice_kspace`]; `None` when the
    /// file has none for this slice. Read whatever the image's counters (a reference scan
    /// serves every image of a series).
    pub fn slice_reference(&self, index: usize) -> Option<&Array3<C32>> {
        self.reference.get(index).and_then(Option::as_ref)
    }

    /// Where slice `index` lies in the scanner, as its first imaging line states it (a 3-D
    /// slab's partitions moved along its normal; [`super::geometry`]); `None` when the file
    /// states no usable geometry, or the index is out of range.
    pub fn slice_geometry(&self, index: usize) -> Option<SliceGeometry> {
        self.geometry.get(index).copied().flatten()
    }
}

/// Lines placed on a k-space grid: `(coils, H, W)` sums and per-column counts of the lines
/// placed, at index `slice * depth + partition` (one partition for a 2-D encoding).
#[derive(Default)]
struct Grid {
    sums: Vec<Array3<C32>>,
    counts: Vec<Vec<u32>>,
}

impl Grid {
    /// The sum and the column counts of partition `k` (`depth` partitions a slab), the grid
    /// grown by whole slabs of `(coils, h, w)` zeros as needed: a partition no line fills
    /// (partial Fourier) stays zero.
    fn at(
        &mut self,
        k: usize,
        depth: usize,
        (c, h, w): (usize, usize, usize),
    ) -> (&mut Array3<C32>, &mut Vec<u32>) {
        while self.sums.len() < (k / depth + 1) * depth {
            self.sums.push(Array3::zeros((c, h, w)));
            self.counts.push(vec![0; w]);
        }
        (&mut self.sums[k], &mut self.counts[k])
    }

    /// Lines placed more than once (averages) averaged.
    fn average(&mut self) {
        for (sum, count) in self.sums.iter_mut().zip(&self.counts) {
            for (col, &n) in count.iter().enumerate() {
                if n > 1 {
                    sum.slice_mut(ndarray::s![.., .., col])
                        .mapv_inplace(|v| v / n as f32);
                }
            }
        }
    }

    /// The grid as `count` slices (the image's), `keep` of each slab of `depth` partitions
    /// along `slicing`, as the image's: `None` for a slice no line reached.
    fn slices(
        self,
        depth: usize,
        slicing: Slicing,
        keep: usize,
        count: usize,
    ) -> Vec<Option<Array3<C32>>> {
        let held: Vec<bool> = self
            .counts
            .chunks(depth)
            .map(|slab| slab.iter().flatten().any(|&n| n > 0))
            .collect();
        let mut parts = self.sums.into_iter();
        let mut slices = Vec::with_capacity(count);
        for any in held {
            let slab: Vec<Array3<C32>> = parts.by_ref().take(depth).collect();
            match (any, depth) {
                (false, _) => slices.extend((0..keep).map(|_| None)),
                (true, 1) => slices.extend(slab.into_iter().map(Some)),
                (true, _) => slices.extend(slab_slices(slab, slicing, keep).into_iter().map(Some)),
            }
        }
        slices.resize(count, None);
        slices
    }
}

/// What [`assemble`] finds in the acquisitions.
struct Assembled {
    /// A separate reference scan's k-space per slice, as the slices' (`None` where it has no
    /// line: every slice of a file without one).
    reference: Vec<Option<Array3<C32>>>,
    /// One `(coils, H, W)` k-space per slice (per kept partition of each slab for a 3-D
    /// encoding).
    slices: Vec<Array3<C32>>,
    /// How a 3-D encoding was made slices; `None` for a 2-D one.
    encoding_3d: Option<Encoding3d>,
    /// The noise measurements' samples `(channels, N)` and their dwell time (µs, 0 unknown).
    noise: Option<(Array2<C32>, f32)>,
    /// The imaging lines' dwell time (µs, 0 unknown).
    imaging_dwell: f32,
    /// Non-imaging acquisitions skipped.
    skipped: usize,
    /// The counters' values, and those read.
    counters: Vec<CounterValues>,
    /// Imaging lines of other images, not read.
    unselected: usize,
    /// Where each slice lies (per kept partition or readout position of each slab for a 3-D
    /// encoding).
    geometry: Vec<Option<SliceGeometry>>,
}

/// Whether an acquisition with `flags` is an imaging line (not a noise measurement, not a
/// navigator or other non-imaging acquisition).
fn is_imaging(flags: u64) -> bool {
    !has_flag(flags, NOISE_MEASUREMENT) && !NOT_IMAGING.iter().any(|&bit| has_flag(flags, bit))
}

/// The value of each counter to read: the one selected, which the file must hold, or the
/// file's only value.
fn resolve(
    found: Vec<BTreeSet<u64>>,
    select: &Selection,
) -> std::result::Result<Vec<CounterValues>, String> {
    COUNTERS
        .iter()
        .zip(found)
        .zip(select.values())
        .map(|((&name, values), want)| {
            let values: Vec<u64> = values.into_iter().collect();
            let list = listed(&values);
            let selected = match (want, values.as_slice()) {
                (Some(v), _) if values.contains(&v) => v,
                (Some(v), _) => {
                    return Err(format!(
                        "has no imaging line of {name} {v}; its lines have {name} {list}"
                    ))
                }
                (None, [only]) => *only,
                (None, _) => {
                    return Err(format!(
                        "holds {} images by the {name} counter ({name} {list}); expected one \
                         chosen (msm's `--{name} N`, a training config's `data.select.{name}`), \
                         rather than mixed into one k-space",
                        values.len()
                    ))
                }
            };
            Ok(CounterValues {
                name,
                values,
                selected,
            })
        })
        .collect()
}

/// Where the acquisitions of `/dataset/data` keep what every line needs: its sample and
/// channel counts, its dwell time and its samples.
struct Lines<'a> {
    data: &'a Dataset,
    samples: Field,
    channels: Field,
    /// Offset of the 32-bit `sample_time_us`, if the layout has one.
    dwell_at: Option<usize>,
    /// Offset of the variable-length `data` field, and the size of its reference.
    values: usize,
    reference: usize,
}

impl<'a> Lines<'a> {
    fn new(data: &'a Dataset) -> std::result::Result<Self, String> {
        let dtype = data.dtype();
        let values = match find(dtype, &["data"]) {
            Some((offset, Datatype::VarLen { base, .. }))
                if matches!(**base, Datatype::FloatingPoint { size: 4, .. }) =>
            {
                offset
            }
            _ => {
                return Err(
                    "`/dataset/data` has no `data` field of variable-length float32 values; \
                     expected ISMRMRD acquisitions"
                        .into(),
                )
            }
        };
        Ok(Lines {
            data,
            samples: integer(dtype, &["head", "number_of_samples"])?,
            channels: integer(dtype, &["head", "active_channels"])?,
            dwell_at: match find(dtype, &["head", "sample_time_us"]) {
                Some((offset, Datatype::FloatingPoint { size: 4, .. })) => Some(offset),
                _ => None,
            },
            values,
            reference: data.vlen_reference_size(),
        })
    }

    /// The line's dwell time (µs; 0 unknown).
    fn dwell(&self, element: &[u8]) -> f32 {
        self.dwell_at.map_or(0.0, |o| {
            f32::from_le_bytes(element[o..o + 4].try_into().unwrap_or([0; 4]))
        })
    }

    /// The line's sample count `n`, channel count `c`, and its `n` complex samples of each
    /// channel in turn.
    fn read(&self, element: &[u8]) -> std::result::Result<(usize, usize, Vec<C32>), String> {
        let n = self.samples.read(element) as usize;
        let c = self.channels.read(element) as usize;
        let raw = self
            .data
            .resolve_vlen_reference_bytes(&element[self.values..self.values + self.reference], 4)
            .map_err(|e| format!("cannot read its data ({e}){DAMAGED}"))?;
        if raw.len() != 8 * n * c {
            return Err(format!(
                "holds {} values for {c} channels of {n} samples; expected {}",
                raw.len() / 4,
                2 * n * c
            ));
        }
        let value =
            |k: usize| f32::from_le_bytes(raw[4 * k..4 * k + 4].try_into().unwrap_or([0; 4]));
        Ok((
            n,
            c,
            (0..n * c)
                .map(|k| C32::new(value(2 * k), value(2 * k + 1)))
                .collect(),
        ))
    }
}

/// Noise measurements (flag 19), gathered line by line: each channel's samples, and the first
/// line's dwell time.
#[derive(Default)]
struct NoiseLines {
    channels: Vec<Vec<C32>>,
    dwell: f32,
}

impl NoiseLines {
    /// Adds a line of `c` channels of `n` samples each (`samples`, channel after channel).
    fn add(
        &mut self,
        n: usize,
        c: usize,
        samples: &[C32],
        dwell: f32,
    ) -> std::result::Result<(), String> {
        if self.channels.is_empty() {
            self.channels = vec![Vec::new(); c];
            self.dwell = dwell;
        } else if self.channels.len() != c {
            return Err(format!(
                "is a noise measurement of {c} channels where earlier ones have {}",
                self.channels.len()
            ));
        }
        for (ch, dst) in self.channels.iter_mut().enumerate() {
            dst.extend_from_slice(&samples[ch * n..(ch + 1) * n]);
        }
        Ok(())
    }

    /// The samples `(channels, N)` and their dwell time, if any line was added.
    fn finish(self) -> Option<(Array2<C32>, f32)> {
        let first = self.channels.first()?;
        let n = first.len();
        let samples = Array2::from_shape_fn((self.channels.len(), n), |(c, s)| self.channels[c][s]);
        Some((samples, self.dwell))
    }
}

/// The noise measurements (flag 19) of the ISMRMRD raw file `path` and their dwell time: a
/// noise scan taken as a measurement of its own. Its other acquisitions are not read. Errors
/// name the file: not raw data, or no noise measurement.
fn noise_file(path: &Path) -> Result<(Array2<C32>, f32)> {
    let fmt = |msg: String| Error::format(path, msg);
    let file = open_hdf5(path, RAW_LAYOUT)?;
    let data = file.dataset("/dataset/data").map_err(|e| {
        fmt(format!(
            "has no `/dataset/data` ({e}); expected {RAW_LAYOUT}"
        ))
    })?;
    let lines = Lines::new(&data).map_err(fmt)?;
    let flags = integer(data.dtype(), &["head", "flags"]).map_err(fmt)?;
    let (bytes, size) = acquisition_bytes(&data).map_err(fmt)?;
    let mut noise = NoiseLines::default();
    let mut total = 0;
    for (i, element) in bytes.chunks_exact(size).enumerate() {
        total += 1;
        if !has_flag(flags.read(element), NOISE_MEASUREMENT) {
            continue;
        }
        let what = |m: String| fmt(format!("acquisition {i}: {m}"));
        let (n, c, samples) = lines.read(element).map_err(what)?;
        noise
            .add(n, c, &samples, lines.dwell(element))
            .map_err(what)?;
    }
    noise.finish().ok_or_else(|| {
        fmt(format!(
            "has no noise measurement among its {total} acquisitions (flag 19, \
             ACQ_IS_NOISE_MEASUREMENT); expected a noise scan"
        ))
    })
}

/// Places every imaging line of the selected image, and gathers the noise measurements.
fn assemble(
    data: &Dataset,
    header: &IsmrmrdHeader,
    select: &Selection,
) -> std::result::Result<Assembled, String> {
    let dtype = data.dtype();
    let head = |name: &str| integer(dtype, &["head", name]);
    let idx = |name: &str| integer(dtype, &["head", "idx", name]);
    let lines = Lines::new(data)?;
    let center_sample = head("center_sample")?;
    let discard_pre = head("discard_pre")?;
    let discard_post = head("discard_post")?;
    let e1 = idx("kspace_encode_step_1")?;
    let slice = idx("slice")?;
    let fields = ImageFields::new(dtype, header)?;
    let placed = GeometryFields::new(dtype);
    let (flags, e2) = (fields.flags, fields.e2);
    let (bytes, size) = acquisition_bytes(data)?;
    // First pass, over the headers: the images the lines belong to, and the one to read.
    let (h, w, depth) = header.encoded_size;
    let mut found = vec![BTreeSet::new(); COUNTERS.len()];
    for image in fields.images(&bytes, size, depth)? {
        for (values, v) in found.iter_mut().zip(image) {
            values.insert(v);
        }
    }
    let counters = resolve(found, select)?;
    let selected: [u64; 4] = std::array::from_fn(|i| counters[i].selected);
    let mut unselected = 0;
    let center = header.kspace_center.unwrap_or(w / 2);
    let center_2 = header.kspace_center_2.unwrap_or(depth / 2);
    // A reference scan of the second encoding: its own centre line and partition.
    let second = reference_space(header).map(|e| {
        (
            e.center.unwrap_or(e.size.1 / 2),
            e.center_2.unwrap_or(e.size.2 / 2),
        )
    });
    // The image's lines, and a separate reference scan's.
    let mut image = Grid::default();
    let mut reference = Grid::default();
    // Each slice's (slab's) geometry, from its first imaging line.
    let mut slab_geometry: Vec<Option<Option<SliceGeometry>>> = Vec::new();
    let mut coils = None;
    let mut noise = NoiseLines::default();
    let mut imaging_dwell = 0.0f32;
    let mut image_dwell_read = false;
    let mut skipped = 0;
    for (i, element) in bytes.chunks_exact(size).enumerate() {
        let what = |m: String| format!("acquisition {i}: {m}");
        let fl = flags.read(element);
        let is_reference = fields.is_reference(element);
        if is_imaging(fl) && !is_reference && fields.image(element) != Some(selected) {
            unselected += 1;
            continue;
        }
        let (n, c, line) = lines.read(element).map_err(what)?;
        if has_flag(fl, NOISE_MEASUREMENT) {
            noise.add(n, c, &line, lines.dwell(element)).map_err(what)?;
            continue;
        }
        if NOT_IMAGING.iter().any(|&bit| has_flag(fl, bit)) {
            skipped += 1;
            continue;
        }
        if has_flag(fl, REVERSE) {
            return Err(what(
                "is a reversed readout (flag 22, EPI); expected Cartesian lines read in one \
                 direction"
                    .into(),
            ));
        }
        // The image's dwell time (a reference scan may be read at another bandwidth).
        if !is_reference && !image_dwell_read {
            imaging_dwell = lines.dwell(element);
            image_dwell_read = true;
        }
        match coils {
            None => coils = Some(c),
            Some(prev) if prev != c => {
                return Err(what(format!(
                    "has {c} channels where earlier acquisitions have {prev}"
                )))
            }
            Some(_) => {}
        }
        let (center, center_2) = match second {
            Some(centres) if is_reference && fields.encoding.read(element) == 1 => centres,
            _ => (center, center_2),
        };
        let col = (e1.read(element) as usize + w / 2)
            .checked_sub(center)
            .filter(|&col| col < w)
            .ok_or_else(|| {
                what(format!(
                    "phase-encode counter {} with centre {center} falls outside the {w} columns \
                     of the encoded matrix",
                    e1.read(element)
                ))
            })?;
        let part = (e2.read(element) as usize + depth / 2)
            .checked_sub(center_2)
            .filter(|&p| p < depth)
            .ok_or_else(|| {
                what(format!(
                    "second phase-encode counter {} with centre {center_2} falls outside the \
                     {depth} partitions of the encoded matrix",
                    e2.read(element)
                ))
            })?;
        let k = slice.read(element) as usize * depth + part;
        if !is_reference {
            if slab_geometry.len() <= k / depth {
                slab_geometry.resize(k / depth + 1, None);
            }
            slab_geometry[k / depth].get_or_insert_with(|| placed.and_then(|g| g.read(element)));
        }
        // The samples kept: all but `discard_pre` at the start and `discard_post` at the end.
        let (pre, post) = (
            discard_pre.read(element) as usize,
            discard_post.read(element) as usize,
        );
        let cs = center_sample.read(element) as usize;
        let kept = n.saturating_sub(pre + post);
        if pre + post >= n || cs < pre || cs >= n - post {
            return Err(what(format!(
                "has {n} samples, {pre} and {post} to discard, centred at {cs}; expected the \
                 centre among the samples kept"
            )));
        }
        // Kept sample s (index pre + s) lies at row h / 2 + (pre + s - cs).
        let first = (h / 2) as isize + pre as isize - cs as isize;
        if first < 0 || first as usize + kept > h {
            return Err(what(format!(
                "has {kept} samples centred at {}, which do not fit the {h} readout rows of the \
                 encoded matrix centred at {}",
                cs - pre,
                h / 2
            )));
        }
        let grid = if is_reference {
            &mut reference
        } else {
            &mut image
        };
        let (sum, count) = grid.at(k, depth, (c, h, w));
        for ch in 0..c {
            for s in 0..kept {
                sum[(ch, first as usize + s, col)] += line[ch * n + pre + s];
            }
        }
        count[col] += 1;
    }
    if image.sums.is_empty() {
        let image = counters
            .iter()
            .map(|c| format!("{} {}", c.name, c.selected))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "holds no imaging line of {image} together; expected a combination of counter \
             values that the file's lines have"
        ));
    }
    image.average();
    reference.average();
    let Grid { sums, counts } = image;
    // Each partition's lines acquired, and each slab's partitions that hold any.
    let lines: Vec<Vec<bool>> = counts
        .iter()
        .map(|count| count.iter().map(|&n| n > 0).collect())
        .collect();
    let held: Vec<Vec<usize>> = lines
        .chunks(depth)
        .map(|slab| (0..depth).filter(|&p| slab[p].contains(&true)).collect())
        .collect();
    // An inverse FFT along the partitions needs them fully sampled but for a run missing at
    // an edge (partial Fourier) and the same lines in each. Partitions that hold other lines
    // than the slab's first (undersampling along both phase encodes), or partitions missing
    // between acquired ones (undersampling along the second phase encode), leave the readout
    // the one axis fully sampled: the slices are taken along it.
    let slicing = if lines.chunks(depth).zip(&held).any(|(slab, held)| {
        let gap = held.windows(2).any(|pair| pair[1] != pair[0] + 1);
        gap || held.iter().any(|&p| slab[p] != slab[held[0]])
    }) {
        Slicing::Readout
    } else {
        Slicing::Partitions
    };
    // The recon matrix's central partitions or readout positions (the oversampling removed),
    // and their spacing, which places them along the slab's normal or its readout.
    // (Axis 2 of the matrix and fields of view for partitions, axis 0 for the readout.)
    let (encoded, axis) = match slicing {
        Slicing::Partitions => (depth, 2),
        Slicing::Readout => (h, 0),
    };
    let along = |(x, y, z): (f64, f64, f64)| [x, y, z][axis];
    let recon = [
        header.recon_size.0,
        header.recon_size.1,
        header.recon_size.2,
    ][axis];
    let keep = if (1..=encoded).contains(&recon) {
        recon
    } else {
        encoded
    };
    let spacing_mm = match (header.encoded_fov_mm, header.recon_fov_mm) {
        (Some(f), _) => Some(along(f) / encoded as f64),
        (None, Some(f)) => Some(along(f) / keep as f64),
        (None, None) => None,
    };
    let mut parts = sums.into_iter();
    let mut slices = Vec::with_capacity(held.len() * keep);
    let mut geometry = Vec::with_capacity(slices.capacity());
    let mut filled = 0;
    for (slab, acquired) in held.iter().map(Vec::len).enumerate() {
        let slab_parts: Vec<Array3<C32>> = parts.by_ref().take(depth).collect();
        if acquired == 0 {
            return Err(format!(
                "slice {slab} has no acquisition; expected slices numbered from 0 without gaps"
            ));
        }
        filled += acquired;
        let placed_at = slab_geometry.get(slab).copied().flatten().flatten();
        if depth == 1 {
            slices.extend(slab_parts);
            geometry.push(placed_at);
            continue;
        }
        // Kept slice `q` is index `encoded / 2 - keep / 2 + q` of the centred transform, whose
        // index `encoded / 2` is the slab's centre.
        let offset = |q: usize| (encoded / 2 - keep / 2 + q) as f64 - (encoded / 2) as f64;
        geometry.extend((0..keep).map(|q| {
            placed_at.zip(spacing_mm).map(|(g, d)| match slicing {
                Slicing::Partitions => g.along_normal(offset(q) * d),
                Slicing::Readout => g.readout_plane(offset(q) * d),
            })
        }));
        slices.extend(slab_slices(slab_parts, slicing, keep));
    }
    let encoding_3d = (depth > 1).then(|| Encoding3d {
        encoded: depth,
        kept: keep,
        filled: filled as f64 / held.len() as f64,
        slicing,
    });
    let noise = noise.finish();
    let reference = reference.slices(depth, slicing, keep, slices.len());
    Ok(Assembled {
        reference,
        slices,
        encoding_3d,
        noise,
        imaging_dwell,
        skipped,
        counters,
        unselected,
        geometry,
    })
}
