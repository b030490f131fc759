//! Training on a tiny configuration: the loss goes down, resume equals an uninterrupted run,
//! the data are measurements only, and bad inputs give clear errors.

use std::path::{Path, PathBuf};

use msm::denoiser::OnnxDenoiser;
use msm::mask::density::normalised_radius;
use msm::mask::{acs_side, Mask, PartialKind, RadialDensity};
use msm::onnx::meta::MaskPattern;
use msm::onnx::WeightType;
use msm::sampler::model_partial_kind;
use msm::sense::{Operator, Sense};
use msm_export::data::{
    DataConfig, Loader, MaskKind, NoiseEta, DEFAULT_VOLUME, SCALE_DRAWS, SCALE_KEY,
};
use msm_export::onnx::export_run;
use msm_export::train::{TrainConfig, Trainer};
use msm_export::unet::Precision;

mod common;
use common::tiny;

fn have_volume() -> bool {
    let ok = std::path::Path::new(DEFAULT_VOLUME).exists();
    assert!(
        ok,
        "{DEFAULT_VOLUME} is missing: install the Debian package mricron-data"
    );
    ok
}

/// Mean loss over fixed evaluation minibatches (steps far beyond the training range).
fn eval(tr: &Trainer) -> f64 {
    (0..24)
        .map(|i| tr.eval_loss(1_000_000 + i).unwrap())
        .sum::<f64>()
        / 24.0
}

/// Trains `cfg` into `dir` and asserts that the evaluation loss fell below 0.8 of its start
/// (`what` names the run in the message).
fn trains_down(cfg: &TrainConfig, dir: &Path, what: &str) -> Trainer {
    let mut tr = Trainer::new(cfg).unwrap();
    let before = eval(&tr);
    tr.run(dir, |_| {}).unwrap();
    let after = eval(&tr);
    assert!(
        after < 0.8 * before,
        "{what}: loss did not drop: before {before:.5}, after {after:.5}"
    );
    tr
}

#[test]
fn short_training_lowers_the_loss() {
    have_volume();
    tch::set_num_threads(2);
    let dir = tempfile::tempdir().unwrap();
    trains_down(&tiny(), dir.path(), "f32");
    let log = std::fs::read_to_string(dir.path().join("train.log")).unwrap();
    assert!(
        log.contains("examples/s") && log.contains("step 120/120"),
        "log: {log}"
    );
    assert!(dir.path().join("checkpoint.safetensors").exists());
}

