//! Masks (fastMRI semantics, determinism, coverage-aware tiling) and the noise schedule
//! against values computed independently with NumPy.

use msm::mask::{self, acs_range, Acs, CoverageSampler, Mask, PartialKind};
use msm::schedule::Schedule;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn random_cartesian_keeps_acs_and_the_expected_fraction() {
    for &(w, r, acs) in &[
        (128usize, 4.0, 20usize),
        (256, 4.0, 20),
        (128, 8.0, 10),
        (320, 6.0, 26),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let acs_cols = acs_range(w, Acs::Lines(acs));
        assert_eq!(acs_cols.len(), acs);
        let mut total = 0.0;
        for _ in 0..1000 {
            let m = mask::random_cartesian(w, r, Acs::Lines(acs), &mut rng).unwrap();
            assert!(acs_cols.clone().all(|j| m[j]), "ACS column missing");
            total += m.iter().filter(|&&k| k).count() as f64 / w as f64;
        }
        let mean = total / 1000.0;
        assert!(
            (mean - 1.0 / r).abs() < 0.02,
            "w={w} R={r}: mean kept fraction {mean:.4}, expected {:.4}",
            1.0 / r
        );
    }
}

#[test]
fn acs_is_centred_like_fastmri() {
    // fastMRI: pad = (num_cols - num_low_freqs + 1) // 2.
    assert_eq!(acs_range(128, Acs::Lines(20)), 54..74);
    assert_eq!(acs_range(127, Acs::Lines(20)), 54..74);
    assert_eq!(acs_range(368, Acs::Fraction(0.08)), 170..199);
}

#[test]
fn same_seed_same_mask_different_seed_different_mask() {
    let draw = |seed| {
        mask::random_cartesian(
            128,
            4.0,
            Acs::Lines(20),
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
        .unwrap()
    };
    assert_eq!(draw(3), draw(3));
    assert_ne!(draw(3), draw(4));
}

#[test]
fn equispaced_keeps_every_rth_column_and_acs() {
    let m = mask::equispaced(64, 4, Acs::Lines(8), 1).unwrap();
    for (j, &k) in m.iter().enumerate() {
        let expected = j % 4 == 1 || (28..36).contains(&j);
        assert_eq!(k, expected, "column {j}");
    }
}

#[test]
fn bad_mask_parameters_are_refused() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert!(mask::random_cartesian(128, 0.5, Acs::Lines(20), &mut rng).is_err());
    assert!(mask::random_cartesian(128, 8.0, Acs::Lines(20), &mut rng).is_err());
    assert!(mask::equispaced(128, 0, Acs::Lines(20), 0).is_err());
    let m = Mask::Columns(vec![true; 100]);
    let e = m.check_shape(128, 128).unwrap_err().to_string();
    assert!(e.contains("100") && e.contains("128"), "{e}");
}

#[test]
fn coverage_sampler_tiles_all_columns_within_its_bound() {
    let kind = PartialKind::Columns {
        width: 128,
        accel: 4.0,
        acs: Acs::Lines(20),
    };
    let mut s = CoverageSampler::new(kind).unwrap();
    // 108 free columns, 12 free per mask: cycles of at most B = 1 + ceil(107/12) = 10 draws,
    // so any 2B - 1 = 19 consecutive draws cover every column.
    assert_eq!(s.coverage_bound(), 19);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let masks: Vec<Mask> = (0..200).map(|_| s.next_mask(&mut rng)).collect();
    for m in &masks {
        assert!(
            (m.fraction() - 0.25).abs() < 1e-9,
            "every partial mask keeps 1/R"
        );
        assert!((54..74).all(|j| m.keeps(0, j)), "ACS in every partial mask");
    }
    let bound = s.coverage_bound();
    for start in 0..masks.len() - bound {
        let mut seen = [false; 128];
        for m in &masks[start..start + bound] {
            for (j, s) in seen.iter_mut().enumerate() {
                *s |= m.keeps(0, j);
            }
        }
        assert!(seen.iter().all(|&v| v), "window at {start} misses a column");
    }
    // A plain i.i.d. sampler needs far more draws: compare the mean coverage time.
    let mut iid_draws = 0;
    let mut rng2 = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..50 {
        let mut seen = [false; 128];
        let mut n = 0;
        while !seen.iter().all(|&v| v) {
            let m = mask::random_cartesian(128, 4.0, Acs::Lines(20), &mut rng2).unwrap();
            for (j, s) in seen.iter_mut().enumerate() {
                *s |= m[j];
            }
            n += 1;
        }
        iid_draws += n;
    }
    assert!(
        iid_draws as f64 / 50.0 > bound as f64,
        "i.i.d. masks covered faster than tiling"
    );
}

