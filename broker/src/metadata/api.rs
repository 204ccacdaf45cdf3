//! The Metadata API: brokers, controller, and for each topic its partitions'
//! leaders, replicas and ISR, read from the metadata image. Topics that do not
//! exist are created when `auto.create.topics.enable` and the client allow it.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use tracing::info;
use uuid::Uuid;

use super::controller::NewTopic;
use super::image::{MetadataImage, TopicImage};
use crate::broker::{Broker, OFFSETS_TOPIC};
use crate::protocol::dispatch::text;

/// Kafka error code TOPIC_ALREADY_EXISTS.
pub const TOPIC_ALREADY_EXISTS: i16 = 36;

fn topic_entry(t: &TopicImage, image: &MetadataImage) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|(&index, p)| {
            let offline: Vec<BrokerId> = p
                .replicas
                .iter()
                .filter(|r| !image.is_usable(**r))
                .map(|&r| BrokerId(r))
                .collect();
            let leader_known = image.brokers.get(&p.leader).is_some_and(|b| !b.fenced);
            MetadataResponsePartition::default()
                .with_error_code(if leader_known { 0 } else { 5 })
                .with_partition_index(index)
                .with_leader_id(BrokerId(if leader_known { p.leader } else { -1 }))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|&r| BrokerId(r)).collect())
                .with_isr_nodes(p.isr.iter().map(|&r| BrokerId(r)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(text(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(t.name == OFFSETS_TOPIC)
        .with_partitions(partitions)
}

fn missing(name: Option<&str>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(text(n))))
        .with_topic_id(id)
}

/// Handles a Metadata request.
pub async fn metadata(
    broker: &Arc<Broker>,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let mut image = broker.image();
    // v0 has no flag: it always auto-creates; v4+ lets the client say.
    let allow_create = broker.config.flag("auto.create.topics.enable")
        && (version < 4 || req.allow_auto_topic_creation);
    let topics = match &req.topics {
        None => image
            .topics
            .values()
            .map(|t| topic_entry(t, &image))
            .collect(),
        Some(requested) if requested.is_empty() && version == 0 => image
            .topics
            .values()
            .map(|t| topic_entry(t, &image))
            .collect(),
        Some(requested) => {
            let mut out = Vec::with_capacity(requested.len());
            for r in requested {
                // A by-id lookup may carry an empty name rather than null.
                let name = r
                    .name
                    .as_ref()
                    .map(|n| n.0.as_str().to_owned())
                    .filter(|n| !n.is_empty() || r.topic_id.is_nil());
                let found = match &name {
                    Some(n) => image.topics.get(n).cloned(),
                    None => image.topic_by_id(&r.topic_id).cloned(),
                };
                match (found, name) {
                    (Some(t), _) => out.push(topic_entry(&t, &image)),
                    (None, Some(n))
                        if allow_create && super::controller::validate_topic_name(&n).is_ok() =>
                    {
                        let created = broker
                            .create_topic(
                                NewTopic {
                                    name: n.clone(),
                                    partitions: -1,
                                    replication_factor: -1,
                                    ..Default::default()
                                },
                                false,
                            )
                            .await;
                        match created {
                            Err(e) if e.code != TOPIC_ALREADY_EXISTS => {
                                out.push(missing(Some(&n), Uuid::nil(), e.code))
                            }
                            _ => {
                                info!(topic = %n, "auto-created topic");
                                image = broker.image();
                                match image.topics.get(&n) {
                                    Some(t) => out.push(topic_entry(t, &image)),
                                    None => out.push(missing(Some(&n), Uuid::nil(), 5)),
                                }
                            }
                        }
                    }
                    (None, Some(n)) => {
                        let code = if super::controller::validate_topic_name(&n).is_ok() {
                            3
                        } else {
                            17
                        };
                        out.push(missing(Some(&n), Uuid::nil(), code));
                    }
                    (None, None) => out.push(missing(None, r.topic_id, 100)),
                }
            }
            out
        }
    };
    // Like Kafka, only live (unfenced) brokers are listed.
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(text(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(text))
        })
        .collect();
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(text(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(
            // Admin requests sent "to the controller" may go to any broker (they
            // are forwarded), but name the active one when it is live.
            broker
                .active_controller()
                .filter(|c| image.brokers.get(c).is_some_and(|b| !b.fenced))
                .unwrap_or(broker.node_id),
        ))
        .with_topics(topics);
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        response.cluster_authorized_operations = -2_147_483_648;
    }
    response
}
