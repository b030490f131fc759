//! Scale handling for real data: scanner k-space has an arbitrary scale, the network one it
//! was trained on. The k-space is multiplied by a factor that brings a robust maximum (the 99th
//! percentile) of the zero-filled magnitude `|A_P^H y|` to the model's target; results are
//! divided by it again.

use crate::mask::Mask;
use crate::sense::Operator;
use crate::{Error, Result, C32};
use ndarray::ArrayView3;

/// The 99th percentile (nearest rank) of the zero-filled magnitude `|A_P^H y|`.
pub fn robust_max(op: &dyn Operator, y: ArrayView3<C32>, acq: &Mask) -> f64 {
    let u = op.adjoint(y, Some(acq));
    let mut mags: Vec<f32> = u.iter().map(|v| v.norm()).collect();
    if mags.is_empty() {
        return 0.0;
    }
    let rank = ((0.99 * mags.len() as f64).ceil() as usize).clamp(1, mags.len()) - 1;
    let (_, v, _) = mags.select_nth_unstable_by(rank, f32::total_cmp);
    *v as f64
}

/// The factor to multiply `y` by so that [`robust_max`] becomes `target`.
pub fn normalisation(
    op: &dyn Operator,
    y: ArrayView3<C32>,
    acq: &Mask,
    target: f64,
) -> Result<f64> {
    let m = robust_max(op, y, acq);
    if !(m.is_finite() && m > 0.0) {
        return Err(Error::invalid(format!(
            "cannot normalise the k-space: the 99th percentile of the zero-filled magnitude is \
             {m} (expected a finite value > 0; is the k-space all zero on the mask?)"
        )));
    }
    Ok(target / m)
}
