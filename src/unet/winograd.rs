//! 3x3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) on AVX-512
//! registers, in f32 ([`WinogradF32`], FMAs) or bf16 ([`WinogradBf16`], `vdpbf16ps` on
//! AVX512-BF16, f32 sums): 16 multiplies for a 2 x 2 block of outputs where the direct kernels
//! ([`super::direct`], [`super::direct_bf16`]) do 36, 2.25x fewer.
//!
//! For a tile of 4 x 4 input values `d` (output tile `(ty, tx)` reads padded rows `2 ty..2 ty +
//! 4` and columns `2 tx..2 tx + 4`) and a 3 x 3 kernel `g`, the 2 x 2 outputs are `A^T [(G g
//! G^T) . (B^T d B)] A` with
//!
//! ```text
//! B^T = [1  0 -1  0]    G = [1    0    0 ]    A^T = [1  1  1  0]
//!       [0  1  1  0]        [1/2  1/2  1/2]          [0  1 -1 -1]
//!       [0 -1  1  0]        [1/2 -1/2  1/2]
//!       [0  1  0 -1]        [0    0    1 ]
//! ```
//!
//! (Lavin and Gray, "Fast algorithms for convolutional neural networks", 2016). The weights are
//! transformed once at load (`U = G g G^T` in f64, then rounded: `[16][cout][cin]` f32, or
//! `[16][cout][pairs]` bf16 pairs), so a layer is 16 independent matrix products over the
//! input channels, one per position `xi = 4 i + j` of the transformed tile, between the input
//! transforms and the output transforms.
//!
//! A call runs in bands of tile rows (the pieces threads take, `super::pieces`), each band on
//! its own. Its input is transformed in f32 one channel at a time: each padded input row is
//! made in registers (GroupNorm's affine and SiLU applied, upsampled if asked, zero border),
//! transformed along its columns into a small ring of rows, and each tile row then along its
//! rows, 16 tiles a vector (`V`, `[16][k][tiles]`, rounded to bf16 pairs in the bf16 form;
//! sized to stay in the core's L2 cache). For each register block of 8 output channels x 3
//! vectors of 16 tiles, the 16 positions' products (the direct kernels' block) go to a block
//! on the stack, and the output transform reads them from L1, adds the bias and interleaves
//! the 2 x 2 outputs back into rows.
//!
//! Each output is the same sums in the same order whatever band or thread computes it, so a
//! pass gives bit-identical results on any thread count. Sizes: even `h` and `w`, `w >=`
//! [`MIN_WIDTH`], and the [`NARROW`] width 16 (8 tiles across: a vector holds two tile rows);
//! other narrow images would leave most lanes of a 16-tile vector empty and run on the direct
//! kernels.

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::thread::LocalKey;

use super::bf16::{pair, round_pairs};
use super::direct::{lanes, M, N};
use super::kernels::silu16;
use super::pieces::{self, with_buffer, Disjoint};
use super::winograd_products::input_parts;

/// Narrowest image run with a tile row per vector (16 tiles across: one full vector).
pub const MIN_WIDTH: usize = 32;
/// The one narrower width run: 8 tiles across, two tile rows a vector (heights a multiple of
/// 4, so that bands hold whole vectors).
pub const NARROW: usize = 16;
/// Tile rows of a band of a [`NARROW`] image: two vectors, the products' register block
/// two vectors wide.
const NARROW_BAND_ROWS: usize = 4;
/// Bytes of a band's transformed input `V`: 512 KiB, inside the L2 cache of current x86 cores
/// (1-2 MiB) with room for the weights (1 MiB measured no faster here).
const BAND_BYTES: usize = 512 * 1024;
/// Bands an image is cut into at least, where it has the tile rows: two workers can share a
/// call. (Four, as the other kernels' pieces, made the bands of 32-pixel layers 4 tile rows,
/// which recomputed a fifth of their padded rows; two measured 1% faster on 1 thread and 3%
/// on 2, whole bf16 reconstructions alternated.)
const MIN_BANDS: usize = 2;

/// Whether the f32 form runs here (AVX-512F).
pub fn available() -> bool {
    super::kernels::avx512()
}

/// Whether the bf16 form runs here (AVX-512F, AVX-512BW and AVX512-BF16).
pub fn bf16_available() -> bool {
    super::bf16::available()
}

/// Whether an `h x w` input (the convolution's, after any upsampling) runs here: even sides
/// with `w >= MIN_WIDTH`, or `w = NARROW` with `h` a multiple of 4.
pub fn fits(h: usize, w: usize) -> bool {
    let wide = h >= 2 && h.is_multiple_of(2) && w.is_multiple_of(2) && w >= MIN_WIDTH;
    wide || (w == NARROW && h >= 4 && h.is_multiple_of(4))
}

thread_local! {
    /// The column transforms of a band's padded input rows, for the channel (or pair) being
    /// transformed (also [`super::winograd4`]'s).
    pub(super) static ROWS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A band's transformed input `V`, f32 form.
    static V_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A band's transformed input `V`, bf16 form (also [`super::winograd4`]'s).
    pub(super) static V_BF16: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Values of a register block's products for the 16 positions: `[16][M][N][16]` f32.
const BLOCK: usize = 16 * M * N * 16;

