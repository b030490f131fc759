//! Coil sensitivity estimation from the ACS: ESPIRiT against BART's `ecalib -m1` on the same
//! k-space (a BART phantom and a simulated Colin27 slice), against the true birdcage maps of a
//! simulation, CG-SENSE with the estimated maps, the ratio method, and bad input.
//!
//! The BART comparisons need `bart` on the PATH and are skipped with a printed note without it;
//! the Colin27 tests need `/usr/share/mricron/templates/ch2.nii.gz` (Debian `mricron-data`).
//!
//! Map agreement is measured per pixel up to the common phase the maps are defined with:
//! `rho(x) = |sum_c conj(a_c) b_c| / (|a| |b|)` (0 where either map is zero), averaged with the
//! reference image magnitude as the weight over the object (pixels above 10% of the peak).

use msm::coils::{
    calibration_region, espirit, espirit_full, ratio_maps, EspiritOptions, RatioOptions,
};
use msm::fft::Fft2;
use msm::io::{cfl, nifti};
use msm::mask::{self, Acs, Mask};
use msm::metrics::compare;
use msm::recon::{cg_sense, CgOptions};
use msm::sense::{apply_mask, Sense};
use msm::simulate::{simulate, Pattern, SimOptions};
use msm::C32;
use ndarray::{s, Array2, Array3, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::process::Command;

const COLIN27: &str = "/usr/share/mricron/templates/ch2.nii.gz";

fn bart_available() -> bool {
    Command::new("bart")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

macro_rules! require_bart {
    () => {
        if !bart_available() {
            eprintln!("note: `bart` is not on the PATH; skipping the comparison with BART ecalib");
            return;
        }
    };
}

macro_rules! require_colin27 {
    () => {
        if !Path::new(COLIN27).exists() {
            eprintln!("note: {COLIN27} is missing (Debian mricron-data); skipping");
            return;
        }
    };
}

/// BART's `ecalib -m1` with the same kernel, calibration size and thresholds: the maps, the
/// eigenvalue map, and the calibration region `(rows, cols)` start and size from its log.
struct BartMaps {
    maps: Array3<C32>,
    eigenvalues: Array2<C32>,
    region: ((usize, usize), (usize, usize)),
    kernels: usize,
}

fn bart_ecalib(kspace: &Array3<C32>, opts: &EspiritOptions) -> BartMaps {
    let dir = tempfile::tempdir().unwrap();
    let kin = dir.path().join("k");
    let sens = dir.path().join("s");
    let ev = dir.path().join("e");
    cfl::write_coils(&kin, kspace).unwrap();
    let out = Command::new("bart")
        .args(["ecalib", "-d4", "-m1"])
        .args(["-k", &opts.kernel.to_string()])
        .args(["-r", &opts.cal.to_string()])
        .args(["-t", &opts.threshold.to_string()])
        .args(["-c", &opts.crop.to_string()])
        .arg(&kin)
        .arg(&sens)
        .arg(&ev)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "bart ecalib failed: {log}");
    // "Calibration region...  (size: 24x20x1, pos: 52x54x0)": BART dim 0 = our rows.
    let line = log
        .lines()
        .find(|l| l.starts_with("Calibration region"))
        .unwrap_or_else(|| panic!("no calibration region in the BART log: {log}"));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect();
    let kernels: usize = log
        .lines()
        .find(|l| l.starts_with("Using "))
        .and_then(|l| l["Using ".len()..].split('/').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no kernel count in the BART log: {log}"));
    BartMaps {
        maps: cfl::read_coils(&sens).unwrap(),
        eigenvalues: cfl::read_image(&ev).unwrap(),
        region: ((nums[3], nums[0]), (nums[4], nums[1])),
        kernels,
    }
}

/// Magnitude-weighted mean over the object of the per-pixel map correlation (see the module
/// documentation).
fn map_correlation(a: &Array3<C32>, b: &Array3<C32>, reference: &Array2<C32>) -> f64 {
    let peak = reference.iter().map(|v| v.norm()).fold(0.0f32, f32::max);
    let (_, h, w) = a.dim();
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for y in 0..h {
        for x in 0..w {
            let weight = reference[(y, x)].norm();
            if weight <= 0.1 * peak {
                continue;
            }
            let (pa, pb) = (a.slice(s![.., y, x]), b.slice(s![.., y, x]));
            let na = pa.iter().map(|v| v.norm_sqr() as f64).sum::<f64>().sqrt();
            let nb = pb.iter().map(|v| v.norm_sqr() as f64).sum::<f64>().sqrt();
            let ip: C32 = pa.iter().zip(pb.iter()).map(|(p, q)| p.conj() * q).sum();
            let rho = if na > 0.0 && nb > 0.0 {
                ip.norm() as f64 / (na * nb)
            } else {
                0.0
            };
            num += weight as f64 * rho;
            den += weight as f64;
        }
    }
    num / den
}

/// PSNR (dB, least-squares complex scaling, magnitudes) of CG-SENSE with `maps`.
fn cg_psnr(maps: &Array3<C32>, kspace: &Array3<C32>, mask: &Mask, reference: &Array2<C32>) -> f64 {
    let op = Sense::new(maps.clone()).unwrap();
    let opts = CgOptions {
        iterations: 30,
        ..CgOptions::default()
    };
    let (x, _) = cg_sense(&op, kspace.view(), mask, opts).unwrap();
    compare(reference.view(), x.view(), true).unwrap().psnr
}

/// Root-sum-of-squares of the fully sampled coil images (the magnitude a SENSE reconstruction
/// with maps normalised to unit norm over the coils aims at), as a complex image.
fn rss_image(full: &Array3<C32>) -> Array2<C32> {
    let (_, h, w) = full.dim();
    let mut img = full.clone();
    Fft2::new(h, w).inverse_coils(&mut img);
    img.map_axis(Axis(0), |c| {
        C32::new(c.iter().map(|v| v.norm_sqr()).sum::<f32>().sqrt(), 0.0)
    })
}

fn undersample(full: &Array3<C32>, mask: &Mask) -> Array3<C32> {
    let mut k = full.clone();
    apply_mask(&mut k, mask);
    k
}

fn colin27_acquisition(noise_std: f64, seed: u64) -> msm::simulate::Acquisition {
    let volume = nifti::read_nifti(COLIN27).unwrap();
    let slice = volume.slice(nifti::Plane::Axial, 90).unwrap();
    let opts = SimOptions {
        height: 128,
        width: 128,
        coils: 8,
        accel: 4.0,
        acs: Acs::Lines(24),
        pattern: Pattern::Random,
        noise_std,
        ..SimOptions::default()
    };
    simulate(slice.view(), &opts, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
}

/// Our maps against BART's on one k-space: correlation, calibration region, kernel count,
/// eigenvalue maps and CG-SENSE PSNR. Returns (correlation, our PSNR, BART's PSNR).
fn compare_with_bart(
    name: &str,
    kspace: &Array3<C32>,
    mask: &Mask,
    reference: &Array2<C32>,
) -> (f64, f64, f64) {
    let opts = EspiritOptions::default();
    let ours = espirit_full(kspace.view(), Some(mask), &opts).unwrap();
    let bart = bart_ecalib(kspace, &opts);
    assert_eq!(
        (
            (ours.region.rows.start, ours.region.height()),
            (ours.region.cols.start, ours.region.width())
        ),
        bart.region,
        "{name}: calibration region (start, size) of rows and columns"
    );
    assert_eq!(ours.kernels, bart.kernels, "{name}: kept kernels");
    let corr = map_correlation(&ours.maps, &bart.maps, reference);
    // Eigenvalue maps: same quantity, so they agree closely everywhere.
    let ev_err = ours
        .eigenvalues
        .iter()
        .zip(bart.eigenvalues.iter())
        .map(|(a, b)| (a - b.re).abs())
        .fold(0.0f32, f32::max);
    let p_ours = cg_psnr(&ours.maps, kspace, mask, reference);
    let p_bart = cg_psnr(&bart.maps, kspace, mask, reference);
    println!(
        "{name}: region {:?}x{:?}, {} kernels, map correlation {corr:.5}, max eigenvalue \
         difference {ev_err:.2e}, CG-SENSE PSNR ours {p_ours:.2} dB, BART {p_bart:.2} dB",
        ours.region.rows, ours.region.cols, ours.kernels
    );
    assert!(ev_err < 0.01, "{name}: eigenvalue maps differ by {ev_err}");
    (corr, p_ours, p_bart)
}

#[test]
fn phantom_maps_match_bart_ecalib() {
    require_bart!();
    let dir = tempfile::tempdir().unwrap();
    let kpath = dir.path().join("phantom");
    let status = Command::new("bart")
        .args(["phantom", "-k", "-s", "8", "-x", "128"])
        .arg(&kpath)
        .status()
        .unwrap();
    assert!(status.success());
    let full = cfl::read_coils(&kpath).unwrap();
    assert_eq!(full.dim(), (8, 128, 128));
    let reference = rss_image(&full);
    // R = 4 with 20 ACS columns: the calibration region is clipped to 24 x 20.
    let cols = mask::random_cartesian(128, 4.0, Acs::Lines(20), &mut ChaCha8Rng::seed_from_u64(1))
        .unwrap();
    let m = Mask::Columns(cols);
    let kspace = undersample(&full, &m);
    let (corr, p_ours, p_bart) = compare_with_bart("phantom", &kspace, &m, &reference);
    assert!(
        corr > 0.999,
        "map correlation {corr} (the issue asks > 0.98)"
    );
    assert!(
        (p_ours - p_bart).abs() < 0.3,
        "CG-SENSE PSNR ours {p_ours} vs BART {p_bart}"
    );
    // The phantom reaches the edge of the field of view, where BART's 30 power iterations do
    // not converge; converged eigenvectors give other maps there (recorded, not asserted).
    let converged = EspiritOptions {
        max_iterations: 1000,
        ..EspiritOptions::default()
    };
    let maps = espirit(kspace.view(), Some(&m), &converged).unwrap();
    println!(
        "phantom with converged power iterations: CG-SENSE PSNR {:.2} dB",
        cg_psnr(&maps, &kspace, &m, &reference)
    );
}

#[test]
fn colin27_maps_match_bart_ecalib() {
    require_bart!();
    require_colin27!();
    let acq = colin27_acquisition(0.002, 11);
    let m = acq.mask.clone();
    let (corr, p_ours, p_bart) = compare_with_bart("colin27", &acq.kspace, &m, &acq.reference);
    assert!(
        corr > 0.999,
        "map correlation {corr} (the issue asks > 0.98)"
    );
    assert!(
        (p_ours - p_bart).abs() < 0.3,
        "CG-SENSE PSNR ours {p_ours} vs BART {p_bart}"
    );
}

#[test]
fn espirit_recovers_the_true_birdcage_maps() {
    require_colin27!();
    let acq = colin27_acquisition(0.002, 11);
    let m = acq.mask.clone();
    let est = espirit_full(acq.kspace.view(), Some(&m), &EspiritOptions::default()).unwrap();
    // Unit norm where kept, zero where cropped, eigenvalues in [0, 1].
    let (_, h, w) = est.maps.dim();
    for y in 0..h {
        for x in 0..w {
            let n2: f32 = est
                .maps
                .slice(s![.., y, x])
                .iter()
                .map(|v| v.norm_sqr())
                .sum();
            let lambda = est.eigenvalues[(y, x)];
            assert!(
                (-1e-4..=1.0 + 1e-3).contains(&lambda),
                "eigenvalue {lambda}"
            );
            if lambda > 0.8 {
                assert!((n2 - 1.0).abs() < 1e-3, "({y}, {x}): |s|^2 = {n2}");
            } else {
                assert_eq!(n2, 0.0);
            }
        }
    }
    let corr = map_correlation(&est.maps, &acq.maps, &acq.reference);
    let p_est = cg_psnr(&est.maps, &acq.kspace, &m, &acq.reference);
    let p_true = cg_psnr(&acq.maps, &acq.kspace, &m, &acq.reference);
    let ratio = ratio_maps(acq.kspace.view(), Some(&m), &RatioOptions::default()).unwrap();
    let corr_ratio = map_correlation(&ratio, &acq.maps, &acq.reference);
    let p_ratio = cg_psnr(&ratio, &acq.kspace, &m, &acq.reference);
    println!(
        "colin27 vs true birdcage maps: ESPIRiT correlation {corr:.5}, CG-SENSE PSNR {p_est:.2} \
         dB (true maps {p_true:.2} dB); ratio maps correlation {corr_ratio:.5}, CG-SENSE PSNR \
         {p_ratio:.2} dB"
    );
    assert!(corr > 0.99, "ESPIRiT vs true maps correlation {corr}");
    assert!(
        p_est > p_true - 1.0,
        "CG-SENSE with ESPIRiT maps {p_est} dB vs true maps {p_true} dB"
    );
    // The ratio maps are close to the true maps where the image is bright, but their errors
    // where it is dark (edges, CSF, background) cost CG-SENSE about 4 dB here (measured 4.0 dB);
    // that is the price of the fast method and why ESPIRiT is the default.
    assert!(
        corr_ratio > 0.99,
        "ratio vs true maps correlation {corr_ratio}"
    );
    assert!(
        p_ratio > p_true - 5.0 && p_ratio < p_est,
        "CG-SENSE with ratio maps {p_ratio} dB vs true maps {p_true} dB, ESPIRiT {p_est} dB"
    );
}

/// ESPIRiT's eigenvector has eigenvalue 1 exactly when the coil images are a common image
/// times smooth maps: fully sampled data made from smooth maps give eigenvalue ~1 over the
/// object, and the maps equal the true ones (up to phase) there.
#[test]
fn espirit_finds_exact_smooth_maps_in_full_data() {
    let (h, w) = (64, 64);
    let maps = msm::coils::birdcage(4, h, w).unwrap();
    let image = Array2::from_shape_fn((h, w), |(y, x)| {
        let (dy, dx) = (y as f32 - 32.0, x as f32 - 30.0);
        let r2 = dy * dy / 400.0 + dx * dx / 300.0;
        if r2 < 1.0 {
            C32::from_polar(1.0 - 0.5 * r2, 0.3 * dx / 20.0)
        } else {
            C32::new(0.0, 0.0)
        }
    });
    let op = Sense::new(maps.clone()).unwrap();
    let kspace = msm::sense::Operator::forward(&op, image.view(), None);
    let est = espirit_full(kspace.view(), None, &EspiritOptions::default()).unwrap();
    assert_eq!((est.region.height(), est.region.width()), (24, 24));
    let inside: Vec<f32> = image
        .indexed_iter()
        .filter(|(_, v)| v.norm() > 0.6)
        .map(|((y, x), _)| est.eigenvalues[(y, x)])
        .collect();
    let min = inside.iter().cloned().fold(f32::INFINITY, f32::min);
    assert!(min > 0.95, "smallest eigenvalue inside the object {min}");
    let corr = map_correlation(&est.maps, &maps, &image);
    assert!(corr > 0.995, "correlation with the true maps {corr}");
}

#[test]
fn maps_are_deterministic_and_the_mask_is_optional() {
    require_colin27!();
    let acq = colin27_acquisition(0.002, 5);
    let m = acq.mask.clone();
    let opts = EspiritOptions::default();
    let a = espirit(acq.kspace.view(), Some(&m), &opts).unwrap();
    let b = espirit(acq.kspace.view(), None, &opts).unwrap();
    assert_eq!(
        a, b,
        "detecting the ACS from the data gives the same maps as the mask"
    );
    let r = calibration_region(acq.kspace.view(), Some(&m), 24).unwrap();
    assert_eq!((r.height(), r.width()), (24, 24), "{r:?}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let opts = EspiritOptions::default();
    // ACS too small for the kernel: 4 ACS columns, kernel 6.
    let mut k = Array3::<C32>::from_elem((4, 32, 32), C32::new(1.0, 0.5));
    let cols: Vec<bool> = (0..32)
        .map(|x| (14..18).contains(&x) || x % 8 == 0)
        .collect();
    let m = Mask::Columns(cols.clone());
    apply_mask(&mut k, &m);
    let e = espirit(k.view(), Some(&m), &opts).unwrap_err().to_string();
    assert!(e.contains("24x4") && e.contains("6x6"), "{e}");
    // A calibration size below the kernel is the same error.
    let full = Array3::<C32>::from_elem((2, 32, 32), C32::new(1.0, 0.0));
    let small = EspiritOptions { cal: 4, ..opts };
    let e = espirit(full.view(), None, &small).unwrap_err().to_string();
    assert!(e.contains("4x4") && e.contains("6x6"), "{e}");
    // Zero coils.
    let none = Array3::<C32>::zeros((0, 32, 32));
    for e in [
        espirit(none.view(), None, &opts).unwrap_err().to_string(),
        ratio_maps(none.view(), None, &RatioOptions::default())
            .unwrap_err()
            .to_string(),
    ] {
        assert!(e.contains("zero coils"), "{e}");
    }
    // NaN and Inf.
    let mut bad = full.clone();
    bad[(1, 5, 7)] = C32::new(f32::NAN, 0.0);
    for e in [
        espirit(bad.view(), None, &opts).unwrap_err().to_string(),
        ratio_maps(bad.view(), None, &RatioOptions::default())
            .unwrap_err()
            .to_string(),
    ] {
        assert!(
            e.contains("non-finite") && e.contains("coil 1, row 5, column 7"),
            "{e}"
        );
    }
    bad[(1, 5, 7)] = C32::new(0.0, f32::INFINITY);
    assert!(espirit(bad.view(), None, &opts).is_err());
    // All-zero calibration data.
    let zeros = Array3::<C32>::zeros((2, 32, 32));
    let e = espirit(zeros.view(), Some(&Mask::full(32)), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no signal"), "{e}");
    // Mask of another size, bad options.
    let e = espirit(full.view(), Some(&Mask::full(30)), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("30 columns"), "{e}");
    for bad_opts in [
        EspiritOptions { kernel: 0, ..opts },
        EspiritOptions {
            threshold: f32::NAN,
            ..opts
        },
        EspiritOptions { crop: 1.5, ..opts },
        EspiritOptions {
            max_iterations: 0,
            ..opts
        },
    ] {
        assert!(
            espirit(full.view(), None, &bad_opts).is_err(),
            "{bad_opts:?}"
        );
    }
    let e = ratio_maps(
        full.view(),
        None,
        &RatioOptions {
            threshold: -0.1,
            ..RatioOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("threshold"), "{e}");
}

/// Ratio maps: unit norm over the coils where unmasked, zero below the RSS threshold.
#[test]
fn ratio_maps_are_normalised_and_masked() {
    let (h, w) = (48, 40);
    let maps = msm::coils::birdcage(6, h, w).unwrap();
    let image = Array2::from_shape_fn((h, w), |(y, x)| {
        let (dy, dx) = (y as f32 - 24.0, x as f32 - 20.0);
        if dy * dy / 300.0 + dx * dx / 200.0 < 1.0 {
            C32::new(1.0, 0.0)
        } else {
            C32::new(0.0, 0.0)
        }
    });
    let op = Sense::new(maps.clone()).unwrap();
    let kspace = msm::sense::Operator::forward(&op, image.view(), None);
    let opts = RatioOptions {
        cal: 16,
        threshold: 0.2,
    };
    let r = ratio_maps(kspace.view(), None, &opts).unwrap();
    let (mut kept, mut masked) = (0, 0);
    for y in 0..h {
        for x in 0..w {
            let n2: f32 = r.slice(s![.., y, x]).iter().map(|v| v.norm_sqr()).sum();
            if n2 == 0.0 {
                masked += 1;
            } else {
                kept += 1;
                assert!((n2 - 1.0).abs() < 1e-4, "({y}, {x}): {n2}");
            }
        }
    }
    assert!(kept > 0 && masked > 0, "kept {kept}, masked {masked}");
    // The object's centre is kept, a far corner masked.
    assert!(r[(0, 24, 20)].norm() > 0.0);
    assert_eq!(r[(0, 0, 0)], C32::new(0.0, 0.0));
    let corr = map_correlation(&r, &maps, &image);
    assert!(corr > 0.98, "correlation with the true maps {corr}");
}
