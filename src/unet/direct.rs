//! 3x3, stride-1, padding-1 convolutions in f32 computed directly on AVX-512 registers: no
//! per-tap matrix products, so no packing of either operand per call.
//!
//! The input is copied once per call into a zero-padded, row-interleaved layout
//! `[h + 2][cin][w + 2]` (for one output row, the three input rows of every channel lie
//! together), with the layer's GroupNorm affine and SiLU applied on the way
//! ([`Conv::forward_normed`](super::kernels::Conv::forward_normed) hands them over instead of
//! writing a normalised copy first). A register block of the output is 8 output channels x
//! 3 vectors of 16 pixels (24 accumulators): for each tap and input channel it loads 3 input
//! vectors, broadcasts 8 weights straight from the `[9, cout, cin]` weights, and issues 24 FMAs.
//! Rows of any width run (the last vector of a row is masked), so every 3x3 stride-1
//! convolution of the UNet takes this path on CPUs with AVX-512F. Convolutions with at most
//! two output channels (the UNet's output one) run a block of 2 channels x 12 vectors
//! instead, where the 8-channel block would waste three quarters of its multiplies.
//!
//! Each output is the bias plus the products summed over taps (outer) and input channels
//! (inner), in that order, whatever block or piece computes it: results are bit-identical
//! for any cut into pieces (`super::pieces`) and any thread count.
//!
//! The driver (`run`: the cut into pieces, a block's bias start and its stores) is generic
//! over the register-block `Kernel`; [`super::direct_bf16`] is the other one.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::kernels::silu16;
use super::pieces::{self, Disjoint, PIECES};

/// Output channels of a register block.
pub(super) const M: usize = 8;
/// Pixel vectors (16 pixels each) of a register block.
pub(super) const N: usize = 3;
/// Input rows (all channels, padded width) a piece's band of output rows may read, in floats
/// (256 KiB): a band's input stays in the core's L2 cache while every channel block sweeps it.
const BAND_FLOATS: usize = 64 * 1024;

/// Whether this CPU runs the AVX-512 kernels here (the standard library caches the answer).
pub fn available() -> bool {
    super::kernels::avx512()
}

thread_local! {
    /// The padded input of the last convolution on this thread (reused across calls).
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// One pixel vector of the output: row `y`, columns `x0..x0 + 16` where `mask` has bits.
#[derive(Clone, Copy)]
pub(super) struct Vector {
    pub y: usize,
    pub x0: usize,
    pub mask: u16,
}

/// `out` (emptied, then `[cout, h, w]`) = the 3x3 convolution of `pre(x)` (`x` `[cin, h, w]`)
/// with `taps` (`[9, cout, cin]`, tap `t = 3 ky + kx`) plus `bias`, where `pre = Some((coef,
/// silu))` maps channel `ci` to `coef[ci][0] v + coef[ci][1]`, then SiLU if `silu`. With `up`,
/// `x` is `[cin, h / 2, w / 2]` and the convolution's input its nearest-neighbour 2x
/// upsampling (made while padding, never written out).
///
/// # Panics
/// If the lengths do not match the sizes, or the CPU has no AVX-512F ([`available`]).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3(
    x: &[f32],
    cin: usize,
    h: usize,
    w: usize,
    taps: &[f32],
    bias: &[f32],
    pre: Option<(&[[f32; 2]], bool)>,
    up: bool,
    out: &mut Vec<f32>,
) {
    assert!(available(), "direct 3x3 convolution needs AVX-512F");
    let cout = bias.len();
    assert!(
        !up || (h.is_multiple_of(2) && w.is_multiple_of(2)),
        "direct conv: odd upsampled size"
    );
    let shrink = if up { 4 } else { 1 };
    assert_eq!(x.len() * shrink, cin * h * w, "direct conv input");
    assert_eq!(taps.len(), 9 * cout * cin, "direct conv weights");
    if let Some((coef, _)) = pre {
        assert_eq!(coef.len(), cin, "direct conv input coefficients");
    }
    let len = cout * h * w;
    out.clear();
    out.reserve(len);
    if len == 0 {
        return;
    }
    pieces::with_buffer(&PADDED, |xp| {
        pad(x, cin, h, w, pre, up, xp);
        let xp = &xp[..(h + 2) * cin * (w + 2)];
        // SAFETY: AVX-512F checked above; `xp` is `pad`'s layout for `cin x h x w`, `taps` and
        // `bias` hold `cout` channels (lengths checked), and `out` holds no values and has
        // room for `len`.
        unsafe {
            if cout <= NARROW_COUT {
                run_narrow(xp, cin, h, w, taps, bias, out);
            } else {
                run::<F32>(xp, cin, h, w, taps, bias, out);
            }
        }
    });
}

