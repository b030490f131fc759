//! Bad input is refused before any work with a message that says what is wrong.

mod sampler_common;

use msm::denoiser::Denoiser;
use msm::mask::{Acs, Mask, PartialKind};
use msm::sampler::{
    generate, reconstruct, NetworkPrior, PartialDenoiser, ReconOptions, SamplerOptions,
};
use msm::sense::{Operator, Sense};
use msm::{coils, Result, C32};
use ndarray::{Array3, Array4, ArrayView4};
use sampler_common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Net(usize, usize);

impl Denoiser for Net {
    fn image_size(&self) -> (usize, usize) {
        (self.0, self.1)
    }
    fn predict_eps(&self, x: ArrayView4<f32>, _t: &[f32]) -> Result<Array4<f32>> {
        Ok(x.mapv(|v| 0.5 * v))
    }
}

fn expect_err(r: Result<impl std::fmt::Debug>, needle: &str) {
    match r {
        Ok(v) => panic!("expected an error containing {needle:?}, got Ok({v:?})"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(needle),
                "error {msg:?} does not mention {needle:?}"
            );
        }
    }
}

#[test]
fn bad_input_gives_clear_errors_and_no_work() {
    let p = problem();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let base = SamplerOptions {
        steps: 4,
        partials: 2,
        partial: Some(kind()),
        progress: Some(Arc::new(move |_, _| {
            c2.fetch_add(1, Ordering::Relaxed);
        })),
        ..SamplerOptions::default()
    };
    let net = NetworkPrior::new(Net(N, N));
    let prior: &dyn PartialDenoiser = &net;
    let gen = |o: &SamplerOptions| generate(prior, &p.op, o, 2).map(|g| g.images.len());

    expect_err(
        gen(&SamplerOptions {
            partials: 0,
            ..base.clone()
        }),
        "partial scores per step (w) must be at least 1",
    );
    expect_err(
        gen(&SamplerOptions {
            steps: 0,
            ..base.clone()
        }),
        "between 1 and the schedule length 1000, got 0",
    );
    expect_err(
        gen(&SamplerOptions {
            steps: 1001,
            ..base.clone()
        }),
        "between 1 and the schedule length 1000, got 1001",
    );
    expect_err(
        gen(&SamplerOptions {
            eta: 1.5,
            ..base.clone()
        }),
        "eta must be in [0, 1]",
    );
    expect_err(
        gen(&SamplerOptions {
            renoise: -0.1,
            ..base.clone()
        }),
        "renoise",
    );
    expect_err(
        gen(&SamplerOptions {
            partial: Some(PartialKind::Columns {
                width: 16,
                accel: 4.0,
                acs: Acs::Lines(2),
            }),
            ..base.clone()
        }),
        "partial masks are 16 columns wide but the k-space is 8 wide",
    );
    expect_err(
        generate(prior, &p.op, &base, 0).map(|g| g.images.len()),
        "images to generate must be at least 1",
    );
    // Model image size different from the data.
    let big = NetworkPrior::new(Net(16, 16));
    expect_err(
        generate(&big, &p.op, &base, 1).map(|g| g.images.len()),
        "the model takes 16x16 images but the data is 8x8",
    );
    // A Gaussian prior built for other coil maps.
    let other = Sense::new(coils::birdcage_radius(2, N, N, 2.0).unwrap()).unwrap();
    let g = p.prior();
    expect_err(
        generate(&g, &other, &base, 1).map(|g| g.images.len()),
        "different operator",
    );

    let y = Array3::<C32>::from_elem((2, N, N), C32::new(1.0, 0.0));
    let acq = Mask::Columns(vec![true; N]);
    let rec = ReconOptions::default();
    let run = |y: &Array3<C32>, acq: &Mask, r: &ReconOptions| {
        reconstruct(prior, &p.op, y.view(), acq, &base, r).map(|r| r.samples.len())
    };
    // Coil count of the maps vs the k-space.
    let y3 = Array3::<C32>::zeros((3, N, N));
    expect_err(
        run(&y3, &acq, &rec),
        "the k-space has 3 coils but the coil maps have 2",
    );
    let ybig = Array3::<C32>::zeros((2, N, 16));
    expect_err(
        run(&ybig, &acq, &rec),
        "the k-space is 8x16 but the coil maps are 8x8",
    );
    // Mask shorter than the k-space width.
    expect_err(
        run(&y, &Mask::Columns(vec![true; 6]), &rec),
        "mask has 6 columns but the k-space is 8 wide",
    );
    expect_err(
        run(
            &y,
            &acq,
            &ReconOptions {
                samples: 0,
                ..rec.clone()
            },
        ),
        "posterior samples must be at least 1",
    );
    // Below 0, or above 2 where each step multiplies the data mismatch by |1 - lambda| > 1.
    for lambda in [-1.0, 2.5, f64::NAN] {
        expect_err(
            run(
                &y,
                &acq,
                &ReconOptions {
                    lambda,
                    ..rec.clone()
                },
            ),
            "lambda must be in [0, 2]",
        );
    }
    let mut ynan = y.clone();
    ynan[(0, 0, 0)] = C32::new(f32::NAN, 0.0);
    expect_err(run(&ynan, &acq, &rec), "NaN");
    let zero = Array3::<C32>::zeros((2, N, N));
    expect_err(
        run(
            &zero,
            &acq,
            &ReconOptions {
                scale_target: Some(1.0),
                ..rec.clone()
            },
        ),
        "cannot normalise the k-space",
    );
    assert_eq!(
        calls.load(Ordering::Relaxed),
        0,
        "work started despite bad input"
    );
    // And the same options with good input run.
    assert_eq!(run(&y, &acq, &rec).unwrap(), 1);
    assert_eq!(calls.load(Ordering::Relaxed), base.steps);
    let _ = p.op.coils();
}
