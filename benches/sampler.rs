//! One MSM sampler step (w = 3) on a 128x128, 8-coil problem: sequential vs parallel mode on 1
//! and 2 threads. The network here is a stand-in that costs nothing (it returns zero noise), so
//! the times are the sampler's own overhead (operators and the rest) that a real network's
//! time adds to; the printed split shows where it goes.

use criterion::{criterion_group, criterion_main, Criterion};
use msm::coils;
use msm::denoiser::Denoiser;
use msm::sampler::{generate, Mode, NetworkPrior, SamplerOptions};
use msm::sense::Sense;
use msm::Result;
use ndarray::{Array4, ArrayView4};

struct ZeroNet;

impl Denoiser for ZeroNet {
    fn image_size(&self) -> (usize, usize) {
        (128, 128)
    }
    fn predict_eps(&self, x: ArrayView4<f32>, _t: &[f32]) -> Result<Array4<f32>> {
        Ok(Array4::zeros(x.dim()))
    }
}

fn step(c: &mut Criterion) {
    let op = Sense::new(coils::birdcage(8, 128, 128).unwrap()).unwrap();
    let prior = NetworkPrior::new(ZeroNet);
    let mut group = c.benchmark_group("sampler_step_128x128x8_w3");
    group.sample_size(20);
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
            let g = pool.install(|| generate(&prior, &op, &opts, 1).unwrap());
            let (n, o, r) = g.stats.shares();
            println!(
                "{mode:?}, {threads} thread(s): 2 steps in {:?}; shares network {:.1}%, \
                 operators {:.1}%, rest {:.1}%",
                g.stats.wall,
                100.0 * n,
                100.0 * o,
                100.0 * r
            );
            group.bench_function(format!("{mode:?}_{threads}threads_2steps"), |b| {
                b.iter(|| pool.install(|| generate(&prior, &op, &opts, 1).unwrap()))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
