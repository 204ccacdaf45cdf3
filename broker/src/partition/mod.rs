//! A partition replica on this broker: its log, high watermark, leader epoch,
//! idempotent-producer state and group-commit flusher.
//!
//! Owns: appending (with deduplication) and reading under one lock, and
//! telling waiters when the high watermark moves. Must not: decide leadership;
//! the metadata image says who leads, the manager applies it.

pub mod fetch;
pub mod list_offsets;
pub mod manager;
pub mod offsets_store;
pub mod produce;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tracing::info;
use uuid::Uuid;

use crate::config::{AckDurability, TopicSettings};
use crate::log::flush::{FlushFailed, FlushTarget, GroupCommit, Prepared};
use crate::log::{
    AppendError, BatchError, BatchHeader, FileSystem, FlushTicket, Log, LogSlice, OpenError,
    ReadError, StdFs,
};
use crate::producer::{BatchCheck, ProducerError, ProducerState, ProducerSummary};

pub use manager::ReplicaManager;

/// A produce to this partition was refused.
#[derive(Debug, Error)]
pub enum ProduceError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error("not enough in-sync replicas: {isr} in sync, min.insync.replicas is {min}")]
    NotEnoughReplicas { isr: i32, min: i32 },
}

impl ProduceError {
    /// Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::Append(AppendError::InvalidBatch {
                reason:
                    BatchError::CrcMismatch { .. }
                    | BatchError::Truncated { .. }
                    | BatchError::TruncatedHeader { .. },
                ..
            }) => 2,
            Self::Append(AppendError::InvalidBatch {
                reason: BatchError::BadMagic(_),
                ..
            }) => 43,
            Self::Append(
                AppendError::InvalidBatch { .. }
                | AppendError::Empty
                | AppendError::OffsetBehindLogEnd { .. },
            ) => 87,
            Self::Append(AppendError::BatchTooLarge { .. }) => 10,
            Self::Append(AppendError::Io { .. } | AppendError::Offline { .. }) => 56,
            Self::Producer(e) => e.code(),
            Self::NotEnoughReplicas { .. } => 19,
        }
    }
}

/// The result of a produce to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// A retry of a batch that was already appended.
    pub duplicate: bool,
    pub log_start_offset: i64,
}

/// Offsets that frame a read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub slice: Option<LogSlice>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

#[derive(Debug)]
struct Inner {
    log: Log,
    producers: ProducerState,
    leader_epoch: i32,
    high_watermark: i64,
    settings: TopicSettings,
}

/// The flusher's view of a partition (kept apart so the task does not own the partition).
#[derive(Debug)]
struct Flushing(Arc<Mutex<Inner>>);

