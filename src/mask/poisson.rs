//! Variable-density Poisson-disc 2-D masks: the sampling of compressed-sensing 3-D protocols
//! (BART's `poisson`, the vendors' CS sequences; Lustig et al. 2007, Vasanawala et al. 2011).
//!
//! A Poisson-disc mask keeps no two entries closer than a local radius, and leaves no gap
//! wider: every entry it drops has a kept one within its radius. With about the density of the
//! independent draws of [`super::variable_density_entries`], it has neither their clusters nor
//! their holes, so its aliasing is spread more evenly.
//!
//! Each entry has a position, a uniformly random point of its grid cell (the cell's centre in
//! the ACS square), and is visited once, in a seeded random order, the ACS square counted as
//! kept from the start: it is kept when no kept entry's position lies closer to its own than
//! its radius (random sequential adsorption). The radius of entry `p` is the one at which this
//! adsorption, run with one radius everywhere, keeps the fraction `min(1, c w(r_p))` of a grid
//! ([`JAMMING`], measured): `w` the [`RadialDensity`] interpolated linearly between its bin
//! centres, `r_p` the entry's [`normalised_radius`], and `c` found by bisection so that the mask
//! keeps `height * width / accel` entries. So each region keeps about the fraction the
//! independent draws keep there (their probability is `min(1, c w)` too), in a pattern whose
//! entries keep their distance.

use super::density::normalised_radius;
use super::{acs_square, check_accel_square, RadialDensity};
use crate::{Error, Result};
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt};

/// Side, in grid steps, of the cells the kept entries are bucketed in for the distance test.
const CELL: usize = 4;

/// Bisection steps for the density scale `c` (each halves the logarithm of a bracket that
/// spans at most about 330 decades, the range of `f64`; 64 narrow it to a ratio of 1 + 1e-16).
const SCALE_STEPS: usize = 64;

/// The bottom of the bracket for the density scale `c`: the largest weight is 1, so every
/// radius is at least that of the fraction 1e-9, several hundred grid steps.
const LOWEST_SCALE: f64 = 1e-9;

/// The fraction of a grid that the adsorption keeps with one radius everywhere, `(radius,
/// fraction)`, radius in grid steps: measured on 240 x 240 grids, over their central 120 x 120
/// entries, 6 draws a radius (`tests::the_jamming_table_is_the_adsorptions` measures it again).
/// Beyond the last radius the fraction falls as 1 / radius^2 (the product at 8 to 12 steps was
/// 0.653 to 0.670; random sequential adsorption of discs in the plane jams at about 0.70).
const JAMMING: [(f64, f64); 20] = [
    (0.0, 1.0),
    (0.25, 0.9795),
    (0.5, 0.8621),
    (0.75, 0.6445),
    (1.0, 0.4449),
    (1.25, 0.3131),
    (1.5, 0.2313),
    (1.75, 0.1767),
    (2.0, 0.1394),
    (2.25, 0.1125),
    (2.5, 0.0934),
    (2.75, 0.0782),
    (3.0, 0.0663),
    (3.25, 0.0574),
    (3.5, 0.0497),
    (3.75, 0.0437),
    (4.0, 0.0386),
    (5.0, 0.0258),
    (6.0, 0.0181),
    (8.0, 0.0102),
];

/// A variable-density Poisson-disc mask for k-space undersampled along both axes: the central
/// `acs x acs` square is always kept, and `height * width / accel` entries in all (within the
/// few that one step of the density scale moves). The Poisson-disc counterpart of
/// [`super::variable_density_entries`]; a flat density gives a uniform Poisson-disc mask.
pub fn poisson_disc_entries<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    accel: f64,
    acs: usize,
    density: &RadialDensity,
    rng: &mut R,
) -> Result<Array2<bool>> {
    Ok(draw(height, width, accel, acs, density, rng)?.mask)
}

/// A drawn mask, with (for the tests) the radii and the positions it was drawn with.
struct Drawn {
    mask: Array2<bool>,
    /// Each entry's radius, in grid steps.
    #[cfg(test)]
    radius: Array2<f64>,
    /// Each entry's position: a uniformly random point of its grid cell (the cell's centre in
    /// the ACS square).
    #[cfg(test)]
    position: Array2<[f64; 2]>,
}

