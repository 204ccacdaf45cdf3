//! The Fetch API for consumers (up to the high watermark) and followers (up to
//! the log end): whole batches as stored, a long-poll until `min_bytes` arrive
//! or `max_wait_ms` passes, byte limits per partition and per response.
//! Only the leader serves, at the leader epoch the request names (if any).
//! A follower's fetch also reports its progress (fetch offset = its log end,
//! and Skiff's durable-offset extension) to the leader's replication state,
//! and is answered a diverging epoch when its log went astray.
//! Fetch sessions (KIP-227) are declined (session id 0), which clients accept
//! by sending full fetch requests.
//!
//! Record batches are not read into memory: the response carries stand-ins
//! for them, and the connection sends the file ranges with `sendfile(2)`
//! (`protocol::outgoing`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind, TopicName};
use prometheus::IntCounterVec;
use tokio::time::Instant;
use uuid::Uuid;

use super::{FetchRefusal, FollowerFetch, ReadResult, ReplicaManager};
use crate::broker::Broker;
use crate::log::{LogSlice, ReadError};
use crate::metadata::MetadataImage;
use crate::protocol::dispatch::{Reply, text};
use crate::protocol::outgoing;
use crate::replication::DURABLE_OFFSET_TAG;

/// What fetches are served from.
#[derive(Debug, Clone)]
pub struct FetchContext {
    pub replicas: Arc<ReplicaManager>,
    /// Bytes returned, by topic.
    pub bytes_out: Option<IntCounterVec>,
    /// Leave record batches in their files, to be sent from there (the
    /// listener); otherwise they are read into the response.
    pub send_files: bool,
}

/// A fetch's answer: the response, and the file ranges its records fields
/// stand in for, in the order they appear in it (empty unless `send_files`).
#[derive(Debug)]
pub struct Fetched {
    pub response: FetchResponse,
    pub files: Vec<LogSlice>,
}

/// One partition a fetch asks for.
#[derive(Debug, Clone)]
struct Wanted {
    topic: String,
    index: i32,
    /// The partition is in the metadata image.
    known: bool,
    offset: i64,
    max_bytes: usize,
    leader_epoch: i32,
    last_fetched_epoch: i32,
    durable_offset: Option<i64>,
}

#[derive(Debug)]
struct Plan {
    topics: Vec<(String, Uuid, Vec<Wanted>)>,
    max_bytes: usize,
    min_bytes: usize,
    /// The fetching replica's id (followers), or `None` (consumers).
    replica: Option<i32>,
    version: i16,
}

fn with_offsets(pd: PartitionData, r: &ReadResult) -> PartitionData {
    pd.with_high_watermark(r.high_watermark)
        .with_last_stable_offset(r.high_watermark)
        .with_log_start_offset(r.log_start_offset)
}

/// The records field for `slice`: a stand-in for the file range (which goes
/// into `files`), or the bytes read from it.
fn records(ctx: &FetchContext, slice: &LogSlice, files: &mut Vec<LogSlice>) -> Bytes {
    if ctx.send_files
        && slice.file.fd().is_some()
        && let Some(stand_in) = outgoing::stand_in(slice.len)
    {
        files.push(slice.clone());
        return stand_in;
    }
    let mut buf = Vec::with_capacity(slice.len);
    match slice.read_into(&mut buf) {
        Ok(()) => Bytes::from(buf),
        Err(_) => Bytes::new(),
    }
}

