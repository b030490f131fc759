//! Resumable volume output: a work folder `<output>.parts/` beside the output holding one finished
//! file per slice and a manifest of the settings that produced them.
//!
//! # Layout
//! - `manifest.txt`: a first line naming the format (`msm volume parts 1`), then one
//!   `key: value` line per setting (input file, model file and its checksum, sampler settings,
//!   seed, coil maps, mask, grids, ...). A rerun whose settings differ in any line is refused
//!   with the differing lines listed (or, on request, the folder is cleared and the run starts
//!   over), so parts made with different settings are never mixed.
//! - `slice-NNNNN.npy`: slice `NNNNN` (its index in the input file), a complex64 `.npy`
//!   image on the output grid.
//!
//! Every file is written to a temporary file in the folder and renamed into place
//! ([`crate::io::atomic`]), so a part either exists complete or not at all; temporary files left
//! by a killed run are removed when the folder is opened again. The folder and its manifest
//! are created when the first slice is finished, so a run that fails before that leaves
//! nothing behind.

use crate::io::{atomic, npy};
use crate::{Error, Result, C32};
use ndarray::{Array2, Ix2};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// First line of a manifest; changes when the layout does.
const MAGIC: &str = "msm volume parts 1";
/// The manifest's file name inside the parts folder.
const MANIFEST: &str = "manifest.txt";

/// The settings a set of parts was made with: ordered `key: value` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<(String, String)>,
}

impl Manifest {
    /// An empty manifest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the setting `key` (no `:` or line break) with `value` (line breaks become spaces).
    pub fn add(&mut self, key: &str, value: impl std::fmt::Display) {
        debug_assert!(!key.contains(':') && !key.contains('\n'));
        let value = value.to_string().replace(['\n', '\r'], " ");
        self.entries.push((key.to_string(), value));
    }

    /// The manifest as text.
    pub fn to_text(&self) -> String {
        let mut text = format!("{MAGIC}\n");
        for (k, v) in &self.entries {
            text.push_str(&format!("{k}: {v}\n"));
        }
        text
    }

    /// Parses [`Manifest::to_text`]'s output; `None` if the text is not a manifest.
    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let entries = lines
            .map(|l| {
                l.split_once(": ")
                    .or_else(|| l.strip_suffix(':').map(|k| (k, "")))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Manifest { entries })
    }

