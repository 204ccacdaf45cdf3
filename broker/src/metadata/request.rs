//! Requests to the active controller and their planning: each request, checked
//! against the current image, becomes metadata records and a reply.
//!
//! Requests are data (serde) so a broker can send them to whichever broker is
//! the active controller. Pure: `plan` reads the image and decides; the
//! runtime (`active`) commits the records.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::broker_lifecycle::{self, Registration};
use super::controller::{self, NewTopic};
use super::image::MetadataImage;
use super::reassignment::{self, AlterIsr};
use super::records::MetadataRecord;
use crate::config::{BrokerConfig, DynamicBrokerConfig, TopicConfig};

/// Kafka error code NOT_CONTROLLER.
pub const NOT_CONTROLLER: i16 = 41;

/// A request to the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControllerRequest {
    /// A broker starts (or restarts) and announces itself.
    Register(Registration),
    /// A registered broker is alive; `epoch` is the broker epoch it registered with.
    Heartbeat {
        node_id: i32,
        epoch: i64,
    },
    CreateTopic {
        topic: NewTopic,
        /// `(num.partitions, default.replication.factor)` of the asking broker.
        defaults: (i32, i32),
        id: Uuid,
    },
    CreatePartitions {
        name: String,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
    },
    DeleteTopic {
        id: Uuid,
    },
    AlterTopicConfig {
        name: String,
        config: TopicConfig,
    },
    /// Replace the dynamic settings of one broker, or the cluster-wide ones (`None`).
    AlterBrokerConfig {
        node_id: Option<i32>,
        config: DynamicBrokerConfig,
    },
    AllocateProducerIds {
        count: i64,
    },
    AlterIsr(AlterIsr),
    ControlledShutdown {
        node_id: i32,
    },
    Drain {
        node_id: i32,
        draining: bool,
    },
    /// Start (`Some`) or cancel (`None`) moving a partition to `target` replicas.
    Reassign {
        topic_id: Uuid,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    ElectLeaders {
        partitions: Vec<(Uuid, i32)>,
        preferred: bool,
    },
}

/// The controller's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ControllerReply {
    Done,
    /// A registration was committed at this broker epoch.
    Registered {
        epoch: i64,
    },
    /// The heartbeat was taken; `fenced` says whether the broker is still fenced.
    Heartbeat {
        fenced: bool,
    },
    ProducerIds {
        first: i64,
    },
    /// The ISR change was committed at this partition epoch.
    PartitionEpoch {
        epoch: i32,
    },
    /// Per partition of an ElectLeaders request: `None` = elected, or the error.
    Elections {
        results: Vec<Option<(i16, String)>>,
    },
}

/// A refused request: Kafka error code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (error {code})")]
pub struct Refusal {
    pub code: i16,
    pub message: String,
}

impl Refusal {
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// This broker is not the active controller.
    pub fn not_controller(leader: Option<i32>) -> Self {
        Self::new(
            NOT_CONTROLLER,
            match leader {
                Some(l) => format!("not the active controller; broker {l} is"),
                None => "no active controller yet".to_owned(),
            },
        )
    }
}

