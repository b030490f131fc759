//! Same seed, bit-identical output: for each mode, with and without write-back noise, for
//! generation and posterior sampling, on 1 and 2 rayon threads.

mod sampler_common;

use msm::mask::Mask;
use msm::sampler::{generate, reconstruct, Mode, ReconOptions, SamplerOptions};
use msm::C32;
use ndarray::Array2;
use sampler_common::*;

fn bits(images: &[Array2<C32>]) -> Vec<u32> {
    images
        .iter()
        .flat_map(|x| x.iter().flat_map(|v| [v.re.to_bits(), v.im.to_bits()]))
        .collect()
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn same_seed_bit_identical_for_modes_and_threads() {
    let p = problem();
    let prior = p.prior();
    let x = draw_prior(&p, &mut rng(1));
    let a = dense(&p.op);
    let y_full = &a * x;
    let acq = Mask::Columns(vec![false, true, false, true, true, false, true, false]);
    let y = ndarray::Array3::from_shape_fn((2, N, N), |(c, i, j)| {
        let v = y_full[c * N * N + i * N + j];
        if acq.keeps(i, j) {
            C32::new(v.re as f32, v.im as f32)
        } else {
            C32::new(0.0, 0.0)
        }
    });
    for mode in [Mode::Sequential, Mode::Parallel] {
        for renoise in [0.0, 0.5] {
            let opts = SamplerOptions {
                steps: 8,
                partials: 3,
                eta: 0.85,
                renoise,
                seed: 42,
                partial: Some(kind()),
                mode,
                ..SamplerOptions::default()
            };
            let recon = ReconOptions {
                samples: 3,
                ..ReconOptions::default()
            };
            let run = || {
                let g = generate(&prior, &p.op, &opts, 3).unwrap();
                let r = reconstruct(&prior, &p.op, y.view(), &acq, &opts, &recon).unwrap();
                (bits(&g.images), bits(&r.samples))
            };
            let one = in_pool(1, run);
            let two = in_pool(2, run);
            let again = in_pool(2, run);
            assert_eq!(
                one, two,
                "{mode:?}, renoise {renoise}: 1 and 2 threads differ"
            );
            assert_eq!(two, again, "{mode:?}, renoise {renoise}: two runs differ");
            let other = in_pool(2, || {
                let o = SamplerOptions {
                    seed: 43,
                    ..opts.clone()
                };
                bits(&generate(&prior, &p.op, &o, 3).unwrap().images)
            });
            assert_ne!(
                one.0, other,
                "{mode:?}: a different seed gave the same images"
            );
        }
    }
}
