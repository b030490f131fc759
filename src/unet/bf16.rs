//! bf16 values and the packed input both bf16 convolution kernels read ([`super::amx`] on AMX
//! tiles, [`super::direct_bf16`] on AVX512-BF16 registers).
//!
//! Both instructions (`tdpbf16ps`, `vdpbf16ps`) multiply pairs of bf16 values and add the two
//! products into one f32 lane, so the input is packed with channel pairs interleaved:
//! `[h + 2][pairs][w + 2]` of `u32`, each the pair (channel `2p` in the low half, `2p + 1` in
//! the high half), zero-padded by one pixel. A tap `(ky, kx)` of a 3x3 convolution is then a
//! fixed offset into it: the nine taps read the same packed input shifted in place.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::direct::{lanes, load_row};
use super::kernels::silu16;
use super::pieces::{self, Disjoint, PIECES};

thread_local! {
    /// The packed input ([`pack_pairs`]) of the last bf16 convolution on this thread, either
    /// kernel's (reused through [`super::pieces::with_buffer`]: no allocation, no clearing per
    /// call).
    pub(super) static PACKED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// f32 to bf16, rounding to nearest even (finite values; activations and weights are).
#[inline(always)]
pub fn bf16(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// Two values rounded to bf16 as one pair: `lo` in the low half, `hi` in the high half.
pub fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(bf16(lo)) | (u32::from(bf16(hi)) << 16)
}

/// Packs `pre(x)` (`x` `[c, h, w]` f32) into the start of `xq` (grown if shorter, never
/// shrunk) as `[h + 2][c.div_ceil(2)][w + 2]` bf16 pairs with a zero border (an odd last channel pairs with zeros), where `pre = Some((coef,
/// silu))` maps channel `ci` to `coef[ci][0] v + coef[ci][1]`, then SiLU if `silu`, and `None`
/// is the identity. With `up`, `x` is `[c, h / 2, w / 2]` and is packed upsampled to `h x w`
/// (nearest neighbour, `h` and `w` even): the upsampled image is never written out.
///
/// In pieces over channel pairs; within a piece one pass, 16 pixels of a pair at a time
/// (affine, SiLU (`kernels::silu16`), rounding and interleaving in registers; the last vector of a
/// row masked): two sequential input streams keep the hardware prefetchers ahead, and each
/// padded row of a pair is `w + 2` contiguous writes.
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW and AVX512-BF16 ([`available`]).
///
/// # Panics
/// If `x` or `coef` is shorter than the sizes say.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub unsafe fn pack_pairs(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    pre: Option<(&[[f32; 2]], bool)>,
    up: bool,
    xq: &mut Vec<u32>,
) {
    let (wp, pairs) = (w + 2, c.div_ceil(2));
    let row = pairs * wp;
    let (sh, sw) = if up { (h / 2, w / 2) } else { (h, w) };
    assert!(
        !up || (h.is_multiple_of(2) && w.is_multiple_of(2)),
        "bf16 packing: odd upsampled size"
    );
    let plane = sh * sw;
    assert!(x.len() >= c * plane, "bf16 packing input");
    if let Some((coef, _)) = pre {
        assert!(coef.len() >= c, "bf16 packing coefficients");
    }
    // Every value of the layout is written below (the buffer may hold another layout's
    // values, and past the layout stays as it was).
    pieces::grow(xq, (h + 2) * row);
    xq[..row].fill(0);
    xq[(h + 1) * row..(h + 2) * row].fill(0);
    let parts = PIECES.min(pairs);
    let dst = Disjoint::new(xq.as_mut_ptr());
    pieces::run(parts, |part| {
        let src = x.as_ptr();
        for p in pieces::range(pairs, parts, part) {
            let coefficients = |ch: usize| match pre {
                _ if ch >= c => ([0.0, 0.0], false),
                Some((coef, silu)) => (coef[ch], silu),
                None => ([1.0, 0.0], false),
            };
            let ([a0, b0], silu) = coefficients(2 * p);
            let ([a1, b1], _) = coefficients(2 * p + 1);
            let has_odd = 2 * p + 1 < c;
            for y in 0..h {
                // SAFETY: the caller's contract (the CPU features). Rows `y` of channels `2p` and
                // `2p + 1` (when it exists) lie inside `x` (length checked), and the padded
                // row `y + 1` of pair `p` inside `xq` (grown above), which only this piece
                // writes; the masks keep the vector loads and stores inside those rows.
                unsafe {
                    let s0 = src.add(2 * p * plane + if up { y / 2 } else { y } * sw);
                    let d = dst.ptr().add((y + 1) * row + p * wp);
                    *d = 0;
                    *d.add(wp - 1) = 0;
                    for i in (0..w).step_by(16) {
                        let m = lanes(w - i);
                        let e = load_row(s0, i, w - i, up);
                        let mut e = _mm512_fmadd_ps(e, _mm512_set1_ps(a0), _mm512_set1_ps(b0));
                        let o = if has_odd {
                            load_row(s0.add(plane), i, w - i, up)
                        } else {
                            _mm512_setzero_ps()
                        };
                        let mut o = _mm512_fmadd_ps(o, _mm512_set1_ps(a1), _mm512_set1_ps(b1));
                        if silu {
                            e = silu16::<false>(e);
                            o = silu16::<false>(o);
                        }
                        let pair = round_pairs(e, o);
                        _mm512_mask_storeu_epi32(d.add(1 + i).cast(), m, pair);
                    }
                }
            }
        }
    });
}

