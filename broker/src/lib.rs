//! skiff-broker: a Kafka-compatible message broker.
//!
//! Modules map one-to-one to concepts (see `shared/DESIGN.md`): `log` is the
//! per-partition storage engine.

pub mod log;
