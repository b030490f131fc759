//! The PyTorch port of the trainer for GPU machines (`export/gpu/train.py`) against msm-train:
//! the same default config, the same network output and loss on the same weights and inputs,
//! the same simulated acquisitions, and checkpoints that msm-train resumes and exports.
//!
//! Needs `python3` with torch, numpy and safetensors (export/ci.sh installs them) and the
//! Colin27 volume (mricron-data).

use std::path::{Path, PathBuf};
use std::process::Command;

use msm::denoiser::OnnxDenoiser;
use msm::io::nifti::{read_nifti, Plane};
use msm::onnx::WeightType;
use msm::schedule::Schedule;
use msm_export::data::{to_batch, DEFAULT_VOLUME};
use msm_export::loss::{complex_randn, noiseless_loss, noisy_loss, LossOptions, MeasBatch};
use msm_export::onnx::export_run;
use msm_export::train::{checkpoint_path, TrainConfig, Trainer};
use tch::{Device, Kind, Tensor};

mod common;
mod python;

const TRAINER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/gpu/train.py");
const CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/torch_trainer_check.py");

/// The shared tiny run with a smaller batch and a few steps.
fn tiny() -> TrainConfig {
    TrainConfig {
        batch_size: 2,
        steps: 4,
        seed: 7,
        log_every: 1,
        ..common::tiny()
    }
}

/// Runs python3 with `args`; panics with its output when it fails.
fn python(args: &[&str]) -> String {
    let (ok, text) = python::run(args);
    assert!(ok, "python3 {args:?} failed:\n{text}");
    text
}

fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

fn read(path: &Path, name: &str) -> Tensor {
    Tensor::read_safetensors(path)
        .expect("readable safetensors")
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{} lacks `{name}`", path.display()))
        .1
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-30)
}

/// A tiny run's checkpoint with random (not zero-initialised) output layers, so that the network
/// output depends on every layer.
fn tiny_checkpoint(dir: &Path) -> (TrainConfig, Trainer, PathBuf) {
    let cfg = tiny();
    let mut tr = Trainer::new(&cfg).expect("tiny trainer (needs mricron-data)");
    for _ in 0..2 {
        tr.train_step().unwrap();
    }
    let path = dir.join("checkpoint.safetensors");
    tr.save_checkpoint(&path).unwrap();
    (cfg, tr, path)
}

#[test]
fn default_config_matches_msm_train() {
    let py: serde_json::Value =
        serde_json::from_str(&python(&[TRAINER, "--print-config"])).expect("JSON");
    let rust = serde_json::to_value(TrainConfig::default()).unwrap();
    assert_eq!(py, rust);
}

#[test]
fn network_and_losses_match_msm_train() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, tr, ckpt) = tiny_checkpoint(dir.path());

    // Network output on the same input and weights.
    tch::manual_seed(3);
    let x = Tensor::randn([2, 2, 32, 32], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[30.0f32, 700.0]);
    let inp = dir.path().join("in.safetensors");
    Tensor::write_safetensors(&[("x", &x), ("t", &t)], &inp).unwrap();
    let out = dir.path().join("eps.safetensors");
    python(&[CHECK, "forward", arg(&ckpt), arg(&inp), arg(&out)]);
    let rust = tch::no_grad(|| tr.net().eps(&x, &t, false));
    let err = rel(&read(&out, "eps"), &rust);
    assert!(err < 1e-5, "eps differs by {err:.2e} (relative l2)");

    // Losses on the same measurements, noise and probe: noiseless, noisy on both branches
    // (sigma_t > eta at t = 300; sigma_t <= eta at t = 0), and one level per example, one on
    // each side of sigma_0 (about 0.01), as `noise_eta = "estimate"` gives scan slices.
    let ms = tr.loader().batch(cfg.seed, 99, 2).unwrap();
    let base = to_batch(&ms, Device::Cpu).unwrap();
    let n = complex_randn(&base.kspace);
    let probe = complex_randn(&base.kspace);
    let sched = Schedule::reference();
    let net = |x: &Tensor, tt: &Tensor| tr.net().eps(x, tt, false);
    let cases = [
        (vec![0.0; 2], 300usize),
        (vec![0.01; 2], 300),
        (vec![0.01; 2], 0),
        (vec![0.005, 0.02], 0),
        (vec![0.005, 0.02], 300),
    ];
    for (eta, t) in cases {
        let batch = MeasBatch {
            kspace: base.kspace.shallow_clone(),
            maps: base.maps.shallow_clone(),
            mask: base.mask.shallow_clone(),
            eta: eta.clone(),
        };
        let want = tch::no_grad(|| {
            if batch.is_noisy() {
                noisy_loss(&net, &batch, &sched, t, &n, &probe, &LossOptions::default()).total
            } else {
                noiseless_loss(&net, &batch, &sched, t, &n)
            }
        })
        .double_value(&[]);
        let c = |z: &Tensor| z.view_as_real().contiguous();
        let inp = dir.path().join("batch.safetensors");
        Tensor::write_safetensors(
            &[
                ("kspace", &c(&batch.kspace)),
                ("maps", &c(&batch.maps)),
                ("mask", &batch.mask),
                ("n", &c(&n)),
                ("probe", &c(&probe)),
                ("t", &Tensor::from_slice(&[t as i64])),
                ("eta", &Tensor::from_slice(&eta)),
            ],
            &inp,
        )
        .unwrap();
        let out = dir.path().join("loss.safetensors");
        python(&[CHECK, "loss", arg(&ckpt), arg(&inp), arg(&out)]);
        let got = read(&out, "loss").double_value(&[0]);
        let err = (got - want).abs() / want.abs();
        assert!(
            err < 1e-4,
            "eta {eta:?}, t {t}: torch loss {got} against msm-train {want}"
        );
    }
}

