//! Replication of partitions from leaders to followers with in-sync replicas.
//!
//! The decision logic is pure state machines (events in, commands out), tested
//! without I/O; the runtime that feeds them follower fetches, fsyncs and
//! controller answers is built on top (`partition` runs the leader side,
//! `fetcher` the follower side).
//!
//! Wiring, for the broker:
//! - build the manager with `ReplicaManager::with_isr_channel(node_id, data_dir,
//!   config, isr_channel)`, the channel implementing [`IsrChannel`] over the
//!   active controller (Kafka's AlterPartition; `NoController` refuses every
//!   change as retriable);
//! - call `ReplicaManager::sync` (or `sync_report`) with every new metadata
//!   image, in order; it opens partitions, sets roles at the image's leader
//!   epochs and re-targets fetchers (one per leader broker, to its advertised
//!   host and port in the image);
//! - `ReplicaManager::leadership_changes()` streams every role change, for
//!   leader-only duties (loading and unloading `__consumer_offsets` partitions);
//! - `ReplicaManager::close_all()` at shutdown stops fetchers and writes the
//!   high-watermark checkpoint.

pub mod divergence;
pub mod fencing;
pub mod fetcher;
pub mod isr;
pub mod leader;
pub mod lost;
#[cfg(test)]
mod tests;
pub mod throttle;

pub use isr::{AlterIsr, AlterIsrError, IsrChannel, NoController};
pub use leader::{Command, Event, FollowerProgress, LeaderConfig, LeaderState};

/// Tag of Skiff's extension field on a Fetch request's partition: the
/// follower's durable offset (everything below it is fsynced), an INT64.
/// Tags this high are far from any Kafka uses, and a Kafka broker ignores
/// unknown tags.
pub const DURABLE_OFFSET_TAG: i32 = 0x5_0001;

/// Milliseconds on a monotonic clock (for lag decisions; never the wall clock).
pub fn monotonic_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}
