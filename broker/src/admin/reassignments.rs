//! AlterPartitionReassignments, ListPartitionReassignments and ElectLeaders:
//! the Kafka admin APIs through which tools (kafka-reassign-partitions.sh,
//! kafka-leader-election.sh, AdminClient) and the operator move replicas.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use tracing::info;
use uuid::Uuid;

use crate::broker::Broker;
use crate::metadata::request::{ControllerReply, ControllerRequest};
use crate::protocol::dispatch::text;

/// Kafka error codes used here.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_REPLICATION_FACTOR: i16 = 38;

fn broker_ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|&b| BrokerId(b)).collect()
}

/// Handles AlterPartitionReassignments: starts (replica list) or cancels
/// (null) the move of each partition.
pub async fn alter_partition_reassignments(
    broker: &Arc<Broker>,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = version < 1 || req.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.as_str().to_owned();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target: Option<Vec<i32>> =
                p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            let image = broker.image();
            let found = image.topics.get(&name).and_then(|topic| {
                topic
                    .partitions
                    .get(&p.partition_index)
                    .map(|part| (topic.id, part))
            });
            let outcome = match found {
                None => Err((
                    UNKNOWN_TOPIC_OR_PARTITION,
                    format!("unknown partition {name}-{}", p.partition_index),
                )),
                Some((_, part))
                    if !allow_rf_change
                        && target
                            .as_ref()
                            .is_some_and(|t| t.len() != part.target_replicas().len()) =>
                {
                    Err((
                        INVALID_REPLICATION_FACTOR,
                        "the reassignment would change the replication factor".to_owned(),
                    ))
                }
                Some((topic_id, _)) => broker
                    .submit(ControllerRequest::Reassign {
                        topic_id,
                        partition: p.partition_index,
                        target: target.clone(),
                    })
                    .await
                    .map(|_| {
                        info!(topic = %name, partition = p.partition_index, ?target, "reassignment submitted");
                    })
                    .map_err(|e| (e.code, e.message)),
            };
            let mut r =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            if let Err((code, message)) = outcome {
                r = r
                    .with_error_code(code)
                    .with_error_message(Some(text(message)));
            }
            partitions.push(r);
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_responses(responses)
}

/// Handles ListPartitionReassignments: every ongoing move, or those of the
/// named partitions.
pub fn list_partition_reassignments(
    broker: &Arc<Broker>,
    req: ListPartitionReassignmentsRequest,
    _version: i16,
) -> ListPartitionReassignmentsResponse {
    let image = broker.image();
    let wanted = |topic: &str, index: i32| match &req.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&index)),
    };
    let topics = image
        .topics
        .values()
        .filter_map(|t| {
            let partitions: Vec<OngoingPartitionReassignment> = t
                .partitions
                .iter()
                .filter(|(i, p)| {
                    (!p.adding.is_empty() || !p.removing.is_empty()) && wanted(&t.name, **i)
                })
                .map(|(&i, p)| {
                    OngoingPartitionReassignment::default()
                        .with_partition_index(i)
                        .with_replicas(broker_ids(&p.replicas))
                        .with_adding_replicas(broker_ids(&p.adding))
                        .with_removing_replicas(broker_ids(&p.removing))
                })
                .collect();
            (!partitions.is_empty()).then(|| {
                OngoingTopicReassignment::default()
                    .with_name(TopicName(text(t.name.clone())))
                    .with_partitions(partitions)
            })
        })
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

/// Handles ElectLeaders: preferred (type 0) or unclean (type 1) elections.
pub async fn elect_leaders(
    broker: &Arc<Broker>,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let preferred = version == 0 || req.election_type == 0;
    let image = broker.image();
    // (topic name, partition, topic id if known)
    let targets: Vec<(String, i32, Option<Uuid>)> = match &req.topic_partitions {
        None => image
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .keys()
                    .map(move |&i| (t.name.clone(), i, Some(t.id)))
            })
            .collect(),
        Some(list) => list
            .iter()
            .flat_map(|tp| {
                let name = tp.topic.0.as_str().to_owned();
                let id = image.topics.get(&name).map(|t| t.id);
                let image = &image;
                tp.partitions.iter().map(move |&i| {
                    let known = id.filter(|id| image.partition(id, i).is_some());
                    (name.clone(), i, known)
                })
            })
            .collect(),
    };
    let known: Vec<(Uuid, i32)> = targets
        .iter()
        .filter_map(|(_, i, id)| id.map(|id| (id, *i)))
        .collect();
    let reply = broker
        .submit(ControllerRequest::ElectLeaders {
            partitions: known,
            preferred,
        })
        .await;
    let failed = |code: i16, message: String| {
        if version >= 1 {
            Err(ElectLeadersResponse::default().with_error_code(code))
        } else {
            // v0 has no top-level error: every partition carries it.
            Ok(vec![Some((code, message)); targets.len()].into_iter())
        }
    };
    let outcomes = match reply {
        Ok(ControllerReply::Elections { results }) => Ok(results.into_iter()),
        Ok(other) => failed(-1, format!("unexpected controller reply {other:?}")),
        Err(e) => failed(e.code, e.message),
    };
    let mut outcomes = match outcomes {
        Ok(o) => o,
        Err(response) => return response,
    };
    let mut by_topic: Vec<ReplicaElectionResult> = Vec::new();
    for (name, index, id) in targets {
        let outcome = match id {
            None => Some((
                UNKNOWN_TOPIC_OR_PARTITION,
                format!("unknown partition {name}-{index}"),
            )),
            Some(_) => outcomes.next().flatten(),
        };
        let mut result = PartitionResult::default().with_partition_id(index);
        if let Some((code, message)) = outcome {
            result = result
                .with_error_code(code)
                .with_error_message(Some(text(message)));
        }
        match by_topic.iter_mut().find(|r| r.topic.0.as_str() == name) {
            Some(r) => r.partition_result.push(result),
            None => by_topic.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(text(name)))
                    .with_partition_result(vec![result]),
            ),
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(by_topic)
}
