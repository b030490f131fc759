//! Training on scans: the loader reads every slice of fastMRI-layout HDF5 files (written by
//! h5py, `tests/volume/make_files.py`) as `msm reconstruct` would, a model trains on them and
//! records them, and files that do not fit give clear errors. Needs python3 with h5py and numpy
//! (CI installs them); without them each test says so and passes.

use std::path::{Path, PathBuf};

use msm::coils::espirit::{espirit, EspiritOptions};
use msm::denoiser::OnnxDenoiser;
use msm::io::fastmri::FastMriFile;
use msm::mask::{Mask, PartialKind};
use msm::onnx::meta::MaskPattern;
use msm::onnx::WeightType;
use msm::sampler::{model_partial_kind, reconstruct, NetworkPrior, ReconOptions, SamplerOptions};
use msm::sense::{Operator, Sense};
use msm::volume::GridPlan;
use msm_export::data::{CounterChoice, DataConfig, Loader, MaskKind, NoiseEta};
use msm_export::onnx::export_run;
use msm_export::train::{checkpoint_path, TrainConfig, Trainer};
use msm_export::validation::ValidationConfig;

mod common;
mod python;
use common::tiny;
#[path = "../../tests/common/h5py.rs"]
#[allow(dead_code)]
mod h5py;

/// The runtime's HDF5 test files in a temporary folder, or `None` (with a note) without h5py.
fn fixtures() -> Option<tempfile::TempDir> {
    h5py::h5py_fixtures("../tests/volume/make_files.py", "the scan tests")
}

/// `scan.h5` (6 slices, 4 coils, 40 x 32 k-space, every third column and 10 central ones,
/// which keeps 18 of 32: R = 1.78) as a data config for the tiny 32x32 network.
fn scan_config(scan: PathBuf) -> DataConfig {
    DataConfig {
        scans: vec![scan],
        acceleration: 32.0 / 18.0,
        acs_lines: 10,
        ..tiny().data
    }
}

#[test]
fn loader_reads_every_slice_as_msm_reconstruct_would() {
    let Some(dir) = fixtures() else { return };
    let scan = dir.path().join("scan.h5");
    let cfg = scan_config(scan.clone());
    let loader = Loader::open(&cfg).unwrap();
    assert_eq!(loader.scan_slices(), 6);

    let file = FastMriFile::open(&scan).unwrap();
    let columns = file.mask().unwrap().to_vec();
    let plan = GridPlan::new(file.kspace_size(), Some((32, 32)), (32, 32)).unwrap();
    let fitted: Vec<_> = (0..6)
        .map(|i| plan.kspace_to_model(file.slice_kspace(i).unwrap().view()))
        .collect();
    let mut seen = [false; 6];
    let mut gains = Vec::new();
    for step in 0..40 {
        for m in loader.batch(3, step, 2).unwrap() {
            assert_eq!(m.kspace().dim(), (4, 32, 32));
            assert_eq!(
                m.mask().columns(),
                Some(&columns[..]),
                "not the file's mask"
            );
            assert_eq!(NoiseEta::Fixed(m.eta()), cfg.noise_eta);
            // The k-space is one slice of the file on the model's grid, times one gain.
            let which = fitted
                .iter()
                .position(|k| {
                    let gain = m.kspace()[(0, 16, 16)] / k[(0, 16, 16)];
                    k.iter()
                        .zip(m.kspace().iter())
                        .all(|(a, b)| (a * gain - b).norm() <= 1e-4 * b.norm().max(1e-3))
                })
                .expect("a measurement that is no slice of the file");
            seen[which] = true;
            gains.push((m.kspace()[(0, 16, 16)] / fitted[which][(0, 16, 16)]).norm() as f64);
            // The gain makes the zero-filled image's maximum 1 with the measurement's maps,
            // which are normalised (sum over coils of |C|^2 is 1 or 0, as ESPIRiT's are).
            let op = Sense::new(m.maps().clone()).unwrap();
            let zf = op.adjoint(m.kspace().view(), Some(&Mask::Columns(columns.clone())));
            let peak = zf.iter().fold(0.0f32, |a, v| a.max(v.norm()));
            assert!((peak - 1.0).abs() < 1e-4, "zero-filled maximum {peak}");
            let power: f32 = (0..4).map(|c| m.maps()[(c, 16, 16)].norm_sqr()).sum();
            assert!((power - 1.0).abs() < 1e-3, "maps at the centre: {power}");
        }
    }
    assert!(seen.iter().all(|&s| s), "slices never drawn: {seen:?}");
    // The file's k-space holds white noise of std 1e-4 per real component: the estimate from
    // the outer rows, on the training scale, is that times the gains.
    gains.sort_by(f64::total_cmp);
    let expected = 1e-4 * gains[gains.len() / 2];
    let estimate = loader.scan_noise().unwrap().median;
    assert!(
        (estimate / expected - 1.0).abs() < 0.25,
        "noise estimate {estimate:.3e}, expected about {expected:.3e}"
    );
    // Same seed and step, same data.
    let (a, b) = (
        loader.batch(3, 0, 2).unwrap(),
        loader.batch(3, 0, 2).unwrap(),
    );
    assert_eq!(a[1].kspace(), b[1].kspace());
}