    /// The lines where `self` (the stored settings) and `now` differ, as
    /// `key: stored -> now`.
    fn differences(&self, now: &Manifest) -> Vec<String> {
        let get = |m: &Manifest, key: &str| {
            m.entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let mut keys: Vec<&str> = self.entries.iter().map(|(k, _)| k.as_str()).collect();
        for (k, _) in &now.entries {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
        keys.into_iter()
            .filter_map(|k| {
                let (a, b) = (get(self, k), get(now, k));
                (a != b).then(|| {
                    format!(
                        "{k}: {} -> {}",
                        a.as_deref().unwrap_or("(absent)"),
                        b.as_deref().unwrap_or("(absent)")
                    )
                })
            })
            .collect()
    }
}

/// The parts folder of one output (module documentation).
#[derive(Debug)]
pub struct Parts {
    dir: PathBuf,
    manifest: Manifest,
    shape: (usize, usize),
    done: Vec<usize>,
    /// Whether the folder and its manifest exist (created with the first part).
    created: Mutex<bool>,
}

impl Parts {
    /// The parts folder of `output`: `<output>.parts` beside it.
    pub fn dir_for(output: &Path) -> PathBuf {
        let mut name = OsString::from(output.as_os_str());
        name.push(".parts");
        PathBuf::from(name)
    }

    /// Opens the parts folder of `output` for a run with settings `manifest` producing images of
    /// `shape`. When the folder exists: with `restart`, its files are removed first; otherwise
    /// its manifest must equal `manifest` (else an error lists the differences) and its finished
    /// slices are found. Stale temporary files are removed. Nothing is created here.
    pub fn open(
        output: &Path,
        manifest: Manifest,
        shape: (usize, usize),
        restart: bool,
    ) -> Result<Parts> {
        let dir = Self::dir_for(output);
        let mut parts = Parts {
            dir,
            manifest,
            shape,
            done: Vec::new(),
            created: Mutex::new(false),
        };
        if !parts.dir.exists() {
            return Ok(parts);
        }
        if !parts.dir.is_dir() {
            return Err(Error::format(
                &parts.dir,
                "exists but is not a folder; expected the parts folder of the output (remove it \
                 or choose another output name)",
            ));
        }
        if restart {
            parts.clear()?;
            return Ok(parts);
        }
        let listing = parts.listing()?;
        for temp in &listing.temporary {
            std::fs::remove_file(temp).map_err(|e| Error::io(temp, e))?;
        }
        let manifest_path = parts.dir.join(MANIFEST);
        if listing.manifest {
            let text = std::fs::read_to_string(&manifest_path)
                .map_err(|e| Error::io(&manifest_path, e))?;
            let stored = Manifest::parse(&text).ok_or_else(|| {
                Error::format(
                    &manifest_path,
                    format!(
                        "is not a parts manifest (expected a first line {MAGIC:?} and `key: \
                         value` lines); pass --restart to discard the folder's parts"
                    ),
                )
            })?;
            let diff = stored.differences(&parts.manifest);
            if !diff.is_empty() {
                return Err(Error::format(
                    &manifest_path,
                    format!(
                        "the {} finished slice(s) in this folder were made with other settings \
                         ({}); rerun with the same settings to resume, or pass --restart to \
                         discard them and start over",
                        listing.slices.len(),
                        diff.join("; ")
                    ),
                ));
            }
            *parts.created.get_mut().unwrap_or_else(|e| e.into_inner()) = true;
        } else if !listing.slices.is_empty() {
            return Err(Error::format(
                &parts.dir,
                format!(
                    "holds {} slice file(s) but no {MANIFEST}, so the settings they were made \
                     with are unknown; pass --restart to discard them",
                    listing.slices.len()
                ),
            ));
        }
        parts.done = listing.slices;
        Ok(parts)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Slice indices finished by earlier runs (found by [`Parts::open`]), ascending.
    pub fn done(&self) -> &[usize] {
        &self.done
    }

    /// The file of slice `index`.
    pub fn path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("slice-{index:05}.npy"))
    }

    /// Writes slice `index` atomically, creating the folder and the manifest first if this is
    /// the first part. Safe to call from several threads.
    pub fn write(&self, index: usize, image: &Array2<C32>) -> Result<()> {
        if image.dim() != self.shape {
            return Err(Error::invalid(format!(
                "slice {index} is {:?} but the parts of {} are {:?}",
                image.dim(),
                self.dir.display(),
                self.shape
            )));
        }
        {
            let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
            if !*created {
                std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
                let text = self.manifest.to_text();
                atomic::write_atomic(self.dir.join(MANIFEST), |w| w.write_all(text.as_bytes()))?;
                *created = true;
            }
        }
        npy::write_npy(self.path(index), image)
    }

    /// Reads slice `index`; errors name the file and say how to recover.
    pub fn read(&self, index: usize) -> Result<Array2<C32>> {
        let path = self.path(index);
        let image = npy::read_npy_as::<C32, Ix2>(&path)?;
        if image.dim() != self.shape {
            return Err(Error::format(
                &path,
                format!(
                    "holds a {:?} image; expected {:?} (the output grid); pass --restart to \
                     discard the parts",
                    image.dim(),
                    self.shape
                ),
            ));
        }
        Ok(image)
    }

    /// Removes the folder's files (manifest, slices, temporary files) and the folder. Any other
    /// file in it is left alone and makes this an error, so nothing but parts is ever deleted.
    pub fn clear(&self) -> Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        let listing = self.listing()?;
        let mut files = listing.temporary;
        files.extend(listing.slices.iter().map(|&i| self.path(i)));
        if listing.manifest {
            files.push(self.dir.join(MANIFEST));
        }
        for f in &files {
            std::fs::remove_file(f).map_err(|e| Error::io(f, e))?;
        }
        std::fs::remove_dir(&self.dir).map_err(|e| {
            Error::io(
                &self.dir,
                std::io::Error::new(
                    e.kind(),
                    format!("cannot remove the parts folder ({e}); does it hold other files?"),
                ),
            )
        })?;
        *self.created.lock().unwrap_or_else(|e| e.into_inner()) = false;
        Ok(())
    }

