//! NIfTI-1 magnitude volumes (`.nii` and `.nii.gz`).
//!
//! Reading accepts single-file NIfTI-1 (`n+1` magic) in either byte order (detected from
//! `sizeof_hdr == 348`), gzip-compressed or not (detected from the content), with datatypes
//! uint8, int8, int16, uint16, int32, float32 and float64. Values are scaled by
//! `scl_slope`/`scl_inter` (a slope of 0 or a non-finite slope means no scaling) and the data is
//! read from `vox_offset`. The volume is indexed `[x, y, z]`, NIfTI's voxel indices `i, j, k`
//! (`i` fastest on disk). [`read_nifti_placed`] also returns the header's placement (sform,
//! else qform, else `pixdim`), and [`read_nifti_canonical`] reorders the voxels to the order
//! closest to RAS with it.
//!
//! Writing produces a little-endian float32 single-file NIfTI-1 volume (gzip-compressed at the
//! fast level when the file name ends in `.gz`), placed by a [`VoxelSpace`]: its affine is the
//! sform, its quaternion form the qform (both with code 1, scanner coordinates), its column
//! lengths `pixdim`. A volume of unknown placement gets [`VoxelSpace::scaled`]: voxel axes along
//! the RAS world axes, origin at voxel 0.
//!
//! # Display orientation of slices
//! [`Volume::slice`] assumes the voxel axes point (approximately) to the subject's Right,
//! Anterior and Superior (RAS, as in MNI templates such as Colin27 `ch2.nii.gz`): read volumes
//! stored otherwise with [`read_nifti_canonical`]. Slices are
//! oriented as viewers show them in neurological convention (subject's left on the image's
//! left): axial slices have anterior at the top and `x` increasing to the right; coronal slices
//! have superior at the top and `x` increasing to the right; sagittal slices have superior at
//! the top and `y` (anterior) increasing to the right. Row 0 is the top of the image.

use super::space::{Quaternion, VoxelSpace};
use super::{atomic, first_non_finite};
use crate::{Error, Result};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use ndarray::{s, Array2, Array3, ArrayViewD, Axis, ShapeBuilder};
use std::io::{Read, Write};
use std::path::Path;

const HEADER_SIZE: usize = 348;
/// Offset of the voxel data in files this module writes (header plus 4 extension bytes).
const DATA_OFFSET: usize = 352;

/// A 3-D magnitude volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Voxel values indexed `[x, y, z]` (NIfTI `i, j, k`), after scaling.
    pub data: Array3<f32>,
    /// Voxel sizes along x, y and z (`pixdim[1..4]`, usually millimetres), as stored.
    pub voxel_size: [f32; 3],
}

/// The plane of a 2-D slice through a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// A slice at fixed z (index along the third axis).
    Axial,
    /// A slice at fixed y (index along the second axis).
    Coronal,
    /// A slice at fixed x (index along the first axis).
    Sagittal,
}

impl Volume {
    /// Number of slices in `plane` (the size of the volume along the axis it fixes).
    pub fn slice_count(&self, plane: Plane) -> usize {
        self.data.len_of(Axis(plane.axis()))
    }

    /// The slice `index` in `plane`, oriented for display (see the module documentation):
    /// axial `(ny, nx)`, coronal `(nz, nx)`, sagittal `(nz, ny)`. Errors if `index` is out of
    /// range.
    pub fn slice(&self, plane: Plane, index: usize) -> Result<Array2<f32>> {
        let count = self.slice_count(plane);
        if index >= count {
            return Err(Error::invalid(format!(
                "{plane:?} slice {index} is out of range: the volume {:?} has {count} slices in \
                 that plane (0..{count})",
                self.data.dim()
            )));
        }
        let section = self.data.index_axis(Axis(plane.axis()), index);
        // `section` is indexed [x, y], [x, z] or [y, z]: put the second axis on the rows, top
        // row = largest coordinate.
        Ok(section.t().slice(s![..;-1, ..]).to_owned())
    }
}

