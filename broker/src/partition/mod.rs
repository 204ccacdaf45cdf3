//! A partition replica on this broker: its log, high watermark, leader epoch,
//! role (leader or follower), idempotent-producer state and group-commit
//! flusher.
//!
//! Owns: appending (with deduplication) and reading under one lock, running
//! the leader's replication state machine (`replication::LeaderState`) and
//! executing its commands, applying replicated batches and truncations as a
//! follower, and telling waiters when the high watermark, the log end or the
//! acks=all watermark move. Must not: decide leadership; the metadata image
//! says who leads, the manager applies it.

pub mod checkpoint;
pub mod fetch;
pub mod list_offsets;
pub mod manager;
pub mod offsets_store;
pub mod produce;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::config::{AckDurability, TopicSettings};
use crate::log::flush::{FlushFailed, FlushTarget, GroupCommit, Prepared};
use crate::log::{
    AppendError, BatchError, BatchHeader, FileSystem, FlushTicket, Log, LogSlice, MaintenanceError,
    OpenError, ReadError, StdFs,
};
use crate::metadata::image::PartitionImage;
use crate::producer::{BatchCheck, ProducerError, ProducerState, ProducerSummary};
use crate::replication::divergence::{self, FetchCheck, Truncation};
use crate::replication::fencing::{EpochRefusal, check_leader_epoch};
use crate::replication::{
    AlterIsr, AlterIsrError, Command, Event, IsrChannel, LeaderConfig, LeaderState, monotonic_ms,
};

pub use manager::ReplicaManager;

/// A produce to this partition was refused.
#[derive(Debug, Error)]
pub enum ProduceError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error("not enough in-sync replicas: {isr} in sync, min.insync.replicas is {min}")]
    NotEnoughReplicas { isr: i32, min: i32 },
    #[error("this broker does not lead the partition (leader epoch {leader_epoch})")]
    NotLeader { leader_epoch: i32 },
}

impl ProduceError {
    /// Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::Append(AppendError::InvalidBatch {
                reason:
                    BatchError::CrcMismatch { .. }
                    | BatchError::Truncated { .. }
                    | BatchError::TruncatedHeader { .. },
                ..
            }) => 2,
            Self::Append(AppendError::InvalidBatch {
                reason: BatchError::BadMagic(_),
                ..
            }) => 43,
            Self::Append(
                AppendError::InvalidBatch { .. }
                | AppendError::Empty
                | AppendError::OffsetBehindLogEnd { .. },
            ) => 87,
            Self::Append(AppendError::BatchTooLarge { .. }) => 10,
            Self::Append(AppendError::Io { .. } | AppendError::Offline { .. }) => 56,
            Self::Producer(e) => e.code(),
            Self::NotEnoughReplicas { .. } => 19,
            Self::NotLeader { .. } => 6,
        }
    }
}

/// Why an appended acks=all produce was not acknowledged.
#[derive(Debug, Clone, Error)]
pub enum AckError {
    /// Leadership moved (or the epoch changed) before the ISR had the batch.
    #[error("leadership moved before the batch was replicated")]
    NotLeader,
    /// The ISR shrank below `min.insync.replicas` while waiting.
    #[error("the ISR shrank below min.insync.replicas after the append")]
    NotEnoughReplicasAfterAppend,
    /// The leader's log failed.
    #[error(transparent)]
    Storage(#[from] FlushFailed),
}

impl AckError {
    /// Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::NotLeader => 6,
            Self::NotEnoughReplicasAfterAppend => 20,
            Self::Storage(_) => 56,
        }
    }
}

/// Why a fetch from this replica was refused.
#[derive(Debug, Error)]
pub enum FetchRefusal {
    #[error("leader epoch check failed: {0:?}")]
    Epoch(EpochRefusal),
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl From<EpochRefusal> for FetchRefusal {
    fn from(e: EpochRefusal) -> Self {
        Self::Epoch(e)
    }
}

/// The result of a produce to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// A retry of a batch that was already appended.
    pub duplicate: bool,
    pub log_start_offset: i64,
    /// The leader epoch the batch was appended at (acks=all waits at it).
    pub leader_epoch: i32,
}

/// Offsets that frame a read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub slice: Option<LogSlice>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// A follower's fetch of this partition, as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    pub replica: i32,
    pub fetch_offset: i64,
    /// Skiff's extension: offsets below this are fsynced on the follower.
    pub durable_offset: Option<i64>,
    pub current_leader_epoch: i32,
    pub last_fetched_epoch: i32,
    pub max_bytes: usize,
    pub min_one_batch: bool,
}

/// The leader's answer to a follower fetch.
#[derive(Debug, Clone)]
pub struct FollowerRead {
    pub read: ReadResult,
    /// `(epoch, end offset)`: the follower's log diverges and must be truncated first.
    pub diverging: Option<(i32, i64)>,
}