impl FlushTarget for Flushing {
    fn prepare(&self) -> Prepared {
        Prepared::of(&mut lock(&self.0).log)
    }
    fn complete(&self, ticket: &FlushTicket, result: std::io::Result<()>) -> Result<(), String> {
        lock(&self.0)
            .log
            .complete_flush(ticket, result)
            .map_err(|e| e.to_string())
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One partition replica.
#[derive(Debug)]
pub struct Partition {
    pub topic: Arc<str>,
    pub topic_id: Uuid,
    pub index: i32,
    inner: Arc<Mutex<Inner>>,
    hw: watch::Sender<i64>,
    commit: Arc<GroupCommit>,
    durability: AckDurability,
}

impl Partition {
    /// Opens (recovering if needed) the partition's log in `dir` and rebuilds
    /// producer state from it. Must run inside a tokio runtime (the flusher is a task).
    pub fn open(
        dir: &Path,
        topic: &str,
        topic_id: Uuid,
        index: i32,
        settings: TopicSettings,
        leader_epoch: i32,
        durability: AckDurability,
    ) -> Result<Arc<Self>, OpenError> {
        let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
        let (log, report) = Log::open(fs, dir, settings.log.clone(), now_ms())?;
        if !report.clean {
            info!(
                topic,
                partition = index,
                recovered = report.segments_recovered,
                bytes_cut = report.truncated_bytes,
                "partition recovered"
            );
        }
        let mut producers = ProducerState::default();
        log.for_each_batch(log.log_start_offset(), |h| producers.record(h))
            .map_err(|e| OpenError::Io {
                path: dir.to_owned(),
                op: "rebuild producer state",
                source: std::io::Error::other(e.to_string()),
            })?;
        // A single replica's high watermark is its log end; the replicated
        // cluster restores it from the leader.
        let hw = log.log_end_offset();
        let durable = log.durable_offset();
        let flush_every = (settings.log.flush_ms < i64::MAX / 2)
            .then(|| Duration::from_millis(settings.log.flush_ms.max(1) as u64));
        let inner = Arc::new(Mutex::new(Inner {
            log,
            producers,
            leader_epoch,
            high_watermark: hw,
            settings,
        }));
        let commit = GroupCommit::spawn(Arc::new(Flushing(inner.clone())), durable, flush_every);
        let (hw_tx, _) = watch::channel(hw);
        Ok(Arc::new(Self {
            topic: topic.into(),
            topic_id,
            index,
            inner,
            hw: hw_tx,
            commit,
            durability,
        }))
    }

    /// Appends a client's batches as leader: deduplicates idempotent retries,
    /// assigns offsets, advances the high watermark (one replica: its log end).
    pub fn append(&self, batches: &mut [u8]) -> Result<Appended, ProduceError> {
        let mut inner = lock(&self.inner);
        let first = BatchHeader::parse(batches).map_err(|reason| AppendError::InvalidBatch {
            position: 0,
            reason,
        })?;
        match inner.producers.check(&first)? {
            BatchCheck::Duplicate {
                first_offset,
                last_offset,
            } => {
                return Ok(Appended {
                    base_offset: first_offset,
                    last_offset,
                    duplicate: true,
                    log_start_offset: inner.log.log_start_offset(),
                });
            }
            BatchCheck::Append => {}
        }
        let epoch = inner.leader_epoch;
        let info = inner.log.append_as_leader(batches, epoch, now_ms())?;
        // Record every appended batch (a request may carry several).
        let mut pos = 0;
        while let Ok(h) = BatchHeader::parse(&batches[pos..]) {
            inner.producers.record(&h);
            pos += h.size().unwrap_or(batches.len());
            if pos >= batches.len() {
                break;
            }
        }
        inner.high_watermark = inner.log.log_end_offset();
        let hw = inner.high_watermark;
        let log_start_offset = inner.log.log_start_offset();
        drop(inner);
        if info.flush_due {
            self.commit.request(info.last_offset + 1);
        }
        self.hw.send_replace(hw);
        Ok(Appended {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            duplicate: false,
            log_start_offset,
        })
    }

    /// Waits until offsets below `end` satisfy acks=all: fsynced under
    /// `skiff.ack.durability=fsync`, at once under `memory`.
    pub async fn wait_acks_all(&self, end: i64) -> Result<(), FlushFailed> {
        match self.durability {
            AckDurability::Fsync => self.commit.wait_durable(end).await,
            AckDurability::Memory => Ok(()),
        }
    }

    /// Reads from `offset` up to the high watermark (consumers) or the log end
    /// (`up_to_log_end`, for followers).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        up_to_log_end: bool,
        min_one_batch: bool,
    ) -> Result<ReadResult, ReadError> {
        let inner = lock(&self.inner);
        let limit = if up_to_log_end {
            inner.log.log_end_offset()
        } else {
            inner.high_watermark
        };
        let slice = inner.log.read(offset, max_bytes, limit, min_one_batch)?;
        Ok(ReadResult {
            slice,
            high_watermark: inner.high_watermark,
            log_start_offset: inner.log.log_start_offset(),
            log_end_offset: inner.log.log_end_offset(),
        })
    }

    /// `(log start, high watermark, log end)`.
    pub fn offsets(&self) -> (i64, i64, i64) {
        let inner = lock(&self.inner);
        (
            inner.log.log_start_offset(),
            inner.high_watermark,
            inner.log.log_end_offset(),
        )
    }

    /// The first record at or after `timestamp` below the high watermark.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, ReadError> {
        let inner = lock(&self.inner);
        Ok(inner
            .log
            .offset_for_timestamp(timestamp)?
            .filter(|(o, _)| *o < inner.high_watermark))
    }

    /// Newest timestamp and its offset.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        lock(&self.inner).log.max_timestamp()
    }

    /// The leader epoch this replica serves.
    pub fn leader_epoch(&self) -> i32 {
        lock(&self.inner).leader_epoch
    }

    /// The topic settings in force.
    pub fn settings(&self) -> TopicSettings {
        lock(&self.inner).settings.clone()
    }

    /// Applies new topic settings.
    pub fn set_settings(&self, settings: TopicSettings) {
        let mut inner = lock(&self.inner);
        inner.log.set_config(settings.log.clone());
        inner.settings = settings;
    }

    /// Idempotent producers of this partition.
    pub fn producers(&self) -> Vec<ProducerSummary> {
        lock(&self.inner).producers.summaries()
    }

    /// Bytes on disk.
    pub fn size_bytes(&self) -> u64 {
        lock(&self.inner).log.size_bytes()
    }

    /// A receiver that changes whenever the high watermark moves.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Deletes segments that retention expires (never at or above the high watermark).
    pub fn apply_retention(&self) -> Result<i64, crate::log::MaintenanceError> {
        let mut inner = lock(&self.inner);
        let hw = inner.high_watermark;
        inner.log.apply_retention(now_ms(), hw)
    }

    /// Flushes and closes the log cleanly; the partition refuses appends afterwards.
    pub fn close(&self) -> Result<(), crate::log::MaintenanceError> {
        self.commit.stop();
        lock(&self.inner).log.close()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
