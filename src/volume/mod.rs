//! Whole volumes from multi-slice scans (fastMRI / ISMRMRD HDF5): fitting the scan's grid to the
//! model's ([`grid`]), resumable per-slice output ([`parts`]) and the volume files ([`output`]).
//!
//! A volume is reconstructed slice by slice. Slice `i` of a run seeded with `seed` is seeded
//! with [`slice_seed`]`(seed, i)`: its result depends on the seed and its index in the file,
//! never on which slices ran before it, how many ran at once, or whether the run was
//! interrupted and resumed. In a file of several images (ISMRMRD contrasts, phases,
//! repetitions or sets), the seed is first keyed by the image ([`image_seed`]), so each image
//! gets its own sampler noise and an image reconstructed alone (`--repetition 2`) gives the
//! bytes it has in the whole series (`--repetition all`).

pub mod grid;
pub mod output;
pub mod parts;

pub use grid::GridPlan;
pub use output::{read_volume, write_series, write_series_real, write_volume, VolumeFormat};
pub use parts::{Manifest, Parts};

/// The sampler seed of slice `index` (its index in the file) of a run seeded with `seed`:
/// SplitMix64 of the pair, in a stream separate from [`crate::sampler::sample_seed`]'s.
pub fn slice_seed(seed: u64, index: usize) -> u64 {
    // Offset the seed so that slice seeds and the sampler's per-sample seeds of the same `seed`
    // do not coincide.
    crate::sampler::sample_seed(seed ^ 0xD1B5_4A32_D192_ED03, index)
}

/// The seed of one image of a file of several: `seed` keyed by the values of the counters that
/// have several values in the file (`(index in COUNTERS, value)`,
/// [`crate::io::fastmri::COUNTERS`]). No such counter (a file of one image) leaves `seed` as it
/// is.
pub fn image_seed(seed: u64, image: &[(usize, u64)]) -> u64 {
    image.iter().fold(seed, |s, &(counter, value)| {
        let key = (counter as u64) << 56 ^ value;
        crate::sampler::sample_seed(s ^ 0x94D0_49BB_1331_11EB, key as usize)
    })
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
        // Images: one image keeps the seed; each counter value and counter gives another.
        assert_eq!(image_seed(7, &[]), 7);
        let images = [
            image_seed(7, &[(2, 0)]),
            image_seed(7, &[(2, 1)]),
            image_seed(7, &[(0, 1)]),
            image_seed(7, &[(0, 1), (2, 1)]),
            image_seed(8, &[(2, 0)]),
        ];
        for (i, a) in images.iter().enumerate() {
            assert_ne!(*a, 7);
            for b in &images[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
