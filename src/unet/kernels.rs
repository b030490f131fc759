//! The few kernels the guided-diffusion UNet needs, for one image at a time: matrix products on
//! the `gemm` crate (runtime-dispatched SIMD kernels, pure Rust), 3x3 and 1x1 convolutions as
//! products over column blocks of the input or, for 3x3 ones, by Winograd on products
//! ([`super::winograd_products`]) (the portable forms; on AVX-512 the [`Conv`] and
//! [`Dense`] methods hand them to [`super::winograd`], [`super::direct`] and
//! [`super::pointwise`]), GroupNorm with the optional scale-shift and SiLU fused into one pass,
//! and a vectorisable exponential for SiLU and softmax.
//!
//! Activations are `[channels, height, width]` row-major `f32` slices.
//!
//! Element-wise loops are compiled three times on x86-64: for the baseline target, with AVX2 +
//! FMA and with AVX-512F enabled (chosen at run time), so a default build runs wide vector code
//! on machines that have it and still runs everywhere else; the loops are the same, so the
//! results are the same bits.

use super::pieces::{self, Disjoint, PIECES};
use super::winograd_products::WinogradProducts;

/// Buffers of released activations, kept per thread for the next ones: a pass allocates
/// tens of megabytes in short-lived buffers, and fresh pages from the system cost a page fault
/// and a clearing each (measured at a tenth of a pass), while reused ones are warm.
mod pool {
    use std::cell::RefCell;

    /// Buffers kept per thread at most.
    const KEEP: usize = 16;
    /// Values kept per thread at most (32 MiB).
    const KEEP_VALUES: usize = 8 << 20;

    thread_local! {
        static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty buffer with capacity for at least `len` values.
    pub fn take(len: usize) -> Vec<f32> {
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            // The smallest kept buffer that is large enough.
            let best = f
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            match best {
                Some(i) => {
                    let mut v = f.swap_remove(i);
                    v.clear();
                    v
                }
                None => Vec::with_capacity(len),
            }
        })
    }

    /// Gives a buffer back for reuse.
    pub fn give(v: Vec<f32>) {
        if v.capacity() == 0 || v.capacity() > KEEP_VALUES {
            return;
        }
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            // Make room by dropping smaller buffers: large ones are the expensive ones to remake.
            loop {
                let held: usize = f.iter().map(Vec::capacity).sum();
                if f.len() < KEEP && held + v.capacity() <= KEEP_VALUES {
                    break;
                }
                match f.iter().enumerate().min_by_key(|(_, b)| b.capacity()) {
                    Some((i, b)) if b.capacity() < v.capacity() => {
                        f.swap_remove(i);
                    }
                    _ => return,
                }
            }
            f.push(v);
        });
    }
}

pub use pool::give as recycle;

/// An empty buffer with capacity for at least `len` values (from the pool).
pub fn buffer(len: usize) -> Vec<f32> {
    pool::take(len)
}

/// `a` then `b` in one buffer (from the pool).
pub fn concat(a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut v = pool::take(a.len() + b.len());
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    v
}

/// A buffer of `len` zeros (from the pool).
pub fn zeros(len: usize) -> Vec<f32> {
    let mut v = pool::take(len);
    v.resize(len, 0.0);
    v
}

/// A buffer holding `rows` rows of `n` values, row `i` filled with `fill[i]` (from the pool).
fn rows_filled(fill: &[f32], n: usize) -> Vec<f32> {
    let mut v = pool::take(fill.len() * n);
    for &b in fill {
        v.extend(std::iter::repeat_n(b, n));
    }
    v
}

/// Largest im2col block, in floats (1 MiB): the block of the unrolled input that one matrix
/// product reads stays in the core's L2 cache.
const COL_BLOCK: usize = 256 * 1024;

/// A strided view of a matrix: `data[offset + i * rs + j * cs]` is entry `(i, j)`.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl View<'_> {
    /// Whether an `rows x cols` matrix fits in the slice.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || self.data.len() > (rows - 1) * self.rs + (cols - 1) * self.cs
    }
}

/// `dst[m, n] = (accumulate ? dst : 0) + lhs[m, k] * rhs[k, n]`, dst row-major with row stride
/// `dst_rs`, on `threads` threads.
///
/// # Panics
/// If a slice is too short for the given sizes and strides.
#[allow(clippy::too_many_arguments)]
fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: View,
    rhs: View,
    threads: usize,
) {
    // SAFETY: `dst` is borrowed mutably for the call and `dst.len()` is its length.
    unsafe {
        product_into(
            m,
            n,
            k,
            (dst.as_mut_ptr(), dst.len()),
            dst_strides,
            accumulate,
            lhs,
            rhs,
            threads,
        )
    }
}

/// [`product`] into the `len` values at `dst`, which the caller may share with other threads
/// that write other entries of the same buffer.
///
/// # Safety
/// `dst` must be valid for reads and writes of `len` values for the call, and no other thread
/// may access the entries this product writes (the `m x n` view with the given strides) during it.
///
/// # Panics
/// If `len` or a slice is too short for the given sizes and strides.
#[allow(clippy::too_many_arguments)]
unsafe fn product_into(
    m: usize,
    n: usize,
    k: usize,
    (dst, len): (*mut f32, usize),
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: View,
    rhs: View,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        len > (m - 1) * dst_rs + (n - 1) * dst_cs,
        "matrix product: dst too short"
    );
    assert!(lhs.fits(m, k), "matrix product: lhs too short");
    assert!(rhs.fits(k, n), "matrix product: rhs too short");
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every access of the m x n, m x k and k x n views (with
    // the strides given) inside `dst` and the slices; the caller keeps other threads off the
    // entries written, and the read-only slices cannot alias the mutable destination.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

/// `dst[m, n] = (accumulate ? dst : 0) + lhs[m, k] * rhs[k, n]` for row-major matrices with
/// row strides `dst_rs`, `lhs_rs`, `rhs_rs` (column stride 1), on one thread.
///
/// # Panics
/// If a slice is too short for the given sizes and strides.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_rs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    accumulate: bool,
) {
    let lhs = View {
        data: lhs,
        rs: lhs_rs,
        cs: 1,
    };
    let rhs = View {
        data: rhs,
        rs: rhs_rs,
        cs: 1,
    };
    product(m, n, k, dst, (dst_rs, 1), accumulate, lhs, rhs, 1);
}

/// `dst[m, n] = lhs[k, m]^T * rhs[k, n]` (lhs given row-major as `[k, m]`), overwriting dst.
pub fn matmul_at(m: usize, n: usize, k: usize, dst: &mut [f32], lhs: &[f32], rhs: &[f32]) {
    let lhs = View {
        data: lhs,
        rs: 1,
        cs: m,
    };
    let rhs = View {
        data: rhs,
        rs: n,
        cs: 1,
    };
    product(m, n, k, dst, (n, 1), false, lhs, rhs, 1);
}