impl Volume {
    /// This volume (placed by `space`) with its voxel axes permuted and flipped to the order
    /// closest to RAS, and the map of the result: each voxel axis goes to the world axis it is
    /// most nearly parallel to (the permutation with the largest summed cosines), reversed
    /// where it points the other way. The data is only reordered, never resampled, as
    /// nibabel's `as_closest_canonical` does.
    pub fn reoriented(&self, space: &VoxelSpace) -> (Volume, VoxelSpace) {
        let a = space.affine();
        let size = space.voxel_size().map(f64::from);
        let cos = |r: usize, c: usize| a[r][c] / size[c];
        // to[c]: the world axis of voxel axis c.
        let perms = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let score = |p: &[usize; 3]| (0..3).map(|c| cos(p[c], c).abs()).sum::<f64>();
        let to = perms
            .iter()
            .copied()
            .max_by(|p, q| score(p).total_cmp(&score(q)))
            .unwrap_or([0, 1, 2]);
        // from[r]: the voxel axis that becomes world axis r.
        let mut from = [0; 3];
        for (c, &r) in to.iter().enumerate() {
            from[r] = c;
        }
        let mut data = self.data.view().permuted_axes(from);
        let dims = self.data.dim();
        let n = [dims.0, dims.1, dims.2];
        let mut affine = [[0.0; 4]; 3];
        for row in 0..3 {
            affine[row][3] = a[row][3];
        }
        for (r, &c) in from.iter().enumerate() {
            let flip = cos(r, c) < 0.0;
            if flip {
                data.invert_axis(Axis(r));
            }
            for row in 0..3 {
                if flip {
                    affine[row][3] += (n[c] - 1) as f64 * a[row][c];
                }
                affine[row][r] = if flip { -a[row][c] } else { a[row][c] };
            }
        }
        let volume = Volume {
            data: data.as_standard_layout().into_owned(),
            voxel_size: from.map(|c| self.voxel_size[c]),
        };
        // A reordering of a valid map is valid.
        let space = VoxelSpace::new(affine).unwrap_or(*space);
        (volume, space)
    }
}

impl Plane {
    fn axis(self) -> usize {
        match self {
            Plane::Sagittal => 0,
            Plane::Coronal => 1,
            Plane::Axial => 2,
        }
    }
}

/// Supported on-disk datatypes.
#[derive(Clone, Copy)]
enum Datatype {
    U8,
    I8,
    I16,
    U16,
    I32,
    F32,
    F64,
}

impl Datatype {
    fn from_code(code: i16) -> std::result::Result<Self, String> {
        Ok(match code {
            2 => Datatype::U8,
            256 => Datatype::I8,
            4 => Datatype::I16,
            512 => Datatype::U16,
            8 => Datatype::I32,
            16 => Datatype::F32,
            64 => Datatype::F64,
            other => {
                let name = match other {
                    0 => "unknown",
                    1 => "binary",
                    32 => "complex64",
                    128 => "rgb24",
                    768 => "uint32",
                    1024 => "int64",
                    1280 => "uint64",
                    1536 => "float128",
                    1792 => "complex128",
                    2048 => "complex256",
                    2304 => "rgba32",
                    _ => "not a NIfTI-1 code",
                };
                return Err(format!(
                    "unsupported datatype {other} ({name}); expected uint8, int8, int16, uint16, \
                     int32, float32 or float64"
                ));
            }
        })
    }

    fn size(self) -> usize {
        match self {
            Datatype::U8 | Datatype::I8 => 1,
            Datatype::I16 | Datatype::U16 => 2,
            Datatype::I32 | Datatype::F32 => 4,
            Datatype::F64 => 8,
        }
    }
}

/// Reads fields of a header in its byte order.
struct Fields<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Fields<'_> {
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut a = [0; N];
        a.copy_from_slice(&self.bytes[at..at + N]);
        if self.big_endian {
            a.reverse();
        }
        a
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.array(at))
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.array(at))
    }
    fn f32(&self, at: usize) -> f32 {
        f32::from_le_bytes(self.array(at))
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.array(at))
    }
}

/// Reads a NIfTI-1 volume from a `.nii` or `.nii.gz` file, in its stored voxel order.
///
/// Errors (each naming the file): a bad `sizeof_hdr` or magic, an unsupported datatype (named),
/// more than three dimensions above 1, data shorter than the dimensions need, and NaN or
/// infinite voxel values (with the position of the first one).
pub fn read_nifti(path: impl AsRef<Path>) -> Result<Volume> {
    read_nifti_placed(path).map(|(volume, _)| volume)
}

