//! The acquisition simulator (private to `data`): slices of the training volume -> measurements.
//! The clean slice lives only inside [`Simulator::simulate`]; what leaves is a [`Measurement`].

use std::f64::consts::PI;
use std::sync::Arc;

use ndarray::{s, Array2, Array3, Axis};
use rand::{Rng, RngExt};
use rand_distr::StandardNormal;
use rustfft::{Fft, FftPlanner};

use super::{DataConfig, Measurement, Orientation};
use msm::{Error, Result, C32};

/// Training volume and the slices that may be drawn from it.
pub(super) struct Simulator {
    /// Volume normalised to max 1, indexed `[x, y, z]`.
    vol: Array3<f32>,
    /// The volume with the held-out axial slab removed (for coronal and sagittal slices).
    excised: Array3<f32>,
    axial: Vec<usize>,
    coronal: Vec<usize>,
    sagittal: Vec<usize>,
    cfg: DataConfig,
    fft: Arc<dyn Fft<f32>>,
    ifft: Arc<dyn Fft<f32>>,
    maps: Array3<C32>,
}

fn occupied(slice: ndarray::ArrayView2<f32>) -> bool {
    let n = slice.len().max(1);
    slice.iter().filter(|&&v| v > 0.1).count() as f64 / n as f64 >= 0.15
}

impl Simulator {
    pub(super) fn new(vol: Array3<f32>, cfg: &DataConfig) -> Result<Simulator> {
        let (nx, ny, nz) = vol.dim();
        let (h0, h1) = (cfg.held_out_axial[0], cfg.held_out_axial[1]);
        if h0 > h1 || h1 > nz {
            return Err(Error::invalid(format!(
                "held-out axial block {h0}..{h1} is not inside the volume's {nz} axial slices"
            )));
        }
        let max = vol.iter().fold(0.0f32, |m, &v| m.max(v));
        if max <= 0.0 {
            return Err(Error::invalid("training volume is empty (all voxels <= 0)"));
        }
        let vol = vol.mapv(|v| v.max(0.0) / max);
        let keep: Vec<usize> = (0..nz).filter(|z| !(h0..h1).contains(z)).collect();
        let excised = vol.select(Axis(2), &keep);
        let axial = keep
            .iter()
            .copied()
            .filter(|&z| occupied(vol.slice(s![.., .., z])))
            .collect::<Vec<_>>();
        let coronal = (0..ny)
            .filter(|&y| occupied(excised.slice(s![.., y, ..])))
            .collect::<Vec<_>>();
        let sagittal = (0..nx)
            .filter(|&x| occupied(excised.slice(s![x, .., ..])))
            .collect::<Vec<_>>();
        if axial.is_empty() || coronal.is_empty() || sagittal.is_empty() {
            return Err(Error::invalid(
                "training volume has no slice with at least 15% of its pixels above 10% of the maximum in some orientation",
            ));
        }
        let n = cfg.image_size;
        let mut planner = FftPlanner::new();
        Ok(Simulator {
            vol,
            excised,
            axial,
            coronal,
            sagittal,
            fft: planner.plan_fft_forward(n),
            ifft: planner.plan_fft_inverse(n),
            maps: birdcage(cfg.coils, n, n),
            cfg: cfg.clone(),
        })
    }

    pub(super) fn slice_counts(&self) -> [(Orientation, usize); 3] {
        [
            (Orientation::Axial, self.axial.len()),
            (Orientation::Coronal, self.coronal.len()),
            (Orientation::Sagittal, self.sagittal.len()),
        ]
    }

    fn draw_slice<R: Rng + ?Sized>(&self, rng: &mut R) -> Array2<f32> {
        match rng.random_range(0..3) {
            0 => {
                let z = self.axial[rng.random_range(0..self.axial.len())];
                self.vol.slice(s![.., .., z]).to_owned()
            }
            1 => {
                let y = self.coronal[rng.random_range(0..self.coronal.len())];
                self.excised.slice(s![.., y, ..]).to_owned()
            }
            _ => {
                let x = self.sagittal[rng.random_range(0..self.sagittal.len())];
                self.excised.slice(s![x, .., ..]).to_owned()
            }
        }
    }

