//! 1x1 convolutions added into an existing output, on AVX-512 registers: `out[co][p] +=
//! bias[co] + sum_ci weight[co][ci] x[ci][p]`, a residual block's skip convolution added to
//! its main branch in the same pass.
//!
//! The input `[cin][pixels]` is read in place (a 1x1 convolution needs no padding or
//! packing), the weights `[cout][cin]` as the model holds them. A register block is 8 output
//! channels x 3 vectors of 16 pixels (24 accumulators, as in [`super::direct`]): it starts
//! from the output and the bias, and for each input channel loads 3 input vectors, broadcasts
//! 8 weights and issues 24 FMAs. This replaces a matrix product into a separate buffer (with
//! its operand packing) and a second pass adding that buffer to the output.
//!
//! With bf16 weights ([`Weights::Bf16`], channel pairs) the input is rounded to bf16 pairs
//! once per call and the block issues 8 `vdpbf16ps` per channel pair instead of 16 FMAs:
//! attention's projections, logits and value products in the bf16 executor.
//!
//! Each output is `out + bias` plus the products in input-channel order, whatever piece
//! computes it: bit-identical on any thread count.

use std::arch::x86_64::*;

use super::bf16::{pair, round_pairs};
use super::direct::{lanes, M, N};
use super::pieces::{self, Disjoint, PIECES};

