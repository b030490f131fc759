//! Training on a tiny configuration: the loss goes down, resume equals an uninterrupted run,
//! the data are measurements only, and bad inputs give clear errors.

use std::path::PathBuf;

use msm_export::config::UNetConfig;
use msm_export::data::{DataConfig, Loader, DEFAULT_VOLUME};
use msm_export::train::{TrainConfig, Trainer};

fn tiny() -> TrainConfig {
    TrainConfig {
        unet: UNetConfig {
            image_size: 32,
            model_channels: 32,
            channel_mult: vec![1, 2],
            num_res_blocks: 1,
            attention_resolutions: vec![16],
            ..UNetConfig::default()
        },
        data: DataConfig {
            image_size: 32,
            coils: 4,
            acs_lines: 4,
            ..DataConfig::default()
        },
        batch_size: 4,
        lr: 1e-3,
        steps: 120,
        seed: 11,
        checkpoint_every: 1000,
        log_every: 1000,
        ..TrainConfig::default()
    }
}

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

#[test]
fn short_training_lowers_the_loss() {
    have_volume();
    tch::set_num_threads(2);
    let cfg = tiny();
    let mut tr = Trainer::new(&cfg).unwrap();
    let before = eval(&tr);
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    tr.run(dir.path(), |l| lines.push(l.to_string())).unwrap();
    let after = eval(&tr);
    assert!(
        after < 0.8 * before,
        "loss did not drop: before {before:.5}, after {after:.5}"
    );
    let log = std::fs::read_to_string(dir.path().join("train.log")).unwrap();
    assert!(
        log.contains("examples/s") && log.contains("step 120/120"),
        "log: {log}"
    );
    assert!(dir.path().join("checkpoint.safetensors").exists());
}

#[test]
fn resume_gives_the_same_weights_as_an_uninterrupted_run() {
    have_volume();
    tch::set_num_threads(1);
    let mut cfg = tiny();
    cfg.steps = 6;
    cfg.data.noise_eta = 0.02; // exercise the noisy (SURE) path too
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
    let ms = loader.batch(1, 0, 3);
    for m in &ms {
        let (c, h, w) = m.kspace().dim();
        assert_eq!((c, h, w), (4, 32, 32));
        let kept = m.mask().iter().filter(|&&k| k).count();
        assert!((4..20).contains(&kept), "kept {kept} of 32 columns");
        for (j, &keep) in m.mask().iter().enumerate() {
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
    let again = loader.batch(1, 0, 3);
    assert_eq!(ms[0].kspace(), again[0].kspace());
    assert_ne!(ms[0].mask(), loader.batch(1, 1, 1)[0].mask());
    // The held-out block is refused if it does not fit the volume.
    let bad = DataConfig {
        held_out_axial: [170, 400],
        ..cfg
    };
    let e = Loader::open(&bad).unwrap_err().to_string();
    assert!(e.contains("held-out"), "{e}");
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
