//! The Raft log and vote on disk (openraft `RaftLogStorage`).
//!
//! Layout under the quorum directory:
//! - `log`: append-only records `[len: u32 BE][crc32c(body): u32 BE][body: JSON]`,
//!   each body a log entry or a purge marker. An entry is fsynced before
//!   openraft is told it is durable. On open, the first record that is short,
//!   fails its CRC or does not decode ends the log: the torn tail is cut off.
//!   A purge rewrites the file (marker + remaining entries) and renames it
//!   into place; metadata logs are small and purges rare.
//! - `vote`: the vote, a `slot_file` fdatasynced in place.
//! - `committed`: the last committed log id known here, a `slot_file` written
//!   in place but not synced — it only lets a restarted node re-apply
//!   committed entries without waiting for a leader; losing it is safe.
//!
//! Owns: durability and recovery of log entries and the vote. Must not: apply
//! entries (that is `state_machine`) or decide what to truncate or purge
//! (openraft does).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError};
use serde::{Deserialize, Serialize};

use super::durable::{self, FileError};
use super::frame::MAX_FRAME;
use super::slot_file::{SlotFile, SlotFileError};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOG_FILE: &str = "log";
const VOTE_FILE: &str = "vote";
const COMMITTED_FILE: &str = "committed";
/// A write slower than this is logged.
const SLOW_WRITE: Duration = Duration::from_millis(100);
/// Length and CRC before each record body.
const HEADER: usize = 8;

/// A log store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("encoding a raft log record: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("raft log store lock poisoned by an earlier panic")]
    Poisoned,
    #[error(transparent)]
    Slot(#[from] SlotFileError),
    #[error("raft log store background task failed: {0}")]
    Task(String),
}

/// What one record body holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LogRecord {
    Entry(Entry),
    /// Entries up to and including this id were purged.
    Purged(LogId),
}

/// The log store; clones share one file (openraft wants a separate reader).
///
/// Two locks, so readers never wait for an fsync: `file` is held by writers
/// (on the blocking pool) across the write and fsync; `index` only briefly,
/// to read or publish entries.
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    file: Arc<Mutex<LogFile>>,
    index: Arc<Mutex<LogIndex>>,
}

/// The open log file; only writers touch it.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: File,
    /// Length of the valid part of the file; the next record goes here.
    len: u64,
    vote: SlotFile<Vote>,
    committed: SlotFile<Option<LogId>>,
}

/// What is durable, in memory.
#[derive(Debug)]
struct LogIndex {
    /// index -> (file offset of its record, entry)
    entries: BTreeMap<u64, (u64, Entry)>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

impl LogStore {
    /// Opens (or creates) the log under `dir`, cutting a torn tail.
    pub(crate) fn open(dir: &Path) -> Result<LogStore, LogStoreError> {
        let (file, index) = open_files(dir)?;
        Ok(LogStore {
            file: Arc::new(Mutex::new(file)),
            index: Arc::new(Mutex::new(index)),
        })
    }

    fn index(&self) -> Result<MutexGuard<'_, LogIndex>, LogStoreError> {
        self.index.lock().map_err(|_| LogStoreError::Poisoned)
    }

    /// Runs a write on the blocking pool, holding the file lock.
    async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T, LogStoreError>
    where
        F: FnOnce(&mut LogFile, &Mutex<LogIndex>) -> Result<T, LogStoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (file, index) = (self.file.clone(), self.index.clone());
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let mut file = file.lock().map_err(|_| LogStoreError::Poisoned)?;
            f(&mut file, &index)
        })
        .await
        .map_err(|e| LogStoreError::Task(e.to_string()))?;
        let took = started.elapsed();
        if took > SLOW_WRITE {
            // Slow fsyncs stretch elections and commits; make them visible.
            tracing::warn!(
                op,
                took_ms = took.as_millis() as u64,
                "slow raft storage write"
            );
        }
        result
    }
}

fn lock_index(index: &Mutex<LogIndex>) -> Result<MutexGuard<'_, LogIndex>, LogStoreError> {
    index.lock().map_err(|_| LogStoreError::Poisoned)
}

fn encode_record(buf: &mut Vec<u8>, record: &LogRecord) -> Result<(), LogStoreError> {
    let body = serde_json::to_vec(record).map_err(LogStoreError::Encode)?;
    let len =
        u32::try_from(body.len()).map_err(|_| LogStoreError::Task("record over 4 GiB".into()))?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    buf.extend_from_slice(&body);
    Ok(())
}

/// Encodes `entries` as records starting at file offset `base`; returns their offsets.
fn encode_entries(
    buf: &mut Vec<u8>,
    base: u64,
    entries: Vec<Entry>,
) -> Result<Vec<(u64, Entry)>, LogStoreError> {
    let mut placed = Vec::with_capacity(entries.len());
    for e in entries {
        let offset = base + buf.len() as u64;
        let record = LogRecord::Entry(e);
        encode_record(buf, &record)?;
        let LogRecord::Entry(e) = record else {
            unreachable!("constructed as an entry above")
        };
        placed.push((offset, e));
    }
    Ok(placed)
}

