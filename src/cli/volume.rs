//! `msm reconstruct` on a volume: every selected slice of a fastMRI / ISMRMRD `.h5` file, or of a
//! stack of slices in a `.npy` / `.cfl` file ([`super::scan::Scan`]), resumable.
//!
//! Per slice: read its k-space, take the mask (`--mask`, the file's `mask`, or the columns that
//! hold data), bring the k-space to the model's grid ([`msm::volume::GridPlan`]), estimate coil
//! maps from the ACS (or take them from the maps file), run posterior sampling seeded with
//! [`msm::volume::slice_seed`], bring the image to the output grid and store it in
//! `<output>.parts/` ([`msm::volume::Parts`]). When every selected slice is there, the volume is
//! written (atomically) and the parts folder removed.
//!
//! With a counter of an ISMRMRD file chosen `all` (`--repetition all`), the images of the
//! series are reconstructed in turn, slice `s` of image `i` stored as part `i * slices + s`,
//! and written as one output with the series' axes ([`msm::volume::write_series`]). When
//! slices run in parallel and an image has fewer slices than threads (a cine or dynamic series
//! of one slice), the slices of several images run together.

use super::reconstruct::{recon_options, Args};
use super::scan::{Scan, SeriesPlacement};
use super::slices::{parse_slices, MapsChoice, SliceInputs};
use super::{data, model, progress};
use msm::denoiser::OnnxDenoiser;
use msm::io::{atomic, cfl};
use msm::sampler::{self, NetworkPrior, Progress, ReconOptions, SamplerOptions, Stats};
use msm::volume::{
    image_seed, slice_seed, write_series, write_series_real, GridPlan, Manifest, Parts,
    VolumeFormat,
};
use msm::{Error, Result, C32};
use ndarray::Array2;
use rayon::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Everything the slices share.
struct Context {
    prior: NetworkPrior<OnnxDenoiser>,
    opts: SamplerOptions,
    recon: ReconOptions,
}

