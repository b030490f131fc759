//! The MSM samplers (MSM.md sections 4 and 5): stochastic generation from partial scores
//! (Algorithm 1) and posterior sampling for reconstruction.
//!
//! # Scale and noise conventions
//! The state `z` is the full multi-coil k-space `(coils, height, width)` in the
//! variance-preserving scale, `z_t = sqrt(ab_t) z_0 + sqrt(1 - ab_t) n`, with `n` complex whose
//! real and imaginary parts each have std 1 (`E|n|^2 = 2`), and `z_0 = F C x`. Chains start
//! from `z = n`. Timesteps are the respaced `t_i = i T / K` ([`crate::schedule::Schedule::respace`]),
//! walked from the last; the level after the last step has `ab = 1`.
//!
//! # Partial denoisers
//! A [`PartialDenoiser`] turns the partial measurement `S z_t` into `x0` (clean image estimate)
//! and `eps` (noise image) with `x0 = u / sqrt(ab_t) - sqrt(1/ab_t - 1) eps`, `u = A_S^H z_t`.
//! [`NetworkPrior`] wraps a noise-predicting network ([`crate::denoiser::Denoiser`]);
//! [`GaussianPrior`] is the exact conditional mean of a complex Gaussian image prior, for tests.
//!
//! # One step at timestep t (next level t')
//! 1. Draw masks `S_1..S_w` from the coverage-aware sampler ([`crate::mask::CoverageSampler`]).
//! 2. For each mask: `x0_i, eps_i` from the prior; `s_hat_i = A_{S_i} x0_i`. In posterior mode
//!    the data-consistency step `s_hat_i <- S_i (s_hat_i - lambda P (P s_hat_i - y))` follows
//!    (`lambda = 1`, the default, replaces the estimate by the data on `P ∩ S_i`; MSM.md's
//!    reference `lambda = 2.0` belongs to the reference code's own normalisation of its
//!    gradient step and does not carry over). Then the write-back re-noises the estimate to
//!    level `t` on the mask: `S_i z <- sqrt(ab_t) s_hat_i + sqrt(1 - ab_t - sig^2) e_i + sig n`,
//!    with `e_i` the noise estimate of the partial measurement ([`NoiseEstimate`]).
//! 3. Coverage `C = sum_i S_i`; `z_hat = (1/C) sum_i S_i^T s_hat_i` on covered entries,
//!    uncovered entries keep the previous `z_hat` (which starts at 0).
//! 4. DDIM move from `z_hat`: `z_{t'} = sqrt(ab_{t'}) z_hat + sqrt(1 - ab_{t'} - s^2) eps_hat + s n`,
//!    `eps_hat = (z_t - sqrt(ab_t) z_hat) / sqrt(1 - ab_t)`,
//!    `s = eta sqrt((1 - ab_{t'}) / (1 - ab_t)) sqrt(1 - ab_t / ab_{t'})`.
//!
//! The result is the coil-combined image `A^H z_hat` over all entries.
//!
//! # The write-back: its noise estimate and its fresh noise `sig`
//! The write-back is a DDIM move from level `t` to the same level `t`.
//! - Noise estimate. The default, [`NoiseEstimate::Measurement`], is the partial measurement's
//!   own noise `e_i = (S_i z - sqrt(ab_t) s_hat_i) / sqrt(1 - ab_t)` (from the prior's estimate,
//!   before data consistency). MSM.md's reference form, [`NoiseEstimate::Image`], takes the
//!   network's noise image to k-space, `e_i = S_i F C eps_i`. The two are identical with one
//!   coil (then `S F F^H S = S`). With several coils the image form replaces `S z` by
//!   `A_S A_S^H z`, whose eigenvalues lie in `[0, 1]`: every write-back shrinks part of the
//!   state's noise, and the damage grows with the number of write-backs. Measured with the
//!   exact Gaussian prior (2 coils, 8x8, `tests/sampler_theorem.rs`): with the image form the
//!   relative covariance error of the expected-score sampler against the true prior grows
//!   with the step count, 0.47, 0.65, 0.88 for K = 20, 100, 1000 (mean error 0.08, 0.38,
//!   0.69), and in sequential mode it grows with w (0.12, 0.21, 0.37, 0.51 for w = 1, 2, 4, 8);
//!   with the measurement form it falls, 0.36, 0.19, 0.15, while the exact full score gives
//!   0.30, 0.085, 0.010 (K discretisation). So the measurement form is the default.
//! - Fresh noise. DDIM's noise `eta sqrt((1 - ab_{t'}) / (1 - ab_t)) sqrt(1 - ab_t / ab_{t'})` is
//!   zero for `t' = t` at every eta, so by default `sig = 0`. It is also the only choice that
//!   keeps the distribution of `z_t` with an exact denoiser: for one entry with signal fraction
//!   `a = ab v / (ab v + 1 - ab)` the write-back's variance is `V (1 - (1 - a)(1 - r)^2)`,
//!   `r = sqrt(1 - sig^2 / (1 - ab))`, below the input's `V` for every `sig > 0`.
//!   [`SamplerOptions::renoise`] sets `sig = renoise * sqrt(1 - ab_t)` for experiments.
//!
//! With the defaults a generation chain's write-back leaves `z` unchanged (up to rounding), so
//! in generation the two modes below give the same chain; they differ in posterior sampling,
//! where the data written back by one mask is seen by the next in sequential mode.
//!
//! # Modes, and which is the default
//! - [`Mode::Sequential`] is the paper's Algorithm 1: mask `i + 1` is denoised from the state
//!   that mask `i`'s write-back left. The network calls of a step run one after another.
//! - [`Mode::Parallel`] (this project's) evaluates all `w` partial denoisings on the same state,
//!   concurrently on rayon workers (one network call of batch 1 each), then merges the
//!   write-backs (each covered entry takes the mean of the write-backs of the masks covering
//!   it) and aggregates as above.
//!
//! The default is [`Mode::Parallel`]: the network dominates a step, and the parallel mode runs
//! the `w` network calls of a step on up to `w` cores at once where the sequential mode runs
//! them one by one. The price, measured with the exact Gaussian prior (`tests/sampler_*.rs`):
//! none in generation (identical Theorem-1 errors, 0.240, 0.145, 0.078, 0.063 for
//! w = 1, 2, 4, 8); in posterior sampling (w = 3, K = 200, 64 samples) the posterior-mean
//! error is 0.242 in parallel mode against 0.204 in sequential mode (prior mean: 0.789), and
//! the worst data residual 7.0 against 6.5 noise stds. Choose sequential for the last bit of
//! reconstruction quality when cores are scarce anyway.
//!
//! # Reproducibility
//! All randomness comes from a `ChaCha8Rng` per chain, seeded with
//! [`sample_seed`]`(seed, k)` for sample `k`. Each step draws its masks, then the write-back
//! noise (only when `sig > 0`), then the DDIM noise, on the chain's thread and never inside
//! the workers, so a seed gives bit-identical output in either mode and for any thread count.
//!
//! # Scale of real data
//! With [`ReconOptions::scale_target`], the k-space is multiplied by the factor that brings the
//! 99th percentile of `|A_P^H y|` to the target (the model's training scale), and the results
//! are divided by it ([`scale`]).
//!
//! # Checks
//! Before any work: `w >= 1`, `1 <= K <= T`, eta and renoise in `[0, 1]`, lambda >= 0, the
//! partial masks and the acquisition mask fit the k-space, the k-space's coil count and size
//! match the coil maps, the model's image size matches the data ([`PartialDenoiser::check`]).

mod gaussian;
mod options;
mod partial;
mod run;
pub mod scale;
mod stats;

pub use gaussian::{dense_forward, image_to_vec, vec_to_image, GaussianPrior, C64, MAX_PIXELS};
pub use options::{
    eta_in_range, model_partial_kind, reference_partial_kind, Mode, NoiseEstimate, Progress,
    ReconOptions, SamplerOptions, REFERENCE_ACCEL, REFERENCE_ACS_FRACTION,
};
pub use partial::{pack, Denoised, NetworkPrior, PartialDenoiser};
pub use run::{generate, reconstruct, sample_seed, Generated, Reconstruction};
pub use stats::Stats;