/// Calls `run(co, vectors)` once for every block of [`M`] output channels starting at `co` and
/// every band of output rows of an `h x w` image (`vectors`: the band's pixel vectors, row by
/// row), in pieces ([`super::pieces`]): bands of rows whose padded input (`row` values a padded
/// row) stays within [`BAND_FLOATS`], and ranges of channel blocks where the bands are fewer
/// than [`PIECES`]. Every (channel block, vector) pair is handed out exactly once, so the calls
/// write disjoint parts of an output.
fn sweep(
    cout: usize,
    h: usize,
    w: usize,
    row: usize,
    run: impl Fn(usize, &[Vector]) + Sync + Send,
) {
    let rows = (BAND_FLOATS / row.max(1))
        .saturating_sub(2)
        .clamp(1, h.max(1));
    let bands = h.div_ceil(rows);
    let cblocks = cout.div_ceil(M);
    let parts = PIECES.div_ceil(bands.max(1)).min(cblocks);
    pieces::run(bands * parts, |p| {
        let y0 = (p / parts) * rows;
        let vectors: Vec<Vector> = (y0..(y0 + rows).min(h))
            .flat_map(|y| {
                (0..w).step_by(16).map(move |x0| Vector {
                    y,
                    x0,
                    mask: lanes(w - x0),
                })
            })
            .collect();
        for cb in pieces::range(cblocks, parts, p % parts) {
            run(cb * M, &vectors);
        }
    });
}

/// Copies `pre(x)` (`x` `[c, h, w]`, or `[c, h / 2, w / 2]` upsampled if `up`) into the start
/// of `xp` (grown if shorter, never shrunk) as `[h + 2][c][w + 2]` with a zero border.
fn pad(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    pre: Option<(&[[f32; 2]], bool)>,
    up: bool,
    xp: &mut Vec<f32>,
) {
    let (sh, sw) = if up { (h / 2, w / 2) } else { (h, w) };
    let wp = w + 2;
    let row = c * wp;
    // Every value of the layout is written below (the buffer may hold another call's values).
    pieces::grow(xp, (h + 2) * row);
    xp[..row].fill(0.0);
    xp[(h + 1) * row..(h + 2) * row].fill(0.0);
    let parts = PIECES.min(h);
    let dst = Disjoint::new(xp.as_mut_ptr());
    pieces::run(parts, |p| {
        for y in pieces::range(h, parts, p) {
            // SAFETY: padded row `y + 1` (`row` floats) lies inside `xp` (grown above) and
            // only piece `p` writes it.
            let d = unsafe { std::slice::from_raw_parts_mut(dst.ptr().add((y + 1) * row), row) };
            for ci in 0..c {
                let (a, b, silu) = match pre {
                    Some((coef, silu)) => (coef[ci][0], coef[ci][1], silu),
                    None => (1.0, 0.0, false),
                };
                let dr = &mut d[ci * wp..(ci + 1) * wp];
                dr[0] = 0.0;
                dr[wp - 1] = 0.0;
                let sy = if up { y / 2 } else { y };
                let src = &x[(ci * sh + sy) * sw..(ci * sh + sy + 1) * sw];
                // SAFETY: AVX-512F ([`conv3x3`] checked it).
                unsafe { affine_row(&mut dr[1..=w], src, a, b, silu, up) };
            }
        }
    });
}

/// `dst = a src + b`, then SiLU if `silu` ([`silu16`]), 16 values at a time (the tail masked);
/// with `up`, `src` is half as long and each of its values stands for two of `dst`.
#[target_feature(enable = "avx512f")]
pub(super) fn affine_row(dst: &mut [f32], src: &[f32], a: f32, b: f32, silu: bool, up: bool) {
    let (va, vb) = (_mm512_set1_ps(a), _mm512_set1_ps(b));
    let n = dst.len().min(if up { 2 * src.len() } else { src.len() });
    let mut i = 0;
    while i < n {
        let mask = lanes(n - i);
        // SAFETY: `load_row` reads inside `src` (its first `n` values, or `n / 2` if `up`),
        // and the mask keeps the store inside `dst[i..n]`.
        unsafe {
            let v = load_row(src.as_ptr(), i, n - i, up);
            let mut v = _mm512_fmadd_ps(v, va, vb);
            if silu {
                v = silu16::<true>(v);
            }
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), mask, v);
        }
        i += 16;
    }
}

