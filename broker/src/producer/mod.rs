//! Idempotent producers: per partition, each producer id's epoch and its last
//! five batches, so a retried batch returns its original offsets and a gap in
//! sequence numbers is refused. Rebuilt from batch headers when a log opens.

pub mod api;
pub mod state;

pub use state::{BatchCheck, ProducerError, ProducerState, ProducerSummary};
