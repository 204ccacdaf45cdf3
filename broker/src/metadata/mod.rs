//! Cluster metadata: brokers, topics, partitions (replicas, leader, ISR,
//! epochs), topic configs and producer-id blocks, kept as records that build an
//! immutable image.
//!
//! Today a single broker keeps the records in a local file (`store`); the
//! replicated cluster feeds the same image from a Raft quorum. Everything that
//! reads metadata (partition leadership, Metadata responses) reads the image.

pub mod api;
pub mod broker_lifecycle;
pub mod controller;
pub mod identity;
pub mod image;
pub mod partition_change;
pub mod placement;
pub mod quorum;
pub mod reassignment;
pub mod records;
pub mod request;
pub mod store;

pub use image::{BrokerInfo, MetadataImage, PartitionImage, TopicImage};
pub use records::MetadataRecord;
pub use store::{MetadataError, MetadataStore};
