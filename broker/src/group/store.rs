//! The persistence boundary of the coordinator: appending records to, and reading
//! them back from, the partitions of `__consumer_offsets`.
//!
//! Owns: the `OffsetStore` trait, its error type, and `MemoryStore`, an in-memory
//! implementation for tests. Must not: know what the records mean (see `records`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use thiserror::Error;

/// One record of `__consumer_offsets`: a key and a value, or a tombstone (`None`).
pub type StoredRecord = (Bytes, Option<Bytes>);

/// Where the coordinator keeps its records. The broker implements it on the real,
/// replicated `__consumer_offsets` partitions.
///
/// Contract: `append` must not block and must not call back into the coordinator (it
/// is called while the coordinator holds its lock); the records of successive calls
/// for one partition must end up in the log in call order.
pub trait OffsetStore: Send + Sync + 'static {
    /// Appends records to partition `partition` of __consumer_offsets; resolves when durable.
    fn append(
        &self,
        partition: i32,
        records: Vec<StoredRecord>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Every record of the partition, oldest first (loading; a later record for the same
    /// key wins; a None value is a tombstone).
    fn read_all(&self, partition: i32) -> Result<Vec<StoredRecord>, StoreError>;
}

/// Reading or writing `__consumer_offsets` failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// This broker does not lead the partition (any more).
    #[error("__consumer_offsets-{partition}: not the leader")]
    NotLeader {
        /// Partition of `__consumer_offsets`.
        partition: i32,
    },
    /// The partition cannot take the write now, e.g. too few in-sync replicas.
    #[error("__consumer_offsets-{partition}: unavailable: {reason}")]
    Unavailable {
        /// Partition of `__consumer_offsets`.
        partition: i32,
        /// Why.
        reason: String,
    },
    /// The records exceed what the partition accepts in one batch.
    #[error("__consumer_offsets-{partition}: {bytes} bytes of records exceed the limit of {max}")]
    TooLarge {
        /// Partition of `__consumer_offsets`.
        partition: i32,
        /// Size of the records.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The file system failed.
    #[error("__consumer_offsets-{partition}: {op}: {source}")]
    Io {
        /// Partition of `__consumer_offsets`.
        partition: i32,
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Any other failure, described (the client retries).
    #[error("{message}")]
    Other {
        /// What failed.
        message: String,
    },
    /// A stored record cannot be read back.
    #[error("__consumer_offsets-{partition}: corrupt record at offset {offset}: {detail}")]
    Corruption {
        /// Partition of `__consumer_offsets`.
        partition: i32,
        /// Offset of the record in the partition (-1 if unknown).
        offset: i64,
        /// What is wrong.
        detail: String,
    },
}

impl StoreError {
    /// A failure described by `message` (answered as COORDINATOR_NOT_AVAILABLE, which
    /// clients retry); prefer the specific variants where they apply.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError::Other {
            message: message.into(),
        }
    }

    /// The error an OffsetCommit answers when its records could not be written, as
    /// Kafka maps append errors for offset commits.
    pub fn commit_error(&self) -> ResponseError {
        match self {
            StoreError::TooLarge { .. } => ResponseError::InvalidCommitOffsetSize,
            other => other.group_error(),
        }
    }

    /// The error a group operation (SyncGroup, JoinGroup of a static member,
    /// DeleteGroups) answers when its records could not be written.
    pub fn group_error(&self) -> ResponseError {
        match self {
            StoreError::NotLeader { .. } => ResponseError::NotCoordinator,
            StoreError::Unavailable { .. } | StoreError::Other { .. } => {
                ResponseError::CoordinatorNotAvailable
            }
            StoreError::TooLarge { .. } => ResponseError::UnknownServerError,
            // Kafka answers KAFKA_STORAGE_ERROR on the offsets partition with
            // NOT_COORDINATOR: the client looks the coordinator up again.
            StoreError::Io { .. } | StoreError::Corruption { .. } => ResponseError::NotCoordinator,
        }
    }
}