/// Runs `msm reconstruct` on the volume `kspace` (`.h5`, or a stack in a `.npy` / `.cfl`), with
/// optional maps, writing `output`: one volume, or with a counter chosen `all` the series of
/// the file's images (`--repetition all`), each image's volume in turn.
pub fn run(a: &Args, kspace: &Path, maps: Option<&Path>, output: &Path) -> Result<()> {
    // Everything that can be checked is checked before the first slice is read.
    let mut outputs = vec![(output.to_path_buf(), VolumeFormat::of(output)?)];
    if let Some(p) = &a.also {
        outputs.push((p.clone(), VolumeFormat::of(p)?));
    }
    // The uncertainty volume (`--std`): the samples' magnitude std, slice by slice.
    let std_output = match &a.std {
        Some(p) => Some((p.clone(), VolumeFormat::of(p)?)),
        None => None,
    };
    for (p, _) in outputs.iter().chain(&std_output) {
        atomic::check_folder(p)?;
    }
    let maps_choice = MapsChoice::new(maps, a.maps_method, &a.maps_opts)?;
    let series = a.raw.choice().series(kspace)?;
    let file = Scan::open(kspace, &a.raw.options_for(series.images[0]))?;
    let range = parse_slices(a.slices.as_deref(), file.num_slices(), kspace)?;
    let per_image = file.num_slices();
    let (h0, w0) = file.kspace_size();
    let (net, opts) = model::load(&a.sampler, model::Job::Reconstruction, 200, Some(w0))?;
    let (hm, wm) = (net.meta().height, net.meta().width);
    let plan =
        GridPlan::new((h0, w0), a.recon_size.or(file.recon_size()), (hm, wm)).map_err(|e| {
            Error::format(
                kspace,
                format!("does not fit the model {}: {e}", a.sampler.model.display()),
            )
        })?;
    net.check_data(hm, wm, 2)?;
    let recon = recon_options(a, &net)?;
    let manifest = manifest(a, &opts, &recon, &file, &plan, &maps_choice)?;
    let mut inputs = SliceInputs::new(file, plan, a.mask.as_deref(), maps_choice, a.virtual_coils)?;
    inputs.name_image(series.label(0));
    let shape = inputs.plan().output;
    let std_parts = match &std_output {
        Some((p, _)) => Some(Parts::open(p, manifest.clone(), shape, a.restart)?),
        None => None,
    };
    let parts = Parts::open(output, manifest, shape, a.restart)?;
    // A slice is done when its image and, with --std, its uncertainty map are stored.
    let done = |n: usize| {
        std::iter::once(&parts)
            .chain(&std_parts)
            .all(|p| p.done().binary_search(&n).is_ok())
    };
    let quiet = a.sampler.quiet;
    let say = |msg: String| {
        if !quiet {
            eprintln!("{msg}");
        }
    };
    if let Some(msg) = inputs.plan().describe() {
        say(format!("{}: {msg}", kspace.display()));
    }
    // Slice `s` of image `i` of the series is part `i * per_image + s`.
    let part = |image: usize, slice: usize| image * per_image + slice;
    let todo: Vec<Vec<usize>> = (0..series.images.len())
        .map(|i| range.clone().filter(|&s| !done(part(i, s))).collect())
        .collect();
    let total = range.len() * series.images.len();
    let left: usize = todo.iter().map(Vec::len).sum();
    if total > left {
        say(format!(
            "{}: {} of {total} slices already done, {left} to reconstruct",
            parts.dir().display(),
            total - left,
        ));
    }
    if !series.axes.is_empty() {
        say(format!(
            "{}: a series of {} images ({})",
            kspace.display(),
            series.images.len(),
            series
                .shape()
                .iter()
                .map(|(name, n)| format!("{n} {name}s"))
                .collect::<Vec<_>>()
                .join(" x ")
        ));
    }
    let ctx = Context {
        prior: NetworkPrior::new(net),
        opts,
        recon,
    };
    // The output has the first image's placement; the others are checked against it.
    let (space, placed) = inputs.scan().voxel_space(&range, inputs.plan())?;
    let mut elsewhere = SeriesPlacement::new(&space, &placed, range.len(), inputs.plan());
    let finished = AtomicUsize::new(0);
    let threads = rayon::current_num_threads();
    // With more threads than partial scores per step, slices run in parallel, the slices of
    // several images together when one image has fewer slices than threads (a cine or
    // dynamic series of one slice): images are opened in groups of at least a slice per
    // thread, so that no more of the series than that is in memory.
    let across = threads > ctx.opts.partials;
    let mut next = 0;
    while next < todo.len() {
        let mut members = Vec::new();
        let mut count = 0;
        while next < todo.len() && (members.is_empty() || (across && count < threads)) {
            if !todo[next].is_empty() {
                members.push(next);
                count += todo[next].len();
            }
            next += 1;
        }
        let opened = members
            .iter()
            .filter(|&&i| i > 0)
            .map(|&i| {
                let file = Scan::open(kspace, &a.raw.options_for(series.images[i]))?;
                inputs.for_image(file, series.label(i))
            })
            .collect::<Result<Vec<SliceInputs>>>()?;
        for image in &opened {
            elsewhere.check(image.scan(), image.image(), &range, image.plan())?;
        }
        let mut others = opened.iter();
        let group: Vec<(usize, &SliceInputs, u64)> = members
            .iter()
            .filter_map(|&i| {
                let image = if i == 0 { Some(&inputs) } else { others.next() }?;
                Some((
                    i,
                    image,
                    image_seed(a.sampler.seed, &image.scan().image_key()),
                ))
            })
            .collect();
        let jobs: Vec<(usize, usize)> = group
            .iter()
            .enumerate()
            .flat_map(|(g, (i, _, _))| todo[*i].iter().map(move |&s| (g, s)))
            .collect();
        let parallel = across && jobs.len() > 1;
        if parallel {
            say(format!(
                "{} slices{} across {threads} threads (more threads than the {} partial scores \
                 per step)",
                jobs.len(),
                match group.len() {
                    1 => String::new(),
                    n => format!(" of {n} images"),
                },
                ctx.opts.partials
            ));
        }
        let one = |(g, index): (usize, usize), bar: bool| -> Result<()> {
            let (i, inputs, seed) = group[g];
            let name = match series.label(i) {
                label if label.is_empty() => format!("slice {index}"),
                label => format!("{label}, slice {index}"),
            };
            let start = Instant::now();
            let (cb, pb) = progress::bar(quiet || !bar, &name);
            let (image, std, stats) = ctx.slice(inputs, seed, index, cb)?;
            pb.finish_and_clear();
            if let Some(p) = &std_parts {
                p.write(part(i, index), &std)?;
            }
            parts.write(part(i, index), &image)?;
            let n = finished.fetch_add(1, Ordering::SeqCst) + 1;
            if !quiet {
                eprintln!(
                    "{name} done in {:.1} s, {} network calls ({n} of {left} this run, {} left)",
                    start.elapsed().as_secs_f64(),
                    stats.denoisings,
                    left - n
                );
            }
            Ok(())
        };
        if parallel {
            // Every job runs (a finished slice's part is kept for a resumed run) and the
            // first failure in job order is reported, whichever thread met it first.
            jobs.par_iter()
                .map(|&job| one(job, false))
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Result<()>>()?;
        } else {
            for &job in &jobs {
                one(job, true)?;
            }
        }
    }
    let nifti = outputs.iter().any(|(_, f)| *f == VolumeFormat::Nifti);
    if nifti {
        for note in [placed.note(kspace), elsewhere.note(kspace)]
            .into_iter()
            .flatten()
        {
            say(note);
        }
    }
    let volumes = (0..series.images.len())
        .map(|i| range.clone().map(|s| parts.read(part(i, s))).collect())
        .collect::<Result<Vec<Vec<Array2<C32>>>>>()?;
    for (p, format) in &outputs {
        write_series(p, *format, &series.shape(), &volumes, &space)?;
    }
    if let (Some((p, format)), Some(std_parts)) = (&std_output, &std_parts) {
        let maps = (0..series.images.len())
            .map(|i| {
                range
                    .clone()
                    .map(|s| Ok(std_parts.read(part(i, s))?.mapv(|v| v.re)))
                    .collect()
            })
            .collect::<Result<Vec<Vec<Array2<f32>>>>>()?;
        write_series_real(p, *format, &series.shape(), &maps, &space)?;
        std_parts.clear()?;
    }
    parts.clear()?;
    let (ho, wo) = inputs.plan().output;
    say(format!(
        "wrote {} ({}{} slices {}..{}, {ho}x{wo})",
        outputs
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and "),
        match series.images.len() {
            1 => String::new(),
            n => format!("{n} images of "),
        },
        range.len(),
        range.start,
        range.end
    ));
    Ok(())
}