/// Reads every wanted partition. `first`: this is the request's first read,
/// whose follower progress counts (re-reads of a parked fetch do not).
/// Returns the answer and the bytes of records in it.
fn read_all(ctx: &FetchContext, plan: &Plan, first: bool) -> (Fetched, usize) {
    let mut total = 0usize;
    let mut files = Vec::new();
    let mut responses = Vec::with_capacity(plan.topics.len());
    for (name, id, parts) in &plan.topics {
        let mut partitions = Vec::with_capacity(parts.len());
        for w in parts {
            let mut pd = PartitionData::default()
                .with_partition_index(w.index)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1);
            let partition = ctx.replicas.get(&w.topic, w.index);
            let budget = plan.max_bytes.saturating_sub(total).min(w.max_bytes);
            // KIP-74: the first partition with data gets at least one whole batch.
            let min_one = total == 0;
            let refusal = |e: FetchRefusal| match e {
                FetchRefusal::Epoch(r) => r.code(),
                FetchRefusal::Read(ReadError::OffsetOutOfRange { .. }) => 1,
                FetchRefusal::Read(_) => 56,
            };
            let outcome: Result<ReadResult, i16> = match (&partition, plan.replica) {
                _ if !w.known => Err(if plan.version >= 13 { 100 } else { 3 }),
                (None, _) => Err(6),
                (Some(p), Some(replica)) => {
                    let fetch = FollowerFetch {
                        replica,
                        fetch_offset: w.offset,
                        durable_offset: w.durable_offset,
                        current_leader_epoch: w.leader_epoch,
                        last_fetched_epoch: w.last_fetched_epoch,
                        max_bytes: budget,
                        min_one_batch: min_one,
                    };
                    match p.read_for_follower(&fetch, first) {
                        Ok(r) => {
                            if let Some((epoch, end_offset)) = r.diverging {
                                pd = pd.with_diverging_epoch(
                                    EpochEndOffset::default()
                                        .with_epoch(epoch)
                                        .with_end_offset(end_offset),
                                );
                            }
                            Ok(r.read)
                        }
                        Err(e) => Err(refusal(e)),
                    }
                }
                (Some(p), None) => p
                    .read_for_consumer(w.leader_epoch, w.offset, budget, min_one)
                    .map_err(refusal),
            };
            let code = match outcome {
                Ok(r) => {
                    pd = with_offsets(pd, &r);
                    let records = match &r.slice {
                        Some(slice) => records(ctx, slice, &mut files),
                        None => Bytes::new(),
                    };
                    total += records.len();
                    if let Some(out) = &ctx.bytes_out {
                        out.with_label_values(&[&w.topic])
                            .inc_by(records.len() as u64);
                    }
                    pd = pd.with_records(Some(records));
                    None
                }
                Err(code) => {
                    if code == 1
                        && let Some(p) = &partition
                    {
                        let (start, hw, _) = p.offsets();
                        pd = pd
                            .with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(start);
                    }
                    Some(code)
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
    let response = FetchResponse::default()
        .with_responses(responses)
        .with_session_id(0);
    (Fetched { response, files }, total)
}

/// Skiff's durable-offset extension of a follower's fetch partition, if sent.
fn durable_offset(fields: &std::collections::BTreeMap<i32, Bytes>) -> Option<i64> {
    let raw = fields.get(&DURABLE_OFFSET_TAG)?;
    let bytes: [u8; 8] = raw.as_ref().try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// Handles Fetch.
pub fn fetch(broker: &Arc<Broker>, req: FetchRequest, version: i16) -> Reply {
    let ctx = FetchContext {
        replicas: broker.replicas.clone(),
        bytes_out: Some(broker.metrics.bytes_out.clone()),
        send_files: true,
    };
    let answer = |f: Fetched| (ResponseKind::Fetch(f.response), f.files);
    match handle(ctx, &broker.image(), req, version) {
        Ok(fetched) => Reply::Files(futures::future::ready(answer(fetched)).boxed()),
        Err(later) => Reply::Files(later.map(answer).boxed()),
    }
}

/// Serves a fetch from `ctx`: the answer now, or a future for a parked fetch.
pub fn handle(
    ctx: FetchContext,
    image: &MetadataImage,
    req: FetchRequest,
    version: i16,
) -> Result<Fetched, BoxFuture<'static, Fetched>> {
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    if req.session_id != 0 {
        // We never hand out sessions, so a non-zero id is not ours.
        return Ok(Fetched {
            response: FetchResponse::default()
                .with_error_code(70)
                .with_session_id(0),
            files: Vec::new(),
        });
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
            let topic = image.topics.get(&name);
            let parts = t
                .partitions
                .iter()
                .map(|p| Wanted {
                    topic: name.clone(),
                    index: p.partition,
                    known: topic.is_some_and(|t| t.partitions.contains_key(&p.partition)),
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    leader_epoch: p.current_leader_epoch,
                    last_fetched_epoch: p.last_fetched_epoch,
                    durable_offset: durable_offset(&p.unknown_tagged_fields),
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
        replica: (replica_id >= 0).then_some(replica_id),
        version,
    };
    let (fetched, bytes) = read_all(&ctx, &plan, true);
    let has_error = fetched
        .response
        .responses
        .iter()
        .any(|t| t.partitions.iter().any(|p| p.error_code != 0));
    if bytes >= plan.min_bytes.max(1) || req.max_wait_ms <= 0 || has_error {
        return Ok(fetched);
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms as u64);
    Err(async move {
        // Consumers wait for the high watermark; followers for the log end.
        let mut watches: Vec<_> = plan
            .topics
            .iter()
            .flat_map(|(_, _, parts)| parts.iter())
            .filter_map(|w| ctx.replicas.get(&w.topic, w.index))
            .map(|p| match plan.replica {
                Some(_) => p.watch_log_end(),
                None => p.watch_high_watermark(),
            })
            .collect();
        while !watches.is_empty() {
            let changed =
                futures::future::select_all(watches.iter_mut().map(|w| w.changed().boxed()));
            let closed = match tokio::time::timeout_at(deadline, changed).await {
                Err(_) => break,
                Ok((r, i, _)) => r.is_err().then_some(i),
            };
            if let Some(i) = closed {
                // The partition closed; stop watching it.
                watches.swap_remove(i);
                continue;
            }
            let (fetched, bytes) = read_all(&ctx, &plan, false);
            if bytes >= plan.min_bytes.max(1) || Instant::now() >= deadline {
                return fetched;
            }
        }
        read_all(&ctx, &plan, false).0
    }
    .boxed())
}