/// The f32 matrix-product rate of this machine: GFLOP/s of an `n x n x n` product on
/// `threads` threads, the median of `repeats` runs after one warm-up (the peak the network's
/// rate is set against in `msm bench`).
pub fn product_rate(n: usize, threads: usize, repeats: usize) -> f64 {
    let a = vec![1.0f32; n * n];
    let b = vec![0.5f32; n * n];
    let mut c = vec![0.0f32; n * n];
    let mut run = || {
        let t = std::time::Instant::now();
        let lhs = View {
            data: &a,
            rs: n,
            cs: 1,
        };
        let rhs = View {
            data: &b,
            rs: n,
            cs: 1,
        };
        product(n, n, n, &mut c, (n, 1), false, lhs, rhs, threads);
        2.0 * (n as f64).powi(3) / t.elapsed().as_secs_f64() / 1e9
    };
    run();
    let mut v: Vec<f64> = (0..repeats.max(1)).map(|_| run()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Fewest input channels for which a 3x3 convolution runs as nine per-tap products.
const MIN_IMPLICIT_CIN: usize = 16;

/// Fewest pixels in a piece of a 1x1 convolution ([`super::pieces`]).
const MIN_PIECE_COLUMNS: usize = 256;

/// Output block of a 3x3 convolution, in floats (256 KiB): the block and the input rows
/// its nine products read stay in the core's L2 cache.
const OUT_BLOCK: usize = 64 * 1024;

/// A 2-D convolution with a square kernel of size 1 or 3 (padding `k / 2`), stride 1 or 2.
///
/// A 3x3 stride-1 convolution runs on [`super::direct`]'s register-blocked AVX-512 kernel
/// where the CPU has AVX-512F, or by Winograd's F(2x2, 3x3) ([`super::winograd`]) at the sizes
/// [`Conv::use_winograd`] gave it that form for; elsewhere by Winograd's F(2x2, 3x3) on 16
/// matrix products ([`super::winograd_products`]) where the sides are even, else as nine
/// accumulated matrix products, one per kernel tap, each reading the zero-padded input shifted
/// by that tap in place (an implicit im2col: no unrolled copy of the input is made). Other
/// shapes unroll blocks of the input (im2col).
#[derive(Debug, Clone)]
pub struct Conv {
    /// Weights `[cout, cin * k * k]` (the ONNX `[cout, cin, k, k]` order); empty when the
    /// convolution runs on `taps`.
    weight: Vec<f32>,
    /// The same weights per tap, `[k * k, cout, cin]`, for the direct and nine-product forms
    /// (else empty: one copy of the weights is held, not two).
    taps: Vec<f32>,
    /// Bias `[cout]`.
    bias: Vec<f32>,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel size (1 or 3).
    pub k: usize,
    /// Stride (1 or 2).
    pub stride: usize,
    /// The bf16 form, when [`Conv::use_bf16`] made one.
    #[cfg(target_arch = "x86_64")]
    bf16: Option<Bf16Form>,
    /// The Winograd form, when [`Conv::use_winograd`] made one (f32, or bf16 after
    /// [`Conv::use_bf16`]).
    #[cfg(target_arch = "x86_64")]
    winograd: Option<WinogradForm>,
    /// The bf16 Winograd F(4x4, 3x3) form, when [`Conv::use_winograd4`] made one.
    #[cfg(target_arch = "x86_64")]
    winograd4: Option<super::winograd4::Winograd4>,
    /// The portable Winograd F(2x2, 3x3) form on matrix products, when
    /// [`Conv::use_winograd_products`] made one (by default on CPUs without AVX-512F).
    winograd_products: Option<WinogradProducts>,
}

/// A convolution's Winograd F(2x2, 3x3) form ([`super::winograd`]).
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone)]
enum WinogradForm {
    F32(super::winograd::WinogradF32),
    Bf16(super::winograd::WinogradBf16),
}

/// Where a convolution runs in bf16 ([`Conv::use_bf16`]).
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone)]
enum Bf16Form {
    /// AMX tiles (inputs of a size the tiles do not fit run in f32).
    Tiles(super::amx::TileConv),
    /// AVX512-BF16 registers (any size).
    Direct(super::direct_bf16::DirectBf16),
}

/// Which bf16 units [`Conv::use_bf16`] runs on here: AMX tiles, else AVX512-BF16 registers;
/// `None` when the CPU has neither.
pub fn bf16_units() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        if super::amx::available() {
            return Some("AMX tiles");
        }
        if super::direct_bf16::available() {
            return Some("AVX512-BF16");
        }
    }
    None
}

