//! The Fetch API for consumers (up to the high watermark) and followers (up to
//! the log end): whole batches as stored, a long-poll until `min_bytes` arrive
//! or `max_wait_ms` passes, byte limits per partition and per response.
//! Fetch sessions (KIP-227) are declined (session id 0), which clients accept
//! by sending full fetch requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind, TopicName};
use tokio::time::Instant;
use uuid::Uuid;

use crate::broker::Broker;
use crate::log::ReadError;
use crate::protocol::dispatch::{Reply, text};

/// One partition a fetch asks for.
#[derive(Debug, Clone)]
struct Wanted {
    topic: String,
    index: i32,
    offset: i64,
    max_bytes: usize,
    leader_epoch: i32,
}

struct Plan {
    topics: Vec<(String, Uuid, Vec<Wanted>)>,
    max_bytes: usize,
    min_bytes: usize,
    from_follower: bool,
    version: i16,
}

fn read_all(broker: &Broker, plan: &Plan) -> (FetchResponse, usize) {
    let image = broker.image();
    let mut total = 0usize;
    let mut responses = Vec::with_capacity(plan.topics.len());
    for (name, id, parts) in &plan.topics {
        let mut partitions = Vec::with_capacity(parts.len());
        for w in parts {
            let mut pd = PartitionData::default()
                .with_partition_index(w.index)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1);
            let leader = image
                .topics
                .get(&w.topic)
                .and_then(|t| t.partitions.get(&w.index))
                .map(|p| (p.leader, p.leader_epoch));
            let code = match (leader, broker.replicas.get(&w.topic, w.index)) {
                (None, _) => Some(if plan.version >= 13 { 100 } else { 3 }),
                (Some((l, _)), _) if l != broker.node_id && !plan.from_follower => Some(6),
                (_, None) => Some(6),
                (Some((_, epoch)), Some(_)) if w.leader_epoch >= 0 && w.leader_epoch < epoch => {
                    Some(74)
                }
                (Some((_, epoch)), Some(_)) if w.leader_epoch > epoch => Some(76),
                (Some(_), Some(p)) => {
                    let budget = plan.max_bytes.saturating_sub(total).min(w.max_bytes);
                    // KIP-74: the first partition with data gets at least one whole batch.
                    match p.read(w.offset, budget, plan.from_follower, total == 0) {
                        Ok(r) => {
                            pd = pd
                                .with_high_watermark(r.high_watermark)
                                .with_last_stable_offset(r.high_watermark)
                                .with_log_start_offset(r.log_start_offset);
                            let records = match r.slice {
                                Some(slice) => {
                                    let mut buf = Vec::with_capacity(slice.len);
                                    match slice.read_into(&mut buf) {
                                        Ok(()) => Bytes::from(buf),
                                        Err(_) => Bytes::new(),
                                    }
                                }
                                None => Bytes::new(),
                            };
                            total += records.len();
                            broker
                                .metrics
                                .bytes_out
                                .with_label_values(&[&w.topic])
                                .inc_by(records.len() as u64);
                            pd = pd.with_records(Some(records));
                            None
                        }
                        Err(ReadError::OffsetOutOfRange {
                            log_start_offset, ..
                        }) => {
                            let (_, hw, _) = p.offsets();
                            pd = pd
                                .with_high_watermark(hw)
                                .with_last_stable_offset(hw)
                                .with_log_start_offset(log_start_offset);
                            Some(1)
                        }
                        Err(_) => Some(56),
                    }
                }
            };
            if let Some(code) = code {
                pd = pd.with_error_code(code).with_records(Some(Bytes::new()));
            }
            partitions.push(pd);
        }
        let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
        if plan.version >= 13 {
            topic = topic.with_topic_id(*id);
        } else {
            topic = topic.with_topic(TopicName(text(name.clone())));
        }
        responses.push(topic);
    }
    (
        FetchResponse::default()
            .with_responses(responses)
            .with_session_id(0),
        total,
    )
}

/// Handles Fetch.
pub fn fetch(broker: &Arc<Broker>, req: FetchRequest, version: i16) -> Reply {
    let image = broker.image();
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    if req.session_id != 0 {
        // We never hand out sessions, so a non-zero id is not ours.
        return Reply::now(ResponseKind::Fetch(
            FetchResponse::default()
                .with_error_code(70)
                .with_session_id(0),
        ));
    }
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let (name, id) = if version >= 13 {
                (
                    image
                        .topic_by_id(&t.topic_id)
                        .map(|x| x.name.clone())
                        .unwrap_or_default(),
                    t.topic_id,
                )
            } else {
                let n = t.topic.0.as_str().to_owned();
                let id = image.topics.get(&n).map_or(Uuid::nil(), |x| x.id);
                (n, id)
            };
            let parts = t
                .partitions
                .iter()
                .map(|p| Wanted {
                    topic: name.clone(),
                    index: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    leader_epoch: p.current_leader_epoch,
                })
                .collect();
            (name, id, parts)
        })
        .collect();
    let plan = Plan {
        topics,
        max_bytes: if req.max_bytes > 0 {
            req.max_bytes as usize
        } else {
            i32::MAX as usize
        },
        min_bytes: req.min_bytes.max(0) as usize,
        from_follower: replica_id >= 0,
        version,
    };
    let (response, bytes) = read_all(broker, &plan);
    let has_error = response
        .responses
        .iter()
        .any(|t| t.partitions.iter().any(|p| p.error_code != 0));
    if bytes >= plan.min_bytes.max(1) || req.max_wait_ms <= 0 || has_error {
        return Reply::now(ResponseKind::Fetch(response));
    }
    let broker = broker.clone();
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms as u64);
    Reply::Later(
        async move {
            let mut watches: Vec<_> = plan
                .topics
                .iter()
                .flat_map(|(_, _, parts)| parts.iter())
                .filter_map(|w| broker.replicas.get(&w.topic, w.index))
                .map(|p| p.watch_high_watermark())
                .collect();
            while !watches.is_empty() {
                let changed =
                    futures::future::select_all(watches.iter_mut().map(|w| w.changed().boxed()));
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    break;
                }
                let (_, bytes) = read_all(&broker, &plan);
                if bytes >= plan.min_bytes.max(1) || Instant::now() >= deadline {
                    break;
                }
            }
            ResponseKind::Fetch(read_all(&broker, &plan).0)
        }
        .boxed(),
    )
}