/// Decodes records from the start of `bytes`; returns them with their offsets,
/// the length of the valid prefix and, if the prefix is shorter than the
/// file, why decoding stopped.
fn scan(bytes: &[u8]) -> (Vec<(u64, LogRecord)>, usize, Option<&'static str>) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + HEADER) else {
            return (out, pos, Some("partial record header"));
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_FRAME {
            return (out, pos, Some("record length out of range"));
        }
        let Some(body) = bytes.get(pos + HEADER..pos + HEADER + len) else {
            return (out, pos, Some("partial record body"));
        };
        if crc32c::crc32c(body) != crc {
            return (out, pos, Some("crc mismatch"));
        }
        let Ok(record) = serde_json::from_slice::<LogRecord>(body) else {
            return (out, pos, Some("undecodable record"));
        };
        out.push((pos as u64, record));
        pos += HEADER + len;
    }
    (out, pos, None)
}

fn open_files(dir: &Path) -> Result<(LogFile, LogIndex), LogStoreError> {
    std::fs::create_dir_all(dir).map_err(|e| FileError::new("create directory", dir, e))?;
    let path = dir.join(LOG_FILE);
    let existed = path.exists();
    let bytes = durable::read_optional(&path)?.unwrap_or_default();
    let (records, valid, cut) = scan(&bytes);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| FileError::new("open", &path, e))?;
    if let Some(reason) = cut {
        tracing::warn!(
            path = %path.display(),
            offset = valid,
            dropped_bytes = bytes.len() - valid,
            reason,
            "cutting torn tail of the raft log"
        );
        file.set_len(valid as u64)
            .and_then(|_| file.sync_all())
            .map_err(|e| FileError::new("truncate torn tail of", &path, e))?;
    }
    if !existed {
        durable::sync_dir(dir)?;
    }
    let mut entries = BTreeMap::new();
    let mut last_purged: Option<LogId> = None;
    for (offset, record) in records {
        match record {
            LogRecord::Entry(e) => {
                entries.insert(e.log_id.index, (offset, e));
            }
            LogRecord::Purged(id) => {
                entries.retain(|i, _| *i > id.index);
                last_purged = Some(id);
            }
        }
    }
    let vote_file = SlotFile::open(&dir.join(VOTE_FILE))?;
    let vote = vote_file.get();
    let committed_file = SlotFile::open(&dir.join(COMMITTED_FILE))?;
    let committed = committed_file.get().flatten();
    Ok((
        LogFile {
            path,
            file,
            len: valid as u64,
            vote: vote_file,
            committed: committed_file,
        },
        LogIndex {
            entries,
            last_purged,
            vote,
            committed,
        },
    ))
}

/// Appends and fsyncs `new`, then publishes it.
fn append(
    file: &mut LogFile,
    index: &Mutex<LogIndex>,
    new: Vec<Entry>,
) -> Result<(), LogStoreError> {
    let mut buf = Vec::new();
    let placed = encode_entries(&mut buf, file.len, new)?;
    let path = &file.path;
    file.file
        .seek(SeekFrom::Start(file.len))
        .and_then(|_| file.file.write_all(&buf))
        .and_then(|_| file.file.sync_data())
        .map_err(|e| FileError::new("append to", path, e))?;
    file.len += buf.len() as u64;
    let mut index = lock_index(index)?;
    for (offset, e) in placed {
        index.entries.insert(e.log_id.index, (offset, e));
    }
    Ok(())
}

/// Removes entries at `since` and after.
fn truncate(file: &mut LogFile, index: &Mutex<LogIndex>, since: u64) -> Result<(), LogStoreError> {
    let offset = {
        let mut index = lock_index(index)?;
        let Some((_, (offset, _))) = index.entries.range(since..).next() else {
            return Ok(());
        };
        let offset = *offset;
        index.entries.split_off(&since);
        offset
    };
    file.file
        .set_len(offset)
        .and_then(|_| file.file.sync_data())
        .map_err(|e| FileError::new("truncate", &file.path, e))?;
    file.len = offset;
    Ok(())
}

/// Drops entries up to and including `upto`, rewriting the file.
fn purge(file: &mut LogFile, index: &Mutex<LogIndex>, upto: LogId) -> Result<(), LogStoreError> {
    // Entries only change under the file lock, which this holds: the copy stays current.
    let kept: Vec<Entry> = lock_index(index)?
        .entries
        .range(upto.index + 1..)
        .map(|(_, (_, e))| e.clone())
        .collect();
    let mut buf = Vec::new();
    encode_record(&mut buf, &LogRecord::Purged(upto))?;
    let placed = encode_entries(&mut buf, 0, kept)?;
    durable::replace_file(&file.path, &buf, true)?;
    file.file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file.path)
        .map_err(|e| FileError::new("reopen", &file.path, e))?;
    file.len = buf.len() as u64;
    let mut index = lock_index(index)?;
    index.entries = placed
        .into_iter()
        .map(|(o, e)| (e.log_id.index, (o, e)))
        .collect();
    index.last_purged = Some(upto);
    Ok(())
}

