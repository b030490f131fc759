//! 3x3 convolutions at the shipped UNet's layer shapes (`models/msm-brain-128.onnx`: base 32,
//! multipliers 1, 2, 2, 4 at 128, 64, 32 and 16 pixels, and the decoder's concatenated inputs),
//! one thread, side by side: the two portable forms, which CPUs without AVX-512F run (the nine
//! per-tap matrix products on the `gemm` crate, `Conv::forward_products`, and Winograd's
//! F(2x2, 3x3) on 16 `gemm` products, `Conv::forward_portable`,
//! `src/unet/winograd_products.rs`), the direct AVX-512 kernel
//! (`src/unet/direct.rs`), the Winograd F(2x2, 3x3) form the executor gives layers at 16
//! pixels and wider (`Conv::use_winograd`, `src/unet/winograd.rs`), and where the CPU has bf16
//! units (AMX tiles or AVX512-BF16) the bf16 forms `native-bf16` runs (`Conv::use_bf16`),
//! direct and Winograd. Then the residual blocks' 1x1 skip convolutions added to the main
//! branch: a `gemm` product into a buffer plus an add pass, against the pointwise kernel that
//! adds in place (`Conv::forward_add`, `src/unet/pointwise.rs`).
//!
//! Outputs go back to the executor's buffer pool after each call, as they do in a pass (fresh
//! pages each call would add page faults a pass does not have).
//!
//! Throughput counts 2 flops per multiply-add (2 * 9 * cin * cout * h * w a call), so
//! criterion's `Gelem/s` reads as GFLOP/s; compare it with `msm bench`'s matrix-product peak.
//!
//! Run: `cargo bench --bench conv`; `cargo bench --bench conv --no-default-features -- products`
//! measures the portable forms as an AVX2-only CPU runs them (the `gemm` crate's AVX2 kernels).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use msm::unet::kernels::{add_assign, avx512, bf16_units, recycle, upsample2, Conv};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

/// (input channels, output channels, image side).
const SHAPES: [(usize, usize, usize); 6] = [
    (32, 32, 128),
    (64, 32, 128),
    (64, 64, 64),
    (64, 64, 32),
    (128, 128, 16),
    (256, 128, 16),
];

/// (input channels, output channels, image side) of the shipped model's 1x1 skip convolutions
/// (the decoder's, on concatenated inputs, and the encoder's widening ones).
const SKIP_SHAPES: [(usize, usize, usize); 5] = [
    (64, 32, 128),
    (128, 64, 64),
    (192, 64, 32),
    (256, 128, 16),
    (32, 64, 64),
];

/// (channels, input side) of the decoder's upsampling convolutions.
const UP_SHAPES: [(usize, usize); 3] = [(128, 16), (64, 32), (64, 64)];

/// A 3x3 stride-1 convolution with random weights and a random `[cin, side, side]` input.
fn random_conv(rng: &mut ChaCha8Rng, cin: usize, cout: usize, side: usize) -> (Conv, Vec<f32>) {
    let weight: Vec<f32> = (0..cout * cin * 9)
        .map(|_| rng.random_range(-0.1f32..0.1))
        .collect();
    let bias: Vec<f32> = (0..cout).map(|_| rng.random_range(-0.1f32..0.1)).collect();
    let x: Vec<f32> = (0..cin * side * side)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    (Conv::new(weight, bias, cin, cout, 3, 1), x)
}

