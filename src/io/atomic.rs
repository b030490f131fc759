//! Atomic file writes: data goes to a uniquely named temporary file in the destination's folder,
//! is flushed and synced, and is then renamed over the destination. On any error the temporary
//! file is removed, so a failed write never leaves partial output (and never clobbers an existing
//! file with a half-written one).

use crate::{Error, Result};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `path` atomically: `write` receives a buffered writer to a temporary file beside `path`;
/// if it returns `Ok`, the file is flushed, synced and renamed to `path`.
///
/// Any error (from `write`, the flush, the sync or the rename) removes the temporary file and is
/// reported as [`Error::io`] naming `path`. Writers that fail for a reason other than I/O (an
/// encoder error, say) should return `std::io::Error::other(message)`.
pub fn write_atomic<F>(path: impl AsRef<Path>, write: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let path = path.as_ref();
    let (temp, file) = TempFile::create(path)?;
    fill(path, file, write)?;
    temp.commit()
}

/// Writes files that belong together (a BART `.cfl`/`.hdr` pair, a simulated acquisition's
/// k-space, maps, mask and reference, a model and its card) as one set: all of them or none.
///
/// Every file is first written to a temporary file beside its destination and synced; only when
/// all are written are they renamed into place, in the order given. Any error before that removes
/// every temporary file and leaves the destinations as they were. A rename cannot fail for a
/// destination that is a folder (refused before anything is written), so a failure after the
/// first rename needs the file system itself to fail; then the files of the set already renamed
/// are removed again, so that no incomplete set survives (a file they replaced is not restored).
pub fn write_atomic_set(files: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    let mut temps = Vec::with_capacity(files.len());
    for (dest, bytes) in files {
        let (temp, file) = TempFile::create(dest)?;
        temps.push(temp);
        fill(dest, file, |w| w.write_all(bytes))?;
    }
    let mut renamed: Vec<PathBuf> = Vec::with_capacity(files.len());
    for temp in temps {
        let dest = temp.dest.clone();
        if let Err(e) = temp.commit() {
            // The temporary files not yet renamed are removed as the iterator drops them.
            for done in &renamed {
                let _ = fs::remove_file(done);
            }
            return Err(e);
        }
        renamed.push(dest);
    }
    Ok(())
}

/// Runs `write` on a buffered writer to `file`, then flushes and syncs it; errors name `dest`.
fn fill<F>(dest: &Path, file: File, write: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let mut buffered = BufWriter::new(file);
    write(&mut buffered)
        .and_then(|()| buffered.into_inner().map_err(|e| e.into_error()))
        .and_then(|file| file.sync_all())
        .map_err(|e| Error::io(dest, e))
}

/// Checks that the folder `dest` would be written in exists: an error naming `dest` and the
/// folder otherwise (a long run calls this before it starts, so as not to fail at its end).
pub fn check_folder(dest: &Path) -> Result<()> {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() && !p.is_dir() => Err(Error::format(
            dest,
            format!(
                "cannot be written: the folder {} does not exist; expected an existing folder",
                p.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// A temporary file beside its destination; removed on drop unless committed.
struct TempFile {
    dest: PathBuf,
    temp: PathBuf,
    committed: bool,
}

impl TempFile {
    /// Creates a new, uniquely named, empty temporary file in the folder of `dest`.
    fn create(dest: &Path) -> Result<(Self, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = dest.file_name().ok_or_else(|| {
            Error::io(
                dest,
                io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
            )
        })?;
        let folder = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if dest.is_dir() {
            return Err(Error::format(
                dest,
                "cannot be written: it is a folder; expected a file path",
            ));
        }
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut temp_name = OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".{}.{n}.tmp", std::process::id()));
            let temp = folder.join(temp_name);
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => {
                    let temp = TempFile {
                        dest: dest.to_path_buf(),
                        temp,
                        committed: false,
                    };
                    return Ok((temp, file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    check_folder(dest)?;
                    return Err(Error::io(dest, e));
                }
            }
        }
    }

    /// Renames the temporary file to its destination and syncs the folder (best effort).
    fn commit(mut self) -> Result<()> {
        fs::rename(&self.temp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.committed = true;
        if let Some(folder) = self.temp.parent() {
            if let Ok(dir) = File::open(folder) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}