/// A pointwise call's weights `[cout][cin]`: f32, or bf16 pairs `[cout][cin.div_ceil(2)]`
/// ([`bf16_weights`]), whose calls need [`bf16_available`] and take one input part.
#[derive(Debug, Clone, Copy)]
pub enum Weights<'a> {
    /// `[cout][cin]` f32.
    F32(&'a [f32]),
    /// `[cout][cin.div_ceil(2)]` pairs: channels `2 i` (low half) and `2 i + 1`, rounded to
    /// bf16 ([`super::bf16::pair`]; an odd last channel pairs with zero).
    Bf16(&'a [u32]),
}

/// The bf16 pair form of f32 weights `[cout][cin]`.
pub fn bf16_weights(weight: &[f32], cin: usize) -> Vec<u32> {
    weight
        .chunks_exact(cin.max(1))
        .flat_map(|row| {
            (0..cin.div_ceil(2)).map(|i| pair(row[2 * i], *row.get(2 * i + 1).unwrap_or(&0.0)))
        })
        .collect()
}

/// Whether this CPU runs [`Weights::Bf16`] calls (AVX-512F, AVX-512BW, AVX512-BF16).
pub fn bf16_available() -> bool {
    super::bf16::available()
}

/// Whether this CPU runs the kernel here (AVX-512F).
pub fn available() -> bool {
    super::direct::available()
}

/// Pixels a piece takes at least (a few register blocks' worth).
const MIN_PIECE: usize = 16 * N * 8;

/// `out[co][p] += bias[co] + sum_ci weight[co * cin + ci] * x[ci * npix + p]` for `out`
/// `[cout][npix]` and `x` `[cin][npix]` (`cout = bias.len()`).
///
/// # Panics
/// If the lengths do not match, or the CPU has no AVX-512F ([`available`]; bf16 weights:
/// [`bf16_available`]).
pub fn add_pointwise(x: &[f32], cin: usize, weight: Weights, bias: &[f32], out: &mut [f32]) {
    run_slice(x, &[], cin, weight, bias, out, true);
}

/// [`add_pointwise`] of the concatenation of `xa` (the first input channels) and `xb` (the
/// rest), without writing it out: a decoder block's input and its encoder skip.
///
/// # Panics
/// As [`add_pointwise`], and if `xa` does not hold whole channels.
pub fn add_pointwise_parts(
    xa: &[f32],
    xb: &[f32],
    cin: usize,
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    run_slice(xa, xb, cin, Weights::F32(weight), bias, out, true);
}

/// `out` (emptied, then `[cout][npix]`) `= bias[co] + sum_ci weight[co * cin + ci] * x[ci *
/// npix + p]`: a dense layer over the columns of `x` (attention's projections and logits),
/// written without zeroing the output first.
///
/// # Panics
/// As [`add_pointwise`].
pub fn pointwise(
    x: &[f32],
    cin: usize,
    weight: Weights,
    bias: &[f32],
    npix: usize,
    out: &mut Vec<f32>,
) {
    let len = bias.len() * npix;
    out.clear();
    out.reserve(len);
    // SAFETY: `out` has room for `len` values, which `run` writes all of (no reads).
    unsafe {
        run(x, &[], cin, weight, bias, npix, out.as_mut_ptr(), false);
        out.set_len(len);
    }
}

/// [`pointwise`] into `out` (`[cout][npix]`, overwritten without being read).
///
/// # Panics
/// As [`add_pointwise`].
pub fn pointwise_into(x: &[f32], cin: usize, weight: Weights, bias: &[f32], out: &mut [f32]) {
    run_slice(x, &[], cin, weight, bias, out, false);
}

/// [`run`] into a slice of whole output channels (`out.len()` a multiple of `cout`).
fn run_slice(
    xa: &[f32],
    xb: &[f32],
    cin: usize,
    weight: Weights,
    bias: &[f32],
    out: &mut [f32],
    add: bool,
) {
    let cout = bias.len();
    if cout == 0 {
        return;
    }
    assert!(out.len().is_multiple_of(cout), "pointwise conv output");
    let npix = out.len() / cout;
    // SAFETY: `out` holds `cout * npix` values (initialised: a slice).
    unsafe { run(xa, xb, cin, weight, bias, npix, out.as_mut_ptr(), add) };
}

/// The pointwise convolution into `out` (`[cout][npix]`), added to its values if `add`, else
/// written over them (then never read).
///
/// # Safety
/// `out` is valid for `cout * npix` values (initialised if `add`).
#[allow(clippy::too_many_arguments)]
unsafe fn run(
    xa: &[f32],
    xb: &[f32],
    cin: usize,
    weight: Weights,
    bias: &[f32],
    npix: usize,
    out: *mut f32,
    add: bool,
) {
    assert!(available(), "pointwise convolution needs AVX-512F");
    let cout = bias.len();
    let (wf, wb, kp): (&[f32], &[u32], usize) = match weight {
        Weights::F32(w) => {
            assert_eq!(w.len(), cout * cin, "pointwise conv weights");
            (w, &[], cin)
        }
        Weights::Bf16(w) => {
            assert!(
                bf16_available(),
                "bf16 pointwise convolution needs AVX512-BF16"
            );
            assert!(xb.is_empty(), "bf16 pointwise convolution: one input part");
            assert_eq!(
                w.len(),
                cout * cin.div_ceil(2),
                "pointwise conv bf16 weights"
            );
            (&[], w, cin.div_ceil(2))
        }
    };
    if cout == 0 || npix == 0 {
        return;
    }
    let bf16 = matches!(weight, Weights::Bf16(_));
    // With bf16 weights the input is rounded to pairs once (`[kp][npix]`), not once per
    // block of output channels.
    let mut packed = Vec::new();
    if bf16 {
        // SAFETY: bf16_available() checked above.
        unsafe { pack(xa, cin, npix, &mut packed) };
    }
    assert_eq!(xa.len() + xb.len(), cin * npix, "pointwise conv input");
    let ca = xa.len() / npix;
    assert_eq!(ca * npix, xa.len(), "pointwise conv input parts");
    let vectors = npix.div_ceil(16);
    // Pieces: ranges of whole register blocks of pixels, every output channel.
    let blocks = vectors.div_ceil(N);
    let parts = PIECES.min(npix.div_ceil(MIN_PIECE)).max(1);
    let dst = Disjoint::new(out);
    pieces::run(parts, |p| {
        let r = pieces::range(blocks, parts, p);
        for b in r {
            let v0 = b * N;
            let nv = N.min(vectors - v0);
            for co in (0..cout).step_by(M) {
                // SAFETY: AVX-512F checked above; the block reads `x` and `weight` inside
                // their checked lengths and writes channels `co..co + M` (below `cout`) at
                // pixels `16 v0..16 (v0 + nv)` (below `npix`) of `out`, which no other piece
                // writes (pieces hold disjoint pixel ranges).
                unsafe {
                    let a = Args {
                        xa: xa.as_ptr(),
                        xb: xb.as_ptr(),
                        ca,
                        npix,
                        cin,
                        weight: wf.as_ptr(),
                        pairs: wb.as_ptr(),
                        packed: packed.as_ptr(),
                        kp,
                        bias: bias.as_ptr(),
                        cout,
                        co,
                        out: dst.ptr(),
                        add,
                    };
                    match (nv, bf16) {
                        (N, false) => block::<N>(&a, v0),
                        (2, false) => block::<2>(&a, v0),
                        (_, false) => block::<1>(&a, v0),
                        (N, true) => block_bf16::<N>(&a, v0),
                        (2, true) => block_bf16::<2>(&a, v0),
                        (_, true) => block_bf16::<1>(&a, v0),
                    }
                }
            }
        }
    });
}

/// `out` (emptied, then `[cin.div_ceil(2)][npix]`) = the rows of `x` (`[cin][npix]`) rounded
/// to bf16 pairs (rows `2 p`, `2 p + 1`; an odd last row pairs with zero), 16 pixels at a time.
///
/// # Safety
/// The CPU has AVX-512F, AVX-512BW and AVX512-BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack(x: &[f32], cin: usize, npix: usize, out: &mut Vec<u32>) {
    let kp = cin.div_ceil(2);
    out.clear();
    out.reserve(kp * npix);
    let dst: *mut u32 = out.as_mut_ptr();
    for p in 0..kp {
        let lo = x[2 * p * npix..][..npix].as_ptr();
        let hi = (2 * p + 1 < cin).then(|| x[(2 * p + 1) * npix..][..npix].as_ptr());
        for i in (0..npix).step_by(16) {
            let keep = lanes(npix - i);
            let l = _mm512_maskz_loadu_ps(keep, lo.add(i));
            let h = hi.map_or(_mm512_setzero_ps(), |h| {
                _mm512_maskz_loadu_ps(keep, h.add(i))
            });
            _mm512_mask_storeu_epi32(dst.add(p * npix + i).cast(), keep, round_pairs(l, h));
        }
    }
    // SAFETY: every value of the `kp * npix` was written above.
    out.set_len(kp * npix);
}

