//! One MSM chain (Algorithm 1 with the optional data-consistency step), and the public entry
//! points that run several chains: [`generate`] and [`reconstruct`].

use super::options::{Mode, NoiseEstimate, ReconOptions, SamplerOptions};
use super::partial::PartialDenoiser;
use super::scale;
use super::stats::Stats;
use crate::mask::{CoverageSampler, Mask, PartialKind};
use crate::recon::{cg_refine, CgOptions};
use crate::sense::{apply_mask, Operator};
use crate::{Error, Result, C32};
use ndarray::{Array2, Array3, ArrayView3, Zip};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Images drawn by [`generate`].
#[derive(Clone, Debug)]
pub struct Generated {
    /// The coil-combined complex images `A^H z_hat`, one per sample.
    pub images: Vec<Array2<C32>>,
    /// Time split over all samples.
    pub stats: Stats,
}

/// Posterior samples drawn by [`reconstruct`], on the input's scale.
#[derive(Clone, Debug)]
pub struct Reconstruction {
    /// Pixel-wise mean of the complex samples (the reconstruction).
    pub mean: Array2<C32>,
    /// Pixel-wise standard deviation of the samples' magnitudes (the uncertainty map; zero
    /// for a single sample; `n - 1` in the denominator otherwise).
    pub std: Array2<f32>,
    /// The posterior samples.
    pub samples: Vec<Array2<C32>>,
    /// Factor the k-space was multiplied by before sampling (1 without a scale target).
    pub scale: f64,
    /// Time split over all samples.
    pub stats: Stats,
}

/// The measured data of posterior sampling.
struct Posterior<'a> {
    /// Acquired k-space on the sampler's scale, zero off `acq`.
    y: &'a Array3<C32>,
    /// Acquisition pattern `(height, width)`.
    acq: &'a Array2<bool>,
    /// Data-consistency step.
    lambda: f32,
}

/// Everything a chain shares with the others of a call.
struct Shared<'a> {
    prior: &'a dyn PartialDenoiser,
    op: &'a dyn Operator,
    opts: &'a SamplerOptions,
    kind: PartialKind,
    posterior: Option<Posterior<'a>>,
    done: AtomicUsize,
    total: usize,
}

/// The seed of sample `k` of a call seeded with `seed` (SplitMix64 of the pair).
pub fn sample_seed(seed: u64, k: usize) -> u64 {
    let mut x = seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn randn<R: Rng + ?Sized>(shape: (usize, usize, usize), rng: &mut R) -> Array3<C32> {
    Array3::from_shape_simple_fn(shape, || {
        C32::new(rng.sample(StandardNormal), rng.sample(StandardNormal))
    })
}

/// The entries of a standard-layout array, in order.
fn flat(a: &Array3<C32>) -> &[C32] {
    a.as_slice().expect("sampler arrays are in standard layout")
}

/// The entries of a standard-layout array, in order, to write.
fn flat_mut(a: &mut Array3<C32>) -> &mut [C32] {
    a.as_slice_mut()
        .expect("sampler arrays are in standard layout")
}

/// One partial estimate: the denoised partial measurement and the estimate of the noise in
/// the partial measurement, both zero off the mask.
struct Partial {
    s_hat: Array3<C32>,
    noise: Array3<C32>,
}

fn partial(
    sh: &Shared,
    z: &Array3<C32>,
    mask: &Mask,
    kept: &[usize],
    t: usize,
) -> Result<(Partial, Stats)> {
    let mut st = Stats::default();
    let plane = z.dim().1 * z.dim().2;
    let start = Instant::now();
    let d = sh.prior.denoise(sh.op, z, mask, t, &sh.opts.schedule)?;
    let t_denoise = start.elapsed();
    st.network += d.network;
    st.operators += t_denoise.saturating_sub(d.network);
    let start = Instant::now();
    let mut s_hat = sh.op.forward(d.x0.view(), Some(mask));
    let image_noise = match sh.opts.writeback_noise {
        NoiseEstimate::Image => Some(sh.op.forward(d.eps.view(), Some(mask))),
        NoiseEstimate::Measurement => None,
    };
    st.operators += start.elapsed();
    let start = Instant::now();
    let noise = image_noise.unwrap_or_else(|| {
        // (S z - sqrt(ab) s_hat) / sqrt(1 - ab), from the prior's own estimate.
        let ab = sh.opts.schedule.alpha_bar(t);
        let (a, b) = (ab.sqrt() as f32, (1.0 / (1.0 - ab).sqrt()) as f32);
        let mut e = Array3::<C32>::zeros(z.dim());
        let (es, zs, ss) = (flat_mut(&mut e), flat(z), flat(&s_hat));
        for coil in 0..z.dim().0 {
            let o = coil * plane;
            for &i in kept {
                es[o + i] = (zs[o + i] - ss[o + i] * a) * b;
            }
        }
        e
    });
    if let Some(p) = &sh.posterior {
        // s_hat <- S (s_hat - lambda P (P s_hat - y)): on S and P, s + lambda (y - s).
        let acq = p
            .acq
            .as_slice()
            .expect("the acquisition pattern is contiguous");
        let y = p.y.as_standard_layout();
        let (ss, ys) = (flat_mut(&mut s_hat), y.as_slice().expect("standard layout"));
        for coil in 0..z.dim().0 {
            let o = coil * plane;
            for &i in kept.iter().filter(|&&i| acq[i]) {
                ss[o + i] += (ys[o + i] - ss[o + i]) * p.lambda;
            }
        }
    }
    st.other += start.elapsed();
    st.denoisings = 1;
    Ok((Partial { s_hat, noise }, st))
}

/// Writes a partial estimate back into `z` on its mask, re-noised to level t:
/// `S z <- cs s_hat + ce e + sig n`, `e` the partial noise estimate. With `count`, the value is added divided by the
/// entry's coverage (the parallel merge); otherwise it replaces the entry.
struct WriteBack<'a> {
    cs: f32,
    ce: f32,
    sig: f32,
    count: Option<&'a Array2<f32>>,
}