impl From<controller::ControllerError> for Refusal {
    fn from(e: controller::ControllerError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<reassignment::ChangeError> for Refusal {
    fn from(e: reassignment::ChangeError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// A plan: records to commit and the reply to send once they are committed.
pub type Plan = (Vec<MetadataRecord>, ControllerReply);

/// Plans `request` against `image`; `statics` is the active controller's
/// start-up config, the last layer of cluster-wide defaults. Heartbeats are
/// planned by the runtime (they concern sessions); here they only unfence a
/// registered broker.
pub fn plan(
    image: &MetadataImage,
    statics: &BrokerConfig,
    request: &ControllerRequest,
) -> Result<Plan, Refusal> {
    use ControllerReply::Done;
    Ok(match request {
        ControllerRequest::Register(reg) => {
            let mut records = Vec::new();
            if image.cluster_id.is_empty() {
                records.push(MetadataRecord::ClusterFormatted {
                    cluster_id: reg.cluster_id.clone(),
                });
            } else if image.cluster_id != reg.cluster_id {
                return Err(Refusal::new(
                    INCONSISTENT_CLUSTER_ID,
                    format!(
                        "broker {} belongs to cluster {}, but this is cluster {}",
                        reg.node_id, reg.cluster_id, image.cluster_id
                    ),
                ));
            }
            records.extend(broker_lifecycle::register(image, statics, reg));
            // The registration record is the last one; the broker epoch is the
            // record count once it is applied.
            let epoch = (image.records + records.len() as u64) as i64;
            (records, ControllerReply::Registered { epoch })
        }
        ControllerRequest::Heartbeat { node_id, epoch } => {
            let broker = image.brokers.get(node_id).ok_or_else(|| {
                Refusal::new(
                    STALE_BROKER_EPOCH,
                    format!("broker {node_id} is not registered"),
                )
            })?;
            if broker.epoch != *epoch {
                return Err(Refusal::new(
                    STALE_BROKER_EPOCH,
                    format!(
                        "broker {node_id} registered again (epoch {} not {epoch})",
                        broker.epoch
                    ),
                ));
            }
            let records = if broker.fenced {
                broker_lifecycle::unfence(image, statics, *node_id)
            } else {
                Vec::new()
            };
            (records, ControllerReply::Heartbeat { fenced: false })
        }
        ControllerRequest::CreateTopic {
            topic,
            defaults,
            id,
        } => (
            controller::create_topic(image, topic, *defaults, *id)?,
            Done,
        ),
        ControllerRequest::CreatePartitions {
            name,
            count,
            assignments,
        } => (
            controller::create_partitions(image, name, *count, assignments.as_deref())?,
            Done,
        ),
        ControllerRequest::DeleteTopic { id } => (controller::delete_topic(image, *id)?, Done),
        ControllerRequest::AlterTopicConfig { name, config } => (
            controller::alter_topic_config(image, name, config.clone())?,
            Done,
        ),
        ControllerRequest::AlterBrokerConfig { node_id, config } => (
            controller::alter_broker_config(*node_id, config.clone())?,
            Done,
        ),
        ControllerRequest::AllocateProducerIds { count } => {
            let (first, records) = controller::allocate_producer_ids(image, *count);
            (records, ControllerReply::ProducerIds { first })
        }
        ControllerRequest::AlterIsr(req) => {
            let record = reassignment::alter_isr(image, statics, req)?;
            let epoch = match &record {
                MetadataRecord::PartitionChanged {
                    partition_epoch, ..
                } => *partition_epoch,
                _ => req.partition_epoch + 1,
            };
            (vec![record], ControllerReply::PartitionEpoch { epoch })
        }
        ControllerRequest::ControlledShutdown { node_id } => {
            (broker_lifecycle::controlled_shutdown(image, *node_id), Done)
        }
        ControllerRequest::Drain { node_id, draining } => {
            if !image.brokers.contains_key(node_id) {
                return Err(Refusal::new(
                    STALE_BROKER_EPOCH,
                    format!("broker {node_id} is not registered"),
                ));
            }
            (
                broker_lifecycle::set_draining(image, *node_id, *draining),
                Done,
            )
        }
        ControllerRequest::Reassign {
            topic_id,
            partition,
            target,
        } => (
            reassignment::reassign(image, statics, topic_id, *partition, target.as_deref())?
                .into_iter()
                .collect(),
            Done,
        ),
        ControllerRequest::ElectLeaders {
            partitions,
            preferred,
        } => {
            let mut records = Vec::new();
            let mut results = Vec::with_capacity(partitions.len());
            for outcome in broker_lifecycle::elect_leaders(image, partitions, *preferred) {
                match outcome {
                    Ok(record) => {
                        records.extend(record);
                        results.push(None);
                    }
                    Err(e) => results.push(Some(e)),
                }
            }
            (records, ControllerReply::Elections { results })
        }
    })
}

/// Kafka error code INCONSISTENT_CLUSTER_ID.
pub const INCONSISTENT_CLUSTER_ID: i16 = 104;

/// Kafka error code STALE_BROKER_EPOCH: the broker must register again.
pub const STALE_BROKER_EPOCH: i16 = 77;

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(node_id: i32) -> Registration {
        Registration {
            cluster_id: "c".into(),
            node_id,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            incarnation: Uuid::from_u128(node_id as u128 + 1),
            controller: None,
        }
    }

    fn commit(
        image: &mut MetadataImage,
        req: &ControllerRequest,
    ) -> Result<ControllerReply, Refusal> {
        let (records, reply) = plan(image, &BrokerConfig::default(), req)?;
        for r in &records {
            image.apply(r);
        }
        Ok(reply)
    }

    #[test]
    fn register_then_heartbeat_unfences_and_a_stale_epoch_is_refused() {
        let mut image = MetadataImage::default();
        let Ok(ControllerReply::Registered { epoch }) =
            commit(&mut image, &ControllerRequest::Register(registration(0)))
        else {
            panic!("registration refused");
        };
        assert_eq!(image.brokers[&0].epoch, epoch);
        assert!(image.brokers[&0].fenced);
        let beat = ControllerRequest::Heartbeat { node_id: 0, epoch };
        commit(&mut image, &beat).expect("heartbeat");
        assert!(!image.brokers[&0].fenced);
        let stale = ControllerRequest::Heartbeat {
            node_id: 0,
            epoch: epoch - 1,
        };
        assert_eq!(
            commit(&mut image, &stale).unwrap_err().code,
            STALE_BROKER_EPOCH
        );
    }

    #[test]
    fn requests_round_trip_through_json() {
        let req = ControllerRequest::Reassign {
            topic_id: Uuid::from_u128(7),
            partition: 3,
            target: Some(vec![1, 2]),
        };
        let json = serde_json::to_value(&req).expect("encode");
        let back = serde_json::from_value::<ControllerRequest>(json).expect("decode");
        assert_eq!(format!("{back:?}"), format!("{req:?}"));
    }
}
