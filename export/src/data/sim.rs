//! The acquisition simulator (private to `data`): slices of the training volume -> measurements.
//! The clean slice lives only inside [`Simulator::simulate`]; what leaves is a [`Measurement`].
//!
//! Shared with the runtime: slices are cut with [`Volume::slice`] (display orientation), the
//! coil maps are [`msm::coils::birdcage`], masks [`msm::mask::random_cartesian`] (or
//! [`msm::mask::random_entries`], [`msm::mask::variable_density_entries`]: `data.mask`), the
//! smooth phase [`msm::simulate::smooth_phase`], the noise [`msm::simulate::add_noise`] and the
//! operator [`msm::sense::Sense`]. The geometric augmentation (zoom, rotation, flips) is one
//! bilinear warp of the source slice ([`Warp`]); without zoom, rotation or flips it samples the
//! same points as [`msm::simulate::resample`] (tested below), so training slices and the
//! runtime's simulated slices share one geometry.

use std::f64::consts::PI;

use ndarray::{Array2, ArrayView2, Zip};
use rand::{Rng, RngExt};

use super::{DataConfig, MaskKind, Measurement};
use msm::io::nifti::{Plane, Volume};
use msm::mask::{
    random_cartesian, random_entries, variable_density_entries, Acs, Mask, RadialDensity,
};
use msm::sense::{Operator, Sense};
use msm::simulate::{add_noise, smooth_phase};
use msm::{Error, Result, C32};

/// The planes slices are drawn from, in the order the simulator picks them.
const PLANES: [Plane; 3] = [Plane::Axial, Plane::Coronal, Plane::Sagittal];

/// Training volume and the slices that may be drawn from it.
pub(super) struct Simulator {
    /// Volume normalised to max 1 (for axial slices outside the held-out block).
    vol: Volume,
    /// The volume with the held-out axial slab removed (for coronal and sagittal slices).
    excised: Volume,
    /// Drawable slice indices per plane, in the order of [`PLANES`].
    slices: [Vec<usize>; 3],
    cfg: DataConfig,
    /// The noise std added to every measurement.
    eta: f64,
    op: Sense,
}

/// Whether at least 15% of a slice's pixels exceed 10% of the volume maximum (1).
fn occupied(slice: ArrayView2<f32>) -> bool {
    let n = slice.len().max(1);
    slice.iter().filter(|&&v| v > 0.1).count() as f64 / n as f64 >= 0.15
}

impl Simulator {
    pub(super) fn new(vol: Volume, cfg: &DataConfig) -> Result<Simulator> {
        let eta = cfg.noise_eta.fixed().ok_or_else(|| {
            Error::invalid("simulated measurements need a noise std, not \"estimate\"")
        })?;
        let nz = vol.slice_count(Plane::Axial);
        let (h0, h1) = (cfg.held_out_axial[0], cfg.held_out_axial[1]);
        if h0 > h1 || h1 > nz {
            return Err(Error::invalid(format!(
                "held-out axial block {h0}..{h1} is not inside the volume's {nz} axial slices"
            )));
        }
        let max = vol.data.iter().fold(0.0f32, |m, &v| m.max(v));
        if max <= 0.0 {
            return Err(Error::invalid("training volume is empty (all voxels <= 0)"));
        }
        let vol = Volume {
            data: vol.data.mapv(|v| v.max(0.0) / max),
            voxel_size: vol.voxel_size,
        };
        let keep: Vec<usize> = (0..nz).filter(|z| !(h0..h1).contains(z)).collect();
        let excised = Volume {
            data: vol.data.select(ndarray::Axis(2), &keep),
            voxel_size: vol.voxel_size,
        };
        let drawable = |v: &Volume, plane: Plane, allowed: &dyn Fn(usize) -> bool| {
            (0..v.slice_count(plane))
                .filter(|&i| allowed(i))
                .filter(|&i| v.slice(plane, i).is_ok_and(|s| occupied(s.view())))
                .collect::<Vec<_>>()
        };
        let slices = [
            drawable(&vol, Plane::Axial, &|z| !(h0..h1).contains(&z)),
            drawable(&excised, Plane::Coronal, &|_| true),
            drawable(&excised, Plane::Sagittal, &|_| true),
        ];
        if slices.iter().any(|s| s.is_empty()) {
            return Err(Error::invalid(
                "training volume has no slice with at least 15% of its pixels above 10% of the \
                 maximum in some orientation",
            ));
        }
        let n = cfg.image_size;
        let op = Sense::new(msm::coils::birdcage(cfg.coils, n, n)?)?;
        Ok(Simulator {
            vol,
            excised,
            slices,
            cfg: cfg.clone(),
            eta,
            op,
        })
    }

    pub(super) fn slice_counts(&self) -> [(Plane, usize); 3] {
        [0, 1, 2].map(|i| (PLANES[i], self.slices[i].len()))
    }

    fn draw_slice<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<Array2<f32>> {
        let p = rng.random_range(0..3);
        let list = &self.slices[p];
        let index = list[rng.random_range(0..list.len())];
        let source = if PLANES[p] == Plane::Axial {
            &self.vol
        } else {
            &self.excised
        };
        source.slice(PLANES[p], index)
    }