impl WriteBack<'_> {
    fn apply(&self, z: &mut Array3<C32>, p: &Partial, noise: Option<&Array3<C32>>, kept: &[usize]) {
        let (nc, h, w) = z.dim();
        let plane = h * w;
        let (zs, ss, es) = (flat_mut(z), flat(&p.s_hat), flat(&p.noise));
        let ns = noise.map(flat);
        let cnt = self
            .count
            .map(|c| c.as_slice().expect("the coverage count is contiguous"));
        for c in 0..nc {
            let o = c * plane;
            for &i in kept {
                let mut v = ss[o + i] * self.cs + es[o + i] * self.ce;
                if let Some(n) = ns {
                    v += n[o + i] * self.sig;
                }
                match cnt {
                    Some(cnt) => zs[o + i] += v / cnt[i],
                    None => zs[o + i] = v,
                }
            }
        }
    }
}

/// Sets the entries of every coil of `a` where `count > 0` to zero.
fn clear_covered(a: &mut Array3<C32>, count: &Array2<f32>) {
    for mut ac in a.outer_iter_mut() {
        Zip::from(&mut ac).and(count).for_each(|v, &n| {
            if n > 0.0 {
                *v = C32::new(0.0, 0.0)
            }
        });
    }
}

/// Runs one chain; returns `A^H z_hat` and its time split.
fn chain(sh: &Shared, seed: u64) -> Result<(Array2<C32>, Stats)> {
    let opts = sh.opts;
    let schedule = &opts.schedule;
    let mut st = Stats::default();
    let start = Instant::now();
    // Wall time of the partial denoisings (their thread time is in `st` already).
    let mut excluded = Duration::ZERO;
    // Two streams of the chain's seed: noise (stream 0) and masks (stream 1), so that runs
    // that differ only in w or the mask kind share their noise.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mask_rng = ChaCha8Rng::seed_from_u64(seed);
    mask_rng.set_stream(1);
    let mut sampler = CoverageSampler::new(sh.kind.clone())?;
    let shape = sh.op.measurement_shape();
    let (_, h, w) = shape;
    let ts = schedule.respace(opts.steps)?;
    let mut z = randn(shape, &mut rng);
    let mut z_hat = Array3::<C32>::zeros(shape);
    for k in (0..ts.len()).rev() {
        let t = ts[k];
        let ab = schedule.alpha_bar(t);
        // All of a step's random numbers are drawn here, in a fixed order and outside the
        // workers: the masks, then the write-back noise, then (below) the DDIM noise.
        let masks: Vec<Mask> = (0..opts.partials)
            .map(|_| sampler.next_mask(&mut mask_rng))
            .collect();
        // Each mask's kept entries, as flat indices into an image.
        let patterns: Vec<Vec<usize>> = masks
            .iter()
            .map(|m| (0..h * w).filter(|&i| m.keeps(i / w, i % w)).collect())
            .collect();
        let sig = opts.renoise * (1.0 - ab).sqrt();
        // The DDIM step to the next level (none after the last step): its noise level.
        let ddim = (k > 0).then(|| {
            let abn = schedule.alpha_bar(ts[k - 1]);
            let s = opts.eta * ((1.0 - abn) / (1.0 - ab)).sqrt() * (1.0 - ab / abn).max(0.0).sqrt();
            (abn, s)
        });
        // The write-back noise of each partial, then the DDIM noise: drawn in this order
        // whatever the mode, so that both modes and every thread count share the stream.
        let draw = |rng: &mut ChaCha8Rng| {
            let wb: Vec<Option<Array3<C32>>> = masks
                .iter()
                .map(|_| (sig > 0.0).then(|| randn(shape, rng)))
                .collect();
            let dn = ddim.and_then(|(_, s)| (s > 0.0).then(|| randn(shape, rng)));
            (wb, dn)
        };
        let mut count = Array2::<f32>::zeros((h, w));
        {
            let cs = count.as_slice_mut().expect("fresh array is contiguous");
            for &i in patterns.iter().flatten() {
                cs[i] += 1.0;
            }
        }
        let mut wb = WriteBack {
            cs: ab.sqrt() as f32,
            ce: (1.0 - ab - sig * sig).max(0.0).sqrt() as f32,
            sig: sig as f32,
            count: None,
        };
        let (parts, ddim_noise): (Vec<Partial>, _) = match opts.mode {
            Mode::Sequential => {
                let (wb_noise, ddim_noise) = draw(&mut rng);
                let mut parts = Vec::with_capacity(masks.len());
                for i in 0..masks.len() {
                    let t0 = Instant::now();
                    let (p, s) = partial(sh, &z, &masks[i], &patterns[i], t)?;
                    excluded += t0.elapsed();
                    st += s;
                    wb.apply(&mut z, &p, wb_noise[i].as_ref(), &patterns[i]);
                    parts.push(p);
                }
                (parts, ddim_noise)
            }
            Mode::Parallel => {
                let t0 = Instant::now();
                // The noise is drawn while the partials run (it does not depend on them), so
                // that a second core does not wait for it.
                let (results, (wb_noise, ddim_noise)) = rayon::join(
                    || {
                        masks
                            .par_iter()
                            .zip(patterns.par_iter())
                            .map(|(m, pat)| partial(sh, &z, m, pat, t))
                            .collect::<Vec<Result<(Partial, Stats)>>>()
                    },
                    || draw(&mut rng),
                );
                excluded += t0.elapsed();
                let mut parts = Vec::with_capacity(masks.len());
                for r in results {
                    let (p, s) = r?;
                    st += s;
                    parts.push(p);
                }
                // Merge the write-backs: each covered entry becomes the mean of the write-backs
                // of the masks covering it.
                clear_covered(&mut z, &count);
                wb.count = Some(&count);
                for (i, p) in parts.iter().enumerate() {
                    wb.apply(&mut z, p, wb_noise[i].as_ref(), &patterns[i]);
                }
                (parts, ddim_noise)
            }
        };
        // Aggregate: z_hat = (1 / C) sum_i S_i s_hat_i on covered entries; others keep theirs.
        clear_covered(&mut z_hat, &count);
        for p in &parts {
            Zip::from(&mut z_hat)
                .and(&p.s_hat)
                .for_each(|a, &b| *a += b);
        }
        for mut zc in z_hat.outer_iter_mut() {
            Zip::from(&mut zc).and(&count).for_each(|v, &n| {
                if n > 1.0 {
                    *v /= n
                }
            });
        }
        // Move z to the next level from z_hat (DDIM with eta); not after the last step.
        if let Some((abn, s)) = ddim {
            let a_hat = abn.sqrt() as f32;
            let a_eps = ((1.0 - abn - s * s).max(0.0).sqrt() / (1.0 - ab).sqrt()) as f32;
            let sab = ab.sqrt() as f32;
            Zip::from(&mut z).and(&z_hat).for_each(|z, &zh| {
                *z = zh * a_hat + (*z - zh * sab) * a_eps;
            });
            if let Some(noise) = &ddim_noise {
                let s = s as f32;
                Zip::from(&mut z).and(noise).for_each(|z, &n| *z += n * s);
            }
        }
        st.steps += 1;
        let done = sh.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(cb) = &opts.progress {
            cb(done, sh.total);
        }
    }
    let t0 = Instant::now();
    let image = sh.op.adjoint(z_hat.view(), None);
    let t_adj = t0.elapsed();
    st.operators += t_adj;
    st.wall = start.elapsed();
    st.other += st.wall.saturating_sub(excluded + t_adj);
    Ok((image, st))
}

