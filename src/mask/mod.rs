//! Sampling masks: Cartesian column masks for k-space (random with an ACS block, equispaced),
//! 2-D masks for k-space undersampled along both phase encodes (random entries with an ACS
//! square, uniform or of a variable density, module [`density`], drawn independently or as a
//! Poisson disc, module [`poisson`]), pixel and block masks for
//! image-domain problems, and the coverage-aware partial-mask sampler that MSM draws its
//! partial scores with (MSM.md section 4).
//!
//! A [`Mask`] is either a set of kept columns (the width axis is the phase-encode axis, as in
//! fastMRI) or a full 2-D pattern over one coil's `height x width` grid.

pub mod density;
pub mod poisson;

pub use density::{variable_density_entries, RadialDensity};
pub use poisson::poisson_disc_entries;

use crate::{Error, Result};
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt};

/// Which entries of one coil's `height x width` grid are measured.
#[derive(Clone, Debug, PartialEq)]
pub enum Mask {
    /// Whole columns (phase-encode lines); `true` = kept. Length = width.
    Columns(Vec<bool>),
    /// An arbitrary 2-D pattern, shape `(height, width)`; `true` = kept.
    Pattern(Array2<bool>),
}

impl Mask {
    /// A mask keeping every entry of a grid `width` columns wide.
    pub fn full(width: usize) -> Self {
        Mask::Columns(vec![true; width])
    }

    /// The kept columns of a column mask; `None` for a 2-D pattern.
    pub fn columns(&self) -> Option<&[bool]> {
        match self {
            Mask::Columns(c) => Some(c),
            Mask::Pattern(_) => None,
        }
    }

    /// Whether entry `(row, col)` is kept.
    #[inline]
    pub fn keeps(&self, row: usize, col: usize) -> bool {
        match self {
            Mask::Columns(c) => c[col],
            Mask::Pattern(p) => p[(row, col)],
        }
    }

    /// Number of kept entries on a grid with `height` rows.
    pub fn count(&self, height: usize) -> usize {
        match self {
            Mask::Columns(c) => c.iter().filter(|&&k| k).count() * height,
            Mask::Pattern(p) => p.iter().filter(|&&k| k).count(),
        }
    }

    /// Fraction of the grid that is kept.
    pub fn fraction(&self) -> f64 {
        match self {
            Mask::Columns(c) => c.iter().filter(|&&k| k).count() as f64 / c.len() as f64,
            Mask::Pattern(p) => p.iter().filter(|&&k| k).count() as f64 / p.len() as f64,
        }
    }

    /// Checks that the mask fits a `height x width` grid.
    pub fn check_shape(&self, height: usize, width: usize) -> Result<()> {
        match self {
            Mask::Columns(c) if c.len() != width => Err(Error::invalid(format!(
                "mask has {} columns but the k-space is {} wide",
                c.len(),
                width
            ))),
            Mask::Pattern(p) if p.dim() != (height, width) => Err(Error::invalid(format!(
                "mask pattern is {}x{} but the data is {}x{}",
                p.dim().0,
                p.dim().1,
                height,
                width
            ))),
            _ => Ok(()),
        }
    }

    /// The same mask as [`Mask::Columns`] if it is a pattern that keeps or drops whole
    /// columns; otherwise unchanged.
    pub fn simplified(self) -> Mask {
        match self {
            Mask::Pattern(p) if p.nrows() > 0 => {
                let cols: Vec<bool> = p.columns().into_iter().map(|c| c[0]).collect();
                let whole = p
                    .columns()
                    .into_iter()
                    .zip(&cols)
                    .all(|(c, &k)| c.iter().all(|&v| v == k));
                if whole {
                    Mask::Columns(cols)
                } else {
                    Mask::Pattern(p)
                }
            }
            m => m,
        }
    }

    /// The mask as a 0/1 pattern of shape `(height, width)`.
    pub fn to_pattern(&self, height: usize) -> Array2<bool> {
        match self {
            Mask::Columns(c) => Array2::from_shape_fn((height, c.len()), |(_, j)| c[j]),
            Mask::Pattern(p) => p.clone(),
        }
    }
}

/// The fully sampled centre (auto-calibration signal) of a Cartesian mask.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Acs {
    /// A number of central columns.
    Lines(usize),
    /// A fraction of the width (fastMRI's `center_fractions`), rounded to whole columns.
    Fraction(f64),
}