/// Where a follower stands, for building its next fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerPosition {
    pub leader: i32,
    pub leader_epoch: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Epoch of the last batch in the log (−1: none).
    pub last_fetched_epoch: i32,
    pub durable_offset: i64,
}

/// A change of this replica's leadership, for the owners of leader-only
/// duties (the group coordinator of `__consumer_offsets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Now leads at this epoch. `already_leading`: a new epoch of an
    /// uninterrupted leadership (nothing leader-only needs reloading).
    BecameLeader {
        leader_epoch: i32,
        already_leading: bool,
    },
    /// Now follows `leader` (−1: no leader) at this epoch, having led before.
    StoppedLeading { leader: i32, leader_epoch: i32 },
    /// Follows a different leader or epoch, not having led.
    Follower { leader: i32, leader_epoch: i32 },
}

/// How a replica of this broker behaves (shared by all its partitions).
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    pub node_id: i32,
    /// `skiff.ack.durability`.
    pub durability: AckDurability,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: i64,
    /// Where ISR changes go.
    pub isr_channel: Arc<dyn IsrChannel>,
}

#[derive(Debug)]
enum Role {
    Leader(Box<LeaderState>),
    /// Follows `leader` (−1: the partition has no leader).
    Follower {
        leader: i32,
    },
}

#[derive(Debug)]
struct Inner {
    log: Log,
    producers: ProducerState,
    leader_epoch: i32,
    high_watermark: i64,
    settings: TopicSettings,
    role: Role,
    /// First leader epoch of the current uninterrupted leadership (−1: not
    /// leading). A leader never truncates, so acks=all waits from any epoch
    /// since then stay valid across epoch bumps of the same leader.
    led_since: i32,
    /// Counts ISR proposals; a controller answer applies only to the latest.
    isr_proposal: u64,
}

impl Inner {
    fn leader(&mut self) -> Option<&mut LeaderState> {
        match &mut self.role {
            Role::Leader(s) => Some(s),
            Role::Follower { .. } => None,
        }
    }

    fn rebuild_producers(&mut self) {
        self.producers.clear();
        let producers = &mut self.producers;
        if let Err(e) = self
            .log
            .for_each_batch(self.log.log_start_offset(), |h| producers.record(h))
        {
            warn!(error = %e, "rebuilding producer state after truncation failed");
        }
    }
}

/// What acks=all waiters watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AckView {
    led_since: i32,
    leading: bool,
    ack_watermark: i64,
    min_isr: bool,
}

/// State shared with the flusher and ISR answer tasks.
#[derive(Debug)]
struct Shared {
    topic: Arc<str>,
    topic_id: Uuid,
    index: i32,
    node_id: i32,
    inner: Mutex<Inner>,
    hw: watch::Sender<i64>,
    leo: watch::Sender<i64>,
    acks: watch::Sender<AckView>,
    isr_channel: Arc<dyn IsrChannel>,
}

