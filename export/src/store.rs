//! safetensors files with a JSON `__meta` entry, as msm-train writes them (checkpoints, prepared
//! scans): written atomically, read with their metadata checked for a format string.

use std::collections::HashMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::Tensor;

use msm::{Error, Result};

/// The name of the metadata entry (JSON as bytes).
pub const META_ENTRY: &str = "__meta";

/// Writes `meta` (as the `__meta` entry) and `entries` to `path` through a temporary file beside
/// it, so a reader never sees a partial file; `what` names the file in errors ("checkpoint").
pub fn write<M: Serialize>(
    path: &Path,
    meta: &M,
    entries: Vec<(String, Tensor)>,
    what: &str,
) -> Result<()> {
    let json = serde_json::to_vec(meta).map_err(|e| Error::invalid(e.to_string()))?;
    let mut all = vec![(META_ENTRY.to_string(), Tensor::from_slice(&json))];
    all.extend(entries);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    if let Err(e) = Tensor::write_safetensors(&all, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::format(&tmp, format!("cannot write {what}: {e}")));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Reads a file written by [`write()`]: its metadata (whose `format` field must be `format`) and
/// its other entries. `what` names the file in errors ("checkpoint", "prepared scans").
pub fn read<M: DeserializeOwned>(
    path: &Path,
    format: &str,
    what: &str,
) -> Result<(M, HashMap<String, Tensor>)> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("{what} not found")),
        ));
    }
    let entries = Tensor::read_safetensors(path).map_err(|e| {
        Error::format(
            path,
            format!(
                "not a readable {what} (expected a safetensors file written by msm-train): {e}"
            ),
        )
    })?;
    let mut map: HashMap<String, Tensor> = entries.into_iter().collect();
    let meta_t = map.remove(META_ENTRY).ok_or_else(|| {
        Error::format(
            path,
            format!("{what} has no `{META_ENTRY}` entry; not written by msm-train"),
        )
    })?;
    let bytes = Vec::<u8>::try_from(meta_t.reshape([-1]))
        .map_err(|e| Error::format(path, format!("bad `{META_ENTRY}` entry: {e}")))?;
    Ok((parse_meta(path, &bytes, format, what)?, map))
}

/// The metadata in the `__meta` entry's `bytes` of `path`: JSON whose `format` field must be
/// `format` (`what` names the file in errors).
pub fn parse_meta<M: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    format: &str,
    what: &str,
) -> Result<M> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::format(path, format!("bad `{META_ENTRY}` JSON: {e}")))?;
    let found = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
    if found != format {
        return Err(Error::format(
            path,
            format!("{what} format `{found}`, expected `{format}`"),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| Error::format(path, format!("bad `{META_ENTRY}` JSON: {e}")))
}