impl Acs {
    /// Number of ACS columns for a grid `width` columns wide.
    pub fn lines(self, width: usize) -> usize {
        match self {
            Acs::Lines(n) => n.min(width),
            Acs::Fraction(f) => ((width as f64 * f).round() as usize).min(width),
        }
    }
}

/// The range of ACS columns, placed as fastMRI does: `pad = (width - n + 1) / 2`.
pub fn acs_range(width: usize, acs: Acs) -> std::ops::Range<usize> {
    let n = acs.lines(width);
    let pad = (width - n).div_ceil(2);
    pad..pad + n
}

/// The number of consecutive kept columns around the centre column `w / 2` (0 if it is not
/// kept): the fully sampled ACS block of a fastMRI mask.
pub fn acs_lines(mask: &[bool]) -> usize {
    let c = mask.len() / 2;
    if !mask[c] {
        return 0;
    }
    let left = mask[..c].iter().rev().take_while(|&&k| k).count();
    let right = mask[c..].iter().take_while(|&&k| k).count();
    left + right
}

fn check_accel(accel: f64, width: usize, acs_lines: usize) -> Result<()> {
    if !(accel.is_finite() && accel >= 1.0) {
        return Err(Error::invalid(format!(
            "acceleration must be a finite number >= 1, got {accel}"
        )));
    }
    if acs_lines as f64 > width as f64 / accel + 1e-9 {
        return Err(Error::invalid(format!(
            "{acs_lines} ACS lines already exceed the {:.1} lines that acceleration {accel} keeps \
             of {width}",
            width as f64 / accel
        )));
    }
    Ok(())
}

/// A random Cartesian column mask with fastMRI semantics: the ACS block is always kept, every
/// other column is kept independently with the probability that makes the expected kept
/// fraction `1 / accel`.
pub fn random_cartesian<R: Rng + ?Sized>(
    width: usize,
    accel: f64,
    acs: Acs,
    rng: &mut R,
) -> Result<Vec<bool>> {
    let acs_cols = acs_range(width, acs);
    let n_acs = acs_cols.len();
    check_accel(accel, width, n_acs)?;
    let prob = if width == n_acs {
        0.0
    } else {
        (width as f64 / accel - n_acs as f64) / (width - n_acs) as f64
    };
    Ok((0..width)
        .map(|j| {
            let draw: f64 = rng.random();
            acs_cols.contains(&j) || draw < prob
        })
        .collect())
}

/// The central `side x side` block of a `height x width` grid (the ACS of a 2-D mask), placed
/// on each axis as [`acs_range`] places ACS columns: rows, then columns.
pub fn acs_square(
    height: usize,
    width: usize,
    side: usize,
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    (
        acs_range(height, Acs::Lines(side)),
        acs_range(width, Acs::Lines(side)),
    )
}

/// The side of the largest fully sampled [`acs_square`] of a 2-D pattern (0 if its centre entry
/// is not kept): the ACS block of a 2-D mask. The squares of growing side are nested, so the
/// first one with an entry missing ends the search.
pub fn acs_side(pattern: &Array2<bool>) -> usize {
    let (h, w) = pattern.dim();
    (1..=h.min(w))
        .take_while(|&side| {
            let (rows, cols) = acs_square(h, w, side);
            rows.into_iter()
                .all(|i| cols.clone().all(|j| pattern[(i, j)]))
        })
        .last()
        .unwrap_or(0)
}

/// A random 2-D mask for k-space undersampled along both axes (the `(phase encode, partition)`
/// slices of a 3-D scan): the central `acs x acs` square ([`acs_square`]) is always kept, every
/// other entry is kept independently with the probability that makes the expected kept fraction
/// `1 / accel`. The 2-D counterpart of [`random_cartesian`].
pub fn random_entries<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    accel: f64,
    acs: usize,
    rng: &mut R,
) -> Result<Array2<bool>> {
    check_accel_square(accel, height, width, acs)?;
    let (rows, cols) = acs_square(height, width, acs);
    let (n, n_acs) = (height * width, rows.len() * cols.len());
    let prob = if n == n_acs {
        0.0
    } else {
        (n as f64 / accel - n_acs as f64) / (n - n_acs) as f64
    };
    Ok(Array2::from_shape_fn((height, width), |(i, j)| {
        let draw: f64 = rng.random();
        (rows.contains(&i) && cols.contains(&j)) || draw < prob
    }))
}

