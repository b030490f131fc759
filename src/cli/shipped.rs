//! The files the repository ships (its models and the example slice), found from any working
//! folder: a command's default `--model` is a path inside the repository, and a user who runs
//! `msm` from their data folder, or copies the binary with a `models/` folder beside it, must not
//! have to spell out where the shipped model is.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

/// The source checkout this binary was built from (where `cargo build` found `Cargo.toml`).
const SOURCE: &str = env!("CARGO_MANIFEST_DIR");

/// Where a shipped file, given by its path inside the repository (`models/...`), is looked for,
/// in order: the working folder, the executable's folder, the source checkout the binary was
/// built from.
pub fn candidates(relative: &Path) -> Vec<PathBuf> {
    let mut places = vec![relative.to_path_buf()];
    if let Some(folder) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        places.push(folder.join(relative));
    }
    places.push(Path::new(SOURCE).join(relative));
    places
}

/// A path argument that defaults to a shipped file: [`locate`] as clap's value parser (which
/// clap applies to the default too).
pub fn path_arg(value: &str) -> Result<PathBuf, Infallible> {
    Ok(locate(Path::new(value)))
}

/// A path inside the shipped `models/` folder that does not exist in the working folder is taken
/// from the first of [`candidates`] that exists. Any other path is kept as given, and so is one
/// found nowhere (the command's error then names it and lists the places searched).
pub fn locate(path: &Path) -> PathBuf {
    if !is_shipped(path) || path.exists() {
        return path.to_path_buf();
    }
    candidates(path)
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| path.to_path_buf())
}

/// Whether `path` names a file of the shipped `models/` folder (a relative path under it).
fn is_shipped(path: &Path) -> bool {
    path.is_relative() && path.starts_with("models")
}

/// The places [`path_arg`] searched for `path`, for an error message.
pub fn searched(path: &Path) -> String {
    if !is_shipped(path) {
        return path.display().to_string();
    }
    candidates(path)
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