#[test]
fn a_model_trains_on_scans_and_says_so() {
    let Some(dir) = fixtures() else { return };
    tch::set_num_threads(2);
    let mut cfg = tiny();
    cfg.data = DataConfig {
        noise_eta: NoiseEta::Fixed(0.01),
        ..scan_config(dir.path().join("scan.h5"))
    };
    cfg.steps = 2;
    let mut tr = Trainer::new(&cfg).unwrap();
    let run = dir.path().join("run");
    tr.run(&run, |_| {}).unwrap();
    assert!(tr.eval_loss(1_000_000).unwrap().is_finite());
    let path = dir.path().join("scans.onnx");
    export_run(&tr, &path, WeightType::F16, "test".into(), None).unwrap();
    let meta = OnnxDenoiser::load(&path).unwrap().meta().clone();
    assert_eq!(meta.train_acs_lines, 10);
    assert!((meta.train_acceleration - 32.0 / 18.0).abs() < 1e-9);
    assert_eq!(meta.train_noise_eta, 0.01);
    let source = meta.data_source.as_deref().unwrap();
    assert!(
        source.contains("1 scan file(s): scan.h5") && source.contains("ESPIRiT"),
        "{source}"
    );
    assert!(meta.held_out_slices.as_deref().unwrap().contains("none"));
    // The run resumes from its checkpoint with the same scans.
    cfg.steps = 3;
    let mut again = Trainer::resume(&cfg, &run.join("checkpoint.safetensors")).unwrap();
    again.run(&run, |_| {}).unwrap();
}

#[test]
fn each_slice_trains_with_its_own_noise_estimate() {
    let Some(dir) = fixtures() else { return };
    let scan = dir.path().join("scan.h5");
    let cfg = DataConfig {
        noise_eta: NoiseEta::Estimate,
        ..scan_config(scan.clone())
    };
    let loader = Loader::open(&cfg).unwrap();
    let file = FastMriFile::open(&scan).unwrap();
    let plan = GridPlan::new(file.kspace_size(), Some((32, 32)), (32, 32)).unwrap();
    let centre: Vec<_> = (0..6)
        .map(|i| plan.kspace_to_model(file.slice_kspace(i).unwrap().view())[(0, 16, 16)])
        .collect();
    // The file holds noise of std 1e-4 in every slice; on the training scale that is 1e-4
    // times the slice's own gain, and each measurement carries its slice's estimate of it.
    let mut etas = std::collections::BTreeMap::new();
    for step in 0..30 {
        for m in loader.batch(4, step, 2).unwrap() {
            let gain = centre
                .iter()
                .map(|c| (m.kspace()[(0, 16, 16)] / c).norm() as f64)
                .find(|g| {
                    let expected = 1e-4 * g;
                    (m.eta() / expected - 1.0).abs() < 0.25
                });
            assert!(gain.is_some(), "eta {} fits no slice's gain", m.eta());
            etas.insert(m.eta().to_bits(), m.eta());
        }
    }
    let summary = loader.scan_noise().unwrap();
    assert!(etas.len() >= 4, "one noise level for all slices: {etas:?}");
    for eta in etas.values() {
        assert!(
            summary.min <= *eta && *eta <= summary.max,
            "{eta} outside {summary}"
        );
    }
    // A model trained so records the median and says how the levels were found.
    tch::set_num_threads(2);
    let mut tcfg = tiny();
    tcfg.data = cfg.clone();
    tcfg.steps = 2;
    let mut tr = Trainer::new(&tcfg).unwrap();
    tr.run(&dir.path().join("run_estimate"), |_| {}).unwrap();
    let path = dir.path().join("estimate.onnx");
    export_run(&tr, &path, WeightType::F16, "test".into(), None).unwrap();
    let meta = OnnxDenoiser::load(&path).unwrap().meta().clone();
    assert_eq!(meta.train_noise_eta, summary.median);
    let source = meta.data_source.as_deref().unwrap();
    assert!(source.contains("each slice's noise std"), "{source}");
    // Simulated measurements are given their noise: "estimate" is refused for them.
    let e = Loader::open(&DataConfig {
        noise_eta: NoiseEta::Estimate,
        ..tiny().data
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("no scans are listed"), "{e}");
}

#[test]
fn prepared_scans_give_the_same_measurements_without_preparing_again() {
    let Some(dir) = fixtures() else { return };
    let d = dir.path();
    let cfg = DataConfig {
        noise_eta: NoiseEta::Estimate,
        ..scan_config(d.join("scan.h5"))
    };
    let loader = Loader::open(&cfg).unwrap();
    let file = d.join("scan.safetensors");
    loader.write_prepared(&file).unwrap();
    let prepared_cfg = DataConfig {
        scans: vec![file.clone()],
        ..cfg.clone()
    };
    let prepared = Loader::open(&prepared_cfg).unwrap();
    assert_eq!(prepared.scan_slices(), 6);
    assert_eq!(prepared.scan_noise(), loader.scan_noise());
    assert_eq!(prepared.scan_sources().unwrap(), "1 scan file(s): scan.h5");
    for step in 0..5 {
        let (a, b) = (
            loader.batch(7, step, 3).unwrap(),
            prepared.batch(7, step, 3).unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.kspace(), y.kspace());
            assert_eq!(x.maps(), y.maps());
            assert_eq!(x.mask(), y.mask());
            assert_eq!(x.eta(), y.eta());
        }
    }
    // A config the file was not prepared for, and files that are not prepared scans.
    let open = |cfg: DataConfig| Loader::open(&cfg).unwrap_err().to_string();
    let e = open(DataConfig {
        coils: 3,
        ..prepared_cfg.clone()
    });
    assert!(
        e.contains("scan.safetensors") && e.contains("with 4 coils") && e.contains("prepare"),
        "{e}"
    );
    // A prepared file cut short (its header promises more data than the file holds).
    let bytes = std::fs::read(&file).unwrap();
    let cut = d.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = open(DataConfig {
        scans: vec![cut],
        ..prepared_cfg.clone()
    });
    assert!(
        e.contains("cut.safetensors") && e.contains("within the file"),
        "{e}"
    );
    let junk = d.join("junk.safetensors");
    std::fs::write(&junk, b"not a tensor file").unwrap();
    let e = open(DataConfig {
        scans: vec![junk],
        ..prepared_cfg.clone()
    });
    assert!(e.contains("junk.safetensors") && e.contains("not a readable prepared scans"));
    let run = d.join("run_prepared");
    let mut tcfg = tiny();
    tcfg.data = prepared_cfg;
    tcfg.steps = 1;
    let ckpt = d.join("ckpt.safetensors");
    let mut tr = Trainer::new(&tcfg).unwrap();
    tr.run(&run, |_| {}).unwrap();
    tr.save_checkpoint(&ckpt).unwrap();
    let e = open(DataConfig {
        scans: vec![ckpt],
        ..tcfg.data.clone()
    });
    assert!(
        e.contains("format `msm-export checkpoint 1`, expected `msm-train prepared scans 1`"),
        "{e}"
    );
    // Simulated measurements have nothing to prepare.
    let e = Loader::open(&tiny().data)
        .unwrap()
        .write_prepared(&d.join("sim.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no scans"), "{e}");
}