/// Checks everything a run needs before any work: options against the operator, the prior
/// against the operator, and the partial-mask sampler.
fn prepare<'a>(
    prior: &'a dyn PartialDenoiser,
    op: &'a dyn Operator,
    opts: &'a SamplerOptions,
    n: usize,
    what: &str,
) -> Result<Shared<'a>> {
    if n == 0 {
        return Err(Error::invalid(format!(
            "the number of {what} must be at least 1, got 0"
        )));
    }
    opts.validate(op)?;
    prior.check(op)?;
    let kind = opts.partial_kind(op.image_shape().1);
    CoverageSampler::new(kind.clone())?;
    Ok(Shared {
        prior,
        op,
        opts,
        kind,
        posterior: None,
        done: AtomicUsize::new(0),
        total: opts.steps * n,
    })
}

/// Runs `n` chains (in parallel across chains; each chain's result depends only on its seed).
fn run_chains(sh: &Shared, n: usize) -> Result<(Vec<Array2<C32>>, Stats)> {
    let start = Instant::now();
    let results: Vec<Result<(Array2<C32>, Stats)>> = (0..n)
        .into_par_iter()
        .map(|k| chain(sh, sample_seed(sh.opts.seed, k)))
        .collect();
    let mut stats = Stats::default();
    let mut images = Vec::with_capacity(n);
    for r in results {
        let (img, s) = r?;
        stats += s;
        images.push(img);
    }
    stats.wall = start.elapsed();
    Ok((images, stats))
}

