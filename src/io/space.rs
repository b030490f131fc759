//! Where a volume's voxels lie: the affine map from voxel indices `(i, j, k)` to world
//! coordinates in millimetres, in NIfTI's RAS+ convention (`x` to the subject's Right, `y`
//! Anterior, `z` Superior), and its NIfTI-1 quaternion form (the qform).
//!
//! Scanners and ISMRMRD state positions in DICOM's LPS+ patient coordinates (`x` to the Left,
//! `y` Posterior); [`VoxelSpace::from_lps`] turns an LPS affine into RAS by negating its first
//! two rows, as dcm2niix and nibabel do.

use crate::{Error, Result};

/// An affine `[[f64; 4]; 3]`: row `r` gives world coordinate `r` as
/// `a[r][0] i + a[r][1] j + a[r][2] k + a[r][3]`.
pub type Affine = [[f64; 4]; 3];

/// The voxel-to-world map of a volume (RAS+, millimetres).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VoxelSpace {
    affine: Affine,
}

/// The quaternion form of a [`VoxelSpace`], as NIfTI-1's qform stores it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quaternion {
    /// `quatern_b`, `quatern_c`, `quatern_d` (`a = sqrt(1 - b^2 - c^2 - d^2) >= 0`).
    pub bcd: [f64; 3],
    /// `qfac` (`pixdim[0]`): 1, or -1 when the voxel axes are left-handed in RAS.
    pub qfac: f64,
    /// `qoffset_x`, `qoffset_y`, `qoffset_z`: the world position of voxel `(0, 0, 0)`.
    pub offset: [f64; 3],
}

impl VoxelSpace {
    /// 1 mm voxels along the world axes, voxel `(0, 0, 0)` at the origin.
    pub const fn unit() -> VoxelSpace {
        VoxelSpace {
            affine: [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
        }
    }

    /// Voxels of `size` (mm) along the world axes, voxel `(0, 0, 0)` at the origin: the map of
    /// a volume whose placement is not known.
    ///
    /// Errors: a size that is not positive and finite.
    pub fn scaled(size: [f32; 3]) -> Result<VoxelSpace> {
        if size.iter().any(|&v| !(v.is_finite() && v > 0.0)) {
            return Err(Error::invalid(format!(
                "voxel sizes {size:?} must be positive and finite"
            )));
        }
        let mut affine = [[0.0; 4]; 3];
        for (r, row) in affine.iter_mut().enumerate() {
            row[r] = f64::from(size[r]);
        }
        Ok(VoxelSpace { affine })
    }

    /// The map `affine` (RAS+, mm).
    ///
    /// Errors: a non-finite entry, or voxel axes that do not span space (a zero column, or
    /// columns in one plane).
    pub fn new(affine: Affine) -> Result<VoxelSpace> {
        if affine.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "the voxel-to-world affine {affine:?} has a non-finite entry"
            )));
        }
        let space = VoxelSpace { affine };
        let size = space.voxel_size_f64();
        let det = det3(space.linear()).abs();
        if size.contains(&0.0) || det <= 1e-9 * size.iter().product::<f64>() {
            return Err(Error::invalid(format!(
                "the voxel-to-world affine {affine:?} is degenerate: its voxel axes do not span \
                 space; expected three independent axes"
            )));
        }
        Ok(space)
    }

    /// The map of an affine in DICOM's LPS+ patient coordinates (mm): `lps` with its first
    /// two rows negated. Errors as [`VoxelSpace::new`].
    pub fn from_lps(lps: Affine) -> Result<VoxelSpace> {
        let mut ras = lps;
        for row in &mut ras[..2] {
            for v in row.iter_mut() {
                *v = -*v;
            }
        }
        VoxelSpace::new(ras)
    }

    /// The affine (RAS+, mm): NIfTI's sform.
    pub fn affine(&self) -> Affine {
        self.affine
    }

    /// The world position (RAS+, mm) of the voxel at `index` (fractional indices allowed).
    pub fn world(&self, index: [f64; 3]) -> [f64; 3] {
        self.affine
            .map(|row| row[0] * index[0] + row[1] * index[1] + row[2] * index[2] + row[3])
    }

    /// The voxel sizes (mm): the lengths of the affine's columns, NIfTI's `pixdim[1..4]`.
    pub fn voxel_size(&self) -> [f32; 3] {
        self.voxel_size_f64().map(|v| v as f32)
    }

    fn voxel_size_f64(&self) -> [f64; 3] {
        std::array::from_fn(|c| {
            (0..3)
                .map(|r| self.affine[r][c].powi(2))
                .sum::<f64>()
                .sqrt()
        })
    }

    /// The linear part, `m[r][c]`.
    fn linear(&self) -> [[f64; 3]; 3] {
        self.affine.map(|row| [row[0], row[1], row[2]])
    }

    /// The world direction each voxel axis points to most, as the letters of RAS+ (`R`/`L`,
    /// `A`/`P`, `S`/`I`), as nibabel's `aff2axcodes` names them: `"RAS"` for a volume stored
    /// in the world's axes, `"LPS"` for a DICOM-ordered one.
    pub fn axis_codes(&self) -> String {
        let size = self.voxel_size_f64();
        (0..3)
            .map(|c| {
                let unit: [f64; 3] = std::array::from_fn(|r| self.affine[r][c] / size[c]);
                let r = (0..3)
                    .max_by(|&a, &b| unit[a].abs().total_cmp(&unit[b].abs()))
                    .unwrap_or(0);
                let letters = [['R', 'L'], ['A', 'P'], ['S', 'I']][r];
                letters[usize::from(unit[r] < 0.0)]
            })
            .collect()
    }

    /// The qform: the rotation of the affine's columns (made orthonormal by polar
    /// decomposition where they are not quite, as NIfTI's reference library does), its
    /// handedness and the origin. The qform's voxel sizes are [`VoxelSpace::voxel_size`].
    pub fn quaternion(&self) -> Quaternion {
        let size = self.voxel_size_f64();
        let mut m = self.linear();
        for row in &mut m {
            for (v, s) in row.iter_mut().zip(size) {
                *v /= s;
            }
        }
        let mut r = polar(m);
        let qfac = if det3(r) < 0.0 { -1.0 } else { 1.0 };
        for row in &mut r {
            row[2] *= qfac;
        }
        let offset = self.affine.map(|row| row[3]);
        Quaternion {
            bcd: quaternion_of(r),
            qfac,
            offset,
        }
    }
}