/// What differs between the f32 and bf16 forms: the value `T` of `V` and `U`, how many input
/// channels one holds, and the kernels that write and read it. Implemented by [`F32`] and
/// [`Bf16`] only (its methods are this module's kernels).
pub trait Form {
    /// One value of `V` and `U`.
    type T: Copy + Default + Send + Sync + std::fmt::Debug + 'static;
    /// Input channels per value (1, or a bf16 pair).
    const CH: usize;

    /// The transformed weights of channels `CH p .. CH p + CH` (`vals`, one each) as one value.
    fn weight(vals: &[f32]) -> Self::T;

    /// This thread's `V` buffer.
    fn slot() -> &'static LocalKey<RefCell<Vec<Self::T>>>;

    /// Whether the CPU has the form's features.
    fn available() -> bool;

    /// Writes `V` of a band (the module's `transform_input`).
    ///
    /// # Safety
    /// The CPU has the form's features; `v` holds `[16][stride(k nt)]`.
    unsafe fn transform_input(
        a: &Band,
        ty0: usize,
        rows: usize,
        scratch: &mut Vec<f32>,
        v: *mut Self::T,
    );

    /// For every position `xi`, output channel `co + mm` (`mm < M`) and tile vector `j < V`,
    /// the 16 values `m[xi][mm][j]` = the sum over `p` of `u[xi][co + mm][p]` times the 16
    /// values of `v[xi][p]` from tile `ts[j]` on: `u` is `[16][cout][k]`, `v` is `[16][vs]`,
    /// each position `[k][nt]`; output channels past `cout` repeat channel `cout - 1`.
    ///
    /// # Safety
    /// The CPU has the form's features; the pointers hold those layouts.
    #[allow(clippy::too_many_arguments)]
    unsafe fn products<const V: usize>(
        u: *const Self::T,
        k: usize,
        cout: usize,
        co: usize,
        v: *const Self::T,
        vs: usize,
        nt: usize,
        ts: &[usize],
        m: &mut [f32; BLOCK],
    );

    /// Stores the lanes `keep` of the values `x[q][i]` of channels `CH p + q` at `dst + i *
    /// stride` (`i < 4`).
    ///
    /// # Safety
    /// The CPU has the form's features; `dst + i * stride` holds those lanes for each `i`.
    unsafe fn put(x: &[[__m512; 4]; 2], dst: *mut Self::T, stride: usize, keep: u16);
}

/// The f32 form.
#[derive(Debug, Clone, Copy)]
pub struct F32;

/// The bf16 form (channel pairs, `vdpbf16ps`).
#[derive(Debug, Clone, Copy)]
pub struct Bf16;

/// A 3x3, stride-1, padding-1 convolution in Winograd form `F` ([`F32`] or [`Bf16`]).
#[derive(Debug, Clone)]
pub struct Winograd<F: Form> {
    /// `U`: `[16][cout][k]`, `k = cin.div_ceil(F::CH)`.
    u: Vec<F::T>,
    /// `[cout]`.
    bias: Vec<f32>,
    cin: usize,
}

/// The f32 Winograd form.
pub type WinogradF32 = Winograd<F32>;
/// The bf16 Winograd form.
pub type WinogradBf16 = Winograd<Bf16>;

impl<F: Form> Winograd<F> {
    /// Transforms weights `taps` (`[9, cout, cin]` f32, tap `3 ky + kx`); `bias` (`[cout]`)
    /// stays f32.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn new(taps: &[f32], bias: &[f32], cin: usize) -> Winograd<F> {
        let cout = bias.len();
        assert_eq!(taps.len(), 9 * cout * cin, "winograd conv weights");
        const G: [[f64; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let uf = transform_weights(&G, taps, cout, cin, F::CH);
        let u = uf.chunks_exact(F::CH).map(F::weight).collect();
        Winograd {
            u,
            bias: bias.to_vec(),
            cin,
        }
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.bias.len()
    }

    /// `out` (emptied, then `[cout, h, w]`) = the convolution of `pre(x)` (`x` `[cin, h, w]`)
    /// plus the bias, where `pre = Some((coef, silu))` maps channel `ci` to `coef[ci][0] v +
    /// coef[ci][1]`, then SiLU if `silu`. With `up`, `x` is `[cin, h / 2, w / 2]` and the
    /// convolution's input its nearest-neighbour 2x upsampling (never written out).
    ///
    /// # Panics
    /// If the lengths do not match the sizes, the size does not [`fit`](fits), or the CPU
    /// lacks the form's features.
    pub fn forward(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        pre: Option<(&[[f32; 2]], bool)>,
        up: bool,
        out: &mut Vec<f32>,
    ) {
        self.forward_parts(x, &[], h, w, pre, up, out);
    }

    /// [`Winograd::forward`] of the concatenation of `xa` (the first input channels) and `xb`
    /// (the rest), without writing it out: a decoder block's input and its encoder skip.
    ///
    /// # Panics
    /// As [`Winograd::forward`], and if `xa` does not hold whole channels.
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
        assert!(F::available(), "winograd convolution: CPU features missing");
        assert!(fits(h, w), "winograd convolution: size {h} x {w} not run");
        let (cin, cout) = (self.cin, self.cout());
        let ca = input_parts(xa, xb, cin, h, w, pre, up);
        let len = cout * h * w;
        out.clear();
        out.reserve(len);
        if len == 0 {
            return;
        }
        let narrow = w == NARROW;
        let ty = h / 2;
        let txp = if narrow {
            w / 2
        } else {
            (w / 2).next_multiple_of(16)
        };
        let k = cin.div_ceil(F::CH);
        let per_row = 16 * txp * k * std::mem::size_of::<F::T>();
        let rows = if narrow {
            NARROW_BAND_ROWS.min(ty)
        } else {
            (BAND_BYTES / per_row).clamp(1, ty.div_ceil(MIN_BANDS))
        };
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
            txr: txp.next_multiple_of(16),
            out: Disjoint::new(out.as_mut_ptr()),
        };
        pieces::run(ty.div_ceil(rows), |b| {
            let ty0 = b * rows;
            // SAFETY: the form's features checked above; band `b` writes output rows `2 ty0..2
            // (ty0 + rows)` only, inside `out`'s capacity.
            unsafe { self.band(&args, ty0, rows.min(ty - ty0)) };
        });
        // SAFETY: the bands wrote every output row of every channel: all `len` values.
        unsafe { out.set_len(len) };
    }

    /// One band: tile rows `ty0..ty0 + rows`. For each group of [`N`] tile vectors and block
    /// of [`M`] output channels, the 16 positions' products go to a block on the stack and the
    /// output transform reads them from there (L1).
    ///
    /// # Safety
    /// As in [`Winograd::forward`]'s call.
    unsafe fn band(&self, a: &Band, ty0: usize, rows: usize) {
        band_body!(
            self,
            a,
            ty0,
            rows,
            16,
            BLOCK,
            F::slot(),
            F::transform_input,
            [F::products],
            transform_output
        );
    }
}