fn save_vote(file: &mut LogFile, index: &Mutex<LogIndex>, vote: Vote) -> Result<(), LogStoreError> {
    file.vote.save(vote, true)?;
    lock_index(index)?.vote = Some(vote);
    Ok(())
}

fn save_committed(
    file: &mut LogFile,
    index: &Mutex<LogIndex>,
    committed: Option<LogId>,
) -> Result<(), LogStoreError> {
    if lock_index(index)?.committed == committed {
        return Ok(());
    }
    file.committed.save(committed, false)?;
    lock_index(index)?.committed = committed;
    Ok(())
}

fn read_err(e: LogStoreError) -> StorageError {
    StorageIOError::read_logs(openraft::AnyError::new(&e)).into()
}

fn write_err(e: LogStoreError) -> StorageError {
    StorageIOError::write_logs(openraft::AnyError::new(&e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let index = self.index().map_err(read_err)?;
        Ok(index
            .entries
            .range(range)
            .map(|(_, (_, e))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let index = self.index().map_err(read_err)?;
        let last = index.entries.values().next_back().map(|(_, e)| e.log_id);
        Ok(LogState {
            last_purged_log_id: index.last_purged,
            last_log_id: last.or(index.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.write("save vote", move |file, index| save_vote(file, index, vote))
            .await
            .map_err(|e| StorageIOError::write_vote(openraft::AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.index().map_err(read_err)?.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write("save committed", move |file, index| {
            save_committed(file, index, committed)
        })
        .await
        .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.index().map_err(read_err)?.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        match self
            .write("append", move |file, index| append(file, index, entries))
            .await
        {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncating raft log");
        self.write("truncate", move |file, index| {
            truncate(file, index, log_id.index)
        })
        .await
        .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purging raft log");
        self.write("purge", move |file, index| purge(file, index, log_id))
            .await
            .map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

    use super::*;
    use crate::metadata::MetadataRecord;
    use crate::metadata::quorum::types::Batch;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Batch {
                records: vec![MetadataRecord::ProducerIdsAllocated { next: index as i64 }],
            }),
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.index().unwrap().entries.keys().copied().collect()
    }

    fn append_now(store: &LogStore, entries: Vec<Entry>) {
        append(&mut store.file.lock().unwrap(), &store.index, entries).unwrap();
    }

    #[tokio::test]
    async fn torn_tail_is_cut_on_open_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
            append_now(&store, vec![entry(1, 1), entry(1, 2), entry(1, 3)]);
        }
        let path = dir.path().join(LOG_FILE);
        let full = std::fs::metadata(&path).unwrap().len();
        // Tear the last record in half, as a crash mid-write would.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 5).unwrap();
        drop(f);

        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![1, 2]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.unwrap().index, 2);
        append_now(&store, vec![entry(2, 3)]);
        drop(store);

        let mut store = LogStore::open(dir.path()).unwrap();
        let got = store.try_get_log_entries(0..10).await.unwrap();
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(got[2].log_id.leader_id.term, 2);
    }

    #[tokio::test]
    async fn corrupt_crc_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
            append_now(&store, vec![entry(1, 1), entry(1, 2)]);
        }
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![1]);
    }

    #[tokio::test]
    async fn vote_and_committed_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let vote = Vote::new_committed(7, 2);
        let committed = LogId::new(CommittedLeaderId::new(7, 2), 12);
        {
            let mut store = LogStore::open(dir.path()).unwrap();
            assert_eq!(store.read_vote().await.unwrap(), None);
            store.save_vote(&vote).await.unwrap();
            store.save_committed(Some(committed)).await.unwrap();
        }
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        assert_eq!(store.read_committed().await.unwrap(), Some(committed));
    }

    #[tokio::test]
    async fn truncate_and_purge_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = LogStore::open(dir.path()).unwrap();
            let entries: Vec<Entry> = (1..=6).map(|i| entry(1, i)).collect();
            append_now(&store, entries);
            store.truncate(entry(1, 5).log_id).await.unwrap();
            store.purge(entry(1, 2).log_id).await.unwrap();
            assert_eq!(indexes(&store), vec![3, 4]);
            append_now(&store, vec![entry(2, 5)]);
        }
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![3, 4, 5]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.unwrap().index, 2);
        assert_eq!(state.last_log_id.unwrap().index, 5);

        // Purging everything leaves the purged id as the last log id.
        store.purge(entry(2, 5).log_id).await.unwrap();
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.unwrap().index, 5);
        assert!(indexes(&store).is_empty());
    }
}
