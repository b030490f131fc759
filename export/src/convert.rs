//! Converts a guided-diffusion state_dict saved as `.safetensors` into an MSM ONNX model.
//!
//! A PyTorch checkpoint (`.pt`) becomes a safetensors file with
//! `safetensors.torch.save_file(torch.load("model.pt"), "model.safetensors")`.

use std::path::Path;

use tch::Tensor;

use crate::config::UNetConfig;
use crate::onnx::emit::Weights;
use crate::train::tensors_to_weights;
use msm::{Error, Result};

/// Reads a safetensors state_dict (any float dtype) into [`Weights`].
pub fn read_state_dict(path: &Path) -> Result<Weights> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "state_dict not found"),
        ));
    }
    let entries = Tensor::read_safetensors(path)
        .map_err(|e| Error::format(path, format!("not a readable safetensors state_dict: {e}")))?;
    tensors_to_weights(
        entries
            .iter()
            .map(|(n, t)| (n.strip_prefix("module.").unwrap_or(n), t)),
    )
    .map_err(|e| Error::format(path, e.to_string()))
}

/// Checks that `w` holds every parameter of `cfg` with the right shape (and nothing unexpected
/// that would suggest a different architecture), naming the first mismatch.
pub fn check_state_dict(cfg: &UNetConfig, w: &Weights, path: &Path) -> Result<()> {
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    crate::unet::UNet::new(&vs.root(), cfg)?;
    let expected = vs.variables();
    for (name, t) in &expected {
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        w.get(name, &shape)
            .map_err(|e| Error::format(path, e.to_string()))?;
    }
    if let Some(extra) = w.names().find(|n| !expected.contains_key(*n)) {
        return Err(Error::format(
            path,
            format!("state_dict has parameter `{extra}` that the architecture does not (class-conditional or a different layout?)"),
        ));
    }
    Ok(())
}