impl Winograd<Bf16> {
    /// The bf16 form of an f32 one: its transformed weights rounded to bf16 pairs (what
    /// [`Winograd::new`] gives from the same taps, without transforming them again).
    pub fn from_f32(f: &WinogradF32) -> WinogradBf16 {
        let k = f.cin.div_ceil(2);
        let mut u = Vec::with_capacity(16 * f.cout() * k);
        for row in f.u.chunks_exact(f.cin.max(1)) {
            u.extend((0..k).map(|p| pair(row[2 * p], *row.get(2 * p + 1).unwrap_or(&0.0))));
        }
        Winograd {
            u,
            bias: f.bias.clone(),
            cin: f.cin,
        }
    }
}

/// `U = G g G^T` of every kernel `g` of `taps` (`[9, cout, cin]`, tap `3 ky + kx`) for the
/// `P x 3` matrix `G` (`P` = 4 here, 6 in [`super::winograd4`]), in f64 (`G g` first), then
/// rounded to f32: `[P P][cout][cin.div_ceil(ch) ch]` (position `xi = P i + j`; input channels
/// padded with zeros to whole groups of `ch`).
pub(super) fn transform_weights<const P: usize>(
    g: &[[f64; 3]; P],
    taps: &[f32],
    cout: usize,
    cin: usize,
    ch: usize,
) -> Vec<f32> {
    let kc = cin.div_ceil(ch) * ch;
    let mut uf = vec![0f32; P * P * cout * kc];
    for co in 0..cout {
        for ci in 0..cin {
            let tap =
                |ky: usize, kx: usize| f64::from(taps[((3 * ky + kx) * cout + co) * cin + ci]);
            let t: [[f64; 3]; P] = std::array::from_fn(|i| {
                std::array::from_fn(|kx| (0..3).map(|ky| g[i][ky] * tap(ky, kx)).sum())
            });
            for xi in 0..P * P {
                let (i, j) = (xi / P, xi % P);
                let v: f64 = (0..3).map(|kx| t[i][kx] * g[j][kx]).sum();
                uf[(xi * cout + co) * kc + ci] = v as f32;
            }
        }
    }
    uf
}

/// The distance between two positions' parts of `V` (`len` values each, 4 bytes a value,
/// `len` a multiple of 16): `len` plus one cache line. The 16 positions are written side by
/// side, and 16 streams a multiple of 4 KiB apart would fall into one set of the L1 cache
/// (12-way on current cores): that cost a fifth of a call's time.
pub(super) fn stride(len: usize) -> usize {
    len + 16
}

/// A call's sizes and buffers, for its bands (of this module's forms and of
/// [`super::winograd4`]'s, whose `k` counts channel pairs and whose `txp = txr = w / 4`).
pub struct Band<'a> {
    /// Input channels `0..ca`.
    pub(super) xa: &'a [f32],
    /// Input channels `ca..cin`.
    pub(super) xb: &'a [f32],
    pub(super) ca: usize,
    pub(super) cin: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) pre: Option<(&'a [[f32; 2]], bool)>,
    pub(super) up: bool,
    /// Values per tile and position (`cin.div_ceil(CH)`).
    pub(super) k: usize,
    pub(super) cout: usize,
    /// Tiles per tile row in `V`: rounded up to 16, or 8 in a [`NARROW`] image (whose
    /// vectors then hold two tile rows).
    pub(super) txp: usize,
    /// Tiles per tile row of the column transforms (`txp` rounded up to 16).
    pub(super) txr: usize,
    pub(super) out: Disjoint<f32>,
}

