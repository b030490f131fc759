//! How the masks of a set of scans cover k-space. MSM learns the image from measurements whose
//! masks vary between examples: an entry that no training mask measured gets no loss, so the
//! model learns nothing of it, and the runtime's partial masks, which tile the whole grid,
//! still ask the network for it. Scans that share one pattern (a 3-D protocol's fixed `ky-kz`
//! pattern, a fastMRI file's one mask for all its slices) leave the same entries out of every
//! example.

use std::collections::HashSet;
use std::fmt;

use msm::mask::Mask;

/// The union of the training masks on the model's grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskCoverage {
    /// Training slices.
    pub slices: usize,
    /// Distinct masks among them.
    pub distinct: usize,
    /// Entries of the grid.
    pub entries: usize,
    /// Entries that no slice measured.
    pub unmeasured: usize,
}

impl MaskCoverage {
    /// The coverage of `masks` (each already checked to fit the grid) on a `height x width`
    /// grid. Distinct masks are told apart by their entries, packed 64 to a word (2 KiB a
    /// mask at 128 x 128).
    pub fn of<'a>(
        masks: impl IntoIterator<Item = &'a Mask>,
        (height, width): (usize, usize),
    ) -> Self {
        let mut seen = vec![false; height * width];
        let mut distinct = HashSet::new();
        let mut slices = 0;
        for m in masks {
            slices += 1;
            let mut bits = vec![0u64; (height * width).div_ceil(64)];
            for (i, _) in m.to_pattern(height).iter().enumerate().filter(|(_, &k)| k) {
                seen[i] = true;
                bits[i / 64] |= 1 << (i % 64);
            }
            distinct.insert(bits);
        }
        MaskCoverage {
            slices,
            distinct: distinct.len(),
            entries: height * width,
            unmeasured: seen.iter().filter(|&&s| !s).count(),
        }
    }

    /// The fraction of the grid measured by at least one slice.
    pub fn measured_fraction(&self) -> f64 {
        1.0 - self.unmeasured as f64 / self.entries as f64
    }

    /// A warning when some entries are measured by no slice, saying what that costs.
    pub fn warning(&self) -> Option<String> {
        (self.unmeasured > 0).then(|| {
            format!(
                "{} of the grid's {} k-space entries ({:.1}%) are measured in no training slice: \
                 the model learns nothing of them, yet the runtime's partial masks ask it for every \
                 entry. MSM learns from masks that vary between examples; add scans acquired with \
                 other masks (scans sharing one pattern, as a protocol's fixed ky-kz pattern or a \
                 fastMRI file's one mask, leave the same entries out of each)",
                self.unmeasured,
                self.entries,
                100.0 * self.unmeasured as f64 / self.entries as f64
            )
        })
    }
}

impl fmt::Display for MaskCoverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} slice(s), {} distinct mask(s); together they measure {:.1}% of the grid's k-space",
            self.slices,
            self.distinct,
            100.0 * self.measured_fraction()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn counts_the_entries_no_mask_measured_and_the_distinct_masks() {
        // Columns {0, 1} twice and {1, 2} once on a 3 x 4 grid: column 3 is never measured.
        let a = Mask::Columns(vec![true, true, false, false]);
        let b = Mask::Columns(vec![false, true, true, false]);
        let c = MaskCoverage::of([&a, &b, &a], (3, 4));
        assert_eq!(
            c,
            MaskCoverage {
                slices: 3,
                distinct: 2,
                entries: 12,
                unmeasured: 3
            }
        );
        assert!((c.measured_fraction() - 0.75).abs() < 1e-12);
        let w = c.warning().expect("column 3 is unmeasured");
        assert!(
            w.starts_with("3 of the grid's 12 k-space entries (25.0%)"),
            "{w}"
        );
        // A 2-D pattern equal to mask `a` is the same mask; one measuring column 3's top entry
        // leaves two entries unmeasured.
        let same = Mask::Pattern(a.to_pattern(3));
        let mut p = Array2::from_elem((3, 4), false);
        p[(0, 3)] = true;
        let top = Mask::Pattern(p);
        let c = MaskCoverage::of([&a, &b, &same, &top], (3, 4));
        assert_eq!((c.distinct, c.unmeasured), (3, 2));
        // Full coverage: no warning.
        let full = Mask::full(4);
        let c = MaskCoverage::of([&full], (3, 4));
        assert_eq!(c.unmeasured, 0);
        assert!(c.warning().is_none());
        assert_eq!(
            c.to_string(),
            "1 slice(s), 1 distinct mask(s); together they measure 100.0% of the grid's k-space"
        );
    }
}
