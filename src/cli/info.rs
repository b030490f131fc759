//! `msm info`: what a file holds, before anything runs on it. For a model: its metadata, the
//! executor it runs on, and its card. For multi-coil k-space (a fastMRI HDF5 file, ISMRMRD raw
//! data, a NumPy or BART slice or stack): slices, coils, grid, recon size, and for every slice
//! its mask (kept columns, acceleration, ACS block) and noise level, the figures a training
//! config (`acceleration`, `acs_lines`, `noise_eta`) and a reconstruction need.

use super::scan::{Placed, Scan};
use msm::coils::calib::calibration_region;
use msm::denoiser::{Backend, OnnxDenoiser};
use msm::io::fastmri::{detect_mask, FastMriFile, HdfScan, RawOptions, RawScan, Slicing};
use msm::io::nifti::{read_nifti_placed, Form, Plane};
use msm::mask::{acs_lines, Mask};
use msm::noise::row_noise;
use msm::volume::grid::GridPlan;
use msm::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Options of `msm info`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model (.onnx), or multi-coil k-space: a fastMRI or ISMRMRD raw .h5 file, a .npy (coils, H,
    /// W) or (slices, coils, H, W), a .cfl [H, W, 1, coils] (slices along BART dimension 13).
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// How ISMRMRD raw data is read.
    #[command(flatten)]
    pub raw: super::scan::RawArgs,
}

/// Runs `msm info`.
pub fn run(a: Args) -> Result<()> {
    let is_model = a
        .file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    let (text, value) = if is_model {
        model(&a.file)?
    } else if super::data::kind(&a.file) == super::data::Kind::Nifti {
        volume(&a.file)?
    } else {
        scan(&a.file, &a.raw.options()?)?
    };
    if a.json {
        println!("{value}");
    } else {
        print!("{text}");
    }
    Ok(())
}

/// A NIfTI volume: its size, voxel sizes, placement (which form, the axes, the origin) and the
/// planes `msm simulate` cuts from it (in the voxel order closest to RAS).
fn volume(path: &Path) -> Result<(String, Value)> {
    let (vol, placed) = read_nifti_placed(path)?;
    let (nx, ny, nz) = vol.data.dim();
    let [vx, vy, vz] = vol.voxel_size;
    let space = placed.space;
    let form = match placed.form {
        Form::Sform(code) => format!("sform (code {code})"),
        Form::Qform(code) => format!("qform (code {code})"),
        Form::Pixdim => "neither sform nor qform: pixdim along the world axes".to_string(),
    };
    let [x, y, z] = space.world([0.0; 3]);
    let (canonical, _) = vol.reoriented(&space);
    let counts = [Plane::Axial, Plane::Coronal, Plane::Sagittal].map(|p| canonical.slice_count(p));
    let text = format!(
        "{}: NIfTI-1 volume, {nx} x {ny} x {nz} voxels of {vx:.4} x {vy:.4} x {vz:.4} mm\n  \
         placement: \
         {form}: voxel axes i, j, k point to {} (RAS+), voxel (0, 0, 0) at ({x:.2}, {y:.2}, \
         {z:.2}) mm\n  msm simulate reads it in RAS order: {} axial, {} coronal and {} sagittal \
         slices\n",
        path.display(),
        space.axis_codes(),
        counts[0],
        counts[1],
        counts[2]
    );
    let value = json!({
        "file": path.display().to_string(),
        "kind": "volume",
        "format": "NIfTI-1",
        "shape": [nx, ny, nz],
        "voxel_size_mm": vol.voxel_size,
        "placement": {
            "form": match placed.form {
                Form::Sform(_) => "sform",
                Form::Qform(_) => "qform",
                Form::Pixdim => "pixdim",
            },
            "code": match placed.form {
                Form::Sform(c) | Form::Qform(c) => Some(c),
                Form::Pixdim => None,
            },
            "axes": space.axis_codes(),
            "affine_ras_mm": space.affine(),
        },
        "slices": { "axial": counts[0], "coronal": counts[1], "sagittal": counts[2] },
    });
    Ok((text, value))
}

/// A model's metadata, executor and card.
fn model(path: &Path) -> Result<(String, Value)> {
    let model = OnnxDenoiser::load(path)?;
    let meta = model.meta();
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let backend = model.backend();
    // Why the native executor declined the file, when it did.
    let native_refusal = match backend {
        Backend::Tract => OnnxDenoiser::load_with(path, Backend::Native)
            .err()
            .map(|e| e.to_string()),
        _ => None,
    };
    let card = path.with_extension("md");
    let card = card.exists().then_some(card);
    let props = meta.to_props();
    let mut text = format!(
        "{}: MSM model (ONNX), {:.1} MiB\n  {meta}\n  executor: {backend}{}\n",
        path.display(),
        bytes as f64 / (1024.0 * 1024.0),
        native_refusal.as_ref().map_or(String::new(), |e| format!(
            " (the native executor declined: {e})"
        ))
    );
    let width = props.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &props {
        text.push_str(&format!("  {k:width$}  {v}\n"));
    }
    if let Some(c) = &card {
        text.push_str(&format!("  card: {}\n", c.display()));
    }
    let value = json!({
        "file": path.display().to_string(),
        "kind": "model",
        "bytes": bytes,
        "executor": backend.to_string(),
        "native_declined": native_refusal,
        "metadata": props
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<serde_json::Map<String, Value>>(),
        "card": card.map(|c| c.display().to_string()),
    });
    Ok((text, value))
}

