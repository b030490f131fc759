//! The `msm` command line: BART-like tools, `msm <tool> [options] <inputs> <output>`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    one_malloc_arena();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msm: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Asks glibc's allocator for a single arena (`mallopt(M_ARENA_MAX, 1)`, what
/// `MALLOC_ARENA_MAX=1` does). By default every thread that allocates gets an arena of its own,
/// and each keeps the activation buffers freed into it: a reconstruction's peak resident memory
/// (f32, 20 steps) was 145 MiB on 2 threads and 102 MiB on 1 with the default, 126 and 87 MiB
/// with one arena, at the same speed (the executor allocates little per pass: it reuses its
/// buffers). Not a glibc target (musl, macOS): nothing to do.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// `M_ARENA_MAX` of glibc's `malloc.h`.
        const M_ARENA_MAX: std::ffi::c_int = -8;
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        // SAFETY: glibc's mallopt, called before any other thread exists; it only changes the
        // allocator's arena limit (a zero return, a refusal, leaves the default in place).
        unsafe {
            mallopt(M_ARENA_MAX, 1);
        }
    }
}
