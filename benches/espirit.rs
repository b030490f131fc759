//! ESPIRiT coil maps on 8 coils at 128x128 and 256x256 (R = 4, 24 ACS columns, BART defaults),
//! the low-resolution ratio maps on the same data, and BART's `ecalib -m1` on the same k-space
//! in the same run (a spawned process: its time includes start-up and reading/writing the
//! `.cfl` files; skipped with a note when `bart` is not on the PATH).
//!
//! The k-space is a simulated acquisition of a synthetic head-like image (ellipses) with
//! birdcage maps, so the bench needs no data files.

use criterion::{criterion_group, criterion_main, Criterion};
use msm::coils::{espirit, ratio_maps, EspiritOptions, RatioOptions};
use msm::io::cfl;
use msm::mask::Acs;
use msm::simulate::{simulate, Pattern, SimOptions};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::process::Command;

fn phantom(n: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, n), |(y, x)| {
        let u = 2.0 * (x as f32 + 0.5) / n as f32 - 1.0;
        let v = 2.0 * (y as f32 + 0.5) / n as f32 - 1.0;
        let outer = (u / 0.75).powi(2) + (v / 0.9).powi(2) < 1.0;
        let inner = (u / 0.65).powi(2) + (v / 0.8).powi(2) < 1.0;
        let spot = ((u - 0.2) / 0.15).powi(2) + ((v + 0.3) / 0.25).powi(2) < 1.0;
        match (outer, inner, spot) {
            (_, true, true) => 0.4,
            (_, true, false) => 0.8,
            (true, false, _) => 1.0,
            _ => 0.0,
        }
    })
}

fn bart_available() -> bool {
    Command::new("bart")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn bench(c: &mut Criterion) {
    let bart = bart_available();
    if !bart {
        eprintln!("note: `bart` is not on the PATH; skipping the bart ecalib timings");
    }
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut group = c.benchmark_group("espirit");
    group.sample_size(10);
    for n in [128usize, 256] {
        let opts = SimOptions {
            height: n,
            width: n,
            coils: 8,
            accel: 4.0,
            acs: Acs::Lines(24),
            pattern: Pattern::Random,
            noise_std: 0.002,
            ..SimOptions::default()
        };
        let acq = simulate(phantom(n).view(), &opts, &mut ChaCha8Rng::seed_from_u64(1))
            .expect("simulation");
        let mask = acq.mask.clone();
        let eopts = EspiritOptions::default();
        group.bench_function(format!("msm_espirit_8coils_{n}"), |b| {
            b.iter(|| black_box(espirit(acq.kspace.view(), Some(&mask), &eopts).unwrap()))
        });
        group.bench_function(format!("msm_ratio_8coils_{n}"), |b| {
            b.iter(|| {
                black_box(
                    ratio_maps(acq.kspace.view(), Some(&mask), &RatioOptions::default()).unwrap(),
                )
            })
        });
        if bart {
            let kin = dir.path().join(format!("k{n}"));
            let out = dir.path().join(format!("s{n}"));
            cfl::write_coils(&kin, &acq.kspace).expect("write k-space");
            group.bench_function(format!("bart_ecalib_8coils_{n}"), |b| {
                b.iter(|| {
                    let o = Command::new("bart")
                        .args(["ecalib", "-m1", "-k", "6", "-r", "24"])
                        .arg(&kin)
                        .arg(&out)
                        .output()
                        .expect("spawn bart");
                    assert!(o.status.success(), "bart ecalib failed");
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