/// How long an ISR change may wait for the controller before it counts as failed (retriable).
const ISR_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// ISR proposals taken under the lock, sent after it is released.
type Proposals = Vec<(u64, AlterIsr)>;

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Executes a leader's commands under the lock; proposals are returned to
    /// be sent once the lock is released.
    fn execute(&self, inner: &mut Inner, commands: Vec<Command>, out: &mut Proposals) {
        for c in commands {
            match c {
                Command::HighWatermark(hw) => {
                    inner.high_watermark = inner.high_watermark.max(hw);
                }
                // Published from the state below.
                Command::AckWatermark(_) => {}
                Command::ProposeIsr {
                    isr,
                    leader_epoch,
                    partition_epoch,
                } => {
                    inner.isr_proposal += 1;
                    out.push((
                        inner.isr_proposal,
                        AlterIsr {
                            topic_id: self.topic_id,
                            partition: self.index,
                            leader: self.node_id,
                            leader_epoch,
                            partition_epoch,
                            isr,
                        },
                    ));
                }
            }
        }
    }

    /// Tells watchers what changed.
    fn publish(&self, inner: &Inner) {
        let hw = inner.high_watermark;
        self.hw.send_if_modified(|v| std::mem::replace(v, hw) != hw);
        let leo = inner.log.log_end_offset();
        self.leo
            .send_if_modified(|v| std::mem::replace(v, leo) != leo);
        let view = match &inner.role {
            Role::Leader(s) => AckView {
                led_since: inner.led_since,
                leading: true,
                ack_watermark: s.ack_watermark,
                min_isr: s.has_min_isr(),
            },
            Role::Follower { .. } => AckView {
                led_since: -1,
                leading: false,
                ack_watermark: -1,
                min_isr: false,
            },
        };
        self.acks
            .send_if_modified(|v| std::mem::replace(v, view) != view);
    }

    /// Feeds one event to the leader state (if leading) and executes the result.
    fn leader_event(&self, inner: &mut Inner, event: Event, out: &mut Proposals) {
        if let Some(state) = inner.leader() {
            let commands = state.on(event);
            self.execute(inner, commands, out);
        }
        self.publish(inner);
    }

    /// Sends ISR proposals to the controller; answers come back as events.
    fn send(self: &Arc<Self>, proposals: Proposals) {
        for (seq, req) in proposals {
            let leader_epoch = req.leader_epoch;
            debug!(topic = %self.topic, partition = self.index, leader_epoch, isr = ?req.isr, "proposing ISR change");
            let answer = self.isr_channel.alter_isr(req);
            let shared = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        // An answer that never comes must not block ISR changes forever.
                        let result = tokio::time::timeout(ISR_ANSWER_TIMEOUT, answer)
                            .await
                            .unwrap_or_else(|_| {
                                Err(AlterIsrError::Retriable(format!(
                                    "no answer from the controller within {ISR_ANSWER_TIMEOUT:?}"
                                )))
                            });
                        shared.isr_answered(seq, leader_epoch, result);
                    });
                }
                Err(_) => error!("ISR change proposed outside a runtime; dropped"),
            }
        }
    }

    fn isr_answered(
        self: &Arc<Self>,
        seq: u64,
        leader_epoch: i32,
        result: Result<i32, AlterIsrError>,
    ) {
        let mut out = Vec::new();
        {
            let mut inner = self.lock();
            let current = inner.isr_proposal == seq
                && inner
                    .leader()
                    .is_some_and(|s| s.leader_epoch == leader_epoch);
            if !current {
                return;
            }
            let event = match &result {
                Ok(partition_epoch) => Event::IsrCommitted {
                    partition_epoch: *partition_epoch,
                },
                // An ineligible replica (e.g. fenced until its first heartbeat
                // after a restart) may become eligible without any change to
                // this partition: retry after the backoff, as Kafka does.
                Err(AlterIsrError::Retriable(_) | AlterIsrError::Invalid(_)) => Event::IsrFailed {
                    now_ms: monotonic_ms(),
                },
                Err(AlterIsrError::Fenced) => Event::IsrRejected,
            };
            match &result {
                Ok(pe) => {
                    info!(topic = %self.topic, partition = self.index, leader_epoch, partition_epoch = pe, "ISR change committed")
                }
                // Retried every backoff while the controller is away: keep it quiet.
                Err(e @ AlterIsrError::Retriable(_)) => {
                    debug!(topic = %self.topic, partition = self.index, leader_epoch, error = %e, "ISR change not committed")
                }
                Err(e) => {
                    warn!(topic = %self.topic, partition = self.index, leader_epoch, error = %e, "ISR change refused")
                }
            }
            self.leader_event(&mut inner, event, &mut out);
        }
        self.send(out);
    }
}

/// The flusher's view of a partition (kept apart so the task does not own the partition).
#[derive(Debug)]
struct Flushing(Arc<Shared>);

impl FlushTarget for Flushing {
    fn prepare(&self) -> Prepared {
        Prepared::of(&mut self.0.lock().log)
    }
    fn complete(&self, ticket: &FlushTicket, result: std::io::Result<()>) -> Result<(), String> {
        let mut out = Vec::new();
        let done = {
            let mut inner = self.0.lock();
            let done = inner
                .log
                .complete_flush(ticket, result)
                .map_err(|e| e.to_string());
            if done.is_ok() {
                let durable_offset = inner.log.durable_offset();
                self.0
                    .leader_event(&mut inner, Event::Flushed { durable_offset }, &mut out);
            }
            done
        };
        self.0.send(out);
        done
    }
}

/// One partition replica.
#[derive(Debug)]
pub struct Partition {
    pub topic: Arc<str>,
    pub topic_id: Uuid,
    pub index: i32,
    shared: Arc<Shared>,
    commit: Arc<GroupCommit>,
    durability: AckDurability,
    lag_time_max_ms: i64,
}

