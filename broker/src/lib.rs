//! skiff-broker: a Kafka-compatible message broker.
//!
//! Modules map one-to-one to concepts (see `shared/DESIGN.md`).

pub mod admin;
pub mod alloc;
pub mod broker;
pub mod config;
pub mod group;
pub mod log;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod producer;
pub mod protocol;
pub mod replication;