#[test]
fn scans_with_more_coils_are_compressed_to_the_configured_count() {
    let Some(dir) = fixtures() else { return };
    // scan.h5 (4 coils) and plain.h5's 3 coils would not batch together; at coils = 3 the
    // first is compressed to 3 virtual coils. (plain.h5's two masks keep 21 and 15 of 32
    // columns, so the mix still keeps 18 of 32 on average, with at least 10 central ones.)
    let cfg = DataConfig {
        scans: vec![dir.path().join("scan.h5"), dir.path().join("plain.h5")],
        coils: 3,
        ..scan_config(PathBuf::new())
    };
    let loader = Loader::open(&cfg).unwrap();
    assert_eq!(loader.scan_slices(), 8);
    for m in loader.batch(5, 0, 8).unwrap() {
        assert_eq!(m.kspace().dim(), (3, 32, 32));
        assert_eq!(m.maps().dim(), (3, 32, 32));
    }
}

#[test]
fn scans_that_do_not_fit_give_clear_errors() {
    let Some(dir) = fixtures() else { return };
    let d = dir.path();
    let open = |cfg: DataConfig| Loader::open(&cfg).unwrap_err().to_string();
    let e = open(DataConfig {
        coils: 5,
        ..scan_config(d.join("scan.h5"))
    });
    assert!(e.contains("scan.h5") && e.contains("has 4 coils"), "{e}");
    let e = open(DataConfig {
        acceleration: 4.0,
        acs_lines: 4,
        ..scan_config(d.join("scan.h5"))
    });
    assert!(
        e.contains("R = 1.78") && e.contains("fewest central columns kept are 11"),
        "{e}"
    );
    let e = open(DataConfig {
        coils: 3,
        ..scan_config(d.join("wide.h5"))
    });
    assert!(
        e.contains("wide.h5") && e.contains("grid 32x32") && e.contains("a model 30 wide"),
        "{e}"
    );
    let e = open(DataConfig {
        coils: 3,
        ..scan_config(d.join("small_acs.h5"))
    });
    assert!(e.contains("small_acs.h5") && e.contains("slice 0"), "{e}");
    let e = open(scan_config(d.join("missing.h5")));
    assert!(e.contains("missing.h5"), "{e}");
}

#[test]
fn msm_train_trains_on_scans_and_leaves_nothing_on_a_bad_one() {
    let Some(dir) = fixtures() else { return };
    let d = dir.path();
    let train = |cfg: &msm_export::train::TrainConfig, out: &Path| {
        let path = d.join("run.json");
        std::fs::write(&path, serde_json::to_string(cfg).unwrap()).unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_msm-train"))
            .args(["train", "--threads", "2", "--config"])
            .arg(&path)
            .arg("--out")
            .arg(out)
            .output()
            .expect("msm-train runs");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let mut cfg = tiny();
    cfg.data = scan_config(d.join("scan.h5"));
    cfg.steps = 1;
    let run = d.join("run");
    let (ok, err) = train(&cfg, &run);
    assert!(ok, "{err}");
    assert!(
        err.contains("6 scan slices; their noise std")
            && err.contains("data.noise_eta is 0")
            && err.contains("warning: data.noise_eta is 0"),
        "{err}"
    );
    assert!(run.join("checkpoint.safetensors").exists());
    // `prepare` writes the slices once; a run lists the file in their place.
    let prepare = |out: &Path| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_msm-train"))
            .args(["prepare", "--config"])
            .arg(d.join("run.json"))
            .arg("--out")
            .arg(out)
            .output()
            .expect("msm-train runs");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, err) = prepare(&d.join("slices.npy"));
    assert!(
        !ok && err.contains("expected a .safetensors file name"),
        "{err}"
    );
    assert!(!d.join("slices.npy").exists());
    let prepared = d.join("slices.safetensors");
    let (ok, err) = prepare(&prepared);
    assert!(
        ok && err.contains("wrote 6 slices of 1 scan file(s): scan.h5"),
        "{err}"
    );
    cfg.data.scans = vec![prepared];
    cfg.data.noise_eta = NoiseEta::Estimate;
    let (ok, err) = train(&cfg, &d.join("run_from_prepared"));
    assert!(
        ok && err.contains("6 scan slices") && err.contains("its own estimate"),
        "{err}"
    );
    assert!(!err.contains("warning: data.noise_eta"), "{err}");
    // The file's one mask keeps 18 of 32 columns in every slice: the other 14 columns (448 of
    // the 32 x 32 grid's 1024 entries) are never measured, and the run says so.
    assert!(
        err.contains("scan masks: 6 slice(s), 1 distinct mask(s); together they measure 56.2%")
            && err.contains("warning: 448 of the grid's 1024 k-space entries (43.8%)"),
        "{err}"
    );
    // A missing scan: an error naming it, and no run folder.
    cfg.data.scans = vec![d.join("missing.h5")];
    let bad = d.join("bad_run");
    let (ok, err) = train(&cfg, &bad);
    assert!(!ok && err.contains("missing.h5"), "{err}");
    assert!(
        !bad.exists(),
        "a run folder was left for a run that never started"
    );
}

