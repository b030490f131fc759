//! Whole volumes from multi-slice scans (fastMRI / ISMRMRD HDF5): fitting the scan's grid to the
//! model's ([`grid`]), resumable per-slice output ([`parts`]) and the volume files ([`output`]).
//!
//! A volume is reconstructed slice by slice. Slice `i` of a run seeded with `seed` is seeded
//! with [`slice_seed`]`(seed, i)`: its result depends on the seed and its index in the file,
//! never on which slices ran before it, how many ran at once, or whether the run was
//! interrupted and resumed.

pub mod grid;
pub mod output;
pub mod parts;

pub use grid::GridPlan;
pub use output::{read_volume, write_volume, VolumeFormat};
pub use parts::{Manifest, Parts};

/// The sampler seed of slice `index` (its index in the file) of a run seeded with `seed`:
/// SplitMix64 of the pair, in a stream separate from [`crate::sampler::sample_seed`]'s.
pub fn slice_seed(seed: u64, index: usize) -> u64 {
    // Offset the seed so that slice seeds and the sampler's per-sample seeds of the same `seed`
    // do not coincide.
    crate::sampler::sample_seed(seed ^ 0xD1B5_4A32_D192_ED03, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_seeds_differ_by_index_and_seed() {
        let a: Vec<u64> = (0..4).map(|i| slice_seed(7, i)).collect();
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert_ne!(slice_seed(7, 0), slice_seed(8, 0));
        assert_eq!(slice_seed(7, 2), a[2]);
        assert_ne!(slice_seed(7, 0), crate::sampler::sample_seed(7, 0));
    }
}