/// Checks an acceleration and an ACS square of side `acs` on a `height x width` grid.
fn check_accel_square(accel: f64, height: usize, width: usize, acs: usize) -> Result<()> {
    check_accel(accel, width, 0)?;
    if acs > height.min(width) {
        return Err(Error::invalid(format!(
            "an ACS square of side {acs} does not fit a {height}x{width} grid"
        )));
    }
    let kept = (height * width) as f64 / accel;
    if (acs * acs) as f64 > kept + 1e-9 {
        return Err(Error::invalid(format!(
            "an ACS square of {acs}x{acs} already exceeds the {kept:.1} entries that \
             acceleration {accel} keeps of {height}x{width}"
        )));
    }
    Ok(())
}

/// An equispaced column mask: every `accel`-th column starting at `offset`, plus the ACS block.
/// `accel` must be a whole number >= 1.
pub fn equispaced(width: usize, accel: usize, acs: Acs, offset: usize) -> Result<Vec<bool>> {
    if accel == 0 {
        return Err(Error::invalid("acceleration must be at least 1"));
    }
    let acs_cols = acs_range(width, acs);
    Ok((0..width)
        .map(|j| acs_cols.contains(&j) || (j + accel - offset % accel).is_multiple_of(accel))
        .collect())
}

/// A random pixel mask for image-domain problems: each pixel kept with probability `1 / accel`.
pub fn random_pixels<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    accel: f64,
    rng: &mut R,
) -> Result<Array2<bool>> {
    check_accel(accel, width, 0)?;
    let p = 1.0 / accel;
    Ok(Array2::from_shape_simple_fn((height, width), || {
        rng.random::<f64>() < p
    }))
}

/// A random block mask for image-domain problems: the grid is cut into `block x block` tiles and
/// each tile is kept with probability `1 / accel`.
pub fn random_blocks<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    block: usize,
    accel: f64,
    rng: &mut R,
) -> Result<Array2<bool>> {
    check_accel(accel, width, 0)?;
    if block == 0 {
        return Err(Error::invalid("block size must be at least 1"));
    }
    let (bh, bw) = (height.div_ceil(block), width.div_ceil(block));
    let p = 1.0 / accel;
    let tiles = Array2::from_shape_simple_fn((bh, bw), || rng.random::<f64>() < p);
    Ok(Array2::from_shape_fn((height, width), |(i, j)| {
        tiles[(i / block, j / block)]
    }))
}

/// What a partial mask is made of: the units the coverage-aware sampler tiles.
#[derive(Clone, Debug, PartialEq)]
pub enum PartialKind {
    /// Column masks for k-space: an ACS block that every partial mask keeps, plus random
    /// columns, `1 / accel` of the width in all (the training mask distribution).
    Columns {
        /// Width of k-space.
        width: usize,
        /// Acceleration of each partial mask.
        accel: f64,
        /// ACS block kept by every partial mask.
        acs: Acs,
    },
    /// 2-D masks for k-space undersampled along both axes: an ACS square that every partial
    /// mask keeps, plus random entries, `1 / accel` of the grid in all (the distribution of
    /// [`random_entries`]).
    Entries {
        /// Height of k-space.
        height: usize,
        /// Width of k-space.
        width: usize,
        /// Acceleration of each partial mask.
        accel: f64,
        /// Side of the ACS square kept by every partial mask.
        acs: usize,
    },
    /// Block masks for images: `block x block` tiles, `1 / accel` of them per mask.
    Blocks {
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Tile size (1 = pixels).
        block: usize,
        /// Acceleration of each partial mask.
        accel: f64,
    },
}

/// Coverage-aware partial-mask sampler (MSM.md section 4).
///
/// Every mask keeps the same number of units as a training mask. The free units of each mask
/// are drawn uniformly among those not yet covered since the last full coverage; when fewer
/// remain than a mask needs, all of them are taken, coverage restarts, and the rest of the mask
/// is drawn from the fresh pool. Successive masks therefore tile all units: with `n` free units
/// and `m` free units per mask, a coverage cycle spans at most `B = 1 + ceil((n - 1) / m)`
/// draws and covers every unit, so any `2B - 1` consecutive draws cover every unit
/// (for 128 columns at R = 4 with 20 ACS lines: n = 108, m = 12, B = 10, window 19; i.i.d.
/// masks need about 40 draws on average).
#[derive(Clone, Debug)]
pub struct CoverageSampler {
    kind: PartialKind,
    fixed: Vec<usize>,
    free: Vec<usize>,
    per_mask: usize,
    uncovered: Vec<usize>,
}

