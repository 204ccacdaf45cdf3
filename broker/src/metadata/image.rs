//! The metadata image: cluster metadata as of some record, immutable and
//! shared (`Arc`), rebuilt by applying records.
//!
//! Owns: the in-memory shape of brokers, topics and partitions. Must not:
//! decide anything; `controller` decides which records to write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::records::MetadataRecord;
use crate::config::TopicConfig;

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// One partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub leader: i32,
    pub isr: Vec<i32>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub config: TopicConfig,
    pub partitions: BTreeMap<i32, PartitionImage>,
}

/// Cluster metadata at a point in the record log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicImage>,
    pub topic_names: BTreeMap<Uuid, String>,
    /// The next producer id to hand out.
    pub next_producer_id: i64,
    /// Records applied so far.
    pub records: u64,
}

impl MetadataImage {
    /// The topic with `id`.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topic_names.get(id).and_then(|n| self.topics.get(n))
    }

    /// Applies one record. Records that refer to unknown topics are ignored
    /// (they were validated when written; a later deletion may have removed the topic).
    pub fn apply(&mut self, record: &MetadataRecord) {
        self.records += 1;
        match record {
            MetadataRecord::ClusterFormatted { cluster_id } => {
                self.cluster_id.clone_from(cluster_id)
            }
            MetadataRecord::BrokerRegistered {
                node_id,
                host,
                port,
                rack,
            } => {
                let info = BrokerInfo {
                    node_id: *node_id,
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                };
                self.brokers.insert(*node_id, info);
            }
            MetadataRecord::TopicCreated {
                name,
                topic_id,
                config,
            } => {
                let topic = TopicImage {
                    name: name.clone(),
                    id: *topic_id,
                    config: config.clone(),
                    partitions: BTreeMap::new(),
                };
                self.topics.insert(name.clone(), topic);
                self.topic_names.insert(*topic_id, name.clone());
            }
            MetadataRecord::PartitionCreated {
                topic_id,
                partition,
                replicas,
                leader,
                isr,
            } => {
                if let Some(t) = self
                    .topic_names
                    .get(topic_id)
                    .and_then(|n| self.topics.get_mut(n))
                {
                    let p = PartitionImage {
                        replicas: replicas.clone(),
                        leader: *leader,
                        isr: isr.clone(),
                        leader_epoch: 0,
                        partition_epoch: 0,
                    };
                    t.partitions.insert(*partition, p);
                }
            }
            MetadataRecord::TopicConfigChanged { topic_id, config } => {
                if let Some(t) = self
                    .topic_names
                    .get(topic_id)
                    .and_then(|n| self.topics.get_mut(n))
                {
                    t.config = config.clone();
                }
            }
            MetadataRecord::TopicDeleted { topic_id } => {
                if let Some(name) = self.topic_names.remove(topic_id) {
                    self.topics.remove(&name);
                }
            }
            MetadataRecord::ProducerIdsAllocated { next } => {
                self.next_producer_id = self.next_producer_id.max(*next)
            }
        }
    }
}
