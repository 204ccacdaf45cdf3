//! The follower side: one fetcher task per leader broker, fetching every
//! partition this broker follows from it over the Kafka protocol (Fetch with
//! a replica id), appending the batches exactly as received, truncating on a
//! diverging epoch, and reporting how far its log is fsynced.
//!
//! Durability (`skiff.ack.durability=fsync`): after appending a response the
//! fetcher waits for group commit to fsync what it appended before it sends
//! the next fetch, so the fetch offset it reports is also its durable offset
//! (sent as well in Skiff's extension field, [`DURABLE_OFFSET_TAG`]). Batches
//! the leader receives meanwhile accumulate and come in the next response, so
//! one fsync covers many produce requests. Under `memory` the next fetch goes
//! out at once and the leader ignores durability.
//!
//! Replicas being moved onto this broker are throttled
//! (`follower.replication.throttled.rate`, see `throttle`): while the
//! broker's bucket is empty they are left out of the fetch, and the fetch is
//! parked on the leader no longer than until the bucket refills. The other
//! partitions of the same fetch are never held back.
//!
//! Owns: the connection to one leader and the fetch loop. Must not: decide
//! where to truncate (`divergence`), which leader to follow (the manager
//! re-targets fetchers from the metadata image) or which partitions are
//! throttled (the manager marks them, `throttle` decides).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::DURABLE_OFFSET_TAG;
use super::lost::{self, LostLeaders};
use super::throttle::ReplicationThrottle;
use crate::config::AckDurability;
use crate::log::BatchHeader;
use crate::partition::{FollowerPosition, Partition};
use crate::protocol::codec::{FrameCodec, FrameError};

/// The Fetch version followers send (flexible, topic ids, replica state).
pub const FETCH_VERSION: i16 = 16;
/// How long the leader may park a fetch with nothing new.
pub const MAX_WAIT_MS: i32 = 500;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Beyond `MAX_WAIT_MS`, how long a response may take before the connection is dropped.
const RESPONSE_GRACE: Duration = Duration::from_secs(10);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a partition the leader refused (not leader, fenced, unknown
/// epoch) sits out, waiting for newer metadata. Short: right after a
/// failover the leader is usually a few milliseconds behind the follower in
/// applying the image, and acks=all waits on this follower.
const PARTITION_BACKOFF: Duration = Duration::from_millis(50);
/// Largest response frame accepted.
const MAX_FRAME: usize = 256 << 20;
/// Largest response asked for.
const MAX_RESPONSE_BYTES: i32 = 64 << 20;

/// What a fetcher needs to know.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// This broker (the replica id in fetches).
    pub node_id: i32,
    /// The leader broker fetched from.
    pub leader: i32,
    pub host: String,
    pub port: i32,
    pub durability: AckDurability,
    /// Bytes per partition per fetch.
    pub max_bytes: i32,
    /// The broker's replication throttle (possibly unlimited).
    pub throttle: Arc<ReplicationThrottle>,
    /// Where this fetcher reports that its leader's process is gone, or there.
    pub lost: Arc<LostLeaders>,
}

/// A partition a fetcher fetches.
#[derive(Debug, Clone)]
pub struct Followed {
    pub partition: Arc<Partition>,
    /// The replication throttle applies (a reassignment is adding this
    /// replica and it is not in sync yet).
    pub throttled: bool,
}

/// A partition in one fetch request.
#[derive(Debug)]
struct Wanted {
    partition: Arc<Partition>,
    position: FollowerPosition,
    throttled: bool,
}

/// A fetch session with the leader ended.
#[derive(Debug, Error)]
enum SessionError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the leader closed the connection")]
    Closed,
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("fetch refused as a whole: error {0}")]
    Refused(i16),
    /// The partitions to fetch changed while a fetch was parked on the
    /// leader: start over at once on a fresh connection rather than wait up
    /// to `MAX_WAIT_MS` (after a failover acks=all waits on this follower).
    #[error("partitions changed")]
    Retarget,
}

impl SessionError {
    /// The leader's process is gone: the connection was refused, reset or
    /// closed by it (not a slow answer, a bad one, or our own retarget).
    fn means_leader_gone(&self) -> bool {
        match self {
            Self::Io(e) => lost::means_gone(e.kind()),
            Self::Closed => true,
            Self::Timeout(_) | Self::Malformed(_) | Self::Refused(_) | Self::Retarget => false,
        }
    }
}

