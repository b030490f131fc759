//! Winograd's F(2x2, 3x3) on matrix products: the form 3x3 stride-1 convolutions take on CPUs
//! without AVX-512F (edge boxes with AVX2 only), where the hand-written kernels of
//! [`super::direct`] and [`super::winograd`] do not run.
//!
//! Each 4 x 4 input tile `d` (stride 2, one pixel of zero padding) becomes `V = B^T d B`, each
//! filter `g` becomes `U = G g G^T`, and the 2 x 2 output block is `A^T (U . V) A`. Summed over
//! input channels, the elementwise products `U . V` are 16 matrix products, one per tile
//! position `k`: `M_k [cout, tiles] = U_k [cout, cin] V_k [cin, tiles]`, which run on the `gemm`
//! crate (its AVX2/FMA kernels on such CPUs). That is 16 multiply-adds per channel pair and
//! output block where the nine per-tap products ([`super::kernels::Conv`]'s portable form) do
//! 36: 2.25x fewer. The transforms are additions only, written as loops over a row of tiles
//! (unit stride, so they compile to vector code) and compiled for AVX2 and AVX-512 too (chosen
//! at run time, as [`super::kernels`]' element-wise loops; the same bits either way). The input transform also applies what the layer does to its
//! input before the convolution, while it reads: a normalisation's per-channel affine map and
//! SiLU, the decoder's 2x nearest upsampling, and the concatenation with a skip connection;
//! none of them is written out as a copy of the input.
//!
//! The image is cut into bands of tile rows (a function of the layer's shape only, so every
//! thread count gives the same bits); a band's transformed input and products stay in the
//! core's L2 cache, and bands are the pieces (module `pieces`) that workers share.

use super::kernels::{affine_generic, matmul, simd_dispatch};
use super::pieces::{self, grow, with_buffer, Disjoint};
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Bytes of a band's transformed input and products (`16 (cin + cout)` floats a tile): 1 MiB,
/// inside the L2 cache of current x86 cores.
const BAND_BYTES: usize = 1 << 20;

/// Bands an image is cut into at least, where it has the tile rows: two workers can share a
/// layer.
const MIN_BANDS: usize = 2;

