//! The calibration region: the fully sampled block around the k-space centre that coil
//! sensitivity estimation learns from.
//!
//! The region is found as BART's `ecalib` finds it (`calib_geom` in BART's `misc/mri.c`): a block
//! centred at `((height - h) / 2, (width - w) / 2)` grows one row or column at a time,
//! alternating between the two axes, while it stays fully sampled and no side exceeds the
//! requested size; then the block is moved along the readout (height) axis to the position of
//! largest k-space energy among the fully sampled positions. "Sampled" means kept by the mask
//! when one is given, otherwise non-zero in at least one coil.

use crate::mask::Mask;
use crate::{Error, Result, C32};
use ndarray::ArrayView3;
use std::ops::Range;

/// A rectangular block of k-space rows and columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalRegion {
    /// Rows (height axis, readout).
    pub rows: Range<usize>,
    /// Columns (width axis, phase encode).
    pub cols: Range<usize>,
}

impl CalRegion {
    /// Number of rows.
    pub fn height(&self) -> usize {
        self.rows.len()
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.cols.len()
    }
}

/// Checks multi-coil k-space (and its mask) for coil maps estimation: at least one coil, a
/// non-empty grid, a mask of the same grid, finite values.
pub(crate) fn check_kspace(kspace: ArrayView3<C32>, mask: Option<&Mask>) -> Result<()> {
    let (nc, h, w) = kspace.dim();
    if nc == 0 {
        return Err(Error::invalid(format!(
            "coil maps estimation needs k-space of shape (coils >= 1, height, width), got zero \
             coils (shape ({nc}, {h}, {w}))"
        )));
    }
    if h == 0 || w == 0 {
        return Err(Error::invalid(format!(
            "coil maps estimation needs a non-empty k-space grid, got shape ({nc}, {h}, {w})"
        )));
    }
    if let Some(m) = mask {
        m.check_shape(h, w)?;
    }
    if let Some(((c, y, x), v)) = kspace
        .indexed_iter()
        .find(|(_, v)| !(v.re.is_finite() && v.im.is_finite()))
    {
        return Err(Error::invalid(format!(
            "k-space contains a non-finite value ({v}) at coil {c}, row {y}, column {x}; coil \
             maps estimation needs finite data"
        )));
    }
    Ok(())
}

