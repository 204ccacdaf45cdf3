//! The replicas this broker hosts, kept in step with the metadata image:
//! partitions appear when the image assigns them here, lead or follow as the
//! image says, change settings when their topic's config changes, and are
//! deleted with their topic. Runs the replication machinery around them: one
//! fetcher per leader this broker follows, a periodic tick for lag-based ISR
//! shrinking, and the high-watermark checkpoint.
//!
//! Owns: partition directories, the map of open partitions, fetcher tasks and
//! the checkpoint file. Must not: decide placement or leadership.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::checkpoint::{self, HighWatermarks};
use super::{Partition, ReplicaOptions, RoleChange};
use crate::config::BrokerConfig;
use crate::log::StdFs;
use crate::metadata::MetadataImage;
use crate::replication::fetcher::{self, FetcherConfig, Followed};
use crate::replication::lost::LostLeaders;
use crate::replication::throttle::{self, ReplicationThrottle};
use crate::replication::{IsrChannel, NoController, monotonic_ms};

const PARTITION_METADATA: &str = "partition.metadata";
/// How often leaders judge follower lag.
const TICK_EVERY: Duration = Duration::from_millis(200);
/// How often the high-watermark checkpoint is written (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms` default).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

type Key = (Arc<str>, i32);

/// A partition whose leadership changed in a `sync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadershipChange {
    pub topic: String,
    pub partition: i32,
    pub change: RoleChange,
}

/// What a `sync` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Partitions that failed to open (logged and left out).
    pub failures: usize,
    /// Leadership changes, in topic/partition order.
    pub changes: Vec<LeadershipChange>,
}

/// What a fetcher's partitions are: which ones, at which leader epochs, throttled or not.
type FetchKey = Vec<(uuid::Uuid, i32, Option<i32>, bool)>;

fn fetch_key(partitions: &[Followed]) -> FetchKey {
    let mut key: FetchKey = partitions
        .iter()
        .map(|f| {
            let p = &f.partition;
            let epoch = p.follower_position().map(|pos| pos.leader_epoch);
            (p.topic_id, p.index, epoch, f.throttled)
        })
        .collect();
    key.sort_unstable();
    key
}

#[derive(Debug)]
struct FetcherHandle {
    key: FetchKey,
    addr: (String, i32),
    partitions: tokio::sync::watch::Sender<Vec<Followed>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Open partitions of this broker.
#[derive(Debug)]
pub struct ReplicaManager {
    node_id: i32,
    data_dir: PathBuf,
    config: Arc<BrokerConfig>,
    options: ReplicaOptions,
    partitions: RwLock<HashMap<Key, Arc<Partition>>>,
    /// High watermarks read at start-up, for partitions opened later.
    checkpointed: Mutex<HighWatermarks>,
    fetchers: Mutex<HashMap<i32, FetcherHandle>>,
    /// `follower.replication.throttled.rate`, shared by every fetcher.
    throttle: Arc<ReplicationThrottle>,
    /// Leaders whose process the fetchers found gone, before the image says so.
    lost: Arc<LostLeaders>,
    background: Mutex<Option<JoinHandle<()>>>,
    /// Serializes `sync` calls and holds the record count of the last image
    /// applied (images are applied in order).
    sync_lock: Mutex<u64>,
    /// Subscribers to leadership changes.
    listeners: Mutex<Vec<mpsc::UnboundedSender<LeadershipChange>>>,
    shutdown: CancellationToken,
}

impl ReplicaManager {
    /// A manager with no partitions yet and no controller for ISR changes
    /// (single node); `sync` opens partitions.
    pub fn new(node_id: i32, data_dir: &Path, config: Arc<BrokerConfig>) -> Self {
        Self::with_isr_channel(node_id, data_dir, config, Arc::new(NoController))
    }

