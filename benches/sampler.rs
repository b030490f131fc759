//! One MSM sampler step (w = 3) on a 128x128, 8-coil problem: sequential vs parallel mode on 1
//! and 2 threads, with a small conv net (ONNX, run by tract: conv3x3 2->32->64->64->32->2 with
//! SiLU, f16 weights) and with a stand-in network that costs nothing (zero noise), which
//! isolates the sampler's own cost. The time split of each configuration (network, operators,
//! rest) is printed before it is timed.
//!
//! Each timed call runs 2 steps (one full step plus the first step's start-up and the final
//! adjoint), so a step is about half of the reported time.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use msm::coils;
use msm::denoiser::{Denoiser, OnnxDenoiser};
use msm::sampler::{generate, Mode, NetworkPrior, PartialDenoiser, SamplerOptions};
use msm::sense::Sense;
use msm::Result;
use ndarray::{Array4, ArrayView4};

const SIZE: usize = 128;

struct ZeroNet;

impl Denoiser for ZeroNet {
    fn image_size(&self) -> (usize, usize) {
        (SIZE, SIZE)
    }
    fn predict_eps(&self, x: ArrayView4<f32>, _t: &[f32]) -> Result<Array4<f32>> {
        Ok(Array4::zeros(x.dim()))
    }
}

fn step(c: &mut Criterion) {
    let op = Sense::new(coils::birdcage(8, SIZE, SIZE).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conv.onnx");
    common::write_net(&path, SIZE, 1);
    let conv = NetworkPrior::new(OnnxDenoiser::load(&path).unwrap());
    let zero = NetworkPrior::new(ZeroNet);
    let priors: [(&str, &dyn PartialDenoiser); 2] = [("convnet", &conv), ("zeronet", &zero)];
    let mut group = c.benchmark_group("sampler_step_128x128x8_w3");
    group.sample_size(10);
    for (name, prior) in priors {
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for mode in [Mode::Sequential, Mode::Parallel] {
                let opts = SamplerOptions {
                    steps: 2,
                    partials: 3,
                    mode,
                    ..SamplerOptions::default()
                };
                let g = pool.install(|| generate(prior, &op, &opts, 1).unwrap());
                let (n, o, r) = g.stats.shares();
                println!(
                    "{name}, {mode:?}, {threads} thread(s): 2 steps in {:?}; network {:.1}%, \
                     operators {:.1}%, rest {:.1}% of {:?} busy",
                    g.stats.wall,
                    100.0 * n,
                    100.0 * o,
                    100.0 * r,
                    g.stats.busy()
                );
                group.bench_function(format!("{name}_{mode:?}_{threads}threads_2steps"), |b| {
                    b.iter(|| pool.install(|| generate(prior, &op, &opts, 1).unwrap()))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
