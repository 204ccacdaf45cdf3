//! Small durable-file helpers shared by the log store and the state machine:
//! replace a whole file atomically (write a temporary, fsync, rename, fsync
//! the directory) and fsync a directory.
//!
//! Owns: the crash-safety recipe for whole-file replacement. Must not: know
//! file formats.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An I/O failure on a named file, so messages say what and where.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct FileError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FileError {
    pub fn new(op: &'static str, path: &Path, source: io::Error) -> Self {
        FileError {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Replaces `path` with `bytes`. With `sync`, the new content and the rename
/// are on disk when this returns; without, the replacement is still atomic
/// (readers see the old or the new file) but may be lost on a crash.
pub fn replace_file(path: &Path, bytes: &[u8], sync: bool) -> Result<(), FileError> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| FileError::new("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| FileError::new("write", &tmp, e))?;
    if sync {
        f.sync_all().map_err(|e| FileError::new("fsync", &tmp, e))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(|e| FileError::new("rename onto", path, e))?;
    if sync && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Fsyncs a directory so renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FileError::new("fsync directory", dir, e))
}

/// Reads `path`, `Ok(None)` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::new("read", path, e)),
    }
}
