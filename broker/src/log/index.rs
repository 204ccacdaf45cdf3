//! Sparse, memory-mapped segment indexes: offset → file position (`.index`) and
//! timestamp → offset (`.timeindex`), binary-searched.
//!
//! Owns: the index files' layout and growth. Must not: read the log file; the
//! segment decides which entries to add. Indexes are derived data: after an
//! unclean stop they are rebuilt from the log, so they are never fsynced on the
//! append path.

use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use super::fs::FileSystem;

/// Disk space is reserved in steps of this many bytes as an index grows.
const GROW_STEP: usize = 64 * 1024;

/// A fixed-size index entry, stored big-endian like Kafka's.
pub trait IndexEntry: Copy + std::fmt::Debug {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// The ordered search key (relative offset or timestamp).
    fn key(&self) -> i64;
    /// Writes the entry into `out` (exactly `SIZE` bytes).
    fn encode(&self, out: &mut [u8]);
    /// Reads an entry from `b` (exactly `SIZE` bytes).
    fn decode(b: &[u8]) -> Self;
}

/// `.index` entry: offset relative to the segment base → byte position in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn key(&self) -> i64 {
        self.relative_offset as i64
    }
    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// `.timeindex` entry: largest timestamp seen so far → relative offset of its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn key(&self) -> i64 {
        self.timestamp
    }
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        Self {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// An append-only array of entries in a memory-mapped file whose disk blocks
/// are reserved ahead of use.
#[derive(Debug)]
pub struct Index<E: IndexEntry> {
    path: PathBuf,
    file: File,
    map: Option<MmapMut>,
    len: usize,
    capacity: usize,
    max_entries: usize,
    _entry: PhantomData<E>,
}

impl<E: IndexEntry> Index<E> {
    /// Opens an index file. An existing file's whole length is taken as entries
    /// (a cleanly closed index is trimmed); `max_bytes` bounds its growth.
    pub fn open(fs: &dyn FileSystem, path: &Path, max_bytes: usize) -> io::Result<Self> {
        let file = fs.open_index(path, true)?;
        let bytes = file.metadata()?.len() as usize;
        let len = bytes / E::SIZE;
        let mut index = Self {
            path: path.to_owned(),
            file,
            map: None,
            len,
            capacity: len,
            max_entries: (max_bytes / E::SIZE).max(1),
            _entry: PhantomData,
        };
        if !bytes.is_multiple_of(E::SIZE) {
            // A torn index is useless; start it over (the caller rebuilds it).
            index.file.set_len(0)?;
            index.len = 0;
            index.capacity = 0;
        }
        index.remap()?;
        Ok(index)
    }

    fn remap(&mut self) -> io::Result<()> {
        self.map = None;
        if self.capacity > 0 {
            // SAFETY: the file belongs to this index alone (one per segment, opened
            // by this process only) and is never shrunk while mapped: `trim` and
            // `clear` drop the map before changing the length.
            #[allow(unsafe_code)]
            let map = unsafe { MmapMut::map_mut(&self.file)? };
            self.map = Some(map);
        }
        Ok(())
    }

    /// Path of the index file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether no further entry fits (`segment.index.bytes`); the segment must roll.
    pub fn is_full(&self) -> bool {
        self.len >= self.max_entries
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> Option<E> {
        if i >= self.len {
            return None;
        }
        let map = self.map.as_ref()?;
        Some(E::decode(&map[i * E::SIZE..(i + 1) * E::SIZE]))
    }

    /// The last entry.
    pub fn last(&self) -> Option<E> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }

    /// Appends an entry, reserving more disk first if needed. Fails cleanly on a full disk.
    pub fn push(&mut self, fs: &dyn FileSystem, entry: E) -> io::Result<()> {
        if self.is_full() {
            return Err(io::Error::other(format!(
                "{}: index is full",
                self.path.display()
            )));
        }
        if self.len == self.capacity {
            let step = (GROW_STEP / E::SIZE).max(1);
            let new_capacity = (self.capacity + step).min(self.max_entries);
            fs.allocate(&self.file, (new_capacity * E::SIZE) as u64)?;
            self.capacity = new_capacity;
            self.remap()?;
        }
        let i = self.len;
        if let Some(map) = self.map.as_mut() {
            entry.encode(&mut map[i * E::SIZE..(i + 1) * E::SIZE]);
        }
        self.len += 1;
        Ok(())
    }

    /// The last entry whose key is ≤ `key` (binary search).
    pub fn floor(&self, key: i64) -> Option<E> {
        let (mut lo, mut hi) = (0usize, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(e) if e.key() <= key => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.checked_sub(1).and_then(|i| self.get(i))
    }

    /// Drops every entry for which `keep` is false, from the first such entry on
    /// (entries are ordered, so the kept ones are a prefix).
    pub fn truncate_from(&mut self, mut keep: impl FnMut(&E) -> bool) {
        let mut new_len = 0;
        while new_len < self.len {
            match self.get(new_len) {
                Some(e) if keep(&e) => new_len += 1,
                _ => break,
            }
        }
        self.len = new_len;
    }

    /// Keeps only the first `len` entries.
    pub fn truncate_to_len(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Writes dirty pages back to the file.
    pub fn flush(&self) -> io::Result<()> {
        match &self.map {
            Some(map) => map.flush(),
            None => Ok(()),
        }
    }

    /// Flushes and shrinks the file to its entries (on roll and clean close).
    pub fn trim(&mut self) -> io::Result<()> {
        self.flush()?;
        self.map = None;
        self.file.set_len((self.len * E::SIZE) as u64)?;
        self.capacity = self.len;
        self.remap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::fs::StdFs;

    #[test]
    fn floor_matches_linear_scan_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.index");
        let mut idx = Index::<OffsetEntry>::open(&StdFs, &path, 1 << 20).expect("open");
        assert_eq!(idx.floor(10), None);
        // Enough entries to force several growth steps.
        for i in 0..20_000u32 {
            idx.push(
                &StdFs,
                OffsetEntry {
                    relative_offset: i * 3,
                    position: i * 100,
                },
            )
            .expect("push");
        }
        for key in [0i64, 1, 2, 3, 4, 29_999, 59_997, 59_998, 100_000] {
            let linear = (0..idx.len())
                .filter_map(|i| idx.get(i))
                .rfind(|e| e.key() <= key);
            assert_eq!(idx.floor(key), linear, "key {key}");
        }
        idx.trim().expect("trim");
        drop(idx);
        let idx = Index::<OffsetEntry>::open(&StdFs, &path, 1 << 20).expect("reopen");
        assert_eq!(idx.len(), 20_000);
        assert_eq!(
            idx.last(),
            Some(OffsetEntry {
                relative_offset: 59_997,
                position: 1_999_900
            })
        );
    }

    #[test]
    fn full_index_refuses_more_and_truncation_keeps_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut idx =
            Index::<TimeEntry>::open(&StdFs, &dir.path().join("0.timeindex"), 36).expect("open");
        for i in 0..3 {
            idx.push(
                &StdFs,
                TimeEntry {
                    timestamp: 10 * i,
                    relative_offset: i as u32,
                },
            )
            .expect("push");
        }
        assert!(idx.is_full());
        assert!(
            idx.push(
                &StdFs,
                TimeEntry {
                    timestamp: 99,
                    relative_offset: 9
                }
            )
            .is_err()
        );
        idx.truncate_from(|e| e.relative_offset < 2);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.floor(15).map(|e| e.timestamp), Some(10));
    }

    #[test]
    fn torn_index_file_is_started_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.index");
        std::fs::write(&path, [0u8; 13]).expect("write");
        let idx = Index::<OffsetEntry>::open(&StdFs, &path, 1 << 20).expect("open");
        assert!(idx.is_empty());
    }
}