/// Values `i..i + 16` of a row starting at `s` (lanes past `left` zero), or with `up` of its
/// nearest-neighbour 2x upsampling: values `i / 2..i / 2 + 8` of `s`, each twice (`i` even).
///
/// # Safety
/// AVX-512F; `s` holds `i + min(left, 16)` values, or half that (rounded up) if `up`.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn load_row(s: *const f32, i: usize, left: usize, up: bool) -> __m512 {
    if up {
        let dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
        let v = _mm512_maskz_loadu_ps(lanes(left.min(16).div_ceil(2)), s.add(i / 2));
        _mm512_permutexvar_ps(dup, v)
    } else {
        _mm512_maskz_loadu_ps(lanes(left), s.add(i))
    }
}

/// The mask of the first `min(left, 16)` lanes of a vector (`left > 0`).
pub(super) fn lanes(left: usize) -> u16 {
    if left >= 16 {
        u16::MAX
    } else {
        (1u16 << left) - 1
    }
}

/// What a register block reads and where it writes, for either kernel: the input values `T`
/// are f32 ([`F32`]) or bf16 channel pairs ([`super::direct_bf16`]).
pub(super) struct Block<T> {
    /// The padded input `[h + 2][k][w + 2]` ([`pad`], [`super::bf16::pack_pairs`]).
    pub xp: *const T,
    /// Values per padded row of all `k` (`k * (w + 2)`).
    pub row: usize,
    /// Padded width `w + 2`.
    pub wp: usize,
    /// Input values per pixel: channels, or channel pairs.
    pub k: usize,
    /// `[9, cout, k]`.
    pub taps: *const T,
    pub bias: *const f32,
    pub cout: usize,
    /// First output channel of the block.
    pub co: usize,
    /// The output `[cout, h, w]`.
    pub out: *mut f32,
    /// `h * w`.
    pub plane: usize,
    pub w: usize,
}

/// A register-block kernel over [`Block`]'s layouts: output channels `co..co + M` at `V`
/// pixel vectors.
pub(super) trait Kernel {
    /// One input value (of a pixel and channel, or channel pair).
    type T: Sync;

    /// Output channels `co..co + M` (those below `cout`; the others repeat channel `cout -
    /// 1`'s weights and are not stored) at the `V` pixel vectors `vs`.
    ///
    /// # Safety
    /// The CPU has the kernel's features; the pointers hold the layouts [`Block`] names, and
    /// the output rows of `vs` for these channels are this call's to write.
    unsafe fn block<const V: usize>(a: &Block<Self::T>, vs: &[Vector]);
}

/// `out` (empty, with room for `[cout, h, w]`) = the 3x3 convolution of the padded input `xp`
/// (`[h + 2][k][w + 2]`) with `taps` (`[9, cout, k]`) plus `bias`, by kernel `K` over
/// [`sweep`]'s pieces.
///
/// # Safety
/// The CPU has `K`'s features; `xp` and `taps` hold those layouts, `bias` `cout` values.
pub(super) unsafe fn run<K: Kernel>(
    xp: &[K::T],
    k: usize,
    h: usize,
    w: usize,
    taps: &[K::T],
    bias: &[f32],
    out: &mut Vec<f32>,
) {
    let (cout, row) = (bias.len(), k * (w + 2));
    let len = cout * h * w;
    debug_assert!(out.is_empty() && out.capacity() >= len);
    let dst = Disjoint::new(out.as_mut_ptr());
    sweep(cout, h, w, row, |co, vectors| {
        let args = Block {
            xp: xp.as_ptr(),
            row,
            wp: w + 2,
            k,
            taps: taps.as_ptr(),
            bias: bias.as_ptr(),
            cout,
            co,
            out: dst.ptr(),
            plane: h * w,
            w,
        };
        for group in vectors.chunks(N) {
            // SAFETY: the caller's contract; this call writes channels `co..co + M` (those
            // below `cout`) at its vectors only, inside `out`'s capacity, which no other call
            // writes ([`sweep`]).
            unsafe {
                match group.len() {
                    N => K::block::<N>(&args, group),
                    2 => K::block::<2>(&args, group),
                    _ => K::block::<1>(&args, group),
                }
            }
        }
    });
    // SAFETY: the calls wrote every channel at every pixel: all `len` values.
    unsafe { out.set_len(len) };
}