#[test]
fn the_gpu_trainer_trains_on_prepared_scans_with_their_own_noise_levels() {
    let Some(dir) = fixtures() else { return };
    let d = dir.path();
    let mut cfg = tiny();
    cfg.data = DataConfig {
        noise_eta: NoiseEta::Estimate,
        ..scan_config(d.join("scan.h5"))
    };
    let loader = Loader::open(&cfg.data).unwrap();
    let prepared = d.join("scan.safetensors");
    loader.write_prepared(&prepared).unwrap();
    cfg.data.scans = vec![prepared];
    cfg.steps = 2;
    cfg.batch_size = 2;
    let config = d.join("gpu.json");
    std::fs::write(&config, serde_json::to_string(&cfg).unwrap()).unwrap();
    let run = d.join("gpu_run");
    let trainer = concat!(env!("CARGO_MANIFEST_DIR"), "/gpu/train.py");
    let args = |config: &Path, run: &Path| {
        let mut a: Vec<std::ffi::OsString> = vec![trainer.into(), "--config".into()];
        a.extend([config.into(), "--out".into(), run.into()]);
        a.extend(["--device".into(), "cpu".into()]);
        a
    };
    let (ok, log) = python::run(&args(&config, &run));
    assert!(ok, "{log}");
    assert!(
        log.contains("6 prepared scan slices of 1 file(s)") && log.contains("step 2/2"),
        "{log}"
    );
    // msm-train resumes and exports the run, recording the scans it came from.
    let saved = TrainConfig::from_json_file(&run.join("config.json")).unwrap();
    let tr = Trainer::resume(&saved, &checkpoint_path(&run)).unwrap();
    assert_eq!(tr.step_count(), 2);
    let onnx = d.join("gpu.onnx");
    export_run(&tr, &onnx, WeightType::F16, "test".into(), None).unwrap();
    let meta = OnnxDenoiser::load(&onnx).unwrap().meta().clone();
    assert_eq!(meta.train_noise_eta, loader.scan_noise().unwrap().median);
    assert!(meta.data_source.unwrap().contains("scan.h5"));
    // It reads prepared scans only, and checks them against the config as msm-train does.
    for (scans, acs, expected) in [
        (d.join("scan.h5"), 10, "msm-train prepare"),
        (d.join("scan.safetensors"), 16, "acs_lines at most 11"),
    ] {
        let mut bad = cfg.clone();
        bad.data.scans = vec![scans];
        bad.data.acs_lines = acs;
        std::fs::write(&config, serde_json::to_string(&bad).unwrap()).unwrap();
        let bad_run = d.join("bad_gpu_run");
        let (ok, log) = python::run(&args(&config, &bad_run));
        assert!(!ok && log.contains(expected), "{log}");
        assert!(
            !bad_run.exists(),
            "a run folder was left for a refused config"
        );
    }
}

