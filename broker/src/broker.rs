//! The running broker: its identity, configuration and the parts that serve
//! requests (metadata, replicas, groups, metrics), plus start-up and the
//! graceful shutdown on SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::admin::{http, safety};
use crate::config::{BrokerConfig, TopicConfig};
use crate::group::{GroupConfig, GroupCoordinator};
use crate::metadata::MetadataImage;
use crate::metadata::active::{Controller, ControllerHook, ControllerTiming};
use crate::metadata::broker_lifecycle::Registration;
use crate::metadata::client::{ControllerClient, DEFAULT_DEADLINE};
use crate::metadata::controller::{self, NewTopic};
use crate::metadata::identity::{self, IdentityError};
use crate::metadata::image::NO_LEADER;
use crate::metadata::quorum::{Quorum, QuorumConfig, QuorumError};
use crate::metadata::request::{ControllerReply, ControllerRequest, Refusal};
use crate::metrics::Metrics;
use crate::partition::manager::LeadershipChange;
use crate::partition::offsets_store::PartitionOffsetStore;
use crate::partition::{ReplicaManager, RoleChange};
use crate::protocol::server;

/// Name of the internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Producer ids are taken from the metadata in blocks of this size.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// What the command line decides.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    pub node_id: i32,
    pub data_dir: PathBuf,
    pub listen: String,
    /// `host:port` clients are told to connect to (defaults to the bound address).
    pub advertise: Option<String>,
    pub admin_listen: String,
    /// The metadata quorum (controller) listener.
    pub controller_listen: String,
    /// Voter id -> controller address; empty: a cluster of this broker alone.
    pub voters: BTreeMap<i32, String>,
    pub cluster_id: Option<String>,
    pub config: BrokerConfig,
}

/// Parses `--voters ID@HOST:PORT,...`.
pub fn parse_voters(list: &[String]) -> Result<BTreeMap<i32, String>, String> {
    let mut voters = BTreeMap::new();
    for entry in list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| format!("voter '{entry}': expected ID@HOST:PORT"))?;
        let id: i32 = id
            .parse()
            .map_err(|_| format!("voter '{entry}': '{id}' is not a node id"))?;
        split_host_port(addr).map_err(|e| format!("voter '{entry}': {e}"))?;
        if voters.insert(id, addr.to_owned()).is_some() {
            return Err(format!("voter {id} is listed twice"));
        }
    }
    Ok(voters)
}

/// Start-up failed.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    #[error("registering with the controller: {0}")]
    Registration(Refusal),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid address {0}: expected host:port")]
    Address(String),
    #[error("{0}")]
    Internal(String),
}

/// Shared state of a running broker; handlers get `&Arc<Broker>`.
#[derive(Debug)]
pub struct Broker {
    pub node_id: i32,
    pub cluster_id: String,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub rack: Option<String>,
    pub config: Arc<BrokerConfig>,
    pub quorum: Quorum,
    pub controller: Arc<ControllerClient>,
    pub replicas: Arc<ReplicaManager>,
    pub groups: Arc<GroupCoordinator>,
    pub metrics: Metrics,
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    ready: AtomicBool,
    offsets_topic_lock: tokio::sync::Mutex<()>,
}

