//! The metadata image: cluster metadata as of some record, immutable and
//! shared (`Arc`), rebuilt by applying records.
//!
//! Owns: the in-memory shape of brokers, topics and partitions. Must not:
//! decide anything; `controller` decides which records to write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::records::MetadataRecord;
use crate::config::{BrokerConfig, DynamicBrokerConfig, TopicConfig};

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub incarnation: Uuid,
    /// Bumped by every registration (Kafka's broker epoch): the record count
    /// when the broker registered.
    pub epoch: i64,
    pub controller: Option<String>,
    pub fenced: bool,
    /// Fenced because its process is gone (its connection reset), not silent.
    #[serde(default)]
    pub crashed: bool,
    pub shutting_down: bool,
    pub draining: bool,
}

impl BrokerInfo {
    /// May lead and be in an ISR: registered, unfenced, not shutting down.
    pub fn is_usable(&self) -> bool {
        !self.fenced && !self.shutting_down
    }
}

/// No leader: every in-sync replica is fenced (the partition is offline).
pub const NO_LEADER: i32 = -1;

/// One partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// During a reassignment: the target replicas first, then those being removed.
    pub replicas: Vec<i32>,
    /// `NO_LEADER` when offline.
    pub leader: i32,
    pub isr: Vec<i32>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Replicas an ongoing reassignment adds and removes.
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl PartitionImage {
    /// The replicas the partition will have once its reassignment completes.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub config: TopicConfig,
    pub partitions: BTreeMap<i32, PartitionImage>,
}

/// Dynamic broker settings (IncrementalAlterConfigs on BROKER resources).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerConfigs {
    /// The cluster-wide defaults (Kafka's `--entity-default`).
    pub cluster: DynamicBrokerConfig,
    /// Per broker, over the cluster-wide defaults.
    pub brokers: BTreeMap<i32, DynamicBrokerConfig>,
}

impl BrokerConfigs {
    /// The overrides of one broker (`Some`) or the cluster-wide ones (`None`).
    pub fn of(&self, node: Option<i32>) -> Option<&DynamicBrokerConfig> {
        match node {
            None => Some(&self.cluster),
            Some(n) => self.brokers.get(&n),
        }
    }

    /// Broker `node`'s effective settings: its static config under the
    /// cluster-wide and then its own dynamic overrides.
    pub fn effective(&self, statics: &BrokerConfig, node: i32) -> BrokerConfig {
        statics.layered(&self.cluster, self.brokers.get(&node))
    }
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
    /// Dynamic broker settings: cluster-wide defaults and per broker.
    #[serde(default)]
    pub broker_configs: BrokerConfigs,
    /// Records applied so far.
    pub records: u64,
}

impl MetadataImage {
    /// The topic with `id`.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topic_names.get(id).and_then(|n| self.topics.get(n))
    }

    /// The partition `index` of topic `id`.
    pub fn partition(&self, id: &Uuid, index: i32) -> Option<&PartitionImage> {
        self.topic_by_id(id).and_then(|t| t.partitions.get(&index))
    }

    /// Whether `node` is registered and may lead.
    pub fn is_usable(&self, node: i32) -> bool {
        self.brokers.get(&node).is_some_and(BrokerInfo::is_usable)
    }

    fn broker_mut(&mut self, node: i32) -> Option<&mut BrokerInfo> {
        self.brokers.get_mut(&node)
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
                incarnation,
                controller,
            } => {
                let draining = self.brokers.get(node_id).is_some_and(|b| b.draining);
                let info = BrokerInfo {
                    node_id: *node_id,
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                    incarnation: *incarnation,
                    epoch: self.records as i64,
                    controller: controller.clone(),
                    fenced: true,
                    crashed: false,
                    shutting_down: false,
                    draining,
                };
                self.brokers.insert(*node_id, info);
            }
            MetadataRecord::BrokerFenced { node_id, crashed } => {
                if let Some(b) = self.broker_mut(*node_id) {
                    b.fenced = true;
                    b.crashed = *crashed;
                }
            }
            MetadataRecord::BrokerUnfenced { node_id } => {
                if let Some(b) = self.broker_mut(*node_id) {
                    b.fenced = false;
                    b.crashed = false;
                    b.shutting_down = false;
                }
            }
            MetadataRecord::BrokerShuttingDown { node_id } => {
                if let Some(b) = self.broker_mut(*node_id) {
                    b.shutting_down = true;
                }
            }
            MetadataRecord::BrokerDraining { node_id, draining } => {
                if let Some(b) = self.broker_mut(*node_id) {
                    b.draining = *draining;
                }
            }
            MetadataRecord::PartitionChanged {
                topic_id,
                partition,
                replicas,
                leader,
                isr,
                leader_epoch,
                partition_epoch,
                adding,
                removing,
            } => {
                if let Some(p) = self
                    .topic_names
                    .get(topic_id)
                    .and_then(|n| self.topics.get_mut(n))
                    .and_then(|t| t.partitions.get_mut(partition))
                {
                    *p = PartitionImage {
                        replicas: replicas.clone(),
                        leader: *leader,
                        isr: isr.clone(),
                        leader_epoch: *leader_epoch,
                        partition_epoch: *partition_epoch,
                        adding: adding.clone(),
                        removing: removing.clone(),
                    };
                }
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
                        adding: Vec::new(),
                        removing: Vec::new(),
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
            MetadataRecord::BrokerConfigChanged { node_id, config } => match node_id {
                None => self.broker_configs.cluster = config.clone(),
                Some(n) if config.is_empty() => {
                    self.broker_configs.brokers.remove(n);
                }
                Some(n) => {
                    self.broker_configs.brokers.insert(*n, config.clone());
                }
            },
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