/// An in-memory `OffsetStore`: appends are durable at once. For tests, including the
/// broker's integration tests; it can be told to fail appends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    partitions: Mutex<HashMap<i32, Vec<StoredRecord>>>,
    failing: AtomicBool,
    appends: AtomicUsize,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every following append fail with `StoreError::Unavailable` (`true`) or
    /// succeed again (`false`).
    pub fn fail_appends(&self, fail: bool) {
        self.failing.store(fail, Ordering::SeqCst);
    }

    /// The records of one partition, oldest first.
    pub fn records(&self, partition: i32) -> Vec<StoredRecord> {
        self.lock().get(&partition).cloned().unwrap_or_default()
    }

    /// How many appends succeeded so far.
    pub fn append_count(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Vec<StoredRecord>>> {
        // A panic while holding this lock cannot leave the map half-updated (every
        // update is a single push), so a poisoned lock is still consistent.
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl OffsetStore for MemoryStore {
    fn append(
        &self,
        partition: i32,
        records: Vec<StoredRecord>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let result = if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable {
                partition,
                reason: "MemoryStore told to fail appends".into(),
            })
        } else {
            self.lock().entry(partition).or_default().extend(records);
            self.appends.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        futures::future::ready(result).boxed()
    }

    fn read_all(&self, partition: i32) -> Result<Vec<StoredRecord>, StoreError> {
        Ok(self.records(partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_keeps_records_in_order_per_partition() {
        let store = MemoryStore::new();
        let rec = |k: &'static [u8], v: Option<&'static [u8]>| {
            (Bytes::from_static(k), v.map(Bytes::from_static))
        };
        store
            .append(3, vec![rec(b"a", Some(b"1"))])
            .await
            .expect("task");
        store
            .append(3, vec![rec(b"b", Some(b"2")), rec(b"a", None)])
            .await
            .expect("append");
        store
            .append(4, vec![rec(b"c", Some(b"3"))])
            .await
            .expect("task");
        assert_eq!(
            store.read_all(3).expect("read"),
            vec![
                rec(b"a", Some(b"1")),
                rec(b"b", Some(b"2")),
                rec(b"a", None)
            ]
        );
        assert_eq!(
            store.read_all(4).expect("read"),
            vec![rec(b"c", Some(b"3"))]
        );
        assert!(store.read_all(5).expect("read").is_empty());
        assert_eq!(store.append_count(), 3);

        store.fail_appends(true);
        let err = store
            .append(3, vec![rec(b"d", None)])
            .await
            .expect_err("must fail");
        assert!(matches!(err, StoreError::Unavailable { partition: 3, .. }));
        assert_eq!(err.commit_error(), ResponseError::CoordinatorNotAvailable);
        assert_eq!(store.read_all(3).expect("read").len(), 3);
        store.fail_appends(false);
        store.append(3, vec![rec(b"d", None)]).await.expect("task");
        assert_eq!(store.read_all(3).expect("read").len(), 4);
    }

    #[test]
    fn store_errors_map_like_kafka() {
        let too_large = StoreError::TooLarge {
            partition: 0,
            bytes: 10,
            max: 5,
        };
        assert_eq!(
            too_large.commit_error(),
            ResponseError::InvalidCommitOffsetSize
        );
        assert_eq!(too_large.group_error(), ResponseError::UnknownServerError);
        assert_eq!(
            StoreError::NotLeader { partition: 1 }.commit_error(),
            ResponseError::NotCoordinator
        );
        let io = StoreError::Io {
            partition: 2,
            op: "append",
            source: std::io::Error::other("disk gone"),
        };
        assert_eq!(io.group_error(), ResponseError::NotCoordinator);
        assert_eq!(io.to_string(), "__consumer_offsets-2: append: disk gone");
    }
}
