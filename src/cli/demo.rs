//! `msm demo`: the main job. Held-out slices of the Colin27 brain (Debian package
//! `mricron-data`) are turned into simulated 4x accelerated 8-coil scans and reconstructed with
//! zero-filled, CG-SENSE, BART `pics` l1-wavelet and TV (when `bart` is on PATH) and MSM posterior
//! sampling with the shipped model. Prints a table and writes a PNG panel per slice.

use super::simulate::PatternArg;
use super::{coilmaps, model, progress};
use msm::io::{cfl, nifti, npy, png};
use msm::mask::{Acs, Mask};
use msm::metrics::{compare, ls_scale, Quality};
use msm::recon::{cg_sense, zero_filled, CgOptions};
use msm::sampler::{self, NetworkPrior, ReconOptions, SamplerOptions};
use msm::sense::Sense;
use msm::simulate::{simulate, Acquisition, SimOptions};
use msm::uncertainty::{calibrate, expected_coverage, mean_object, Uncertainty, BLOCK};
use msm::{Error, Result, C32};
use ndarray::{Array2, Ix2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where Debian's `mricron-data` installs the Colin27 volume.
pub const COLIN27: &str = "/usr/share/mricron/templates/ch2.nii.gz";
/// A held-out slice shipped with the repository, used when `mricron-data` is missing.
pub const SHIPPED_SLICE: &str = "models/examples/colin27-axial-90.npy";
/// Regularisation weights tried for each BART regulariser on the first slice.
const BART_LAMBDAS: [f64; 4] = [0.001, 0.003, 0.01, 0.03];
/// Iteration limits (`pics -i`) tried for BART on the first slice, with each lambda: on
/// noiseless data more iterations keep gaining (30 is BART's default).
const BART_ITERS: [usize; 3] = [30, 100, 200];
/// CG-SENSE iteration counts tried on the first slice: noiseless data gains up to hundreds of
/// iterations, noisy data loses after a few (semi-convergence), so the count is chosen as
/// BART's lambda is.
const CG_ITERS: [usize; 8] = [5, 10, 20, 50, 100, 200, 500, 1000];
/// Final data consistency (CG iterations on each MSM sample) on noiseless scans: the best of 10,
/// 100 and 1000 on the tuning slices at the demo's K = 30 and 2 samples (25.32, 26.99, 28.73 dB)
/// and at K = 200 (docs/results.md).
const FINAL_DC_NOISELESS: usize = 1000;
/// Final data consistency on noisy scans: more iterations fit the noise (the tuning slices' best
/// of 0, 3, 10 and 30 at noise std 0.01; docs/results.md).
const FINAL_DC_NOISY: usize = 3;
/// Final data consistency on noiseless scans reconstructed with maps estimated from the ACS:
/// the maps' error acts as noise, and many iterations fit it (the tuning slices' best of
/// 10, 30, 100 and 300 with ESPIRiT maps; docs/results.md).
const FINAL_DC_ESTIMATED_MAPS: usize = 100;

/// Options of `msm demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder for the panels and the results table.
    #[arg(long, default_value = "msm-demo")]
    pub out: PathBuf,
    /// Number of held-out slices (evenly spread over the held-out block).
    #[arg(long, default_value_t = 1, value_parser = super::at_least_one)]
    pub slices: usize,
    /// Magnitude volume to draw slices from (default: Colin27 from mricron-data).
    #[arg(long)]
    pub volume: Option<PathBuf>,
    /// Acceleration R of the simulated scans.
    #[arg(long, default_value_t = 4.0)]
    pub accel: f64,
    /// ACS lines of the simulated scans (for 2-D patterns: the side of the fully sampled
    /// central square).
    #[arg(long, default_value_t = 20)]
    pub acs: usize,
    /// Sampling pattern of the simulated scans: random-2d, variable-density-2d and
    /// poisson-disc-2d undersample both axes, like the (phase encode, partition) slices of a
    /// 3-D scan.
    #[arg(long, value_enum, default_value_t = PatternArg::Random)]
    pub pattern: PatternArg,
    /// Coils of the simulated scans.
    #[arg(long, default_value_t = 8)]
    pub coils: usize,
    /// Measurement noise std (real and imaginary parts; image peak 1).
    #[arg(long, default_value_t = 0.0)]
    pub noise: f64,
    /// Posterior samples per slice (their std is the uncertainty map).
    #[arg(long, default_value_t = 2, value_parser = super::at_least_one)]
    pub samples: usize,
    /// Data-consistency step lambda of MSM, in [0, 2].
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f64,
    /// CG-SENSE iterations (default: the best of 5, 10, 20, 50, 100, 200, 500, 1000 on the first
    /// slice).
    #[arg(long, value_parser = super::at_least_one)]
    pub cg_iters: Option<usize>,
    /// CG iterations of final data consistency on each MSM sample (0: none; default: 1000 on
    /// noiseless scans, 100 on noiseless scans with --maps-method, 3 on noisy ones).
    #[arg(long)]
    pub final_dc: Option<usize>,
    /// Skip BART (l1-wavelet and TV) even when it is installed.
    #[arg(long)]
    pub no_bart: bool,
    /// Estimate the coil maps of each scan from its ACS with this method, as on real scans,
    /// instead of using the simulation's true maps; every method uses the same maps.
    #[arg(long, value_enum)]
    pub maps_method: Option<coilmaps::Method>,
    #[command(flatten)]
    pub maps_opts: coilmaps::MapsArgs,
    #[command(flatten)]
    pub sampler: model::SamplerArgs,
}