/// Writes `V` (`[16][stride(k nt)]`, `nt = rows * txp`) of tile rows `ty0..ty0 + rows` into
/// `v`. Per channel (pair), each padded input row of the band is made once (`pre` applied,
/// zero border, upsampled if asked) and transformed along its columns (`B^T` over the four
/// columns of each tile, 16 tiles a vector) into a ring of rows; each tile row then
/// transforms four of those rows along its rows and stores its 16 positions (`F::put`).
///
/// # Safety
/// The CPU has `F`'s features (this is inlined into `F::transform_input`, which enables
/// them); `v` holds that layout.
#[inline(always)]
unsafe fn transform_input<F: Form>(
    a: &Band,
    ty0: usize,
    rows: usize,
    scratch: &mut Vec<f32>,
    v: *mut F::T,
) {
    let (h, w, txp, txr) = (a.h, a.w, a.txp, a.txr);
    let (sh, sw) = if a.up { (h / 2, w / 2) } else { (h, w) };
    let nt = rows * txp;
    let vs = stride(a.k * nt);
    // Per channel q: a ring of [RING][4][txr] column transforms (padded row r at r % RING):
    // tile row rr reads padded rows 2 rr..2 rr + 4, made just before it (all four for the
    // first, the two new ones after), so the ring stays in L1 while the band's `V` streams
    // out.
    const RING: usize = 4;
    let ring = 4 * txr;
    let per_q = RING * ring;
    // Every row is written before it is read.
    pieces::grow(scratch, F::CH * per_q);
    let cols = &mut scratch[..];
    let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for p in 0..a.k {
        for rr in 0..rows {
            let new_rows = if rr == 0 {
                0..4
            } else {
                2 * rr + 2..2 * rr + 4
            };
            for q in 0..F::CH {
                let ci = F::CH * p + q;
                let cq = &mut cols[q * per_q..(q + 1) * per_q];
                for r in new_rows.clone() {
                    let py = 2 * ty0 + r;
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
                    // Image vectors u_m (columns 16 m..16 m + 16) from source vectors r_k, each
                    // normalised once; padded vector P_m = [u_{m-1}[15], u_m[0..15]].
                    let zero = _mm512_setzero_ps();
                    let (mut u0, mut rk) = if a.up {
                        let r0 = row_vector(src, 0, ca, cb, silu, F::CH == 1);
                        (dup_half::<false>(r0), r0)
                    } else {
                        (row_vector(src, 0, ca, cb, silu, F::CH == 1), zero)
                    };
                    let mut p0 = shift_in(u0, zero);
                    for j in 0..txr / 16 {
                        // Padded columns 32 j..32 j + 48; a tile's four columns are 2 tx..2 tx
                        // + 4.
                        let (u1, u2) = if a.up {
                            let u1 = dup_half::<true>(rk);
                            rk = row_vector(src, j + 1, ca, cb, silu, F::CH == 1);
                            (u1, dup_half::<false>(rk))
                        } else {
                            (
                                row_vector(src, 2 * j + 1, ca, cb, silu, F::CH == 1),
                                row_vector(src, 2 * j + 2, ca, cb, silu, F::CH == 1),
                            )
                        };
                        let (p1, p2) = (shift_in(u1, u0), shift_in(u2, u1));
                        let (s0, s1) = (shift2(p0, p1), shift2(p1, p2));
                        let d0 = _mm512_permutex2var_ps(p0, even, p1);
                        let d1 = _mm512_permutex2var_ps(p0, odd, p1);
                        let d2 = _mm512_permutex2var_ps(s0, even, s1);
                        let d3 = _mm512_permutex2var_ps(s0, odd, s1);
                        let o = dst.as_mut_ptr().add(16 * j);
                        _mm512_storeu_ps(o, _mm512_sub_ps(d0, d2));
                        _mm512_storeu_ps(o.add(txr), _mm512_add_ps(d1, d2));
                        _mm512_storeu_ps(o.add(2 * txr), _mm512_sub_ps(d2, d1));
                        _mm512_storeu_ps(o.add(3 * txr), _mm512_sub_ps(d1, d3));
                        (u0, p0) = (u2, p2);
                    }
                }
            }
            for j in 0..txr / 16 {
                let at = v.add(p * nt + rr * txp + 16 * j);
                // The tiles of this tile row (8 in a narrow image: the vector's other half
                // is the next tile row's).
                let keep = lanes(txp - 16 * j);
                // One column position c at a time (positions 4 i + c): 8 vectors live per
                // channel, not 16.
                for c in 0..4 {
                    let mut x = [[_mm512_setzero_ps(); 4]; 2];
                    for (q, xq) in x.iter_mut().enumerate().take(F::CH) {
                        let base = cols.as_ptr().add(q * per_q + c * txr + 16 * j);
                        let t: [__m512; 4] = std::array::from_fn(|i| {
                            _mm512_loadu_ps(base.add(((2 * rr + i) % RING) * ring))
                        });
                        *xq = [
                            _mm512_sub_ps(t[0], t[2]),
                            _mm512_add_ps(t[1], t[2]),
                            _mm512_sub_ps(t[2], t[1]),
                            _mm512_sub_ps(t[1], t[3]),
                        ];
                    }
                    F::put(&x, at.add(c * vs), 4 * vs, keep);
                }
            }
        }
    }
}

