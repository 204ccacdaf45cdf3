//! Typed errors of the log's operations. Corruption is kept apart from I/O
//! failure and from a request for data that is not there.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::batch::BatchError;

/// A segment's files contradict themselves: what is wrong and where. Found by
/// the checks made on opening a segment that was to be trusted; recovery then
/// re-validates the segment instead of failing the open.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Corruption {
    /// A batch header in the data file is impossible or out of place.
    #[error("{path}: batch at position {position}: {reason}")]
    Batch {
        path: PathBuf,
        position: u64,
        reason: BatchError,
    },
    /// An index entry disagrees with its neighbours or with the data file.
    #[error("{path}: {reason}")]
    Index { path: PathBuf, reason: IndexError },
}

/// What is wrong with an entry of a segment's `.index` or `.timeindex`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IndexError {
    /// Offsets and positions must both ascend from one entry to the next.
    #[error(
        "entry {entry} (offset {offset} at position {position}) does not follow the entry before it"
    )]
    OffsetEntryOutOfOrder {
        entry: usize,
        offset: i64,
        position: u64,
    },
    /// The entry points past the end of the data file.
    #[error("entry {entry} points at position {position}, past the segment's {size} bytes")]
    OffsetEntryPastEnd {
        entry: usize,
        position: u64,
        size: u64,
    },
    /// The entry's position is not where a batch with its offset starts.
    #[error(
        "entry {entry} maps offset {offset} to position {position}, where no batch with that base offset starts"
    )]
    OffsetEntryMisplaced {
        entry: usize,
        offset: i64,
        position: u64,
    },
    /// Timestamps must ascend, and their offsets must not go back.
    #[error(
        "entry {entry} (timestamp {timestamp} at offset {offset}) does not follow the entry before it"
    )]
    TimeEntryOutOfOrder {
        entry: usize,
        timestamp: i64,
        offset: i64,
    },
    /// The entry names an offset the segment does not hold.
    #[error("entry {entry} names offset {offset}, not below the segment's end offset {end}")]
    TimeEntryPastEnd { entry: usize, offset: i64, end: i64 },
}

/// Opening (and recovering) a partition log failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The file system failed.
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
}

/// An append was refused; the log is unchanged.
#[derive(Debug, Error)]
pub enum AppendError {
    /// A batch in the request is malformed (Kafka: CORRUPT_MESSAGE / INVALID_RECORD).
    #[error("invalid record batch at byte {position} of the request: {reason}")]
    InvalidBatch { position: usize, reason: BatchError },
    /// A batch exceeds `max.message.bytes` (Kafka: MESSAGE_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: usize },
    /// A replicated batch does not continue the log (follower appends only).
    #[error(
        "replicated batch starts at offset {base_offset}, below the log end offset {log_end_offset}"
    )]
    OffsetBehindLogEnd {
        base_offset: i64,
        log_end_offset: i64,
    },
    /// The request carried no batches.
    #[error("no record batches in the request")]
    Empty,
    /// The file system failed; the append was rolled back.
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// An earlier failure (e.g. a failed fsync) took the log offline.
    #[error("log {dir} is offline: {reason}")]
    Offline { dir: PathBuf, reason: String },
}

/// A read was refused.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The offset is outside `[log start, log end]` (Kafka: OFFSET_OUT_OF_RANGE).
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// The file holds bytes that are not a valid batch (Kafka: CORRUPT_MESSAGE / KAFKA_STORAGE_ERROR).
    #[error("{path}: corrupt at position {position}: {reason}")]
    Corruption {
        path: PathBuf,
        position: u64,
        reason: BatchError,
    },
    /// The file system failed.
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
}

/// Truncation, retention or flushing failed; the log is offline afterwards.
#[derive(Debug, Error)]
pub enum MaintenanceError {
    /// The file system failed.
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// An earlier failure took the log offline.
    #[error("log {dir} is offline: {reason}")]
    Offline { dir: PathBuf, reason: String },
}
