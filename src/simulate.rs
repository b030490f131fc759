//! Simulated acquisitions (DATA.md, "Simulating an acquisition"): a magnitude slice is padded to
//! a square, resampled to the grid, normalised to peak 1, given a smooth random phase,
//! multiplied by coil maps, Fourier transformed, masked, and corrupted by complex Gaussian noise.
//!
//! Noise convention: `noise_std` is the standard deviation of the real part and of the
//! imaginary part of each measured k-space entry (k-space is in orthonormal FFT units, so an
//! image-domain pixel sees the same std).

use crate::coils;
use crate::mask::{self, Acs, Mask};
use crate::sense::{Operator, Sense};
use crate::{Error, Result, C32};
use ndarray::{Array2, Array3, ArrayView2};
use rand::{Rng, RngExt};
use rand_distr::StandardNormal;

/// Which Cartesian pattern to draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pattern {
    /// fastMRI random columns with an ACS block.
    Random,
    /// Every R-th column with an ACS block.
    Equispaced,
    /// Random entries around a central ACS square whose side is the ACS size
    /// ([`mask::random_entries`]): k-space undersampled along both axes, as the `(phase
    /// encode, partition)` slices of a 3-D scan are.
    Random2d,
    /// Like [`Pattern::Random2d`], but entries far from the centre are kept less often, with
    /// the density [`SimOptions::density`] (by default `(1 - r)^2`,
    /// [`mask::density::SIMULATED_DENSITY_POWER`]; [`mask::variable_density_entries`]), as
    /// compressed-sensing 3-D protocols sample.
    VariableDensity2d,
    /// The same density as [`Pattern::VariableDensity2d`], drawn as a Poisson disc
    /// ([`mask::poisson_disc_entries`]): no kept entries closer than a radius that grows with
    /// the distance from the centre, and no gaps wider, as BART's `poisson` and the vendors'
    /// compressed-sensing 3-D sequences sample.
    PoissonDisc2d,
}

impl std::fmt::Display for Pattern {
    /// The pattern's name on the command line (`msm simulate --pattern`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pattern::Random => "random",
            Pattern::Equispaced => "equispaced",
            Pattern::Random2d => "random-2d",
            Pattern::VariableDensity2d => "variable-density-2d",
            Pattern::PoissonDisc2d => "poisson-disc-2d",
        })
    }
}

/// Options of [`simulate`].
#[derive(Clone, Debug, PartialEq)]
pub struct SimOptions {
    /// Grid height.
    pub height: usize,
    /// Grid width (the phase-encode axis).
    pub width: usize,
    /// Number of coils.
    pub coils: usize,
    /// Acceleration R.
    pub accel: f64,
    /// ACS block.
    pub acs: Acs,
    /// Mask pattern.
    pub pattern: Pattern,
    /// Noise std of the real and of the imaginary part of each measured entry.
    pub noise_std: f64,
    /// Peak magnitude of the random phase's deviation from its mean, in radians.
    pub phase_strength: f64,
    /// The sampling density of [`Pattern::VariableDensity2d`] and [`Pattern::PoissonDisc2d`]
    /// masks; `None`: [`mask::RadialDensity::simulated`]. Must be `None` for other patterns.
    pub density: Option<mask::RadialDensity>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            height: 128,
            width: 128,
            coils: 8,
            accel: 4.0,
            acs: Acs::Lines(20),
            pattern: Pattern::Random,
            noise_std: 0.0,
            phase_strength: std::f64::consts::FRAC_PI_2,
            density: None,
        }
    }
}

/// A simulated acquisition.
#[derive(Clone, Debug)]
pub struct Acquisition {
    /// Undersampled noisy multi-coil k-space `(coils, height, width)`, zero off the mask.
    pub kspace: Array3<C32>,
    /// Coil maps `(coils, height, width)`.
    pub maps: Array3<C32>,
    /// The sampling mask: columns, or entries for [`Pattern::Random2d`].
    pub mask: Mask,
    /// The complex ground-truth image (magnitude peak 1, smooth phase).
    pub reference: Array2<C32>,
}

/// Pads a magnitude image to a square (centred, zeros) and resamples it bilinearly to
/// `height x width`. Pixel centres are aligned (the half-pixel convention).
pub fn resample(image: ArrayView2<f32>, height: usize, width: usize) -> Array2<f32> {
    let (h0, w0) = image.dim();
    let n = h0.max(w0);
    let (oy, ox) = ((n - h0) as f64 / 2.0, (n - w0) as f64 / 2.0);
    let sample = |y: f64, x: f64| -> f64 {
        // (y, x) in padded-square pixel coordinates.
        let (yi, xi) = (y - oy, x - ox);
        if yi < -0.5 || xi < -0.5 || yi > h0 as f64 - 0.5 || xi > w0 as f64 - 0.5 {
            return 0.0;
        }
        let y0 = yi.floor().clamp(0.0, (h0 - 1) as f64);
        let x0 = xi.floor().clamp(0.0, (w0 - 1) as f64);
        let y1 = (y0 + 1.0).min((h0 - 1) as f64);
        let x1 = (x0 + 1.0).min((w0 - 1) as f64);
        let fy = (yi - y0).clamp(0.0, 1.0);
        let fx = (xi - x0).clamp(0.0, 1.0);
        let v = |a: f64, b: f64| image[(a as usize, b as usize)] as f64;
        (1.0 - fy) * ((1.0 - fx) * v(y0, x0) + fx * v(y0, x1))
            + fy * ((1.0 - fx) * v(y1, x0) + fx * v(y1, x1))
    };
    Array2::from_shape_fn((height, width), |(i, j)| {
        let y = (i as f64 + 0.5) * n as f64 / height as f64 - 0.5;
        let x = (j as f64 + 0.5) * n as f64 / width as f64 - 0.5;
        sample(y, x) as f32
    })
}

