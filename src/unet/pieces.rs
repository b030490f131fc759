//! Intra-op parallelism: one layer's work cut into pieces that idle rayon workers take.
//!
//! A layer's pieces are a function of its shape only, never of the thread count, and each piece
//! computes its outputs exactly as it would alone; so a pass gives bit-identical results on any
//! number of threads. The pieces run on the current rayon pool when it has more than one
//! thread, in order on the calling thread otherwise.
//!
//! Why: the sampler runs the `w` partial scores of a step as one network call each on rayon
//! workers. With `w = 3` on two cores, one core ran two calls and the other one, so the step
//! took two calls' time on a machine that can do three in one and a half. Nested in those
//! calls, the pieces let the idle worker take part of the third call (rayon's work stealing),
//! and a single call (one sample, `w = 1`, the sequential mode, `msm bench`'s one-image rows)
//! uses every core.

use rayon::prelude::*;

/// Pieces a layer is cut into where its shape allows: enough for two or three workers to
/// share, few enough that a piece stays large (a piece costs a few microseconds to hand out).
pub const PIECES: usize = 4;

/// Whether pieces run on the rayon pool (it has more than one thread).
fn parallel() -> bool {
    rayon::current_num_threads() > 1
}

/// Runs `f(i)` for every `i` in `0..n`, on the rayon pool when it has more than one thread.
/// The `f(i)` must touch disjoint outputs.
pub fn run(n: usize, f: impl Fn(usize) + Sync + Send) {
    if n > 1 && parallel() {
        (0..n).into_par_iter().for_each(f);
    } else {
        (0..n).for_each(f);
    }
}

/// `[f(0), .., f(n - 1)]`, computed on the rayon pool when it has more than one thread.
pub fn map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    if n > 1 && parallel() {
        (0..n).into_par_iter().map(f).collect()
    } else {
        (0..n).map(f).collect()
    }
}

/// Splits `0..n` into `pieces` contiguous ranges of nearly equal length (the first ones one
/// longer); returns range `i`.
pub fn range(n: usize, pieces: usize, i: usize) -> std::ops::Range<usize> {
    let (base, extra) = (n / pieces, n % pieces);
    let start = i * base + i.min(extra);
    start..start + base + usize::from(i < extra)
}

/// Runs `f` on this thread's reusable buffer in `slot` (a convolution's packed input: no
/// allocation and no clearing per call). The buffer leaves the slot while `f` runs: a worker
/// waiting for pieces may run another call on this thread, which then takes a buffer of its
/// own; the larger of the two is kept.
pub fn with_buffer<T, R>(
    slot: &'static std::thread::LocalKey<std::cell::RefCell<Vec<T>>>,
    f: impl FnOnce(&mut Vec<T>) -> R,
) -> R {
    let mut buf = slot.with(|b| b.take());
    let r = f(&mut buf);
    slot.with(|b| {
        if b.borrow().capacity() < buf.capacity() {
            b.replace(buf);
        }
    });
    r
}

/// Makes `v` at least `n` long (new values `T::default()`), never shorter: a reused buffer
/// whose callers write every value they read. (Resizing to each call's length instead would
/// zero-fill the difference every time a larger call follows a smaller one: the output
/// convolution's padded input after the input convolution's cost 1% of a reconstruction.)
pub fn grow<T: Clone + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// A pointer into one output buffer that the pieces of a layer share, each writing its own
/// disjoint part of it. Reach the pointer through [`Disjoint::ptr`] (a closure that used the
/// field would capture the bare pointer, which is not `Send`).
#[derive(Clone, Copy)]
pub struct Disjoint<T = f32>(*mut T);

// SAFETY: the pointer is only dereferenced by pieces that write disjoint parts of a buffer
// that outlives them (the callers' contract, stated at each use).
unsafe impl<T> Send for Disjoint<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Disjoint<T> {}

impl<T> Disjoint<T> {
    /// Shares `p`.
    pub fn new(p: *mut T) -> Disjoint<T> {
        Disjoint(p)
    }

    /// The shared pointer.
    pub fn ptr(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tile_the_interval() {
        for n in 0..40 {
            for pieces in 1..9 {
                let mut next = 0;
                for i in 0..pieces {
                    let r = range(n, pieces, i);
                    assert_eq!(r.start, next, "n {n}, pieces {pieces}, piece {i}");
                    assert!(r.len() == n / pieces || r.len() == n / pieces + 1);
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn map_keeps_the_order_on_any_pool() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let v = pool.install(|| map(100, |i| i * i));
            assert_eq!(v, (0..100).map(|i| i * i).collect::<Vec<_>>());
        }
    }
}