/// One method's result on one slice.
struct Row {
    method: String,
    quality: Quality,
    seconds: f64,
}

fn bart_available() -> bool {
    Command::new("bart")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The held-out axial block from the model metadata ("k = A..B"), else 80..100.
fn held_out(meta: &msm::onnx::ModelMeta) -> (usize, usize) {
    let parse = |s: &str| -> Option<(usize, usize)> {
        let rest = s.split("k = ").nth(1)?;
        let (a, b) = rest.split_once("..")?;
        let b: String = b.chars().take_while(|c| c.is_ascii_digit()).collect();
        Some((a.trim().parse().ok()?, b.parse().ok()?))
    };
    meta.held_out_slices
        .as_deref()
        .and_then(parse)
        .filter(|(a, b)| a < b)
        .unwrap_or((80, 100))
}

/// The slices to reconstruct: `(label, magnitude image)`.
fn load_slices(a: &Args, block: (usize, usize)) -> Result<Vec<(String, Array2<f32>)>> {
    let volume = a.volume.clone().unwrap_or_else(|| PathBuf::from(COLIN27));
    if !volume.exists() {
        eprintln!(
            "note: {} not found. Install the real brain data with `sudo apt-get install \
             mricron-data`; using the shipped example slice {SHIPPED_SLICE} instead.",
            volume.display()
        );
        let shipped = super::shipped::locate(Path::new(SHIPPED_SLICE));
        let img = npy::read_npy_as::<f32, Ix2>(&shipped)?;
        return Ok(vec![("axial 90 (shipped)".to_string(), img)]);
    }
    let vol = nifti::read_nifti_canonical(&volume)?;
    let n = a.slices;
    let (lo, hi) = block;
    let count = vol.slice_count(nifti::Plane::Axial);
    if hi > count {
        return Err(Error::format(
            &volume,
            format!("the held-out block {lo}..{hi} exceeds the volume's {count} axial slices"),
        ));
    }
    if n > hi - lo {
        return Err(Error::invalid(format!(
            "--slices {n}: the held-out block {lo}..{hi} of {} has {} slices; expected at most \
             that many (the demo never reconstructs a slice twice or a training slice)",
            volume.display(),
            hi - lo
        )));
    }
    (0..n)
        .map(|i| {
            let k = lo + (hi - lo) * (2 * i + 1) / (2 * n);
            Ok((format!("axial {k}"), vol.slice(nifti::Plane::Axial, k)?))
        })
        .collect()
}

/// Slice `si`'s simulated scan (seeded by its index), its mask, and the SENSE operator of the
/// maps every method gets (the simulation's, or estimated from the ACS with --maps-method).
fn acquire(
    a: &Args,
    si: usize,
    label: &str,
    image: &Array2<f32>,
    (height, width): (usize, usize),
) -> Result<(Acquisition, Mask, Sense)> {
    let sim = SimOptions {
        height,
        width,
        coils: a.coils,
        accel: a.accel,
        acs: Acs::Lines(a.acs),
        pattern: a.pattern.into(),
        noise_std: a.noise,
        ..SimOptions::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(1000 + si as u64);
    let acq = simulate(image.view(), &sim, &mut rng)?;
    let mask = acq.mask.clone();
    let maps = match a.maps_method {
        Some(m) => {
            a.maps_opts
                .estimate(m, acq.kspace.view(), Some(&mask))
                .map_err(|e| Error::invalid(format!("coil maps of {label}: {e}")))?
                .maps
        }
        None => acq.maps.clone(),
    };
    let op = Sense::new(maps)?;
    Ok((acq, mask, op))
}

fn scaled(reference: &Array2<C32>, image: &Array2<C32>) -> Array2<f32> {
    let s = ls_scale(reference.view(), image.view());
    image.mapv(|v| (v * s).norm())
}

/// The regularisers of BART `pics` the demo runs (`shared/DATA.md`'s peers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BartReg {
    /// l1-wavelet, `-R W:7:0:lambda` (the peer).
    Wavelet,
    /// Total variation over both image axes, `-R T:3:0:lambda`.
    Tv,
}

impl BartReg {
    const ALL: [BartReg; 2] = [BartReg::Wavelet, BartReg::Tv];

    /// The method's name in the tables.
    fn name(self) -> &'static str {
        match self {
            BartReg::Wavelet => "BART l1-wavelet",
            BartReg::Tv => "BART TV",
        }
    }

    /// The `pics -R` argument for weight `lambda`.
    fn flag(self, lambda: f64) -> String {
        match self {
            BartReg::Wavelet => format!("W:7:0:{lambda}"),
            BartReg::Tv => format!("T:3:0:{lambda}"),
        }
    }
}

