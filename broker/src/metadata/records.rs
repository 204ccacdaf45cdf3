//! Metadata records: the only way cluster metadata changes. The single-node
//! store writes them to a local file; the replicated quorum will carry the same
//! records through Raft, so the image is built the same way in both.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{DynamicBrokerConfig, TopicConfig};

/// One change to cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The cluster was formatted with this id.
    ClusterFormatted { cluster_id: String },
    /// A broker registered (or re-registered after a restart). It starts
    /// fenced; its first heartbeat unfences it.
    BrokerRegistered {
        node_id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
        /// Identifies one data directory: a broker that comes back with another
        /// (an empty disk) is not a trustworthy in-sync replica any more.
        #[serde(default)]
        incarnation: Uuid,
        /// Controller (Raft) address, for learners.
        #[serde(default)]
        controller: Option<String>,
    },
    /// A broker missed its session or announced it is gone: it leads nothing
    /// and is in no ISR (unless it was the last member).
    BrokerFenced {
        node_id: i32,
        /// Fenced because its heartbeat connection reset: the process is gone
        /// (not merely silent), so nothing waits in its sockets.
        #[serde(default)]
        crashed: bool,
    },
    /// A registered broker heartbeats and may lead and join ISRs again.
    BrokerUnfenced { node_id: i32 },
    /// A broker is shutting down in a controlled way: its leaderships move.
    BrokerShuttingDown { node_id: i32 },
    /// Maintenance mode: a draining broker leads nothing while others can.
    BrokerDraining { node_id: i32, draining: bool },
    /// A topic was created; its partitions follow as `PartitionCreated`.
    TopicCreated {
        name: String,
        topic_id: Uuid,
        config: TopicConfig,
    },
    /// A partition was created.
    PartitionCreated {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        leader: i32,
        isr: Vec<i32>,
    },
    /// A partition's replicas, leader or ISR changed; the record carries the
    /// whole new state (epochs included) so applying it decides nothing.
    PartitionChanged {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        leader: i32,
        isr: Vec<i32>,
        leader_epoch: i32,
        partition_epoch: i32,
        /// Replicas being added and removed by an ongoing reassignment.
        #[serde(default)]
        adding: Vec<i32>,
        #[serde(default)]
        removing: Vec<i32>,
    },
    /// A topic's config overrides were replaced.
    TopicConfigChanged { topic_id: Uuid, config: TopicConfig },
    /// Dynamic broker settings were replaced: one broker's (`node_id`) or the
    /// cluster-wide defaults (`None`).
    BrokerConfigChanged {
        node_id: Option<i32>,
        config: DynamicBrokerConfig,
    },
    /// A topic and its partitions were deleted.
    TopicDeleted { topic_id: Uuid },
    /// Producer ids below `next` have been handed out.
    ProducerIdsAllocated { next: i64 },
}
