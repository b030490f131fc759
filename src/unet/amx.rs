//! 3x3 convolutions in bf16 on Intel AMX tiles (Xeon 4th generation and later), f32 accumulation.
//!
//! One tile multiply (`tdpbf16ps`) takes a 16 x 32 bf16 block of weights and a 32 x 16 block of
//! the input and adds their product to a 16 x 16 f32 block of the output: 16 K multiply-adds in
//! one instruction, about five times the f32 AVX-512 rate of the same core on these layers
//! (measured by `msm bench`). Inputs are rounded to bf16 (8 significant bits) when they are
//! packed; products and sums stay in f32.
//!
//! Layouts (bf16 values as bit patterns):
//! - weights, packed once: `[tap][cout / 16][cin / 32][16 rows][32]`, contiguous 1 KiB tiles;
//! - the input, packed per call from the f32 `[cin, h, w]` activation by
//!   [`super::bf16::pack_pairs`]: zero-padded by one pixel, channel pairs interleaved (the
//!   layout the instruction reads its second operand in), `[h + 2][cin / 2][w + 2]` of `u32`. A
//!   tap `(ky, kx)` is then a fixed offset into it, so the nine taps read the same packed input
//!   shifted in place (no unrolled copy).
//!
//! The tile registers are not known to the compiler; every `asm!` block here saves nothing in
//! them across blocks other than what the kernel itself loaded, and code outside this module
//! never uses them.

use std::arch::asm;
use std::sync::OnceLock;

use super::bf16::{bf16, pack_pairs, PACKED};
use super::pieces::{self, Disjoint, PIECES};

/// Whether this CPU and operating system run AMX bf16 tile instructions (asks the kernel for the
/// tile state once per process).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| cpu_has_amx_bf16() && super::bf16::available() && request_tile_state())
}

/// CPUID leaf 7: AMX-BF16 is EDX bit 22, AMX-TILE bit 24. (The standard library's feature
/// detection for AMX is not stable yet.) Whether the OS enabled the state is the kernel's answer
/// to [`request_tile_state`].
fn cpu_has_amx_bf16() -> bool {
    use std::arch::x86_64::__cpuid_count;
    // CPUID exists on every x86-64 CPU; leaf 0 says which leaves do.
    let max_leaf = __cpuid_count(0, 0).eax;
    if max_leaf < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 22) != 0 && edx & (1 << 24) != 0
}

/// Linux hands out the (large) tile register state only on request: `arch_prctl(
/// ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, for the whole process.
#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain system call; it only changes which state the kernel saves for this process.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// The tile configuration: palette 1, eight tiles of 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

const TILE_CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// A 3x3, stride-1, padding-1 convolution with bf16 weights packed into tiles.
#[derive(Debug, Clone)]
pub struct TileConv {
    /// `[9][cout / 16][cin / 32][16][32]` bf16.
    tiles: Vec<u16>,
    /// Bias tiles: `[cout][16]` f32, row `co` filled with `bias[co]` (the accumulators' start).
    bias: Vec<f32>,
    cin: usize,
    cout: usize,
}

impl TileConv {
    /// Whether a convolution with these channel counts can run on tiles (`cin` a multiple of
    /// 32, `cout` of 32).
    pub fn fits_channels(cin: usize, cout: usize) -> bool {
        cin > 0 && cout > 0 && cin.is_multiple_of(32) && cout.is_multiple_of(32)
    }

    /// Whether an `h x w` input can run on tiles (rows of whole 16-pixel blocks, an even
    /// number of blocks).
    pub fn fits_size(h: usize, w: usize) -> bool {
        w > 0 && w.is_multiple_of(16) && (h * w / 16).is_multiple_of(2)
    }

    /// Packs weights `taps` (`[9, cout, cin]` f32) and `bias` (`[cout]`).
    ///
    /// # Panics
    /// If the channel counts do not fit ([`TileConv::fits_channels`]) or the lengths differ.
    pub fn new(taps: &[f32], bias: &[f32], cin: usize, cout: usize) -> TileConv {
        assert!(Self::fits_channels(cin, cout), "AMX conv channels");
        assert_eq!(taps.len(), 9 * cout * cin, "AMX conv weights");
        assert_eq!(bias.len(), cout, "AMX conv bias");
        let mut tiles = Vec::with_capacity(taps.len());
        for t in 0..9 {
            for cb in 0..cout / 16 {
                for kb in 0..cin / 32 {
                    for r in 0..16 {
                        let row = (t * cout + cb * 16 + r) * cin + kb * 32;
                        tiles.extend(taps[row..row + 32].iter().map(|&v| bf16(v)));
                    }
                }
            }
        }
        let bias = bias
            .iter()
            .flat_map(|&b| std::iter::repeat_n(b, 16))
            .collect();
        TileConv {
            tiles,
            bias,
            cin,
            cout,
        }
    }