/// The forms of `conv` this CPU runs at an input side `side`, named: f32 direct (portable
/// without AVX-512), f32
/// Winograd, and where the CPU has bf16 units the bf16 forms (`native-bf16`), each direct and
/// Winograd where those exist.
fn forms(conv: &Conv, side: usize) -> Vec<(String, Conv)> {
    // Without AVX-512 (or without the `avx512` feature) a convolution as made runs the
    // portable form (Winograd products where the sides are even).
    let made = if avx512() { "f32-direct" } else { "portable" };
    let mut out = vec![(made.to_string(), conv.clone())];
    let mut w = conv.clone();
    let winograd = w.use_winograd(side, side);
    if winograd {
        out.push(("f32-winograd".to_string(), w.clone()));
    }
    let units = bf16_units().unwrap_or("none").replace(' ', "-");
    let mut b = conv.clone();
    if b.use_bf16() {
        out.push((format!("bf16-{units}-direct"), b));
        if winograd && w.use_bf16() {
            out.push((format!("bf16-{units}-winograd"), w));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("conv3x3");
    group.sample_size(20);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (cin, cout, side) in SHAPES {
        let (conv, x) = random_conv(&mut rng, cin, cout, side);
        let id = format!("{cin}x{cout}@{side}");
        group.throughput(Throughput::Elements(
            (2 * 9 * cin * cout * side * side) as u64,
        ));
        group.bench_function(BenchmarkId::new("products", &id), |b| {
            b.iter(|| pool.install(|| recycle(black_box(conv.forward_products(&x, side, side)))))
        });
        let mut portable = conv.clone();
        portable.use_winograd_products();
        group.bench_function(BenchmarkId::new("winograd-products", &id), |b| {
            b.iter(|| {
                pool.install(|| recycle(black_box(portable.forward_portable(&x, side, side))))
            })
        });
        for (name, form) in forms(&conv, side) {
            group.bench_function(BenchmarkId::new(name, &id), |b| {
                b.iter(|| pool.install(|| recycle(black_box(form.forward(&x, side, side)))))
            });
        }
    }
    group.finish();

    // The decoder's upsampling convolutions (nearest 2x, then 3x3): upsampled while the input
    // is copied into the kernel's layout (`Conv::forward_upsampled`) against upsampling
    // first (`upsample2`, then `Conv::forward`).
    let mut group = c.benchmark_group("upsample_conv3x3");
    group.sample_size(20);
    for (ch, side) in UP_SHAPES {
        let (conv, x) = random_conv(&mut rng, ch, ch, side);
        let id = format!("{ch}@{side}to{}", 2 * side);
        group.throughput(Throughput::Elements(
            (2 * 9 * ch * ch * 4 * side * side) as u64,
        ));
        for (name, conv) in forms(&conv, 2 * side) {
            group.bench_function(BenchmarkId::new(format!("{name}-fused"), &id), |b| {
                b.iter(|| {
                    pool.install(|| recycle(black_box(conv.forward_upsampled(&x, side, side))))
                })
            });
            group.bench_function(
                BenchmarkId::new(format!("{name}-upsample-first"), &id),
                |b| {
                    b.iter(|| {
                        pool.install(|| {
                            let u = upsample2(&x, ch, side, side);
                            recycle(black_box(conv.forward(&u, 2 * side, 2 * side)));
                            recycle(u);
                        })
                    })
                },
            );
        }
    }
    group.finish();

    // The 1x1 skip convolutions, added to an existing output.
    let mut group = c.benchmark_group("skip_conv1x1_add");
    group.sample_size(20);
    for (cin, cout, side) in SKIP_SHAPES {
        let weight: Vec<f32> = (0..cout * cin)
            .map(|_| rng.random_range(-0.1f32..0.1))
            .collect();
        let bias: Vec<f32> = (0..cout).map(|_| rng.random_range(-0.1f32..0.1)).collect();
        let conv = Conv::new(weight, bias, cin, cout, 1, 1);
        let x: Vec<f32> = (0..cin * side * side)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let mut out: Vec<f32> = (0..cout * side * side)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let id = format!("{cin}x{cout}@{side}");
        group.throughput(Throughput::Elements((2 * cin * cout * side * side) as u64));
        group.bench_function(BenchmarkId::new("gemm-then-add", &id), |b| {
            b.iter(|| {
                pool.install(|| {
                    let y = conv.forward(&x, side, side);
                    add_assign(black_box(&mut out), &y);
                    recycle(y);
                })
            })
        });
        group.bench_function(BenchmarkId::new("pointwise-in-place", &id), |b| {
            b.iter(|| pool.install(|| conv.forward_add(&x, side, side, black_box(&mut out))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