thread_local! {
    /// A band's transformed input, reused across bands and calls on this thread.
    static V: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A band's products, likewise.
    static M: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A 3x3 stride-1 convolution (padding 1) in the F(2x2, 3x3) form.
#[derive(Debug, Clone)]
pub struct WinogradProducts {
    /// Transformed weights `U`, `[16, cout, cin]` (tile position `k = 4 i + j` outer).
    u: Vec<f32>,
    /// Bias `[cout]`.
    bias: Vec<f32>,
    cin: usize,
    cout: usize,
}

/// Whether an `h x w` input runs in this form: even sides (whole 2 x 2 output blocks).
pub fn fits(h: usize, w: usize) -> bool {
    h >= 2 && w >= 2 && h.is_multiple_of(2) && w.is_multiple_of(2)
}

impl WinogradProducts {
    /// The form of the convolution with weights `taps` (`[9, cout, cin]`, tap `3 ky + kx`) and
    /// `bias` (`[cout]`).
    ///
    /// # Panics
    /// If the lengths do not match.
    pub fn new(taps: &[f32], bias: &[f32], cin: usize) -> WinogradProducts {
        let cout = bias.len();
        assert_eq!(taps.len(), 9 * cout * cin, "Winograd weights length");
        let mut u = vec![0.0f32; 16 * cout * cin];
        // G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]], in f64.
        const G: [[f64; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        for co in 0..cout {
            for ci in 0..cin {
                let g =
                    |ky: usize, kx: usize| f64::from(taps[((3 * ky + kx) * cout + co) * cin + ci]);
                for i in 0..4 {
                    for j in 0..4 {
                        let mut s = 0.0;
                        for (ky, gi) in G[i].iter().enumerate() {
                            for (kx, gj) in G[j].iter().enumerate() {
                                s += gi * g(ky, kx) * gj;
                            }
                        }
                        u[((4 * i + j) * cout + co) * cin + ci] = s as f32;
                    }
                }
            }
        }
        WinogradProducts {
            u,
            bias: bias.to_vec(),
            cin,
            cout,
        }
    }

    /// `out` (emptied, then `[cout, h, w]`) = the convolution of `x` (`[cin, h, w]`) plus the
    /// bias.
    ///
    /// # Panics
    /// If `x` does not hold `cin * h * w` values or the size does not [`fits`].
    pub fn forward(&self, x: &[f32], h: usize, w: usize, out: &mut Vec<f32>) {
        self.forward_parts(x, &[], h, w, None, false, out);
    }

    /// [`WinogradProducts::forward`] of `pre(x)`, where `x` is the concatenation of `xa` (the
    /// first input channels) and `xb` (the rest, read in place), `pre = Some((coef, silu))`
    /// maps channel `ci` to `coef[ci][0] v + coef[ci][1]`, then SiLU if `silu` (a
    /// normalisation's output, as in [`super::kernels::Conv::forward_normed`]), and with `up`
    /// the input is `[cin, h / 2, w / 2]` and the convolution's input its nearest-neighbour 2x
    /// upsampling. The input transform applies all three while it reads: no normalised,
    /// concatenated or upsampled copy is written out.
    ///
    /// # Panics
    /// If the lengths do not match the sizes or the size does not [`fits`].
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
        assert!(fits(h, w), "F(2x2, 3x3) needs even sides, got {h}x{w}");
        let (cin, cout) = (self.cin, self.cout);
        let input = Input {
            xa,
            xb,
            ca: input_parts(xa, xb, cin, h, w, pre, up),
            h,
            w,
            pre,
            up,
        };
        let th = h / 2;
        let tw = w / 2;
        let per_row = 16 * (cin + cout) * tw * std::mem::size_of::<f32>();
        let rows = (BAND_BYTES / per_row).clamp(1, th.div_ceil(MIN_BANDS).max(1));
        let bands = th.div_ceil(rows);
        let len = cout * h * w;
        out.clear();
        out.reserve(len);
        let dst = Disjoint::new(out.as_mut_ptr());
        pieces::run(bands, |b| {
            let ty0 = b * rows;
            let nr = rows.min(th - ty0);
            let n = nr * tw;
            // Every value of `v` and `m` is written before it is read: the reused buffers
            // are only grown, never cleared per band.
            with_buffer(&V, |v| {
                grow(v, 16 * cin * n);
                input_transform(&input, cin, ty0, nr, v);
                with_buffer(&M, |m| {
                    grow(m, 16 * cout * n);
                    for k in 0..16 {
                        let (uk, vk) = (&self.u[k * cout * cin..], &v[k * cin * n..]);
                        matmul(
                            cout,
                            n,
                            cin,
                            &mut m[k * cout * n..],
                            n,
                            uk,
                            cin,
                            vk,
                            n,
                            false,
                        );
                    }
                    for co in 0..cout {
                        // SAFETY: `out` has capacity `len` and outlives the pieces; band `b`
                        // writes output rows `2 ty0..2 (ty0 + nr)` of every channel only, so
                        // no two bands write the same values (as `MaybeUninit`: they are not
                        // initialised yet).
                        let rows_out = unsafe {
                            std::slice::from_raw_parts_mut(
                                dst.ptr()
                                    .add((co * h + 2 * ty0) * w)
                                    .cast::<MaybeUninit<f32>>(),
                                2 * nr * w,
                            )
                        };
                        output_transform(m, cout, co, n, tw, self.bias[co], rows_out);
                    }
                })
            });
        });
        // SAFETY: the bands wrote every row of every channel: all `len` values.
        unsafe { out.set_len(len) };
    }
}

/// Checks a Winograd form's input against its sizes (this module's and the AVX-512 forms') (`xa` then `xb` the `cin` channels of an `h x w`
/// input, or of `h / 2 x w / 2` with `up`; `pre`'s coefficients one per channel) and returns
/// how many channels `xa` holds.
///
/// # Panics
/// If they do not match, or `xa` does not hold whole channels.
pub(super) fn input_parts(
    xa: &[f32],
    xb: &[f32],
    cin: usize,
    h: usize,
    w: usize,
    pre: Option<(&[[f32; 2]], bool)>,
    up: bool,
) -> usize {
    let shrink = if up { 4 } else { 1 };
    assert_eq!(
        (xa.len() + xb.len()) * shrink,
        cin * h * w,
        "winograd conv input"
    );
    let splane = h * w / shrink;
    let ca = xa.len() / splane;
    assert_eq!(ca * splane, xa.len(), "winograd conv input parts");
    if let Some((coef, _)) = pre {
        assert_eq!(coef.len(), cin, "winograd conv input coefficients");
    }
    ca
}

/// A convolution's input as [`WinogradProducts::forward_parts`] reads it.
struct Input<'a> {
    xa: &'a [f32],
    xb: &'a [f32],
    /// Channels in `xa`.
    ca: usize,
    /// The convolution's input size (after any upsampling).
    h: usize,
    w: usize,
    pre: Option<(&'a [[f32; 2]], bool)>,
    up: bool,
}

impl Input<'_> {
    /// Row `y` of channel `ci` of the convolution's input, without `pre`: a row of `w` values,
    /// or with `up` the row of `w / 2` values that upsamples to it.
    fn row(&self, ci: usize, y: usize) -> &[f32] {
        let (sh, sw) = if self.up {
            (self.h / 2, self.w / 2)
        } else {
            (self.h, self.w)
        };
        let (x, c) = if ci < self.ca {
            (self.xa, ci)
        } else {
            (self.xb, ci - self.ca)
        };
        let sy = if self.up { y / 2 } else { y };
        debug_assert!(sy < sh);
        &x[(c * sh + sy) * sw..][..sw]
    }
}

simd_dispatch! {
    /// `v` (`[16, cin, nr * tw]`) = `B^T d B` of every 4 x 4 tile of tile rows `ty0..ty0 + nr`.
    fn input_transform(x: &Input, cin: usize, ty0: usize, nr: usize, v: &mut [f32]) => input_transform_generic, input_transform_avx2, input_transform_avx512
}

simd_dispatch! {
    /// Output rows `2 ty0..2 (ty0 + nr)` of channel `co` (`rows_out`, `[2 nr, 2 tw]`) =
    /// `A^T M A` plus `bias`, `m` the band's products `[16, cout, nr * tw]`.
    fn output_transform(m: &[f32], cout: usize, co: usize, n: usize, tw: usize, bias: f32, rows_out: &mut [MaybeUninit<f32>]) => output_transform_generic, output_transform_avx2, output_transform_avx512
}

/// `B^T` applied to four values: `[c0 - c2, c1 + c2, c2 - c1, c1 - c3]`.
#[inline(always)]
fn bt(c0: f32, c1: f32, c2: f32, c3: f32) -> [f32; 4] {
    [c0 - c2, c1 + c2, c2 - c1, c1 - c3]
}

#[inline(always)]
fn input_transform_generic(x: &Input, cin: usize, ty0: usize, nr: usize, v: &mut [f32]) {
    let (h, tw) = (x.h, x.w / 2);
    let n = nr * tw;
    // The band's padded rows 2 ty0..2 (ty0 + nr) + 2 of one channel, each split into even
    // (`e[i]` = padded column 2i) and odd columns and transformed along the row once:
    // `t[rr][j]`, one value a tile (a padded row is shared by two tile rows).
    let prows = 2 * nr + 2;
    let mut e = vec![0.0f32; tw + 1];
    let mut o = vec![0.0f32; tw + 1];
    let mut normed = vec![0.0f32; x.w];
    let mut t = vec![0.0f32; prows * 4 * tw];
    for ci in 0..cin {
        for (rr, tr) in t.chunks_exact_mut(4 * tw).enumerate() {
            // Padded row 2 ty0 + rr is input row 2 ty0 + rr - 1.
            let iy = (2 * ty0 + rr) as isize - 1;
            if iy < 0 || iy >= h as isize {
                tr.fill(0.0);
                continue;
            }
            let mut row = x.row(ci, iy as usize);
            if let Some((coef, silu)) = x.pre {
                let [a, b] = coef[ci];
                let d = &mut normed[..row.len()];
                affine_generic(d, row, a, b, silu);
                row = d;
            }
            // Padded column p is input column p - 1: e[i] = x[2i - 1], o[i] = x[2i]; the
            // upsampling of a row r has x[2i - 1] = r[i - 1] and x[2i] = r[i].
            e[0] = 0.0;
            o[tw] = 0.0;
            if x.up {
                o[..tw].copy_from_slice(row);
                e[1..].copy_from_slice(row);
            } else {
                for (i, pair) in row.chunks_exact(2).enumerate() {
                    o[i] = pair[0];
                    e[i + 1] = pair[1];
                }
            }
            let (t0, rest) = tr.split_at_mut(tw);
            let (t1, rest) = rest.split_at_mut(tw);
            let (t2, t3) = rest.split_at_mut(tw);
            for tx in 0..tw {
                let [a0, a1, a2, a3] = bt(e[tx], o[tx], e[tx + 1], o[tx + 1]);
                t0[tx] = a0;
                t1[tx] = a1;
                t2[tx] = a2;
                t3[tx] = a3;
            }
        }
        // Along the columns: v[4 i + j] = B^T over the tile's rows r of t[2 (ty - ty0) + r][j].
        for ty in ty0..ty0 + nr {
            let base = (ty - ty0) * tw;
            let rr = 2 * (ty - ty0);
            for j in 0..4 {
                let col = |r: usize| &t[((rr + r) * 4 + j) * tw..((rr + r) * 4 + j + 1) * tw];
                let (r0, r1, r2, r3) = (col(0), col(1), col(2), col(3));
                for i in 0..4 {
                    let dst = &mut v[((4 * i + j) * cin + ci) * n + base..][..tw];
                    match i {
                        0 => dst
                            .iter_mut()
                            .zip(r0)
                            .zip(r2)
                            .for_each(|((d, a), b)| *d = a - b),
                        1 => dst
                            .iter_mut()
                            .zip(r1)
                            .zip(r2)
                            .for_each(|((d, a), b)| *d = a + b),
                        2 => dst
                            .iter_mut()
                            .zip(r2)
                            .zip(r1)
                            .for_each(|((d, a), b)| *d = a - b),
                        _ => dst
                            .iter_mut()
                            .zip(r1)
                            .zip(r3)
                            .for_each(|((d, a), b)| *d = a - b),
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn output_transform_generic(
    m: &[f32],
    cout: usize,
    co: usize,
    n: usize,
    tw: usize,
    bias: f32,
    rows_out: &mut [MaybeUninit<f32>],
) {
    let w = 2 * tw;
    let mk = |k: usize| &m[(k * cout + co) * n..(k * cout + co + 1) * n];
    let mut s = vec![0.0f32; 8 * tw];
    for (r, out2) in rows_out.chunks_exact_mut(2 * w).enumerate() {
        let sl = |k: usize| &mk(k)[r * tw..(r + 1) * tw];
        // A^T over the rows: s[0][j] = m0j + m1j + m2j, s[1][j] = m1j - m2j - m3j.
        for j in 0..4 {
            let (m0, m1, m2, m3) = (sl(j), sl(4 + j), sl(8 + j), sl(12 + j));
            let (s0, s1) = s.split_at_mut(4 * tw);
            let s0 = &mut s0[j * tw..(j + 1) * tw];
            let s1 = &mut s1[j * tw..(j + 1) * tw];
            for tx in 0..tw {
                s0[tx] = m0[tx] + m1[tx] + m2[tx];
                s1[tx] = m1[tx] - m2[tx] - m3[tx];
            }
        }
        // A^T over the columns, plus the bias, interleaved into the two output rows.
        for (a, row) in out2.chunks_exact_mut(w).enumerate() {
            let sj = |j: usize| &s[(4 * a + j) * tw..(4 * a + j + 1) * tw];
            let (s0, s1, s2, s3) = (sj(0), sj(1), sj(2), sj(3));
            for (tx, pair) in row.chunks_exact_mut(2).enumerate() {
                pair[0] = MaybeUninit::new(s0[tx] + s1[tx] + s2[tx] + bias);
                pair[1] = MaybeUninit::new(s1[tx] - s2[tx] - s3[tx] + bias);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_same_bits_on_any_pool, reference, RandomConv};
    use super::*;

    #[test]
    fn matches_the_definition_at_several_sizes() {
        // Rectangular, one tile row, one tile column, several bands, few and many channels.
        for &(cin, cout, h, w) in &[
            (3, 5, 6, 8),
            (2, 3, 2, 10),
            (4, 2, 12, 2),
            (20, 9, 34, 18),
            (64, 16, 128, 16),
        ] {
            let r = RandomConv::new(7, cin, cout, cin * h * w, 1.0);
            let f = WinogradProducts::new(&r.taps, &r.bias, cin);
            let mut out = Vec::new();
            f.forward(&r.x, h, w, &mut out);
            let want = reference(&r.x, cin, cout, h, w, &r.taps, &r.bias, None, false);
            let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let worst = out
                .iter()
                .zip(&want)
                .map(|(&g, &r)| (f64::from(g) - r).abs())
                .fold(0.0, f64::max);
            assert!(
                worst < 1e-5 * scale.max(1.0),
                "{cin}->{cout} {h}x{w}: worst error {worst:e} (scale {scale})"
            );
        }
    }

    #[test]
    fn same_bits_on_any_pool() {
        let (cin, cout, h, w) = (16, 8, 64, 64);
        let r = RandomConv::new(3, cin, cout, cin * h * w, 1.0);
        let f = WinogradProducts::new(&r.taps, &r.bias, cin);
        assert_same_bits_on_any_pool(|out| f.forward(&r.x, h, w, out));
    }

    #[test]
    fn fused_input_forms_give_the_bits_of_the_prepared_input() {
        use super::super::kernels::{apply_coefficients, concat, upsample2};
        let (ca, cb, cout) = (5, 3, 4);
        let cin = ca + cb;
        for &(up, silu) in &[(false, false), (false, true), (true, true)] {
            // The convolution's input is 12 x 20; with `up` the stored input is 6 x 10.
            let (h, w) = (12, 20);
            let (sh, sw) = if up { (h / 2, w / 2) } else { (h, w) };
            let r = RandomConv::new(11, cin, cout, cin * sh * sw, 2.0);
            let f = WinogradProducts::new(&r.taps, &r.bias, cin);
            let (xa, xb) = r.x.split_at(ca * sh * sw);
            let mut fused = Vec::new();
            f.forward_parts(xa, xb, h, w, Some((&r.coef, silu)), up, &mut fused);
            let x = apply_coefficients(&concat(xa, xb), sh * sw, &r.coef, silu);
            let x = if up { upsample2(&x, cin, sh, sw) } else { x };
            let mut want = Vec::new();
            f.forward(&x, h, w, &mut want);
            assert!(
                fused
                    .iter()
                    .zip(&want)
                    .all(|(p, q)| p.to_bits() == q.to_bits()),
                "up {up}, silu {silu}: the fused input differs"
            );
        }
    }

    #[test]
    fn odd_sides_do_not_fit() {
        assert!(fits(2, 2) && fits(128, 16));
        assert!(!fits(3, 4) && !fits(4, 5) && !fits(0, 4));
    }
}