/// What a register block reads and writes.
struct Args {
    /// Input channels `0..ca`, `[ca][npix]`.
    xa: *const f32,
    /// Input channels `ca..cin`, `[cin - ca][npix]`.
    xb: *const f32,
    ca: usize,
    npix: usize,
    cin: usize,
    /// f32 weights `[cout][cin]` (not read with bf16 weights).
    weight: *const f32,
    /// bf16 weight pairs `[cout][kp]` (read by the bf16 blocks only).
    pairs: *const u32,
    /// The input as bf16 pairs `[kp][npix]` (read by the bf16 blocks only).
    packed: *const u32,
    /// Weight values per output channel (`cin`, or `cin.div_ceil(2)` pairs).
    kp: usize,
    bias: *const f32,
    cout: usize,
    co: usize,
    out: *mut f32,
    /// Whether the block adds to `out` (else it writes it without reading).
    add: bool,
}

/// Output channels `co..co + M` (those below `cout`; the others repeat channel `cout - 1`
/// and are not stored) at the `V` pixel vectors from vector `v0` on.
///
/// # Safety
/// AVX-512F; the pointers hold `[ca][npix]`, `[cin - ca][npix]`, `[cout][cin]`, `[cout]` and
/// `[cout][npix]`, and
/// those outputs are this call's to write.
#[target_feature(enable = "avx512f")]
unsafe fn block<const V: usize>(a: &Args, v0: usize) {
    let (ch, masks, px, mut acc) = start::<V>(a, v0);
    let wrow: [*const f32; M] = std::array::from_fn(|m| a.weight.add(ch[m] * a.cin));
    // The first channel block of a pixel block is the first to read its input: it prefetches
    // the next pixel block's.
    let ahead = a.co == 0;
    accumulate(&mut acc, a.xa, a.ca, a.npix, &wrow, &masks, &px, ahead);
    let wrow: [*const f32; M] = std::array::from_fn(|m| wrow[m].add(a.ca));
    accumulate(
        &mut acc,
        a.xb,
        a.cin - a.ca,
        a.npix,
        &wrow,
        &masks,
        &px,
        ahead,
    );
    finish(a, &acc, &masks, &px);
}