#[test]
fn coverage_sampler_blocks_cover_the_image() {
    let kind = PartialKind::Blocks {
        height: 32,
        width: 32,
        block: 4,
        accel: 2.0,
    };
    let mut s = CoverageSampler::new(kind).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let a = s.next_mask(&mut rng);
    let b = s.next_mask(&mut rng);
    // Two masks of half the blocks each, drawn without repeats, tile the image exactly.
    for i in 0..32 {
        for j in 0..32 {
            assert!(
                a.keeps(i, j) ^ b.keeps(i, j),
                "({i},{j}) covered {} times",
                a.keeps(i, j) as u8 + b.keeps(i, j) as u8
            );
        }
    }
}

#[test]
fn random_entries_keep_the_acs_square_and_the_expected_fraction() {
    for &(h, w, r, acs) in &[
        (64usize, 48usize, 4.0, 12usize),
        (33, 40, 6.0, 7),
        (16, 16, 2.0, 0),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (rows, cols) = mask::acs_square(h, w, acs);
        assert_eq!((rows.len(), cols.len()), (acs, acs));
        let mut total = 0.0;
        for _ in 0..400 {
            let m = mask::random_entries(h, w, r, acs, &mut rng).unwrap();
            assert_eq!(m.dim(), (h, w));
            for i in rows.clone() {
                assert!(cols.clone().all(|j| m[(i, j)]), "ACS entry missing");
            }
            assert!(mask::acs_side(&m) >= acs);
            total += m.iter().filter(|&&k| k).count() as f64 / (h * w) as f64;
        }
        let mean = total / 400.0;
        assert!(
            (mean - 1.0 / r).abs() < 0.01,
            "{h}x{w} R={r}: mean kept fraction {mean:.4}, expected {:.4}",
            1.0 / r
        );
    }
    // Same seed, same mask.
    let draw = |seed| mask::random_entries(32, 32, 4.0, 8, &mut ChaCha8Rng::seed_from_u64(seed));
    assert_eq!(draw(1).unwrap(), draw(1).unwrap());
    assert_ne!(draw(1).unwrap(), draw(2).unwrap());
    // Squares that do not fit are refused with the sizes.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let e = mask::random_entries(32, 16, 4.0, 17, &mut rng)
        .unwrap_err()
        .to_string();
    assert!(e.contains("17") && e.contains("32x16"), "{e}");
    let e = mask::random_entries(32, 32, 8.0, 12, &mut rng)
        .unwrap_err()
        .to_string();
    assert!(e.contains("12x12") && e.contains("128.0"), "{e}");
}

#[test]
fn acs_side_finds_the_largest_centred_square() {
    // A 10 x 12 grid with the centred 4 x 4 square kept, then a neighbour of the 5 x 5 square.
    let mut p = ndarray::Array2::from_elem((10, 12), false);
    let (rows, cols) = mask::acs_square(10, 12, 4);
    assert_eq!((rows.clone(), cols.clone()), (3..7, 4..8));
    for i in rows {
        for j in cols.clone() {
            p[(i, j)] = true;
        }
    }
    assert_eq!(mask::acs_side(&p), 4);
    // The 5 x 5 square (pad (10 - 5 + 1) / 2 = 3 rows, (12 - 5 + 1) / 2 = 4 columns) adds row
    // 7 and column 8.
    let (r5, c5) = mask::acs_square(10, 12, 5);
    assert_eq!((r5.clone(), c5.clone()), (3..8, 4..9));
    for i in r5 {
        for j in c5.clone() {
            p[(i, j)] = true;
        }
    }
    assert_eq!(mask::acs_side(&p), 5);
    p[(5, 6)] = false;
    assert_eq!(mask::acs_side(&p), 0, "the centre entry is missing");
}

