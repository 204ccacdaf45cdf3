//! The consumer-group coordinator (classic protocol): JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups and
//! OffsetDelete, with groups and offsets persisted in `__consumer_offsets`.
//!
//! Owns: group membership, generations and assignments, committed offsets, and their
//! records. Must not: decide which broker coordinates a group (FindCoordinator and
//! `__consumer_offsets` leadership belong to the dispatcher and `metadata`), or check
//! that committed topics exist.
//!
//! Layout: `state` (with `command`, `member`, `offsets`, `consumer_protocol`) is the
//! pure state machine; `records` is the binary layout of what is stored and `load`
//! rebuilds groups from it; `store` is the persistence boundary; `wire` translates
//! to and from `kafka-protocol` messages per API version; `coordinator` is the thin
//! async runtime that ties them together.

pub mod command;
pub mod config;
pub mod consumer_protocol;
pub mod coordinator;
pub mod load;
pub mod member;
pub mod offsets;
pub mod records;
pub mod state;
pub mod store;
pub mod wire;

pub use config::GroupConfig;
pub use coordinator::GroupCoordinator;
pub use records::TopicPartition;
pub use state::GroupState;
pub use store::{MemoryStore, OffsetStore, StoreError, StoredRecord};
pub use wire::ClientInfo;