/// A block's weight rows (tap 0; a tap adds `cout * k`), its accumulators started at the bias,
/// and the first input value each of the `V` vectors `vs` reads (output `(y, x)` reads padded
/// rows `y..y + 3` at columns `x..x + 3`), for `C` output channels from `a.co` (those past
/// `cout` repeat channel `cout - 1`): the part of a block every kernel shares.
///
/// # Safety
/// AVX-512F; `a` as in [`Kernel::block`].
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn start<T, const C: usize, const V: usize>(
    a: &Block<T>,
    vs: &[Vector],
) -> ([*const T; C], [[__m512; V]; C], [*const T; V]) {
    let last = a.cout - 1;
    let wrow = std::array::from_fn(|m| a.taps.add((a.co + m).min(last) * a.k));
    let acc = std::array::from_fn(|m| [_mm512_set1_ps(*a.bias.add((a.co + m).min(last))); V]);
    let base = std::array::from_fn(|j| a.xp.add(vs[j].y * a.row + vs[j].x0));
    (wrow, acc, base)
}

/// Stores a block's accumulators (channels below `cout` only, each vector's lanes masked).
///
/// # Safety
/// AVX-512F; `a` as in [`Kernel::block`].
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn store<T, const C: usize, const V: usize>(
    a: &Block<T>,
    vs: &[Vector],
    acc: &[[__m512; V]; C],
) {
    for (m, accs) in acc.iter().enumerate() {
        if a.co + m >= a.cout {
            break;
        }
        for (j, v) in vs.iter().enumerate() {
            let o = a.out.add((a.co + m) * a.plane + v.y * a.w + v.x0);
            _mm512_mask_storeu_ps(o, v.mask, accs[j]);
        }
    }
}

/// The f32 kernel: 24 FMAs per input channel and tap, weights broadcast from `[9, cout, cin]`.
struct F32;

impl Kernel for F32 {
    type T = f32;

    unsafe fn block<const V: usize>(a: &Block<f32>, vs: &[Vector]) {
        // SAFETY: the caller's contract (AVX-512F: `conv3x3` checked it).
        unsafe { block_f32::<V>(a, vs) }
    }
}

/// [`F32`]'s block (see [`Kernel::block`]).
///
/// # Safety
/// AVX-512F; as [`Kernel::block`].
#[target_feature(enable = "avx512f")]
unsafe fn block_f32<const V: usize>(a: &Block<f32>, vs: &[Vector]) {
    let (wrow, mut acc, base) = start::<f32, M, V>(a, vs);
    let masks: [u16; V] = std::array::from_fn(|j| vs[j].mask);
    for t in 0..9 {
        let off = (t / 3) * a.row + t % 3;
        let wt = t * a.cout * a.k;
        for ci in 0..a.k {
            let x: [__m512; V] = std::array::from_fn(|j| {
                _mm512_maskz_loadu_ps(masks[j], base[j].add(off + ci * a.wp))
            });
            for m in 0..M {
                let wv = _mm512_set1_ps(*wrow[m].add(wt + ci));
                for j in 0..V {
                    acc[m][j] = _mm512_fmadd_ps(wv, x[j], acc[m][j]);
                }
            }
        }
    }
    store(a, vs, &acc);
}

/// Output channels up to which [`conv3x3`] runs the narrow block ([`run_narrow`]): the UNet's
/// output convolution (2 channels), where the 8-channel block wastes three quarters of its
/// multiplies.
const NARROW_COUT: usize = 2;
/// Pixel vectors of the narrow block (2 channels x 12 vectors: 24 accumulators, as the
/// 8 x 3 block).
const NARROW_N: usize = 12;