impl Conv {
    /// A convolution with weights `[cout, cin, k, k]` (row-major) and bias `[cout]`.
    ///
    /// # Panics
    /// If the lengths do not match the sizes.
    pub fn new(
        weight: Vec<f32>,
        bias: Vec<f32>,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> Conv {
        assert_eq!(weight.len(), cout * cin * k * k, "conv weight length");
        assert_eq!(bias.len(), cout, "conv bias length");
        let kk = k * k;
        let (weight, taps) = if Self::per_tap(cin, k, stride) {
            let mut taps = vec![0.0f32; weight.len()];
            for co in 0..cout {
                for ci in 0..cin {
                    for t in 0..kk {
                        taps[(t * cout + co) * cin + ci] = weight[(co * cin + ci) * kk + t];
                    }
                }
            }
            (Vec::new(), taps)
        } else {
            (weight, Vec::new())
        };
        let mut conv = Conv {
            weight,
            taps,
            bias,
            cin,
            cout,
            k,
            stride,
            #[cfg(target_arch = "x86_64")]
            bf16: None,
            #[cfg(target_arch = "x86_64")]
            winograd: None,
            #[cfg(target_arch = "x86_64")]
            winograd4: None,
            winograd_products: None,
        };
        if !Self::direct_available() {
            conv.use_winograd_products();
        }
        conv
    }

    /// Adds the portable Winograd F(2x2, 3x3) form on matrix products
    /// ([`super::winograd_products`]: 2.25x fewer multiply-adds than the nine per-tap products)
    /// if this is a 3x3 stride-1 convolution held per tap. [`Conv::new`] adds it where the CPU
    /// has no AVX-512F (there it runs every input of even sides); elsewhere it is for benchmarks
    /// and tests ([`Conv::forward_portable`]). Returns whether the convolution has the form.
    pub fn use_winograd_products(&mut self) -> bool {
        if self.winograd_products.is_none()
            && self.k == 3
            && self.stride == 1
            && !self.taps.is_empty()
        {
            let f = WinogradProducts::new(&self.taps, &self.bias, self.cin);
            self.winograd_products = Some(f);
        }
        self.winograd_products.is_some()
    }

    /// Whether a convolution of this shape holds its weights per tap: it runs on
    /// [`super::direct`] (3x3, stride 1, AVX-512F) or as nine per-tap products over the padded
    /// input (3x3, stride 1, enough input channels); else on an unrolled input.
    fn per_tap(cin: usize, k: usize, stride: usize) -> bool {
        k == 3 && stride == 1 && (cin >= MIN_IMPLICIT_CIN || Self::direct_available())
    }

    /// Whether 3x3 stride-1 convolutions run on [`super::direct`] here (AVX-512F).
    fn direct_available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            super::direct::available()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Runs this convolution in bf16 from now on (inputs and weights rounded to bf16, f32
    /// sums), if it is a 3x3 stride-1 one and the CPU has bf16 units ([`bf16_units`]): AMX
    /// tiles when its channel counts fit them (inputs of a size the tiles do not fit still run
    /// in f32), else AVX512-BF16 registers. Returns whether it does. On an AMX CPU a
    /// convolution whose channels do not fit the tiles stays f32 rather than taking the
    /// AVX512-BF16 form: the AMX generation of Xeon (Sapphire Rapids, measured with AMX hidden
    /// in session 6, docs/performance.md) issues `vdpbf16ps` at about half its f32 FMA rate.
    pub fn use_bf16(&mut self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use super::amx::TileConv;
            if self.bf16.is_some() {
                return true;
            }
            if self.k != 3 || self.stride != 1 || self.taps.is_empty() {
                return false;
            }
            if super::amx::available() {
                if TileConv::fits_channels(self.cin, self.cout) {
                    let t = TileConv::new(&self.taps, &self.bias, self.cin, self.cout);
                    self.bf16 = Some(Bf16Form::Tiles(t));
                }
            } else if super::direct_bf16::available() {
                if let Some(WinogradForm::F32(f)) = &self.winograd {
                    let f = super::winograd::WinogradBf16::from_f32(f);
                    self.winograd = Some(WinogradForm::Bf16(f));
                }
                let d = super::direct_bf16::DirectBf16::new(&self.taps, &self.bias, self.cin);
                self.bf16 = Some(Bf16Form::Direct(d));
                // Every input size runs on it: the f32 copy of the weights is not needed.
                self.taps = Vec::new();
            }
            self.bf16.is_some()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Adds the Winograd F(2x2, 3x3) form ([`super::winograd`]: 2.25x fewer multiplies than
    /// the direct kernels, 16/9 the weights) if this is a 3x3 stride-1 convolution, the CPU
    /// has AVX-512F and an `h x w` input (the size the caller will run it at) takes it (even
    /// sides, width at least 32 or exactly 16, [`super::winograd::fits`]). Inputs of such a size take it from then on, in f32, or in
    /// bf16 once [`Conv::use_bf16`] switched the convolution to AVX512-BF16 registers (on AMX
    /// tiles, the tiles run where they fit). Call it before [`Conv::use_bf16`] (which drops
    /// the f32 weights it needs). Returns whether the convolution has the form.
    pub fn use_winograd(&mut self, h: usize, w: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            if self.winograd.is_none()
                && self.k == 3
                && self.stride == 1
                && !self.taps.is_empty()
                && super::winograd::available()
                && super::winograd::fits(h, w)
            {
                let f = super::winograd::WinogradF32::new(&self.taps, &self.bias, self.cin);
                self.winograd = Some(WinogradForm::F32(f));
            }
            self.winograd.is_some()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (h, w);
            false
        }
    }

    /// Gives this convolution the bf16 Winograd F(4x4, 3x3) form ([`super::winograd4`]: 36
    /// multiplies for 16 outputs where F(2x2) does 64, at about six times its rounding error)
    /// if it is a 3x3 stride-1 convolution, the CPU has AVX512-BF16 and an `h x w` input (the
    /// size the caller will run it at) takes it ([`super::winograd4::fits`]); inputs of a size
    /// it fits take it from then on, ahead of every other form. It replaces the F(2x2) form
    /// (which would not run at that size again). Call it before [`Conv::use_bf16`] (which
    /// drops the f32 weights it needs). Returns whether the convolution has the form.
    pub fn use_winograd4(&mut self, h: usize, w: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use super::winograd4::{available, fits, Winograd4};
            if self.winograd4.is_none()
                && self.k == 3
                && self.stride == 1
                && !self.taps.is_empty()
                && available()
                && fits(h, w)
            {
                self.winograd4 = Some(Winograd4::new(&self.taps, &self.bias, self.cin));
                self.winograd = None;
            }
            self.winograd4.is_some()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (h, w);
            false
        }
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.cout * self.cin * self.k * self.k + self.bias.len()
    }

    /// Whether the convolution has no parameters (never, for a valid one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Output size for an input of `h x w`.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let p = self.k / 2;
        (
            (h + 2 * p - self.k) / self.stride + 1,
            (w + 2 * p - self.k) / self.stride + 1,
        )
    }

    /// Convolves `x` (`[cin, h, w]`); returns `[cout, oh, ow]`. Runs in pieces
    /// (`super::pieces`): row blocks of the output, and for small images channel ranges too.
    /// The forms differ in summation order only (about 1e-6 relative on the shipped model).
    pub fn forward(&self, x: &[f32], h: usize, w: usize) -> Vec<f32> {
        debug_assert_eq!(x.len(), self.cin * h * w);
        let (oh, ow) = self.out_size(h, w);
        let npix = oh * ow;
        if let Some(out) = self.forward_fused(x, &[], h, w, None, false) {
            return out;
        }
        // With few input channels the nine per-tap products (k = cin) would each sweep the
        // whole output; one product over the unrolled input (k = 9 cin) sweeps it once.
        if Self::per_tap(self.cin, self.k, self.stride) {
            return self.forward_portable(x, h, w);
        }
        let mut out = rows_filled(&self.bias, npix);
        let len = out.len();
        let dst = Disjoint::new(out.as_mut_ptr());
        let weight = |rs| View {
            data: &self.weight,
            rs,
            cs: 1,
        };
        if self.k == 1 && self.stride == 1 {
            // Pieces: ranges of pixels (columns of the product), every channel.
            let parts = PIECES.min(npix.div_ceil(MIN_PIECE_COLUMNS));
            pieces::run(parts, |p| {
                let r = pieces::range(npix, parts, p);
                let rhs = View {
                    data: &x[r.start..],
                    rs: npix,
                    cs: 1,
                };
                // SAFETY: `out` (length `len`) outlives the pieces and piece `p` writes its
                // columns `r` only.
                unsafe {
                    product_into(
                        self.cout,
                        r.len(),
                        self.cin,
                        (dst.ptr().add(r.start), len - r.start),
                        (npix, 1),
                        true,
                        weight(self.cin),
                        rhs,
                        1,
                    )
                };
            });
            return out;
        }
        // Pieces: blocks of output rows, each unrolled into its own buffer.
        let kk = self.cin * self.k * self.k;
        let rows = (COL_BLOCK / (kk * ow)).clamp(1, oh);
        pieces::run(oh.div_ceil(rows), |b| {
            let y0 = b * rows;
            let nr = rows.min(oh - y0);
            let n = nr * ow;
            let mut col = zeros(kk * n);
            self.im2col(x, h, w, y0, nr, ow, &mut col);
            let rhs = View {
                data: &col,
                rs: n,
                cs: 1,
            };
            // SAFETY: `out` (length `len`) outlives the pieces and block `b` writes its output
            // rows `y0..y0 + nr` (columns `y0 * ow..(y0 + nr) * ow`) only.
            unsafe {
                product_into(
                    self.cout,
                    n,
                    kk,
                    (dst.ptr().add(y0 * ow), len - y0 * ow),
                    (npix, 1),
                    true,
                    weight(kk),
                    rhs,
                    1,
                )
            };
            recycle(col);
        });
        out
    }

    /// `out += ` the convolution of `x` (`[cin, h, w]`; `out` `[cout, oh, ow]`): a residual
    /// block's skip convolution added to its main branch. A 1x1 stride-1 convolution on
    /// AVX-512F adds its products straight into `out` ([`super::pointwise`]); other shapes
    /// convolve into a buffer, then add it.
    pub fn forward_add(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.k == 1 && self.stride == 1 && super::pointwise::available() {
            debug_assert_eq!(out.len(), self.cout * h * w);
            let w = super::pointwise::Weights::F32(&self.weight);
            super::pointwise::add_pointwise(x, self.cin, w, &self.bias, out);
            return;
        }
        let y = self.forward(x, h, w);
        add_assign(out, &y);
        recycle(y);
    }

    /// [`Conv::forward_add`] of the concatenation of `xa` (the first input channels) and `xb`
    /// (the rest): the pointwise kernel reads both in place; other forms concatenate them first.
    pub fn forward_add_parts(&self, xa: &[f32], xb: &[f32], h: usize, w: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.k == 1 && self.stride == 1 && super::pointwise::available() {
            debug_assert_eq!(out.len(), self.cout * h * w);
            let (weight, bias) = (&self.weight, &self.bias);
            super::pointwise::add_pointwise_parts(xa, xb, self.cin, weight, bias, out);
            return;
        }
        let x = concat(xa, xb);
        self.forward_add(&x, h, w, out);
        recycle(x);
    }

    /// The nine-product form of a 3x3 stride-1 convolution whatever the CPU (the form CPUs
    /// without AVX-512F run at odd sides), for benchmarks and tests that compare it with the
    /// other forms; other shapes, and weights not held per tap, as [`Conv::forward`].
    pub fn forward_products(&self, x: &[f32], h: usize, w: usize) -> Vec<f32> {
        if self.k == 3 && self.stride == 1 && !self.taps.is_empty() {
            let mut out = buffer(self.cout * h * w);
            self.implicit3x3(x, h, w, &mut out);
            return out;
        }
        self.forward(x, h, w)
    }

    /// The form CPUs without AVX-512F run for a 3x3 stride-1 convolution held per tap: the
    /// Winograd products ([`Conv::use_winograd_products`]) where the convolution has them and
    /// the size [`super::winograd_products::fits`], else the nine per-tap products. Whatever
    /// the CPU, for benchmarks and tests; other shapes as [`Conv::forward`].
    pub fn forward_portable(&self, x: &[f32], h: usize, w: usize) -> Vec<f32> {
        if self.k != 3 || self.stride != 1 || self.taps.is_empty() {
            return self.forward(x, h, w);
        }
        let mut out = buffer(self.cout * h * w);
        match &self.winograd_products {
            Some(f) if super::winograd_products::fits(h, w) => f.forward(x, h, w, &mut out),
            _ => self.implicit3x3(x, h, w, &mut out),
        }
        out
    }

    /// Convolves `a x + b` per input channel (`coef[ci] = [a, b]`, then SiLU if `silu`): a
    /// normalisation's output, which the bf16 tile and direct paths apply while packing or
    /// padding their input instead of writing it out first.
    pub fn forward_normed(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        coef: &[[f32; 2]],
        silu: bool,
    ) -> Vec<f32> {
        debug_assert_eq!(coef.len(), self.cin);
        if let Some(out) = self.forward_fused(x, &[], h, w, Some((coef, silu)), false) {
            return out;
        }
        let n = apply_coefficients(x, h * w, coef, silu);
        let out = self.forward(&n, h, w);
        recycle(n);
        out
    }

    /// [`Conv::forward_normed`] of the concatenation of `xa` (the first input channels) and
    /// `xb` (the rest): the Winograd form reads both in place; other forms concatenate them
    /// first.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_normed_parts(
        &self,
        xa: &[f32],
        xb: &[f32],
        h: usize,
        w: usize,
        coef: &[[f32; 2]],
        silu: bool,
    ) -> Vec<f32> {
        if let Some(out) = self.forward_fused(xa, xb, h, w, Some((coef, silu)), false) {
            return out;
        }
        let x = concat(xa, xb);
        let out = self.forward_normed(&x, h, w, coef, silu);
        recycle(x);
        out
    }

