//! 3x3, stride-1, padding-1 convolutions by Winograd's F(4x4, 3x3) in bf16 (`vdpbf16ps` on
//! AVX512-BF16, f32 sums): 36 multiplies for a 4 x 4 block of outputs, where F(2x2, 3x3)
//! ([`super::winograd`]) does 64 and the direct kernels 144. The fast executor's form
//! ([`super::native::NativeUNet::use_fast`]): its rounding error is larger than F(2x2)'s (a
//! layer's relative rms error about 2.4% against 0.38%, `python3
//! benches/winograd_bf16_error.py`), so the bf16 executor, held to 1% at the network's output,
//! does not use it.
//!
//! For a tile of 6 x 6 input values `d` (output tile `(ty, tx)` reads padded rows `4 ty..4 ty +
//! 6` and columns `4 tx..4 tx + 6`) and a 3 x 3 kernel `g`, the 4 x 4 outputs are `A^T [(G g
//! G^T) . (B^T d B)] A` with the points 0, 1, -1, 2, -2 and infinity (Lavin and Gray, "Fast
//! algorithms for convolutional neural networks", 2016):
//!
//! ```text
//! B^T = [4  0 -5  0  1  0]   G = [ 1/4     0     0 ]   A^T = [1  1  1  1  1  0]
//!       [0 -4 -4  1  1  0]       [-1/6  -1/6  -1/6 ]         [0  1 -1  2 -2  0]
//!       [0  4 -4 -1  1  0]       [-1/6   1/6  -1/6 ]         [0  1  1  4  4  0]
//!       [0 -2 -1  2  1  0]       [1/24  1/12   1/6 ]         [0  1 -1  8 -8  1]
//!       [0  2 -1 -2  1  0]       [1/24 -1/12   1/6 ]
//!       [0  4  0 -5  0  1]       [ 0     0     1   ]
//! ```
//!
//! The layout follows [`super::winograd`]: weights transformed once at load (`[36][cout][pairs]`
//! bf16 pairs), a call cut into bands of tile rows, each band's input transformed in f32 one
//! channel pair at a time (each padded row made in registers with the GroupNorm affine, SiLU
//! and upsampling applied, transformed along its columns into a ring of rows, then each tile
//! row along its rows, 16 tiles a vector, rounded to bf16 pairs into `V`), the 36 positions'
//! products in register blocks of 8 output channels x 3 tile vectors, and the output transform
//! from a block on the stack. Each output is the same sums in the same order on any band or
//! thread: bit-identical results on any thread count. Sizes: `h` a multiple of 4 and `w` a
//! multiple of 64 (whole 16-tile vectors), [`fits`].

use std::arch::x86_64::*;

use super::bf16::{pair, round_pairs};
use super::direct::{M, N};
use super::pieces::{self, with_buffer, Disjoint};
use super::winograd::{
    band_body, dup_half, load_bf16, products_block, row_vector, shift_in, step_bf16, stride,
    transform_weights, Band, ROWS, V_BF16,
};
use super::winograd_products::input_parts;

/// Positions of a transformed tile (6 x 6).
const POS: usize = 36;
/// Values of a register block's products for the 36 positions: `[36][M][N][16]` f32 (54 KiB:
/// written once and read once per block, against `36 M N k` multiply-adds).
const BLOCK: usize = POS * M * N * 16;
/// Bytes of a band's transformed input `V`: 768 KiB, inside the L2 cache of current x86
/// cores. Larger than [`super::winograd`]'s 512 KiB: a tile row's `V` is 2.25x larger, and at
/// 512 KiB the 64-channel 128-pixel layers' bands held 3 tile rows, remaking 2 of every 12
/// padded rows (whole fast reconstructions alternated, medians of 5: 3.87 -> 3.68 s on 1
/// thread, 2.17 -> 2.09 s on 2; 320 KiB and 1 MiB no better).
const BAND_BYTES: usize = 768 * 1024;
/// Bands an image is cut into at least, where it has the tile rows (two workers can share a
/// call).
const MIN_BANDS: usize = 2;

