//! What the convolution kernels' tests share: a seeded random layer, the definition of a
//! 3x3 convolution in f64, and the check that a call gives the same bits on any pool.

use super::kernels::lcg;

/// A random 3x3 layer and its input, drawn from [`lcg`]`(seed)` in this order: weights
/// `taps` (`[9, cout, cin]`), `bias`, the input `x` (`len` values scaled by `scale`), and
/// per-channel input coefficients `coef` (`[1 + u, u]`, as a normalisation's affine).
pub struct RandomConv {
    pub taps: Vec<f32>,
    pub bias: Vec<f32>,
    pub x: Vec<f32>,
    pub coef: Vec<[f32; 2]>,
}

impl RandomConv {
    /// See [`RandomConv`].
    pub fn new(seed: u64, cin: usize, cout: usize, len: usize, scale: f32) -> RandomConv {
        let mut rnd = lcg(seed);
        let taps = (0..9 * cout * cin).map(|_| rnd()).collect();
        let bias = (0..cout).map(|_| rnd()).collect();
        let x = (0..len).map(|_| scale * rnd()).collect();
        let coef = (0..cin).map(|_| [1.0 + rnd(), rnd()]).collect();
        RandomConv {
            taps,
            bias,
            x,
            coef,
        }
    }
}

/// The 3x3, stride-1, zero-padded convolution of `pre(x)` in f64, `[cout, h, w]`: `x` is
/// `[cin, h, w]`, or `[cin, h / 2, w / 2]` nearest-neighbour upsampled if `up`; `pre =
/// Some(coef)` maps channel `ci` to `coef[ci][0] v + coef[ci][1]`, then SiLU.
#[allow(clippy::too_many_arguments)]
pub fn reference(
    x: &[f32],
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    taps: &[f32],
    bias: &[f32],
    pre: Option<&[[f32; 2]]>,
    up: bool,
) -> Vec<f64> {
    let (sh, sw) = if up { (h / 2, w / 2) } else { (h, w) };
    let input = |ci: usize, y: usize, xx: usize| -> f64 {
        let (y, xx) = if up { (y / 2, xx / 2) } else { (y, xx) };
        let v = f64::from(x[(ci * sh + y) * sw + xx]);
        match pre {
            None => v,
            Some(coef) => {
                let u = f64::from(coef[ci][0]) * v + f64::from(coef[ci][1]);
                u / (1.0 + (-u).exp())
            }
        }
    };
    let mut out = vec![0.0; cout * h * w];
    for co in 0..cout {
        for y in 0..h {
            for xx in 0..w {
                let mut s = f64::from(bias[co]);
                for t in 0..9 {
                    let (iy, ix) = (y + t / 3, xx + t % 3);
                    if iy < 1 || ix < 1 || iy > h || ix > w {
                        continue;
                    }
                    for ci in 0..cin {
                        s +=
                            f64::from(taps[(t * cout + co) * cin + ci]) * input(ci, iy - 1, ix - 1);
                    }
                }
                out[(co * h + y) * w + xx] = s;
            }
        }
    }
    out
}

/// Asserts that `run` (which fills its output) gives the same bits on a pool of 1, 2 or 3
/// threads.
pub fn assert_same_bits_on_any_pool(run: impl Fn(&mut Vec<f32>) + Sync) {
    let bits = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut out = Vec::new();
        pool.install(|| run(&mut out));
        out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    let one = bits(1);
    assert_eq!(bits(2), one);
    assert_eq!(bits(3), one);
}