    /// Convolves `pre(x)` (`x` `[cin, h, w]` f32) into `out` (emptied, then `[cout, h, w]`),
    /// where `pre = Some((coef, silu))` maps channel `ci` to `coef[ci][0] x + coef[ci][1]`,
    /// then SiLU if `silu` (applied while packing), and `None` is the identity.
    ///
    /// # Panics
    /// If the size does not fit ([`TileConv::fits_size`]), the lengths differ, or the CPU has
    /// no AMX ([`available`]).
    pub fn forward(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        pre: Option<(&[[f32; 2]], bool)>,
        out: &mut Vec<f32>,
    ) {
        assert!(available(), "AMX tiles are not available on this CPU");
        assert!(Self::fits_size(h, w), "AMX conv size {h} x {w}");
        assert_eq!(x.len(), self.cin * h * w, "AMX conv input");
        if let Some((coef, _)) = pre {
            assert_eq!(coef.len(), self.cin, "AMX conv input coefficients");
        }
        let len = self.cout * h * w;
        out.clear();
        out.reserve(len);
        pieces::with_buffer(&PACKED, |xq| {
            // SAFETY: [`available`] checked the features packing needs.
            unsafe { pack_pairs(x, self.cin, h, w, pre, false, xq) };
            // Pieces: output channel blocks of 32, and ranges of pixel-block pairs in each.
            let (cblocks, pairs) = (self.cout / 32, h * w / 32);
            let parts = PIECES.div_ceil(cblocks).min(pairs);
            let dst = Disjoint::new(out.as_mut_ptr());
            let xq_ref = &*xq;
            pieces::run(cblocks * parts, |p| {
                let cb = 32 * (p / parts);
                let r = pieces::range(pairs, parts, p % parts);
                // SAFETY: sizes checked above; `run` reads inside `xq`, `self.tiles` and
                // `self.bias` and writes channels `cb..cb + 32` at the pixel blocks `2 r` of
                // `out`'s reserved capacity, which no other piece writes.
                unsafe { self.run(xq_ref, h, w, dst.ptr(), cb, r) };
            });
            // SAFETY: the pieces wrote every channel block at every pixel block: all `len`
            // values.
            unsafe { out.set_len(len) };
        });
    }

    /// The tile loop for output channels `cb..cb + 32` and the pairs `block_pairs` of 16-pixel
    /// blocks (blocks `2 j` and `2 j + 1` for `j` in `block_pairs`). `xq` is [`pack_pairs`]'s layout
    /// for `h x w`.
    unsafe fn run(
        &self,
        xq: &[u32],
        h: usize,
        w: usize,
        out: *mut f32,
        cb: usize,
        block_pairs: std::ops::Range<usize>,
    ) {
        let cin = self.cin;
        let cout = self.cout;
        let (wp, pairs) = (w + 2, cin / 2);
        let row_stride = pairs * wp; // pairs per padded image row
        let kblocks = cin / 32;
        let plane = h * w;
        let a_stride = 64usize; // bytes per weight tile row
        let b_stride = wp * 4; // bytes between channel pairs
        let c_stride = plane * 4; // bytes between output channels
        let bias_stride = 64usize;
        debug_assert!(xq.len() >= (h + 2) * row_stride);
        let (xq, wt, bias) = (xq.as_ptr(), self.tiles.as_ptr(), self.bias.as_ptr());
        configure_tiles();
        let bias0 = bias.add(cb * 16);
        let bias1 = bias.add((cb + 16) * 16);
        for j in block_pairs.map(|p| 2 * p) {
            // Two 16-pixel blocks of output positions.
            let (y0, x0) = (j * 16 / w, j * 16 % w);
            let (y1, x1) = ((j + 1) * 16 / w, (j + 1) * 16 % w);
            asm!(
                "tileloadd tmm0, [{b0} + {s}*1]",
                "tileloadd tmm1, [{b0} + {s}*1]",
                "tileloadd tmm2, [{b1} + {s}*1]",
                "tileloadd tmm3, [{b1} + {s}*1]",
                b0 = in(reg) bias0,
                b1 = in(reg) bias1,
                s = in(reg) bias_stride,
                options(nostack),
            );
            for t in 0..9 {
                let (ky, kx) = (t / 3, t % 3);
                let in0 = xq.add((y0 + ky) * row_stride + x0 + kx);
                let in1 = xq.add((y1 + ky) * row_stride + x1 + kx);
                let wt_t = wt.add((t * (cout / 16) + cb / 16) * kblocks * 512);
                for kb in 0..kblocks {
                    let a0 = wt_t.add(kb * 512);
                    let a1 = a0.add(kblocks * 512);
                    let b0 = in0.add(kb * 16 * wp);
                    let b1 = in1.add(kb * 16 * wp);
                    asm!(
                        "tileloadd tmm4, [{a0} + {sa}*1]",
                        "tileloadd tmm5, [{a1} + {sa}*1]",
                        "tileloadd tmm6, [{b0} + {sb}*1]",
                        "tileloadd tmm7, [{b1} + {sb}*1]",
                        "tdpbf16ps tmm0, tmm4, tmm6",
                        "tdpbf16ps tmm1, tmm4, tmm7",
                        "tdpbf16ps tmm2, tmm5, tmm6",
                        "tdpbf16ps tmm3, tmm5, tmm7",
                        a0 = in(reg) a0,
                        a1 = in(reg) a1,
                        b0 = in(reg) b0,
                        b1 = in(reg) b1,
                        sa = in(reg) a_stride,
                        sb = in(reg) b_stride,
                        options(nostack),
                    );
                }
            }
            let c0 = out.add(cb * plane + y0 * w + x0);
            let c1 = out.add(cb * plane + y1 * w + x1);
            let c2 = c0.add(16 * plane);
            let c3 = c1.add(16 * plane);
            asm!(
                "tilestored [{c0} + {s}*1], tmm0",
                "tilestored [{c1} + {s}*1], tmm1",
                "tilestored [{c2} + {s}*1], tmm2",
                "tilestored [{c3} + {s}*1], tmm3",
                c0 = in(reg) c0,
                c1 = in(reg) c1,
                c2 = in(reg) c2,
                c3 = in(reg) c3,
                s = in(reg) c_stride,
                options(nostack),
            );
        }
    }
}