/// Source vector `k` of an input row `src` (values `16 k..16 k + 16`) after `pre` (`a v + b`,
/// then SiLU if `silu`, to f32 accuracy if `exact`), zero past the row's end. Made in
/// registers from a masked load: no normalised copy of the row is written (reading one back
/// shifted right after writing it stalled on store forwarding), and each value is normalised
/// once, not once per padded vector it falls in (the upsampled rows' duplicates included).
///
/// # Safety
/// AVX-512F (inlined into a transform that enables it).
#[inline(always)]
pub(super) unsafe fn row_vector(
    src: &[f32],
    k: usize,
    a: f32,
    b: f32,
    silu: bool,
    exact: bool,
) -> __m512 {
    let start = 16 * k;
    if start >= src.len() {
        return _mm512_setzero_ps();
    }
    let valid = lanes(src.len() - start);
    let v = _mm512_maskz_loadu_ps(valid, src.as_ptr().add(start));
    let mut v = _mm512_fmadd_ps(v, _mm512_set1_ps(a), _mm512_set1_ps(b));
    if silu {
        v = if exact {
            silu16::<true>(v)
        } else {
            silu16::<false>(v)
        };
    }
    _mm512_maskz_mov_ps(valid, v)
}

/// The nearest-neighbour 2x upsampling of half of `r`: lane `l` holds `r[l / 2]` (the lower
/// half) or `r[8 + l / 2]` (`HIGH`).
#[inline(always)]
pub(super) unsafe fn dup_half<const HIGH: bool>(r: __m512) -> __m512 {
    let idx = if HIGH {
        _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8)
    } else {
        _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0)
    };
    _mm512_permutexvar_ps(idx, r)
}

/// Lane 15 of `prev` then lanes 0..15 of `cur`: the padded vector (one border column on the
/// left) of the image columns `cur` holds.
#[inline(always)]
pub(super) unsafe fn shift_in(cur: __m512, prev: __m512) -> __m512 {
    _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(
        _mm512_castps_si512(cur),
        _mm512_castps_si512(prev),
    ))
}

/// Lanes 2..16 of `a` then lanes 0..2 of `b`: the vector two columns on.
#[inline(always)]
unsafe fn shift2(a: __m512, b: __m512) -> __m512 {
    _mm512_castsi512_ps(_mm512_alignr_epi32::<2>(
        _mm512_castps_si512(b),
        _mm512_castps_si512(a),
    ))
}

/// The output transform of one register block: `A^T M A` plus the bias for output channels
/// `co..co + M` (those below `cout`) at the tile vectors `ts`, interleaved into their output
/// rows (columns past `w` not written).
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
    let lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    let hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    let out = a.out.ptr();
    for mm in 0..M.min(a.cout - co) {
        let vb = _mm512_set1_ps(bias[co + mm]);
        for (j, &t) in ts.iter().enumerate() {
            let (y, x0) = (2 * (ty0 + t / txp), 2 * (t % txp));
            if x0 >= w {
                continue;
            }
            let mv: [__m512; 16] = std::array::from_fn(|xi| {
                _mm512_loadu_ps(m.as_ptr().add(((xi * M + mm) * N + j) * 16))
            });
            // A^T over the rows i, then over the columns.
            let s0: [__m512; 4] =
                std::array::from_fn(|c| _mm512_add_ps(_mm512_add_ps(mv[c], mv[4 + c]), mv[8 + c]));
            let s1: [__m512; 4] = std::array::from_fn(|c| {
                _mm512_sub_ps(_mm512_sub_ps(mv[4 + c], mv[8 + c]), mv[12 + c])
            });
            for (dy, s) in [s0, s1].iter().enumerate() {
                let y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[0], s[1]), s[2]), vb);
                let y1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[1], s[2]), s[3]), vb);
                let o = out.add(((co + mm) * h + y + dy) * w + x0);
                _mm512_mask_storeu_ps(o, lanes(w - x0), _mm512_permutex2var_ps(y0, lo, y1));
                if txp < 16 {
                    // A narrow image: the vector's upper 8 tiles are the next tile row's.
                    let v = _mm512_permutex2var_ps(y0, hi, y1);
                    _mm512_storeu_ps(o.add(2 * w), v);
                } else if w - x0 > 16 {
                    let v = _mm512_permutex2var_ps(y0, hi, y1);
                    _mm512_mask_storeu_ps(o.add(16), lanes(w - x0 - 16), v);
                }
            }
        }
    }
}