    /// Convolves the nearest-neighbour 2x upsampling of `a x + b` per input channel
    /// (`coef[ci] = [a, b]`, then SiLU if `silu`; `x` `[cin, h, w]`); returns `[cout, 2h, 2w]`.
    /// The fused forms normalise and upsample while copying their input (an upsampling residual
    /// block's first convolution); other forms normalise, upsample, then convolve.
    pub fn forward_normed_upsampled(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        coef: &[[f32; 2]],
        silu: bool,
    ) -> Vec<f32> {
        debug_assert_eq!(x.len(), self.cin * h * w);
        debug_assert_eq!(coef.len(), self.cin);
        if let Some(out) = self.forward_fused(x, &[], 2 * h, 2 * w, Some((coef, silu)), true) {
            return out;
        }
        let n = apply_coefficients(x, h * w, coef, silu);
        let out = self.forward_upsampled(&n, h, w);
        recycle(n);
        out
    }

    /// Convolves the nearest-neighbour 2x upsampling of `x` (`[cin, h, w]`); returns `[cout,
    /// 2h, 2w]`. The direct kernels upsample while copying their input, so the upsampled image
    /// is never written out; other forms upsample first.
    pub fn forward_upsampled(&self, x: &[f32], h: usize, w: usize) -> Vec<f32> {
        debug_assert_eq!(x.len(), self.cin * h * w);
        if let Some(out) = self.forward_fused(x, &[], 2 * h, 2 * w, None, true) {
            return out;
        }
        let u = upsample2(x, self.cin, h, w);
        let out = self.forward(&u, 2 * h, 2 * w);
        recycle(u);
        out
    }