#[test]
fn coverage_sampler_entries_tile_the_grid_within_its_bound() {
    let (h, w) = (24usize, 20usize);
    let kind = PartialKind::Entries {
        height: h,
        width: w,
        accel: 4.0,
        acs: 6,
    };
    let mut s = CoverageSampler::new(kind).unwrap();
    // 480 entries, 36 in the ACS square, 120 per mask: 444 free, 84 free per mask, cycles of at
    // most 1 + ceil(443 / 84) = 7 draws, window 13.
    assert_eq!(s.coverage_bound(), 13);
    let (rows, cols) = mask::acs_square(h, w, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let masks: Vec<Mask> = (0..100).map(|_| s.next_mask(&mut rng)).collect();
    for m in &masks {
        assert!(matches!(m, Mask::Pattern(_)));
        assert_eq!(m.count(h), 120, "every partial mask keeps 1/R of the grid");
        for i in rows.clone() {
            assert!(
                cols.clone().all(|j| m.keeps(i, j)),
                "ACS in every partial mask"
            );
        }
    }
    let bound = s.coverage_bound();
    for start in 0..masks.len() - bound {
        let covered = (0..h)
            .all(|i| (0..w).all(|j| masks[start..start + bound].iter().any(|m| m.keeps(i, j))));
        assert!(covered, "window at {start} misses an entry");
    }
}

#[test]
fn schedule_matches_numpy() {
    // np.cumprod(1 - np.linspace(1e-4, 0.02, 1000, dtype=np.float64))[[0, 499, 999]]
    let s = Schedule::reference();
    let expected = [
        (0usize, 0.9999f64),
        (499, 0.0785872429),
        (999, 4.03582977e-05),
    ];
    for (t, ab) in expected {
        let got = s.alpha_bar(t);
        assert!(
            ((got - ab) / ab).abs() < 1e-8,
            "ab_{t} = {got:e}, NumPy gives {ab:e}"
        );
    }
    assert!((s.beta(0) - 1e-4).abs() < 1e-15 && (s.beta(999) - 0.02).abs() < 1e-15);
    let t = 300;
    let sigma = ((1.0 - s.alpha_bar(t)) / s.alpha_bar(t)).sqrt();
    assert!((s.sigma(t) - sigma).abs() < 1e-12);
    assert_eq!(s.timestep_for_sigma(s.sigma(123)), 123);
}

#[test]
fn respacing_picks_the_stated_steps() {
    let s = Schedule::reference();
    let r = s.respace(200).unwrap();
    assert_eq!(r.len(), 200);
    assert_eq!(&r[..3], &[0, 5, 10]);
    assert_eq!(*r.last().unwrap(), 995);
    assert_eq!(s.respace(1000).unwrap(), (0..1000).collect::<Vec<_>>());
    assert_eq!(s.respace(3).unwrap(), vec![0, 333, 666]);
    assert!(s.respace(0).is_err());
    assert!(s.respace(1001).is_err());
}

#[test]
fn acs_lines_counts_the_central_block() {
    let m = |s: &str| s.chars().map(|c| c == '1').collect::<Vec<_>>();
    assert_eq!(mask::acs_lines(&m("10011110001")), 4);
    assert_eq!(mask::acs_lines(&m("1111")), 4);
    assert_eq!(mask::acs_lines(&m("1100")), 0);
    assert_eq!(mask::acs_lines(&m("00111000")), 3);
    // The block a random mask places (fastMRI's centre) is found, with neighbours kept at
    // random counted in when they touch it.
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let cols = mask::random_cartesian(128, 4.0, Acs::Lines(20), &mut rng).unwrap();
    assert!(mask::acs_lines(&cols) >= 20);
}