/// The body of a band (tile rows `ty0..ty0 + rows`) of a Winograd form with `$P` positions
/// (16 here, 36 in [`super::winograd4`]): the band's input transformed into this thread's `V`
/// buffer `$slot` by `$input`, then for each group of [`N`] tile vectors and block of [`M`]
/// output channels the `$P` positions' products (`$products::<V>`) into a `$block`-value
/// block on the stack, which `$output` transforms into the outputs (from L1).
macro_rules! band_body {
    ($self:ident, $a:ident, $ty0:ident, $rows:ident, $P:expr, $block:expr, $slot:expr,
     $input:path, [$($products:tt)+], $output:path) => {{
        let (k, cout) = ($a.k, $a.cout);
        let nt = $rows * $a.txp;
        let vs = stride(k * nt);
        with_buffer($slot, |v| {
            // Every value a band reads it writes first, so no clearing.
            pieces::grow(v, $P * vs);
            with_buffer(&ROWS, |scratch| {
                // SAFETY: the caller's contract; `v` holds `[$P][vs]`.
                unsafe { $input($a, $ty0, $rows, scratch, v.as_mut_ptr()) };
            });
            let mut m = [0f32; $block];
            let vectors = nt / 16;
            for g in (0..vectors).step_by(N) {
                // The first tiles of this group's vectors.
                let starts: [usize; N] = std::array::from_fn(|j| 16 * (g + j));
                let ts = &starts[..N.min(vectors - g)];
                for co in (0..cout).step_by(M) {
                    let (u, vp) = ($self.u.as_ptr(), v.as_ptr());
                    // SAFETY: the caller's contract; `u` is `[$P][cout][k]`, `v` `[$P][vs]`.
                    unsafe {
                        match ts.len() {
                            N => $($products)+::<N>(u, k, cout, co, vp, vs, nt, ts, &mut m),
                            2 => $($products)+::<2>(u, k, cout, co, vp, vs, nt, ts, &mut m),
                            _ => $($products)+::<1>(u, k, cout, co, vp, vs, nt, ts, &mut m),
                        }
                    }
                    // SAFETY: AVX-512F; the outputs of these tiles and channels are this
                    // band's.
                    unsafe { $output($a, &$self.bias, $ty0, co, ts, &m) };
                }
            }
        });
    }};
}

pub(super) use band_body;

/// The block of [`Form::products`] for either form, over `$P` positions (16 here, 36 in
/// [`super::winograd4`]): `load(ptr)` reads one vector of `V` values and `step(acc, x,
/// weight)` is one multiply-add of a value (f32 FMA, `vdpbf16ps`); both are functions with the
/// form's features (closures would not inherit them, and their intrinsics would stay calls).
macro_rules! products_block {
    ($P:expr, $u:ident, $k:ident, $cout:ident, $co:ident, $v:ident, $vs:ident, $nt:ident,
     $ts:ident, $m:ident, $V:ident, $load:path, $step:path) => {{
        let last = $cout - 1;
        for xi in 0..$P {
            let wrow: [_; M] =
                std::array::from_fn(|mm| $u.add((xi * $cout + ($co + mm).min(last)) * $k));
            let base: [_; $V] = std::array::from_fn(|j| $v.add(xi * $vs + $ts[j]));
            let mut acc = [[_mm512_setzero_ps(); $V]; M];
            for p in 0..$k {
                let mut x = [$load(base[0].add(p * $nt)); $V];
                for j in 1..$V {
                    x[j] = $load(base[j].add(p * $nt));
                }
                for mm in 0..M {
                    let wv = *wrow[mm].add(p);
                    for j in 0..$V {
                        acc[mm][j] = $step(acc[mm][j], x[j], wv);
                    }
                }
            }
            for (mm, accs) in acc.iter().enumerate() {
                for (j, a) in accs.iter().enumerate() {
                    _mm512_storeu_ps($m.as_mut_ptr().add(((xi * M + mm) * N + j) * 16), *a);
                }
            }
        }
    }};
}

pub(super) use products_block;

impl Form for F32 {
    type T = f32;
    const CH: usize = 1;

    fn weight(vals: &[f32]) -> f32 {
        vals[0]
    }

    fn slot() -> &'static LocalKey<RefCell<Vec<f32>>> {
        &V_F32
    }

    fn available() -> bool {
        available()
    }

    unsafe fn transform_input(
        a: &Band,
        ty0: usize,
        rows: usize,
        scratch: &mut Vec<f32>,
        v: *mut f32,
    ) {
        // SAFETY: the caller's contract.
        unsafe { transform_input_f32(a, ty0, rows, scratch, v) }
    }

    unsafe fn products<const V: usize>(
        u: *const f32,
        k: usize,
        cout: usize,
        co: usize,
        v: *const f32,
        vs: usize,
        nt: usize,
        ts: &[usize],
        m: &mut [f32; BLOCK],
    ) {
        // SAFETY: the caller's contract.
        unsafe { products_f32::<V>(u, k, cout, co, v, vs, nt, ts, m) }
    }

    #[inline(always)]
    unsafe fn put(x: &[[__m512; 4]; 2], dst: *mut f32, stride: usize, keep: u16) {
        for (i, v) in x[0].iter().enumerate() {
            // SAFETY: the caller's contract.
            unsafe { _mm512_mask_storeu_ps(dst.add(i * stride), keep, *v) };
        }
    }
}

/// [`F32`]'s input transform.
#[target_feature(enable = "avx512f")]
unsafe fn transform_input_f32(a: &Band, ty0: usize, rows: usize, s: &mut Vec<f32>, v: *mut f32) {
    // SAFETY: the caller's contract; AVX-512F enabled here.
    unsafe { transform_input::<F32>(a, ty0, rows, s, v) }
}