    /// One simulated scan: slice, augmentation, phase, coils, FFT, mask, scaling, noise.
    pub(super) fn simulate<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<Measurement> {
        let n = self.cfg.image_size;
        let src = self.draw_slice(rng)?;
        let warp = Warp::random(self.cfg.max_rotation_deg, rng);
        let gamma: f64 = rng.random_range(0.8..1.25);
        let image = warp
            .apply(src.view(), n)
            .mapv(|v| (v.max(0.0) as f64).powf(gamma) as f32);
        let [lo, hi] = self.cfg.phase_strength;
        let strength = if hi > lo {
            rng.random_range(lo..hi)
        } else {
            lo
        };
        let phase = smooth_phase(n, n, strength, rng);
        let x = Zip::from(&image)
            .and(&phase)
            .map_collect(|&m, &p| C32::from_polar(m, p));
        let (accel, acs) = (self.cfg.acceleration, self.cfg.acs_lines);
        let mask = match self.cfg.mask {
            MaskKind::Random => Mask::Columns(random_cartesian(n, accel, Acs::Lines(acs), rng)?),
            MaskKind::Random2d => Mask::Pattern(random_entries(n, n, accel, acs, rng)?),
            MaskKind::VariableDensity2d => Mask::Pattern(variable_density_entries(
                n,
                n,
                accel,
                acs,
                &RadialDensity::simulated(),
                rng,
            )?),
        };
        let mut k = self.op.forward(x.view(), Some(&mask));
        // Scanner gain: scale so that the zero-filled image's maximum is 0.8 to 1.2.
        let zf = self.op.adjoint(k.view(), Some(&mask));
        let peak = zf.iter().fold(0.0f32, |m, v| m.max(v.norm()));
        let target: f64 = rng.random_range(0.8..1.2);
        let gain = if peak > 0.0 {
            (target / peak as f64) as f32
        } else {
            1.0
        };
        k.mapv_inplace(|v| v * gain);
        add_noise(&mut k, &mask, self.eta, rng);
        Ok(Measurement {
            kspace: k,
            maps: self.op.maps().clone(),
            mask,
            eta: self.eta,
        })
    }
}

/// A random zoom, rotation and flips of a slice, resampled onto the `n x n` training grid.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Warp {
    /// Field of view relative to the slice's larger side (1: the whole side).
    zoom: f64,
    /// Rotation in radians.
    theta: f64,
    /// Flip of the rows (-1) or not (1).
    flip_rows: f64,
    /// Flip of the columns (-1) or not (1).
    flip_cols: f64,
}

impl Warp {
    /// A random warp: zoom 0.9 to 1.1, rotation up to `max_deg` either way, each axis flipped
    /// with probability 1/2.
    fn random<R: Rng + ?Sized>(max_deg: f64, rng: &mut R) -> Warp {
        let zoom = rng.random_range(0.9..1.1);
        let theta = rng.random_range(-max_deg..=max_deg) * PI / 180.0;
        let flip_rows = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let flip_cols = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        Warp {
            zoom,
            theta,
            flip_rows,
            flip_cols,
        }
    }

    /// Bilinear resampling of `src` onto an `n x n` grid covering its larger side (centred, as
    /// [`msm::simulate::resample`] pads to a square), warped; outside the slice is 0.
    fn apply(&self, src: ArrayView2<f32>, n: usize) -> Array2<f32> {
        let (a, b) = src.dim();
        let scale = a.max(b) as f64 / n as f64 * self.zoom;
        let c = (n as f64 - 1.0) / 2.0;
        let (ca, cb) = ((a as f64 - 1.0) / 2.0, (b as f64 - 1.0) / 2.0);
        let (cs, sn) = (self.theta.cos(), self.theta.sin());
        Array2::from_shape_fn((n, n), |(i, j)| {
            let di = (i as f64 - c) * scale * self.flip_rows;
            let dj = (j as f64 - c) * scale * self.flip_cols;
            bilinear(src, ca + cs * di - sn * dj, cb + sn * di + cs * dj)
        })
    }
}

/// Bilinear interpolation at `(y, x)`; neighbours outside the image count as 0.
fn bilinear(src: ArrayView2<f32>, y: f64, x: f64) -> f32 {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Without zoom, rotation or flips the warp samples the slice at the points the runtime's
    /// `resample` uses (pad to a square, pixel centres aligned), so both agree away from the
    /// border (where they treat the outside differently).
    #[test]
    fn identity_warp_equals_runtime_resample() {
        let src = Array2::from_shape_fn((37, 29), |(i, j)| {
            ((i * 7 + j * 13) % 17) as f32 + 0.1 * (i as f32).sin()
        });
        let identity = Warp {
            zoom: 1.0,
            theta: 0.0,
            flip_rows: 1.0,
            flip_cols: 1.0,
        };
        for n in [24, 64] {
            let ours = identity.apply(src.view(), n);
            let runtime = msm::simulate::resample(src.view(), n, n);
            let scale = 37.0 / n as f64;
            let c = (n as f64 - 1.0) / 2.0;
            let mut compared = 0;
            for ((i, j), v) in ours.indexed_iter() {
                let y = 18.0 + (i as f64 - c) * scale;
                let x = 14.0 + (j as f64 - c) * scale;
                if (0.0..=36.0).contains(&y) && (0.0..=28.0).contains(&x) {
                    assert!((v - runtime[(i, j)]).abs() < 1e-4, "n {n} ({i}, {j})");
                    compared += 1;
                }
            }
            assert!(compared > n * n / 2, "only {compared} interior pixels");
        }
    }

    /// Flips mirror the grid exactly.
    #[test]
    fn flips_mirror_the_grid() {
        let src = Array2::from_shape_fn((20, 20), |(i, j)| (i * 20 + j) as f32);
        let mut w = Warp {
            zoom: 1.0,
            theta: 0.0,
            flip_rows: 1.0,
            flip_cols: 1.0,
        };
        let plain = w.apply(src.view(), 20);
        assert_eq!(plain, src);
        w.flip_rows = -1.0;
        let flipped = w.apply(src.view(), 20);
        assert_eq!(flipped, src.slice(ndarray::s![..;-1, ..]));
    }
}
