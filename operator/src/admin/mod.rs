//! Talking to brokers: the HTTP admin endpoint (status, restart safety,
//! drain) and the Kafka admin APIs (topics, configs, reassignments, replica
//! sizes).
//! I/O only; what to ask is decided by the planners.

pub mod http;
pub mod kafka;