    /// A manager whose leaders send ISR changes through `isr_channel`.
    pub fn with_isr_channel(
        node_id: i32,
        data_dir: &Path,
        config: Arc<BrokerConfig>,
        isr_channel: Arc<dyn IsrChannel>,
    ) -> Self {
        let options = ReplicaOptions {
            node_id,
            durability: config.ack_durability(),
            replica_lag_time_max_ms: config.long("replica.lag.time.max.ms").max(1),
            isr_channel,
        };
        Self {
            node_id,
            data_dir: data_dir.to_owned(),
            checkpointed: Mutex::new(checkpoint::read(&StdFs, data_dir)),
            options,
            partitions: RwLock::new(HashMap::new()),
            fetchers: Mutex::new(HashMap::new()),
            throttle: ReplicationThrottle::new(
                config.long("follower.replication.throttled.rate"),
                std::time::Instant::now(),
            ),
            lost: Arc::default(),
            background: Mutex::new(None),
            sync_lock: Mutex::new(0),
            listeners: Mutex::new(Vec::new()),
            shutdown: CancellationToken::new(),
            config,
        }
    }

    /// The leaders whose process a fetcher found gone within the last
    /// moments (see `replication::lost`; usually none), though the image may
    /// still name them as leaders.
    pub fn lost_leaders(&self) -> Vec<i32> {
        let mut lost = self.lost.current(std::time::Instant::now());
        lost.retain(|&l| l != self.node_id);
        lost
    }

    /// Bytes fetched for replicas being moved, and how long the replication
    /// throttle held them back, since start-up (zero when unthrottled).
    pub fn throttled_totals(&self) -> (u64, Duration) {
        self.throttle.totals(std::time::Instant::now())
    }

    /// The directory holding every partition's log (`--data-dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The partition `topic`-`index`, if this broker hosts it.
    pub fn get(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let map = self
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&(Arc::from(topic), index)).cloned()
    }

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Partitions this broker leads with fewer in-sync replicas than replicas.
    pub fn under_replicated(&self) -> usize {
        self.all()
            .iter()
            .filter(|p| p.is_under_replicated())
            .count()
    }