/// Runs BART pics with regulariser `reg` of weight `lambda` and at most `iters` iterations on
/// files under `dir`.
fn bart_pics(dir: &Path, reg: BartReg, lambda: f64, iters: usize) -> Result<Array2<C32>> {
    let out = dir.join(format!("pics_{reg:?}_{lambda}_{iters}"));
    let status = Command::new("bart")
        .arg("pics")
        .arg("-i")
        .arg(iters.to_string())
        .arg("-R")
        .arg(reg.flag(lambda))
        .arg(dir.join("ksp"))
        .arg(dir.join("maps"))
        .arg(&out)
        .output()
        .map_err(|e| Error::io("bart", e))?;
    if !status.status.success() {
        return Err(Error::invalid(format!(
            "bart pics failed: {}",
            String::from_utf8_lossy(&status.stderr)
        )));
    }
    cfl::read_image(&out)
}

/// BART's lambda and iteration limit for `reg`: the best PSNR on `reference` over
/// [`BART_LAMBDAS`] x [`BART_ITERS`] (the sweep printed on stderr).
fn bart_sweep(work: &Path, reg: BartReg, reference: &Array2<C32>) -> Result<(f64, usize)> {
    let mut best = (f64::NEG_INFINITY, (BART_LAMBDAS[0], BART_ITERS[0]));
    for &l in &BART_LAMBDAS {
        for &n in &BART_ITERS {
            let img = bart_pics(work, reg, l, n)?;
            let q = compare(reference.view(), img.view(), true)?;
            eprintln!(
                "{} lambda {l}, {n} iterations: {:.2} dB",
                reg.name(),
                q.psnr
            );
            if q.psnr > best.0 {
                best = (q.psnr, (l, n));
            }
        }
    }
    let (l, n) = best.1;
    eprintln!(
        "{} fixed at lambda {l}, {n} iterations (best on the first slice)",
        reg.name()
    );
    Ok(best.1)
}

/// A note when the simulated scans are noisy but the model was trained on noiseless
/// measurements (`msm.train_noise_eta` = 0): such a prior is the weakest method on noisy scans,
/// and the default model, the shipped noisy-data prior, is made for them.
fn noise_note(scan_noise: f64, train_noise: f64) -> Option<String> {
    (scan_noise > 0.0 && train_noise == 0.0).then(|| {
        format!(
            "the model was trained on noiseless measurements (msm.train_noise_eta = 0) and these \
             scans have noise std {scan_noise}; for noisy scans use the default model, the prior \
             trained on noisy measurements: `--model {} --steps 200`, which carries its DDIM \
             eta (docs/results.md, \"Noisy scans\")",
            model::DEFAULT_MODEL
        )
    })
}

