//! Time of one `OnnxDenoiser::predict_eps` call on plain conv nets of realistic width, built with
//! the crate's ONNX builder (f16 weights, computed in f32), at 64x64 and 128x128: as loaded by
//! default (tract's direct spatial convolution off, im2col) and with the direct spatial
//! convolution allowed (`TRACT_DISABLE_DIRECT_SPATIAL=0` while loading; tract only picks it for
//! rows of 128 points or more). Also a batch of 3 (run image by image) and two concurrent
//! single-image calls on two rayon workers.
//!
//! Net: conv3x3 2->32, 32->64, 64->64, 64->32, 32->2 with SiLU between, plus a t-dependent bias.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use msm::denoiser::{Denoiser, OnnxDenoiser};
use ndarray::Array4;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("predict_eps");
    group.sample_size(20);
    for size in [64, 128] {
        let path = dir.path().join(format!("net{size}.onnx"));
        common::write_net(&path, size, size as u64);
        // The loader turns tract's direct spatial convolution off unless the environment sets
        // TRACT_DISABLE_DIRECT_SPATIAL; set it to 0 to measure the convolution tract picks itself.
        let default = OnnxDenoiser::load(&path).unwrap();
        std::env::set_var("TRACT_DISABLE_DIRECT_SPATIAL", "0");
        let direct = OnnxDenoiser::load(&path).unwrap();
        std::env::remove_var("TRACT_DISABLE_DIRECT_SPATIAL");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x3 = Array4::from_shape_fn((3, 2, size, size), |_| rng.random_range(-1.0f32..1.0));
        let x1 = x3.slice(ndarray::s![0..1, .., .., ..]).to_owned();
        group.throughput(Throughput::Elements(1));
        for (name, den) in [("default", &default), ("direct_spatial", &direct)] {
            group.bench_function(BenchmarkId::new(format!("batch1/{name}"), size), |bch| {
                bch.iter(|| den.predict_eps(x1.view(), &[500.0]).unwrap())
            });
        }
        group.throughput(Throughput::Elements(3));
        group.bench_function(BenchmarkId::new("batch3/default", size), |bch| {
            bch.iter(|| {
                default
                    .predict_eps(x3.view(), &[1.0, 500.0, 999.0])
                    .unwrap()
            })
        });
        group.throughput(Throughput::Elements(2));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        group.bench_function(BenchmarkId::new("2_workers/default", size), |bch| {
            bch.iter(|| {
                pool.join(
                    || default.predict_eps(x1.view(), &[10.0]).unwrap(),
                    || default.predict_eps(x1.view(), &[20.0]).unwrap(),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