#[test]
fn validation_tracks_held_out_scans_with_the_ema_weights() {
    let Some(dir) = fixtures() else { return };
    let d = dir.path();
    let mut cfg = tiny();
    // Train on scan.h5 (compressed to 3 coils), validate on plain.h5 (3 coils), noisy loss.
    cfg.data = DataConfig {
        coils: 3,
        noise_eta: NoiseEta::Fixed(1e-3),
        ..scan_config(d.join("scan.h5"))
    };
    cfg.validation = Some(ValidationConfig {
        scans: vec![d.join("plain.h5")],
        every: 1,
        batches: 2,
    });
    cfg.steps = 3;
    let mut tr = Trainer::new(&cfg).unwrap();
    let before = tr.weights();
    let v0 = tr.validation_loss().unwrap().unwrap();
    assert!(v0.is_finite());
    // The same measurements, timesteps and noise every time; the current weights restored.
    assert_eq!(tr.validation_loss().unwrap().unwrap(), v0);
    for ((_, a), (_, b)) in before.iter().zip(tr.weights()) {
        assert!(a.equal(&b), "validation changed the current weights");
    }
    let run = d.join("run_validated");
    let mut lines = Vec::new();
    tr.run(&run, |l| lines.push(l.to_string())).unwrap();
    assert!(
        lines[0]
            .contains("validation every 1 steps on 8 measurements from 1 scan file(s): plain.h5"),
        "{lines:?}"
    );
    let losses: Vec<String> = lines
        .iter()
        .filter_map(|l| l.split("validation loss ").nth(1).map(str::to_string))
        .collect();
    assert_eq!(losses.len(), 3, "{lines:?}");
    assert!(
        losses.iter().any(|l| l.parse::<f64>().unwrap() != v0),
        "the EMA weights moved, the validation loss did not: {losses:?} vs {v0}"
    );
    // `msm-train validate` on the checkpoint gives the last value logged (the run folder's
    // config.json is what `msm-train train` writes there).
    std::fs::write(
        run.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_msm-train"))
        .args(["validate", "--run"])
        .arg(&run)
        .output()
        .expect("msm-train runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out.trim(), format!("step 3 validation loss {}", losses[2]));
    // Validation does not change training: a run resumes without it, or with other settings.
    let mut without = cfg.clone();
    without.validation = None;
    Trainer::resume(&without, &checkpoint_path(&run)).unwrap();
    // Settings that cannot validate are refused before any work.
    let mut empty = cfg.clone();
    empty.validation = Some(ValidationConfig::default());
    let e = Trainer::new(&empty).unwrap_err().to_string();
    assert!(e.contains("validation: needs at least one scan"), "{e}");
}

#[test]
fn raw_ismrmrd_scans_train_as_their_fastmri_twin_with_the_noise_scan_level() {
    let Some(dir) = h5py::h5py_fixtures("../tests/ismrmrd/make_raw.py", "the raw-scan test") else {
        return;
    };
    let d = dir.path();
    let cfg = |file: &str| DataConfig {
        noise_eta: NoiseEta::Estimate,
        ..scan_config(d.join(file))
    };
    let raw = Loader::open(&cfg("scan_raw.h5")).unwrap();
    let twin = Loader::open(&cfg("scan_raw_as_fastmri.h5")).unwrap();
    assert_eq!(raw.scan_slices(), 3);
    let scan = msm::io::fastmri::RawScan::open(d.join("scan_raw.h5")).unwrap();
    let noise_scan = scan.noise_std().unwrap();
    for step in 0..4 {
        for (a, b) in raw
            .batch(9, step, 2)
            .unwrap()
            .iter()
            .zip(&twin.batch(9, step, 2).unwrap())
        {
            // The same measurement, maps and mask from either layout.
            let diff = a
                .kspace()
                .iter()
                .zip(b.kspace().iter())
                .map(|(x, y)| (x - y).norm())
                .fold(0.0f32, f32::max);
            assert!(diff < 1e-5, "k-space differs by {diff}");
            assert_eq!(a.mask(), b.mask());
            // The raw file's level is its noise scan's times the slice's gain, the fastMRI
            // twin's the rows' estimate times the same gain: their ratio is the two raw-scale
            // figures' (the rows' within 25% of the scan's, as for the runtime's scan.h5; to
            // 1e-3, as the twin was whitened by NumPy and stored in float32).
            let rows: Vec<f64> = (0..3)
                .map(|k| {
                    let ks = scan.slice_kspace(k).unwrap();
                    msm::noise::row_noise(ks.view(), a.mask().columns().unwrap())
                })
                .collect();
            let ratio = b.eta() / a.eta();
            assert!(
                rows.iter()
                    .any(|r| (r / noise_scan - ratio).abs() < 1e-3 * ratio),
                "ratio {ratio} is no slice's rows-to-scan ratio ({rows:?} / {noise_scan})"
            );
            assert!((ratio - 1.0).abs() < 0.25, "{} vs {}", b.eta(), a.eta());
        }
    }
    // `data.select`, as a config file writes it, reaches the reader: the file's only
    // repetition reads, another is refused with the file and the values named.
    let pick = |repetition: u64| {
        let mut c = cfg("scan_raw.h5");
        c.select = serde_json::from_str(&format!("{{\"repetition\": {repetition}}}")).unwrap();
        c
    };
    assert_eq!(Loader::open(&pick(0)).unwrap().scan_slices(), 3);
    let Err(e) = Loader::open(&pick(1)) else {
        panic!("repetition 1 of a file with one repetition was read")
    };
    let e = e.to_string();
    assert!(
        e.contains("scan_raw.h5")
            && e.contains("no imaging line of repetition 1; its lines have repetition 0"),
        "{e}"
    );
    // The config's forms: a number or "all" per counter; other words and names are errors.
    let parse = |json: &str| serde_json::from_str::<msm_export::data::ImageChoice>(json);
    let all = parse(r#"{"repetition": "all", "contrast": 2}"#).unwrap();
    assert_eq!(all.repetition, Some(CounterChoice::All));
    assert_eq!(all.contrast, Some(CounterChoice::Value(2)));
    assert_eq!(parse(&serde_json::to_string(&all).unwrap()).unwrap(), all);
    assert!(parse(r#"{"echo": 1}"#).is_err());
    for bad in [
        r#"{"repetition": "every"}"#,
        r#"{"set": -1}"#,
        r#"{"set": 1.5}"#,
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains(r#"a number >= 0) or "all""#), "{bad}: {e}");
    }

    // "all": every repetition of a file, each its own training slices, in order.
    let reps = |select: &str| {
        let mut c = cfg("scan_raw_reps.h5");
        c.select = serde_json::from_str(select).unwrap();
        Loader::open(&c)
    };
    let Err(e) = reps("{}") else {
        panic!("a file of two repetitions was read with none chosen")
    };
    assert!(e.to_string().contains("repetition 0, 1"), "{e}");
    assert_eq!(reps(r#"{"repetition": "all"}"#).unwrap().scan_slices(), 6);
    let prepared = |select: &str, name: &str| {
        let file = d.join(name);
        reps(select).unwrap().write_prepared(&file).unwrap();
        tch::Tensor::read_safetensors(&file).unwrap()
    };
    let entry = |entries: &[(String, tch::Tensor)], name: &str| {
        entries
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .shallow_clone()
    };
    let all = prepared(r#"{"repetition": "all"}"#, "all.safetensors");
    let first = prepared(r#"{"repetition": 0}"#, "first.safetensors");
    let second = prepared(r#"{"repetition": 1}"#, "second.safetensors");
    for name in ["kspace", "maps", "mask", "noise"] {
        let joined = tch::Tensor::cat(&[entry(&first, name), entry(&second, name)], 0);
        assert!(
            entry(&all, name).equal(&joined),
            "`{name}` of \"all\" is not the repetitions' in order"
        );
    }
    // The repetitions hold other noise, so the comparison above can tell them apart.
    assert!(!entry(&first, "kspace").equal(&entry(&second, "kspace")));

    // `data.noise_scans`: a scan whose noise scan is a file of its own prepares as the file
    // that holds both (prewhitened, at the noise scan's level); without it, it does not.
    let apart = |noise: bool, name: &str| {
        let mut c = cfg("scan_raw_nonoise.h5");
        if noise {
            let map = format!(
                "{{{:?}: {:?}}}",
                d.join("scan_raw_nonoise.h5"),
                d.join("scan_raw_noise.h5")
            );
            c.noise_scans = serde_json::from_str(&map).unwrap();
        }
        let file = d.join(name);
        Loader::open(&c).unwrap().write_prepared(&file).unwrap();
        tch::Tensor::read_safetensors(&file).unwrap()
    };
    let together = {
        let file = d.join("together.safetensors");
        Loader::open(&cfg("scan_raw.h5"))
            .unwrap()
            .write_prepared(&file)
            .unwrap();
        tch::Tensor::read_safetensors(&file).unwrap()
    };
    let with_file = apart(true, "with_file.safetensors");
    let without = apart(false, "without.safetensors");
    for name in ["kspace", "maps", "mask", "noise"] {
        assert!(
            entry(&with_file, name).equal(&entry(&together, name)),
            "`{name}` with the noise file differs from the file holding both"
        );
    }
    assert!(!entry(&without, "noise").equal(&entry(&together, "noise")));
    // A key that is not a listed scan is a config error naming it.
    let mut c = cfg("scan_raw_nonoise.h5");
    c.noise_scans = serde_json::from_str(r#"{"other.h5": "noise.h5"}"#).unwrap();
    let Err(e) = Loader::open(&c) else {
        panic!("a noise file for a scan that is not listed was accepted")
    };
    assert!(
        e.to_string()
            .contains("noise_scans names other.h5, which is not in scans"),
        "{e}"
    );
}

#[test]
fn the_gpu_trainer_draws_prepared_slices_as_they_were_written() {
    let Some(dir) = fixtures() else { return };
    let d = dir.path();
    // Two prepared files of one grid (scan.h5 compressed to 3 coils, plain.h5's 3 coils), so
    // that a slice index must be mapped to its file.
    let base = DataConfig {
        coils: 3,
        noise_eta: NoiseEta::Estimate,
        ..scan_config(PathBuf::new())
    };
    let files: Vec<PathBuf> = ["scan", "plain"]
        .iter()
        .map(|name| {
            let out = d.join(format!("{name}_prepared.safetensors"));
            Loader::open(&DataConfig {
                scans: vec![d.join(format!("{name}.h5"))],
                ..base.clone()
            })
            .unwrap()
            .write_prepared(&out)
            .unwrap();
            out
        })
        .collect();
    let mut cfg = tiny();
    cfg.data = DataConfig {
        scans: files.clone(),
        ..base
    };
    let config = d.join("prepared.json");
    std::fs::write(&config, serde_json::to_string(&cfg).unwrap()).unwrap();
    let out = d.join("drawn.safetensors");
    let check = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/torch_trainer_check.py");
    let (ok, log) = python::run(&[
        std::ffi::OsStr::new(check),
        "prepared".as_ref(),
        config.as_os_str(),
        out.as_os_str(),
    ]);
    assert!(ok, "{log}");
    let read = |p: &Path| -> std::collections::HashMap<String, tch::Tensor> {
        tch::Tensor::read_safetensors(p)
            .unwrap()
            .into_iter()
            .collect()
    };
    let drawn = read(&out);
    let written: Vec<_> = files.iter().map(|p| read(p)).collect();
    let counts: Vec<i64> = written.iter().map(|w| w["noise"].size()[0]).collect();
    assert_eq!(counts, [6, 2]);
    let index = Vec::<i64>::try_from(&drawn["index"]).unwrap();
    let eta = Vec::<f64>::try_from(&drawn["eta"]).unwrap();
    let mut from = [0usize; 2];
    for (k, &g) in index.iter().enumerate() {
        let (f, i) = if g < counts[0] {
            (0, g)
        } else {
            (1, g - counts[0])
        };
        from[f] += 1;
        for name in ["kspace", "maps", "mask"] {
            let want = written[f][name].get(i);
            let got = drawn[name].get(k as i64);
            assert!(got.equal(&want), "draw {k} (slice {g}): `{name}` differs");
        }
        let noise = written[f]["noise"].double_value(&[i]);
        assert_eq!(eta[k], noise, "draw {k}: eta is not the slice's estimate");
    }
    assert!(
        from.iter().all(|&n| n > 0),
        "draws from one file only: {from:?}"
    );
}

#[test]
fn a_separate_reference_scan_calibrates_the_training_maps() {
    let Some(dir) = h5py::h5py_fixtures("../tests/ismrmrd/make_raw.py", "the reference-scan test")
    else {
        return;
    };
    let path = dir.path().join("scan_raw_separate.h5");
    let cfg = DataConfig {
        noise_eta: NoiseEta::Estimate,
        // The image holds no central block: the reference scan is the calibration.
        acceleration: 32.0 / 11.0,
        acs_lines: 0,
        ..scan_config(path.clone())
    };
    let loader = Loader::open(&cfg).unwrap();
    // Each slice's maps: ESPIRiT on its reference scan alone, on the model's grid.
    let scan = msm::io::fastmri::RawScan::open(&path).unwrap();
    let plan = GridPlan::new(scan.kspace_size(), Some((32, 32)), (32, 32)).unwrap();
    let maps: Vec<_> = (0..scan.num_slices())
        .map(|k| {
            let r = plan.kspace_to_model(scan.slice_reference(k).unwrap().view());
            let calib = Mask::Columns(msm::io::fastmri::detect_mask(r.view()));
            espirit(r.view(), Some(&calib), &EspiritOptions::default()).unwrap()
        })
        .collect();
    for m in loader.batch(5, 0, 6).unwrap() {
        // The image is the every-third columns only: the reference is not image data.
        assert_eq!(
            m.mask().columns().unwrap().iter().filter(|&&c| c).count(),
            11
        );
        let closest = maps
            .iter()
            .map(|want| {
                want.iter()
                    .zip(m.maps().iter())
                    .map(|(a, b)| (a - b).norm())
                    .fold(0.0f32, f32::max)
            })
            .fold(f32::INFINITY, f32::min);
        assert!(
            closest < 1e-5,
            "maps differ from every slice's reference maps by {closest}"
        );
    }
    // A 3-D scan undersampled along both phase encodes has 2-D masks: refused for a model of
    // column masks, by name.
    let e = Loader::open(&scan_config(dir.path().join("raw_kykz.h5")))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("raw_kykz.h5")
            && e.contains("undersampled along both phase encodes")
            && e.contains("data.mask = \"random-2d\""),
        "{e}"
    );
}

/// A 3-D scan undersampled along both phase encodes (`raw_kykz32.h5`: a random 2-D pattern, the
/// same at every readout position) trains a model of 2-D masks: each slice along the readout is
/// a measurement with the file's pattern as its mask, noise from the file's noise scan; the
/// prepared file keeps the patterns; the exported model records `random-2d` masks, and the
/// runtime's posterior sampler reconstructs a slice with it, drawing 2-D partial masks. The
/// 24 x 20 slices of `raw_kykz.h5` train a 24 x 20 network, and a scan undersampled along
/// its partitions only (`raw_kz.h5`) trains with whole-column masks.
#[test]
fn a_model_of_2d_masks_trains_on_a_3d_scan_read_along_its_readout() {
    let Some(dir) = h5py::h5py_fixtures("../tests/ismrmrd/make_raw.py", "the 2-D mask test") else {
        return;
    };
    tch::set_num_threads(2);
    let d = dir.path();
    let pattern = msm::io::npy::read_npy_as::<f32, ndarray::Ix2>(&d.join("raw_kykz32_mask.npy"))
        .unwrap()
        .mapv(|v| v != 0.0);
    let fraction = pattern.iter().filter(|&&k| k).count() as f64 / pattern.len() as f64;
    let data = DataConfig {
        scans: vec![d.join("raw_kykz32.h5")],
        mask: MaskKind::Random2d,
        acceleration: 1.0 / fraction,
        acs_lines: 12,
        noise_eta: NoiseEta::Estimate,
        ..tiny().data
    };
    let loader = Loader::open(&data).unwrap();
    assert_eq!(loader.scan_slices(), 4);
    let noise = loader.scan_noise().unwrap();
    assert!(noise.median > 0.0 && noise.median.is_finite(), "{noise}");
    // One pattern for every slice: the entries off it are never measured.
    let coverage = loader.mask_coverage().unwrap();
    assert_eq!(
        (coverage.slices, coverage.distinct, coverage.unmeasured),
        (4, 1, pattern.iter().filter(|&&k| !k).count())
    );
    let want = Mask::Pattern(pattern.clone());
    for m in loader.batch(3, 0, 4).unwrap() {
        assert_eq!(m.mask(), &want, "not the file's pattern");
        assert!(m.eta() > 0.0 && m.eta().is_finite());
        for ((_, i, j), v) in m.kspace().indexed_iter() {
            assert!(
                pattern[(i, j)] || v.norm() == 0.0,
                "data off the pattern at ({i}, {j})"
            );
        }
    }
    // The prepared file holds the patterns: the same measurements from it.
    let file = d.join("kykz32.safetensors");
    loader.write_prepared(&file).unwrap();
    let prepared = Loader::open(&DataConfig {
        scans: vec![file],
        ..data.clone()
    })
    .unwrap();
    for (a, b) in loader
        .batch(5, 1, 3)
        .unwrap()
        .iter()
        .zip(&prepared.batch(5, 1, 3).unwrap())
    {
        assert_eq!(
            (a.mask(), a.kspace(), a.eta()),
            (b.mask(), b.kspace(), b.eta())
        );
    }
    // Trained and exported, the model records its masks, and the runtime draws 2-D partial
    // masks of them.
    let mut cfg = tiny();
    cfg.data = data.clone();
    cfg.steps = 2;
    let mut tr = Trainer::new(&cfg).unwrap();
    tr.run(&d.join("run2d"), |_| {}).unwrap();
    let path = d.join("kykz.onnx");
    export_run(&tr, &path, WeightType::F16, "test".into(), None).unwrap();
    let net = OnnxDenoiser::load(&path).unwrap();
    let meta = net.meta().clone();
    assert_eq!(meta.train_mask, MaskPattern::Random2d);
    assert_eq!(meta.train_acs_lines, 12);
    let source = meta.data_source.as_deref().unwrap();
    assert!(
        source.contains("masks as acquired (random 2-D (entries) R = 2.96 with a 12x12 ACS square"),
        "{source}"
    );
    let kind = model_partial_kind(&meta);
    assert!(
        matches!(
            kind,
            PartialKind::Entries {
                height: 32,
                width: 32,
                acs: 12,
                ..
            }
        ),
        "{kind:?}"
    );
    let m = &loader.batch(0, 0, 1).unwrap()[0];
    let op = Sense::new(m.maps().clone()).unwrap();
    let opts = SamplerOptions {
        steps: 4,
        partial: Some(kind),
        ..SamplerOptions::default()
    };
    let out = reconstruct(
        &NetworkPrior::new(net),
        &op,
        m.kspace().view(),
        m.mask(),
        &opts,
        &ReconOptions::default(),
    )
    .unwrap();
    assert_eq!(out.mean.dim(), (32, 32));
    assert!(out
        .mean
        .iter()
        .all(|v| v.re.is_finite() && v.im.is_finite()));
    // As variable-density masks, the scans give the density their pattern measures, which
    // the model records.
    let vd = Loader::open(&DataConfig {
        mask: MaskKind::VariableDensity2d,
        ..data.clone()
    })
    .unwrap();
    let want = msm::mask::RadialDensity::estimate([&pattern], 12).unwrap();
    assert_eq!(vd.mask_density(), Some(&want));
    assert_eq!(loader.mask_density(), None);
    // msm-train says which density the model will record.
    let mut vd_cfg = tiny();
    vd_cfg.data = DataConfig {
        mask: MaskKind::VariableDensity2d,
        ..data.clone()
    };
    vd_cfg.steps = 1;
    let config = d.join("vd.json");
    std::fs::write(&config, serde_json::to_string(&vd_cfg).unwrap()).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_msm-train"))
        .args(["train", "--threads", "2", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(d.join("run-vd"))
        .output()
        .expect("msm-train runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains(&format!("centre to corners): {want}\n")),
        "{err}"
    );
    // A model of column masks refuses these scans, and one of 2-D masks refuses column scans
    // and 2-D slices that are not its square grid.
    let e = Loader::open(&DataConfig {
        mask: MaskKind::Random,
        acs_lines: 4,
        ..data.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("raw_kykz32.h5") && e.contains("slice 0") && e.contains("random-2d"),
        "{e}"
    );
    let e = Loader::open(&DataConfig {
        scans: vec![d.join("scan_raw.h5")],
        ..data.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("scan_raw.h5") && e.contains("whole phase-encode columns"),
        "{e}"
    );
    let kykz = DataConfig {
        scans: vec![d.join("raw_kykz.h5")],
        acceleration: 2.1,
        ..data.clone()
    };
    let e = Loader::open(&kykz).unwrap_err().to_string();
    assert!(
        e.contains("raw_kykz.h5")
            && e.contains("24x20")
            && e.contains("32x32")
            && e.contains("image_size 24 and image_width 20"),
        "{e}"
    );
    // A non-square grid: the 24 x 20 slices of `raw_kykz.h5` train a 24 x 20 network. That
    // file has no noise scan, and under a 2-D mask no image row is free of aliasing, so the
    // noise level must be stated.
    let kykz = DataConfig {
        image_width: Some(20),
        image_size: 24,
        ..kykz
    };
    let e = Loader::open(&kykz).unwrap_err().to_string();
    assert!(
        e.contains("raw_kykz.h5") && e.contains("no noise estimate") && e.contains("noise scan"),
        "{e}"
    );
    let mut cfg = tiny();
    cfg.unet.image_size = 24;
    cfg.unet.image_width = Some(20);
    cfg.unet.attention_resolutions = vec![12];
    cfg.data = DataConfig {
        noise_eta: NoiseEta::Fixed(0.01),
        ..kykz
    };
    cfg.steps = 1;
    let mut tr = Trainer::new(&cfg).unwrap();
    tr.run(&d.join("run24x20"), |_| {}).unwrap();
    let path = d.join("kykz24x20.onnx");
    export_run(&tr, &path, WeightType::F16, "test".into(), None).unwrap();
    let net = OnnxDenoiser::load(&path).unwrap();
    assert_eq!((net.meta().height, net.meta().width), (24, 20));
    let m = &Loader::open(&cfg.data).unwrap().batch(0, 0, 1).unwrap()[0];
    let opts = SamplerOptions {
        steps: 2,
        partial: Some(model_partial_kind(net.meta())),
        ..SamplerOptions::default()
    };
    let out = reconstruct(
        &NetworkPrior::new(net),
        &Sense::new(m.maps().clone()).unwrap(),
        m.kspace().view(),
        m.mask(),
        &opts,
        &ReconOptions::default(),
    )
    .unwrap();
    assert_eq!(out.mean.dim(), (24, 20));
    assert!(out
        .mean
        .iter()
        .all(|v| v.re.is_finite() && v.im.is_finite()));
    // A 3-D scan undersampled along the partitions only (`raw_kz.h5`: 16 of 20) is read
    // along the readout with whole-column masks: it trains a model of column masks.
    let kz = Loader::open(&DataConfig {
        scans: vec![d.join("raw_kz.h5")],
        mask: MaskKind::Random,
        acceleration: 20.0 / 16.0,
        acs_lines: 12,
        ..cfg.data.clone()
    })
    .unwrap();
    assert_eq!(kz.scan_slices(), 8);
    for m in kz.batch(1, 0, 4).unwrap() {
        let columns = m.mask().columns().expect("whole-column masks");
        assert_eq!(columns.iter().filter(|&&k| k).count(), 16);
    }
}