/// Draws `n` images from the prior with Algorithm 1 (MSM.md section 4). Sample `k` is seeded
/// with [`sample_seed`]`(opts.seed, k)`, so the result does not depend on the thread count.
pub fn generate(
    prior: &dyn PartialDenoiser,
    op: &dyn Operator,
    opts: &SamplerOptions,
    n: usize,
) -> Result<Generated> {
    let sh = prepare(prior, op, opts, n, "images to generate")?;
    let (images, stats) = run_chains(&sh, n)?;
    Ok(Generated { images, stats })
}

/// Posterior sampling (MSM.md section 5): draws `recon.samples` images given the acquired
/// k-space `y` (shape `(coils, height, width)`; entries off `acq` are ignored) with the
/// data-consistency step on every partial estimate, and returns their mean, the standard
/// deviation of their magnitudes, and the samples, all on the input's scale.
pub fn reconstruct(
    prior: &dyn PartialDenoiser,
    op: &dyn Operator,
    y: ArrayView3<C32>,
    acq: &Mask,
    opts: &SamplerOptions,
    recon: &ReconOptions,
) -> Result<Reconstruction> {
    recon.validate(op, y.dim(), acq)?;
    let mut sh = prepare(prior, op, opts, recon.samples, "posterior samples")?;
    if y.iter().any(|v| !v.re.is_finite() || !v.im.is_finite()) {
        return Err(Error::invalid("the k-space contains NaN or Inf"));
    }
    let factor = match recon.scale_target {
        Some(target) => scale::normalisation(op, y, acq, target)?,
        None => 1.0,
    };
    let mut ys = y.mapv(|v| v * factor as f32);
    apply_mask(&mut ys, acq);
    let acq_pattern = acq.to_pattern(op.image_shape().0);
    sh.posterior = Some(Posterior {
        y: &ys,
        acq: &acq_pattern,
        lambda: recon.lambda as f32,
    });
    let (mut samples, mut stats) = run_chains(&sh, recon.samples)?;
    if recon.final_dc > 0 {
        let start = Instant::now();
        let cg = CgOptions {
            iterations: recon.final_dc,
            ..CgOptions::default()
        };
        for s in &mut samples {
            *s = cg_refine(op, ys.view(), acq, s, cg)?.0;
        }
        let spent = start.elapsed();
        stats.operators += spent;
        stats.wall += spent;
    }
    let inv = (1.0 / factor) as f32;
    for s in &mut samples {
        s.mapv_inplace(|v| v * inv);
    }
    let n = samples.len() as f32;
    let shape = samples[0].dim();
    let mut mean = Array2::<C32>::zeros(shape);
    let mut mag_mean = Array2::<f32>::zeros(shape);
    for s in &samples {
        Zip::from(&mut mean).and(s).for_each(|m, &v| *m += v / n);
        Zip::from(&mut mag_mean)
            .and(s)
            .for_each(|m, &v| *m += v.norm() / n);
    }
    let mut std = Array2::<f32>::zeros(shape);
    if samples.len() > 1 {
        for s in &samples {
            Zip::from(&mut std)
                .and(s)
                .and(&mag_mean)
                .for_each(|d, &v, &m| *d += (v.norm() - m).powi(2));
        }
        std.mapv_inplace(|v| (v / (n - 1.0)).sqrt());
    }
    Ok(Reconstruction {
        mean,
        std,
        samples,
        scale: factor,
        stats,
    })
}
