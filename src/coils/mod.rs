//! Coil sensitivity maps: the analytic birdcage model used for simulation ([`birdcage()`]), and
//! estimation from the fully sampled k-space centre (the auto-calibration signal, ACS) of a
//! measured acquisition: ESPIRiT ([`espirit()`], module [`mod@espirit`]) and the fast
//! low-resolution ratio method ([`ratio_maps`], module [`ratio`]); coil compression
//! ([`Compression`]) and noise prewhitening ([`Whitening`]).
//!
//! All maps are `Array3<C32>` of shape `(coils, height, width)` and can be passed to
//! [`crate::sense::Sense::new`]. Both estimators find the calibration region the same way
//! ([`calib::calibration_region`]).

pub mod birdcage;
pub mod calib;
pub mod compress;
pub mod espirit;
pub mod ratio;
pub mod whiten;

pub use birdcage::{birdcage, birdcage_radius};
pub use calib::{calibration_region, CalRegion};
pub use compress::Compression;
pub use espirit::{espirit, espirit_full, Espirit, EspiritOptions};
pub use ratio::{ratio_maps, RatioOptions};
pub use whiten::Whitening;