    /// One simulated scan: slice, augmentation, phase, coils, FFT, mask, scaling, noise.
    pub(super) fn simulate<R: Rng + ?Sized>(&self, rng: &mut R) -> Measurement {
        let n = self.cfg.image_size;
        let src = self.draw_slice(rng);
        let image = augment(&src, n, self.cfg.max_rotation_deg, rng);
        let phase = smooth_phase(n, rng);
        let x = Array2::from_shape_fn((n, n), |(i, j)| {
            C32::from_polar(image[(i, j)], phase[(i, j)])
        });
        let mask = random_mask(n, self.cfg.acceleration, self.cfg.acs_lines, rng);
        let mut k = Array3::<C32>::zeros((self.cfg.coils, n, n));
        for (c, mut kc) in k.outer_iter_mut().enumerate() {
            let mut coil = &self.maps.index_axis(Axis(0), c) * &x;
            fft2c(&mut coil, &self.fft);
            for ((_, j), v) in coil.indexed_iter_mut() {
                if !mask[j] {
                    *v = C32::new(0.0, 0.0);
                }
            }
            kc.assign(&coil);
        }
        // Scanner gain: scale so that the zero-filled image's maximum is about 1.
        let mut zf = Array2::<C32>::zeros((n, n));
        for (c, kc) in k.outer_iter().enumerate() {
            let mut im = kc.to_owned();
            fft2c(&mut im, &self.ifft);
            for ((i, j), v) in im.indexed_iter() {
                zf[(i, j)] += self.maps[(c, i, j)].conj() * v;
            }
        }
        let peak = zf.iter().fold(0.0f32, |m, v| m.max(v.norm()));
        let target: f64 = rng.random_range(0.8..1.2);
        let gain = if peak > 0.0 {
            (target / peak as f64) as f32
        } else {
            1.0
        };
        let eta = self.cfg.noise_eta;
        k.indexed_iter_mut().for_each(|((_, _, j), v)| {
            if mask[j] {
                *v *= gain;
                if eta > 0.0 {
                    let re: f64 = rng.sample(StandardNormal);
                    let im: f64 = rng.sample(StandardNormal);
                    *v += C32::new((re * eta) as f32, (im * eta) as f32);
                }
            }
        });
        Measurement {
            kspace: k,
            maps: self.maps.clone(),
            mask,
            eta,
        }
    }
}

/// Resamples `src` onto an `n x n` grid covering its larger side, with a random zoom (0.9 to 1.1),
/// rotation (up to `max_deg`), flips of both axes and a contrast change (gamma 0.8 to 1.25).
fn augment<R: Rng + ?Sized>(src: &Array2<f32>, n: usize, max_deg: f64, rng: &mut R) -> Array2<f32> {
    let (a, b) = src.dim();
    let zoom: f64 = rng.random_range(0.9..1.1);
    let theta = rng.random_range(-max_deg..=max_deg) * PI / 180.0;
    let fi = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
    let fj = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
    let gamma: f64 = rng.random_range(0.8..1.25);
    let scale = a.max(b) as f64 / n as f64 * zoom;
    let c = (n as f64 - 1.0) / 2.0;
    let (ca, cb) = ((a as f64 - 1.0) / 2.0, (b as f64 - 1.0) / 2.0);
    let (cs, sn) = (theta.cos(), theta.sin());
    Array2::from_shape_fn((n, n), |(i, j)| {
        let di = (i as f64 - c) * scale * fi;
        let dj = (j as f64 - c) * scale * fj;
        let si = ca + cs * di - sn * dj;
        let sj = cb + sn * di + cs * dj;
        let v = bilinear(src, si, sj);
        (v.max(0.0) as f64).powf(gamma) as f32
    })
}

fn bilinear(src: &Array2<f32>, y: f64, x: f64) -> f32 {
    let (h, w) = src.dim();
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = ((y - y0) as f32, (x - x0) as f32);
    let at = |yy: f64, xx: f64| -> f32 {
        if yy < 0.0 || xx < 0.0 || yy >= h as f64 || xx >= w as f64 {
            0.0
        } else {
            src[(yy as usize, xx as usize)]
        }
    };
    at(y0, x0) * (1.0 - fy) * (1.0 - fx)
        + at(y0, x0 + 1.0) * (1.0 - fy) * fx
        + at(y0 + 1.0, x0) * fy * (1.0 - fx)
        + at(y0 + 1.0, x0 + 1.0) * fy * fx
}