impl Broker {
    /// Whether the broker serves requests (all partitions opened, listeners up).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.quorum.image()
    }

    /// Sends a request to the active controller and waits until this
    /// broker's image (and so its partitions) has the change.
    pub async fn submit(&self, request: ControllerRequest) -> Result<ControllerReply, Refusal> {
        let reply = self.controller.call(request, DEFAULT_DEADLINE).await?;
        apply_image(&self.replicas, self.image()).await;
        Ok(reply)
    }

    /// Creates a topic through the controller and waits until this broker has
    /// opened its partitions. `validate_only` checks without creating.
    pub async fn create_topic(
        &self,
        topic: NewTopic,
        validate_only: bool,
    ) -> Result<Uuid, Refusal> {
        let defaults = (
            self.config.long("num.partitions") as i32,
            self.config.long("default.replication.factor") as i32,
        );
        let id = Uuid::new_v4();
        if validate_only {
            controller::create_topic(&self.image(), &topic, defaults, id)?;
            return Ok(id);
        }
        self.submit(ControllerRequest::CreateTopic {
            topic,
            defaults,
            id,
        })
        .await?;
        Ok(id)
    }

    /// The metadata quorum's voters.
    pub fn voters(&self) -> Vec<i32> {
        self.quorum.voters().into_keys().collect()
    }

    /// The active controller, if known.
    pub fn active_controller(&self) -> Option<i32> {
        self.quorum.leader()
    }

    /// This broker's settings as of `image`: its start-up config under the
    /// dynamic settings of the metadata quorum.
    pub fn effective_config(&self, image: &MetadataImage) -> BrokerConfig {
        image.broker_configs.effective(&self.config, self.node_id)
    }

    /// `/v1/status`.
    pub fn status(&self) -> safety::BrokerStatus {
        let image = self.image();
        safety::status(
            &image,
            self.node_id,
            self.is_ready(),
            self.active_controller(),
            &self.effective_config(&image),
        )
    }

    /// `/v1/restart-safety`.
    pub fn restart_safety(&self) -> safety::RestartSafety {
        let image = self.image();
        let config = self.effective_config(&image);
        safety::restart_safety(&image, self.node_id, &self.voters(), &config)
    }

    /// Turns maintenance mode on (leaderships move away and stay away) or off.
    pub async fn set_draining(&self, draining: bool) -> Result<(), Refusal> {
        self.submit(ControllerRequest::Drain {
            node_id: self.node_id,
            draining,
        })
        .await
        .map(|_| info!(draining, "maintenance mode changed"))
    }

    /// Creates `__consumer_offsets` if it does not exist yet (as Kafka does on
    /// the first FindCoordinator).
    pub async fn ensure_offsets_topic(&self) -> Result<(), String> {
        let _guard = self.offsets_topic_lock.lock().await;
        if self.image().topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        let brokers = self.image().brokers.len().max(1) as i64;
        let rf = self
            .config
            .long("offsets.topic.replication.factor")
            .min(brokers) as i32;
        let mut config = TopicConfig::default();
        let segment = self.config.long("offsets.topic.segment.bytes").to_string();
        config
            .set("segment.bytes", &segment)
            .map_err(|e| e.to_string())?;
        config
            .set("retention.ms", "-1")
            .map_err(|e| e.to_string())?;
        let topic = NewTopic {
            name: OFFSETS_TOPIC.into(),
            partitions: self.config.long("offsets.topic.num.partitions") as i32,
            replication_factor: rf,
            assignments: vec![],
            config,
        };
        match self.create_topic(topic, false).await {
            Ok(_) => {}
            Err(e) if e.code == crate::metadata::api::TOPIC_ALREADY_EXISTS => {}
            Err(e) => return Err(e.to_string()),
        }
        // Leaders of its partitions load them as leadership arrives
        // (`follow_leadership`); clients retry until then.
        Ok(())
    }

    /// Hands out a producer id, taking a new block from the metadata when the
    /// current one is used up.
    pub async fn next_producer_id(&self) -> Result<i64, Refusal> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            let reply = self
                .submit(ControllerRequest::AllocateProducerIds {
                    count: PRODUCER_ID_BLOCK,
                })
                .await?;
            let ControllerReply::ProducerIds { first } = reply else {
                return Err(Refusal::new(
                    -1,
                    format!("unexpected controller reply {reply:?}"),
                ));
            };
            *block = (first, first + PRODUCER_ID_BLOCK);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}

/// A started broker; `shutdown` stops it gracefully.
#[derive(Debug)]
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    pub kafka_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub controller_addr: SocketAddr,
    shutdown: CancellationToken,
    heartbeats: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    kafka_server: Mutex<Option<JoinHandle<()>>>,
}

fn split_host_port(addr: &str) -> Result<(String, i32), StartError> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| StartError::Address(addr.to_owned()))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| StartError::Address(addr.to_owned()))?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port as i32,
    ))
}