/// [`poisson_disc_entries`], with what the mask was drawn with.
fn draw<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    accel: f64,
    acs: usize,
    density: &RadialDensity,
    rng: &mut R,
) -> Result<Drawn> {
    check_accel_square(accel, height, width, acs)?;
    let target = ((height * width) as f64 / accel).round() as usize;
    let (rows, cols) = acs_square(height, width, acs);
    let acs_mask = Array2::from_shape_fn((height, width), |(i, j)| {
        rows.contains(&i) && cols.contains(&j)
    });
    let position = Array2::from_shape_fn((height, width), |(i, j)| {
        let jitter: [f64; 2] = [rng.random(), rng.random()];
        if acs_mask[(i, j)] {
            [i as f64, j as f64]
        } else {
            [i as f64 + jitter[0] - 0.5, j as f64 + jitter[1] - 0.5]
        }
    });
    let mut order: Vec<(usize, usize)> = (0..height)
        .flat_map(|i| (0..width).map(move |j| (i, j)))
        .filter(|&p| !acs_mask[p])
        .collect();
    order.shuffle(rng);
    let w = interpolated(height, width, density);
    let drawable = order.iter().filter(|&&p| w[p] > 0.0).count() + (height * width - order.len());
    if drawable < target {
        return Err(Error::invalid(format!(
            "the sampling density is 0 on too much of the {height}x{width} grid: {drawable} \
             entries can be kept, a mask needs {target}"
        )));
    }
    let radii = |c: f64| w.mapv(|w| radius_for((c * w).min(1.0)));
    // The count grows with c: from a few entries beside the ACS square at `LOWEST_SCALE`
    // (radii of hundreds of steps) to every entry of weight > 0 once the smallest such weight
    // reaches 1. The bracket can span many decades (interpolation next to a bin of weight 0
    // gives weights down to rounding error), so it is halved geometrically.
    let smallest = w.iter().copied().filter(|&w| w > 0.0).fold(1.0, f64::min);
    let (mut lo, mut hi) = (LOWEST_SCALE, (1.0 / smallest).max(LOWEST_SCALE));
    // The closest mask so far: its distance from the target count, the mask, its radii.
    let mut best: Option<(usize, Array2<bool>, Array2<f64>)> = None;
    for _ in 0..SCALE_STEPS {
        let mid = (lo * hi).sqrt();
        let radius = radii(mid);
        let mask = adsorb(&order, &radius, &position, &acs_mask);
        let n = kept(&mask);
        if best.as_ref().is_none_or(|b| n.abs_diff(target) < b.0) {
            best = Some((n.abs_diff(target), mask, radius));
        }
        if n < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (_, mask, _radius) = best.expect("at least one bisection step");
    Ok(Drawn {
        mask,
        #[cfg(test)]
        radius: _radius,
        #[cfg(test)]
        position,
    })
}

/// The number of kept entries.
fn kept(mask: &Array2<bool>) -> usize {
    mask.iter().filter(|&&k| k).count()
}

/// The density at each entry of a `height x width` grid: the bin weights interpolated
/// linearly between bin centres in the entry's normalised radius, held flat beyond the first
/// and the last centre.
fn interpolated(height: usize, width: usize, density: &RadialDensity) -> Array2<f64> {
    let w = density.weights();
    let n = w.len() as f64;
    Array2::from_shape_fn((height, width), |(i, j)| {
        // Position in units of bins, measured from the first bin's centre.
        let x = (normalised_radius(i, j, height, width) * n - 0.5).clamp(0.0, n - 1.0);
        let b = (x as usize).min(w.len() - 1);
        let next = (b + 1).min(w.len() - 1);
        let t = x - b as f64;
        w[b] * (1.0 - t) + w[next] * t
    })
}

/// The radius at which the adsorption keeps the fraction `fraction` (in `[0, 1]`) of a grid:
/// [`JAMMING`] inverted, linearly between its points, and as `1 / radius^2` beyond; 0 for
/// a fraction of 1 (every entry kept), infinite for 0 (none).
fn radius_for(fraction: f64) -> f64 {
    if fraction >= 1.0 {
        return 0.0;
    }
    let (r_last, f_last) = JAMMING[JAMMING.len() - 1];
    if fraction <= f_last {
        return if fraction > 0.0 {
            r_last * (f_last / fraction).sqrt()
        } else {
            f64::INFINITY
        };
    }
    let k = JAMMING
        .windows(2)
        .position(|p| fraction > p[1].1)
        .expect("the table's last fraction is below this one");
    let ((r0, f0), (r1, f1)) = (JAMMING[k], JAMMING[k + 1]);
    r0 + (r1 - r0) * (f0 - fraction) / (f0 - f1)
}

/// Random sequential adsorption: the entries of `kept_first` (the ACS square) are kept, then
/// each entry of `order` is kept when no kept entry's position lies closer to its position than
/// its radius (`radius[p]`, in grid steps).
fn adsorb(
    order: &[(usize, usize)],
    radius: &Array2<f64>,
    position: &Array2<[f64; 2]>,
    kept_first: &Array2<bool>,
) -> Array2<bool> {
    let (h, w) = radius.dim();
    let mut mask = kept_first.clone();
    // Kept entries bucketed by CELL x CELL cells, for a search that grows with the radius only.
    let (ch, cw) = (h.div_ceil(CELL), w.div_ceil(CELL));
    let mut cells: Vec<Vec<[f64; 2]>> = vec![Vec::new(); ch * cw];
    for ((i, j), &k) in mask.indexed_iter() {
        if k {
            cells[(i / CELL) * cw + j / CELL].push(position[(i, j)]);
        }
    }
    for &(i, j) in order {
        let (r, [y, x]) = (radius[(i, j)], position[(i, j)]);
        // Positions are within half a step of their entries: entries more than `r + 1` steps
        // away on either axis are out of reach.
        let reach = (r.min((h + w) as f64) + 1.0).ceil() as usize;
        let (ci0, ci1) = (
            i.saturating_sub(reach) / CELL,
            ((i + reach) / CELL).min(ch - 1),
        );
        let (cj0, cj1) = (
            j.saturating_sub(reach) / CELL,
            ((j + reach) / CELL).min(cw - 1),
        );
        let r2 = r * r;
        let blocked = (ci0..=ci1).any(|ci| {
            (cj0..=cj1).any(|cj| {
                cells[ci * cw + cj]
                    .iter()
                    .any(|&[a, b]| (a - y) * (a - y) + (b - x) * (b - x) < r2)
            })
        });
        if !blocked {
            mask[(i, j)] = true;
            cells[(i / CELL) * cw + j / CELL].push([y, x]);
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::super::density::per_bin;
    use super::super::variable_density_entries;
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// The kept entries of a mask, and whether each is in the ACS square.
    fn kept_entries(mask: &Array2<bool>, acs: usize) -> Vec<((usize, usize), bool)> {
        let (h, w) = mask.dim();
        let (rows, cols) = acs_square(h, w, acs);
        mask.indexed_iter()
            .filter(|(_, &k)| k)
            .map(|((i, j), _)| ((i, j), rows.contains(&i) && cols.contains(&j)))
            .collect()
    }

    /// Between two bin centres the density is their linear interpolation, flat beyond them.
    #[test]
    fn the_density_is_interpolated_between_bin_centres() {
        let d: RadialDensity = "1,0.25".parse().unwrap();
        // A 1 x n grid: entry j at normalised radius |j - n/2| / (n/2) / sqrt(2).
        let n = 4000;
        let w = interpolated(1, n, &d);
        for j in (n / 2..n).step_by(97) {
            let r = normalised_radius(0, j, 1, n);
            let want = if r <= 0.25 {
                1.0
            } else if r >= 0.75 {
                0.25
            } else {
                1.0 - (r - 0.25) / 0.5 * 0.75
            };
            assert!(
                (w[(0, j)] - want).abs() < 1e-12,
                "r {r}: {} vs {want}",
                w[(0, j)]
            );
        }
    }

    /// `radius_for` inverts the table: at its points, between them (monotone), and beyond.
    #[test]
    fn radius_for_inverts_the_jamming_table() {
        for &(r, f) in &JAMMING[1..] {
            assert!(
                (radius_for(f) - r).abs() < 1e-9,
                "{f}: {} vs {r}",
                radius_for(f)
            );
        }
        assert_eq!(radius_for(1.0), 0.0);
        assert_eq!(radius_for(0.0), f64::INFINITY);
        let fractions: Vec<f64> = (1..1000).map(|k| k as f64 / 1000.0).collect();
        let radii: Vec<f64> = fractions.iter().map(|&f| radius_for(f)).collect();
        assert!(radii.windows(2).all(|p| p[1] < p[0]), "not decreasing");
        let (r, f) = JAMMING[JAMMING.len() - 1];
        assert!((radius_for(f / 4.0) - 2.0 * r).abs() < 1e-9);
    }

    /// The table is what the adsorption does: measured again with other seeds, at one radius
    /// everywhere on 200 x 200 grids (central 100 x 100), each point within 2%, or within two
    /// standard errors of a Poisson count of the kept entries where that is wider (the
    /// adsorption's counts vary less than a Poisson count; at the table's last radius 4 draws
    /// keep about 400 entries, a 5% standard error).
    #[test]
    fn the_jamming_table_is_the_adsorptions() {
        let n = 200;
        let mut rng = ChaCha8Rng::seed_from_u64(2024);
        for &(r, f) in &JAMMING[1..] {
            let draws = 4;
            let mut sum = 0.0;
            for _ in 0..draws {
                let position = Array2::from_shape_fn((n, n), |(i, j)| {
                    let [u, v]: [f64; 2] = [rng.random(), rng.random()];
                    [i as f64 + u - 0.5, j as f64 + v - 0.5]
                });
                let mut order: Vec<(usize, usize)> =
                    (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).collect();
                order.shuffle(&mut rng);
                let none = Array2::from_elem((n, n), false);
                let m = adsorb(&order, &Array2::from_elem((n, n), r), &position, &none);
                let inner = m.slice(ndarray::s![50..150, 50..150]);
                sum += inner.iter().filter(|&&k| k).count() as f64 / 10000.0;
            }
            let measured = sum / draws as f64;
            let tolerance = (2.0 / (f * 10000.0 * draws as f64).sqrt()).max(0.02);
            assert!(
                (measured / f - 1.0).abs() < tolerance,
                "radius {r}: table {f}, measured {measured:.4}"
            );
        }
    }

    /// The defining properties, checked by brute force over all pairs with the radii and
    /// positions the mask was drawn with: no two kept entries are closer than the smaller of their radii (an entry
    /// and the ACS square: than the entry's radius), and every dropped entry has a kept one
    /// closer than its radius (the mask is maximal). Independent draws of the same density
    /// break the first property; the mask keeps the ACS square and 1/R of the grid.
    #[test]
    fn kept_entries_keep_their_distance_and_leave_no_gap() {
        let (h, w, acs, accel) = (48, 40, 8, 4.0);
        let d = RadialDensity::simulated();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let Drawn {
            mask,
            radius,
            position,
        } = draw(h, w, accel, acs, &d, &mut rng).unwrap();
        let dist = |a: (usize, usize), b: (usize, usize)| {
            let ([ay, ax], [by, bx]) = (position[a], position[b]);
            ((ay - by).powi(2) + (ax - bx).powi(2)).sqrt()
        };
        let kept = kept_entries(&mask, acs);
        assert_eq!(kept.iter().filter(|(_, a)| *a).count(), acs * acs);
        let target = (h * w) as f64 / accel;
        assert!(
            (kept.len() as f64 - target).abs() <= 0.01 * target,
            "{} kept, {target} wanted",
            kept.len()
        );
        let too_close = |kept: &[((usize, usize), bool)]| {
            let mut n = 0;
            for (x, &(p, p_acs)) in kept.iter().enumerate() {
                for &(q, q_acs) in &kept[x + 1..] {
                    let limit = match (p_acs, q_acs) {
                        (true, true) => continue,
                        (false, true) => radius[p],
                        (true, false) => radius[q],
                        (false, false) => radius[p].min(radius[q]),
                    };
                    n += usize::from(dist(p, q) < limit - 1e-9);
                }
            }
            n
        };
        assert_eq!(too_close(&kept), 0, "kept pairs closer than their radius");
        for ((i, j), &k) in mask.indexed_iter() {
            if !k {
                let nearest = kept
                    .iter()
                    .map(|&(q, _)| dist((i, j), q))
                    .fold(f64::INFINITY, f64::min);
                assert!(
                    nearest < radius[(i, j)],
                    "({i}, {j}) dropped with its nearest kept entry {nearest} away, radius {}",
                    radius[(i, j)]
                );
            }
        }
        let bern = variable_density_entries(h, w, accel, acs, &d, &mut rng).unwrap();
        assert!(too_close(&kept_entries(&bern, acs)) > 0);
    }

    /// Over many masks each radius bin keeps about the fraction the independent draws of the
    /// same density keep (their inclusion probability): the same density, without the clusters.
    #[test]
    fn masks_keep_the_density_of_the_independent_draws() {
        let (n, accel, acs) = (64, 4.0, 8);
        let d = RadialDensity::simulated();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let masks: Vec<Array2<bool>> = (0..40)
            .map(|_| poisson_disc_entries(n, n, accel, acs, &d, &mut rng).unwrap())
            .collect();
        let count = n * n / 4 - acs * acs;
        let pi = d.inclusion(n, n, acs, count).unwrap();
        let freq = Array2::from_shape_fn((n, n), |(i, j)| {
            masks.iter().filter(|m| m[(i, j)]).count() as f64 / masks.len() as f64
        });
        let bins = per_bin(&freq, acs);
        let want = per_bin(&pi, acs);
        for (b, (f, p)) in bins.iter().zip(&want).enumerate() {
            // Where the radius reaches the grid's edge (the outer bins), entries there have
            // fewer neighbours to block them and are kept a little more often.
            assert!(
                (f - p).abs() < 0.015 && (*p < 0.1 || (f / p - 1.0).abs() < 0.1),
                "bin {b}: kept {f:.4}, independent draws' probability {p:.4}"
            );
        }
    }

    /// A density with a bin of weight 0 (as measured from a `bart poisson` mask, whose corners
    /// are empty) still gives the count asked for: next to that bin the interpolated weights
    /// fall to rounding error, and the scale's bracket spans many decades.
    #[test]
    fn a_density_with_an_empty_bin_gives_the_count() {
        let d: RadialDensity = "1,1,0.87832,0.70646,0.5252,0.39274,0.26814,0.18769,0.13946,\
                                0.10797,0.075373,0.060135,0.045652,0.032971,0.035806,0"
            .parse()
            .unwrap();
        let accel = 7.454;
        let mask = poisson_disc_entries(128, 128, accel, 20, &d, &mut ChaCha8Rng::seed_from_u64(3))
            .unwrap();
        let target = 128.0 * 128.0 / accel;
        let n = kept(&mask) as f64;
        assert!(
            (n - target).abs() <= 0.01 * target,
            "{n} kept, {target} wanted"
        );
    }

    /// The same seed gives the same mask, another seed another; an ACS square over the count
    /// and a density that cannot reach the count are refused.
    #[test]
    fn the_same_seed_gives_the_same_mask_and_bad_requests_are_refused() {
        let d = RadialDensity::simulated();
        let draw_with = |seed| {
            poisson_disc_entries(32, 32, 3.0, 6, &d, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
        };
        assert_eq!(draw_with(7), draw_with(7));
        assert_ne!(draw_with(7), draw_with(8));
        assert!(
            poisson_disc_entries(32, 32, 3.0, 20, &d, &mut ChaCha8Rng::seed_from_u64(1)).is_err()
        );
        // A density that is 0 beyond the centre cannot keep a quarter of the grid.
        let centre: RadialDensity = "1,0,0,0,0,0,0,0".parse().unwrap();
        let e = poisson_disc_entries(32, 32, 4.0, 6, &centre, &mut ChaCha8Rng::seed_from_u64(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a mask needs 256"), "{e}");
    }
}