    /// Every later leadership change, in order, whichever `sync` caused it
    /// (for leader-only duties such as the group coordinator's
    /// `__consumer_offsets` partitions). Dropping the receiver unsubscribes.
    pub fn leadership_changes(&self) -> mpsc::UnboundedReceiver<LeadershipChange> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }

    fn notify(&self, changes: &[LeadershipChange]) {
        if changes.is_empty() {
            return;
        }
        let mut listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|l| changes.iter().all(|c| l.send(c.clone()).is_ok()));
    }

    /// Partitions this broker leads.
    pub fn leader_count(&self) -> usize {
        self.all().iter().filter(|p| p.is_leader()).count()
    }

    fn dir_of(&self, topic: &str, index: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{index}"))
    }

    /// Applies an image; returns how many partitions failed to open. See
    /// [`Self::sync_report`] for the leadership changes.
    pub fn sync(self: &Arc<Self>, image: &MetadataImage) -> usize {
        self.sync_report(image).failures
    }

    /// Opens partitions the image assigns to this broker, makes each leader or
    /// follower at the image's leader epoch, applies config changes, deletes
    /// partitions whose topic is gone, and re-targets the fetchers. Call it
    /// with every new image, in order.
    pub fn sync_report(self: &Arc<Self>, image: &MetadataImage) -> SyncReport {
        let mut applied = self
            .sync_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Several tasks apply images; an older one arriving late changes nothing.
        if image.records < *applied {
            return SyncReport::default();
        }
        *applied = image.records;
        self.start_background();
        let mut report = SyncReport::default();
        let mut wanted: HashMap<Key, ()> = HashMap::new();
        // Dynamic broker settings arrive with the image: topic defaults and
        // the replication throttle take effect here, without a restart.
        let config = image.broker_configs.effective(&self.config, self.node_id);
        if self.throttle.set_rate(
            config.long("follower.replication.throttled.rate"),
            std::time::Instant::now(),
        ) {
            info!(
                rate = config.get("follower.replication.throttled.rate"),
                "replication throttle changed"
            );
        }
        for topic in image.topics.values() {
            let settings = topic.config.resolve(&config);
            for (&index, p) in &topic.partitions {
                if !p.replicas.contains(&self.node_id) {
                    continue;
                }
                let key: Key = (Arc::from(topic.name.as_str()), index);
                wanted.insert(key.clone(), ());
                let partition = match self.get(&topic.name, index) {
                    Some(existing) if existing.topic_id == topic.id => {
                        if existing.settings() != settings {
                            existing.set_settings(settings.clone());
                        }
                        existing
                    }
                    _ => {
                        let dir = self.dir_of(&topic.name, index);
                        if let Err(e) = claim_dir(&dir, topic.id) {
                            error!(dir = %dir.display(), error = %e, "cannot prepare partition directory");
                            report.failures += 1;
                            continue;
                        }
                        let hw = self
                            .checkpointed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(&(topic.name.clone(), index))
                            .copied();
                        match Partition::open(
                            &dir,
                            &topic.name,
                            topic.id,
                            index,
                            settings.clone(),
                            &self.options,
                            hw,
                        ) {
                            Ok(partition) => {
                                self.partitions
                                    .write()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .insert(key, partition.clone());
                                partition
                            }
                            Err(e) => {
                                error!(topic = %topic.name, partition = index, error = %e, "cannot open partition");
                                report.failures += 1;
                                continue;
                            }
                        }
                    }
                };
                if let Some(change) = partition.apply_image(p) {
                    report.changes.push(LeadershipChange {
                        topic: topic.name.clone(),
                        partition: index,
                        change,
                    });
                }
            }
        }
        let gone: Vec<(Key, Arc<Partition>)> = {
            let mut map = self
                .partitions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<Key> = map
                .keys()
                .filter(|k| !wanted.contains_key(*k))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| map.remove(&k).map(|p| (k, p)))
                .collect()
        };
        self.retarget_fetchers(image);
        for ((topic, index), partition) in gone {
            if partition.is_leader() {
                report.changes.push(LeadershipChange {
                    topic: topic.to_string(),
                    partition: index,
                    change: RoleChange::StoppedLeading {
                        leader: -1,
                        leader_epoch: partition.leader_epoch(),
                    },
                });
            }
            let _ = partition.close();
            let dir = self.dir_of(&topic, index);
            let doomed = self.data_dir.join(format!(
                "{topic}-{index}.{}-delete",
                partition.topic_id.simple()
            ));
            info!(topic = %topic, partition = index, "deleting partition");
            match std::fs::rename(&dir, &doomed) {
                Ok(()) => {
                    if let Err(e) = std::fs::remove_dir_all(&doomed) {
                        warn!(dir = %doomed.display(), error = %e, "could not remove deleted partition");
                    }
                }
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "could not remove deleted partition")
                }
            }
        }
        self.notify(&report.changes);
        report
    }

    /// One fetcher per leader this broker follows partitions of; a fetcher
    /// whose leader moved to another address is replaced. Marks the
    /// partitions the replication throttle applies to.
    fn retarget_fetchers(&self, image: &MetadataImage) {
        let mut by_leader: HashMap<i32, Vec<Followed>> = HashMap::new();
        for p in self.all() {
            if let Some(pos) = p.follower_position()
                && pos.leader >= 0
                && pos.leader != self.node_id
            {
                let throttled = self.throttle.is_limited()
                    && image
                        .partition(&p.topic_id, p.index)
                        .is_some_and(|pi| throttle::is_throttled(pi, self.node_id));
                by_leader.entry(pos.leader).or_default().push(Followed {
                    partition: p,
                    throttled,
                });
            }
        }
        let mut fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        fetchers.retain(|leader, f| {
            let keep = by_leader.contains_key(leader)
                && image
                    .brokers
                    .get(leader)
                    .is_some_and(|b| (b.host.as_str(), b.port) == (f.addr.0.as_str(), f.addr.1));
            if !keep {
                f.cancel.cancel();
            }
            keep
        });
        for (leader, partitions) in by_leader {
            let key = fetch_key(&partitions);
            if let Some(f) = fetchers.get_mut(&leader) {
                // Only a real change wakes the fetcher (it abandons a parked
                // fetch for it): another partition, or another leader epoch.
                if f.key != key {
                    f.key = key;
                    f.partitions.send_replace(partitions);
                }
                continue;
            }
            let Some(b) = image.brokers.get(&leader) else {
                warn!(
                    leader,
                    "no address for the leader broker; not fetching from it yet"
                );
                continue;
            };
            let (tx, rx) = tokio::sync::watch::channel(partitions);
            let cancel = self.shutdown.child_token();
            let config = FetcherConfig {
                node_id: self.node_id,
                leader,
                host: b.host.clone(),
                port: b.port,
                durability: self.options.durability,
                max_bytes: self.config.long("message.max.bytes").max(1 << 20) as i32,
                throttle: self.throttle.clone(),
                lost: self.lost.clone(),
            };
            info!(leader, host = %b.host, port = b.port, "starting fetcher");
            let task = tokio::spawn(fetcher::run(config, rx, cancel.clone()));
            fetchers.insert(
                leader,
                FetcherHandle {
                    key,
                    addr: (b.host.clone(), b.port),
                    partitions: tx,
                    cancel,
                    task,
                },
            );
        }
    }

    /// Starts the tick and checkpoint task once.
    fn start_background(self: &Arc<Self>) {
        let mut slot = self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() || self.shutdown.is_cancelled() {
            return;
        }
        let weak = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        *slot = Some(tokio::spawn(background(weak, shutdown)));
    }

    /// Writes every hosted partition's high watermark to the checkpoint file.
    pub fn checkpoint_high_watermarks(&self) {
        let mut hws = self
            .checkpointed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut now = HighWatermarks::new();
        for p in self.all() {
            now.insert((p.topic.to_string(), p.index), p.high_watermark());
        }
        if now == *hws {
            return;
        }
        match checkpoint::write(&StdFs, &self.data_dir, &now) {
            Ok(()) => *hws = now,
            Err(e) => {
                error!(dir = %self.data_dir.display(), error = %e, "cannot write the high-watermark checkpoint")
            }
        }
    }

    /// Stops fetchers and background tasks, closes every partition cleanly
    /// (flush, clean-shutdown markers) and writes the high-watermark checkpoint.
    pub fn close_all(&self) {
        self.shutdown.cancel();
        for (_, f) in self
            .fetchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            f.cancel.cancel();
            f.task.abort();
        }
        if let Some(t) = self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
        for p in self.all() {
            if let Err(e) = p.close() {
                error!(topic = %p.topic, partition = p.index, error = %e, "unclean close");
            }
        }
        self.checkpoint_high_watermarks();
    }

    /// Removes directories of topics deleted while the broker was down, and
    /// leftovers of interrupted deletions.
    pub fn remove_strays(&self, image: &MetadataImage) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !path.join(PARTITION_METADATA).exists() && !name.ends_with("-delete") {
                continue;
            }
            let keep = read_topic_id(&path).is_some_and(|id| {
                image.topic_by_id(&id).is_some_and(|t| {
                    t.partitions.iter().any(|(i, p)| {
                        p.replicas.contains(&self.node_id) && name == format!("{}-{i}", t.name)
                    })
                })
            });
            if !keep {
                info!(dir = %path.display(), "removing directory of a deleted partition");
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    warn!(dir = %path.display(), error = %e, "could not remove");
                }
            }
        }
    }
}