/// Which of a NIfTI-1 header's forms placed a volume ([`read_nifti_placed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The sform, with its code (1 scanner, 2 aligned, 3 Talairach, 4 MNI, ...).
    Sform(i16),
    /// The qform, with its code.
    Qform(i16),
    /// Neither is set (or usable): `pixdim` along the world axes.
    Pixdim,
}

/// A volume's placement as its header states it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    /// The voxel-to-world map.
    pub space: VoxelSpace,
    /// The form it came from.
    pub form: Form,
}

/// Reads a NIfTI-1 volume as [`read_nifti`] does, turned to the voxel order closest to RAS
/// ([`Volume::reoriented`], as nibabel's `as_closest_canonical`): `x` towards the subject's
/// Right, `y` Anterior, `z` Superior, so that [`Volume::slice`]'s planes are the anatomical
/// ones whatever order the file stores (a sagittal acquisition, a radiological LAS file).
pub fn read_nifti_canonical(path: impl AsRef<Path>) -> Result<Volume> {
    let (volume, placed) = read_nifti_placed(path)?;
    Ok(volume.reoriented(&placed.space).0)
}

/// Reads a NIfTI-1 volume as [`read_nifti`] does, with its placement: the sform when its code
/// is set (and it is not degenerate), else the qform when its code is set, else NIfTI's
/// method 1 (`pixdim` along the world axes, no orientation).
pub fn read_nifti_placed(path: impl AsRef<Path>) -> Result<(Volume, Placement)> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("corrupt gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    if bytes.len() < HEADER_SIZE {
        return Err(Error::format(
            path,
            format!(
                "file has {} bytes, shorter than a NIfTI-1 header ({HEADER_SIZE} bytes)",
                bytes.len()
            ),
        ));
    }
    let sizeof_le = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let big_endian = match (sizeof_le, sizeof_le.swap_bytes()) {
        (348, _) => false,
        (_, 348) => true,
        (n, m) if n == 540 || m == 540 => {
            return Err(Error::format(
                path,
                "NIfTI-2 header (sizeof_hdr 540) is not supported; expected NIfTI-1 (348)",
            ))
        }
        (n, _) => {
            return Err(Error::format(
                path,
                format!("bad sizeof_hdr {n}; expected 348 (a NIfTI-1 header)"),
            ))
        }
    };
    let h = Fields {
        bytes: &bytes,
        big_endian,
    };
    match &bytes[344..348] {
        b"n+1\0" => {}
        b"ni1\0" => {
            return Err(Error::format(
                path,
                "a header of a NIfTI .hdr/.img pair; expected a single-file .nii (magic n+1)",
            ))
        }
        m => {
            return Err(Error::format(
                path,
                format!("bad magic {m:?}; expected \"n+1\\0\" (single-file NIfTI-1)"),
            ))
        }
    }
    let dim: Vec<i16> = (0..8).map(|i| h.i16(40 + 2 * i)).collect();
    let ndim = dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(Error::format(
            path,
            format!("bad dim[0] = {ndim}; expected 1 to 7 dimensions (dim = {dim:?})"),
        ));
    }
    let ndim = ndim as usize;
    if let Some(d) = dim[1..=ndim].iter().find(|&&d| d < 1) {
        return Err(Error::format(
            path,
            format!("dimension size {d} in dim = {dim:?}; expected sizes of at least 1"),
        ));
    }
    if dim[4..=ndim.max(3)].iter().any(|&d| d != 1) {
        return Err(Error::format(
            path,
            format!(
                "{ndim}-D data with dim = {dim:?}; expected a 3-D volume (dimensions above the \
                 third must be 1)"
            ),
        ));
    }
    let size = |i: usize| if i <= ndim { dim[i] as usize } else { 1 };
    let (nx, ny, nz) = (size(1), size(2), size(3));
    let datatype = Datatype::from_code(h.i16(70)).map_err(|msg| Error::format(path, msg))?;
    let vox_offset = h.f32(108);
    let offset = if vox_offset == 0.0 {
        DATA_OFFSET
    } else if vox_offset.is_finite() && vox_offset >= HEADER_SIZE as f32 {
        vox_offset as usize
    } else {
        return Err(Error::format(
            path,
            format!("bad vox_offset {vox_offset}; expected at least {HEADER_SIZE}"),
        ));
    };
    let count = nx * ny * nz;
    let needed = count * datatype.size();
    let available = bytes.len().saturating_sub(offset);
    if available < needed {
        return Err(Error::format(
            path,
            format!(
                "truncated data: {nx}x{ny}x{nz} voxels need {needed} bytes from offset {offset}, \
                 the file has {available}"
            ),
        ));
    }
    let (mut slope, mut inter) = (h.f32(112), h.f32(116));
    if slope == 0.0 || !slope.is_finite() {
        (slope, inter) = (1.0, 0.0);
    }
    if !inter.is_finite() {
        inter = 0.0;
    }
    let data = Fields {
        bytes: &bytes[offset..offset + needed],
        big_endian,
    };
    let size = datatype.size();
    let values: Vec<f32> = (0..count)
        .map(|n| {
            let at = n * size;
            let v = match datatype {
                Datatype::U8 => data.bytes[at] as f64,
                Datatype::I8 => data.bytes[at] as i8 as f64,
                Datatype::I16 => data.i16(at) as f64,
                Datatype::U16 => data.i16(at) as u16 as f64,
                Datatype::I32 => data.i32(at) as f64,
                Datatype::F32 => data.f32(at) as f64,
                Datatype::F64 => data.f64(at),
            };
            (v * slope as f64 + inter as f64) as f32
        })
        .collect();
    if let Some(n) = first_non_finite(values.iter().copied()) {
        return Err(Error::format(
            path,
            format!(
                "non-finite value at voxel [{}, {}, {}]; expected finite numbers",
                n % nx,
                n / nx % ny,
                n / (nx * ny)
            ),
        ));
    }
    let data = Array3::from_shape_vec((nx, ny, nz).f(), values)
        .map_err(|e| Error::format(path, e.to_string()))?
        .as_standard_layout()
        .into_owned();
    let placed = placement(&h);
    Ok((
        Volume {
            data,
            voxel_size: [h.f32(80), h.f32(84), h.f32(88)],
        },
        placed,
    ))
}