impl Partition {
    /// Opens (recovering if needed) the partition's log in `dir` and rebuilds
    /// producer state from it. The replica starts with no leader; the manager
    /// applies the metadata image next. The high watermark starts at the
    /// checkpointed one (`hw_checkpoint`), never past the log end. Must run
    /// inside a tokio runtime (the flusher is a task).
    pub fn open(
        dir: &Path,
        topic: &str,
        topic_id: Uuid,
        index: i32,
        settings: TopicSettings,
        options: &ReplicaOptions,
        hw_checkpoint: Option<i64>,
    ) -> Result<Arc<Self>, OpenError> {
        let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
        let (log, report, producers) =
            Log::open_and_walk(fs, dir, settings.log.clone(), now_ms(), |log| {
                let mut producers = ProducerState::default();
                log.for_each_batch(log.log_start_offset(), |h| producers.record(h))?;
                Ok(producers)
            })?;
        // A brand-new partition has no clean-shutdown marker either; say
        // something only when recovery actually had work.
        if report.segments_recovered > 0 || report.truncated_bytes > 0 {
            info!(
                topic,
                partition = index,
                recovered = report.segments_recovered,
                bytes_cut = report.truncated_bytes,
                "partition recovered"
            );
        }
        // Only what was known committed: a restarted follower must not serve
        // (or, elected, keep) a high watermark beyond it. A sole leader moves
        // it to its log end as soon as it leads.
        let start = log.log_start_offset();
        let hw = hw_checkpoint
            .unwrap_or(start)
            .clamp(start, log.log_end_offset());
        let durable = log.durable_offset();
        let leo = log.log_end_offset();
        let flush_every = (settings.log.flush_ms < i64::MAX / 2)
            .then(|| Duration::from_millis(settings.log.flush_ms.max(1) as u64));
        let (hw_tx, _) = watch::channel(hw);
        let (leo_tx, _) = watch::channel(leo);
        let (acks_tx, _) = watch::channel(AckView {
            led_since: -1,
            leading: false,
            ack_watermark: -1,
            min_isr: false,
        });
        let topic: Arc<str> = topic.into();
        let shared = Arc::new(Shared {
            topic: topic.clone(),
            topic_id,
            index,
            node_id: options.node_id,
            inner: Mutex::new(Inner {
                log,
                producers,
                leader_epoch: -1,
                high_watermark: hw,
                settings,
                role: Role::Follower { leader: -1 },
                led_since: -1,
                isr_proposal: 0,
            }),
            hw: hw_tx,
            leo: leo_tx,
            acks: acks_tx,
            isr_channel: options.isr_channel.clone(),
        });
        let commit = GroupCommit::spawn(Arc::new(Flushing(shared.clone())), durable, flush_every);
        Ok(Arc::new(Self {
            topic,
            topic_id,
            index,
            shared,
            commit,
            durability: options.durability,
            lag_time_max_ms: options.replica_lag_time_max_ms,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    fn leader_config(&self, settings: &TopicSettings) -> LeaderConfig {
        LeaderConfig {
            min_insync_replicas: settings.min_insync_replicas.max(1) as usize,
            replica_lag_time_max_ms: self.lag_time_max_ms,
            durability: self.durability,
        }
    }

    /// Makes this replica leader or follower as the image says. A new leader
    /// records its epoch at its log end and starts its replication state with
    /// the image's ISR (followers get a full lag window; the high watermark
    /// carries over, never backwards). A follower stops leading, which fails
    /// parked acks=all requests. An image older than what this replica knows
    /// is ignored. Returns the change, if leadership or the epoch changed.
    pub fn apply_image(&self, image: &PartitionImage) -> Option<RoleChange> {
        let node_id = self.shared.node_id;
        let mut out = Vec::new();
        let change = {
            let mut inner = self.lock();
            if image.leader_epoch < inner.leader_epoch {
                debug!(topic = %self.topic, partition = self.index, ours = inner.leader_epoch, image = image.leader_epoch, "ignoring an older leader epoch");
                return None;
            }
            let same_epoch = image.leader_epoch == inner.leader_epoch;
            let change = match &mut inner.role {
                Role::Leader(state) if same_epoch && image.leader == node_id => {
                    let commands = state.update_assignment(
                        image.replicas.clone(),
                        image.isr.clone(),
                        image.partition_epoch,
                        monotonic_ms(),
                    );
                    self.shared.execute(&mut inner, commands, &mut out);
                    None
                }
                Role::Follower { leader } if same_epoch && *leader == image.leader => None,
                _ if image.leader == node_id => Some(self.become_leader(&mut inner, image)),
                role => {
                    let was_leader = matches!(role, Role::Leader(_));
                    *role = Role::Follower {
                        leader: image.leader,
                    };
                    inner.leader_epoch = image.leader_epoch;
                    inner.led_since = -1;
                    info!(topic = %self.topic, partition = self.index, leader = image.leader, leader_epoch = image.leader_epoch, "following");
                    Some(if was_leader {
                        RoleChange::StoppedLeading {
                            leader: image.leader,
                            leader_epoch: image.leader_epoch,
                        }
                    } else {
                        RoleChange::Follower {
                            leader: image.leader,
                            leader_epoch: image.leader_epoch,
                        }
                    })
                }
            };
            self.shared.publish(&inner);
            change
        };
        self.shared.send(out);
        change
    }

    fn become_leader(&self, inner: &mut Inner, image: &PartitionImage) -> RoleChange {
        let epoch = image.leader_epoch;
        if let Err(e) = inner.log.assign_leader_epoch(epoch) {
            error!(topic = %self.topic, partition = self.index, leader_epoch = epoch, error = %e, "cannot record the new leader epoch");
        }
        let config = self.leader_config(&inner.settings);
        let mut state = LeaderState::new(
            self.shared.node_id,
            epoch,
            image.partition_epoch,
            image.replicas.clone(),
            image.isr.clone(),
            inner.log.log_end_offset(),
            inner.log.durable_offset(),
            inner.high_watermark,
            monotonic_ms(),
            config,
        );
        let commands = state.start();
        let already_leading = inner.leader().is_some();
        if !already_leading {
            inner.led_since = epoch;
        }
        inner.role = Role::Leader(Box::new(state));
        inner.leader_epoch = epoch;
        let mut ignored = Vec::new();
        self.shared.execute(inner, commands, &mut ignored);
        info!(
            topic = %self.topic,
            partition = self.index,
            leader_epoch = epoch,
            log_end_offset = inner.log.log_end_offset(),
            high_watermark = inner.high_watermark,
            isr = ?image.isr,
            "leading"
        );
        RoleChange::BecameLeader {
            leader_epoch: epoch,
            already_leading,
        }
    }

    /// Appends a client's batches as leader: deduplicates idempotent retries,
    /// assigns offsets at the current leader epoch. With `acks_all`, refuses
    /// (before appending) when the ISR is below `min.insync.replicas`.
    pub fn append(&self, batches: &mut [u8], acks_all: bool) -> Result<Appended, ProduceError> {
        let mut out = Vec::new();
        let appended = {
            let mut inner = self.lock();
            let epoch = inner.leader_epoch;
            let min = inner.settings.min_insync_replicas;
            let Some(state) = inner.leader() else {
                return Err(ProduceError::NotLeader {
                    leader_epoch: epoch,
                });
            };
            if acks_all && !state.has_min_isr() {
                return Err(ProduceError::NotEnoughReplicas {
                    isr: state.isr.len() as i32,
                    min,
                });
            }
            let first =
                BatchHeader::parse(batches).map_err(|reason| AppendError::InvalidBatch {
                    position: 0,
                    reason,
                })?;
            if let BatchCheck::Duplicate {
                first_offset,
                last_offset,
            } = inner.producers.check_as_leader(&first, epoch)?
            {
                return Ok(Appended {
                    base_offset: first_offset,
                    last_offset,
                    duplicate: true,
                    log_start_offset: inner.log.log_start_offset(),
                    leader_epoch: epoch,
                });
            }
            let info = inner.log.append_as_leader(batches, epoch, now_ms())?;
            record_producers(&mut inner.producers, batches);
            let log_end_offset = inner.log.log_end_offset();
            self.shared
                .leader_event(&mut inner, Event::Appended { log_end_offset }, &mut out);
            if info.flush_due {
                self.commit.request(info.last_offset + 1);
            }
            Appended {
                base_offset: info.base_offset,
                last_offset: info.last_offset,
                duplicate: false,
                log_start_offset: inner.log.log_start_offset(),
                leader_epoch: epoch,
            }
        };
        self.shared.send(out);
        Ok(appended)
    }

    /// Waits until offsets below `end`, appended at `leader_epoch`, satisfy
    /// acks=all: in every ISR member's log (and fsynced on each under
    /// `skiff.ack.durability=fsync`). Fails if this replica stopped leading
    /// since (a new epoch of the same uninterrupted leadership keeps waiting),
    /// if the ISR shrinks below `min.insync.replicas`, or if the log fails.
    pub async fn wait_acks_all(&self, end: i64, leader_epoch: i32) -> Result<(), AckError> {
        let mut rx = self.shared.acks.subscribe();
        let acked = async move {
            loop {
                let v = *rx.borrow_and_update();
                if !v.leading || v.led_since > leader_epoch {
                    return Err(AckError::NotLeader);
                }
                if v.ack_watermark >= end {
                    return Ok(());
                }
                if !v.min_isr {
                    return Err(AckError::NotEnoughReplicasAfterAppend);
                }
                if rx.changed().await.is_err() {
                    return Err(AckError::NotLeader);
                }
            }
        };
        match self.durability {
            AckDurability::Memory => acked.await,
            AckDurability::Fsync => {
                // Also asks for the leader's own fsync; only its failure matters here.
                let flushed = async {
                    match self.commit.wait_durable(end).await {
                        Ok(()) => std::future::pending().await,
                        Err(e) => AckError::Storage(e),
                    }
                };
                tokio::select! {
                    r = acked => r,
                    e = flushed => Err(e),
                }
            }
        }
    }

    /// Waits until offsets below `end` are fsynced locally (a follower before
    /// it reports them durable).
    pub async fn wait_durable(&self, end: i64) -> Result<(), FlushFailed> {
        self.commit.wait_durable(end).await
    }

    /// Reads from `offset` up to the high watermark (consumers) or the log end
    /// (`up_to_log_end`), whatever the role (the coordinator's own reads).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        up_to_log_end: bool,
        min_one_batch: bool,
    ) -> Result<ReadResult, ReadError> {
        let inner = self.lock();
        read_locked(&inner, offset, max_bytes, up_to_log_end, min_one_batch)
    }

    /// A consumer's read: only the leader serves, at the epoch the consumer
    /// names (if any), up to the high watermark.
    pub fn read_for_consumer(
        &self,
        current_leader_epoch: i32,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, FetchRefusal> {
        let inner = self.lock();
        let leading = matches!(inner.role, Role::Leader(_));
        check_leader_epoch(leading, inner.leader_epoch, current_leader_epoch)?;
        Ok(read_locked(
            &inner,
            offset,
            max_bytes,
            false,
            min_one_batch,
        )?)
    }

    /// A follower's fetch on the leader: epoch fencing, the diverging-epoch
    /// check, a read up to the log end, and (with `record`) the follower's
    /// progress fed to the replication state, so the answer carries the high
    /// watermark that progress allows.
    pub fn read_for_follower(
        &self,
        fetch: &FollowerFetch,
        record: bool,
    ) -> Result<FollowerRead, FetchRefusal> {
        let mut out = Vec::new();
        let result = {
            let mut inner = self.lock();
            let leading = matches!(inner.role, Role::Leader(_));
            check_leader_epoch(leading, inner.leader_epoch, fetch.current_leader_epoch)?;
            let leo = inner.log.log_end_offset();
            let start = inner.log.log_start_offset();
            let out_of_range = || ReadError::OffsetOutOfRange {
                offset: fetch.fetch_offset,
                log_start_offset: start,
                log_end_offset: leo,
            };
            // Below our log start the follower must restart, diverging or not (as Kafka).
            if fetch.fetch_offset < start {
                return Err(out_of_range().into());
            }
            match divergence::check_fetch(
                inner.log.epochs(),
                leo,
                fetch.last_fetched_epoch,
                fetch.fetch_offset,
            ) {
                FetchCheck::Proceed => {}
                FetchCheck::Undetermined => return Err(out_of_range().into()),
                FetchCheck::Diverging { epoch, end_offset } => {
                    let read = ReadResult {
                        slice: None,
                        high_watermark: inner.high_watermark,
                        log_start_offset: start,
                        log_end_offset: leo,
                    };
                    return Ok(FollowerRead {
                        read,
                        diverging: Some((epoch, end_offset)),
                    });
                }
            }
            let slice = inner.log.read(
                fetch.fetch_offset,
                fetch.max_bytes,
                leo,
                fetch.min_one_batch,
            )?;
            if record && let Some(state) = inner.leader() {
                let durable_offset = fetch
                    .durable_offset
                    .unwrap_or_else(|| state.assumed_durable(fetch.replica, fetch.fetch_offset));
                let event = Event::FollowerFetched {
                    replica: fetch.replica,
                    fetch_offset: fetch.fetch_offset,
                    durable_offset,
                    now_ms: monotonic_ms(),
                };
                self.shared.leader_event(&mut inner, event, &mut out);
            }
            FollowerRead {
                read: ReadResult {
                    slice,
                    high_watermark: inner.high_watermark,
                    log_start_offset: inner.log.log_start_offset(),
                    log_end_offset: leo,
                },
                diverging: None,
            }
        };
        self.shared.send(out);
        Ok(result)
    }

    /// Where this replica stands as a follower, or `None` while it leads.
    pub fn follower_position(&self) -> Option<FollowerPosition> {
        let inner = self.lock();
        let Role::Follower { leader } = inner.role else {
            return None;
        };
        Some(FollowerPosition {
            leader,
            leader_epoch: inner.leader_epoch,
            log_start_offset: inner.log.log_start_offset(),
            log_end_offset: inner.log.log_end_offset(),
            last_fetched_epoch: inner.log.epochs().latest().map_or(-1, |e| e.epoch),
            durable_offset: inner.log.durable_offset(),
        })
    }

    /// Whether this replica still follows at `leader_epoch` (a fetch answer is
    /// only applied to the epoch it was asked at).
    fn follows_at<'a>(&self, inner: &'a mut Inner, leader_epoch: i32) -> Option<&'a mut Inner> {
        match inner.role {
            Role::Follower { .. } if inner.leader_epoch == leader_epoch => Some(inner),
            _ => None,
        }
    }

    /// Appends batches fetched from the leader at `leader_epoch`, exactly as
    /// received, records their producers (so a later leader deduplicates
    /// retries) and moves the high watermark to min(leader's, log end).
    /// Returns the new log end, or `None` if this replica no longer follows at
    /// that epoch (the answer is dropped).
    pub fn append_replicated(
        &self,
        leader_epoch: i32,
        batches: &[u8],
        leader_high_watermark: i64,
    ) -> Result<Option<i64>, AppendError> {
        let mut inner = self.lock();
        let Some(inner) = self.follows_at(&mut inner, leader_epoch) else {
            return Ok(None);
        };
        let mut flush_due = false;
        if !batches.is_empty() {
            let info = inner.log.append_as_follower(batches, now_ms())?;
            record_producers(&mut inner.producers, batches);
            flush_due = info.flush_due;
        }
        let leo = inner.log.log_end_offset();
        inner.high_watermark = leader_high_watermark
            .min(leo)
            .max(inner.log.log_start_offset());
        self.shared.publish(inner);
        if flush_due {
            self.commit.request(leo);
        }
        Ok(Some(leo))
    }

    /// Truncates after the leader reported a diverging epoch `(epoch,
    /// end_offset)`; returns the decision taken (a `Partial` one means fetch
    /// again to compare earlier epochs).
    pub fn truncate_diverging(
        &self,
        leader_epoch: i32,
        epoch: i32,
        end_offset: i64,
    ) -> Result<Option<Truncation>, MaintenanceError> {
        let mut guard = self.lock();
        let Some(inner) = self.follows_at(&mut guard, leader_epoch) else {
            return Ok(None);
        };
        let decision = divergence::truncation(
            inner.log.epochs(),
            inner.log.log_end_offset(),
            inner.high_watermark,
            epoch,
            end_offset,
        );
        let to = match decision {
            Truncation::Final(o) | Truncation::Partial(o) | Truncation::ToHighWatermark(o) => o,
        };
        info!(topic = %self.topic, partition = self.index, leader_epoch, diverging_epoch = epoch, end_offset, ?decision, "truncating a diverging log");
        self.truncate_locked(inner, to)?;
        Ok(Some(decision))
    }

    /// Truncates the log to `offset` as a follower at `leader_epoch` (the
    /// leader's log ends before ours and no epoch tells more).
    pub fn truncate_to(&self, leader_epoch: i32, offset: i64) -> Result<(), MaintenanceError> {
        let mut guard = self.lock();
        if let Some(inner) = self.follows_at(&mut guard, leader_epoch) {
            self.truncate_locked(inner, offset)?;
        }
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (the leader's log start
    /// moved past our log end).
    pub fn restart_at(&self, leader_epoch: i32, offset: i64) -> Result<(), MaintenanceError> {
        let mut guard = self.lock();
        let Some(inner) = self.follows_at(&mut guard, leader_epoch) else {
            return Ok(());
        };
        info!(topic = %self.topic, partition = self.index, offset, "follower restarts its log at the leader's log start");
        inner.log.truncate_fully_and_start_at(offset)?;
        self.commit.truncated(offset);
        inner.high_watermark = offset;
        inner.rebuild_producers();
        self.shared.publish(inner);
        Ok(())
    }

    fn truncate_locked(&self, inner: &mut Inner, offset: i64) -> Result<(), MaintenanceError> {
        if offset >= inner.log.log_end_offset() {
            return Ok(());
        }
        let new_end = inner.log.truncate_to(offset)?;
        self.commit.truncated(new_end);
        inner.high_watermark = inner.high_watermark.min(new_end);
        inner.rebuild_producers();
        self.shared.publish(inner);
        Ok(())
    }

    /// Lets time pass for the leader: followers that have not caught up for
    /// `replica.lag.time.max.ms` are proposed out of the ISR.
    pub fn tick(&self, now_ms: i64) {
        let mut out = Vec::new();
        {
            let mut inner = self.lock();
            if inner.leader().is_none() {
                return;
            }
            self.shared
                .leader_event(&mut inner, Event::Tick { now_ms }, &mut out);
        }
        self.shared.send(out);
    }

    /// `(log start, high watermark, log end)`.
    pub fn offsets(&self) -> (i64, i64, i64) {
        let inner = self.lock();
        (
            inner.log.log_start_offset(),
            inner.high_watermark,
            inner.log.log_end_offset(),
        )
    }

    /// Whether this replica leads the partition.
    pub fn is_leader(&self) -> bool {
        matches!(self.lock().role, Role::Leader(_))
    }

    /// The ISR as this leader knows it (committed), or `None` if not leading.
    pub fn isr(&self) -> Option<Vec<i32>> {
        match &self.lock().role {
            Role::Leader(s) => Some(s.isr()),
            Role::Follower { .. } => None,
        }
    }

    /// The leader this replica follows (itself when leading; −1: none).
    pub fn leader(&self) -> i32 {
        match &self.lock().role {
            Role::Leader(_) => self.shared.node_id,
            Role::Follower { leader } => *leader,
        }
    }

    /// Leading with fewer in-sync replicas than assigned ones.
    pub fn is_under_replicated(&self) -> bool {
        match &self.lock().role {
            Role::Leader(s) => s.isr.len() < s.replicas.len(),
            Role::Follower { .. } => false,
        }
    }

    /// Leading with fewer in-sync replicas than `min.insync.replicas`.
    pub fn is_under_min_isr(&self) -> bool {
        match &self.lock().role {
            Role::Leader(s) => !s.has_min_isr(),
            Role::Follower { .. } => false,
        }
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.lock().high_watermark
    }

    /// The log end offset.
    pub fn log_end(&self) -> i64 {
        self.lock().log.log_end_offset()
    }

    /// The first record at or after `timestamp` below the high watermark.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, ReadError> {
        let inner = self.lock();
        Ok(inner
            .log
            .offset_for_timestamp(timestamp)?
            .filter(|(o, _)| *o < inner.high_watermark))
    }

    /// Newest timestamp and its offset.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.lock().log.max_timestamp()
    }

    /// The leader epoch this replica serves.
    pub fn leader_epoch(&self) -> i32 {
        self.lock().leader_epoch
    }

    /// The topic settings in force.
    pub fn settings(&self) -> TopicSettings {
        self.lock().settings.clone()
    }

    /// Applies new topic settings.
    pub fn set_settings(&self, settings: TopicSettings) {
        let mut out = Vec::new();
        {
            let mut inner = self.lock();
            inner.log.set_config(settings.log.clone());
            let config = self.leader_config(&settings);
            inner.settings = settings;
            if let Some(state) = inner.leader() {
                let commands = state.set_config(config);
                self.shared.execute(&mut inner, commands, &mut out);
            }
            self.shared.publish(&inner);
        }
        self.shared.send(out);
    }

    /// Idempotent producers of this partition.
    pub fn producers(&self) -> Vec<ProducerSummary> {
        self.lock().producers.summaries()
    }

    /// Forgets the producers whose last batch is `max_age_ms` old at `now_ms`
    /// (`producer.id.expiration.ms`); returns how many.
    pub fn expire_producers(&self, now_ms: i64, max_age_ms: i64) -> usize {
        self.lock().producers.expire(now_ms, max_age_ms)
    }

    /// Bytes of record batches in the log (preallocated file space not counted).
    pub fn size_bytes(&self) -> u64 {
        self.lock().log.size_bytes()
    }

    /// A receiver that changes whenever the high watermark moves.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.shared.hw.subscribe()
    }

    /// A receiver that changes whenever the log end moves (parked follower fetches).
    pub fn watch_log_end(&self) -> watch::Receiver<i64> {
        self.shared.leo.subscribe()
    }

    /// Deletes segments that retention expires (never at or above the high watermark).
    pub fn apply_retention(&self) -> Result<i64, crate::log::MaintenanceError> {
        let mut inner = self.lock();
        let hw = inner.high_watermark;
        inner.log.apply_retention(now_ms(), hw)
    }

    /// Flushes and closes the log cleanly; the partition refuses appends
    /// afterwards and parked acks=all requests fail.
    pub fn close(&self) -> Result<(), crate::log::MaintenanceError> {
        self.commit.stop();
        let mut inner = self.lock();
        inner.role = Role::Follower { leader: -1 };
        inner.led_since = -1;
        self.shared.publish(&inner);
        inner.log.close()
    }
}

fn read_locked(
    inner: &Inner,
    offset: i64,
    max_bytes: usize,
    up_to_log_end: bool,
    min_one_batch: bool,
) -> Result<ReadResult, ReadError> {
    let limit = if up_to_log_end {
        inner.log.log_end_offset()
    } else {
        inner.high_watermark
    };
    let slice = inner.log.read(offset, max_bytes, limit, min_one_batch)?;
    Ok(ReadResult {
        slice,
        high_watermark: inner.high_watermark,
        log_start_offset: inner.log.log_start_offset(),
        log_end_offset: inner.log.log_end_offset(),
    })
}

/// Records every batch of an appended request (it may carry several); the
/// headers carry the offsets the log assigned.
fn record_producers(producers: &mut ProducerState, batches: &[u8]) {
    let mut pos = 0;
    while pos < batches.len() {
        let Ok(h) = BatchHeader::parse(&batches[pos..]) else {
            break;
        };
        producers.record(&h);
        match h.size() {
            Ok(size) if size > 0 => pos += size,
            _ => break,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