#[test]
fn simulated_acquisitions_match_msm_train() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data.safetensors");
    let data = tiny().data;
    assert_eq!((data.image_size, data.coils, data.acs_lines), (32, 4, 4));
    python(&[CHECK, "data", DEFAULT_VOLUME, "32", "4", "4", arg(&out)]);

    // Deterministic parts: coil maps and slice orientation, exactly.
    let maps = msm::coils::birdcage(4, 32, 32).unwrap();
    let flat: Vec<f32> = maps.iter().flat_map(|v| [v.re, v.im]).collect();
    let rust_maps = Tensor::from_slice(&flat).reshape([4, 32, 32, 2]);
    let err = rel(&read(&out, "maps"), &rust_maps);
    assert!(err < 1e-6, "birdcage maps differ by {err:.2e}");
    let vol = read_nifti(DEFAULT_VOLUME).unwrap();
    let max = vol.data.iter().fold(0.0f32, |m, &v| m.max(v));
    let keep: Vec<usize> = (0..vol.slice_count(Plane::Axial))
        .filter(|z| !(80..100).contains(z))
        .collect();
    let excised = msm::io::nifti::Volume {
        data: vol.data.select(ndarray::Axis(2), &keep),
        voxel_size: vol.voxel_size,
    };
    for (name, v, plane, index) in [
        ("axial60", &vol, Plane::Axial, 60),
        ("coronal100", &excised, Plane::Coronal, 100),
        ("sagittal90", &excised, Plane::Sagittal, 90),
    ] {
        let s = v.slice(plane, index).unwrap();
        let (h, w) = s.dim();
        let flat: Vec<f32> = s.iter().map(|&x| x.max(0.0) / max).collect();
        let want = Tensor::from_slice(&flat).reshape([h as i64, w as i64]);
        let got = read(&out, name);
        assert_eq!(got.size(), want.size(), "{name}: shape");
        let diff = (got - want).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{name}: differs by {diff}");
    }

    // The same slices to draw from, none of the held-out block.
    let loader = msm_export::data::Loader::open(&data).unwrap();
    let counts: Vec<i64> = loader
        .slice_counts()
        .iter()
        .map(|&(_, c)| c as i64)
        .collect();
    assert_eq!(Vec::<i64>::try_from(read(&out, "counts")).unwrap(), counts);
    let axial = Vec::<i64>::try_from(read(&out, "axial_ids")).unwrap();
    assert!(axial.iter().all(|z| !(80..100).contains(z)), "{axial:?}");

    // Random parts, by distribution: the median 99th percentile of the zero-filled magnitude
    // (what sets the exported input scale) over 256 draws each, and the kept fraction.
    let rust = loader.scale_p99(1, 256).unwrap().median;
    let p99 = read(&out, "p99");
    let torch_median = p99.median().double_value(&[]);
    let diff = (torch_median - rust).abs() / rust;
    assert!(
        diff < 0.06,
        "median p99: torch simulator {torch_median:.4}, msm-train {rust:.4}"
    );
    let kept = read(&out, "kept").mean(Kind::Double).double_value(&[]);
    assert!((kept - 0.25).abs() < 0.01, "kept fraction {kept}");
}

#[test]
fn torch_checkpoints_resume_and_export_in_msm_train() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, ckpt) = tiny_checkpoint(dir.path());
    let run = dir.path().join("run");
    let log = python(&[
        TRAINER,
        "--init-from",
        arg(&ckpt),
        "--out",
        arg(&run),
        "--device",
        "cpu",
        "--steps",
        "3",
        // The CUDA path's layout and the small-transfer options, on the CPU.
        "--channels-last",
        "on",
        "--no-optimizer-state",
        "--weights-out",
        arg(&dir.path().join("w")),
    ]);
    assert!(log.contains("step 3/3"), "{log}");

    // msm-train reads the run's config and checkpoint, continues it and exports it.
    let cfg = TrainConfig::from_json_file(&run.join("config.json")).unwrap();
    assert_eq!(cfg.init_from.as_deref(), Some(arg(&ckpt)));
    let tr = Trainer::resume(&cfg, &checkpoint_path(&run)).unwrap();
    assert_eq!(tr.step_count(), 3);
    let mut longer = cfg.clone();
    longer.steps = 4;
    let mut tr4 = Trainer::resume(&longer, &checkpoint_path(&run)).unwrap();
    let st = tr4.train_step().unwrap();
    assert!(st.loss.is_finite() && st.step == 4);
    let onnx = dir.path().join("m.onnx");
    export_run(&tr, &onnx, WeightType::F16, "test".into(), None).unwrap();
    let meta = OnnxDenoiser::load(&onnx).unwrap().meta().clone();
    assert_eq!(meta.steps_trained, Some(3));

    // The two halves written for a small transfer join into the same weights.
    let joined = dir.path().join("joined");
    python(&[
        TRAINER,
        "--assemble",
        arg(&dir.path().join("w")),
        "--out",
        arg(&joined),
    ]);
    let cfg_j = TrainConfig::from_json_file(&joined.join("config.json")).unwrap();
    assert_eq!(cfg_j, cfg);
    let mut tj = Trainer::resume(&cfg_j, &checkpoint_path(&joined)).unwrap();
    for part in ["ema.", "model."] {
        assert_same(
            &entries(&checkpoint_path(&joined), part),
            &entries(&checkpoint_path(&run), part),
            "assembled weights against the run's",
        );
    }
    assert!(tj.train_step().unwrap().loss.is_finite());
}