    /// The folder's files by kind; other files are an error.
    fn listing(&self) -> Result<Listing> {
        let mut listing = Listing::default();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == MANIFEST {
                listing.manifest = true;
            } else if name.starts_with('.') && name.ends_with(".tmp") {
                listing.temporary.push(entry.path());
            } else if let Some(index) = name
                .strip_prefix("slice-")
                .and_then(|n| n.strip_suffix(".npy"))
                .filter(|n| n.len() == 5)
                .and_then(|n| n.parse::<usize>().ok())
            {
                listing.slices.push(index);
            } else {
                return Err(Error::format(
                    entry.path(),
                    format!(
                        "is not a part of a volume; expected only {MANIFEST} and slice-NNNNN.npy \
                         files in the parts folder {}",
                        self.dir.display()
                    ),
                ));
            }
        }
        listing.slices.sort_unstable();
        Ok(listing)
    }
}

/// What a parts folder holds.
#[derive(Default)]
struct Listing {
    manifest: bool,
    slices: Vec<usize>,
    temporary: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(steps: usize) -> Manifest {
        let mut m = Manifest::new();
        m.add("input", "/data/scan.h5");
        m.add("steps", steps);
        m
    }

    #[test]
    fn parts_resume_refuse_other_settings_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("vol.nii");
        let image = Array2::from_elem((3, 2), C32::new(1.0, -2.0));
        let p = Parts::open(&out, manifest(10), (3, 2), false).unwrap();
        assert!(
            !p.dir().exists(),
            "nothing is created before the first part"
        );
        p.write(4, &image).unwrap();
        p.write(1, &image).unwrap();
        assert!(p.write(2, &Array2::zeros((2, 2))).is_err());
        // A stale temporary file of a killed run.
        std::fs::write(p.dir().join(".slice-00002.npy.1.0.tmp"), b"half").unwrap();

        let again = Parts::open(&out, manifest(10), (3, 2), false).unwrap();
        assert_eq!(again.done(), &[1, 4]);
        assert_eq!(again.read(4).unwrap(), image);
        assert!(!p.dir().join(".slice-00002.npy.1.0.tmp").exists());

        let e = Parts::open(&out, manifest(20), (3, 2), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("steps: 10 -> 20") && e.contains("--restart"),
            "{e}"
        );

        let fresh = Parts::open(&out, manifest(20), (3, 2), true).unwrap();
        assert!(fresh.done().is_empty());
        assert!(!fresh.dir().exists());

        // A folder with a foreign file is never emptied.
        std::fs::create_dir(fresh.dir()).unwrap();
        std::fs::write(fresh.dir().join("notes.txt"), b"mine").unwrap();
        let e = Parts::open(&out, manifest(20), (3, 2), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("notes.txt"), "{e}");
        assert!(fresh.dir().join("notes.txt").exists());
    }

    #[test]
    fn manifest_round_trips_and_lists_differences() {
        let mut m = manifest(3);
        m.add("empty", "");
        m.add("multi", "a\nb");
        let back = Manifest::parse(&m.to_text()).unwrap();
        assert_eq!(back, m);
        assert!(Manifest::parse("something else\n").is_none());
        let mut other = manifest(3);
        other.add("extra", 1);
        assert_eq!(
            manifest(3).differences(&other),
            vec!["extra: (absent) -> 1".to_string()]
        );
    }
}
