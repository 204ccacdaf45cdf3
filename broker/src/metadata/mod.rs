//! Cluster metadata: brokers, topics, partitions (replicas, leader, ISR,
//! epochs), topic configs and producer-id blocks, kept as records that build an
//! immutable image.
//!
//! The records travel through the Raft quorum (`quorum`); every broker applies
//! them to its image. The active controller (the quorum's leader) decides
//! which records to write (`request`, `controller`, `broker_lifecycle`,
//! `partition_change`, `reassignment`, all pure) and keeps broker sessions
//! (`active`); brokers reach it through `client`. Everything that reads
//! metadata (partition leadership, Metadata responses) reads the image.

pub mod active;
pub mod api;
pub mod broker_lifecycle;
pub mod client;
pub mod controller;
pub mod identity;
pub mod image;
pub mod partition_change;
pub mod placement;
pub mod quorum;
pub mod reassignment;
pub mod records;
pub mod request;

pub use image::{BrokerConfigs, BrokerInfo, MetadataImage, PartitionImage, TopicImage};
pub use records::MetadataRecord;