/// [`block`] with bf16 weight pairs, reading the input's bf16 pairs (`a.packed`).
///
/// # Safety
/// As [`block`], and the CPU has AVX-512BW and AVX512-BF16; `a.pairs` holds `[cout][kp]`
/// and `a.packed` `[kp][npix]`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn block_bf16<const V: usize>(a: &Args, v0: usize) {
    let (ch, masks, px, mut acc) = start::<V>(a, v0);
    let wrow: [*const u32; M] = std::array::from_fn(|m| a.pairs.add(ch[m] * a.kp));
    for p in 0..a.kp {
        let row = a.packed.add(p * a.npix);
        let xv: [__m512bh; V] = std::array::from_fn(|j| {
            let x = _mm512_maskz_loadu_epi32(masks[j], row.add(px[j]).cast());
            // SAFETY: 512 bits of plain integers either way.
            unsafe { std::mem::transmute::<__m512i, __m512bh>(x) }
        });
        for m in 0..M {
            let w = _mm512_set1_epi32(*wrow[m].add(p) as i32);
            // SAFETY: as above.
            let wv = unsafe { std::mem::transmute::<__m512i, __m512bh>(w) };
            for j in 0..V {
                acc[m][j] = _mm512_dpbf16_ps(acc[m][j], xv[j], wv);
            }
        }
    }
    finish(a, &acc, &masks, &px);
}

/// A block's output channels (past `cout` repeating channel `cout - 1`), lane masks, first
/// pixels and starting accumulators (the output plus the bias if `a.add`, else the bias).
///
/// # Safety
/// As [`block`] (inlined into the blocks, which enable AVX-512F).
#[inline(always)]
#[allow(clippy::type_complexity)]
unsafe fn start<const V: usize>(
    a: &Args,
    v0: usize,
) -> ([usize; M], [u16; V], [usize; V], [[__m512; V]; M]) {
    let last = a.cout - 1;
    let ch: [usize; M] = std::array::from_fn(|m| (a.co + m).min(last));
    let masks: [u16; V] = std::array::from_fn(|j| lanes(a.npix - 16 * (v0 + j)));
    let px: [usize; V] = std::array::from_fn(|j| 16 * (v0 + j));
    let mut acc = [[_mm512_setzero_ps(); V]; M];
    for m in 0..M {
        let b = _mm512_set1_ps(*a.bias.add(ch[m]));
        for j in 0..V {
            acc[m][j] = if a.add {
                let o = _mm512_maskz_loadu_ps(masks[j], a.out.add(ch[m] * a.npix + px[j]));
                _mm512_add_ps(o, b)
            } else {
                b
            };
        }
    }
    (ch, masks, px, acc)
}