fn read_topic_id(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
}

/// Makes `dir` the directory of topic `id`: a directory left by an older topic
/// of the same name is wiped first.
fn claim_dir(dir: &Path, id: Uuid) -> std::io::Result<()> {
    match read_topic_id(dir) {
        Some(existing) if existing == id => return Ok(()),
        Some(existing) => {
            warn!(dir = %dir.display(), old = %existing, new = %id, "directory belongs to a deleted topic of the same name; wiping it");
            std::fs::remove_dir_all(dir)?;
        }
        None => {}
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{PARTITION_METADATA}.tmp"));
    std::fs::write(&tmp, format!("version: 0\ntopic_id: {id}\n"))?;
    std::fs::rename(&tmp, dir.join(PARTITION_METADATA))
}

async fn background(manager: Weak<ReplicaManager>, shutdown: CancellationToken) {
    let mut last_checkpoint = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TICK_EVERY) => {}
        }
        let Some(manager) = manager.upgrade() else {
            return;
        };
        let now = monotonic_ms();
        for p in manager.all() {
            p.tick(now);
        }
        if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            last_checkpoint = tokio::time::Instant::now();
            let m = manager.clone();
            // File I/O off the runtime's worker threads.
            let _ = tokio::task::spawn_blocking(move || m.checkpoint_high_watermarks()).await;
        }
    }
}