/// Whether this form runs here (AVX-512F, AVX-512BW and AVX512-BF16).
pub fn available() -> bool {
    super::bf16::available()
}

/// Whether an `h x w` input (the convolution's, after any upsampling) runs here: `h` a
/// positive multiple of 4 and `w` of 64.
pub fn fits(h: usize, w: usize) -> bool {
    h >= 4 && h.is_multiple_of(4) && w >= 64 && w.is_multiple_of(64)
}

/// A 3x3, stride-1, padding-1 convolution in bf16 Winograd F(4x4, 3x3) form.
#[derive(Debug, Clone)]
pub struct Winograd4 {
    /// `U`: `[36][cout][k]` bf16 pairs, `k = cin.div_ceil(2)`.
    u: Vec<u32>,
    /// `[cout]`.
    bias: Vec<f32>,
    cin: usize,
}

impl Winograd4 {
    /// Transforms weights `taps` (`[9, cout, cin]` f32, tap `3 ky + kx`; `U = G g G^T` in
    /// f64, then rounded to bf16 pairs); `bias` (`[cout]`) stays f32.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn new(taps: &[f32], bias: &[f32], cin: usize) -> Winograd4 {
        let cout = bias.len();
        assert_eq!(taps.len(), 9 * cout * cin, "winograd conv weights");
        const G: [[f64; 3]; 6] = [
            [0.25, 0.0, 0.0],
            [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
            [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
            [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
            [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
            [0.0, 0.0, 1.0],
        ];
        let uf = transform_weights(&G, taps, cout, cin, 2);
        Winograd4 {
            u: uf.chunks_exact(2).map(|p| pair(p[0], p[1])).collect(),
            bias: bias.to_vec(),
            cin,
        }
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.bias.len()
    }

    /// The convolution of `pre` of the concatenation of `xa` (the first input channels) and
    /// `xb` (the rest; may be empty) plus the bias into `out` (emptied, then `[cout, h, w]`),
    /// as [`super::winograd::Winograd::forward_parts`]: `pre = Some((coef, silu))` maps
    /// channel `ci` to `coef[ci][0] v + coef[ci][1]`, then SiLU if `silu`; with `up`, the
    /// input is `[cin, h / 2, w / 2]` and the convolution's input its nearest-neighbour 2x
    /// upsampling.
    ///
    /// # Panics
    /// If the lengths do not match the sizes, the size does not [`fit`](fits), or the CPU
    /// lacks the features ([`available`]).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_parts(
        &self,
        xa: &[f32],
        xb: &[f32],
        h: usize,
        w: usize,
        pre: Option<(&[[f32; 2]], bool)>,
        up: bool,
        out: &mut Vec<f32>,
    ) {
        assert!(
            available(),
            "winograd F(4x4) convolution: CPU features missing"
        );
        assert!(
            fits(h, w),
            "winograd F(4x4) convolution: size {h} x {w} not run"
        );
        let (cin, cout) = (self.cin, self.cout());
        let ca = input_parts(xa, xb, cin, h, w, pre, up);
        let len = cout * h * w;
        out.clear();
        out.reserve(len);
        if len == 0 {
            return;
        }
        let (ty, txp) = (h / 4, w / 4);
        let k = cin.div_ceil(2);
        let per_row = POS * txp * k * 4;
        // An even number of bands of equal height where the tile rows allow: a call on two
        // workers splits evenly, and no short last band remakes its two extra padded rows
        // for little work.
        let bands = ty
            .div_ceil((BAND_BYTES / per_row).max(1))
            .max(MIN_BANDS)
            .next_multiple_of(2)
            .min(ty);
        let rows = ty.div_ceil(bands);
        let args = Band {
            xa,
            xb,
            ca,
            cin,
            h,
            w,
            pre,
            up,
            k,
            cout,
            txp,
            txr: txp,
            out: Disjoint::new(out.as_mut_ptr()),
        };
        pieces::run(ty.div_ceil(rows), |b| {
            let ty0 = b * rows;
            // SAFETY: the features checked above; band `b` writes output rows `4 ty0..4 (ty0
            // + rows)` only, inside `out`'s capacity.
            unsafe { self.band(&args, ty0, rows.min(ty - ty0)) };
        });
        // SAFETY: the bands wrote every output row of every channel: all `len` values.
        unsafe { out.set_len(len) };
    }

    /// One band: tile rows `ty0..ty0 + rows`.
    ///
    /// # Safety
    /// As in [`Winograd4::forward_parts`]'s call.
    unsafe fn band(&self, a: &Band, ty0: usize, rows: usize) {
        band_body!(
            self,
            a,
            ty0,
            rows,
            POS,
            BLOCK,
            &V_BF16,
            transform_input,
            [products],
            transform_output
        );
    }
}

/// The image vectors of one input row (columns `16 m..16 m + 16` of the convolution's
/// input), `pre` applied, read in order of `m`: with `up`, each source vector serves two.
struct Row<'a> {
    src: &'a [f32],
    a: f32,
    b: f32,
    silu: bool,
    up: bool,
    /// The source vector of the last even `m` (upsampled rows).
    last: __m512,
}

impl Row<'_> {
    /// Image vector `m` (called for `m = 0, 1, 2, ..`).
    ///
    /// # Safety
    /// AVX-512F (inlined into the transform, which enables it).
    #[inline(always)]
    unsafe fn vector(&mut self, m: usize) -> __m512 {
        let (src, a, b, silu) = (self.src, self.a, self.b, self.silu);
        if !self.up {
            return row_vector(src, m, a, b, silu, false);
        }
        if m.is_multiple_of(2) {
            self.last = row_vector(src, m / 2, a, b, silu, false);
            dup_half::<false>(self.last)
        } else {
            dup_half::<true>(self.last)
        }
    }
}