    /// The forms that apply `pre` (as in [`super::direct::conv3x3`]) while copying their input
    /// (`h x w`, or with `up` the upsampling of `x` at `h / 2 x w / 2`), first that applies:
    /// the F(4x4) Winograd form when [`Conv::use_winograd4`] made one (if the size fits it),
    /// AMX tiles when [`Conv::use_bf16`] made them (if the size fits and not `up`), the
    /// Winograd form when [`Conv::use_winograd`] made one (if the size fits it), the
    /// Winograd products when [`Conv::use_winograd_products`] made them (if the size fits
    /// them; CPUs without AVX-512F), the AVX512-BF16 direct kernel when [`Conv::use_bf16`]
    /// made it, the f32 direct kernel for a 3x3 stride-1 convolution on AVX-512F; `None` when
    /// none runs here. The input is the concatenation of `x` (the first channels) and `xb`
    /// (the rest, usually empty): the Winograd forms read both in place; with a non-empty `xb`
    /// the others give `None`, and the caller concatenates.
    #[allow(clippy::too_many_arguments)]
    fn forward_fused(
        &self,
        x: &[f32],
        xb: &[f32],
        h: usize,
        w: usize,
        pre: Option<(&[[f32; 2]], bool)>,
        up: bool,
    ) -> Option<Vec<f32>> {
        let run = |form: &dyn Fn(&mut Vec<f32>)| {
            let mut out = buffer(self.cout * h * w);
            form(&mut out);
            Some(out)
        };
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(f) = self
                .winograd4
                .as_ref()
                .filter(|_| super::winograd4::fits(h, w))
            {
                return run(&|out| f.forward_parts(x, xb, h, w, pre, up, out));
            }
            match &self.bf16 {
                // The tiles' packing does not upsample: the caller upsamples, then they run.
                Some(Bf16Form::Tiles(_)) if up => return None,
                Some(Bf16Form::Tiles(t)) if super::amx::TileConv::fits_size(h, w) => {
                    if !xb.is_empty() {
                        return None;
                    }
                    return run(&|out| t.forward(x, h, w, pre, out));
                }
                _ => {}
            }
            if let Some(f) = self
                .winograd
                .as_ref()
                .filter(|_| super::winograd::fits(h, w))
            {
                return run(&|out| match f {
                    WinogradForm::F32(f) => f.forward_parts(x, xb, h, w, pre, up, out),
                    WinogradForm::Bf16(f) => f.forward_parts(x, xb, h, w, pre, up, out),
                });
            }
        }
        if let Some(f) = self
            .winograd_products
            .as_ref()
            .filter(|_| super::winograd_products::fits(h, w))
        {
            return run(&|out| f.forward_parts(x, xb, h, w, pre, up, out));
        }
        #[cfg(target_arch = "x86_64")]
        {
            if !xb.is_empty() {
                return None;
            }
            if let Some(Bf16Form::Direct(d)) = &self.bf16 {
                return run(&|out| d.forward(x, h, w, pre, up, out));
            }
            if self.k == 3 && self.stride == 1 && Self::direct_available() {
                let (cin, taps, bias) = (self.cin, &self.taps, &self.bias);
                return run(&|out| super::direct::conv3x3(x, cin, h, w, taps, bias, pre, up, out));
            }
        }
        None
    }

    /// 3x3, stride 1, padding 1: `out` (emptied, then `[cout, h, w]`) = the convolution plus
    /// the bias. Pieces: blocks of output rows and, where an image has fewer blocks than
    /// [`PIECES`], ranges of output channels (at least 8 each).
    fn implicit3x3(&self, x: &[f32], h: usize, w: usize, out: &mut Vec<f32>) {
        let (cin, cout) = (self.cin, self.cout);
        let (hp, wp) = (h + 2, w + 2);
        let plane = hp * wp;
        // Zero-padded input, two values of slack at the end: the last row's two columns past
        // the image read them (into outputs that are dropped).
        let mut xp = pool::take(cin * plane + 2);
        for ci in 0..cin {
            xp.extend(std::iter::repeat_n(0.0, wp));
            for row in x[ci * h * w..(ci + 1) * h * w].chunks_exact(w) {
                xp.push(0.0);
                xp.extend_from_slice(row);
                xp.push(0.0);
            }
            xp.extend(std::iter::repeat_n(0.0, wp));
        }
        xp.extend([0.0, 0.0]);
        // Output rows of a block, computed on the padded width (two extra columns a row).
        let rows = (OUT_BLOCK / (cout.max(cin) * wp)).clamp(1, h);
        let blocks = h.div_ceil(rows);
        let parts = PIECES.div_ceil(blocks).min(cout.div_ceil(8));
        let len = cout * h * w;
        out.clear();
        out.reserve(len);
        let dst = Disjoint::new(out.as_mut_ptr());
        pieces::run(blocks * parts, |p| {
            let (b, channels) = (p / parts, pieces::range(cout, parts, p % parts));
            let y0 = b * rows;
            let nr = rows.min(h - y0);
            let n = nr * wp;
            let m = channels.len();
            let mut blk = pool::take(m * n);
            for &b in &self.bias[channels.clone()] {
                blk.extend(std::iter::repeat_n(b, n));
            }
            for ky in 0..3 {
                for kx in 0..3 {
                    let t = ky * 3 + kx;
                    let off = (y0 + ky) * wp + kx;
                    let tap = &self.taps[(t * cout + channels.start) * cin..][..m * cin];
                    matmul(m, n, cin, &mut blk, n, tap, cin, &xp[off..], plane, true);
                }
            }
            for (i, co) in channels.enumerate() {
                for r in 0..nr {
                    let o = (co * h + y0 + r) * w;
                    debug_assert!(o + w <= len);
                    // SAFETY: `out` has capacity `len` and outlives the pieces; piece `p`
                    // writes rows `y0..y0 + nr` of its channels only, so no two pieces
                    // write the same values.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            blk.as_ptr().add(i * n + r * wp),
                            dst.ptr().add(o),
                            w,
                        )
                    };
                }
            }
            recycle(blk);
        });
        // SAFETY: the pieces wrote every row of every channel: all `len` values.
        unsafe { out.set_len(len) };
        recycle(xp);
    }

    /// Unrolls output rows `y0..y0 + nr` (width `ow`) into `col` `[cin * k * k, nr * ow]`.
    #[allow(clippy::too_many_arguments)]
    fn im2col(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        y0: usize,
        nr: usize,
        ow: usize,
        col: &mut [f32],
    ) {
        let (k, s) = (self.k, self.stride);
        let pad = (k / 2) as isize;
        let n = nr * ow;
        for ci in 0..self.cin {
            let plane = &x[ci * h * w..(ci + 1) * h * w];
            for ky in 0..k {
                for kx in 0..k {
                    let r = (ci * k + ky) * k + kx;
                    let dst = &mut col[r * n..(r + 1) * n];
                    for oy in 0..nr {
                        let d = &mut dst[oy * ow..(oy + 1) * ow];
                        let iy = ((y0 + oy) * s) as isize + ky as isize - pad;
                        if iy < 0 || iy >= h as isize {
                            d.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                        let dx = kx as isize - pad;
                        if s == 1 {
                            // ix = ox + dx: a shifted copy with zeros at the borders.
                            let lo = (-dx).max(0) as usize;
                            let hi = (w as isize - dx).min(ow as isize).max(0) as usize;
                            d[..lo].fill(0.0);
                            if hi > lo {
                                let a = (lo as isize + dx) as usize;
                                d[lo..hi].copy_from_slice(&src[a..a + hi - lo]);
                            }
                            d[hi.max(lo)..].fill(0.0);
                        } else {
                            for (ox, v) in d.iter_mut().enumerate() {
                                let ix = (ox * s) as isize + dx;
                                *v = if ix >= 0 && ix < w as isize {
                                    src[ix as usize]
                                } else {
                                    0.0
                                };
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y = W x + b` for a dense layer with weights `[dout, din]`.
#[derive(Debug, Clone)]
pub struct Dense {
    /// Weights `[dout, din]`.
    pub weight: Vec<f32>,
    /// Bias `[dout]`.
    pub bias: Vec<f32>,
    /// Input size.
    pub din: usize,
    /// Output size.
    pub dout: usize,
}

impl Dense {
    /// `W x + b` for one vector `x` (`[din]`).
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        debug_assert_eq!(x.len(), self.din);
        self.weight
            .chunks_exact(self.din)
            .zip(&self.bias)
            .map(|(row, &b)| dot(row, x) + b)
            .collect()
    }

    /// `W x + b` for the columns of `x` (`[din, n]`); returns `[dout, n]`.
    pub fn apply_cols(&self, x: &[f32], n: usize) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if super::pointwise::available() {
            let mut out = buffer(self.dout * n);
            let w = super::pointwise::Weights::F32(&self.weight);
            super::pointwise::pointwise(x, self.din, w, &self.bias, n, &mut out);
            return out;
        }
        let mut out = rows_filled(&self.bias, n);
        matmul(
            self.dout,
            n,
            self.din,
            &mut out,
            n,
            &self.weight,
            self.din,
            x,
            n,
            true,
        );
        out
    }

    /// `out += W X + b` for the columns of `x` (`[din, n]`; `out` `[dout, n]`): a projection
    /// added to the residual stream in the same pass where the pointwise kernel runs.
    pub fn add_cols(&self, x: &[f32], n: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::pointwise::available() {
            let w = super::pointwise::Weights::F32(&self.weight);
            super::pointwise::add_pointwise(x, self.din, w, &self.bias, out);
            return;
        }
        let y = self.apply_cols(x, n);
        add_assign(out, &y);
        recycle(y);
    }
}

/// Dot product with 16 independent partial sums (vectorisable; summation order fixed).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// GroupNorm parameters: groups of consecutive channels, epsilon 1e-5, per-channel affine.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    /// Scale `[channels]`.
    pub gamma: Vec<f32>,
    /// Shift `[channels]`.
    pub beta: Vec<f32>,
    /// Number of groups.
    pub groups: usize,
}

/// What follows the normalisation in the same pass.
#[derive(Debug, Clone, Copy)]
pub struct NormEpilogue<'a> {
    /// `y * (1 + scale[c]) + shift[c]` after the affine (guided-diffusion's scale-shift norm).
    pub scale_shift: Option<(&'a [f32], &'a [f32])>,
    /// SiLU at the end.
    pub silu: bool,
}

impl GroupNorm {
    /// Per-channel `[a, b]` such that the normalised channel `ch` is `a x + b` (the scale-shift
    /// of `epi` included; its SiLU is not).
    pub fn coefficients(&self, x: &[f32], plane: usize, epi: NormEpilogue) -> Vec<[f32; 2]> {
        self.coefficients_parts(x, &[], plane, epi)
    }

    /// [`GroupNorm::coefficients`] of the concatenation of `a` (the first channels) and `b`
    /// (the rest), without writing it out; a group across both sums each part, then adds.
    pub fn coefficients_parts(
        &self,
        a: &[f32],
        b: &[f32],
        plane: usize,
        epi: NormEpilogue,
    ) -> Vec<[f32; 2]> {
        let c = self.gamma.len();
        debug_assert_eq!(a.len() + b.len(), c * plane);
        let ca = a.len() / plane.max(1);
        let per = c / self.groups;
        let stats = pieces::map(self.groups, |g| {
            let (lo, hi) = (g * per, (g + 1) * per);
            let (s, q) = if hi <= ca {
                sums(&a[lo * plane..hi * plane])
            } else if lo >= ca {
                sums(&b[(lo - ca) * plane..(hi - ca) * plane])
            } else {
                let (sa, qa) = sums(&a[lo * plane..]);
                let (sb, qb) = sums(&b[..(hi - ca) * plane]);
                (sa + sb, qa + qb)
            };
            mean_var(s, q, per * plane)
        });
        let mut coef = Vec::with_capacity(c);
        for (g, &(mean, var)) in stats.iter().enumerate() {
            let inv = 1.0 / (var + 1e-5).sqrt();
            for ch in g * per..(g + 1) * per {
                let mut a = (inv * f64::from(self.gamma[ch])) as f32;
                let mut b =
                    (f64::from(self.beta[ch]) - mean * inv * f64::from(self.gamma[ch])) as f32;
                if let Some((scale, shift)) = epi.scale_shift {
                    let s1 = 1.0 + scale[ch];
                    a *= s1;
                    b = b * s1 + shift[ch];
                }
                coef.push([a, b]);
            }
        }
        coef
    }

    /// Normalises `x` (`[c, plane]` with `plane` values per channel) into a new buffer.
    pub fn forward(&self, x: &[f32], plane: usize, epi: NormEpilogue) -> Vec<f32> {
        let coef = self.coefficients(x, plane, epi);
        apply_coefficients(x, plane, &coef, epi.silu)
    }
}

/// `a x + b` per channel of `x` (`[c, plane]`), then SiLU if `silu`, into a new buffer.
pub fn apply_coefficients(x: &[f32], plane: usize, coef: &[[f32; 2]], silu: bool) -> Vec<f32> {
    let mut out = zeros(x.len());
    let c = coef.len();
    let parts = PIECES.min(c);
    let dst = Disjoint::new(out.as_mut_ptr());
    pieces::run(parts, |p| {
        for ch in pieces::range(c, parts, p) {
            // SAFETY: `out` holds `c * plane` values and outlives the pieces; piece `p`
            // writes its channels only.
            let d = unsafe { std::slice::from_raw_parts_mut(dst.ptr().add(ch * plane), plane) };
            let [a, b] = coef[ch];
            affine(d, &x[ch * plane..(ch + 1) * plane], a, b, silu);
        }
    });
    out
}

/// Mean and (population) variance of `n` values from their sum `s` and the sum `q` of their
/// squares (one pass, [`sums`]: f32 over chunks of 512 values and f64 across chunks, so that
/// the variance keeps about 16 significant digits against the 7 of the data; no cancellation
/// at UNet group sizes).
fn mean_var(s: f64, q: f64, n: usize) -> (f64, f64) {
    let n = n as f64;
    let mean = s / n;
    (mean, (q / n - mean * mean).max(0.0))
}

/// Whether the AVX-512 kernels run here: the build has the `avx512` feature (default) and the
/// CPU has AVX-512F (the standard library caches the answer). A build without the feature runs
/// the AVX2/FMA forms on every CPU: what an AVX2-only CPU runs, measurable on any machine.
pub fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cfg!(feature = "avx512") && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The kernel set this process runs, for reports: `AVX-512`, `AVX2/FMA` (with a remark when
/// the CPU has AVX-512F but the build has the `avx512` feature off) or `portable`.
pub fn kernel_set() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512() {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return if std::arch::is_x86_feature_detected!("avx512f") {
                "AVX2/FMA (the CPU has AVX-512F; this build has the avx512 feature off)"
            } else {
                "AVX2/FMA"
            };
        }
    }
    "portable"
}

/// Why an AVX-512 kernel does not run here, for error messages: the CPU lacks it, or the
/// build has the `avx512` feature off.
pub fn missing_avx512_reason() -> &'static str {
    if cfg!(feature = "avx512") {
        "this CPU has none"
    } else {
        "this build has the avx512 feature off; rebuild without --no-default-features"
    }
}

macro_rules! simd_dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) => $generic:ident, $avx:ident, $avx512:ident) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                if $crate::unet::kernels::avx512() {
                    // SAFETY: the CPU has the features `$avx512` is compiled for.
                    unsafe { $avx512($($arg),*) };
                    return;
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `$avx` is compiled for.
                    unsafe { $avx($($arg),*) };
                    return;
                }
            }
            $generic($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        fn $avx($($arg: $ty),*) {
            $generic($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        fn $avx512($($arg: $ty),*) {
            $generic($($arg),*)
        }
    };
}

/// For the element-wise loops of the other kernel modules ([`super::winograd_products`]).
pub(super) use simd_dispatch;

macro_rules! simd_dispatch_ret {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty => $generic:ident, $avx:ident, $avx512:ident) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                if avx512() {
                    // SAFETY: the CPU has the features `$avx512` is compiled for.
                    return unsafe { $avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `$avx` is compiled for.
                    return unsafe { $avx($($arg),*) };
                }
            }
            $generic($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $avx($($arg: $ty),*) -> $ret {
            $generic($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn $avx512($($arg: $ty),*) -> $ret {
            $generic($($arg),*)
        }
    };
}

simd_dispatch! {
    /// `dst = a * src + b`, then SiLU if `silu`.
    pub fn affine(dst: &mut [f32], src: &[f32], a: f32, b: f32, silu: bool) => affine_generic, affine_avx2, affine_avx512
}

#[inline(always)]
pub(super) fn affine_generic(dst: &mut [f32], src: &[f32], a: f32, b: f32, silu: bool) {
    if silu {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = silu1(a * s + b);
        }
    } else {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = a * s + b;
        }
    }
}

simd_dispatch_ret! {
    fn sums(x: &[f32]) -> (f64, f64) => sums_generic, sums_avx2, sums_avx512
}

#[inline(always)]
fn sums_generic(x: &[f32]) -> (f64, f64) {
    // f32 partial sums over chunks of 512 values (32 lanes of 16 each: four independent
    // vector chains per sum, so the adds are not bound by their latency), added up in f64.
    let (mut s, mut q) = (0.0f64, 0.0f64);
    for chunk in x.chunks(512) {
        let mut ls = [0.0f32; 32];
        let mut lq = [0.0f32; 32];
        let c = chunk.chunks_exact(32);
        for &v in c.remainder() {
            s += f64::from(v);
            q += f64::from(v) * f64::from(v);
        }
        for ch in c {
            for i in 0..32 {
                ls[i] += ch[i];
                lq[i] += ch[i] * ch[i];
            }
        }
        s += ls.iter().map(|&v| f64::from(v)).sum::<f64>();
        q += lq.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    (s, q)
}

simd_dispatch! {
    /// SiLU in place: `x * sigmoid(x)`.
    pub fn silu(x: &mut [f32]) => silu_generic, silu_avx2, silu_avx512
}

#[inline(always)]
fn silu_generic(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = silu1(*v);
    }
}

simd_dispatch! {
    /// Softmax of each column of `x` (`[rows, n]`) in place, scaling the logits by `scale`
    /// first: attention's weights with a key per row and a query per column.
    pub fn softmax_cols(x: &mut [f32], n: usize, scale: f32) => softmax_generic, softmax_avx2, softmax_avx512
}

#[inline(always)]
fn softmax_generic(x: &mut [f32], n: usize, scale: f32) {
    // Three passes row by row (sequential, with the columns' maxima and sums in a row of
    // their own): down a column instead, rows 1 KiB apart fell into a few L1 sets.
    let mut m = vec![f32::NEG_INFINITY; n];
    for row in x.chunks_exact(n.max(1)) {
        for (mc, &v) in m.iter_mut().zip(row) {
            *mc = mc.max(v);
        }
    }
    m.iter_mut().for_each(|v| *v *= scale);
    let mut acc = vec![0.0f32; n];
    for row in x.chunks_exact_mut(n.max(1)) {
        for ((v, &mc), a) in row.iter_mut().zip(&m).zip(acc.iter_mut()) {
            *v = exp(*v * scale - mc);
            *a += *v;
        }
    }
    acc.iter_mut().for_each(|a| *a = 1.0 / *a);
    for row in x.chunks_exact_mut(n.max(1)) {
        for (v, &inv) in row.iter_mut().zip(&acc) {
            *v *= inv;
        }
    }
}

/// `x * sigmoid(x)`.
#[inline(always)]
fn silu1(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// ln 2 split in two for the range reduction `r = x - k ln 2` of [`exp`] (and of the AMX
/// packing's vector SiLU): `LN2_HI` has trailing zero bits, so `k * LN2_HI` is exact for the
/// `|k| <= 127` that occur, and `LN2_LO` carries the rest.
pub(super) const LN2_HI: f32 = 0.693_145_75;
/// The low part of ln 2 (see [`LN2_HI`]).
pub(super) const LN2_LO: f32 = 1.428_606_8e-6;

/// SiLU `v / (1 + e^-v)` on 16 lanes: `e^-v = 2^k p(r)` with a polynomial on `|r| <= ln 2 /
/// 2`, then the division as an approximate reciprocal (2^-14). If `EXACT` (the f32 path): a
/// degree-5 polynomial (r^6 / 720: 3e-6 relative at worst) and a Newton step; else a
/// degree-3 polynomial (6e-4), ln 2 in one part and the reciprocal as it is (12 instructions,
/// not 16), ample for the bf16 packing, whose rounding (2^-9) comes next.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn silu16<const EXACT: bool>(v: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let (p, k) = if EXACT {
        let x = _mm512_min_ps(
            _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), v), _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(88.0),
        );
        let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_LO), r);
        // e^r, |r| <= ln 2 / 2, degree 5 (3e-6 relative at worst).
        let mut p = _mm512_set1_ps(1.0 / 120.0);
        for c in [1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        (p, k)
    } else {
        // -c = k ln 2 - s with s = c + k ln 2 for c = v clamped to [-88, 88] (ln 2 in one
        // part: 1e-4 relative at the largest k), and e^-s by degree 3 (6e-4, under half a
        // bf16 step).
        let c = _mm512_min_ps(
            _mm512_max_ps(v, _mm512_set1_ps(-88.0)),
            _mm512_set1_ps(88.0),
        );
        let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(c, _mm512_set1_ps(-std::f32::consts::LOG2_E)),
        );
        let s = _mm512_fmadd_ps(k, _mm512_set1_ps(std::f32::consts::LN_2), c);
        let mut p = _mm512_set1_ps(-1.0 / 6.0);
        for c in [0.5, -1.0, 1.0] {
            p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(c));
        }
        (p, k)
    };
    let e = _mm512_scalef_ps(p, k);
    let d = _mm512_add_ps(e, _mm512_set1_ps(1.0));
    let mut r = _mm512_rcp14_ps(d);
    if EXACT {
        // One Newton step, r (2 - d r): 2^-28, below f32's rounding, for 2 FMAs where the
        // division costs several times as much.
        r = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0)));
    }
    _mm512_mul_ps(v, r)
}