/// Stores a block's accumulators (channels below `cout`, lanes `masks`).
///
/// # Safety
/// As [`block`] (inlined into the blocks, which enable AVX-512F).
#[inline(always)]
unsafe fn finish<const V: usize>(
    a: &Args,
    acc: &[[__m512; V]; M],
    masks: &[u16; V],
    px: &[usize; V],
) {
    for (m, accs) in acc.iter().enumerate() {
        if a.co + m >= a.cout {
            break;
        }
        for j in 0..V {
            _mm512_mask_storeu_ps(a.out.add((a.co + m) * a.npix + px[j]), masks[j], accs[j]);
        }
    }
}

/// `acc[m][j] += sum_c wrow[m][c] x[c][px[j]..]` over the `n` channel rows of `x` (`npix`
/// apart): one part of a block's input; with `ahead`, prefetching each row's next register
/// block of pixels (the rows are many streams, `npix` apart, more than the hardware
/// prefetchers follow).
///
/// # Safety
/// AVX-512F (inlined into [`block`], which enables it); the pointers hold those values.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn accumulate<const V: usize>(
    acc: &mut [[__m512; V]; M],
    x: *const f32,
    n: usize,
    npix: usize,
    wrow: &[*const f32; M],
    masks: &[u16; V],
    px: &[usize; V],
    ahead: bool,
) {
    for c in 0..n {
        let row = x.add(c * npix);
        if ahead {
            for l in 0..N {
                let next = row.wrapping_add(px[0] + 16 * (N + l));
                _mm_prefetch::<_MM_HINT_T0>(next.cast());
            }
        }
        let xv: [__m512; V] =
            std::array::from_fn(|j| _mm512_maskz_loadu_ps(masks[j], row.add(px[j])));
        for m in 0..M {
            let wv = _mm512_set1_ps(*wrow[m].add(c));
            for j in 0..V {
                acc[m][j] = _mm512_fmadd_ps(wv, xv[j], acc[m][j]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::test_support::assert_same_bits_on_any_pool;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A random layer: input `[cin][npix]`, weights `[cout][cin]`, bias `[cout]`, and the
    /// output `[cout][npix]` it adds to.
    struct Layer {
        x: Vec<f32>,
        weight: Vec<f32>,
        bias: Vec<f32>,
        before: Vec<f32>,
    }

    impl Layer {
        fn new(rng: &mut ChaCha8Rng, cin: usize, cout: usize, npix: usize) -> Layer {
            let mut random = |n: usize| (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            Layer {
                x: random(cin * npix),
                weight: random(cout * cin),
                bias: random(cout),
                before: random(cout * npix),
            }
        }
    }

    /// Against f64 loops over the definition: pixel counts below, at and between multiples of
    /// 16 and of a register block, channel counts that leave a partial block of 8, several
    /// pieces.
    #[test]
    fn matches_the_definition() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: pointwise convolution not exercised");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for &(cin, cout, npix) in &[
            (1, 1, 1),
            (3, 5, 17),
            (64, 32, 16384),
            (96, 11, 1000),
            (7, 16, 48),
            (192, 64, 1024),
        ] {
            let Layer {
                x,
                weight,
                bias,
                before,
            } = Layer::new(&mut rng, cin, cout, npix);
            let mut out = before.clone();
            add_pointwise(&x, cin, Weights::F32(&weight), &bias, &mut out);
            for co in 0..cout {
                for p in 0..npix {
                    let mut s = f64::from(before[co * npix + p]) + f64::from(bias[co]);
                    for ci in 0..cin {
                        s += f64::from(weight[co * cin + ci]) * f64::from(x[ci * npix + p]);
                    }
                    let g = f64::from(out[co * npix + p]);
                    assert!(
                        (g - s).abs() < 1e-5 * (1.0 + cin as f64),
                        "{cin}->{cout} x {npix}: ({co}, {p}) {g} vs {s}"
                    );
                }
            }
        }
    }

    /// bf16 weights: against f64 loops over the definition on the bf16-rounded input and
    /// weights (odd and even channel counts, partial vectors and channel blocks, adding and
    /// writing), and bit-identical on any pool.
    #[test]
    fn bf16_matches_the_rounded_definition() {
        if !bf16_available() {
            eprintln!("no AVX512-BF16 on this CPU: bf16 pointwise convolution not exercised");
            return;
        }
        let r = |v: f32| f64::from(f32::from_bits(u32::from(crate::unet::bf16::bf16(v)) << 16));
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        for &(cin, cout, npix, add) in &[
            (1, 1, 1, true),
            (3, 5, 17, false),
            (32, 256, 256, false),
            (128, 384, 256, false),
            (7, 16, 48, true),
            (256, 32, 256, false),
        ] {
            let Layer {
                x,
                weight,
                bias,
                before,
            } = Layer::new(&mut rng, cin, cout, npix);
            let pairs = bf16_weights(&weight, cin);
            let mut out = if add { before.clone() } else { Vec::new() };
            if add {
                add_pointwise(&x, cin, Weights::Bf16(&pairs), &bias, &mut out);
            } else {
                pointwise(&x, cin, Weights::Bf16(&pairs), &bias, npix, &mut out);
            }
            for co in 0..cout {
                for p in 0..npix {
                    let start = if add {
                        f64::from(before[co * npix + p])
                    } else {
                        0.0
                    };
                    let mut s = start + f64::from(bias[co]);
                    for ci in 0..cin {
                        s += r(weight[co * cin + ci]) * r(x[ci * npix + p]);
                    }
                    let g = f64::from(out[co * npix + p]);
                    assert!(
                        (g - s).abs() < 1e-5 * (1.0 + cin as f64),
                        "bf16 {cin}->{cout} x {npix}: ({co}, {p}) {g} vs {s}"
                    );
                }
            }
        }
        let (cin, cout, npix) = (128, 40, 256);
        let Layer {
            x, weight, bias, ..
        } = Layer::new(&mut rng, cin, cout, npix);
        let pairs = bf16_weights(&weight, cin);
        assert_same_bits_on_any_pool(|out| {
            pointwise(&x, cin, Weights::Bf16(&pairs), &bias, npix, out);
        });
    }

    /// Two parts give the bits of their concatenation, at every split.
    #[test]
    fn parts_equal_their_concatenation() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: pointwise convolution not exercised");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let (cin, cout, npix) = (12, 9, 100);
        let Layer {
            x,
            weight,
            bias,
            before,
        } = Layer::new(&mut rng, cin, cout, npix);
        let mut want = before.clone();
        add_pointwise(&x, cin, Weights::F32(&weight), &bias, &mut want);
        for ca in 0..=cin {
            let mut got = before.clone();
            let (xa, xb) = x.split_at(ca * npix);
            add_pointwise_parts(xa, xb, cin, &weight, &bias, &mut got);
            assert_eq!(got, want, "split after {ca} channels");
        }
    }

    /// The written form gives the bits of adding into zeros, whatever the buffer held.
    #[test]
    fn written_form_equals_adding_into_zeros() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: pointwise convolution not exercised");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (cin, cout, npix) = (20, 13, 257);
        let Layer {
            x, weight, bias, ..
        } = Layer::new(&mut rng, cin, cout, npix);
        let mut want = vec![0.0; cout * npix];
        add_pointwise(&x, cin, Weights::F32(&weight), &bias, &mut want);
        let mut got = vec![f32::NAN; 5];
        pointwise(&x, cin, Weights::F32(&weight), &bias, npix, &mut got);
        assert_eq!(got, want);
    }

    /// The same call gives the same bits on a pool of 1, 2 or 3 threads.
    #[test]
    fn bit_identical_on_any_pool() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: pointwise convolution not exercised");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (cin, cout, npix) = (64, 24, 70 * 64);
        let Layer {
            x,
            weight,
            bias,
            before,
        } = Layer::new(&mut rng, cin, cout, npix);
        assert_same_bits_on_any_pool(|out| {
            out.clear();
            out.extend_from_slice(&before);
            add_pointwise(&x, cin, Weights::F32(&weight), &bias, out);
        });
    }
}