/// The header's voxel-to-world map: the sform (code > 0), else the qform (code > 0), else
/// `pixdim` along the world axes; a degenerate form is passed over for the next.
fn placement(h: &Fields) -> Placement {
    let pixdim: [f64; 3] = std::array::from_fn(|i| {
        let v = f64::from(h.f32(80 + 4 * i)).abs();
        if v.is_finite() && v > 0.0 {
            v
        } else {
            1.0
        }
    });
    let (sform_code, qform_code) = (h.i16(254), h.i16(252));
    let sform = (sform_code > 0)
        .then(|| {
            VoxelSpace::new(std::array::from_fn(|r| {
                std::array::from_fn(|c| f64::from(h.f32(280 + 16 * r + 4 * c)))
            }))
            .ok()
        })
        .flatten()
        .map(|space| Placement {
            space,
            form: Form::Sform(sform_code),
        });
    let qform = || {
        (qform_code > 0)
            .then(|| {
                let q = Quaternion {
                    bcd: std::array::from_fn(|i| f64::from(h.f32(256 + 4 * i))),
                    qfac: if h.f32(76) < 0.0 { -1.0 } else { 1.0 },
                    offset: std::array::from_fn(|i| f64::from(h.f32(268 + 4 * i))),
                };
                let r = q.rotation();
                VoxelSpace::new(std::array::from_fn(|row| {
                    [
                        r[row][0] * pixdim[0],
                        r[row][1] * pixdim[1],
                        r[row][2] * pixdim[2],
                        q.offset[row],
                    ]
                }))
                .ok()
            })
            .flatten()
            .map(|space| Placement {
                space,
                form: Form::Qform(qform_code),
            })
    };
    sform.or_else(qform).unwrap_or_else(|| Placement {
        space: VoxelSpace::scaled(pixdim.map(|v| v as f32)).unwrap_or(VoxelSpace::unit()),
        form: Form::Pixdim,
    })
}