/// `e^x` to about 2 ulp for |x| < 87 (0 below, +inf-free large value above), branch-free so
/// that loops over it vectorise: `2^k * p(r)` with `x = k ln 2 + r`, `|r| <= ln 2 / 2`, and a
/// degree-6 polynomial for `e^r`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5 * 2^23: adding it rounds to the nearest integer, held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + MAGIC;
    let k = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let kf = t - MAGIC;
    let r = x - kf * LN2_HI - kf * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    // 2^k by building the exponent bits; k + 127 is in 1..=254 after the clamp.
    let two_k = f32::from_bits(((k + 127) as u32) << 23);
    p * two_k
}

/// Nearest-neighbour 2x upsampling of `x` (`[c, h, w]`).
pub fn upsample2(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    // Written row by row (no zero fill first): each source row doubled, twice.
    let mut out = buffer(c * 4 * h * w);
    for src in x[..c * h * w].chunks_exact(w.max(1)) {
        let start = out.len();
        out.extend(src.iter().flat_map(|&v| [v, v]));
        out.extend_from_within(start..);
    }
    out
}

/// 2x2 average pooling, stride 2, of `x` (`[c, h, w]`, even `h` and `w`).
pub fn avgpool2(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = zeros(c * oh * ow);
    for ch in 0..c {
        for y in 0..oh {
            let r0 = &x[(ch * h + 2 * y) * w..(ch * h + 2 * y + 1) * w];
            let r1 = &x[(ch * h + 2 * y + 1) * w..(ch * h + 2 * y + 2) * w];
            let dst = &mut out[(ch * oh + y) * ow..(ch * oh + y + 1) * ow];
            for (ox, d) in dst.iter_mut().enumerate() {
                *d = (r0[2 * ox] + r0[2 * ox + 1] + r1[2 * ox] + r1[2 * ox + 1]) * 0.25;
            }
        }
    }
    out
}