/// Starts a broker: checks the data directory's identity, joins the metadata
/// quorum, registers with the active controller, opens (recovering) every
/// partition, then serves; the first heartbeat unfences it.
pub async fn start(opts: BrokerOptions) -> Result<RunningBroker, StartError> {
    let started = std::time::Instant::now();
    let identity = identity::ensure(&opts.data_dir, opts.node_id, opts.cluster_id.as_deref())?;
    let config = Arc::new(opts.config.clone());
    let shutdown = CancellationToken::new();

    let hook = Arc::new(ControllerHook::default());
    let mut quorum_config = QuorumConfig::new(
        opts.node_id,
        opts.controller_listen.clone(),
        opts.data_dir.join("__cluster_metadata").join("raft"),
    );
    quorum_config.voters = opts.voters.clone();
    let quorum = Quorum::start(quorum_config, hook.clone()).await?;
    let timing = ControllerTiming {
        session_timeout: Duration::from_millis(config.long("broker.session.timeout.ms") as u64),
        tick: Duration::from_millis(50),
        preferred_leader_interval: Duration::from_secs(
            config.long("leader.imbalance.check.interval.seconds") as u64,
        ),
        previous_controller_grace: Duration::from_millis(
            config.long("broker.heartbeat.interval.ms") as u64 + 100,
        ),
    };
    let controller = Controller::new(opts.node_id, quorum.clone(), timing, config.clone());
    hook.set(controller.clone());
    let mut tasks = vec![tokio::spawn(controller.clone().run(shutdown.clone()))];
    let client = ControllerClient::new(opts.node_id, quorum.clone(), controller);

    let listener = server::bind(&opts.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: opts.listen.clone(),
            source,
        })?;
    let kafka_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: opts.listen.clone(),
        source,
    })?;
    let (advertised_host, advertised_port) = match &opts.advertise {
        Some(a) => split_host_port(a)?,
        None => (kafka_addr.ip().to_string(), kafka_addr.port() as i32),
    };
    let rack = opts.config.get("broker.rack").map(str::to_owned);
    let registration = Registration {
        cluster_id: identity.cluster_id.clone(),
        node_id: opts.node_id,
        host: advertised_host.clone(),
        port: advertised_port,
        rack: rack.clone(),
        incarnation: identity.directory_id,
        controller: Some(
            opts.voters
                .get(&opts.node_id)
                .cloned()
                .unwrap_or_else(|| quorum.local_addr().to_string()),
        ),
    };
    let epoch = client
        .register(&registration)
        .await
        .map_err(StartError::Registration)?;
    let mut images = quorum.watch();
    let _ = tokio::time::timeout(
        DEFAULT_DEADLINE,
        images.wait_for(|i| {
            i.brokers
                .get(&opts.node_id)
                .is_some_and(|b| b.epoch == epoch)
        }),
    )
    .await;

    let replicas = Arc::new(ReplicaManager::with_isr_channel(
        opts.node_id,
        &opts.data_dir,
        config.clone(),
        client.clone(),
    ));
    let leadership = replicas.leadership_changes();
    let image = quorum.image();
    replicas.remove_strays(&image);
    let failed = apply_image(&replicas, image.clone()).await;
    if failed > 0 {
        warn!(
            failed,
            "some partitions could not be opened; see errors above"
        );
    }

    let store = Arc::new(PartitionOffsetStore::new(replicas.clone()));
    let group_config = GroupConfig::from_broker(&config);
    let groups = GroupCoordinator::new(store, group_config);
    tasks.push(tokio::spawn(follow_leadership(
        groups.clone(),
        leadership,
        shutdown.clone(),
    )));

    let metrics = Metrics::new(opts.node_id);
    let broker = Arc::new(Broker {
        node_id: opts.node_id,
        cluster_id: identity.cluster_id,
        advertised_host: advertised_host.clone(),
        advertised_port,
        rack,
        config: config.clone(),
        quorum: quorum.clone(),
        controller: client.clone(),
        replicas: replicas.clone(),
        groups,
        metrics,
        producer_ids: tokio::sync::Mutex::new((0, 0)),
        ready: AtomicBool::new(false),
        offsets_topic_lock: tokio::sync::Mutex::new(()),
    });

    let admin = http::bind(&opts.admin_listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: opts.admin_listen.clone(),
            source,
        })?;
    let admin_addr = admin.local_addr().map_err(|source| StartError::Bind {
        addr: opts.admin_listen.clone(),
        source,
    })?;
    tasks.push(tokio::spawn(http::serve(
        admin,
        broker.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(follow_metadata(
        broker.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(retention_loop(
        broker.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(metrics_loop(broker.clone(), shutdown.clone())));
    let heartbeats = CancellationToken::new();
    tasks.push(tokio::spawn(client.clone().heartbeat_loop(
        registration,
        Duration::from_millis(config.long("broker.heartbeat.interval.ms") as u64),
        heartbeats.clone(),
    )));
    let kafka_server = tokio::spawn(serve_once_unfenced(
        listener,
        broker.clone(),
        client.clone(),
        shutdown.clone(),
    ));
    info!(
        node_id = broker.node_id,
        cluster_id = %broker.cluster_id,
        kafka = %kafka_addr,
        advertised = %format!("{}:{}", broker.advertised_host, broker.advertised_port),
        admin = %admin_addr,
        controller = %quorum.local_addr(),
        partitions = replicas.all().len(),
        start_ms = started.elapsed().as_millis() as u64,
        "broker started (serves Kafka clients once unfenced)"
    );
    Ok(RunningBroker {
        broker,
        kafka_addr,
        admin_addr,
        controller_addr: quorum.local_addr(),
        shutdown,
        heartbeats,
        tasks,
        kafka_server: Mutex::new(Some(kafka_server)),
    })
}

/// Loads the consumer groups of each `__consumer_offsets` partition this
/// broker comes to lead, and drops them when leadership moves away.
async fn follow_leadership(
    groups: Arc<GroupCoordinator>,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<LeadershipChange>,
    shutdown: CancellationToken,
) {
    groups.start_offset_expiry();
    loop {
        let change = tokio::select! {
            () = shutdown.cancelled() => return,
            change = changes.recv() => match change { Some(c) => c, None => return },
        };
        if change.topic != OFFSETS_TOPIC {
            continue;
        }
        match change.change {
            RoleChange::BecameLeader {
                already_leading: false,
                ..
            } => {
                if let Err(e) = groups.load_partition(change.partition).await {
                    error!(partition = change.partition, error = %e, "cannot load consumer groups");
                }
            }
            RoleChange::StoppedLeading { .. } => groups.unload_partition(change.partition),
            RoleChange::BecameLeader { .. } | RoleChange::Follower { .. } => {}
        }
    }
}

/// Whether `image` shows broker `node_id` registered at `epoch` (its current
/// registration) and unfenced.
fn unfenced_at(image: &MetadataImage, node_id: i32, epoch: Option<i64>) -> bool {
    image
        .brokers
        .get(&node_id)
        .is_some_and(|b| !b.fenced && Some(b.epoch) == epoch)
}

/// Serves Kafka clients once this broker's current registration is unfenced,
/// as Kafka's KRaft brokers do (they enable request processing only after the
/// initial unfencing). Until then the broker is fenced: Metadata would list no
/// live broker, not even this one, and a client that applies such an answer
/// (librdkafka does) forgets every broker it knew, bootstrap included, so it
/// can send no FindCoordinator, Heartbeat or OffsetCommit any more. Connections
/// made meanwhile wait in the listener's backlog. `/readyz` turns ready here.
async fn serve_once_unfenced(
    listener: tokio::net::TcpListener,
    broker: Arc<Broker>,
    client: Arc<ControllerClient>,
    shutdown: CancellationToken,
) {
    let mut images = broker.quorum.watch();
    tokio::select! {
        () = shutdown.cancelled() => return,
        seen = images.wait_for(|i| unfenced_at(i, broker.node_id, client.epoch())) => {
            if seen.is_err() {
                return;
            }
        }
    }
    drop(images);
    broker.ready.store(true, Ordering::Release);
    info!(node_id = broker.node_id, "unfenced: serving Kafka clients");
    server::serve(listener, broker, shutdown).await;
}

/// Brings the replicas in line with `image`. Opening, recovering and deleting
/// partitions is blocking file I/O (seconds for a thousand new partitions),
/// so it runs off the async workers: the metadata quorum's heartbeats and the
/// request path share those, and a stalled worker costs a controller election.
async fn apply_image(replicas: &Arc<ReplicaManager>, image: Arc<MetadataImage>) -> usize {
    let replicas = replicas.clone();
    match tokio::task::spawn_blocking(move || replicas.sync(&image)).await {
        Ok(failed) => failed,
        Err(e) => {
            error!(error = %e, "applying a metadata image failed");
            1
        }
    }
}

/// Applies every new metadata image: partitions open, close, lead or follow.
async fn follow_metadata(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut images = broker.quorum.watch();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = images.changed() => if changed.is_err() { return },
        }
        let image = images.borrow_and_update().clone();
        apply_image(&broker.replicas, image).await;
    }
}

impl RunningBroker {
    /// Controlled shutdown: hands leaderships to other in-sync replicas (bounded),
    /// stops accepting, lets in-flight requests finish (bounded), then flushes
    /// and closes every log cleanly so the next start skips recovery.
    pub async fn shutdown(self) {
        info!("shutting down");
        self.broker.ready.store(false, Ordering::Release);
        let node = self.broker.node_id;
        let handed_over = self
            .broker
            .controller
            .call(
                ControllerRequest::ControlledShutdown { node_id: node },
                Duration::from_secs(5),
            )
            .await;
        match handed_over {
            Ok(_) => {
                // Step down now: the background task that applies images
                // may see the shutdown below before this image, and a
                // partition still leading here would hold acks=all produce
                // requests parked until their timeout (measured: 5 s of
                // stop time and a 5 s client stall) instead of answering
                // NOT_LEADER_OR_FOLLOWER at once.
                apply_image(&self.broker.replicas, self.broker.image()).await;
                let led = self
                    .broker
                    .image()
                    .topics
                    .values()
                    .flat_map(|t| t.partitions.values())
                    .filter(|p| p.leader == node)
                    .count();
                info!(
                    still_leading = led,
                    "controlled shutdown: leaderships handed over"
                );
            }
            Err(e) => warn!(error = %e, "controlled shutdown refused; stopping anyway"),
        }
        self.heartbeats.cancel();
        self.shutdown.cancel();
        // Before waiting on in-flight requests: a JoinGroup or SyncGroup is
        // parked for up to the group's rebalance timeout, and shutting the
        // coordinator answers it NOT_COORDINATOR now (measured: with a
        // JoinGroup parked, SIGTERM took the 10 s in-flight limit).
        self.broker.groups.shutdown();
        let server = self
            .kafka_server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(server) = server
            && tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .is_err()
        {
            warn!("in-flight requests did not finish within 10 s; closing anyway");
        }
        self.broker.replicas.close_all();
        for t in self.tasks {
            t.abort();
        }
        self.broker.quorum.clone().shutdown().await;
        info!("shutdown complete");
    }
}

/// Deletes what retention allows and forgets idle idempotent producers.
async fn retention_loop(broker: Arc<Broker>, shutdown: CancellationToken) {
    let every =
        Duration::from_millis(broker.config.long("log.retention.check.interval.ms").max(1) as u64);
    let producer_expiration_ms = broker.config.long("producer.id.expiration.ms");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        for p in broker.replicas.all() {
            if let Err(e) = p.apply_retention() {
                error!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
            }
            let expired = p.expire_producers(crate::partition::now_ms(), producer_expiration_ms);
            if expired > 0 {
                debug!(topic = %p.topic, partition = p.index, expired, "idle producers forgotten");
            }
        }
    }
}

async fn metrics_loop(broker: Arc<Broker>, shutdown: CancellationToken) {
    loop {
        let all = broker.replicas.all();
        broker
            .metrics
            .partitions
            .with_label_values(&["hosted"])
            .set(all.len() as i64);
        let leaders = all.iter().filter(|p| p.is_leader()).count();
        let under = all.iter().filter(|p| p.is_under_replicated()).count();
        broker
            .metrics
            .partitions
            .with_label_values(&["leader"])
            .set(leaders as i64);
        broker
            .metrics
            .partitions
            .with_label_values(&["under_replicated"])
            .set(under as i64);
        let under_min_isr = all.iter().filter(|p| p.is_under_min_isr()).count();
        broker
            .metrics
            .partitions
            .with_label_values(&["under_min_isr"])
            .set(under_min_isr as i64);
        let image = broker.image();
        let me = broker.node_id;
        let offline = image
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.leader == NO_LEADER && p.replicas.contains(&me))
            .count();
        broker
            .metrics
            .partitions
            .with_label_values(&["offline"])
            .set(offline as i64);
        // Rebuilt each round: a partition no longer led here (or a group no
        // longer coordinated here) must not keep reporting a stale value.
        broker.metrics.high_watermark.reset();
        for p in all.iter().filter(|p| p.is_leader()) {
            let (_, hw, _) = p.offsets();
            broker
                .metrics
                .high_watermark
                .with_label_values(&[&*p.topic, &p.index.to_string()])
                .set(hw);
        }
        broker.metrics.committed_offset.reset();
        for (group, topic, partition, offset) in broker.groups.committed_offsets() {
            broker
                .metrics
                .committed_offset
                .with_label_values(&[&group, &topic, &partition.to_string()])
                .set(offset);
        }
        broker
            .metrics
            .log_bytes
            .set(all.iter().map(|p| p.size_bytes() as i64).sum());
        let (throttled_bytes, throttled_time) = broker.replicas.throttled_totals();
        broker
            .metrics
            .set_throttled(throttled_bytes, throttled_time.as_secs_f64());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
