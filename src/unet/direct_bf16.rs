//! 3x3, stride-1, padding-1 convolutions in bf16 on AVX512-BF16 registers (`vdpbf16ps`), f32
//! accumulation: the bf16 form for CPUs without AMX tiles (AMD Zen 4 and later, Intel Cooper
//! Lake Xeons).
//!
//! One `vdpbf16ps` multiplies 16 pairs of bf16 values by 16 pairs and adds both products of each
//! pair into one f32 lane: 32 multiply-adds an instruction where an f32 FMA does 16. Where the
//! core issues it as fast as an FMA (measured on AMD Zen 5: 2.0x the f32 FMA rate; on an Intel
//! Xeon without AMX it was 0.57x), the convolutions run up to twice as fast as the f32
//! [`super::direct`] kernel, at bf16's precision: inputs and weights are rounded to 8
//! significant bits, products and sums stay f32 (as on the AMX tiles, [`super::amx`]).
//!
//! The input is packed once per call ([`super::bf16::pack_pairs`]: channel pairs interleaved,
//! zero border, GroupNorm's affine and SiLU applied on the way); the weights once at load as
//! `[9][cout][pairs]` bf16 pairs. A register block is 8 output channels x 3 vectors of 16
//! pixels (24 accumulators), as in [`super::direct`], whose driver (`direct::run`: the
//! cut into pieces, the block's bias start and its stores) this kernel shares: for each tap and
//! channel pair it loads 3 input vectors (16 pixels x 2 channels each), broadcasts 8 weight
//! pairs and issues 24 `vdpbf16ps`.
//!
//! Each output is the bias plus the pair products summed over taps (outer) and channel pairs
//! (inner), in that order, whatever piece computes it: bit-identical for any thread count.

use std::arch::x86_64::*;

use super::bf16::{pack_pairs, pair, PACKED};
use super::direct::{run, start, store, Block, Kernel, Vector, M};
use super::pieces::with_buffer;

/// Whether this CPU runs the kernel here (AVX-512F, AVX-512BW and AVX512-BF16).
pub fn available() -> bool {
    super::bf16::available()
}

/// A 3x3, stride-1, padding-1 convolution with bf16 weights, for [`available`] CPUs.
#[derive(Debug, Clone)]
pub struct DirectBf16 {
    /// `[9][cout][pairs]` bf16 pairs (input channels `2p`, `2p + 1`; an odd last channel pairs
    /// with zero).
    weights: Vec<u32>,
    /// `[cout]`.
    bias: Vec<f32>,
    cin: usize,
}

impl DirectBf16 {
    /// Rounds weights `taps` (`[9, cout, cin]` f32) to bf16 pairs; `bias` (`[cout]`) stays f32.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn new(taps: &[f32], bias: &[f32], cin: usize) -> DirectBf16 {
        let cout = bias.len();
        assert_eq!(taps.len(), 9 * cout * cin, "bf16 direct conv weights");
        let pairs = cin.div_ceil(2);
        let mut weights = Vec::with_capacity(9 * cout * pairs);
        for row in taps.chunks_exact(cin.max(1)).take(9 * cout) {
            weights
                .extend((0..pairs).map(|p| pair(row[2 * p], *row.get(2 * p + 1).unwrap_or(&0.0))));
        }
        DirectBf16 {
            weights,
            bias: bias.to_vec(),
            cin,
        }
    }

    /// `out` (emptied, then `[cout, h, w]`) = the convolution of `pre(x)` (`x` `[cin, h, w]`)
    /// plus the bias, where `pre = Some((coef, silu))` maps channel `ci` to `coef[ci][0] v +
    /// coef[ci][1]`, then SiLU if `silu` (applied while packing). With `up`, `x` is `[cin, h /
    /// 2, w / 2]` and the convolution's input its nearest-neighbour 2x upsampling.
    ///
    /// # Panics
    /// If the lengths do not match the sizes, or the CPU is not [`available`].
    pub fn forward(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        pre: Option<(&[[f32; 2]], bool)>,
        up: bool,
        out: &mut Vec<f32>,
    ) {
        assert!(available(), "bf16 direct convolution needs AVX512-BF16");
        let (cin, cout) = (self.cin, self.bias.len());
        let shrink = if up { 4 } else { 1 };
        assert_eq!(x.len() * shrink, cin * h * w, "bf16 direct conv input");
        if let Some((coef, _)) = pre {
            assert_eq!(coef.len(), cin, "bf16 direct conv input coefficients");
        }
        let len = cout * h * w;
        out.clear();
        out.reserve(len);
        if len == 0 {
            return;
        }
        with_buffer(&PACKED, |xq| {
            // SAFETY: the features checked above.
            unsafe { pack_pairs(x, cin, h, w, pre, up, xq) };
            // SAFETY: AVX512-BF16 checked above; `xq` is `pack_pairs`'s layout for `cin x h x
            // w`, the weights and bias hold `cout` channels, and `out` holds no values and has
            // room for `len`.
            unsafe { run::<Bf16>(xq, cin.div_ceil(2), h, w, &self.weights, &self.bias, out) };
        });
    }
}

/// The bf16 kernel: 24 `vdpbf16ps` per channel pair and tap, weight pairs broadcast from
/// `[9][cout][pairs]`.
struct Bf16;

impl Kernel for Bf16 {
    type T = u32;

