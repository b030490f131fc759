//! The ONNX path end to end without a trained network: an ONNX file encoding the noise
//! estimate that the exact Gaussian prior implies (affine in the input at each timestep) is
//! built with the crate's builder, loaded with tract, and the sampler run through
//! `NetworkPrior<OnnxDenoiser>` gives the numbers of the exact prior.

mod sampler_common;

use msm::denoiser::OnnxDenoiser;
use msm::mask::{Acs, Mask, PartialKind};
use msm::onnx::builder::{Dim, OnnxBuilder, WeightType};
use msm::onnx::meta::ModelMeta;
use msm::sampler::{generate, reconstruct, Mode, NetworkPrior, ReconOptions, SamplerOptions};
use msm::schedule::Schedule;
use msm::C32;
use ndarray::{Array2, Array3};
use sampler_common::*;

const D: usize = 2 * N * N;

/// Writes a model computing `eps = (1 - t/t1) (M0 v + c0) + (t/t1) (M1 v + c1)` on the packed
/// input `v`: exact at the two timesteps `0` and `t1` the sampler visits with K = 2.
fn write_model(path: &std::path::Path, maps: [(Vec<f32>, Vec<f32>); 2], t1: usize) {
    let dims = [Dim::Batch, Dim::Fixed(2), Dim::Fixed(N), Dim::Fixed(N)];
    let mut b = OnnxBuilder::new("gaussian_eps", WeightType::F32);
    b.add_input("x", &dims).unwrap();
    b.add_input("t", &[Dim::Batch]).unwrap();
    let transpose = |m: &[f32]| -> Vec<f32> {
        let mut t = vec![0f32; D * D];
        for i in 0..D {
            for j in 0..D {
                t[j * D + i] = m[i * D + j];
            }
        }
        t
    };
    let m0 = b.add_weight("m0", &[D, D], &transpose(&maps[0].0)).unwrap();
    let c0 = b.add_weight("c0", &[D], &maps[0].1).unwrap();
    let m1 = b.add_weight("m1", &[D, D], &transpose(&maps[1].0)).unwrap();
    let c1 = b.add_weight("c1", &[D], &maps[1].1).unwrap();
    let inv_t1 = b.add_weight("inv_t1", &[1], &[1.0 / t1 as f32]).unwrap();
    let flat = b.add_i64("flat", &[2], &[-1, D as i64]).unwrap();
    let img = b
        .add_i64("img", &[4], &[-1, 2, N as i64, N as i64])
        .unwrap();
    let ax1 = b.add_i64("ax1", &[1], &[1]).unwrap();
    let v = b.op("Reshape", &["x", &flat], vec![]).unwrap();
    let e0 = b.op("MatMul", &[&v, &m0], vec![]).unwrap();
    let e0 = b.op("Add", &[&e0, &c0], vec![]).unwrap();
    let e1 = b.op("MatMul", &[&v, &m1], vec![]).unwrap();
    let e1 = b.op("Add", &[&e1, &c1], vec![]).unwrap();
    let tu = b.op("Unsqueeze", &["t", &ax1], vec![]).unwrap();
    let frac = b.op("Mul", &[&tu, &inv_t1], vec![]).unwrap();
    let diff = b.op("Sub", &[&e1, &e0], vec![]).unwrap();
    let step = b.op("Mul", &[&frac, &diff], vec![]).unwrap();
    let sum = b.op("Add", &[&e0, &step], vec![]).unwrap();
    b.add_node("Reshape", &[&sum, &img], &["eps"], vec![])
        .unwrap();
    b.add_output("eps", &dims);
    b.set_meta(&ModelMeta::new(N, N));
    b.write(path).unwrap();
}

fn rel(a: &Array2<C32>, b: &Array2<C32>) -> f64 {
    (to_vec(a) - to_vec(b)).norm() / to_vec(a).norm()
}

#[test]
fn onnx_network_matches_exact_prior_through_the_sampler() {
    let p = problem();
    let prior = p.prior();
    let schedule = Schedule::reference();
    let ts = schedule.respace(2).unwrap();
    assert_eq!(ts, vec![0, 500]);
    // Every partial mask is the full mask, so the network's map is the exact one every call.
    let full = Mask::full(N);
    let maps: Vec<(Vec<f32>, Vec<f32>)> = ts
        .iter()
        .map(|&t| {
            let (l, c) = prior.eps_affine(&full, t, &schedule).unwrap();
            real_affine(&l, &c)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gaussian.onnx");
    write_model(&path, [maps[0].clone(), maps[1].clone()], ts[1]);
    let net = NetworkPrior::new(OnnxDenoiser::load(&path).unwrap());
    let mut worst = 0.0f64;
    for mode in [Mode::Sequential, Mode::Parallel] {
        let opts = SamplerOptions {
            steps: 2,
            partials: 2,
            eta: 1.0,
            seed: 17,
            partial: Some(PartialKind::Columns {
                width: N,
                accel: 1.0,
                acs: Acs::Lines(0),
            }),
            mode,
            ..SamplerOptions::default()
        };
        let exact = generate(&prior, &p.op, &opts, 4).unwrap();
        let onnx = generate(&net, &p.op, &opts, 4).unwrap();
        for (a, b) in exact.images.iter().zip(&onnx.images) {
            worst = worst.max(rel(a, b));
        }
        // Posterior sampling through the same network.
        let acq = Mask::Columns(vec![true, false, true, true, true, false, false, true]);
        let x = draw_prior(&p, &mut rng(2));
        let kx = dense(&p.op) * x;
        let y = Array3::from_shape_fn((2, N, N), |(c, i, j)| {
            let v = kx[c * N * N + i * N + j];
            C32::new(v.re as f32, v.im as f32)
        });
        let ro = ReconOptions {
            samples: 2,
            ..ReconOptions::default()
        };
        let a = reconstruct(&prior, &p.op, y.view(), &acq, &opts, &ro).unwrap();
        let b = reconstruct(&net, &p.op, y.view(), &acq, &opts, &ro).unwrap();
        worst = worst.max(rel(&a.mean, &b.mean));
        assert!(onnx.stats.network > std::time::Duration::ZERO);
    }
    // The model's image size is checked against the data before any work.
    let big = msm::sense::Sense::new(msm::coils::birdcage(2, 2 * N, 2 * N).unwrap()).unwrap();
    let err = generate(
        &net,
        &big,
        &SamplerOptions {
            steps: 2,
            ..SamplerOptions::default()
        },
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("the model takes 8x8 images but the data is 16x16"),
        "{err}"
    );
    let kind = msm::sampler::model_partial_kind(net.network().meta());
    assert_eq!(
        kind,
        PartialKind::Columns {
            width: N,
            accel: 4.0,
            acs: Acs::Lines(1)
        }
    );
    println!("worst relative difference ONNX vs exact prior: {worst:.2e}");
    assert!(
        worst < 1e-4,
        "ONNX path differs from the exact prior by {worst:.2e} (relative)"
    );
}
