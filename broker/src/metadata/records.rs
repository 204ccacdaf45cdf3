//! Metadata records: the only way cluster metadata changes. The single-node
//! store writes them to a local file; the replicated quorum will carry the same
//! records through Raft, so the image is built the same way in both.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::TopicConfig;

/// One change to cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The cluster was formatted with this id.
    ClusterFormatted { cluster_id: String },
    /// A broker registered (or re-registered after a restart).
    BrokerRegistered {
        node_id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
    },
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
    /// A topic's config overrides were replaced.
    TopicConfigChanged { topic_id: Uuid, config: TopicConfig },
    /// A topic and its partitions were deleted.
    TopicDeleted { topic_id: Uuid },
    /// Producer ids below `next` have been handed out.
    ProducerIdsAllocated { next: i64 },
}