/// How the demo's scans are sampled, for the table's notes.
fn scan_note(a: &Args) -> String {
    let pattern = match a.pattern {
        PatternArg::Random => format!("random Cartesian columns with {} ACS lines", a.acs),
        PatternArg::Equispaced => format!("every R-th column with {} ACS lines", a.acs),
        PatternArg::Random2d => format!(
            "random entries (undersampled along both axes) with a {0}x{0} ACS square",
            a.acs
        ),
        PatternArg::VariableDensity2d => format!(
            "entries of variable density (1 - r)^2 (undersampled along both axes) with a \
             {0}x{0} ACS square",
            a.acs
        ),
        PatternArg::PoissonDisc2d => format!(
            "a Poisson disc of variable density (1 - r)^2 (undersampled along both axes) with a \
             {0}x{0} ACS square",
            a.acs
        ),
    };
    format!(
        "{} coils, R = {}, {pattern}, noise std {}",
        a.coils, a.accel, a.noise
    )
}

/// Runs `msm demo`.
pub fn run(a: Args) -> Result<()> {
    match a.maps_method {
        Some(m) => a.maps_opts.check_for(m)?,
        None => a
            .maps_opts
            .check_none("msm demo uses the simulation's true maps unless --maps-method is given")?,
    }
    let (net, opts) = model::load(&a.sampler, model::Job::Reconstruction, 30, None)?;
    let meta = net.meta().clone();
    let (h, w) = (meta.height, meta.width);
    let slices = load_slices(&a, held_out(&meta))?;
    let use_bart = !a.no_bart && bart_available();
    if !use_bart && !a.no_bart {
        eprintln!("note: `bart` not on PATH (sudo apt-get install bart); skipping BART pics");
    }
    if let Some(note) = noise_note(a.noise, meta.train_noise_eta) {
        eprintln!("note: {note}");
    }
    let ropts = ReconOptions {
        samples: a.samples,
        lambda: a.lambda,
        scale_target: meta.scale_p99(&a.sampler.model)?,
        final_dc: a.final_dc.unwrap_or(if a.noise > 0.0 {
            FINAL_DC_NOISY
        } else if a.maps_method.is_some() {
            FINAL_DC_ESTIMATED_MAPS
        } else {
            FINAL_DC_NOISELESS
        }),
    };
    // The first scan is simulated, and every setting checked on it, before anything is written
    // or run: a bad --accel, --steps or --lambda fails at once, not after the peers' sweeps,
    // and leaves no output folder behind.
    let first = {
        let (label, image) = &slices[0];
        let (acq, mask, op) = acquire(&a, 0, label, image, (h, w))?;
        opts.validate(&op)?;
        ropts.validate(&op, acq.kspace.dim(), &mask)?;
        (acq, mask, op)
    };
    let mut first = Some(first);
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(&a.out, e))?;
    // BART's input and output files; removed when dropped, on an error as well.
    let scratch = tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(&a.out)
        .map_err(|e| Error::io(&a.out, e))?;
    let work = scratch.path();
    let prior = NetworkPrior::new(net);
    // Each regulariser's (lambda, iterations), chosen on the first slice.
    let mut bart_settings: [Option<(f64, usize)>; 2] = [None; 2];
    let mut cg_iters = a.cg_iters;
    let mut table: Vec<(String, Vec<Row>)> = Vec::new();
    let mut uncertainty: Vec<(String, Uncertainty)> = Vec::new();
    let maps_note = match a.maps_method {
        Some(m) => format!("{} from each scan's ACS", a.maps_opts.describe(m)),
        None => "the simulation's true birdcage maps".to_string(),
    };
    for (si, (label, image)) in slices.iter().enumerate() {
        let (acq, mask, op) = match first.take() {
            Some(scan) => scan,
            None => acquire(&a, si, label, image, (h, w))?,
        };
        let reference = &acq.reference;
        let mut rows = Vec::new();
        let mut images: Vec<(String, Array2<C32>)> = Vec::new();

        let t = Instant::now();
        let zf = zero_filled(&op, acq.kspace.view(), &mask);
        rows.push(row("zero-filled", reference, &zf, t)?);
        images.push(("zero-filled".into(), zf));

        let cg_run = |iterations| {
            let cg_opts = CgOptions {
                iterations,
                ..CgOptions::default()
            };
            cg_sense(&op, acq.kspace.view(), &mask, cg_opts).map(|r| r.0)
        };
        let iters = match cg_iters {
            Some(n) => n,
            None => {
                let mut best = (f64::NEG_INFINITY, CG_ITERS[0]);
                for &n in &CG_ITERS {
                    let q = compare(reference.view(), cg_run(n)?.view(), true)?;
                    eprintln!("CG-SENSE {n} iterations: {:.2} dB", q.psnr);
                    if q.psnr > best.0 {
                        best = (q.psnr, n);
                    }
                }
                eprintln!(
                    "CG-SENSE iterations fixed at {} (best on the first slice)",
                    best.1
                );
                cg_iters = Some(best.1);
                best.1
            }
        };
        let t = Instant::now();
        let cg = cg_run(iters)?;
        rows.push(row(&format!("CG-SENSE ({iters} it.)"), reference, &cg, t)?);
        images.push(("CG-SENSE".into(), cg));

        if use_bart {
            cfl::write_coils(work.join("ksp"), &acq.kspace)?;
            cfl::write_coils(work.join("maps"), op.maps())?;
            for (reg, setting) in BartReg::ALL.into_iter().zip(bart_settings.iter_mut()) {
                let (lambda, iters) = match *setting {
                    Some(s) => s,
                    None => {
                        let chosen = bart_sweep(work, reg, reference)?;
                        *setting = Some(chosen);
                        chosen
                    }
                };
                let t = Instant::now();
                let img = bart_pics(work, reg, lambda, iters)?;
                rows.push(row(
                    &format!("{} ({lambda}, {iters} it.)", reg.name()),
                    reference,
                    &img,
                    t,
                )?);
                images.push((reg.name().into(), img));
            }
        }

        let t = Instant::now();
        let (cb, bar) = progress::bar(a.sampler.quiet, &format!("MSM {label}"));
        let sopts = SamplerOptions {
            progress: cb,
            seed: opts.seed.wrapping_add(si as u64),
            ..opts.clone()
        };
        let msm_out = sampler::reconstruct(&prior, &op, acq.kspace.view(), &mask, &sopts, &ropts)?;
        bar.finish_and_clear();
        rows.push(row(
            &format!(
                "MSM (K={}, w={}, eta {}, {} sample{}, final DC {})",
                sopts.steps,
                sopts.partials,
                sopts.eta,
                ropts.samples,
                if ropts.samples == 1 { "" } else { "s" },
                ropts.final_dc
            ),
            reference,
            &msm_out.mean,
            t,
        )?);
        images.push(("MSM".into(), msm_out.mean.clone()));
        if ropts.samples >= 2 {
            let u = calibrate(
                reference.view(),
                msm_out.mean.view(),
                msm_out.std.view(),
                ropts.samples,
                true,
            )?;
            uncertainty.push((label.clone(), u));
        }

        write_panel(&a.out, si, reference, &images, &msm_out.std)?;
        table.push((label.clone(), rows));
    }
    let mut text = format_table(&table, &maps_note, &scan_note(&a));
    if !uncertainty.is_empty() {
        text.push_str(&format_uncertainty(&uncertainty));
    }
    println!("{text}");
    let results = a.out.join("results.md");
    msm::io::atomic::write_atomic(&results, |f| f.write_all(text.as_bytes()))?;
    eprintln!(
        "wrote {} and {} panel(s) in {}",
        results.display(),
        table.len(),
        a.out.display()
    );
    Ok(())
}

