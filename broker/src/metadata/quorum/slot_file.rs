//! A small value kept durable in place (the Raft vote, the committed log id):
//! two fixed 512-byte slots in one preallocated file, written alternately and,
//! when asked, made durable with `fdatasync`.
//!
//! Why not write-temp-and-rename: a rename needs a directory fsync, which on
//! a busy ext4 waits for a journal commit of everybody's dirty data — votes
//! took up to seconds that way and stretched elections. Overwriting already
//! allocated blocks does not change metadata that `fdatasync` must flush.
//! A torn slot fails its CRC and the other slot, holding the previous value,
//! wins; the higher sequence number among valid slots is the current value.
//!
//! Slot: `[seq: u64 BE][len: u32 BE][crc32c(seq, len, body): u32 BE][body: JSON]`.
//!
//! Owns: the value's bytes on disk. Must not: interpret the value.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::durable::{self, FileError};

const SLOT: usize = 512;
const SLOT_HEADER: usize = 16;

/// The vote file could not be read, written or decoded.
#[derive(Debug, thiserror::Error)]
pub enum SlotFileError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{}: value of {len} bytes does not fit a {SLOT}-byte slot", path.display())]
    TooLarge { path: PathBuf, len: usize },
    #[error("encoding value for a slot file: {0}")]
    Encode(#[source] serde_json::Error),
}

/// An open slot file holding a `T`.
#[derive(Debug)]
pub(crate) struct SlotFile<T> {
    path: PathBuf,
    file: File,
    /// Sequence number of the current value (0 = none yet).
    seq: u64,
    value: Option<T>,
}

impl<T: Serialize + DeserializeOwned + Clone> SlotFile<T> {
    /// Opens `path`, creating and preallocating it if missing.
    pub(crate) fn open(path: &Path) -> Result<SlotFile<T>, SlotFileError> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| FileError::new("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| FileError::new("stat", path, e))?
            .len();
        if len < (2 * SLOT) as u64 {
            // Real zeros, not a hole: later writes then allocate nothing.
            let mut zeros = vec![0u8; 2 * SLOT];
            let mut existing = vec![0u8; len as usize];
            file.read_exact_at(&mut existing, 0)
                .map_err(|e| FileError::new("read", path, e))?;
            zeros[..existing.len()].copy_from_slice(&existing);
            file.write_all_at(&zeros, 0)
                .and_then(|_| file.sync_all())
                .map_err(|e| FileError::new("preallocate", path, e))?;
        }
        if !existed && let Some(dir) = path.parent() {
            durable::sync_dir(dir)?;
        }
        let mut best: Option<(u64, T)> = None;
        for slot in 0..2 {
            let mut buf = [0u8; SLOT];
            file.read_exact_at(&mut buf, (slot * SLOT) as u64)
                .map_err(|e| FileError::new("read", path, e))?;
            if let Some((seq, value)) = decode(&buf)
                && best.as_ref().is_none_or(|(s, _)| seq > *s)
            {
                best = Some((seq, value));
            }
        }
        let (seq, value) = match best {
            Some((seq, value)) => (seq, Some(value)),
            None => (0, None),
        };
        Ok(SlotFile {
            path: path.to_path_buf(),
            file,
            seq,
            value,
        })
    }

    /// The current value.
    pub(crate) fn get(&self) -> Option<T> {
        self.value.clone()
    }

    /// Replaces the value; with `sync` it is durable when this returns. The
    /// previous value stays readable if this write is torn.
    pub(crate) fn save(&mut self, value: T, sync: bool) -> Result<(), SlotFileError> {
        let body = serde_json::to_vec(&value).map_err(SlotFileError::Encode)?;
        if body.len() > SLOT - SLOT_HEADER {
            return Err(SlotFileError::TooLarge {
                path: self.path.clone(),
                len: body.len(),
            });
        }
        let seq = self.seq + 1;
        let mut buf = [0u8; SLOT];
        buf[..8].copy_from_slice(&seq.to_be_bytes());
        buf[8..12].copy_from_slice(&(body.len() as u32).to_be_bytes());
        buf[SLOT_HEADER..SLOT_HEADER + body.len()].copy_from_slice(&body);
        let crc = checksum(&buf[..12], &body);
        buf[12..16].copy_from_slice(&crc.to_be_bytes());
        let offset = (seq % 2) * SLOT as u64;
        self.file
            .write_all_at(&buf, offset)
            .and_then(|_| if sync { self.file.sync_data() } else { Ok(()) })
            .map_err(|e| FileError::new("write slot of", &self.path, e))?;
        self.seq = seq;
        self.value = Some(value);
        Ok(())
    }
}

fn checksum(header: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header), body)
}

fn decode<T: DeserializeOwned>(slot: &[u8; SLOT]) -> Option<(u64, T)> {
    let seq = u64::from_be_bytes(slot[..8].try_into().ok()?);
    let len = u32::from_be_bytes(slot[8..12].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(slot[12..16].try_into().ok()?);
    if seq == 0 || len > SLOT - SLOT_HEADER {
        return None;
    }
    let body = &slot[SLOT_HEADER..SLOT_HEADER + len];
    if checksum(&slot[..12], body) != crc {
        return None;
    }
    Some((seq, serde_json::from_slice(body).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::quorum::types::Vote;

    type VoteFile = SlotFile<Vote>;

    #[test]
    fn latest_value_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vote");
        let mut f = VoteFile::open(&path).unwrap();
        assert_eq!(f.get(), None);
        f.save(Vote::new(1, 1), true).unwrap();
        f.save(Vote::new(2, 3), true).unwrap();
        f.save(Vote::new_committed(2, 3), false).unwrap();
        drop(f);
        let mut f = VoteFile::open(&path).unwrap();
        assert_eq!(f.get(), Some(Vote::new_committed(2, 3)));
        f.save(Vote::new(3, 1), true).unwrap();
        assert_eq!(VoteFile::open(&path).unwrap().get(), Some(Vote::new(3, 1)));
    }

    #[test]
    fn torn_slot_falls_back_to_the_previous_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vote");
        let mut f = VoteFile::open(&path).unwrap();
        f.save(Vote::new(4, 1), true).unwrap(); // seq 1, slot 1
        f.save(Vote::new(5, 2), true).unwrap(); // seq 2, slot 0
        drop(f);
        // Tear the newest slot's body.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"\xff\xff", SLOT_HEADER as u64 + 3)
            .unwrap();
        drop(file);
        let f = VoteFile::open(&path).unwrap();
        assert_eq!(f.get(), Some(Vote::new(4, 1)));
    }
}