thread_local! {
    /// Whether this thread loaded [`TILE_CONFIG`].
    static CONFIGURED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Loads [`TILE_CONFIG`] once per thread. The configuration (and the tiles) then stay with the
/// thread: the kernel saves and restores them on context switches. Releasing the tiles after
/// every convolution and configuring them again before the next was measured at 2-4x the time
/// of the convolutions themselves here.
fn configure_tiles() {
    CONFIGURED.with(|c| {
        if !c.get() {
            // SAFETY: a valid palette-1 configuration; only this module uses the tiles.
            unsafe {
                asm!("ldtilecfg [{}]", in(reg) &TILE_CONFIG as *const TileConfig, options(nostack));
            }
            c.set(true);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::bf16::{bf16, tests::unbf16};
    use crate::unet::kernels::lcg;

    /// The tile convolution against direct loops over the same bf16-rounded values.
    #[test]
    fn tiles_match_direct_loops_on_rounded_values() {
        if !available() {
            eprintln!("no AMX on this CPU: tile kernel not exercised");
            return;
        }
        for &(cin, cout, h, w) in &[(32, 32, 16, 16), (64, 96, 8, 32), (96, 64, 32, 16)] {
            let mut rnd = lcg(7);
            let taps: Vec<f32> = (0..9 * cout * cin).map(|_| rnd()).collect();
            let bias: Vec<f32> = (0..cout).map(|_| rnd()).collect();
            let x: Vec<f32> = (0..cin * h * w).map(|_| rnd()).collect();
            let conv = TileConv::new(&taps, &bias, cin, cout);
            let mut out = Vec::new();
            conv.forward(&x, h, w, None, &mut out);
            let r = |v: f32| unbf16(bf16(v));
            let mut worst = 0.0f32;
            for co in 0..cout {
                for y in 0..h {
                    for xx in 0..w {
                        let mut acc = f64::from(bias[co]);
                        for t in 0..9 {
                            let (dy, dx) = (t as isize / 3 - 1, t as isize % 3 - 1);
                            let (iy, ix) = (y as isize + dy, xx as isize + dx);
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            for ci in 0..cin {
                                let xv = x[(ci * h + iy as usize) * w + ix as usize];
                                acc += f64::from(r(taps[(t * cout + co) * cin + ci]) * r(xv));
                            }
                        }
                        let got = out[(co * h + y) * w + xx];
                        worst = worst.max((got - acc as f32).abs());
                    }
                }
            }
            assert!(
                worst < 1e-4,
                "{cin}->{cout} at {h}x{w}: worst error {worst}"
            );
        }
    }
}
