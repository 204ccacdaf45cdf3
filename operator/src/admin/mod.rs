//! Talking to brokers: the HTTP admin endpoint (status, restart safety,
//! drain) and the Kafka admin APIs (topics, configs, reassignments).
//! I/O only; what to ask is decided by the planners.

pub mod http;
pub mod kafka;