/// One slice's mask and noise.
struct SliceInfo {
    /// Columns kept, or entries for slices along the readout.
    kept: usize,
    /// ACS columns, or for slices along the readout the rows and columns of the fully
    /// sampled centre block.
    acs: (usize, usize),
    /// The noise estimate of the signal-free rows (`None` for slices along the readout,
    /// whose rows are a phase encode).
    noise: Option<f64>,
    /// Whether the mask is a 2-D pattern (not whole columns).
    pattern: bool,
}

/// A k-space file's layout, and every slice's mask and noise level.
fn scan(path: &Path, raw_options: &RawOptions) -> Result<(String, Value)> {
    let scan = Scan::open(path, raw_options).map_err(|e| {
        Error::invalid(format!(
            "{e}. msm info reads a model (.onnx), a NIfTI volume (.nii, .nii.gz) or multi-coil \
             k-space (.h5, .npy (coils, H, W) or (slices, coils, H, W), .cfl [H, W, 1, coils])"
        ))
    })?;
    let (h, w) = scan.kspace_size();
    let stored_mask = scan.mask().map(<[bool]>::to_vec);
    // Slices along the readout of a 3-D scan have 2-D masks: counted by entry.
    let entries = scan.along_readout();
    let units = if entries { h * w } else { w };
    let mut slices = Vec::with_capacity(scan.num_slices());
    for index in 0..scan.num_slices() {
        let k = scan.slice_kspace(index)?;
        slices.push(if entries {
            let mask = msm::io::fastmri::detect_entries(k.view());
            let kept = mask.count(h);
            let acs = calibration_region(k.view(), Some(&mask), h.max(w))
                .map_or((0, 0), |r| (r.height(), r.width()));
            SliceInfo {
                kept,
                acs,
                noise: None,
                pattern: matches!(mask, Mask::Pattern(_)),
            }
        } else {
            let columns = stored_mask.clone().unwrap_or_else(|| detect_mask(k.view()));
            SliceInfo {
                kept: columns.iter().filter(|&&c| c).count(),
                acs: (h, acs_lines(&columns)),
                noise: Some(row_noise(k.view(), &columns)),
                pattern: false,
            }
        });
    }
    let (format, reference, raw) = match &scan {
        Scan::H5(f) => match f.as_ref() {
            HdfScan::FastMri(f) => ("fastMRI HDF5", rss_shape(f)?, None),
            HdfScan::Raw(r) => ("ISMRMRD raw data", None, Some(r.as_ref())),
        },
        Scan::Stack { .. } if super::data::kind(path) == super::data::Kind::Npy => {
            ("NumPy", None, None)
        }
        Scan::Stack { .. } => ("BART", None, None),
    };
    let noise_scan = raw.and_then(|r| {
        r.noise_std()
            .zip(r.whitening().map(|w| (w.condition(), r.prewhitened())))
    });
    let skipped = raw.map(RawScan::skipped);
    let accel = |s: &SliceInfo| (s.kept > 0).then(|| units as f64 / s.kept as f64);
    let mut text = format!(
        "{}: {format} k-space, {} slice(s), {} coils, {h} x {w} ({})\n",
        path.display(),
        slices.len(),
        scan.coils(),
        if entries {
            "rows: first phase encode; columns: second phase encode; slices: readout positions"
        } else {
            "rows: readout; columns: phase encode"
        }
    );
    text.push_str(&match scan.recon_size() {
        Some((rh, rw)) => format!("  recon size {rh} x {rw} (the ISMRMRD header)\n"),
        None => "  recon size: none stated (the output is the k-space grid unless --recon-size)\n"
            .into(),
    });
    text.push_str(&match scan.voxel_size_mm() {
        Some([a, b, c]) => format!(
            "  voxel size {a:.4} x {b:.4} x {c:.4} mm (the header's recon field of view over its \
             matrix; a 2-D scan's slice entry is its thickness)\n"
        ),
        None => "  voxel size: none stated (NIfTI outputs get 1 mm)\n".into(),
    });
    // Where a NIfTI output of every slice lies (the output grid of `msm recon`).
    let plan = GridPlan::new((h, w), scan.recon_size(), (h, w))
        .map_err(|e| Error::format(path, e.to_string()))?;
    let (space, placed) = scan.voxel_space(&(0..slices.len()), &plan)?;
    text.push_str(&match &placed {
        Placed::Scanner => {
            let [x, y, z] = space.world([0.0; 3]);
            let [sx, sy, sz] = space.voxel_size();
            let codes = space.axis_codes();
            format!(
                "  placement: scanner coordinates from the acquisitions' position and \
                 directions: NIfTI voxel axes i, j, k point to {} (RAS+), {:.4} x {:.4} x {:.4} \
                 mm apart, voxel (0, 0, 0) at ({x:.2}, {y:.2}, {z:.2}) mm\n",
                codes, sx, sy, sz
            )
        }
        Placed::NotStated => {
            "  placement: none stated (NIfTI outputs are not placed in scanner coordinates)\n"
                .into()
        }
        Placed::Unusable(why) => format!(
            "  placement: not usable ({why}); NIfTI outputs are not placed in scanner \
             coordinates\n"
        ),
    });
    text.push_str(if stored_mask.is_some() {
        "  mask: the file's `mask` dataset\n"
    } else if entries {
        "  mask: none stored; the entries that hold data, slice by slice (a 2-D pattern, or \
         whole columns)\n"
    } else {
        "  mask: none stored; the columns that hold data, slice by slice\n"
    });
    if let Some((n, rh, rw)) = reference {
        text.push_str(&format!("  reconstruction_rss: {n} x {rh} x {rw}\n"));
    }
    if let Some(n) = skipped.filter(|&n| n > 0) {
        text.push_str(&format!(
            "  skipped: {n} non-imaging acquisition(s) (navigators, phase correction, ...)\n"
        ));
    }
    if let Some(p) = raw.and_then(RawScan::encoding_3d) {
        let how = match p.slicing {
            Slicing::Partitions => format!(
                "read as 2-D slices by an inverse FFT along them; the central {} of each slab \
                 kept (the recon matrix)",
                p.kept
            ),
            Slicing::Readout => format!(
                "undersampled along the partitions (other lines in some, or some missing \
                 between acquired ones), so read as 2-D (phase encode x partition) slices by an \
                 inverse FFT along the readout; the central {} readout positions of each slab \
                 kept (the recon matrix)",
                p.kept
            ),
        };
        text.push_str(&format!(
            "  3-D encoding: {} partitions ({} acquired per slab{}), {how}\n",
            p.encoded,
            p.filled,
            if p.filled < p.encoded as f64 {
                ", the others zero-filled"
            } else {
                ""
            },
        ));
    }
    // A separate reference scan: the slices it covers, and its columns in the first.
    let reference_scan = raw.and_then(|r| {
        let held: Vec<usize> = (0..r.num_slices())
            .filter(|&i| r.slice_reference(i).is_some())
            .collect();
        let first = r.slice_reference(*held.first()?)?;
        let columns = detect_mask(first.view()).iter().filter(|&&c| c).count();
        Some((held.len(), columns))
    });
    if let (Some((n, columns)), Some(r)) = (reference_scan, raw) {
        let mode = r.header().calibration_mode.is_some_and(|m| m.is_separate());
        let source = match (mode, r.header().second_encoding.is_some()) {
            (true, true) => "the header's calibrationMode, or its second encoding",
            (true, false) => "the header's calibrationMode",
            (false, _) => "the header's second encoding",
        };
        text.push_str(&format!(
            "  reference scan: separate ({source}), {columns} columns, in {n} of {} slices; it \
             calibrates the coil maps and is not image data\n",
            slices.len()
        ));
    }
    if let Some(r) = raw {
        for c in r.counters().iter().filter(|c| c.values.len() > 1) {
            text.push_str(&format!(
                "  {name}: reading {} of {} (--{name} N chooses)\n",
                c.selected,
                c.listed(),
                name = c.name,
            ));
        }
        if r.unselected() > 0 {
            text.push_str(&format!(
                "  not read: {} imaging line(s) of other images or encodings\n",
                r.unselected()
            ));
        }
    }
    if let Some((sigma, (condition, whitened))) = noise_scan {
        let source = match &raw_options.noise_file {
            Some(p) => format!("the noise scan in {}", p.display()),
            None => "the scanner's noise scan in this file".to_string(),
        };
        text.push_str(&format!(
            "  noise measurement: std {sigma:.3e} per real component ({source}); channel \
             covariance condition number {condition:.2}; the k-space is {}\n",
            if whitened {
                "prewhitened with it (--no-prewhiten keeps it as recorded)"
            } else {
                "as recorded (--no-prewhiten)"
            }
        ));
    }
    text.push_str(if entries {
        "  slice  kept entries  R      ACS block\n"
    } else {
        "  slice  kept columns  R      ACS  noise std*\n"
    });
    for (i, s) in slices.iter().enumerate() {
        let kept = format!("{} of {units}", s.kept);
        let r = accel(s).map_or("-".into(), |r| format!("{r:.2}"));
        text.push_str(&match s.noise {
            // Slices along the readout: no noise column (their rows are a phase encode).
            None => format!("  {i:<5}  {kept:<12}  {r:<5}  {}x{}\n", s.acs.0, s.acs.1),
            Some(n) => format!(
                "  {i:<5}  {kept:<12}  {r:<5}  {:<3}  {}\n",
                s.acs.1,
                if s.kept > 0 {
                    format!("{n:.3e}")
                } else {
                    "- (nothing measured)".into()
                }
            ),
        });
    }
    if !entries {
        text.push_str(
            "  * per real component, on the file's scale, from the eighth of image rows with the \
             least signal: the noise there when the readout is oversampled (fastMRI's 2x), an \
             upper bound where the object fills every row\n",
        );
    }
    let measured: Vec<&SliceInfo> = slices.iter().filter(|s| s.kept > 0).collect();
    if !measured.is_empty() && entries {
        let kept: usize = measured.iter().map(|s| s.kept).sum();
        text.push_str(&format!(
            "  all measured slices: R = {:.2} (mean kept fraction of the {h} x {w} entries); {}\n",
            (measured.len() * units) as f64 / kept as f64,
            if measured.iter().any(|s| s.pattern) {
                format!(
                    "no axis is fully sampled, so msm reconstruct needs a model of exactly \
                     {h} x {w}"
                )
            } else {
                format!("whole columns (the second phase encode undersampled), so a model {w} wide")
            }
        ));
    } else if !measured.is_empty() {
        let kept: usize = measured.iter().map(|s| s.kept).sum();
        let fewest_acs = measured.iter().map(|s| s.acs.1).min().unwrap_or(0);
        text.push_str(&format!(
            "  all measured slices: R = {:.2} (mean kept fraction), ACS at least {fewest_acs} \
             columns: a training config's `acceleration` and `acs_lines`\n",
            (measured.len() * units) as f64 / kept as f64,
        ));
    }
    let value = json!({
        "file": path.display().to_string(),
        "kind": "kspace",
        "format": format,
        "slices": slices.len(),
        "coils": scan.coils(),
        "kspace_size": [h, w],
        "recon_size": scan.recon_size().map(|(a, b)| [a, b]),
        "voxel_size_mm": scan.voxel_size_mm(),
        "placement": match &placed {
            Placed::Scanner => json!({
                "axes": space.axis_codes(),
                "affine_ras_mm": space.affine(),
            }),
            Placed::NotStated => Value::Null,
            Placed::Unusable(why) => json!({ "unusable": why }),
        },
        "mask": if stored_mask.is_some() { "stored" } else { "detected" },
        "reconstruction_rss": reference.map(|(n, a, b)| [n, a, b]),
        "noise_measurement_std": noise_scan.map(|n| n.0),
        "noise_file": raw_options.noise_file.as_ref().map(|p| p.display().to_string()),
        "prewhitened": noise_scan.is_some_and(|n| n.1 .1),
        "noise_condition": noise_scan.map(|n| n.1 .0),
        "skipped_acquisitions": skipped,
        "images": raw.map(|r| r.counters().iter().map(|c| (
            c.name.to_string(),
            json!({ "values": c.values, "selected": c.selected }),
        )).collect::<serde_json::Map<String, Value>>()),
        "unselected_acquisitions": raw.map(RawScan::unselected),
        "encoding_3d": raw.and_then(RawScan::encoding_3d).map(|p| json!({
            "partitions": p.encoded,
            "acquired_per_slab": p.filled,
            "slices_per_slab": p.kept,
            "slices_along": match p.slicing {
                Slicing::Partitions => "partitions",
                Slicing::Readout => "readout",
            },
        })),
        "reference_scan": reference_scan.map(|(n, columns)| json!({
            "slices": n,
            "columns": columns,
        })),
        "per_slice": slices.iter().enumerate().map(|(i, s)| if entries {
            json!({
                "slice": i,
                "kept_entries": s.kept,
                "acceleration": accel(s),
                "acs_block": [s.acs.0, s.acs.1],
            })
        } else {
            json!({
                "slice": i,
                "kept_columns": s.kept,
                "acceleration": accel(s),
                "acs_lines": s.acs.1,
                "noise_std": s.noise.filter(|_| s.kept > 0),
            })
        }).collect::<Vec<_>>(),
    });
    Ok((text, value))
}

/// The shape of an HDF5 file's `reconstruction_rss`, when it has one.
fn rss_shape(file: &FastMriFile) -> Result<Option<(usize, usize, usize)>> {
    Ok(file.reconstruction_rss()?.map(|r| r.dim()))
}
