//! The Produce API: validate, deduplicate and append each partition's batches
//! in request order on the leader, then answer by `acks`: 0 never, 1 once
//! appended, -1 once every ISR member has the batch (`skiff.ack.durability`:
//! fsynced on each, or in memory). acks=all is refused before appending when
//! the ISR is below `min.insync.replicas` (NOT_ENOUGH_REPLICAS), and fails
//! with NOT_ENOUGH_REPLICAS_AFTER_APPEND if it shrinks below while parked,
//! NOT_LEADER_OR_FOLLOWER if leadership moves, REQUEST_TIMED_OUT at the
//! request's timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use tracing::debug;

use super::Partition;
use crate::broker::Broker;
use crate::protocol::dispatch::{Reply, text};

/// One partition's outcome before acks=all waiting.
struct Outcome {
    index: i32,
    result: Result<(i64, i64, i64), (i16, String)>,
    /// Leader epoch of the append (acks=all waits at it).
    epoch: i32,
    partition: Option<Arc<Partition>>,
}

fn append_one(
    broker: &Broker,
    topic: &str,
    index: i32,
    records: Option<&bytes::Bytes>,
    acks: i16,
) -> Outcome {
    let image = broker.image();
    let fail = |code: i16, message: String| Outcome {
        index,
        result: Err((code, message)),
        epoch: -1,
        partition: None,
    };
    let Some(t) = image.topics.get(topic) else {
        return fail(3, format!("unknown topic '{topic}'"));
    };
    if !t.partitions.contains_key(&index) {
        return fail(3, format!("unknown partition {topic}-{index}"));
    }
    let Some(partition) = broker.replicas.get(topic, index) else {
        return fail(
            6,
            format!("{topic}-{index} is not open on broker {}", broker.node_id),
        );
    };
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return fail(87, "no records".into());
    };
    // The log stamps offsets into the batch, so it needs its own mutable copy.
    let mut batch = BytesMut::from(&records[..]);
    match partition.append(&mut batch, acks == -1) {
        Ok(a) => {
            broker
                .metrics
                .bytes_in
                .with_label_values(&[topic])
                .inc_by(batch.len() as u64);
            Outcome {
                index,
                result: Ok((a.base_offset, a.last_offset, a.log_start_offset)),
                epoch: a.leader_epoch,
                partition: Some(partition),
            }
        }
        Err(e) => {
            debug!(topic, partition = index, error = %e, "produce refused");
            Outcome {
                index,
                result: Err((e.code(), e.to_string())),
                epoch: -1,
                partition: None,
            }
        }
    }
}

/// A partition's answer: `(base offset, log start offset)` or `(error code, message)`.
type PartitionResult = (i32, Result<(i64, i64), (i16, String)>);

fn response(
    topics: Vec<(kafka_protocol::messages::TopicName, Vec<PartitionResult>)>,
    version: i16,
) -> ProduceResponse {
    let responses = topics
        .into_iter()
        .map(|(name, parts)| {
            let partition_responses = parts
                .into_iter()
                .map(|(index, r)| {
                    let base = PartitionProduceResponse::default()
                        .with_index(index)
                        .with_log_append_time_ms(-1);
                    match r {
                        Ok((base_offset, log_start)) => base
                            .with_base_offset(base_offset)
                            .with_log_start_offset(log_start),
                        Err((code, message)) => {
                            let mut p = base
                                .with_error_code(code)
                                .with_base_offset(-1)
                                .with_log_start_offset(-1);
                            if version >= 8 {
                                p = p.with_error_message(Some(text(message)));
                            }
                            p
                        }
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// Handles Produce. Appends happen now, in request order; acks=all waits later.
pub fn produce(broker: &Arc<Broker>, req: ProduceRequest, version: i16) -> Reply {
    let acks = req.acks;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in &req.topic_data {
        let name = t.name.0.as_str();
        let outcomes: Vec<Outcome> = t
            .partition_data
            .iter()
            .map(|p| {
                if !(-1..=1).contains(&acks) {
                    return Outcome {
                        index: p.index,
                        result: Err((21, format!("acks must be -1, 0 or 1, got {acks}"))),
                        epoch: -1,
                        partition: None,
                    };
                }
                if req.transactional_id.is_some() {
                    return Outcome {
                        index: p.index,
                        result: Err((87, "transactions are not supported by this broker".into())),
                        epoch: -1,
                        partition: None,
                    };
                }
                append_one(broker, name, p.index, p.records.as_ref(), acks)
            })
            .collect();
        topics.push((t.name.clone(), outcomes));
    }
    match acks {
        0 => Reply::None,
        -1 => {
            let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
            Reply::Later(
                async move {
                    let mut done = Vec::with_capacity(topics.len());
                    for (name, outcomes) in topics {
                        let waits = outcomes.into_iter().map(|o| async move {
                            let result = match (o.result, o.partition) {
                                (Ok((base, last, start)), Some(p)) => {
                                    let acked = p.wait_acks_all(last + 1, o.epoch);
                                    match tokio::time::timeout(timeout, acked).await {
                                        Ok(Ok(())) => Ok((base, start)),
                                        Ok(Err(e)) => Err((e.code(), e.to_string())),
                                        Err(_) => Err((
                                            7,
                                            "acks=all not satisfied within the request timeout"
                                                .into(),
                                        )),
                                    }
                                }
                                (Ok((base, _, start)), None) => Ok((base, start)),
                                (Err(e), _) => Err(e),
                            };
                            (o.index, result)
                        });
                        done.push((name, futures::future::join_all(waits).await));
                    }
                    ResponseKind::Produce(response(done, version))
                }
                .boxed(),
            )
        }
        _ => {
            let done = topics
                .into_iter()
                .map(|(name, outcomes)| {
                    (
                        name,
                        outcomes
                            .into_iter()
                            .map(|o| (o.index, o.result.map(|(b, _, s)| (b, s))))
                            .collect(),
                    )
                })
                .collect();
            Reply::now(ResponseKind::Produce(response(done, version)))
        }
    }
}