impl CoverageSampler {
    /// A sampler for the given kind of partial mask.
    pub fn new(kind: PartialKind) -> Result<Self> {
        let (units, fixed, per_mask_total) = match &kind {
            PartialKind::Columns { width, accel, acs } => {
                let r = acs_range(*width, *acs);
                check_accel(*accel, *width, r.len())?;
                let total = ((*width as f64 / accel).round() as usize).max(r.len());
                (*width, r.collect::<Vec<_>>(), total)
            }
            PartialKind::Entries {
                height,
                width,
                accel,
                acs,
            } => {
                check_accel_square(*accel, *height, *width, *acs)?;
                let (rows, cols) = acs_square(*height, *width, *acs);
                let fixed: Vec<usize> = rows
                    .flat_map(|i| cols.clone().map(move |j| i * width + j))
                    .collect();
                let n = height * width;
                let total = ((n as f64 / accel).round() as usize).max(fixed.len());
                (n, fixed, total)
            }
            PartialKind::Blocks {
                height,
                width,
                block,
                accel,
            } => {
                check_accel(*accel, *width, 0)?;
                if *block == 0 {
                    return Err(Error::invalid("block size must be at least 1"));
                }
                let n = height.div_ceil(*block) * width.div_ceil(*block);
                (n, vec![], ((n as f64 / accel).round() as usize).max(1))
            }
        };
        let mut is_fixed = vec![false; units];
        for &u in &fixed {
            is_fixed[u] = true;
        }
        let free: Vec<usize> = (0..units).filter(|&u| !is_fixed[u]).collect();
        let per_mask = per_mask_total - fixed.len();
        if per_mask == 0 && !free.is_empty() {
            return Err(Error::invalid(
                "partial masks would keep only the ACS block; lower the acceleration",
            ));
        }
        Ok(CoverageSampler {
            kind,
            uncovered: free.clone(),
            fixed,
            free,
            per_mask,
        })
    }

    /// The kind of partial mask this sampler draws.
    pub fn kind(&self) -> &PartialKind {
        &self.kind
    }

    /// Number of consecutive draws that always cover every unit: `2B - 1` with
    /// `B = 1 + ceil((n - 1) / m)` the longest coverage cycle, `n` free units and `m` free units
    /// per mask (1 when nothing is free).
    pub fn coverage_bound(&self) -> usize {
        if self.free.is_empty() {
            1
        } else {
            let cycle = 1 + (self.free.len() - 1).div_ceil(self.per_mask);
            2 * cycle - 1
        }
    }

    /// Draws the next partial mask.
    pub fn next_mask<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Mask {
        let mut chosen = self.fixed.clone();
        let mut need = self.per_mask.min(self.free.len());
        while need > 0 {
            if self.uncovered.is_empty() {
                // Restart coverage with every free unit not already in this mask (a membership
                // table: 2-D masks have thousands of units).
                let mut in_mask = vec![false; self.fixed.len() + self.free.len()];
                for &u in &chosen {
                    in_mask[u] = true;
                }
                self.uncovered = self.free.iter().copied().filter(|&u| !in_mask[u]).collect();
            }
            self.uncovered.shuffle(rng);
            let take = need.min(self.uncovered.len());
            let split = self.uncovered.len() - take;
            chosen.extend(self.uncovered.drain(split..));
            need -= take;
        }
        self.units_to_mask(&chosen)
    }

    fn units_to_mask(&self, units: &[usize]) -> Mask {
        match &self.kind {
            PartialKind::Columns { width, .. } => {
                let mut cols = vec![false; *width];
                for &u in units {
                    cols[u] = true;
                }
                Mask::Columns(cols)
            }
            PartialKind::Entries { height, width, .. } => {
                let mut p = Array2::from_elem((*height, *width), false);
                for &u in units {
                    p[(u / width, u % width)] = true;
                }
                Mask::Pattern(p)
            }
            PartialKind::Blocks {
                height,
                width,
                block,
                ..
            } => {
                let bw = width.div_ceil(*block);
                let mut p = Array2::from_elem((*height, *width), false);
                for &u in units {
                    let (bi, bj) = (u / bw, u % bw);
                    for i in bi * block..((bi + 1) * block).min(*height) {
                        for j in bj * block..((bj + 1) * block).min(*width) {
                            p[(i, j)] = true;
                        }
                    }
                }
                Mask::Pattern(p)
            }
        }
    }
}