/// Writes `volume` as a little-endian float32 NIfTI-1 file, gzip-compressed when `path` ends in
/// `.gz`, atomically.
///
/// Errors: a dimension of 0 or above 32767, a non-positive or non-finite voxel size, a
/// non-finite value, or an I/O failure.
pub fn write_nifti(path: impl AsRef<Path>, volume: &Volume) -> Result<()> {
    let path = path.as_ref();
    let space = VoxelSpace::scaled(volume.voxel_size)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    write_nifti_nd(path, &volume.data.view().into_dyn(), &space)
}

/// Writes `data`, indexed `[x, y, z]` or with up to four more axes `[x, y, z, t, u, v, w]`
/// (NIfTI's `dim[1..]`: a series of volumes, such as dynamics or echoes, along the fourth), as
/// [`write_nifti`] writes a volume, placed by `space`. The axes above the third get a spacing
/// of 1 (`pixdim`) and no unit.
///
/// Errors: fewer than 3 or more than 7 axes, and [`write_nifti`]'s.
pub fn write_nifti_nd(
    path: impl AsRef<Path>,
    data: &ArrayViewD<f32>,
    space: &VoxelSpace,
) -> Result<()> {
    let path = path.as_ref();
    let shape = data.shape();
    let invalid = |msg: String| Error::invalid(format!("{}: {msg}", path.display()));
    let shown = shape
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("x");
    if !(3..=7).contains(&shape.len()) {
        return Err(invalid(format!(
            "cannot write a {shown} array: NIfTI-1 holds 3 to 7 dimensions here"
        )));
    }
    let dims: Vec<i16> = shape
        .iter()
        .map(|&n| i16::try_from(n).ok().filter(|&n| n > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            invalid(format!(
                "cannot write a {shown} volume: NIfTI-1 sizes are 1 to 32767"
            ))
        })?;
    if let Some(mut n) = first_non_finite(data.t().iter().copied()) {
        let at: Vec<String> = shape
            .iter()
            .map(|&d| {
                let i = n % d;
                n /= d;
                i.to_string()
            })
            .collect();
        return Err(invalid(format!(
            "refusing to write a non-finite value at voxel [{}]",
            at.join(", ")
        )));
    }
    let [vx, vy, vz] = space.voxel_size();
    let q = space.quaternion();
    let mut header = vec![0u8; DATA_OFFSET];
    let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &(HEADER_SIZE as i32).to_le_bytes());
    put(38, b"r");
    let mut dim = [1i16; 8];
    dim[0] = dims.len() as i16;
    dim[1..=dims.len()].copy_from_slice(&dims);
    for (i, d) in dim.iter().enumerate() {
        put(40 + 2 * i, &d.to_le_bytes());
    }
    put(70, &16i16.to_le_bytes()); // datatype float32
    put(72, &32i16.to_le_bytes()); // bitpix
    let extra = |axis: usize| if axis < dims.len() { 1.0f32 } else { 0.0 };
    for (i, p) in [
        q.qfac as f32,
        vx,
        vy,
        vz,
        extra(3),
        extra(4),
        extra(5),
        extra(6),
    ]
    .iter()
    .enumerate()
    {
        put(76 + 4 * i, &p.to_le_bytes());
    }
    put(108, &(DATA_OFFSET as f32).to_le_bytes());
    put(112, &1.0f32.to_le_bytes()); // scl_slope
    put(123, &[2]); // xyzt_units: millimetres
    put(252, &1i16.to_le_bytes()); // qform_code: scanner
    put(254, &1i16.to_le_bytes()); // sform_code: scanner
    for (i, v) in q.bcd.iter().chain(&q.offset).enumerate() {
        put(256 + 4 * i, &(*v as f32).to_le_bytes()); // quatern_b..d, qoffset_x..z
    }
    for (row, srow) in space.affine().iter().enumerate() {
        for (i, v) in srow.iter().enumerate() {
            put(280 + 16 * row + 4 * i, &(*v as f32).to_le_bytes());
        }
    }
    put(344, b"n+1\0");
    let mut bytes = header;
    bytes.reserve(data.len() * 4);
    for v in data.t().iter() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let gzip = path.extension().is_some_and(|e| e == "gz");
    atomic::write_atomic(path, |w| {
        if gzip {
            let mut encoder = GzEncoder::new(w, flate2::Compression::fast());
            encoder.write_all(&bytes)?;
            encoder.finish().map(|_| ())
        } else {
            w.write_all(&bytes)
        }
    })
}