/// The entries of a safetensors file whose names start with `prefix`, sorted by name.
fn entries(path: &Path, prefix: &str) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Asserts that two lists of named tensors are the same names and values.
fn assert_same(a: &[(String, Tensor)], b: &[(String, Tensor)], what: &str) {
    assert!(
        !a.is_empty() && a.len() == b.len(),
        "{what}: {} against {} entries",
        a.len(),
        b.len()
    );
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb, "{what}");
        assert!(ta.equal(tb), "{what}: {na} differs");
    }
}

#[test]
fn checkpoint_halves_start_runs_and_join_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, _, ckpt) = tiny_checkpoint(d);
    let prefix = d.join("half");
    python(&[
        TRAINER,
        "--split",
        arg(&ckpt),
        "--weights-out",
        arg(&prefix),
    ]);
    let ema_half = d.join("half-ema.safetensors");
    let model_half = d.join("half-model.safetensors");
    assert!(ema_half.exists() && model_half.exists());
    // The EMA half is a quarter of the checkpoint (no current weights, no Adam moments).
    let (full, small) = (
        std::fs::metadata(&ckpt).unwrap().len(),
        std::fs::metadata(&ema_half).unwrap().len(),
    );
    assert!(
        small * 3 < full,
        "EMA half {small} bytes, checkpoint {full}"
    );

    // A run started from the EMA half starts from the same weights as one started from the
    // checkpoint (zero steps: the saved weights are the starting ones).
    let start = |from: &Path, out: &str| {
        let run = d.join(out);
        let log = python(&[
            TRAINER,
            "--init-from",
            arg(from),
            "--out",
            arg(&run),
            "--device",
            "cpu",
            "--steps",
            "0",
        ]);
        assert!(log.contains("done: step 0"), "{log}");
        entries(&checkpoint_path(&run), "model.")
    };
    let from_ckpt = start(&ckpt, "from_ckpt");
    assert_same(
        &start(&ema_half, "from_half"),
        &from_ckpt,
        "run from the EMA half",
    );
    assert_same(
        &from_ckpt,
        &entries(&ckpt, "ema.")
            .into_iter()
            .map(|(n, t)| (n.replacen("ema.", "model.", 1), t))
            .collect::<Vec<_>>(),
        "run from the checkpoint",
    );
    let err = trainer_fails(&["--init-from", arg(&model_half), "--out", arg(&d.join("x"))]);
    assert!(
        err.contains("half-model.safetensors") && err.contains("EMA half"),
        "{err}"
    );

    // The halves join back into the checkpoint's weights.
    let joined = d.join("joined");
    python(&[TRAINER, "--assemble", arg(&prefix), "--out", arg(&joined)]);
    for part in ["ema.", "model."] {
        assert_same(
            &entries(&checkpoint_path(&joined), part),
            &entries(&ckpt, part),
            "assembled halves",
        );
    }
}

/// Runs the trainer with `args`, which must fail; returns its stderr.
fn trainer_fails(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(TRAINER)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(!out.status.success(), "the trainer accepted {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let err = trainer_fails(&["--init-from", arg(&junk), "--out", arg(&run)]);
    assert!(
        err.contains("junk.safetensors") && err.contains("not a readable checkpoint"),
        "{err}"
    );
    let cfg = dir.path().join("cfg.json");
    std::fs::write(&cfg, r#"{"batch_sise": 8}"#).unwrap();
    let err = trainer_fails(&["--config", arg(&cfg), "--out", arg(&run)]);
    assert!(err.contains("unknown field `batch_sise`"), "{err}");
    // Per-slice noise estimates are msm-train's (for scans): refused, with no run folder left.
    std::fs::write(&cfg, r#"{"data": {"noise_eta": "estimate"}}"#).unwrap();
    let err = trainer_fails(&["--config", arg(&cfg), "--out", arg(&run)]);
    assert!(
        err.contains("data.noise_eta 'estimate'") && err.contains("expected a number"),
        "{err}"
    );
    assert!(!run.exists(), "a run folder was left for a refused config");
}