impl Context {
    /// Reconstructs slice `index` of the image `inputs` read, its sampler seeded from the
    /// image's seed `seed`, on the output grid: the posterior mean, the samples' magnitude std
    /// (real, stored as the real part) and the timing.
    fn slice(
        &self,
        inputs: &SliceInputs,
        seed: u64,
        index: usize,
        progress: Option<Progress>,
    ) -> Result<(Array2<C32>, Array2<C32>, Stats)> {
        let (kspace, mask, op) = inputs.acquire(index)?;
        let opts = SamplerOptions {
            seed: slice_seed(seed, index),
            progress,
            ..self.opts.clone()
        };
        let prior = &self.prior;
        let out = sampler::reconstruct(prior, &op, kspace.view(), &mask, &opts, &self.recon)
            .map_err(|e| inputs.in_slice(index, e))?;
        let std = out.std.mapv(|v| C32::new(v, 0.0));
        Ok((
            inputs.plan().image_to_output(out.mean.view()),
            inputs.plan().image_to_output(std.view()),
            out.stats,
        ))
    }
}

/// The settings that decide every slice's result (module [`msm::volume::parts`]).
fn manifest(
    a: &Args,
    opts: &SamplerOptions,
    recon: &ReconOptions,
    file: &Scan,
    plan: &GridPlan,
    maps: &MapsChoice,
) -> Result<Manifest> {
    let mut m = Manifest::new();
    m.add("msm", env!("CARGO_PKG_VERSION"));
    m.add("input", identity(file.path(), false)?);
    m.add("model", identity(&a.sampler.model, true)?);
    m.add("model grid", format!("{:?}", plan.model));
    m.add("output grid", format!("{:?}", plan.output));
    m.add("steps", opts.steps);
    m.add("partials", opts.partials);
    m.add("eta", opts.eta);
    m.add("mode", format!("{:?}", opts.mode));
    // The executor changes the last bits of the numbers; `auto` resolves the same way for the
    // same model file (whose checksum is recorded above).
    m.add("backend", format!("{:?}", a.sampler.backend));
    m.add("seed", opts.seed);
    m.add("renoise", opts.renoise);
    m.add("write-back noise", format!("{:?}", opts.writeback_noise));
    m.add("partial masks", format!("{:?}", opts.partial));
    m.add("posterior", format!("{recon:?}"));
    m.add("prewhiten", !a.raw.no_prewhiten);
    m.add(
        "noise scan",
        match &a.raw.noise {
            Some(p) => format!("file {}", identity(p, true)?),
            None => "the input's own".to_string(),
        },
    );
    // Another image of a raw file (contrast, phase, repetition, set) is other data.
    m.add("raw selection", a.raw.choice().describe());
    m.add(
        "virtual coils",
        a.virtual_coils
            .map_or("none (the file's coils)".to_string(), |n| n.to_string()),
    );
    m.add(
        "mask",
        match (&a.mask, file.mask()) {
            (Some(p), _) => format!("file {}", identity(p, true)?),
            (None, Some(_)) => "the file's mask dataset".to_string(),
            (None, None) => "detected per slice".to_string(),
        },
    );
    m.add(
        "maps",
        match maps {
            MapsChoice::File(p) => format!("file {}", identity(p, true)?),
            MapsChoice::Estimate(method, opts) => {
                format!("estimated per slice: {}", opts.describe(*method))
            }
        },
    );
    Ok(m)
}

/// A file's identity for the manifest: its absolute path and size, and with `checksum` an
/// FNV-1a 64-bit hash of its bytes (a `.cfl` base name: of its `.cfl`).
fn identity(path: &Path, checksum: bool) -> Result<String> {
    let path: PathBuf = if data::kind(path) == data::Kind::Cfl && !path.exists() {
        cfl::pair_paths(path).0
    } else {
        path.to_path_buf()
    };
    let abs = std::fs::canonicalize(&path).map_err(|e| Error::io(&path, e))?;
    let size = std::fs::metadata(&abs)
        .map_err(|e| Error::io(&path, e))?
        .len();
    if !checksum {
        return Ok(format!("{} ({size} bytes)", abs.display()));
    }
    let mut f = std::fs::File::open(&abs).map_err(|e| Error::io(&path, e))?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(&path, e))?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!(
        "{} ({size} bytes, fnv1a64 {hash:016x})",
        abs.display()
    ))
}