/// `B^T d` for six vectors `d` (each lane its own tile).
///
/// # Safety
/// AVX-512F (inlined where it is enabled).
#[inline(always)]
unsafe fn bt(d: &[__m512; 6]) -> [__m512; 6] {
    let (two, four, five) = (
        _mm512_set1_ps(2.0),
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(5.0),
    );
    let a = _mm512_sub_ps(d[4], d[2]);
    let b = _mm512_sub_ps(d[1], d[3]);
    [
        _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4])),
        _mm512_fnmadd_ps(four, _mm512_add_ps(d[1], d[2]), _mm512_add_ps(d[3], d[4])),
        _mm512_fmadd_ps(four, _mm512_sub_ps(d[1], d[2]), _mm512_sub_ps(d[4], d[3])),
        _mm512_fnmadd_ps(two, b, a),
        _mm512_fmadd_ps(two, b, a),
        _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5])),
    ]
}

/// `A^T m` for six vectors `m`.
///
/// # Safety
/// AVX-512F (inlined where it is enabled).
#[inline(always)]
unsafe fn at(m: &[__m512; 6]) -> [__m512; 4] {
    let (two, four, eight) = (
        _mm512_set1_ps(2.0),
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(8.0),
    );
    let (s12, d12) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
    let (s34, d34) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
    [
        _mm512_add_ps(_mm512_add_ps(m[0], s12), s34),
        _mm512_fmadd_ps(two, d34, d12),
        _mm512_fmadd_ps(four, s34, s12),
        _mm512_add_ps(_mm512_fmadd_ps(eight, d34, d12), m[5]),
    ]
}

