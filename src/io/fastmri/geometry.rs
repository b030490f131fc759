//! Where the slices of an ISMRMRD scan lie in the scanner, from the acquisition headers'
//! `position`, `read_dir`, `phase_dir` and `slice_dir`, and the voxel-to-world map
//! ([`VoxelSpace`]) of a volume of them.
//!
//! # Conventions (ISMRMRD, Gadgetron)
//! - Coordinates are DICOM's LPS+ patient coordinates in mm, relative to the isocentre.
//! - `position` is the centre of the excited slice (of the slab, for a 3-D encoding); the
//!   direction vectors are unit vectors along the readout, the phase encode and the slice
//!   normal.
//! - The image of a centred inverse FFT has the field of view's centre at index `n / 2` of each
//!   axis, and its indices grow along `read_dir` (rows, `msm`'s height) and `phase_dir`
//!   (columns, the width). Gadgetron's DICOM writer uses the same: the first pixel's
//!   `ImagePositionPatient` is `position - (fov_x / 2) read_dir - (fov_y / 2) phase_dir`, with
//!   `ImageOrientationPatient` = `read_dir`, `phase_dir`.
//! - A 3-D slab's partition `p` (of `Z` encoded, after the inverse FFT along the second phase
//!   encode) lies `(p - Z / 2)` partition spacings along `slice_dir` from the slab's centre.
//! - Slices of a 2-D multi-slice scan each carry their own `position`: the volume's slice axis
//!   is the step between consecutive slices' positions, so a gap between slices is in the
//!   affine (the header's field of view holds only the thickness).

use crate::io::space::{Affine, VoxelSpace};

/// Where one slice lies, as its acquisitions state it (LPS+, mm).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SliceGeometry {
    /// The centre of the slice's field of view.
    pub position: [f64; 3],
    /// Unit vector along the readout (image rows grow along it).
    pub read: [f64; 3],
    /// Unit vector along the phase encode (image columns grow along it).
    pub phase: [f64; 3],
    /// Unit vector along the slice normal.
    pub slice: [f64; 3],
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

impl SliceGeometry {
    /// The geometry an acquisition header states, if it is usable: unit direction vectors
    /// (to 1e-3), readout and phase encode orthogonal, finite numbers. Files written without
    /// geometry (zero vectors, as simulations often leave them) give `None`.
    pub fn checked(
        position: [f64; 3],
        read: [f64; 3],
        phase: [f64; 3],
        slice: [f64; 3],
    ) -> Option<SliceGeometry> {
        let finite = position.iter().chain(&read).chain(&phase).chain(&slice);
        let unit = |v: [f64; 3]| (norm(v) - 1.0).abs() < 1e-3;
        (finite.into_iter().all(|v| v.is_finite())
            && unit(read)
            && unit(phase)
            && unit(slice)
            && dot(read, phase).abs() < 1e-3)
            .then_some(SliceGeometry {
                position,
                read,
                phase,
                slice,
            })
    }

    /// This geometry moved `distance` mm along the slice normal: a partition of a 3-D slab.
    pub fn along_normal(&self, distance: f64) -> SliceGeometry {
        SliceGeometry {
            position: std::array::from_fn(|i| self.position[i] + distance * self.slice[i]),
            ..*self
        }
    }

    /// The plane of a 3-D slab `distance` mm along its readout from its centre, as a slice
    /// taken along the readout: rows grow along the phase encode, columns along the
    /// partitions (the slab's normal), and the readout is the new normal. (A cyclic
    /// permutation of the axes, so the handedness is kept.)
    pub fn readout_plane(&self, distance: f64) -> SliceGeometry {
        SliceGeometry {
            position: std::array::from_fn(|i| self.position[i] + distance * self.read[i]),
            read: self.phase,
            phase: self.slice,
            slice: self.read,
        }
    }
}

