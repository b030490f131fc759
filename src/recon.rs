//! Classical reconstructions, the floor every learned method is compared with: the zero-filled
//! image `A_S^H y` and CG-SENSE, conjugate gradients on the normal equations
//! `(A_S^H A_S + lambda I) x = A_S^H y`.

use crate::mask::Mask;
use crate::sense::Operator;
use crate::{Error, Result, C32};
use ndarray::{Array2, ArrayView3, Zip};

/// Options for [`cg_sense`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgOptions {
    /// Tikhonov weight `lambda >= 0`.
    pub lambda: f32,
    /// Maximum number of CG iterations.
    pub iterations: usize,
    /// Stop when the residual norm falls below `tolerance` times the initial one.
    pub tolerance: f32,
}

impl Default for CgOptions {
    fn default() -> Self {
        CgOptions {
            lambda: 0.0,
            iterations: 30,
            tolerance: 1e-6,
        }
    }
}

/// The zero-filled (coil-combined) image `A_S^H y`.
pub fn zero_filled(op: &dyn Operator, y: ArrayView3<C32>, mask: &Mask) -> Array2<C32> {
    op.adjoint(y, Some(mask))
}

fn dot(a: &Array2<C32>, b: &Array2<C32>) -> f64 {
    Zip::from(a)
        .and(b)
        .fold(0.0, |acc, x, y| acc + (x.conj() * y).re as f64)
}

/// CG-SENSE: conjugate gradients on `(A_S^H A_S + lambda I) x = A_S^H y`, starting from zero.
/// Returns the image and the number of iterations run.
pub fn cg_sense(
    op: &dyn Operator,
    y: ArrayView3<C32>,
    mask: &Mask,
    opts: CgOptions,
) -> Result<(Array2<C32>, usize)> {
    cg_solve(op, y, mask, None, opts)
}

/// Data consistency for an estimate `x0`: CG on the same normal equations started from `x0`,
/// so that after `opts.iterations` steps the image fits the acquired data `y` more closely
/// while keeping what `x0` holds outside the range the data constrain (CG only moves `x0`
/// within the Krylov space of `A_S^H A_S` built on the initial residual). Returns the image
/// and the number of iterations run.
pub fn cg_refine(
    op: &dyn Operator,
    y: ArrayView3<C32>,
    mask: &Mask,
    x0: &Array2<C32>,
    opts: CgOptions,
) -> Result<(Array2<C32>, usize)> {
    if x0.dim() != op.image_shape() {
        return Err(Error::invalid(format!(
            "the start image is {:?}; the operator's images are {:?}",
            x0.dim(),
            op.image_shape()
        )));
    }
    cg_solve(op, y, mask, Some(x0), opts)
}

fn cg_solve(
    op: &dyn Operator,
    y: ArrayView3<C32>,
    mask: &Mask,
    x0: Option<&Array2<C32>>,
    opts: CgOptions,
) -> Result<(Array2<C32>, usize)> {
    if !(opts.lambda >= 0.0 && opts.lambda.is_finite()) {
        return Err(Error::invalid(format!(
            "the Tikhonov weight must be finite and >= 0, got {}",
            opts.lambda
        )));
    }
    let b = op.adjoint(y, Some(mask));
    let (mut x, mut r) = match x0 {
        None => (Array2::<C32>::zeros(b.dim()), b.clone()),
        Some(x0) => {
            // r = b - (A^H A + lambda I) x0
            let mut ax = op.normal(x0.view(), Some(mask));
            if opts.lambda > 0.0 {
                Zip::from(&mut ax)
                    .and(x0)
                    .for_each(|a, &p| *a += p * opts.lambda);
            }
            let mut r = b.clone();
            Zip::from(&mut r).and(&ax).for_each(|r, &a| *r -= a);
            (x0.clone(), r)
        }
    };
    let mut p = r.clone();
    let mut rr = dot(&r, &r);
    let stop = dot(&b, &b) * (opts.tolerance as f64).powi(2);
    let mut done = 0;
    for _ in 0..opts.iterations {
        if rr <= stop || rr == 0.0 {
            break;
        }
        let mut ap = op.normal(p.view(), Some(mask));
        if opts.lambda > 0.0 {
            Zip::from(&mut ap)
                .and(&p)
                .for_each(|a, &p| *a += p * opts.lambda);
        }
        let alpha = (rr / dot(&p, &ap)) as f32;
        Zip::from(&mut x).and(&p).for_each(|x, &p| *x += p * alpha);
        Zip::from(&mut r).and(&ap).for_each(|r, &a| *r -= a * alpha);
        let rr_new = dot(&r, &r);
        let beta = (rr_new / rr) as f32;
        Zip::from(&mut p)
            .and(&r)
            .for_each(|p, &r| *p = r + *p * beta);
        rr = rr_new;
        done += 1;
    }
    Ok((x, done))
}