/// Runs until cancelled: connects to the leader (reconnecting with bounded
/// backoff) and fetches the partitions in `partitions` that still follow it.
pub async fn run(
    config: FetcherConfig,
    mut partitions: watch::Receiver<Vec<Followed>>,
    cancel: CancellationToken,
) {
    let mut backoff = MIN_BACKOFF;
    let addr = format!("{}:{}", config.host, config.port);
    loop {
        let connected = tokio::select! {
            () = cancel.cancelled() => return,
            c = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)) => c,
        };
        let result = match connected {
            Ok(Ok(stream)) => {
                config.lost.reached(config.leader);
                let _ = stream.set_nodelay(true);
                debug!(leader = config.leader, %addr, "fetcher connected");
                let mut answered = false;
                let r = tokio::select! {
                    () = cancel.cancelled() => return,
                    r = session(&config, stream, &mut partitions, &mut answered) => r,
                };
                // Only a leader that answered resets the backoff: one that accepts
                // and then drops every connection must not be hammered.
                if answered {
                    backoff = MIN_BACKOFF;
                }
                r
            }
            Ok(Err(e)) => Err(SessionError::Io(e)),
            Err(_) => Err(SessionError::Timeout(CONNECT_TIMEOUT)),
        };
        match result {
            // The manager dropped this fetcher.
            Ok(()) => return,
            Err(SessionError::Retarget) => {
                debug!(
                    leader = config.leader,
                    "fetcher: partitions changed; fetching anew"
                );
                continue;
            }
            Err(e) => {
                if e.means_leader_gone() {
                    config.lost.lost(config.leader, std::time::Instant::now());
                }
                warn!(leader = config.leader, %addr, error = %e, retry_ms = backoff.as_millis() as u64, "fetcher: connection to leader failed")
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// What one response did, to decide whether to pause before the next fetch.
#[derive(Debug, Default)]
struct Progress {
    appended: Vec<(Arc<Partition>, i64)>,
    moved: bool,
}

async fn session(
    config: &FetcherConfig,
    stream: TcpStream,
    partitions: &mut watch::Receiver<Vec<Followed>>,
    answered: &mut bool,
) -> Result<(), SessionError> {
    let (reader, mut writer) = stream.into_split();
    let mut frames = FramedRead::new(reader, FrameCodec::new(MAX_FRAME));
    let mut correlation_id = 0i32;
    let mut paused: HashMap<(Uuid, i32), Instant> = HashMap::new();
    let client_id = StrBytes::from_string(format!("skiff-replica-{}", config.node_id));
    loop {
        let now = Instant::now();
        paused.retain(|_, until| *until > now);
        // Asked once per fetch: the bucket is shared with the broker's other fetchers.
        let hold = config.throttle.hold(now.into_std());
        let mut held = false;
        let mut wanted: Vec<Wanted> = partitions
            .borrow_and_update()
            .iter()
            .filter(|f| !paused.contains_key(&(f.partition.topic_id, f.partition.index)))
            .filter(|f| {
                let out = f.throttled && hold.is_some();
                held |= out;
                !out
            })
            .filter_map(|f| {
                f.partition
                    .follower_position()
                    .filter(|pos| pos.leader == config.leader)
                    .map(|position| Wanted {
                        partition: f.partition.clone(),
                        position,
                        throttled: f.throttled,
                    })
            })
            .collect();
        // While throttled partitions sit out, wait no longer than until they may fetch.
        let hold = hold.filter(|_| held);
        if wanted.is_empty() {
            // Nothing to fetch now: wait for new partitions, a pause or the throttle to end.
            let wait = hold.map_or(PARTITION_BACKOFF, |h| h.min(PARTITION_BACKOFF));
            tokio::select! {
                r = partitions.changed() => if r.is_err() { return Ok(()) },
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let max_wait_ms = hold.map_or(MAX_WAIT_MS, |h| {
            i32::try_from(h.as_millis()).map_or(MAX_WAIT_MS, |ms| ms.min(MAX_WAIT_MS))
        });
        correlation_id = correlation_id.wrapping_add(1);
        // Only the first partition with data may exceed its byte limit (KIP-74):
        // rotate so that no partition with a large batch starves behind others.
        let turn = correlation_id.unsigned_abs() as usize % wanted.len();
        wanted.rotate_left(turn);
        let frame = encode_request(config, &wanted, max_wait_ms, correlation_id, &client_id)?;
        writer.write_all(&frame).await?;
        let wait = Duration::from_millis(MAX_WAIT_MS as u64) + RESPONSE_GRACE;
        let answer = tokio::select! {
            a = tokio::time::timeout(wait, frames.next()) => a,
            changed = partitions.changed() => {
                return if changed.is_err() { Ok(()) } else { Err(SessionError::Retarget) };
            }
        };
        let response = match answer {
            Err(_) => return Err(SessionError::Timeout(wait)),
            Ok(None) => return Err(SessionError::Closed),
            Ok(Some(Err(FrameError::Io(e)))) => return Err(SessionError::Io(e)),
            Ok(Some(Err(e))) => return Err(SessionError::Malformed(e.to_string())),
            Ok(Some(Ok(frame))) => decode_response(frame.freeze(), correlation_id)?,
        };
        if response.error_code != 0 {
            return Err(SessionError::Refused(response.error_code));
        }
        *answered = true;
        let mut progress = Progress::default();
        let mut throttled_bytes = 0u64;
        for topic in response.responses {
            for pd in topic.partitions {
                let Some(w) = wanted.iter().find(|w| {
                    w.partition.topic_id == topic.topic_id
                        && w.partition.index == pd.partition_index
                }) else {
                    continue;
                };
                let (p, pos) = (&w.partition, &w.position);
                if w.throttled {
                    throttled_bytes += pd.records.as_ref().map_or(0, |r| r.len() as u64);
                }
                if let Some(pause) = apply_partition(config, p, pos, pd, &mut progress) {
                    paused.insert((p.topic_id, p.index), Instant::now() + pause);
                }
            }
        }
        {
            config
                .throttle
                .charge(throttled_bytes, std::time::Instant::now());
        }
        if config.durability == AckDurability::Fsync && !progress.appended.is_empty() {
            // Report only fsynced offsets: the next fetch goes out once they are.
            let waits = progress
                .appended
                .iter()
                .map(|(p, end)| async move { (p, p.wait_durable(*end).await) });
            for (p, r) in futures::future::join_all(waits).await {
                if let Err(e) = r {
                    warn!(topic = %p.topic, partition = p.index, error = %e, "follower log failed; pausing it");
                    paused.insert((p.topic_id, p.index), Instant::now() + MAX_BACKOFF);
                }
            }
        }
        if !progress.moved && progress.appended.is_empty() && !paused.is_empty() {
            // Every partition was refused: do not spin on the leader.
            tokio::time::sleep(PARTITION_BACKOFF).await;
        }
    }
}

/// Applies one partition's answer. Returns how long to pause the partition,
/// if the answer says it cannot fetch now.
fn apply_partition(
    config: &FetcherConfig,
    p: &Arc<Partition>,
    pos: &FollowerPosition,
    pd: kafka_protocol::messages::fetch_response::PartitionData,
    progress: &mut Progress,
) -> Option<Duration> {
    let epoch = pos.leader_epoch;
    match pd.error_code {
        0 => {
            let diverging = &pd.diverging_epoch;
            if diverging.epoch >= 0 || diverging.end_offset >= 0 {
                return match p.truncate_diverging(epoch, diverging.epoch, diverging.end_offset) {
                    Ok(_) => {
                        progress.moved = true;
                        None
                    }
                    Err(e) => {
                        warn!(topic = %p.topic, partition = p.index, error = %e, "truncation failed");
                        Some(MAX_BACKOFF)
                    }
                };
            }
            let records = pd.records.unwrap_or_default();
            let batches = whole_batches(&records, pos.log_end_offset);
            match p.append_replicated(epoch, batches, pd.high_watermark) {
                Ok(Some(leo)) if leo > pos.log_end_offset => {
                    progress.appended.push((p.clone(), leo));
                    None
                }
                Ok(_) => None,
                Err(e) => {
                    warn!(topic = %p.topic, partition = p.index, leader = config.leader, error = %e, "follower append failed");
                    Some(MAX_BACKOFF)
                }
            }
        }
        // OFFSET_OUT_OF_RANGE: the leader's log starts after ours ends, or
        // (without epoch information) ends before ours.
        1 => {
            let result = if pd.log_start_offset > pos.log_end_offset {
                p.restart_at(epoch, pd.log_start_offset)
            } else {
                let to = pd.high_watermark.max(pd.log_start_offset);
                info!(topic = %p.topic, partition = p.index, to, "fetch offset beyond the leader's log end; truncating to its high watermark");
                p.truncate_to(epoch, to)
            };
            match result {
                Ok(()) => {
                    progress.moved = true;
                    None
                }
                Err(e) => {
                    warn!(topic = %p.topic, partition = p.index, error = %e, "truncation failed");
                    Some(MAX_BACKOFF)
                }
            }
        }
        // NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH,
        // UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID: one of us has stale
        // metadata; the next image sorts it out.
        code @ (6 | 74 | 76 | 3 | 100) => {
            debug!(topic = %p.topic, partition = p.index, leader = config.leader, leader_epoch = epoch, code, "leader refused the fetch; waiting for metadata");
            Some(PARTITION_BACKOFF)
        }
        code => {
            warn!(topic = %p.topic, partition = p.index, leader = config.leader, code, "fetch failed");
            Some(MAX_BACKOFF)
        }
    }
}

/// The whole batches of `records` at or after `log_end` (a leader may cut the
/// last batch short at the size limit; a batch we already have is skipped).
fn whole_batches(records: &Bytes, log_end: i64) -> &[u8] {
    let mut start = 0;
    let mut end = 0;
    while end < records.len() {
        let Ok(h) = BatchHeader::parse(&records[end..]) else {
            break;
        };
        let Ok(size) = h.size() else { break };
        if size == 0 || end + size > records.len() {
            break;
        }
        if h.last_offset() < log_end {
            start = end + size;
        }
        end += size;
    }
    &records[start.min(end)..end]
}

fn encode_request(
    config: &FetcherConfig,
    wanted: &[Wanted],
    max_wait_ms: i32,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<BytesMut, SessionError> {
    // In the order given (rotated by the caller), grouped by topic.
    let mut topics: IndexMap<Uuid, Vec<FetchPartition>> = IndexMap::new();
    for w in wanted {
        let (p, pos) = (&w.partition, &w.position);
        let max_bytes = if w.throttled {
            config.throttle.fetch_bytes(config.max_bytes)
        } else {
            config.max_bytes
        };
        let mut durable = BytesMut::with_capacity(8);
        durable.extend_from_slice(&pos.durable_offset.min(pos.log_end_offset).to_be_bytes());
        let fp = FetchPartition::default()
            .with_partition(p.index)
            .with_current_leader_epoch(pos.leader_epoch)
            .with_fetch_offset(pos.log_end_offset)
            .with_last_fetched_epoch(pos.last_fetched_epoch)
            .with_log_start_offset(pos.log_start_offset)
            .with_partition_max_bytes(max_bytes)
            .with_unknown_tagged_field(DURABLE_OFFSET_TAG, durable.freeze());
        topics.entry(p.topic_id).or_default().push(fp);
    }
    let request = FetchRequest::default()
        .with_replica_state(ReplicaState::default().with_replica_id(BrokerId(config.node_id)))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(MAX_RESPONSE_BYTES)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(id, partitions)| {
                    FetchTopic::default()
                        .with_topic_id(id)
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(FETCH_VERSION)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let mut buf = BytesMut::with_capacity(256);
    buf.extend_from_slice(&[0; 4]);
    header
        .encode(
            &mut buf,
            ApiKey::Fetch.request_header_version(FETCH_VERSION),
        )
        .and_then(|()| request.encode(&mut buf, FETCH_VERSION))
        .map_err(|e| SessionError::Malformed(format!("encoding the fetch: {e}")))?;
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

fn decode_response(mut frame: Bytes, correlation_id: i32) -> Result<FetchResponse, SessionError> {
    let header = ResponseHeader::decode(
        &mut frame,
        ApiKey::Fetch.response_header_version(FETCH_VERSION),
    )
    .map_err(|e| SessionError::Malformed(e.to_string()))?;
    if header.correlation_id != correlation_id {
        return Err(SessionError::Malformed(format!(
            "correlation id {} for request {correlation_id}",
            header.correlation_id
        )));
    }
    // Decoding from `Bytes` keeps the records a slice of the frame: no copy.
    FetchResponse::decode(&mut frame, FETCH_VERSION)
        .map_err(|e| SessionError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::testing;

    #[test]
    fn whole_batches_drops_a_cut_tail_and_batches_already_held() {
        let mut one = testing::batch(3, 10, 1);
        let mut two = testing::batch(2, 10, 1);
        crate::log::batch::stamp_base_offset(&mut one, 10);
        crate::log::batch::stamp_base_offset(&mut two, 13);
        let mut all = one.clone();
        all.extend_from_slice(&two);
        let full = Bytes::from(all.clone());
        assert_eq!(whole_batches(&full, 10).len(), all.len());
        assert_eq!(whole_batches(&full, 13), &two[..]);
        let cut = Bytes::from(all[..all.len() - 5].to_vec());
        assert_eq!(whole_batches(&cut, 10), &one[..]);
        assert!(whole_batches(&Bytes::new(), 0).is_empty());
    }
}