/// The voxel-to-world map of a volume whose slices `k = 0, 1, ...` are `slices` (consecutive
/// slices of the scan, at least one), with pixels of `pixel_mm` `[rows, columns]` and the field
/// of view's centre at output index `centre` `[row, column]`. One slice gets a slice axis of
/// `thickness_mm` along its normal; several get the mean step between their positions.
///
/// Errors (without a file name; the caller adds it) when the slices cannot share one affine:
/// they differ in orientation, lie at one position, or are not evenly spaced along a line.
pub fn placement(
    slices: &[SliceGeometry],
    pixel_mm: [f64; 2],
    thickness_mm: f64,
    centre: [f64; 2],
) -> Result<VoxelSpace, String> {
    let first = slices.first().ok_or("no slice to place")?;
    let n = slices.len();
    for (k, g) in slices.iter().enumerate() {
        let turned = |a: [f64; 3], b: [f64; 3]| norm(sub(a, b)) > 1e-3;
        if turned(g.read, first.read) || turned(g.phase, first.phase) {
            return Err(format!(
                "slice {k} has read and phase directions {:?}, {:?} where the first has {:?}, \
                 {:?}; expected one orientation for a volume",
                g.read, g.phase, first.read, first.phase
            ));
        }
    }
    let step: [f64; 3] = if n == 1 {
        first.slice.map(|v| v * thickness_mm)
    } else {
        let last = slices[n - 1].position;
        sub(last, first.position).map(|v| v / (n - 1) as f64)
    };
    let spacing = norm(step);
    if spacing < 1e-3 {
        return Err(format!(
            "its {n} slices all lie at position {:?} mm; expected slices at distinct positions",
            first.position
        ));
    }
    for (k, pair) in slices.windows(2).enumerate() {
        let off = norm(sub(sub(pair[1].position, pair[0].position), step));
        if off > 1e-2 + 1e-3 * spacing {
            return Err(format!(
                "slices {k} and {} lie {:.3} mm from the even step of {spacing:.3} mm between \
                 the first and last slice positions; expected evenly spaced slices along a \
                 line, as one affine needs",
                k + 1,
                off
            ));
        }
    }
    let [dr, dc] = pixel_mm;
    let origin: [f64; 3] = std::array::from_fn(|i| {
        first.position[i] - centre[0] * dr * first.read[i] - centre[1] * dc * first.phase[i]
    });
    let lps: Affine =
        std::array::from_fn(|i| [dr * first.read[i], dc * first.phase[i], step[i], origin[i]]);
    VoxelSpace::from_lps(lps).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oblique(position: [f64; 3]) -> SliceGeometry {
        // A transverse-to-coronal tilt of 0.3 rad about the readout (L-R).
        let (s, c) = 0.3f64.sin_cos();
        SliceGeometry::checked(position, [1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]).unwrap()
    }

    #[test]
    fn each_pixel_lands_where_the_conventions_put_it() {
        let g = oblique([10.0, -20.0, 30.0]);
        let step = g.slice.map(|v| v * 6.0);
        let slices: Vec<SliceGeometry> = (0..3).map(|k| g.along_normal(6.0 * k as f64)).collect();
        let space = placement(&slices, [2.0, 3.0], 4.0, [8.0, 5.0]).unwrap();
        // Pixel (row 11, column 2) of slice 2: 3 rows and -3 columns from the centre.
        let lps: [f64; 3] = std::array::from_fn(|i| {
            g.position[i] + 2.0 * step[i] + 3.0 * 2.0 * g.read[i] - 3.0 * 3.0 * g.phase[i]
        });
        let world = space.world([11.0, 2.0, 2.0]);
        let ras = [-lps[0], -lps[1], lps[2]];
        for i in 0..3 {
            assert!((world[i] - ras[i]).abs() < 1e-9, "{world:?} {ras:?}");
        }
        assert_eq!(space.voxel_size(), [2.0, 3.0, 6.0]);
        // One slice: its thickness along the normal.
        let one = placement(&slices[..1], [2.0, 3.0], 4.0, [8.0, 5.0]).unwrap();
        assert_eq!(one.voxel_size(), [2.0, 3.0, 4.0]);
    }

    #[test]
    fn slices_that_share_no_affine_are_refused() {
        let g = oblique([0.0; 3]);
        let uneven = [g, g.along_normal(5.0), g.along_normal(12.0)];
        let e = placement(&uneven, [1.0; 2], 1.0, [0.0; 2]).unwrap_err();
        assert!(e.contains("evenly spaced"), "{e}");
        let same = [g, g];
        let e = placement(&same, [1.0; 2], 1.0, [0.0; 2]).unwrap_err();
        assert!(e.contains("distinct positions"), "{e}");
        let turned = SliceGeometry {
            read: [0.0, 1.0, 0.0],
            phase: [1.0, 0.0, 0.0],
            ..g.along_normal(5.0)
        };
        let e = placement(&[g, turned], [1.0; 2], 1.0, [0.0; 2]).unwrap_err();
        assert!(e.contains("one orientation"), "{e}");
    }

    #[test]
    fn headers_without_geometry_are_not_placed() {
        let z = [0.0; 3];
        assert!(SliceGeometry::checked(z, z, z, z).is_none());
        let x = [1.0, 0.0, 0.0];
        assert!(SliceGeometry::checked(z, x, x, [0.0, 0.0, 1.0]).is_none());
        assert!(
            SliceGeometry::checked([f64::NAN, 0.0, 0.0], x, [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
                .is_none()
        );
    }
}