/// [`pair`] on 16 lanes: lane `i` is `pair(lo[i], hi[i])`. One `vcvtne2ps2bf16` rounds both
/// vectors (to nearest even, as [`bf16`]; it flushes subnormals to zero) into one vector of 32
/// bf16 values, `lo`'s first, and one `vpermw` interleaves them.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline]
pub(super) fn round_pairs(lo: __m512, hi: __m512) -> __m512i {
    // SAFETY: both are 512 bits of plain integers.
    let both = unsafe { std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo)) };
    let idx = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
        19, 3, 18, 2, 17, 1, 16, 0,
    );
    _mm512_permutexvar_epi16(idx, both)
}

/// Whether this CPU has what [`pack_pairs`] and `round_pairs` use (AVX-512F, AVX-512BW,
/// AVX512-BF16).
pub fn available() -> bool {
    super::kernels::avx512()
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512bf16")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::unet::kernels::lcg;

    /// bf16 bits back to f32.
    pub fn unbf16(v: u16) -> f32 {
        f32::from_bits(u32::from(v) << 16)
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even (1.0).
        assert_eq!(bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(unbf16(bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert_eq!(unbf16(bf16(-2.5)), -2.5);
        assert_eq!(pair(1.0, -2.5), 0x3f80 | (u32::from(bf16(-2.5)) << 16));
    }

    /// The packed input: the per-channel affine and SiLU in f32 (the exact formula), rounded
    /// to bf16, within one bf16 step (2^-8 relative: the rounding plus the approximate SiLU),
    /// channel pairs interleaved, zero border; widths below, at and past 16, and an odd
    /// channel count (the last pair's high half zero).
    #[test]
    fn packing_normalises_rounds_and_interleaves() {
        if !available() {
            eprintln!("no AVX512-BF16 on this CPU: bf16 packing not exercised");
            return;
        }
        for &(c, h, w) in &[(6, 5, 32), (5, 3, 7), (3, 4, 21)] {
            let mut rnd = lcg(11);
            // Values across the SiLU's range, both signs, up to |8|.
            let x: Vec<f32> = (0..c * h * w).map(|_| 16.0 * rnd()).collect();
            let coef: Vec<[f32; 2]> = (0..c).map(|_| [1.0 + rnd(), rnd()]).collect();
            for silu in [false, true] {
                let mut xq = vec![7u32; 3];
                // SAFETY: the features checked above.
                unsafe { pack_pairs(&x, c, h, w, Some((&coef, silu)), false, &mut xq) };
                let (wp, pairs) = (w + 2, c.div_ceil(2));
                assert!(xq.len() >= (h + 2) * pairs * wp);
                for yy in 0..h + 2 {
                    for p in 0..pairs {
                        for xx in 0..wp {
                            let v = xq[(yy * pairs + p) * wp + xx];
                            let inside = (1..=h).contains(&yy) && (1..=w).contains(&xx);
                            if !inside {
                                assert_eq!(v, 0, "border at row {yy}, pair {p}, column {xx}");
                                continue;
                            }
                            for k in 0..2 {
                                let ch = 2 * p + k;
                                let got = unbf16((v >> (16 * k)) as u16);
                                if ch >= c {
                                    assert_eq!(got, 0.0, "padding channel {ch}");
                                    continue;
                                }
                                let src = x[(ch * h + yy - 1) * w + xx - 1];
                                let mut want = [0.0f32];
                                crate::unet::kernels::affine_generic(
                                    &mut want,
                                    &[src],
                                    coef[ch][0],
                                    coef[ch][1],
                                    silu,
                                );
                                let tol = want[0].abs() / 256.0 + 1e-6;
                                assert!(
                                    (got - want[0]).abs() <= tol,
                                    "{c}x{h}x{w} channel {ch} at ({yy}, {xx}), silu {silu}: \
                                     {got} vs {}",
                                    want[0]
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
