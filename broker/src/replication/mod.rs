//! Replication of partitions from leaders to followers with in-sync replicas.
//!
//! The decision logic is pure state machines (events in, commands out), tested
//! without I/O; the runtime that feeds them follower fetches, fsyncs and
//! controller answers is built on top.

pub mod divergence;
pub mod leader;

pub use leader::{Command, Event, FollowerProgress, LeaderConfig, LeaderState};
