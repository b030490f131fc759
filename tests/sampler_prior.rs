//! The partial denoisers: the exact Gaussian prior against Gaussian conditioning written
//! independently, and the network adapter against the exact prior through a network that
//! computes the prior's own (affine) noise estimate.

mod sampler_common;

use msm::denoiser::Denoiser;
use msm::mask::{Acs, Mask, PartialKind};
use msm::sampler::{generate, Mode, NetworkPrior, PartialDenoiser, SamplerOptions, C64};
use msm::schedule::Schedule;
use msm::sense::Operator;
use msm::{Result, C32};
use nalgebra::DVector;
use ndarray::{Array3, Array4, ArrayView4};
use rand::RngExt;
use rand_distr::StandardNormal;
use sampler_common::*;
use std::collections::HashMap;

#[test]
fn gaussian_prior_is_the_conditional_mean() {
    let p = problem();
    let prior = p.prior();
    let schedule = Schedule::reference();
    let mut rng = rng(3);
    let a = dense(&p.op);
    let cols = vec![true, false, true, true, true, false, false, true];
    let mask = Mask::Columns(cols.clone());
    let rows: Vec<usize> = (0..a.nrows()).filter(|r| cols[r % N]).collect();
    let mut worst = 0.0f64;
    for &t in &[0usize, 100, 500, 999] {
        let ab = schedule.alpha_bar(t);
        let x = draw_prior(&p, &mut rng);
        let z0 = &a * &x;
        let z = Array3::from_shape_fn((2, N, N), |(c, i, j)| {
            let v = z0[c * N * N + i * N + j];
            let n: (f64, f64) = (rng.sample(StandardNormal), rng.sample(StandardNormal));
            let s = (1.0 - ab).sqrt();
            C32::new(
                (ab.sqrt() * v.re + s * n.0) as f32,
                (ab.sqrt() * v.im + s * n.1) as f32,
            )
        });
        let d = prior.denoise(&p.op, &z, &mask, t, &schedule).unwrap();
        // Reference: E[x | S z / sqrt(ab)], noise std sigma_t on each part.
        let y: DVector<C64> = DVector::from_iterator(
            rows.len(),
            rows.iter().map(|&r| {
                let v = z.as_slice().unwrap()[r];
                C64::new(v.re as f64, v.im as f64) / ab.sqrt()
            }),
        );
        let want = posterior_mean(&p, &rows, &y, schedule.sigma(t));
        let got = to_vec(&d.x0);
        let rel = (&got - &want).norm() / want.norm();
        // The noise image reproduces x0 through the network formula.
        let u = to_vec(&p.op.adjoint(z.view(), Some(&mask)));
        let x0_from_eps =
            &u / C64::new(ab.sqrt(), 0.0) - to_vec(&d.eps) * C64::new(schedule.sigma(t), 0.0);
        let rel_eps = (&x0_from_eps - &got).norm() / got.norm();
        worst = worst.max(rel).max(rel_eps);
        assert!(
            rel < 1e-4,
            "t = {t}: x0 differs from the conditional mean by {rel:.2e} (relative)"
        );
        assert!(
            rel_eps < 1e-4,
            "t = {t}: eps does not reproduce x0 ({rel_eps:.2e})"
        );
    }
    println!("worst relative error {worst:.2e}");
}

/// A "network" that applies the Gaussian prior's affine noise estimate of one fixed mask,
/// chosen by the timestep.
struct LinearNet {
    maps: HashMap<u32, (Vec<f32>, Vec<f32>)>,
}

impl Denoiser for LinearNet {
    fn image_size(&self) -> (usize, usize) {
        (N, N)
    }
    fn predict_eps(&self, x: ArrayView4<f32>, t: &[f32]) -> Result<Array4<f32>> {
        let (m, b) = &self.maps[&(t[0] as u32)];
        let v: Vec<f32> = x.iter().copied().collect();
        let n2 = v.len();
        let out: Vec<f32> = (0..n2)
            .map(|i| b[i] + (0..n2).map(|j| m[i * n2 + j] * v[j]).sum::<f32>())
            .collect();
        Ok(Array4::from_shape_vec((1, 2, N, N), out).unwrap())
    }
}

#[test]
fn network_adapter_matches_exact_prior() {
    let p = problem();
    let prior = p.prior();
    let schedule = Schedule::reference();
    let steps = 10;
    let full = Mask::full(N);
    let mut maps = HashMap::new();
    for t in schedule.respace(steps).unwrap() {
        let (l, c) = prior.eps_affine(&full, t, &schedule).unwrap();
        maps.insert(t as u32, real_affine(&l, &c));
    }
    let net = NetworkPrior::new(LinearNet { maps });
    // Full partial masks: every partial score uses the mask the network was built for.
    let opts = SamplerOptions {
        steps,
        partials: 2,
        eta: 1.0,
        seed: 5,
        partial: Some(PartialKind::Columns {
            width: N,
            accel: 1.0,
            acs: Acs::Lines(0),
        }),
        mode: Mode::Sequential,
        ..SamplerOptions::default()
    };
    let a = generate(&prior, &p.op, &opts, 3).unwrap();
    let b = generate(&net, &p.op, &opts, 3).unwrap();
    for (x, y) in a.images.iter().zip(&b.images) {
        let rel = (to_vec(x) - to_vec(y)).norm() / to_vec(x).norm();
        assert!(
            rel < 1e-4,
            "network path differs from exact prior by {rel:.2e} (relative)"
        );
    }
}