/// Writes `V` (`[36][stride(k nt)]`, `nt = rows * txp`) of tile rows `ty0..ty0 + rows` into
/// `v`. Per channel pair, each padded input row of the band is made once and transformed along
/// its columns (`B^T` over the six columns of each tile, 16 tiles a vector, the columns
/// gathered from four padded vectors by two rounds of permutes) into a ring of 8 rows; each
/// tile row then transforms six of those rows along its rows and stores its 36 positions as
/// bf16 pairs.
///
/// # Safety
/// AVX-512F, AVX-512BW and AVX512-BF16; `v` holds that layout.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn transform_input(a: &Band, ty0: usize, rows: usize, scratch: &mut Vec<f32>, v: *mut u32) {
    let (h, w, txp) = (a.h, a.w, a.txp);
    let (sh, sw) = if a.up { (h / 2, w / 2) } else { (h, w) };
    let nt = rows * txp;
    let vs = stride(a.k * nt);
    // Per channel q of the pair: a ring of [RING][6][txp] column transforms (padded row r at
    // r % RING). Tile row rr reads padded rows 4 rr..4 rr + 6: all six are made for the
    // first, the four new ones after (they replace rows the previous tile row no longer
    // reads).
    const RING: usize = 8;
    let ring = 6 * txp;
    let per_q = RING * ring;
    pieces::grow(scratch, 2 * per_q);
    let cols = &mut scratch[..];
    let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    // Lanes 1..16 of the first source then lane 0 (`next0`) or 1 (`next1`) of the second.
    let next0 = _mm512_set_epi32(16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    let next1 = _mm512_set_epi32(17, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    let zero = _mm512_setzero_ps();
    for p in 0..a.k {
        for rr in 0..rows {
            let new_rows = if rr == 0 {
                0..6
            } else {
                4 * rr + 2..4 * rr + 6
            };
            for q in 0..2 {
                let ci = 2 * p + q;
                let cq = &mut cols[q * per_q..(q + 1) * per_q];
                for r in new_rows.clone() {
                    let py = 4 * ty0 + r;
                    let dst = &mut cq[(r % RING) * ring..(r % RING + 1) * ring];
                    if ci >= a.cin || py == 0 || py > h {
                        dst.fill(0.0);
                        continue;
                    }
                    let (ca, cb, silu) = match a.pre {
                        Some((coef, silu)) => (coef[ci][0], coef[ci][1], silu),
                        None => (1.0, 0.0, false),
                    };
                    let sy = if a.up { (py - 1) / 2 } else { py - 1 };
                    let src = if ci < a.ca {
                        &a.xa[(ci * sh + sy) * sw..][..sw]
                    } else {
                        &a.xb[((ci - a.ca) * sh + sy) * sw..][..sw]
                    };
                    let mut row = Row {
                        src,
                        a: ca,
                        b: cb,
                        silu,
                        up: a.up,
                        last: zero,
                    };
                    // Padded vector P_m = [u_{m-1}[15], u_m[0..15]] of image vectors u_m:
                    // padded columns 16 m..16 m + 16 (the zero border column first).
                    let (mut prev, mut cur) = (zero, row.vector(0));
                    for j in 0..txp / 16 {
                        // Padded columns 64 j..64 j + 80: the 16 tiles' six columns each.
                        let mut pv = [zero; 5];
                        for (s, pvs) in pv.iter_mut().take(4).enumerate() {
                            *pvs = shift_in(cur, prev);
                            prev = cur;
                            cur = row.vector(4 * j + s + 1);
                        }
                        pv[4] = shift_in(cur, prev);
                        let e01 = _mm512_permutex2var_ps(pv[0], even, pv[1]);
                        let o01 = _mm512_permutex2var_ps(pv[0], odd, pv[1]);
                        let e23 = _mm512_permutex2var_ps(pv[2], even, pv[3]);
                        let o23 = _mm512_permutex2var_ps(pv[2], odd, pv[3]);
                        let c0 = _mm512_permutex2var_ps(e01, even, e23);
                        let c1 = _mm512_permutex2var_ps(o01, even, o23);
                        let d = [
                            c0,
                            c1,
                            _mm512_permutex2var_ps(e01, odd, e23),
                            _mm512_permutex2var_ps(o01, odd, o23),
                            _mm512_permutex2var_ps(c0, next0, pv[4]),
                            _mm512_permutex2var_ps(c1, next1, pv[4]),
                        ];
                        let o = dst.as_mut_ptr().add(16 * j);
                        for (c, t) in bt(&d).iter().enumerate() {
                            _mm512_storeu_ps(o.add(c * txp), *t);
                        }
                    }
                }
            }
            for j in 0..txp / 16 {
                let at = v.add(p * nt + rr * txp + 16 * j);
                for c in 0..6 {
                    // Explicit loops: closures here were not inlined (a call per vector).
                    let mut x = [[zero; 6]; 2];
                    for (q, xq) in x.iter_mut().enumerate() {
                        let base = cols.as_ptr().add(q * per_q + c * txp + 16 * j);
                        let mut d = [zero; 6];
                        for (i, di) in d.iter_mut().enumerate() {
                            *di = _mm512_loadu_ps(base.add(((4 * rr + i) % RING) * ring));
                        }
                        *xq = bt(&d);
                    }
                    for (i, (&lo, &hi)) in x[0].iter().zip(&x[1]).enumerate() {
                        let dst = at.add((6 * i + c) * vs);
                        _mm512_storeu_si512(dst.cast(), round_pairs(lo, hi));
                    }
                }
            }
        }
    }
}

/// The output transform of one register block: `A^T M A` plus the bias for output channels
/// `co..co + M` (those below `cout`) at the tile vectors `ts`, interleaved into their four
/// output rows.
///
/// # Safety
/// AVX-512F; those outputs are this call's to write.
#[target_feature(enable = "avx512f")]
unsafe fn transform_output(
    a: &Band,
    bias: &[f32],
    ty0: usize,
    co: usize,
    ts: &[usize],
    m: &[f32; BLOCK],
) {
    let (h, w, txp) = (a.h, a.w, a.txp);
    // Two tiles' pairs (lanes i of both sources, 8 tiles), then two pairs' quads (64-bit
    // lanes i of both, 4 tiles).
    let lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    let hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    let q0 = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
    let q1 = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    let out = a.out.ptr();
    for mm in 0..M.min(a.cout - co) {
        let vb = _mm512_set1_ps(bias[co + mm]);
        for (j, &t) in ts.iter().enumerate() {
            let (y, x0) = (4 * (ty0 + t / txp), 4 * (t % txp));
            // A^T over the rows i (per column c), then over the columns (explicit loops:
            // closures here were not inlined).
            let zero = _mm512_setzero_ps();
            let mut s = [[zero; 4]; 6];
            for (c, sc) in s.iter_mut().enumerate() {
                let mut col = [zero; 6];
                for (i, v) in col.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(m.as_ptr().add((((6 * i + c) * M + mm) * N + j) * 16));
                }
                *sc = at(&col);
            }
            for dy in 0..4 {
                let mut row = [zero; 6];
                for (v, sc) in row.iter_mut().zip(&s) {
                    *v = sc[dy];
                }
                let mut yv = at(&row);
                for v in yv.iter_mut() {
                    *v = _mm512_add_ps(*v, vb);
                }
                let p01 = [
                    _mm512_permutex2var_ps(yv[0], lo, yv[1]),
                    _mm512_permutex2var_ps(yv[0], hi, yv[1]),
                ];
                let p23 = [
                    _mm512_permutex2var_ps(yv[2], lo, yv[3]),
                    _mm512_permutex2var_ps(yv[2], hi, yv[3]),
                ];
                let o = out.add(((co + mm) * h + y + dy) * w + x0);
                for half in 0..2 {
                    let (a01, a23) = (_mm512_castps_pd(p01[half]), _mm512_castps_pd(p23[half]));
                    let v0 = _mm512_permutex2var_pd(a01, q0, a23);
                    let v1 = _mm512_permutex2var_pd(a01, q1, a23);
                    _mm512_storeu_pd(o.add(32 * half).cast(), v0);
                    _mm512_storeu_pd(o.add(32 * half + 16).cast(), v1);
                }
            }
        }
    }
}