fn row(method: &str, reference: &Array2<C32>, image: &Array2<C32>, t: Instant) -> Result<Row> {
    let seconds = t.elapsed().as_secs_f64();
    Ok(Row {
        method: method.to_string(),
        quality: compare(reference.view(), image.view(), true)?,
        seconds,
    })
}

/// Panel: top row reference and each method (LS-scaled magnitudes, one window), bottom row
/// the error magnitudes x5 and the MSM uncertainty (std) x5.
fn write_panel(
    out: &Path,
    index: usize,
    reference: &Array2<C32>,
    images: &[(String, Array2<C32>)],
    std: &Array2<f32>,
) -> Result<()> {
    let r = reference.mapv(|v| v.norm());
    let mut tiles = vec![r.clone()];
    let mut errs = vec![std.mapv(|v| 5.0 * v)];
    for (_, img) in images {
        let s = scaled(reference, img);
        errs.push((&s - &r).mapv(|v| 5.0 * v.abs()));
        tiles.push(s);
    }
    let cols = tiles.len();
    tiles.extend(errs);
    let grid = png::tile(&tiles, cols, 2)?;
    let peak = r.iter().cloned().fold(0.0f32, f32::max).max(1e-12);
    png::write_png(
        out.join(format!("slice{index}.png")),
        &grid,
        png::Window::Fixed(0.0, peak),
    )
}