/// One vector of f32 `V` values.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_f32(p: *const f32) -> __m512 {
    _mm512_loadu_ps(p)
}

/// `acc + w x`.
#[target_feature(enable = "avx512f")]
#[inline]
fn step_f32(acc: __m512, x: __m512, w: f32) -> __m512 {
    _mm512_fmadd_ps(_mm512_set1_ps(w), x, acc)
}

/// [`F32`]'s products.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn products_f32<const V: usize>(
    u: *const f32,
    k: usize,
    cout: usize,
    co: usize,
    v: *const f32,
    vs: usize,
    nt: usize,
    ts: &[usize],
    m: &mut [f32; BLOCK],
) {
    products_block!(16, u, k, cout, co, v, vs, nt, ts, m, V, load_f32, step_f32);
}

impl Form for Bf16 {
    type T = u32;
    const CH: usize = 2;

    fn weight(vals: &[f32]) -> u32 {
        pair(vals[0], vals[1])
    }

    fn slot() -> &'static LocalKey<RefCell<Vec<u32>>> {
        &V_BF16
    }

    fn available() -> bool {
        bf16_available()
    }

    unsafe fn transform_input(
        a: &Band,
        ty0: usize,
        rows: usize,
        scratch: &mut Vec<f32>,
        v: *mut u32,
    ) {
        // SAFETY: the caller's contract.
        unsafe { transform_input_bf16(a, ty0, rows, scratch, v) }
    }

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
        // SAFETY: the caller's contract.
        unsafe { products_bf16::<V>(u, k, cout, co, v, vs, nt, ts, m) }
    }

    #[inline(always)]
    unsafe fn put(x: &[[__m512; 4]; 2], dst: *mut u32, stride: usize, keep: u16) {
        for (i, (&lo, &hi)) in x[0].iter().zip(&x[1]).enumerate() {
            // SAFETY: the caller's contract (AVX512-BF16 and BW enabled where this is inlined).
            unsafe {
                _mm512_mask_storeu_epi32(dst.add(i * stride).cast(), keep, round_pairs(lo, hi))
            };
        }
    }
}

/// [`Bf16`]'s input transform.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn transform_input_bf16(a: &Band, ty0: usize, rows: usize, s: &mut Vec<f32>, v: *mut u32) {
    // SAFETY: the caller's contract; the features enabled here.
    unsafe { transform_input::<Bf16>(a, ty0, rows, s, v) }
}

/// One vector of bf16-pair `V` values.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
pub(super) unsafe fn load_bf16(p: *const u32) -> __m512bh {
    // SAFETY: 512 bits of plain integers either way.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast())) }
}

/// `acc` plus the products of the pairs of `x` with the pair `w`, both summed into each lane.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
pub(super) fn step_bf16(acc: __m512, x: __m512bh, w: u32) -> __m512 {
    // SAFETY: 512 bits of plain integers either way.
    let wv = unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(w as i32)) };
    _mm512_dpbf16_ps(acc, x, wv)
}