/// The 2x2 average pooling of `a x + b` per channel (`coef[ch] = [a, b]`, then SiLU if
/// `silu`; `x` `[c, h, w]`, even `h` and `w`): [`apply_coefficients`] then [`avgpool2`] in one
/// pass (the same values; the normalised image is never written out), a downsampling residual
/// block's input.
pub fn pool_normed(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    coef: &[[f32; 2]],
    silu: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), c * h * w, "pool_normed input");
    assert_eq!(coef.len(), c, "pool_normed coefficients");
    let (oh, ow) = (h / 2, w / 2);
    let len = c * oh * ow;
    let mut out = buffer(len);
    let parts = PIECES.min(c);
    let dst = Disjoint::new(out.as_mut_ptr());
    pieces::run(parts, |p| {
        let mut rows = zeros(2 * w);
        for ch in pieces::range(c, parts, p) {
            let [a, b] = coef[ch];
            for y in 0..oh {
                let src = &x[(ch * h + 2 * y) * w..(ch * h + 2 * y + 2) * w];
                affine(&mut rows, src, a, b, silu);
                let (r0, r1) = rows.split_at(w);
                // SAFETY: `out` has capacity `len` and outlives the pieces; piece `p` writes
                // its channels' rows only.
                let d = unsafe {
                    std::slice::from_raw_parts_mut(dst.ptr().add((ch * oh + y) * ow), ow)
                };
                for (ox, d) in d.iter_mut().enumerate() {
                    *d = (r0[2 * ox] + r0[2 * ox + 1] + r1[2 * ox] + r1[2 * ox + 1]) * 0.25;
                }
            }
        }
        recycle(rows);
    });
    // SAFETY: the pieces wrote every output row of every channel: all `len` values.
    unsafe { out.set_len(len) };
    out
}

/// Adds the nearest-neighbour 2x upsampling of `b` (`[c, h, w]`) to `a` (`[c, 2h, 2w]`)
/// without writing the upsampling out: an upsampling residual block's identity skip.
pub fn add_upsampled(a: &mut [f32], b: &[f32], c: usize, h: usize, w: usize) {
    assert_eq!(a.len(), 4 * c * h * w, "add_upsampled output");
    assert_eq!(b.len(), c * h * w, "add_upsampled input");
    let rows = c * h;
    let parts = PIECES.min(rows.div_ceil(64).max(1));
    let dst = Disjoint::new(a.as_mut_ptr());
    pieces::run(parts, |p| {
        for row in pieces::range(rows, parts, p) {
            // SAFETY: `a` outlives the pieces; source row `row` owns output rows `2 row` and
            // `2 row + 1` (`4 w` values), which only this piece writes.
            let out = unsafe { std::slice::from_raw_parts_mut(dst.ptr().add(row * 4 * w), 4 * w) };
            let src = &b[row * w..(row + 1) * w];
            for half in out.chunks_exact_mut(2 * w) {
                for (pair, &v) in half.chunks_exact_mut(2).zip(src) {
                    pair[0] += v;
                    pair[1] += v;
                }
            }
        }
    });
}

/// Adds `b` to `a` element-wise.
pub fn add_assign(a: &mut [f32], b: &[f32]) {
    let parts = PIECES.min(a.len().div_ceil(1 << 14));
    let (n, dst) = (a.len().min(b.len()), Disjoint::new(a.as_mut_ptr()));
    pieces::run(parts, |p| {
        let r = pieces::range(n, parts, p);
        // SAFETY: `a` outlives the pieces and piece `p` writes its range `r` only.
        let a = unsafe { std::slice::from_raw_parts_mut(dst.ptr().add(r.start), r.len()) };
        for (x, &y) in a.iter_mut().zip(&b[r]) {
            *x += y;
        }
    });
}

