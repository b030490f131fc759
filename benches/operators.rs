//! FFT and SENSE forward+adjoint on 8 coils x 256x256, on 1 and 2 rayon threads.
//!
//! Throughput is reported as "elements/s" where one element is one floating-point operation
//! under the usual count of 5 N log2 N per complex FFT of N points (elementwise products and
//! the coil sum are not counted), so criterion's `Gelem/s` reads as GFLOP/s.
//!
//! Run: `cargo bench --bench operators`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use msm::fft::Fft2;
use msm::mask::{self, Acs, Mask};
use msm::sense::{Operator, Sense};
use msm::{coils, C32};
use ndarray::{Array2, Array3};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const COILS: usize = 8;
const N: usize = 256;

fn fft_flops() -> u64 {
    let n = (N * N) as f64;
    (5.0 * n * n.log2()) as u64 * COILS as u64
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let maps = coils::birdcage(COILS, N, N).unwrap();
    let op = Sense::new(maps).unwrap();
    let fft = Fft2::new(N, N);
    let x = Array2::from_shape_fn((N, N), |(i, j)| {
        C32::new((i * j % 7) as f32, (i + j) as f32)
    });
    let cols = mask::random_cartesian(N, 4.0, Acs::Lines(20), &mut rng).unwrap();
    let m = Mask::Columns(cols);
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut g = c.benchmark_group(format!("{COILS}x{N}x{N}"));
        g.throughput(Throughput::Elements(fft_flops()));
        let mut data = Array3::from_elem((COILS, N, N), C32::new(1.0, 0.5));
        g.bench_function(
            BenchmarkId::new("fft_forward", format!("{threads}t")),
            |b| pool.install(|| b.iter(|| fft.forward_coils(black_box(&mut data)))),
        );
        g.throughput(Throughput::Elements(2 * fft_flops()));
        g.bench_function(
            BenchmarkId::new("sense_forward_adjoint", format!("{threads}t")),
            |b| {
                pool.install(|| {
                    b.iter(|| {
                        let y = op.forward(black_box(x.view()), Some(&m));
                        black_box(op.adjoint(y.view(), Some(&m)))
                    })
                })
            },
        );
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