/// A smooth random phase: a random quadratic polynomial over [-1, 1]^2.
fn smooth_phase<R: Rng + ?Sized>(n: usize, rng: &mut R) -> Array2<f32> {
    let a0 = rng.random_range(-PI..PI);
    let lin: [f64; 2] = [rng.random_range(-1.5..1.5), rng.random_range(-1.5..1.5)];
    let quad: [f64; 3] = [
        rng.random_range(-0.75..0.75),
        rng.random_range(-0.75..0.75),
        rng.random_range(-0.75..0.75),
    ];
    let c = (n as f64 - 1.0) / 2.0;
    Array2::from_shape_fn((n, n), |(i, j)| {
        let (y, x) = ((i as f64 - c) / c, (j as f64 - c) / c);
        (a0 + lin[0] * x + lin[1] * y + quad[0] * x * x + quad[1] * y * y + quad[2] * x * y) as f32
    })
}

/// A random Cartesian column mask (fastMRI style): the ACS block is kept, every other column with
/// the probability that makes the expected fraction 1 / `accel`.
pub(super) fn random_mask<R: Rng + ?Sized>(
    w: usize,
    accel: f64,
    acs: usize,
    rng: &mut R,
) -> Vec<bool> {
    let pad = (w - acs).div_ceil(2);
    let prob = if w == acs {
        0.0
    } else {
        ((w as f64 / accel - acs as f64) / (w - acs) as f64).clamp(0.0, 1.0)
    };
    (0..w)
        .map(|j| {
            let draw: f64 = rng.random();
            (pad..pad + acs).contains(&j) || draw < prob
        })
        .collect()
}

/// Birdcage coil maps (SigPy's model, coils on a circle of radius 1.5), normalised so that
/// sum_c |C_c|^2 = 1 at every pixel.
pub(super) fn birdcage(ncoils: usize, h: usize, w: usize) -> Array3<C32> {
    let nc = ncoils as f64;
    let mut maps = Array3::from_shape_fn((ncoils, h, w), |(c, y, x)| {
        let angle = c as f64 * 2.0 * PI / nc;
        let (cx, cy) = (1.5 * angle.cos(), 1.5 * angle.sin());
        let xc = (x as f64 - w as f64 / 2.0) / (w as f64 / 2.0) - cx;
        let yc = (y as f64 - h as f64 / 2.0) / (h as f64 / 2.0) - cy;
        let rr = (xc * xc + yc * yc).sqrt().max(1e-6);
        let phi = xc.atan2(-yc) - angle;
        C32::from_polar((1.0 / rr) as f32, phi as f32)
    });
    for y in 0..h {
        for x in 0..w {
            let rss = (0..ncoils)
                .map(|c| maps[(c, y, x)].norm_sqr())
                .sum::<f32>()
                .sqrt();
            for c in 0..ncoils {
                maps[(c, y, x)] /= rss;
            }
        }
    }
    maps
}

/// Centred orthonormal 2-D DFT in place (square grid): ifftshift, FFT of rows and columns
/// with 1/sqrt(N) each, fftshift. A forward plan gives F, an inverse plan F^H.
pub(super) fn fft2c(x: &mut Array2<C32>, plan: &Arc<dyn Fft<f32>>) {
    let n = x.nrows();
    let half = n / 2;
    let scale = 1.0 / (n as f32).sqrt();
    // ifftshift, transform, fftshift along each axis in turn.
    for axis in [Axis(0), Axis(1)] {
        for mut lane in x.lanes_mut(axis) {
            let mut buf: Vec<C32> = (0..n).map(|i| lane[(i + half) % n]).collect();
            plan.process(&mut buf);
            let up = n - half;
            for i in 0..n {
                lane[i] = buf[(i + up) % n] * scale;
            }
        }
    }
}