/// With `data.mask = "random-2d"` the simulator draws 2-D masks (an ACS square and random
/// entries, 1/R of the grid on average, each example its own), the k-space holds nothing off
/// them, a short run learns from them as from column masks, and the model records them.
#[test]
fn simulated_2d_masks_train_and_are_recorded() {
    have_volume();
    tch::set_num_threads(2);
    let mut cfg = tiny();
    cfg.data.mask = MaskKind::Random2d;
    cfg.data.acs_lines = 8;
    let loader = Loader::open(&cfg.data).unwrap();
    let ms = loader.batch(2, 0, 16).unwrap();
    let mut fraction = 0.0;
    for m in &ms {
        let Mask::Pattern(p) = m.mask() else {
            panic!("a column mask")
        };
        assert!(acs_side(p) >= 8, "the 8x8 ACS square is not kept");
        fraction += m.mask().fraction() / ms.len() as f64;
        for ((_, i, j), v) in m.kspace().indexed_iter() {
            assert!(
                p[(i, j)] || v.norm() == 0.0,
                "data off the mask at ({i}, {j})"
            );
        }
    }
    assert!(
        (fraction - 0.25).abs() < 0.02,
        "mean kept fraction {fraction}"
    );
    assert_ne!(ms[0].mask(), ms[1].mask());
    // A square that 1/R of the grid cannot hold is refused.
    let e = Loader::open(&DataConfig {
        acs_lines: 17,
        ..cfg.data.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("17x17 ACS square") && e.contains("random-2d"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let tr = trains_down(&cfg, dir.path(), "2-D masks");
    let path = dir.path().join("m2d.onnx");
    export_run(&tr, &path, WeightType::F16, "test".into(), None).unwrap();
    let meta = OnnxDenoiser::load(&path).unwrap().meta().clone();
    assert_eq!(meta.train_mask, MaskPattern::Random2d);
    assert_eq!((meta.train_acs_lines, meta.train_acceleration), (8, 4.0));
    let source = meta.data_source.unwrap();
    assert!(
        source.contains("random 2-D (entries) R = 4 with a 8x8 ACS square"),
        "{source}"
    );
}

/// With `data.mask = "variable-density-2d"` the simulator draws 2-D masks that keep the
/// centre of k-space more often than its edge (each example its own, 1/R of the grid on
/// average), and the exported model records the density; the runtime samples it with uniform
/// 2-D partial masks (the density's own lost 1.5 dB: `msm::mask::density`).
#[test]
fn simulated_variable_density_masks_are_drawn_and_recorded() {
    have_volume();
    tch::set_num_threads(2);
    let mut cfg = tiny();
    cfg.data.mask = MaskKind::VariableDensity2d;
    cfg.data.acs_lines = 4;
    let loader = Loader::open(&cfg.data).unwrap();
    let density = RadialDensity::polynomial(2.0).unwrap();
    assert_eq!(loader.mask_density(), Some(&density));
    let ms = loader.batch(2, 0, 64).unwrap();
    let n = cfg.data.image_size;
    let (mut fraction, mut inner, mut outer) = (0.0, 0.0, 0.0);
    for m in &ms {
        let Mask::Pattern(p) = m.mask() else {
            panic!("a column mask")
        };
        assert!(acs_side(p) >= 4, "the 4x4 ACS square is not kept");
        fraction += m.mask().fraction() / ms.len() as f64;
        for ((i, j), &k) in p.indexed_iter() {
            let r = normalised_radius(i, j, n, n);
            if (0.25..0.4).contains(&r) {
                inner += f64::from(u8::from(k));
            } else if r > 0.7 {
                outer += f64::from(u8::from(k));
            }
        }
    }
    assert!(
        (fraction - 0.25).abs() < 0.02,
        "mean kept fraction {fraction}"
    );
    assert!(inner > 4.0 * outer.max(1.0), "inner {inner}, outer {outer}");
    assert_ne!(ms[0].mask(), ms[1].mask());
    cfg.steps = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut tr = Trainer::new(&cfg).unwrap();
    tr.run(dir.path(), |_| {}).unwrap();
    let path = dir.path().join("vd.onnx");
    export_run(&tr, &path, WeightType::F16, "test".into(), None).unwrap();
    let meta = OnnxDenoiser::load(&path).unwrap().meta().clone();
    assert_eq!(meta.train_mask, MaskPattern::VariableDensity2d);
    let recorded = meta.train_density.clone().unwrap();
    for (a, b) in recorded.weights().iter().zip(density.weights()) {
        assert!((a - b).abs() <= 1e-4 * b, "recorded {a}, simulated {b}");
    }
    assert_eq!(
        model_partial_kind(&meta),
        PartialKind::Entries {
            height: 32,
            width: 32,
            accel: 4.0,
            acs: 4
        }
    );
    let source = meta.data_source.unwrap();
    assert!(
        source.contains(
            "variable-density 2-D (entries) R = 4 with a 4x4 ACS square, density (1 - r)^2"
        ),
        "{source}"
    );
}

/// A run in bf16 mixed precision trains (the loss drops as far as the f32 test asks), keeps
/// f32 weights, says its precision in the log, and can be resumed in f32.
#[test]
fn a_bf16_run_trains_and_resumes_in_f32() {
    have_volume();
    tch::set_num_threads(2);
    let mut cfg = tiny();
    cfg.precision = Precision::Bf16;
    let dir = tempfile::tempdir().unwrap();
    let tr = trains_down(&cfg, dir.path(), "bf16");
    for (n, w) in tr.weights() {
        assert_eq!(w.kind(), tch::Kind::Float, "{n}");
    }
    drop(tr);
    let mut more = cfg.clone();
    more.precision = Precision::F32;
    more.steps = 122;
    let mut resumed = Trainer::resume(&more, &dir.path().join("checkpoint.safetensors")).unwrap();
    resumed.run(dir.path(), |_| {}).unwrap();
    assert_eq!(resumed.step_count(), 122);
    let log = std::fs::read_to_string(dir.path().join("train.log")).unwrap();
    assert!(
        log.contains("# steps 0..120: convolutions in bf16")
            && log.contains("# steps 120..122: convolutions in f32"),
        "log: {log}"
    );
}

#[test]
fn resume_gives_the_same_weights_as_an_uninterrupted_run() {
    have_volume();
    tch::set_num_threads(1);
    let mut cfg = tiny();
    cfg.steps = 6;
    cfg.data.noise_eta = NoiseEta::Fixed(0.02); // exercise the noisy (SURE) path too
    let dir = tempfile::tempdir().unwrap();
    let mut full = Trainer::new(&cfg).unwrap();
    full.run(&dir.path().join("full"), |_| {}).unwrap();

    let mut half_cfg = cfg.clone();
    half_cfg.steps = 3;
    let mut first = Trainer::new(&half_cfg).unwrap();
    first.run(&dir.path().join("split"), |_| {}).unwrap();
    let ckpt = dir.path().join("split/checkpoint.safetensors");
    drop(first);
    let mut resumed = Trainer::resume(&cfg, &ckpt).unwrap();
    assert_eq!(resumed.step_count(), 3);
    resumed.run(&dir.path().join("split"), |_| {}).unwrap();

    let a = full.weights();
    let b = resumed.weights();
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let d = (ta - tb).abs().max().double_value(&[]);
        assert_eq!(d, 0.0, "{na} differs by {d}");
    }
    let ea = full.ema_weights().unwrap();
    let eb = resumed.ema_weights().unwrap();
    for n in ea.names() {
        let shape: Vec<usize> = a
            .iter()
            .find(|(k, _)| k == n)
            .unwrap()
            .1
            .size()
            .iter()
            .map(|&d| d as usize)
            .collect();
        assert_eq!(
            ea.get(n, &shape).unwrap(),
            eb.get(n, &shape).unwrap(),
            "EMA {n}"
        );
    }
}

#[test]
fn loader_yields_undersampled_measurements_only() {
    have_volume();
    let cfg = tiny().data;
    let loader = Loader::open(&cfg).unwrap();
    let ms = loader.batch(1, 0, 3).unwrap();
    for m in &ms {
        let (c, h, w) = m.kspace().dim();
        assert_eq!((c, h, w), (4, 32, 32));
        let cols = m.mask().columns().expect("column masks");
        let kept = cols.iter().filter(|&&k| k).count();
        assert!((4..20).contains(&kept), "kept {kept} of 32 columns");
        for (j, &keep) in cols.iter().enumerate() {
            let energy: f32 = (0..c)
                .flat_map(|ci| (0..h).map(move |i| (ci, i)))
                .map(|(ci, i)| m.kspace()[(ci, i, j)].norm_sqr())
                .sum();
            assert_eq!(energy > 0.0, keep, "column {j}");
        }
        // Maps are normalised: sum_c |C_c|^2 = 1.
        let s: f32 = (0..c).map(|ci| m.maps()[(ci, 5, 7)].norm_sqr()).sum();
        assert!((s - 1.0).abs() < 1e-4);
    }
    // Same seed and step, same data; another step, other data.
    let again = loader.batch(1, 0, 3).unwrap();
    assert_eq!(ms[0].kspace(), again[0].kspace());
    assert_ne!(ms[0].mask(), loader.batch(1, 1, 1).unwrap()[0].mask());
    // The held-out block is refused if it does not fit the volume.
    let bad = DataConfig {
        held_out_axial: [170, 400],
        ..cfg
    };
    let e = Loader::open(&bad).unwrap_err().to_string();
    assert!(e.contains("held-out"), "{e}");
}

/// The 99th percentile by a full sort, nearest rank (the smallest value with at least 99% of
/// the values at or below it).
fn p99_by_sorting(mut v: Vec<f32>) -> f64 {
    v.sort_by(f32::total_cmp);
    let rank = (0.99 * v.len() as f64).ceil() as usize;
    v[rank - 1] as f64
}

#[test]
fn export_records_the_runtime_input_scale() {
    have_volume();
    let mut cfg = tiny();
    cfg.steps = 2;
    let mut tr = Trainer::new(&cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    tr.run(dir.path(), |_| {}).unwrap();
    let path = dir.path().join("model.onnx");
    let written = export_run(&tr, &path, WeightType::F16, "test".into(), Some(1.0)).unwrap();

    // The runtime reads the model and its metadata.
    let model = OnnxDenoiser::load(&path).unwrap();
    let meta = model.meta();
    assert_eq!(meta, &written);
    assert_eq!(meta.recon_eta(&path).unwrap(), Some(1.0));
    assert_eq!((meta.height, meta.coils), (32, Some(4)));
    assert_eq!(meta.train_acs_lines, 4);
    assert_eq!(meta.steps_trained, Some(2));
    assert!(meta.held_out_slices.as_deref().unwrap().contains("80..100"));
    let scale: f64 = meta.extra[SCALE_KEY].parse().unwrap();

    // Recomputed independently: the median over the draws of step u64::MAX of the 99th
    // percentile of |A_S^H s| (coil-combined with the maps, as the runtime does).
    let ms = tr.loader().batch(cfg.seed, u64::MAX, SCALE_DRAWS).unwrap();
    let mut p99s: Vec<f64> = ms
        .iter()
        .map(|m| {
            let op = Sense::new(m.maps().clone()).unwrap();
            let zf = op.adjoint(m.kspace().view(), Some(m.mask()));
            p99_by_sorting(zf.iter().map(|v| v.norm()).collect())
        })
        .collect();
    p99s.sort_by(f64::total_cmp);
    let median = 0.5 * (p99s[SCALE_DRAWS / 2 - 1] + p99s[SCALE_DRAWS / 2]);
    assert!(
        (scale - median).abs() <= 1e-12 * median,
        "metadata {scale} vs recomputed {median}"
    );
    // Noiseless draws are scaled so that the zero-filled maximum is at most 1.2, and a brain
    // slice fills well over 1% of the grid.
    assert!(0.05 < scale && scale <= 1.2, "scale {scale}");
    let card = std::fs::read_to_string(dir.path().join("model.md")).unwrap();
    assert!(
        card.contains(SCALE_KEY) && card.contains("64 training draws"),
        "{card}"
    );
    assert!(card.contains("`msm.recon_eta` = 1"), "{card}");
    // Without an eta the key is absent (the runtime's default applies); out of range is refused
    // before anything is written.
    let plain = dir.path().join("plain.onnx");
    export_run(&tr, &plain, WeightType::F16, "test".into(), None).unwrap();
    let meta = OnnxDenoiser::load(&plain).unwrap().meta().clone();
    assert_eq!(meta.recon_eta(&plain).unwrap(), None);
    let bad = dir.path().join("bad.onnx");
    let e = export_run(&tr, &bad, WeightType::F16, "test".into(), Some(1.5)).unwrap_err();
    assert!(e.to_string().contains("0..=1"), "{e}");
    assert!(!bad.exists());
}

#[test]
fn bad_inputs_give_clear_errors() {
    // Channels not divisible by 32.
    let mut cfg = tiny();
    cfg.unet.model_channels = 48;
    let e = Trainer::new(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("48 channels") && e.contains("GroupNorm(32)"),
        "{e}"
    );
    // Attention at a resolution that never occurs.
    let mut cfg = tiny();
    cfg.unet.attention_resolutions = vec![12];
    let e = Trainer::new(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("attention resolution 12 never occurs") && e.contains("[32, 16]"),
        "{e}"
    );
    // Missing data file.
    let mut cfg = tiny();
    cfg.data.volume = PathBuf::from("/nonexistent/ch2.nii.gz");
    let e = Trainer::new(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("/nonexistent/ch2.nii.gz") && e.contains("mricron-data"),
        "{e}"
    );
    // Corrupted checkpoint.
    have_volume();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny();
    cfg.steps = 1;
    let mut tr = Trainer::new(&cfg).unwrap();
    tr.run(dir.path(), |_| {}).unwrap();
    let ckpt = dir.path().join("checkpoint.safetensors");
    let mut bytes = std::fs::read(&ckpt).unwrap();
    bytes.truncate(bytes.len() / 2);
    let bad = dir.path().join("truncated.safetensors");
    std::fs::write(&bad, &bytes).unwrap();
    let e = Trainer::resume(&cfg, &bad).unwrap_err().to_string();
    assert!(
        e.contains("truncated.safetensors") && e.contains("not a readable checkpoint"),
        "{e}"
    );
    std::fs::write(&bad, b"garbage").unwrap();
    let e = Trainer::resume(&cfg, &bad).unwrap_err().to_string();
    assert!(
        e.contains("truncated.safetensors") && e.contains("not a readable checkpoint"),
        "{e}"
    );
    // A checkpoint of another architecture.
    let mut other = cfg.clone();
    other.unet.num_res_blocks = 2;
    let e = Trainer::resume(&other, &ckpt).unwrap_err().to_string();
    assert!(e.contains("different configuration"), "{e}");
    // Missing checkpoint.
    let e = Trainer::resume(&cfg, &dir.path().join("none.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("none.safetensors"), "{e}");
}

#[test]
fn learning_rate_decays_by_cosine_to_its_final_value() {
    let mut cfg = tiny();
    cfg.steps = 100;
    assert!(
        (1..=100).all(|k| cfg.lr_at(k) == cfg.lr),
        "constant without lr_final"
    );
    cfg.lr_final = Some(1e-5);
    cfg.lr_decay_from = 60;
    cfg.validate().unwrap();
    assert!((1..=60).all(|k| cfg.lr_at(k) == cfg.lr));
    let mid = cfg.lr_at(80);
    assert!(
        (mid - 0.5 * (cfg.lr + 1e-5)).abs() < 1e-12,
        "midpoint {mid}"
    );
    assert!((cfg.lr_at(100) - 1e-5).abs() < 1e-15);
    assert!(
        (60..100).all(|k| cfg.lr_at(k + 1) < cfg.lr_at(k)),
        "decreasing"
    );
    let mut bad = cfg.clone();
    bad.lr_final = Some(2.0 * cfg.lr);
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("lr_final") && e.contains("0.002"), "{e}");
    let mut bad = cfg.clone();
    bad.lr_decay_from = 100;
    let e = bad.validate().unwrap_err().to_string();
    assert!(
        e.contains("lr_decay_from") && e.contains("steps = 100"),
        "{e}"
    );
}

/// A constant-rate run resumed with a decay to finish with continues exactly as a run made
/// with that decay from the start (the rates agree up to the resume point), and the decay is
/// applied (the weights differ from a constant-rate continuation).
#[test]
fn a_resumed_run_can_finish_with_a_decay() {
    have_volume();
    tch::set_num_threads(1);
    let mut cfg = tiny();
    cfg.steps = 3;
    let mut decayed = cfg.clone();
    decayed.steps = 6;
    decayed.lr_final = Some(1e-5);
    decayed.lr_decay_from = 3;
    let dir = tempfile::tempdir().unwrap();
    let mut whole = Trainer::new(&decayed).unwrap();
    whole.run(&dir.path().join("whole"), |_| {}).unwrap();
    let mut first = Trainer::new(&cfg).unwrap();
    first.run(&dir.path().join("split"), |_| {}).unwrap();
    drop(first);
    let ckpt = dir.path().join("split/checkpoint.safetensors");
    // The step-3 checkpoint, kept for the constant-rate continuation (the resumed run
    // overwrites its own).
    let ckpt3 = dir.path().join("step3.safetensors");
    std::fs::copy(&ckpt, &ckpt3).unwrap();
    let mut resumed = Trainer::resume(&decayed, &ckpt).unwrap();
    resumed.run(&dir.path().join("split"), |_| {}).unwrap();
    let mut constant_cfg = cfg.clone();
    constant_cfg.steps = 6;
    let mut constant = Trainer::resume(&constant_cfg, &ckpt3).unwrap();
    constant.run(&dir.path().join("constant"), |_| {}).unwrap();
    let mut most = 0.0f64;
    for (((na, ta), (_, tb)), (_, tc)) in whole
        .weights()
        .iter()
        .zip(&resumed.weights())
        .zip(&constant.weights())
    {
        let d = (ta - tb).abs().max().double_value(&[]);
        assert_eq!(d, 0.0, "{na} differs by {d}");
        most = most.max((ta - tc).abs().max().double_value(&[]));
    }
    assert!(most > 0.0, "the decay changed nothing");
}

/// Fine-tuning: a run started from a checkpoint begins at step 0 with that checkpoint's EMA
/// weights as both its parameters and its EMA, trains on its own data (here noisy
/// measurements), keeps the provenance through a resume, and refuses another architecture.
#[test]
fn init_from_starts_a_new_run_from_a_checkpoints_ema() {
    have_volume();
    tch::set_num_threads(1);
    let mut cfg = tiny();
    cfg.steps = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut base = Trainer::new(&cfg).unwrap();
    base.run(&dir.path().join("base"), |_| {}).unwrap();
    let ckpt = dir.path().join("base/checkpoint.safetensors");
    let ema = base.ema_weights().unwrap();

    let mut noisy = cfg.clone();
    noisy.data.noise_eta = NoiseEta::Fixed(0.01);
    noisy.seed = 7;
    noisy.init_from = Some(ckpt.display().to_string());
    let mut tuned = Trainer::init_from(&noisy, &ckpt).unwrap();
    assert_eq!(tuned.step_count(), 0);
    let start = tuned.weights();
    let tuned_ema = tuned.ema_weights().unwrap();
    for (n, t) in &start {
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let want = ema.get(n, &shape).unwrap();
        let v = Vec::<f32>::try_from(t.reshape([-1])).unwrap();
        assert_eq!(
            v, want,
            "{n}: parameters are not the checkpoint's EMA weights"
        );
        assert_eq!(
            tuned_ema.get(n, &shape).unwrap(),
            want,
            "{n}: EMA not copied"
        );
    }
    tuned.run(&dir.path().join("tuned"), |_| {}).unwrap();
    assert_eq!(tuned.step_count(), 2);
    let moved = tuned
        .weights()
        .iter()
        .zip(&start)
        .map(|((_, a), (_, b))| (a - b).abs().max().double_value(&[]))
        .fold(0.0f64, f64::max);
    assert!(moved > 0.0, "fine-tuning did not train");

    // Resuming without repeating `init_from` keeps it.
    let mut more = noisy.clone();
    more.steps = 3;
    more.init_from = None;
    let resumed = Trainer::resume(&more, &dir.path().join("tuned/checkpoint.safetensors")).unwrap();
    assert_eq!(resumed.config().init_from, noisy.init_from);

    let mut other = noisy.clone();
    other.unet.model_channels *= 2;
    let e = Trainer::init_from(&other, &ckpt).unwrap_err().to_string();
    assert!(e.contains("different architecture"), "{e}");
}

/// The committed runs (export/runs) are the shipped models' runs: resumed with their own
/// config, each holds the model's step count, and exporting its EMA weights in f16 gives a
/// network whose output equals the shipped file's bit for bit. Guards the checkpoints that
/// `--resume` and the GPU lease (`export/gpu/lease.sh`, which empties them in the working tree
/// for a while) depend on.
#[test]
fn committed_runs_are_the_shipped_models() {
    use msm::denoiser::Denoiser;
    use msm_export::train::{checkpoint_path, TrainConfig};
    if !have_volume() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let x = ndarray::Array4::from_shape_fn((1, 2, 128, 128), |(_, c, i, j)| {
        ((i * 31 + j * 17 + c * 7) % 23) as f32 / 23.0 - 0.5
    });
    for (run, model) in [
        ("runs/brain128", "../models/msm-brain-128.onnx"),
        ("runs/brain128-noisy", "../models/msm-brain-128-noisy.onnx"),
    ] {
        let run = root.join(run);
        let cfg = TrainConfig::from_json_file(&run.join("config.json")).unwrap();
        let tr = Trainer::resume(&cfg, &checkpoint_path(&run))
            .unwrap_or_else(|e| panic!("{}: {e}", run.display()));
        let shipped = OnnxDenoiser::load(root.join(model)).unwrap();
        assert_eq!(
            Some(tr.step_count()),
            shipped.meta().steps_trained,
            "{model}: steps of the run and of the model"
        );
        let onnx = dir.path().join("m.onnx");
        export_run(&tr, &onnx, WeightType::F16, "test".into(), None).unwrap();
        let fresh = OnnxDenoiser::load(&onnx).unwrap();
        for t in [10.0, 500.0] {
            let (a, b) = (
                fresh.predict_eps(x.view(), &[t]).unwrap(),
                shipped.predict_eps(x.view(), &[t]).unwrap(),
            );
            assert!(
                a == b,
                "{model}: the run's EMA weights are not the model's (t = {t})"
            );
        }
    }
}