    unsafe fn block<const V: usize>(a: &Block<u32>, vs: &[Vector]) {
        // SAFETY: the caller's contract (AVX512-BF16: `DirectBf16::forward` checked it).
        unsafe { block_bf16::<V>(a, vs) }
    }
}

/// [`Bf16`]'s block (see [`Kernel::block`]).
///
/// # Safety
/// AVX-512F and AVX512-BF16; as [`Kernel::block`].
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn block_bf16<const V: usize>(a: &Block<u32>, vs: &[Vector]) {
    let (wrow, mut acc, base) = start::<u32, M, V>(a, vs);
    let masks: [u16; V] = std::array::from_fn(|j| vs[j].mask);
    for t in 0..9 {
        let off = (t / 3) * a.row + t % 3;
        let wt = t * a.cout * a.k;
        for p in 0..a.k {
            let x: [__m512bh; V] = std::array::from_fn(|j| {
                let v = _mm512_maskz_loadu_epi32(masks[j], base[j].add(off + p * a.wp).cast());
                std::mem::transmute::<__m512i, __m512bh>(v)
            });
            for m in 0..M {
                let wv = _mm512_set1_epi32(*wrow[m].add(wt + p) as i32);
                let wv = std::mem::transmute::<__m512i, __m512bh>(wv);
                for j in 0..V {
                    acc[m][j] = _mm512_dpbf16_ps(acc[m][j], x[j], wv);
                }
            }
        }
    }
    store(a, vs, &acc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::bf16::{bf16, tests::unbf16};
    use crate::unet::kernels::affine_generic;
    use crate::unet::test_support::{assert_same_bits_on_any_pool, RandomConv};

    /// Against f64 loops over the definition on the same bf16-rounded weights and inputs (the
    /// affine and SiLU in f32, then rounded; the kernel's approximate SiLU stays within one
    /// bf16 step of it, so the tolerance allows that step on every input): widths below, at and
    /// between multiples of 16, an odd channel count, a partial block of 8 output channels,
    /// and a band cut (more rows than one band holds).
    #[test]
    fn matches_the_definition_on_rounded_values() {
        if !available() {
            eprintln!("no AVX512-BF16 on this CPU: bf16 direct convolution not exercised");
            return;
        }
        let r = |v: f32| unbf16(bf16(v));
        for &(cin, cout, h, w, pre, up) in &[
            (2, 32, 5, 16, false, false),
            (3, 5, 7, 9, true, false),
            (16, 11, 4, 40, true, false),
            (32, 2, 9, 32, false, false),
            (128, 16, 40, 24, true, false),
            (5, 9, 6, 18, false, true),
            (64, 16, 80, 36, true, true),
        ] {
            let (sh, sw) = if up { (h / 2, w / 2) } else { (h, w) };
            let RandomConv {
                taps,
                bias,
                x,
                coef,
            } = RandomConv::new(5, cin, cout, cin * sh * sw, 8.0);
            let conv = DirectBf16::new(&taps, &bias, cin);
            let mut out = vec![f32::NAN; 3];
            conv.forward(&x, h, w, pre.then_some((&coef[..], true)), up, &mut out);
            assert_eq!(out.len(), cout * h * w);
            let input = |ci: usize, y: usize, xx: usize| -> f32 {
                let (y, xx) = if up { (y / 2, xx / 2) } else { (y, xx) };
                let v = x[(ci * sh + y) * sw + xx];
                if !pre {
                    return v;
                }
                let mut u = [0.0f32];
                affine_generic(&mut u, &[v], coef[ci][0], coef[ci][1], true);
                u[0]
            };
            for co in 0..cout {
                for y in 0..h {
                    for xx in 0..w {
                        let (mut s, mut bound) = (f64::from(bias[co]), 0.0f64);
                        for t in 0..9 {
                            let (iy, ix) = (y + t / 3, xx + t % 3);
                            if iy < 1 || ix < 1 || iy > h || ix > w {
                                continue;
                            }
                            for ci in 0..cin {
                                let wv = f64::from(r(taps[(t * cout + co) * cin + ci]));
                                let u = input(ci, iy - 1, ix - 1);
                                s += wv * f64::from(r(u));
                                // One bf16 step of the input where the SiLU is approximate.
                                if pre {
                                    bound += (wv * f64::from(u)).abs() / 128.0;
                                }
                            }
                        }
                        let g = f64::from(out[(co * h + y) * w + xx]);
                        assert!(
                            (g - s).abs() < 1e-4 * (1.0 + s.abs()) + bound,
                            "{cin}->{cout} {h}x{w} pre {pre} up {up}: ({co}, {y}, {xx}) {g} vs {s}"
                        );
                    }
                }
            }
        }
    }

    /// The same call gives the same bits on a pool of 1, 2 or 3 threads (the summation order
    /// does not depend on the pieces).
    #[test]
    fn bit_identical_on_any_pool() {
        if !available() {
            eprintln!("no AVX512-BF16 on this CPU: bf16 direct convolution not exercised");
            return;
        }
        let (cin, cout, h, w) = (64, 24, 70, 40);
        let l = RandomConv::new(9, cin, cout, cin * h * w, 1.0);
        let conv = DirectBf16::new(&l.taps, &l.bias, cin);
        assert_same_bits_on_any_pool(|out| conv.forward(&l.x, h, w, None, false, out));
    }
}