/// The calibration of MSM's uncertainty maps over the object (per slice, the mean over
/// slices, and what a calibrated map would give; [`msm::uncertainty`]).
fn format_uncertainty(rows: &[(String, Uncertainty)]) -> String {
    let samples = rows[0].1.samples;
    let mut s = format!(
        "\nMSM uncertainty: the std of the {samples} samples against the error of their mean, \
         over the object (predicted std = std x sqrt(1 + 1/{samples})):\n\n| slice | rms error / \
         rms predicted std | error within 1 / 2 / 3 predicted std | Spearman (std, error), \
         pixels | the same, {BLOCK} x {BLOCK} blocks |\n|---|---|---|---|---|\n"
    );
    let line = |label: &str, ratio: f64, c: [f64; 3], rho: f64, block: f64| {
        format!(
            "| {label} | {ratio:.2} | {:.3} / {:.3} / {:.3} | {rho:.3} | {block:.3} |\n",
            c[0], c[1], c[2]
        )
    };
    for (label, u) in rows {
        let o = &u.object;
        s.push_str(&line(
            label,
            o.ratio,
            o.coverage,
            o.spearman,
            o.block_spearman,
        ));
    }
    if rows.len() > 1 {
        let all: Vec<Uncertainty> = rows.iter().map(|(_, u)| *u).collect();
        if let Some(m) = mean_object(&all) {
            s.push_str(&line(
                "mean",
                m.ratio,
                m.coverage,
                m.spearman,
                m.block_spearman,
            ));
        }
    }
    let e = expected_coverage(samples);
    s.push_str(&format!(
        "| calibrated, {samples} samples | 1 | {:.3} / {:.3} / {:.3} | | |\n\nA ratio above 1 and \
         coverage below a calibrated map's: the error is larger than the samples' spread \
         admits (over-confident).\n",
        e[0], e[1], e[2]
    ));
    s
}

/// The results table (per slice, then mean and std over slices) and its notes; `maps` says
/// which coil maps the methods used, `scans` how the scans were sampled.
fn format_table(table: &[(String, Vec<Row>)], maps: &str, scans: &str) -> String {
    let mut s = String::new();
    s.push_str("| slice | method | PSNR (dB) | SSIM | SSIM (object) | NMSE | seconds |\n");
    s.push_str("|---|---|---|---|---|---|---|\n");
    for (label, rows) in table {
        for r in rows {
            s.push_str(&format!(
                "| {label} | {} | {:.2} | {:.4} | {:.4} | {:.4} | {:.2} |\n",
                r.method,
                r.quality.psnr,
                r.quality.ssim,
                r.quality.ssim_object,
                r.quality.nmse,
                r.seconds
            ));
        }
    }
    if table.len() > 1 {
        s.push_str("\nMean (std) over slices:\n\n| method | PSNR (dB) | SSIM | SSIM (object) | NMSE | seconds |\n|---|---|---|---|---|---|\n");
        let n_methods = table[0].1.len();
        for m in 0..n_methods {
            let vals = |f: &dyn Fn(&Row) -> f64| -> (f64, f64) {
                let v: Vec<f64> = table.iter().map(|(_, rows)| f(&rows[m])).collect();
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
                (mean, var.sqrt())
            };
            let (p, ps) = vals(&|r| r.quality.psnr);
            let (q, qs) = vals(&|r| r.quality.ssim);
            let (o, os) = vals(&|r| r.quality.ssim_object);
            let (e, es) = vals(&|r| r.quality.nmse);
            let (t, _) = vals(&|r| r.seconds);
            s.push_str(&format!(
                "| {} | {p:.2} ({ps:.2}) | {q:.4} ({qs:.4}) | {o:.4} ({os:.4}) | {e:.4} ({es:.4}) | {t:.2} |\n",
                table[0].1[m].method
            ));
        }
    }
    s.push_str(
        "\nMagnitude images after least-squares complex scaling onto the reference; PSNR peak = \
         reference max; SSIM (object): the SSIM map over the pixels where the reference is at \
         least 10% of its maximum. Panels: top row reference and methods, bottom row MSM uncertainty (std) \
         and |error|, both x5.\n",
    );
    s.push_str(&format!("Coil maps of every method: {maps}.\n"));
    s.push_str(&format!("Scans: {scans}.\n"));
    s
}
