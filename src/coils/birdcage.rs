//! Analytic coil sensitivity maps for simulation.
//!
//! The birdcage model of SigPy (`sigpy.mri.birdcage_maps`): `Nc` coils on a circle of radius
//! `r` (in units of the half field of view) around the centre; coil `c` sees a pixel with
//! magnitude `1 / distance` and a phase that turns around the coil. The maps are divided by
//! their root-sum-of-squares, so `sum_c |C_c|^2 = 1` at every pixel.

use crate::{Error, Result, C32};
use ndarray::Array3;

/// Birdcage coil maps of shape `(ncoils, height, width)`, coils on a circle of radius 1.5 half
/// fields of view, normalised so that `sum_c |C_c|^2 = 1` everywhere.
pub fn birdcage(ncoils: usize, height: usize, width: usize) -> Result<Array3<C32>> {
    birdcage_radius(ncoils, height, width, 1.5)
}

/// Birdcage coil maps with the coil circle radius `r` (in half fields of view, > 1 puts the
/// coils outside the image).
pub fn birdcage_radius(ncoils: usize, height: usize, width: usize, r: f64) -> Result<Array3<C32>> {
    if ncoils == 0 || height == 0 || width == 0 {
        return Err(Error::invalid(format!(
            "coil maps need at least one coil and a non-empty grid, got {ncoils} coils of \
             {height}x{width}"
        )));
    }
    let nc = ncoils as f64;
    let mut maps = Array3::from_shape_fn((ncoils, height, width), |(c, y, x)| {
        let angle = c as f64 * 2.0 * std::f64::consts::PI / nc;
        let (coil_x, coil_y) = (r * angle.cos(), r * angle.sin());
        let xc = (x as f64 - width as f64 / 2.0) / (width as f64 / 2.0) - coil_x;
        let yc = (y as f64 - height as f64 / 2.0) / (height as f64 / 2.0) - coil_y;
        let rr = (xc * xc + yc * yc).sqrt().max(1e-6);
        let phi = xc.atan2(-yc) - angle;
        let m = 1.0 / rr;
        C32::new((m * phi.cos()) as f32, (m * phi.sin()) as f32)
    });
    for y in 0..height {
        for x in 0..width {
            let rss: f32 = (0..ncoils)
                .map(|c| maps[(c, y, x)].norm_sqr())
                .sum::<f32>()
                .sqrt();
            for c in 0..ncoils {
                maps[(c, y, x)] /= rss;
            }
        }
    }
    Ok(maps)
}