/// [`run`] for at most [`NARROW_COUT`] output channels: blocks of [`NARROW_N`] pixel vectors
/// (4 or 1 at a band's end), the same sums in the same order as the 8-channel block.
///
/// # Safety
/// AVX-512F; as [`run`], with `bias.len() <= NARROW_COUT`.
unsafe fn run_narrow(
    xp: &[f32],
    k: usize,
    h: usize,
    w: usize,
    taps: &[f32],
    bias: &[f32],
    out: &mut Vec<f32>,
) {
    let (cout, row) = (bias.len(), k * (w + 2));
    debug_assert!(cout <= NARROW_COUT && out.is_empty() && out.capacity() >= cout * h * w);
    let dst = Disjoint::new(out.as_mut_ptr());
    sweep(cout, h, w, row, |co, vectors| {
        let args = Block {
            xp: xp.as_ptr(),
            row,
            wp: w + 2,
            k,
            taps: taps.as_ptr(),
            bias: bias.as_ptr(),
            cout,
            co,
            out: dst.ptr(),
            plane: h * w,
            w,
        };
        for group in vectors.chunks(NARROW_N) {
            // SAFETY: the caller's contract; this call writes every channel at its vectors
            // only, inside `out`'s capacity, which no other call writes ([`sweep`]).
            unsafe {
                if group.len() == NARROW_N {
                    block_narrow::<NARROW_N>(&args, group);
                    continue;
                }
                for part in group.chunks(4) {
                    if part.len() == 4 {
                        block_narrow::<4>(&args, part);
                    } else {
                        for v in part.chunks(1) {
                            block_narrow::<1>(&args, v);
                        }
                    }
                }
            }
        }
    });
    // SAFETY: the calls wrote every channel at every pixel.
    unsafe { out.set_len(cout * h * w) };
}

/// The narrow block: [`NARROW_COUT`] output channels at `V` pixel vectors, each input vector
/// loaded once for both channels' FMAs.
///
/// # Safety
/// AVX-512F; as [`Kernel::block`].
#[target_feature(enable = "avx512f")]
unsafe fn block_narrow<const V: usize>(a: &Block<f32>, vs: &[Vector]) {
    let (wrow, mut acc, base) = start::<f32, NARROW_COUT, V>(a, vs);
    for t in 0..9 {
        let off = (t / 3) * a.row + t % 3;
        let wt = t * a.cout * a.k;
        for ci in 0..a.k {
            let wv: [__m512; NARROW_COUT] =
                std::array::from_fn(|m| _mm512_set1_ps(*wrow[m].add(wt + ci)));
            for j in 0..V {
                let x = _mm512_maskz_loadu_ps(vs[j].mask, base[j].add(off + ci * a.wp));
                for m in 0..NARROW_COUT {
                    acc[m][j] = _mm512_fmadd_ps(wv[m], x, acc[m][j]);
                }
            }
        }
    }
    store(a, vs, &acc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::test_support::{reference, RandomConv};

    /// Against f64 loops over the definition (zero padding, bias, the affine and SiLU on the
    /// input, the nearest-neighbour upsampling of the input), on widths below, at and between
    /// multiples of 16, channel counts that leave a partial block of 8, and a band cut (more
    /// rows than one band holds).
    #[test]
    fn matches_the_definition() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: direct convolution not exercised");
            return;
        }
        for &(cin, cout, h, w, pre, up) in &[
            (2, 32, 5, 16, false, false),
            (3, 5, 7, 9, true, false),
            (16, 11, 4, 40, true, false),
            (32, 2, 9, 32, false, false),
            (32, 2, 20, 128, true, false),
            (3, 1, 6, 50, true, false),
            (4, 2, 6, 20, false, true),
            (64, 16, 40, 24, true, false),
            (5, 9, 6, 18, false, true),
            (16, 8, 8, 32, true, true),
            (64, 16, 80, 36, false, true),
        ] {
            let (sh, sw) = if up { (h / 2, w / 2) } else { (h, w) };
            let RandomConv {
                taps,
                bias,
                x,
                coef,
            } = RandomConv::new(3, cin, cout, cin * sh * sw, 8.0);
            let mut out = vec![f32::NAN; 3];
            conv3x3(
                &x,
                cin,
                h,
                w,
                &taps,
                &bias,
                pre.then_some((&coef[..], true)),
                up,
                &mut out,
            );
            assert_eq!(out.len(), cout * h * w);
            let p = pre.then_some(&coef[..]);
            let want = reference(&x, cin, cout, h, w, &taps, &bias, p, up);
            for co in 0..cout {
                for y in 0..h {
                    for xx in 0..w {
                        let i = (co * h + y) * w + xx;
                        let (g, s) = (f64::from(out[i]), want[i]);
                        assert!(
                            (g - s).abs() < 1e-4 * (1.0 + s.abs()),
                            "{cin}->{cout} {h}x{w} pre {pre} up {up}: ({co}, {y}, {xx}) {g} vs {s}"
                        );
                    }
                }
            }
        }
    }
}