/// [`Bf16`]'s products.
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn products_bf16<const V: usize>(
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
    products_block!(16, u, k, cout, co, v, vs, nt, ts, m, V, load_bf16, step_bf16);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::test_support::{assert_same_bits_on_any_pool, reference, RandomConv};

    const CASES: &[(usize, usize, usize, usize, bool, bool)] = &[
        (2, 32, 4, 32, false, false),
        (3, 5, 6, 34, true, false),
        (16, 11, 2, 40, true, false),
        (32, 9, 10, 64, false, false),
        (5, 8, 12, 48, true, true),
        (64, 16, 66, 32, true, false),
        (7, 17, 20, 96, false, true),
        (64, 16, 16, 16, true, false),
        (3, 9, 20, 16, true, false),
        (5, 8, 12, 16, true, true),
        (128, 24, 8, 16, false, false),
    ];

    /// The f32 form against f64 loops over the definition: widths at, between and past
    /// multiples of 32 (partial tile vectors and partial output vectors) and the narrow width
    /// (two tile rows a vector, with a band of one vector at the end), odd channel counts,
    /// partial blocks of 8 output channels, the affine and SiLU, upsampled inputs, and
    /// several bands (more tile rows than one band holds).
    #[test]
    fn f32_matches_the_definition() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: winograd convolution not exercised");
            return;
        }
        for &(cin, cout, h, w, pre, up) in CASES {
            let shrink = if up { 4 } else { 1 };
            let RandomConv {
                taps,
                bias,
                x,
                coef,
            } = RandomConv::new(21, cin, cout, cin * h * w / shrink, 8.0);
            let conv = WinogradF32::new(&taps, &bias, cin);
            let mut out = vec![f32::NAN; 3];
            let p = pre.then_some((&coef[..], true));
            conv.forward(&x, h, w, p, up, &mut out);
            let want = reference(&x, cin, cout, h, w, &taps, &bias, p.map(|p| p.0), up);
            assert_eq!(out.len(), want.len());
            for (i, (&g, &s)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(g) - s).abs() < 1e-4 * (1.0 + s.abs()),
                    "{cin}->{cout} {h}x{w} pre {pre} up {up}: value {i} {g} vs {s}"
                );
            }
        }
    }

    /// The bf16 form against f64 loops over the definition on the same bf16-rounded
    /// transformed values: here the transformed weights and inputs are rounded, not the
    /// weights and inputs, so the bound is a bf16 step (2^-8 relative) on each transformed
    /// product, carried through the output transform (coefficients 0, 1, -1: at most the sum
    /// of the magnitudes).
    #[test]
    fn bf16_stays_within_rounding_of_the_definition() {
        if !bf16_available() {
            eprintln!("no AVX512-BF16 on this CPU: bf16 winograd convolution not exercised");
            return;
        }
        for &(cin, cout, h, w, pre, up) in CASES {
            let shrink = if up { 4 } else { 1 };
            let RandomConv {
                taps,
                bias,
                x,
                coef,
            } = RandomConv::new(23, cin, cout, cin * h * w / shrink, 8.0);
            let conv = WinogradBf16::new(&taps, &bias, cin);
            let mut out = vec![f32::NAN; 3];
            let p = pre.then_some((&coef[..], true));
            conv.forward(&x, h, w, p, up, &mut out);
            let want = reference(&x, cin, cout, h, w, &taps, &bias, p.map(|p| p.0), up);
            // Bound per output: sum over channels and taps of |g| |d| times (1 + 2^-8)^2 - 1
            // per transformed factor, with the transforms' gain (|B|, |G| and |A| sums: 4,
            // 9/4 and 9 at most over a tile's entries) taken as the worst case 81.
            let mag = reference(
                &x.iter().map(|v| v.abs()).collect::<Vec<_>>(),
                cin,
                cout,
                h,
                w,
                &taps.iter().map(|v| v.abs()).collect::<Vec<_>>(),
                &vec![0.0; cout],
                None,
                up,
            );
            let mut worst = 0.0f64;
            for (i, (&g, &s)) in out.iter().zip(&want).enumerate() {
                let scale = if pre { 8.0 } else { 1.0 };
                let bound = 81.0 * scale * mag[i] * 2.0 / 256.0 + 1e-4 * (1.0 + s.abs());
                worst = worst.max((f64::from(g) - s).abs() / (mag[i] + 1e-9));
                assert!(
                    (f64::from(g) - s).abs() < bound,
                    "{cin}->{cout} {h}x{w} pre {pre} up {up}: value {i} {g} vs {s}"
                );
            }
            eprintln!("{cin}->{cout} {h}x{w}: worst error / magnitude {worst:.2e}");
        }
    }

    /// Two parts give the bits of their concatenation, at splits on and off a channel pair,
    /// upsampled or not.
    #[test]
    fn parts_equal_their_concatenation() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: winograd parts not exercised");
            return;
        }
        let (cin, cout, h, w) = (6, 8, 8, 32);
        for up in [false, true] {
            let shrink = if up { 4 } else { 1 };
            let splane = h * w / shrink;
            let l = RandomConv::new(13, cin, cout, cin * splane, 2.0);
            let p = Some((&l.coef[..], true));
            let f = WinogradF32::new(&l.taps, &l.bias, cin);
            let b = bf16_available().then(|| WinogradBf16::new(&l.taps, &l.bias, cin));
            let (mut want_f, mut want_b) = (Vec::new(), Vec::new());
            f.forward(&l.x, h, w, p, up, &mut want_f);
            if let Some(b) = &b {
                b.forward(&l.x, h, w, p, up, &mut want_b);
            }
            for ca in [0, 1, 2, 5, 6] {
                let (xa, xb) = l.x.split_at(ca * splane);
                let mut got = Vec::new();
                f.forward_parts(xa, xb, h, w, p, up, &mut got);
                assert_eq!(got, want_f, "f32, split after {ca}, up {up}");
                if let Some(b) = &b {
                    b.forward_parts(xa, xb, h, w, p, up, &mut got);
                    assert_eq!(got, want_b, "bf16, split after {ca}, up {up}");
                }
            }
        }
    }

    /// The bf16 form made from the f32 one holds the same weights as one made from the taps
    /// (odd channel counts: the last pair's zero half).
    #[test]
    fn bf16_from_f32_equals_bf16_from_taps() {
        for (cin, cout) in [(3, 5), (64, 24)] {
            let l = RandomConv::new(11, cin, cout, cin, 1.0);
            let a = WinogradBf16::from_f32(&WinogradF32::new(&l.taps, &l.bias, cin));
            let b = WinogradBf16::new(&l.taps, &l.bias, cin);
            assert_eq!((a.u, a.bias, a.cin), (b.u, b.bias, b.cin));
        }
    }

    /// The same call gives the same bits on a pool of 1, 2 or 3 threads (bands do not depend
    /// on the pool).
    #[test]
    fn bit_identical_on_any_pool() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: winograd convolution not exercised");
            return;
        }
        for (cin, cout, h, w) in [(64, 24, 70, 64), (32, 16, 20, 16)] {
            let l = RandomConv::new(9, cin, cout, cin * h * w, 1.0);
            let conv = WinogradF32::new(&l.taps, &l.bias, cin);
            assert_same_bits_on_any_pool(|out| conv.forward(&l.x, h, w, None, false, out));
        }
    }
}
