//! Leader-epoch checkpoint: for each leader epoch, the first offset written in it.
//! Followers use it to find where their log diverges from a new leader's.
//!
//! Owns: the `leader-epoch-checkpoint` file and its in-memory copy. Must not:
//! decide truncation; it only answers "where did epoch E end".

use std::io;
use std::path::{Path, PathBuf};

use super::fs::FileSystem;

/// Name of the checkpoint file in a partition directory.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
const FORMAT_VERSION: u32 = 0;

/// One epoch and the first offset appended in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The epochs of a partition's log, ascending in both epoch and start offset.
#[derive(Debug)]
pub struct EpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// Loads the checkpoint in `dir`; a missing or unreadable file yields an
    /// empty cache (recovery re-derives entries from the batches it scans).
    pub fn load(fs: &dyn FileSystem, dir: &Path) -> Self {
        let path = dir.join(CHECKPOINT_FILE);
        let entries = fs
            .read(&path)
            .ok()
            .and_then(|b| parse(&b))
            .unwrap_or_default();
        Self { path, entries }
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`, if it is newer than the
    /// latest epoch. Returns whether the cache changed (the caller persists it).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        match self.entries.last() {
            Some(last) if last.epoch >= epoch => false,
            _ => {
                // An epoch whose start is not after earlier ones supersedes them
                // (a leader that appended nothing in its epoch).
                self.entries.retain(|e| e.start_offset < start_offset);
                self.entries.push(EpochEntry {
                    epoch,
                    start_offset,
                });
                true
            }
        }
    }

    /// For a follower whose last fetched epoch is `epoch`: the largest epoch ≤
    /// `epoch` known here, and the offset where it ended (the start of the next
    /// epoch, or `log_end_offset` for the latest). `None` if no such epoch.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let i = self.entries.iter().rposition(|e| e.epoch <= epoch)?;
        let end = self
            .entries
            .get(i + 1)
            .map_or(log_end_offset, |next| next.start_offset);
        Some((self.entries[i].epoch, end))
    }

    /// Forgets epochs that start at or after `offset` (log truncated to `offset`).
    pub fn truncate_from_end(&mut self, offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < offset);
        before != self.entries.len()
    }

    /// Moves the start of the log to `offset`: epochs entirely before it are
    /// dropped and the one covering it now starts there.
    pub fn truncate_from_start(&mut self, offset: i64) -> bool {
        let Some(covering) = self.entries.iter().rposition(|e| e.start_offset <= offset) else {
            return false;
        };
        let changed = covering > 0 || self.entries[0].start_offset != offset;
        self.entries.drain(..covering);
        self.entries[0].start_offset = offset;
        changed
    }

    /// Writes the checkpoint atomically.
    pub fn persist(&self, fs: &dyn FileSystem) -> io::Result<()> {
        let mut text = format!("{FORMAT_VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        fs.write_atomic(&self.path, text.as_bytes())
    }
}

fn parse(bytes: &[u8]) -> Option<Vec<EpochEntry>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim().parse::<u32>().ok()? != FORMAT_VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries = Vec::with_capacity(count.min(1 << 16));
    for line in lines.take(count) {
        let mut parts = line.split_whitespace();
        let epoch = parts.next()?.parse().ok()?;
        let start_offset = parts.next()?.parse().ok()?;
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    (entries.len() == count).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::fs::StdFs;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache {
            path: PathBuf::from("/nonexistent"),
            entries: vec![],
        };
        for &(epoch, start) in entries {
            c.assign(epoch, start);
        }
        c
    }

    #[test]
    fn end_offset_for_epoch_table() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        let cases = [
            (0, None),
            (1, Some((1, 10))),
            (2, Some((1, 10))),
            (3, Some((3, 25))),
            (4, Some((4, 40))),
            (9, Some((4, 40))),
        ];
        for (epoch, want) in cases {
            assert_eq!(c.end_offset_for(epoch, 40), want, "epoch {epoch}");
        }
    }

    #[test]
    fn assign_ignores_old_epochs_and_supersedes_empty_ones() {
        let mut c = cache(&[(1, 0), (2, 5)]);
        assert!(!c.assign(1, 9));
        assert!(c.assign(3, 5)); // epoch 2 wrote nothing
        assert_eq!(
            c.entries(),
            &[
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 5
                }
            ]
        );
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (2, 10), (3, 20)]);
        assert!(c.truncate_from_end(15));
        assert_eq!(
            c.latest(),
            Some(EpochEntry {
                epoch: 2,
                start_offset: 10
            })
        );
        assert!(c.truncate_from_start(12));
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 12
            }]
        );
    }

    #[test]
    fn checkpoint_round_trips_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = EpochCache::load(&StdFs, dir.path());
        c.assign(0, 0);
        c.assign(7, 100);
        c.persist(&StdFs).expect("persist");
        assert_eq!(EpochCache::load(&StdFs, dir.path()).entries(), c.entries());
        std::fs::write(dir.path().join(CHECKPOINT_FILE), b"0\n5\n1 2\n").expect("write");
        assert!(EpochCache::load(&StdFs, dir.path()).entries().is_empty());
    }
}