impl Quaternion {
    /// The rotation the quaternion stands for, with the third column times `qfac`: the
    /// qform's affine divided by the voxel sizes (NIfTI-1's `quatern_to_mat44`).
    pub fn rotation(&self) -> [[f64; 3]; 3] {
        let [b, c, d] = self.bcd;
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let mut r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        for row in &mut r {
            row[2] *= self.qfac;
        }
        r
    }
}

fn det3(m: [[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn inverse_transpose(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let det = det3(m);
    // The cofactor matrix over the determinant is the inverse's transpose.
    std::array::from_fn(|r| {
        std::array::from_fn(|c| {
            let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
            let (c1, c2) = ((c + 1) % 3, (c + 2) % 3);
            (m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]) / det
        })
    })
}

/// The orthogonal factor of `m`'s polar decomposition (the nearest orthogonal matrix), by
/// Newton's iteration `X <- (X + X^-T) / 2`, which converges quadratically from a matrix of
/// unit columns.
fn polar(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut x = m;
    for _ in 0..100 {
        let t = inverse_transpose(x);
        let next: [[f64; 3]; 3] =
            std::array::from_fn(|r| std::array::from_fn(|c| 0.5 * (x[r][c] + t[r][c])));
        let change: f64 = (0..9)
            .map(|n| (next[n / 3][n % 3] - x[n / 3][n % 3]).abs())
            .sum();
        x = next;
        if change < 1e-15 {
            break;
        }
    }
    x
}

/// `(b, c, d)` of the unit quaternion (`a >= 0`) of the rotation `r` (determinant 1), as
/// NIfTI-1's `mat44_to_quatern` computes it.
fn quaternion_of(r: [[f64; 3]; 3]) -> [f64; 3] {
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (a, b, c, d);
    if trace > 0.5 {
        a = 0.5 * trace.sqrt();
        b = 0.25 * (r[2][1] - r[1][2]) / a;
        c = 0.25 * (r[0][2] - r[2][0]) / a;
        d = 0.25 * (r[1][0] - r[0][1]) / a;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r[0][1] + r[1][0]) / b;
            d = 0.25 * (r[0][2] + r[2][0]) / b;
            a = 0.25 * (r[2][1] - r[1][2]) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r[0][1] + r[1][0]) / c;
            d = 0.25 * (r[1][2] + r[2][1]) / c;
            a = 0.25 * (r[0][2] - r[2][0]) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r[0][2] + r[2][0]) / d;
            c = 0.25 * (r[1][2] + r[2][1]) / d;
            a = 0.25 * (r[1][0] - r[0][1]) / d;
        }
    }
    if a < 0.0 {
        [-b, -c, -d]
    } else {
        [b, c, d]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rotation about the unit `axis` by `angle` (Rodrigues' formula): an independent way to
    /// the matrices the quaternion must give back.
    fn rotation(axis: [f64; 3], angle: f64) -> [[f64; 3]; 3] {
        let (s, c) = angle.sin_cos();
        let [x, y, z] = axis;
        [
            [
                c + x * x * (1.0 - c),
                x * y * (1.0 - c) - z * s,
                x * z * (1.0 - c) + y * s,
            ],
            [
                y * x * (1.0 - c) + z * s,
                c + y * y * (1.0 - c),
                y * z * (1.0 - c) - x * s,
            ],
            [
                z * x * (1.0 - c) - y * s,
                z * y * (1.0 - c) + x * s,
                c + z * z * (1.0 - c),
            ],
        ]
    }

    fn affine_of(m: [[f64; 3]; 3], size: [f64; 3], offset: [f64; 3]) -> Affine {
        std::array::from_fn(|r| {
            [
                m[r][0] * size[0],
                m[r][1] * size[1],
                m[r][2] * size[2],
                offset[r],
            ]
        })
    }

    #[test]
    fn the_quaternion_gives_back_the_rotation_and_handedness() {
        let n = |v: [f64; 3]| {
            let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            v.map(|x| x / l)
        };
        // Angles near 0 and pi exercise every branch of the conversion.
        for (axis, angle) in [
            ([1.0, 0.0, 0.0], 0.0),
            ([0.3, -0.5, 0.8], 0.7),
            ([1.0, 0.1, 0.0], 3.1),
            ([0.1, 1.0, 0.2], 3.0),
            ([0.0, 0.2, 1.0], -3.1),
            ([1.0, 1.0, 1.0], 2.0),
        ] {
            for flip in [1.0, -1.0] {
                let mut m = rotation(n(axis), angle);
                for row in &mut m {
                    row[2] *= flip;
                }
                let space =
                    VoxelSpace::new(affine_of(m, [0.5, 2.0, 3.5], [-10.0, 20.5, 7.0])).unwrap();
                let q = space.quaternion();
                assert_eq!(q.qfac, flip);
                assert_eq!(q.offset, [-10.0, 20.5, 7.0]);
                let back = q.rotation();
                for (r, row) in back.iter().enumerate() {
                    for (c, v) in row.iter().enumerate() {
                        assert!(
                            (v - m[r][c]).abs() < 1e-12,
                            "{axis:?} {angle} {flip}: {back:?}"
                        );
                    }
                }
                assert_eq!(space.voxel_size(), [0.5, 2.0, 3.5]);
            }
        }
    }

    #[test]
    fn nearly_orthogonal_axes_get_the_nearest_rotation() {
        // Directions stored as float32 by a scanner are orthogonal to about 1e-7.
        let m = rotation([0.0, 0.6, 0.8], 0.4);
        let mut noisy = m;
        noisy[0][1] += 3e-7;
        noisy[2][0] -= 2e-7;
        let q = VoxelSpace::new(affine_of(noisy, [1.0; 3], [0.0; 3]))
            .unwrap()
            .quaternion();
        let back = q.rotation();
        for r in 0..3 {
            for c in 0..3 {
                assert!((back[r][c] - m[r][c]).abs() < 1e-6);
            }
            let dot: f64 = (0..3).map(|k| back[k][r] * back[k][(r + 1) % 3]).sum();
            assert!(dot.abs() < 1e-12, "columns of the qform stay orthogonal");
        }
    }

    #[test]
    fn lps_becomes_ras_and_axis_codes_name_it() {
        // Voxel axes along DICOM's L, P and S.
        let lps = VoxelSpace::from_lps(affine_of(
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            [1.0, 2.0, 3.0],
            [5.0, -6.0, 7.0],
        ))
        .unwrap();
        assert_eq!(lps.axis_codes(), "LPS");
        assert_eq!(lps.world([1.0, 1.0, 1.0]), [-6.0, 4.0, 10.0]);
        assert_eq!(VoxelSpace::scaled([1.0; 3]).unwrap().axis_codes(), "RAS");
        // A sagittal stack: i along A, j along I (rows going down), k along L.
        let sag = VoxelSpace::new(affine_of(
            [[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]],
            [1.0; 3],
            [0.0; 3],
        ))
        .unwrap();
        assert_eq!(sag.axis_codes(), "AIL");
    }

    #[test]
    fn degenerate_and_non_finite_maps_are_refused() {
        let flat = affine_of(
            [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
            [1.0; 3],
            [0.0; 3],
        );
        let err = VoxelSpace::new(flat).unwrap_err().to_string();
        assert!(err.contains("degenerate"), "{err}");
        let mut nan = affine_of(rotation([0.0, 0.0, 1.0], 0.1), [1.0; 3], [0.0; 3]);
        nan[1][3] = f64::NAN;
        assert!(VoxelSpace::new(nan).is_err());
        assert!(VoxelSpace::scaled([1.0, 0.0, 1.0]).is_err());
    }
}