/// Finds the calibration region of `kspace` `(coils, height, width)`: the largest centred fully
/// sampled block with sides at most `max_size` (BART's `-r`), grown and placed as the module
/// documentation describes. `mask` (if given) says what was sampled; without one, entries that
/// are zero in every coil count as not sampled.
///
/// Errors: zero coils, an empty grid, a mask of another grid, non-finite values, `max_size = 0`,
/// and a k-space centre that is not sampled at all.
pub fn calibration_region(
    kspace: ArrayView3<C32>,
    mask: Option<&Mask>,
    max_size: usize,
) -> Result<CalRegion> {
    check_kspace(kspace, mask)?;
    if max_size == 0 {
        return Err(Error::invalid(
            "the calibration region size must be at least 1",
        ));
    }
    let (_, h, w) = kspace.dim();
    let sampled = |y: usize, x: usize| match mask {
        Some(m) => m.keeps(y, x),
        None => kspace
            .outer_iter()
            .any(|coil| coil[(y, x)] != C32::new(0.0, 0.0)),
    };
    let full = |r0: usize, rh: usize, c0: usize, cw: usize| {
        (r0..r0 + rh).all(|y| (c0..c0 + cw).all(|x| sampled(y, x)))
    };
    let dims = [h, w];
    let mut size = [1usize, 1];
    let pos = |size: [usize; 2], i: usize| (dims[i] - size[i]) / 2;
    if !full(pos(size, 0), 1, pos(size, 1), 1) {
        return Err(Error::invalid(format!(
            "the k-space centre (row {}, column {}) is not sampled: coil maps estimation needs a \
             fully sampled calibration region around the centre",
            pos(size, 0),
            pos(size, 1)
        )));
    }
    let mut stop = [false, false];
    while !(stop[0] && stop[1]) {
        for i in 0..2 {
            if size[i] == dims[i] || size[i] >= max_size {
                stop[i] = true;
            }
            if stop[i] {
                continue;
            }
            size[i] += 1;
            if !full(pos(size, 0), size[0], pos(size, 1), size[1]) {
                size[i] -= 1;
                stop[i] = true;
            }
        }
    }
    let c0 = pos(size, 1);
    // Move along the readout to the fully sampled position of largest energy (first maximum).
    let mut best = (pos(size, 0), -1.0f64);
    for r0 in 0..=h - size[0] {
        if !full(r0, size[0], c0, size[1]) {
            continue;
        }
        let energy: f64 = kspace
            .outer_iter()
            .map(|coil| {
                (r0..r0 + size[0])
                    .flat_map(|y| (c0..c0 + size[1]).map(move |x| (y, x)))
                    .map(|(y, x)| coil[(y, x)].norm_sqr() as f64)
                    .sum::<f64>()
            })
            .sum();
        if energy > best.1 {
            best = (r0, energy);
        }
    }
    Ok(CalRegion {
        rows: best.0..best.0 + size[0],
        cols: c0..c0 + size[1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn ones_where(cols: &[bool], h: usize) -> Array3<C32> {
        Array3::from_shape_fn((2, h, cols.len()), |(_, _, x)| {
            if cols[x] {
                C32::new(1.0, 0.0)
            } else {
                C32::new(0.0, 0.0)
            }
        })
    }

    #[test]
    fn grows_to_the_fully_sampled_columns_and_the_size_limit() {
        // 32 columns, columns 12..20 (8, centred: (32 - 8) / 2 = 12) plus every 4th sampled.
        let cols: Vec<bool> = (0..32)
            .map(|x| (12..20).contains(&x) || x % 4 == 0)
            .collect();
        let k = ones_where(&cols, 40);
        let r = calibration_region(k.view(), None, 24).unwrap();
        // Size 9 would sit at (32 - 9) / 2 = 11..20, which holds the unsampled column 11.
        assert_eq!(r.cols, 12..20);
        assert_eq!(r.height(), 24);
        // Equal energy everywhere: the first fully sampled position wins.
        assert_eq!(r.rows, 0..24);
        let m = Mask::Columns(cols.clone());
        let r2 = calibration_region(k.view(), Some(&m), 6).unwrap();
        assert_eq!((r2.height(), r2.width()), (6, 6));
        assert_eq!(r2.cols, 13..19);
    }

    #[test]
    fn readout_position_follows_the_energy() {
        let cols = vec![true; 16];
        let mut k = ones_where(&cols, 40);
        for x in 0..16 {
            k[(0, 30, x)] = C32::new(100.0, 0.0);
        }
        let r = calibration_region(k.view(), None, 8).unwrap();
        assert!(r.rows.contains(&30), "{r:?}");
        assert_eq!(r.rows.start, 23);
    }

    #[test]
    fn unsampled_centre_and_bad_input_are_errors() {
        let cols: Vec<bool> = (0..16).map(|x| !(7..=8).contains(&x)).collect();
        let k = ones_where(&cols, 16);
        let e = calibration_region(k.view(), None, 24)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not sampled"), "{e}");
        let k0 = Array3::<C32>::zeros((0, 8, 8));
        let e = calibration_region(k0.view(), None, 24)
            .unwrap_err()
            .to_string();
        assert!(e.contains("zero coils"), "{e}");
        let mut kn = ones_where(&[true; 8], 8);
        kn[(1, 2, 3)] = C32::new(f32::NAN, 0.0);
        let e = calibration_region(kn.view(), None, 24)
            .unwrap_err()
            .to_string();
        assert!(e.contains("coil 1, row 2, column 3"), "{e}");
        let e = calibration_region(ones_where(&[true; 8], 8).view(), Some(&Mask::full(9)), 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("9 columns"), "{e}");
    }
}
