//! Subcommands of the `msm` binary.

mod bench;
mod coilmaps;
mod data;
mod demo;
mod ecalib;
mod generate;
mod info;
mod metrics;
mod model;
mod progress;
mod recon;
mod reconstruct;
mod scan;
mod shipped;
mod simulate;
mod slices;
mod volume;

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
    /// Coil sensitivity maps from the ACS: ESPIRiT (as BART ecalib -m1) or ratio maps.
    Ecalib(ecalib::Args),
    /// PSNR / SSIM / NMSE of an image against a reference.
    Metrics(metrics::Args),
    /// MSM posterior sampling of undersampled multi-coil k-space with an ONNX model (one slice,
    /// or every slice of a fastMRI / ISMRMRD .h5 file).
    Reconstruct(reconstruct::Args),
    /// Unconditional samples from an ONNX model (PNG grid and .npy).
    Generate(generate::Args),
    /// The main job: held-out brain slices, simulated 4x scans, every method side by side.
    Demo(demo::Args),
    /// Speed of this runtime on one model and one simulated slice (table, --json).
    Bench(bench::Args),
    /// What a file holds: a model's metadata and executor, or a scan's slices, coils, grid,
    /// masks (acceleration, ACS) and noise level.
    Info(info::Args),
}

/// Parses an image size `HxW` (height, the readout, by width), both at least 1.
fn image_size(s: &str) -> std::result::Result<(usize, usize), String> {
    let expected = "expected HxW, two counts of at least 1 such as 320x320";
    let (h, w) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?}: {expected}"))?;
    match (h.trim().parse::<usize>(), w.trim().parse::<usize>()) {
        (Ok(h), Ok(w)) if h > 0 && w > 0 => Ok((h, w)),
        _ => Err(format!("{s:?}: {expected}")),
    }
}

/// Parses a count that must be at least 1 (clap's error names the option and the value).
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("expected a count of at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}; expected a count of at least 1")),
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Simulate(a) => simulate::run(a),
        Command::Recon(a) => recon::run(a),
        Command::Ecalib(a) => ecalib::run(a),
        Command::Metrics(a) => metrics::run(a),
        Command::Reconstruct(a) => reconstruct::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Info(a) => info::run(a),
    }
}
