//! Coil compression (`msm::coils::Compression`) against BART's `cc -p N -S -A` (when `bart` is
//! on PATH; CI installs it) and against the closed form of a unitary compression.

use msm::coils::Compression;
use msm::io::cfl;
use msm::recon::{cg_sense, CgOptions};
use msm::sense::Sense;
use msm::simulate::{simulate, SimOptions};
use msm::C32;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::process::Command;

fn bart_available() -> bool {
    Command::new("bart")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A simulated 8-coil, R = 4 scan of a smooth phantom (the mask keeps whole columns).
fn scan() -> msm::simulate::Acquisition {
    let image = Array2::from_shape_fn((64, 64), |(i, j)| {
        let (y, x) = ((i as f32 - 32.0) / 26.0, (j as f32 - 32.0) / 22.0);
        if x * x + y * y < 1.0 {
            0.6 + 0.4 * (3.0 * x + 2.0 * y).cos()
        } else {
            0.0
        }
    });
    let opts = SimOptions {
        height: 64,
        width: 64,
        acs: msm::mask::Acs::Lines(12),
        noise_std: 0.001,
        ..SimOptions::default()
    };
    simulate(image.view(), &opts, &mut ChaCha8Rng::seed_from_u64(4)).unwrap()
}

#[test]
fn compressed_energy_matches_bart_cc_at_every_entry() {
    if !bart_available() {
        eprintln!("SKIPPED: bart is not installed (apt-get install bart)");
        return;
    }
    let acq = scan();
    let dir = tempfile::tempdir().unwrap();
    let ksp = dir.path().join("ksp");
    cfl::write_coils(&ksp, &acq.kspace).unwrap();
    for n in [1, 3, 5] {
        let out = dir.path().join(format!("cc{n}"));
        let status = Command::new("bart")
            .args(["cc", "-p", &n.to_string(), "-S", "-A"])
            .arg(&ksp)
            .arg(&out)
            .output()
            .unwrap();
        assert!(status.status.success(), "bart cc failed");
        let theirs = cfl::read_coils(&out).unwrap();
        let ours = Compression::svd(acq.kspace.view(), n)
            .unwrap()
            .apply(acq.kspace.view())
            .unwrap();
        assert_eq!(ours.dim(), theirs.dim());
        // Virtual coils are defined up to a unitary mixing within the kept subspace (each
        // eigenvector's phase, at least), so the invariant is the energy at each entry.
        let energy = |y: &ndarray::Array3<C32>| {
            y.map_axis(ndarray::Axis(0), |c| {
                c.iter().map(|v| v.norm_sqr()).sum::<f32>()
            })
        };
        let (e_ours, e_theirs) = (energy(&ours), energy(&theirs));
        let peak = e_theirs.iter().fold(0.0f32, |a, &b| a.max(b));
        let worst = e_ours
            .iter()
            .zip(&e_theirs)
            .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(worst <= 1e-4 * peak, "{n} virtual coils: {worst} of {peak}");
    }
}

#[test]
fn all_virtual_coils_leave_cg_sense_unchanged_and_fewer_keep_it_close() {
    let acq = scan();
    let mask = acq.mask.clone();
    let cg = |k: &ndarray::Array3<C32>, maps: ndarray::Array3<C32>| {
        let op = Sense::new(maps).unwrap();
        let opts = CgOptions {
            iterations: 30,
            ..CgOptions::default()
        };
        cg_sense(&op, k.view(), &mask, opts).unwrap().0
    };
    let reference = cg(&acq.kspace, acq.maps.clone());
    let rel = |x: &Array2<C32>| {
        let num: f32 = x
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).norm_sqr())
            .sum();
        let den: f32 = reference.iter().map(|v| v.norm_sqr()).sum();
        (num / den).sqrt()
    };
    // Eight of eight: a unitary change of coil basis, the same least-squares problem.
    let all = Compression::svd(acq.kspace.view(), 8).unwrap();
    assert!((all.kept_energy() - 1.0).abs() < 1e-9);
    let x = cg(
        &all.apply(acq.kspace.view()).unwrap(),
        all.apply(acq.maps.view()).unwrap(),
    );
    assert!(
        rel(&x) < 1e-4,
        "8 of 8 virtual coils changed CG-SENSE by {}",
        rel(&x)
    );
    // Four of eight keep most of the energy and an image close to the full one.
    let four = Compression::svd(acq.kspace.view(), 4).unwrap();
    assert!(four.kept_energy() > 0.999, "kept {}", four.kept_energy());
    let x = cg(
        &four.apply(acq.kspace.view()).unwrap(),
        four.apply(acq.maps.view()).unwrap(),
    );
    // (Measured: 99.97% of the energy, 2.6% relative difference.)
    assert!(
        rel(&x) < 0.05,
        "4 of 8 virtual coils: relative difference {}",
        rel(&x)
    );
}