/// For every position `xi < 36`, output channel `co + mm` (`mm < M`) and tile vector `j < V`,
/// the 16 sums over the pairs `p` of `u[xi][co + mm][p]` times `v[xi][p]` from tile `ts[j]`
/// on (as [`super::winograd::Form::products`], over 36 positions).
///
/// # Safety
/// AVX-512F and AVX512-BF16; the pointers hold those layouts.
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn products<const V: usize>(
    u: *const u32,
    k: usize,
    cout: usize,
    co: usize,
    v: *const u32,
    vs: usize,
    nt: usize,
    ts: &[usize],
    m: &mut [f32; BLOCK],
) {
    products_block!(POS, u, k, cout, co, v, vs, nt, ts, m, V, load_bf16, step_bf16);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::test_support::{assert_same_bits_on_any_pool, reference, RandomConv};

    /// `(cin, cout, h, w, up)`: odd and even channel counts, partial blocks of 8 output
    /// channels, one and several tile vectors across (64, 128, 192), one band and several
    /// (more tile rows than a band holds), upsampled inputs.
    const CASES: &[(usize, usize, usize, usize, bool)] = &[
        (2, 8, 4, 64, false),
        (3, 5, 8, 64, true),
        (16, 11, 12, 128, false),
        (7, 17, 16, 192, true),
        (64, 16, 40, 64, false),
        (33, 9, 24, 128, true),
    ];

    /// Layers whose transformed values are exact in bf16, so that the form must give the
    /// definition's values exactly: inputs in {-1, 0, 1} (`V = B^T d B` is then a small integer)
    /// and one tap per channel pair, of value 144 times {-2, -1, 1, 2} (`G g G^T` of it holds
    /// products of two entries of `12 G`, in {0, ±1/2, ±1, ±2, ±3, ±12}: at most 8 significant
    /// bits). Every product and sum is then exact in f32, as is the f64 reference.
    #[test]
    fn exact_on_values_bf16_holds() {
        if !available() {
            eprintln!("no AVX512-BF16 on this CPU: F(4x4) winograd convolution not exercised");
            return;
        }
        let mut rnd = crate::unet::kernels::lcg(31);
        for &(cin, cout, h, w, up) in CASES {
            let shrink = if up { 4 } else { 1 };
            let x: Vec<f32> = (0..cin * h * w / shrink)
                .map(|_| (1.5 * rnd()).round().clamp(-1.0, 1.0))
                .collect();
            let mut taps = vec![0f32; 9 * cout * cin];
            for co in 0..cout {
                for ci in 0..cin {
                    let tap = ((rnd() + 1.0) * 4.5).clamp(0.0, 8.99) as usize;
                    let s = [-2.0, -1.0, 1.0, 2.0][((rnd() + 1.0) * 2.0).clamp(0.0, 3.99) as usize];
                    taps[(tap * cout + co) * cin + ci] = 144.0 * s;
                }
            }
            let bias: Vec<f32> = (0..cout).map(|i| i as f32 * 0.5 - 2.0).collect();
            let conv = Winograd4::new(&taps, &bias, cin);
            let mut out = vec![f32::NAN; 3];
            conv.forward_parts(&x, &[], h, w, None, up, &mut out);
            let want = reference(&x, cin, cout, h, w, &taps, &bias, None, up);
            assert_eq!(out.len(), want.len());
            for (i, (&g, &s)) in out.iter().zip(&want).enumerate() {
                assert_eq!(
                    f64::from(g),
                    s,
                    "{cin}->{cout} {h}x{w} up {up}: value {i} (channel {}, row {}, column {})",
                    i / (h * w),
                    i / w % h,
                    i % w
                );
            }
        }
    }

    /// On random layers (the affine and SiLU applied, as in the network) the error against
    /// the f64 definition is the rounding the module documentation states: relative rms
    /// under 4% per layer (the NumPy model of this rounding gives 2.4% on a 64-channel layer,
    /// `benches/winograd_bf16_error.py`), and F(2x2)'s bf16 form is several times closer.
    #[test]
    fn random_layers_stay_within_the_rounding_error() {
        if !available() {
            eprintln!("no AVX512-BF16 on this CPU: F(4x4) winograd convolution not exercised");
            return;
        }
        for &(cin, cout, h, w, up) in CASES {
            let shrink = if up { 4 } else { 1 };
            let l = RandomConv::new(23, cin, cout, cin * h * w / shrink, 2.0);
            // Weights scaled as a trained layer's (std 1/sqrt(9 cin)), without a bias that
            // would hide the convolution's own error.
            let taps: Vec<f32> = l
                .taps
                .iter()
                .map(|v| v * (3.0 / (9 * cin) as f32).sqrt())
                .collect();
            let bias = vec![0.0; cout];
            let p = Some((&l.coef[..], true));
            let mut out = Vec::new();
            Winograd4::new(&taps, &bias, cin).forward_parts(&l.x, &[], h, w, p, up, &mut out);
            let want = reference(&l.x, cin, cout, h, w, &taps, &bias, Some(&l.coef), up);
            let rms = |o: &[f32]| {
                let d: f64 = o
                    .iter()
                    .zip(&want)
                    .map(|(&g, &s)| (f64::from(g) - s).powi(2))
                    .sum();
                let n: f64 = want.iter().map(|s| s * s).sum();
                (d / n).sqrt()
            };
            let mut out2 = Vec::new();
            super::super::winograd::WinogradBf16::new(&taps, &bias, cin).forward_parts(
                &l.x,
                &[],
                h,
                w,
                p,
                up,
                &mut out2,
            );
            let (e4, e2) = (rms(&out), rms(&out2));
            eprintln!("{cin}->{cout} {h}x{w} up {up}: rms error F(4x4) {e4:.4}, F(2x2) {e2:.4}");
            assert!(e4 < 0.04, "{cin}->{cout} {h}x{w} up {up}: rms error {e4}");
            assert!(
                e2 < e4,
                "{cin}->{cout} {h}x{w} up {up}: F(2x2) {e2} vs F(4x4) {e4}"
            );
        }
    }

    /// Two parts give the bits of their concatenation, at splits on and off a channel pair,
    /// upsampled or not.
    #[test]
    fn parts_equal_their_concatenation() {
        if !available() {
            eprintln!("no AVX512-BF16 on this CPU: F(4x4) winograd parts not exercised");
            return;
        }
        let (cin, cout, h, w) = (6, 8, 8, 64);
        for up in [false, true] {
            let shrink = if up { 4 } else { 1 };
            let splane = h * w / shrink;
            let l = RandomConv::new(13, cin, cout, cin * splane, 2.0);
            let p = Some((&l.coef[..], true));
            let f = Winograd4::new(&l.taps, &l.bias, cin);
            let mut want = Vec::new();
            f.forward_parts(&l.x, &[], h, w, p, up, &mut want);
            for ca in [0, 1, 2, 5, 6] {
                let (xa, xb) = l.x.split_at(ca * splane);
                let mut got = Vec::new();
                f.forward_parts(xa, xb, h, w, p, up, &mut got);
                assert_eq!(got, want, "split after {ca}, up {up}");
            }
        }
    }

    /// The same call gives the same bits on a pool of 1, 2 or 3 threads.
    #[test]
    fn bit_identical_on_any_pool() {
        if !available() {
            eprintln!("no AVX512-BF16 on this CPU: F(4x4) winograd convolution not exercised");
            return;
        }
        let (cin, cout, h, w) = (64, 24, 72, 64);
        let l = RandomConv::new(9, cin, cout, cin * h * w, 1.0);
        let conv = Winograd4::new(&l.taps, &l.bias, cin);
        assert_same_bits_on_any_pool(|out| conv.forward_parts(&l.x, &[], h, w, None, false, out));
    }

    /// Sizes it runs: whole 16-tile vectors across, whole tiles down.
    #[test]
    fn fits_whole_tile_vectors_only() {
        assert!(fits(4, 64) && fits(128, 128) && fits(8, 192));
        assert!(!fits(2, 64) && !fits(6, 64) && !fits(64, 32) && !fits(64, 96) && !fits(0, 64));
    }
}