/// A smooth random phase map: a random quadratic polynomial in normalised coordinates
/// (x, y in [-1, 1]), scaled so that its largest deviation from the mean is `strength` radians.
pub fn smooth_phase<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    strength: f64,
    rng: &mut R,
) -> Array2<f32> {
    let a: Vec<f64> = (0..6)
        .map(|_| rng.sample::<f64, _>(StandardNormal))
        .collect();
    let offset: f64 = rng.random_range(-std::f64::consts::PI..std::f64::consts::PI);
    let raw = Array2::from_shape_fn((height, width), |(i, j)| {
        let y = 2.0 * (i as f64 + 0.5) / height as f64 - 1.0;
        let x = 2.0 * (j as f64 + 0.5) / width as f64 - 1.0;
        a[0] * x + a[1] * y + a[2] * x * y + a[3] * x * x + a[4] * y * y + 0.5 * a[5] * x * y * y
    });
    let mean = raw.mean().unwrap_or(0.0);
    let dev = raw.iter().fold(0.0f64, |m, v| m.max((v - mean).abs()));
    let k = if dev > 0.0 { strength / dev } else { 0.0 };
    raw.mapv(|v| ((v - mean) * k + offset) as f32)
}

/// Adds complex Gaussian noise (std `std` on real and imaginary parts) to the entries `mask`
/// keeps.
pub fn add_noise<R: Rng + ?Sized>(y: &mut Array3<C32>, mask: &Mask, std: f64, rng: &mut R) {
    if std <= 0.0 {
        return;
    }
    let (_, h, w) = y.dim();
    for mut coil in y.outer_iter_mut() {
        for i in 0..h {
            for j in 0..w {
                if mask.keeps(i, j) {
                    let re: f64 = rng.sample(StandardNormal);
                    let im: f64 = rng.sample(StandardNormal);
                    coil[(i, j)] += C32::new((re * std) as f32, (im * std) as f32);
                }
            }
        }
    }
}

/// Simulates an acquisition of a magnitude `image` (any size; resampled to the grid).
pub fn simulate<R: Rng + ?Sized>(
    image: ArrayView2<f32>,
    opts: &SimOptions,
    rng: &mut R,
) -> Result<Acquisition> {
    if image.is_empty() {
        return Err(Error::invalid("the input image is empty"));
    }
    if image.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid("the input image contains NaN or Inf"));
    }
    if !(opts.noise_std >= 0.0 && opts.noise_std.is_finite()) {
        return Err(Error::invalid(format!(
            "noise std must be finite and >= 0, got {}",
            opts.noise_std
        )));
    }
    let mag = resample(image.mapv(f32::abs).view(), opts.height, opts.width);
    let peak = mag.iter().cloned().fold(0.0f32, f32::max);
    if peak <= 0.0 {
        return Err(Error::invalid("the input image is all zero"));
    }
    let phase = smooth_phase(opts.height, opts.width, opts.phase_strength, rng);
    let reference = ndarray::Zip::from(&mag)
        .and(&phase)
        .map_collect(|&m, &p| C32::from_polar(m / peak, p));
    let maps = coils::birdcage(opts.coils, opts.height, opts.width)?;
    let simulated = mask::RadialDensity::simulated();
    let density = opts.density.as_ref().unwrap_or(&simulated);
    if opts.density.is_some()
        && !matches!(
            opts.pattern,
            Pattern::VariableDensity2d | Pattern::PoissonDisc2d
        )
    {
        return Err(Error::invalid(format!(
            "a sampling density is for variable-density-2d and poisson-disc-2d masks, not for \
             {} ones",
            opts.pattern
        )));
    }
    let m = match opts.pattern {
        Pattern::Random => Mask::Columns(mask::random_cartesian(
            opts.width, opts.accel, opts.acs, rng,
        )?),
        Pattern::Equispaced => {
            let r = opts.accel.round();
            if (r - opts.accel).abs() > 1e-9 || r < 1.0 {
                return Err(Error::invalid(format!(
                    "equispaced masks need a whole acceleration, got {}",
                    opts.accel
                )));
            }
            let offset = rng.random_range(0..r as usize);
            Mask::Columns(mask::equispaced(opts.width, r as usize, opts.acs, offset)?)
        }
        Pattern::Random2d | Pattern::VariableDensity2d | Pattern::PoissonDisc2d => {
            let (h, w, r) = (opts.height, opts.width, opts.accel);
            let side = opts.acs.lines(h.min(w));
            Mask::Pattern(match opts.pattern {
                Pattern::VariableDensity2d => {
                    mask::variable_density_entries(h, w, r, side, density, rng)?
                }
                Pattern::PoissonDisc2d => mask::poisson_disc_entries(h, w, r, side, density, rng)?,
                _ => mask::random_entries(h, w, r, side, rng)?,
            })
        }
    };
    let op = Sense::new(maps.clone())?;
    let mut kspace = op.forward(reference.view(), Some(&m));
    add_noise(&mut kspace, &m, opts.noise_std, rng);
    Ok(Acquisition {
        kspace,
        maps,
        mask: m,
        reference,
    })
}
