//! The `msm` command line: BART-like tools, `msm <tool> [options] <inputs> <output>`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msm: error: {e}");
            ExitCode::FAILURE
        }
    }
}
