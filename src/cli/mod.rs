//! Subcommands of the `msm` binary.

mod data;
mod metrics;
mod recon;
mod simulate;

use clap::{Parser, Subcommand};
use msm::Result;

/// Measurement-score diffusion (MSM) MRI reconstruction on the CPU.
#[derive(Parser, Debug)]
#[command(name = "msm", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate an undersampled multi-coil acquisition from a magnitude image.
    Simulate(simulate::Args),
    /// Classical reconstruction: zero-filled or CG-SENSE.
    Recon(recon::Args),
    /// PSNR / SSIM / NMSE of an image against a reference.
    Metrics(metrics::Args),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Simulate(a) => simulate::run(a),
        Command::Recon(a) => recon::run(a),
        Command::Metrics(a) => metrics::run(a),
    }
}
