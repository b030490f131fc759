//! The conv net the benches time: conv3x3 2->32->64->64->32->2 with SiLU between and a
//! t-dependent bias, f16 weights, written with the crate's ONNX builder.

use msm::onnx::builder::{Attr, Dim, OnnxBuilder, WeightType};
use msm::onnx::meta::ModelMeta;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Channels of the successive layers.
pub const CHANNELS: [usize; 6] = [2, 32, 64, 64, 32, 2];

/// Writes the net for `size x size` images to `path`, weights drawn with `seed`.
pub fn write_net(path: &Path, size: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dims = [
        Dim::Batch,
        Dim::Fixed(2),
        Dim::Fixed(size),
        Dim::Fixed(size),
    ];
    let mut b = OnnxBuilder::new("bench", WeightType::F16);
    b.add_input("x", &dims).unwrap();
    b.add_input("t", &[Dim::Batch]).unwrap();
    let mut h = "x".to_string();
    for (l, io) in CHANNELS.windows(2).enumerate() {
        let (ci, co) = (io[0], io[1]);
        let scale = (1.0 / (ci * 9) as f32).sqrt();
        let w: Vec<f32> = (0..co * ci * 9)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        let w = b.add_weight(&format!("w{l}"), &[co, ci, 3, 3], &w).unwrap();
        let bias = b
            .add_weight(&format!("b{l}"), &[co], &vec![0.01; co])
            .unwrap();
        let attrs = vec![
            Attr::ints("kernel_shape", &[3, 3]),
            Attr::ints("pads", &[1, 1, 1, 1]),
        ];
        h = b.op("Conv", &[&h, &w, &bias], attrs).unwrap();
        if l + 2 < CHANNELS.len() {
            let s = b.op("Sigmoid", &[&h], vec![]).unwrap();
            h = b.op("Mul", &[&h, &s], vec![]).unwrap();
        }
    }
    let axes = b.add_i64("axes", &[3], &[1, 2, 3]).unwrap();
    let tc = b.op("Unsqueeze", &["t", &axes], vec![]).unwrap();
    let k = b.add_weight("k", &[1], &[1e-3]).unwrap();
    let tb = b.op("Mul", &[&tc, &k], vec![]).unwrap();
    b.add_node("Add", &[&h, &tb], &["eps"], vec![]).unwrap();
    b.add_output("eps", &dims);
    b.set_meta(&ModelMeta::new(size, size));
    b.write(path).unwrap();
}