/// A seeded stream of uniform values in [-0.5, 0.5) for the kernels' tests (no dependency on
/// an RNG crate's stream staying the same).
#[cfg(test)]
pub(super) fn lcg(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same values, to the bit, as upsampling first and adding.
    #[test]
    fn add_upsampled_matches_adding_the_upsampling() {
        let (c, h, w) = (3, 5, 6);
        let mut rnd = lcg(6);
        let b: Vec<f32> = (0..c * h * w).map(|_| rnd()).collect();
        let a0: Vec<f32> = (0..4 * c * h * w).map(|_| rnd()).collect();
        let mut want = a0.clone();
        for (x, y) in want.iter_mut().zip(upsample2(&b, c, h, w)) {
            *x += y;
        }
        let mut got = a0;
        add_upsampled(&mut got, &b, c, h, w);
        assert_eq!(got, want);
    }

    /// The vector SiLU against f64 `v / (1 + e^-v)` up to 1e6 in magnitude (past the
    /// exponential's range): the degree-5 bound in the exact form, a bf16 half-step (2^-9
    /// relative, or 1e-30 absolute near zero) in the other; finite up to 1e37.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn silu16_matches_the_definition() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512F on this CPU: silu16 not exercised");
            return;
        }
        let mut xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.01).collect();
        xs.extend([
            -1e37, -1e6, -300.0, -88.5, -87.5, 87.5, 88.5, 300.0, 1e6, 1e37, 1e-30,
        ]);
        for chunk in xs.chunks(16) {
            let mut v = [0.0f32; 16];
            v[..chunk.len()].copy_from_slice(chunk);
            // SAFETY: AVX-512F checked above; 16 values in and out.
            let (exact, fast) = unsafe {
                let x = std::arch::x86_64::_mm512_loadu_ps(v.as_ptr());
                let mut e = [0.0f32; 16];
                let mut f = [0.0f32; 16];
                std::arch::x86_64::_mm512_storeu_ps(e.as_mut_ptr(), silu16::<true>(x));
                std::arch::x86_64::_mm512_storeu_ps(f.as_mut_ptr(), silu16::<false>(x));
                (e, f)
            };
            for i in 0..chunk.len() {
                let x = f64::from(v[i]);
                let want = x / (1.0 + (-x).exp());
                let (e, f) = (f64::from(exact[i]), f64::from(fast[i]));
                assert!(e.is_finite() && f.is_finite(), "silu16({x}): {e}, {f}");
                // Both forms clamp the exponent at 88: v e^-88 past it, 0.06 at -1e37.
                if x.abs() <= 1e6 {
                    let tol = 4e-6 * want.abs() + 1e-30;
                    assert!(
                        (e - want).abs() <= tol,
                        "exact silu16({x}) = {e}, want {want}"
                    );
                    let tol = want.abs() / 512.0 + 1e-30;
                    assert!(
                        (f - want).abs() <= tol,
                        "bf16 silu16({x}) = {f}, want {want}"
                    );
                }
            }
        }
    }

    /// Coefficients of two parts match those of their concatenation (to f64 rounding: a group
    /// across the parts sums each part, then adds), at splits inside and between groups.
    #[test]
    fn coefficients_of_parts_match_the_concatenation() {
        let (c, plane) = (12, 700);
        let mut rnd = lcg(8);
        let x: Vec<f32> = (0..c * plane).map(|_| 3.0 * rnd() + 0.5).collect();
        let norm = GroupNorm {
            gamma: (0..c).map(|_| 1.0 + rnd()).collect(),
            beta: (0..c).map(|_| rnd()).collect(),
            groups: 4,
        };
        let epi = NormEpilogue {
            scale_shift: None,
            silu: true,
        };
        let want = norm.coefficients(&x, plane, epi);
        for ca in [0, 1, 3, 5, 12] {
            let (a, b) = x.split_at(ca * plane);
            let got = norm.coefficients_parts(a, b, plane, epi);
            for (g, w) in got.iter().zip(&want) {
                for i in 0..2 {
                    assert!(
                        (g[i] - w[i]).abs() <= 1e-6 * (1.0 + w[i].abs()),
                        "{ca}: {g:?} {w:?}"
                    );
                }
            }
        }
    }

    /// The same values, to the bit, as normalising, then pooling; with and without SiLU, on
    /// any pool.
    #[test]
    fn pool_normed_matches_normalising_then_pooling() {
        let (c, h, w) = (5, 6, 10);
        let mut rnd = lcg(7);
        let x: Vec<f32> = (0..c * h * w).map(|_| 4.0 * rnd()).collect();
        let coef: Vec<[f32; 2]> = (0..c).map(|_| [1.0 + rnd(), rnd()]).collect();
        for silu in [false, true] {
            let want = avgpool2(&apply_coefficients(&x, h * w, &coef, silu), c, h, w);
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| pool_normed(&x, c, h, w, &coef, silu));
                assert_eq!(got, want, "silu {silu}, {threads} threads");
            }
        }
    }

    /// Every output pixel is the input pixel at half its coordinates, in every channel; sides
    /// odd and even.
    #[test]
    fn upsample2_repeats_each_pixel_two_by_two() {
        for &(c, h, w) in &[(1, 1, 1), (3, 2, 5), (2, 7, 4)] {
            let mut rnd = lcg(4);
            let x: Vec<f32> = (0..c * h * w).map(|_| rnd()).collect();
            let u = upsample2(&x, c, h, w);
            assert_eq!(u.len(), 4 * c * h * w);
            for ch in 0..c {
                for y in 0..2 * h {
                    for xx in 0..2 * w {
                        let got = u[(ch * 2 * h + y) * 2 * w + xx];
                        assert_eq!(got, x[(ch * h + y / 2) * w + xx / 2], "{c}x{h}x{w}");
                    }
                }
            }
        }
    }

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error of exp: {worst:e}");
        assert_eq!(exp(-200.0), exp(-87.0));
    }

    #[test]
    fn conv_matches_direct_loops() {
        // Odd sizes, both strides, and a block smaller than the image (several blocks).
        for &(cin, cout, h, w, k, stride) in &[
            (3, 5, 7, 9, 3, 1),
            (4, 2, 8, 6, 3, 2),
            (6, 3, 5, 4, 1, 1),
            (40, 7, 70, 30, 3, 1),
        ] {
            let n = cin * k * k;
            let weight: Vec<f32> = (0..cout * n)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 9.0)
                .collect();
            let bias: Vec<f32> = (0..cout).map(|i| i as f32 * 0.1 - 0.2).collect();
            let x: Vec<f32> = (0..cin * h * w)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 7.0)
                .collect();
            let conv = Conv::new(weight.clone(), bias.clone(), cin, cout, k, stride);
            let (oh, ow) = conv.out_size(h, w);
            let mut portable = conv.clone();
            portable.use_winograd_products();
            // The form this CPU runs, the nine-product form and the Winograd products (the
            // last two are what CPUs without AVX-512F run).
            for (form, got) in [
                ("forward", conv.forward(&x, h, w)),
                ("products", conv.forward_products(&x, h, w)),
                ("portable", portable.forward_portable(&x, h, w)),
            ] {
                let p = (k / 2) as isize;
                for co in 0..cout {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut s = f64::from(bias[co]);
                            for ci in 0..cin {
                                for ky in 0..k {
                                    for kx in 0..k {
                                        let iy = (oy * stride) as isize + ky as isize - p;
                                        let ix = (ox * stride) as isize + kx as isize - p;
                                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize
                                        {
                                            continue;
                                        }
                                        let wv = weight[co * n + (ci * k + ky) * k + kx];
                                        let xv = x[(ci * h + iy as usize) * w + ix as usize];
                                        s += f64::from(wv) * f64::from(xv);
                                    }
                                }
                            }
                            let g = got[(co * oh + oy) * ow + ox];
                            assert!(
                            (f64::from(g) - s).abs() < 1e-4 * (1.0 + s.abs()),
                            "{form}: conv {cin}->{cout} {h}x{w} k{k} s{stride}: ({co},{oy},{ox}) {g} vs {s}"
                        );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn group_norm_matches_definition() {
        let (c, plane, groups) = (8, 10, 4);
        let x: Vec<f32> = (0..c * plane)
            .map(|i| (i as f32 * 0.37).sin() * 3.0 + 1.0)
            .collect();
        let gn = GroupNorm {
            gamma: (0..c).map(|i| 0.5 + i as f32 * 0.1).collect(),
            beta: (0..c).map(|i| i as f32 * -0.05).collect(),
            groups,
        };
        let scale: Vec<f32> = (0..c).map(|i| i as f32 * 0.02).collect();
        let shift: Vec<f32> = (0..c).map(|i| 0.3 - i as f32 * 0.01).collect();
        let got = gn.forward(
            &x,
            plane,
            NormEpilogue {
                scale_shift: Some((&scale, &shift)),
                silu: true,
            },
        );
        let per = c / groups;
        for g in 0..groups {
            let xs: Vec<f64> = x[g * per * plane..(g + 1) * per * plane]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            for j in 0..per * plane {
                let ch = g * per + j / plane;
                let n = (xs[j] - mean) / (var + 1e-5).sqrt();
                let y = (n * f64::from(gn.gamma[ch]) + f64::from(gn.beta[ch]))
                    * (1.0 + f64::from(scale[ch]))
                    + f64::from(shift[ch]);
                let want = y / (1.0 + (-y).exp());
                let have = f64::from(got[g * per * plane + j]);
                assert!((have - want).abs() < 1e-5, "{have} vs {want}");
            }
        }
    }

    #[test]
    fn softmax_cols_sum_to_one_and_match() {
        // 37 columns: two strips of 16 and 5 single columns.
        let (rows, n) = (9, 37);
        let mut x: Vec<f32> = (0..rows * n)
            .map(|i| (i as f32 * 0.71).cos() * 20.0)
            .collect();
        let orig = x.clone();
        softmax_cols(&mut x, n, 0.5);
        for c in 0..n {
            let col: Vec<f64> = (0..rows)
                .map(|r| f64::from(orig[r * n + c]) * 0.5)
                .collect();
            let m = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = col.iter().map(|v| (v - m).exp()).sum();
            for r in 0..rows {
                let want = (col[r] - m).exp() / z;
                assert!((f64::from(x[r * n + c]) - want).abs() < 1e-6, "({r}, {c})");
            }
        }
    }

    #[test]
    fn transposed_products_match_plain() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect(); // [m, k]
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32).sqrt()).collect(); // [k, n]
        let mut want = vec![0.0f32; m * n];
        matmul(m, n, k, &mut want, n, &a, k, &b, n, false);
        let close = |x: &[f32], y: &[f32]| {
            x.iter()
                .zip(y)
                .all(|(a, b)| (a - b).abs() < 1e-5 * (1.0 + b.abs()))
        };
        // a^T as [k, m]
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let mut got2 = vec![0.0f32; m * n];
        matmul_at(m, n, k, &mut got2, &at, &b);
        assert!(close(&got2, &want), "{got2:?} vs {want:?}");
        for i in 0..m {
            for j in 0..n {
                let s: f32 = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
                assert!((want[i * n + j] - s).abs() < 1e-4);
            }
        }
    }
}
