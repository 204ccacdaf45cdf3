//! Administration: topic, partition and config APIs, DescribeCluster,
//! DescribeLogDirs, FindCoordinator, and the HTTP admin endpoint (health,
//! readiness, metrics).
//!
//! Owns: turning admin requests into controller calls and responses. Must not:
//! decide placement or validity (the controller does) or touch logs.

pub mod cluster;
pub mod configs;
pub mod coordinator;
pub mod http;
pub mod log_dirs;
pub mod reassignments;
pub mod safety;
pub mod topics;
