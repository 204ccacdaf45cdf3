//! The Raft metadata quorum: controller voters replicate `MetadataRecord`s
//! with openraft; every member (voters and learner brokers) applies them to a
//! `MetadataImage`. The Raft leader is the active controller.
//!
//! Owns: starting and stopping the Raft node, its storage and its controller
//! listener, and the public API below. Must not: expose openraft types, or
//! decide which records to write (that is `controller`).
//!
//! Bootstrap: on a fresh directory every voter initializes Raft with the same
//! voter set (repeat initialization is ignored). A broker that is not a voter
//! never initializes; it serves the listener and waits for the leader to add
//! it as a learner (`add_learner`).

mod durable;
mod error;
mod frame;
mod log_store;
mod message;
mod network;
mod rpc;
mod server;
mod slot_file;
mod state_machine;
mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::{BasicNode, ChangeMembers, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::QuorumError;
pub use frame::{FrameError, MAX_FRAME};
pub use rpc::{ConnId, ControllerRpc, RpcClient, RpcError};

use self::log_store::LogStore;
use self::network::Network;
use self::server::Server;
use self::state_machine::StateMachine;
use self::types::{Batch, NodeId, Raft};
use super::{MetadataImage, MetadataRecord};

/// Longest wait for Raft's metrics to show a change this node just committed.
const METRICS_LAG: std::time::Duration = std::time::Duration::from_secs(5);

/// How a node takes part in the metadata quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    /// This broker's id.
    pub node_id: i32,
    /// Controller listener to bind, host:port (port 0 allowed).
    pub listen: String,
    /// Voter id -> controller address. Empty = single node: this node is the
    /// only voter, at its bound address. Given on learners too, so they can
    /// reach the leader.
    pub voters: BTreeMap<i32, String>,
    /// Where the log, vote and snapshot live, e.g. `<data-dir>/__cluster_metadata/raft`.
    pub dir: PathBuf,
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Election timeout range (min, max). openraft 0.9 refuses votes while a
    /// leader lease of `max` runs, so after the last heartbeat a follower
    /// campaigns after `max` plus its own random timeout: with (150, 300) a
    /// new leader is elected 450–600 ms after the old one dies.
    pub election_timeout_ms: (u64, u64),
    /// Take a snapshot after this many entries since the last one, and purge the log behind it.
    pub snapshot_every: u64,
}

impl QuorumConfig {
    /// A config with the default timings (50 ms heartbeat, 150–300 ms election
    /// timeout, snapshot every 1000 entries).
    pub fn new(node_id: i32, listen: impl Into<String>, dir: impl Into<PathBuf>) -> QuorumConfig {
        QuorumConfig {
            node_id,
            listen: listen.into(),
            voters: BTreeMap::new(),
            dir: dir.into(),
            heartbeat_ms: 50,
            election_timeout_ms: (150, 300),
            snapshot_every: 1000,
        }
    }

    fn raft_config(&self) -> Result<openraft::Config, QuorumError> {
        openraft::Config {
            cluster_name: "skiff-metadata".to_string(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_ms.0,
            election_timeout_max: self.election_timeout_ms.1,
            // Per snapshot chunk; chunks are 1 MiB on loopback or a cluster network.
            install_snapshot_timeout: 2000,
            snapshot_max_chunk_size: 1 << 20,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            // Purge everything the snapshot covers: a lagging member gets the
            // (small) snapshot instead.
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Config(e.to_string()))
    }
}

/// A running member of the metadata quorum. Cheap to clone; all clones share one node.
#[derive(Debug, Clone)]
pub struct Quorum {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeId,
    raft: Raft,
    local_addr: SocketAddr,
    configured_voters: BTreeMap<i32, String>,
    /// Started with no voters: this node alone, at whatever address it bound
    /// this time (the membership may hold the address of an earlier run).
    single_node: bool,
    /// Serializes membership changes: openraft refuses one while another is in flight.
    membership_change: tokio::sync::Mutex<()>,
    image: watch::Receiver<Arc<MetadataImage>>,
    leader: watch::Receiver<Option<i32>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum")
            .field("node", &self.node)
            .field("local_addr", &self.local_addr)
            .field("leader", &*self.leader.borrow())
            .finish_non_exhaustive()
    }
}

impl Quorum {
    /// Opens the storage under `cfg.dir`, binds the controller listener, starts
    /// Raft and, on a voter, initializes the cluster if it is new.
    pub async fn start(
        cfg: QuorumConfig,
        controller: Arc<dyn ControllerRpc>,
    ) -> Result<Quorum, QuorumError> {
        let node = cfg.node_id;
        let raft_config = Arc::new(cfg.raft_config()?);
        let storage = |message: String| QuorumError::Storage {
            dir: cfg.dir.clone(),
            message,
        };
        let log = LogStore::open(&cfg.dir).map_err(|e| storage(e.to_string()))?;
        let (state_machine, image) =
            StateMachine::open(node, &cfg.dir).map_err(|e| storage(e.to_string()))?;
        let listener =
            TcpListener::bind(&cfg.listen)
                .await
                .map_err(|source| QuorumError::Bind {
                    addr: cfg.listen.clone(),
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| QuorumError::Bind {
            addr: cfg.listen.clone(),
            source,
        })?;
        let voters = if cfg.voters.is_empty() {
            BTreeMap::from([(node, local_addr.to_string())])
        } else {
            cfg.voters.clone()
        };

        let raft = Raft::new(node, raft_config, Network { node }, log, state_machine)
            .await
            .map_err(|e| QuorumError::Fatal(e.to_string()))?;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(
            Server {
                node,
                raft: raft.clone(),
                controller,
                stop: stop.clone(),
                tasks: tasks.clone(),
            }
            .run(listener),
        );
        let (leader_tx, leader) = watch::channel(None);
        tasks.spawn(follow_leader(node, raft.clone(), leader_tx, stop.clone()));

        let quorum = Quorum {
            inner: Arc::new(Inner {
                node,
                raft,
                local_addr,
                configured_voters: voters.clone(),
                single_node: cfg.voters.is_empty(),
                membership_change: tokio::sync::Mutex::new(()),
                image,
                leader,
                stop,
                tasks,
            }),
        };
        if voters.contains_key(&node) {
            let members: BTreeMap<NodeId, BasicNode> = voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            match quorum.inner.raft.initialize(members).await {
                Ok(()) => tracing::info!(node, ?voters, "metadata quorum initialized"),
                Err(e) => {
                    if let Some(e) = QuorumError::from_init(e) {
                        quorum.clone().shutdown().await;
                        return Err(e);
                    }
                    tracing::debug!(node, "metadata quorum already initialized");
                }
            }
        } else {
            tracing::info!(
                node,
                "metadata quorum learner: waiting to be added by the leader"
            );
        }
        tracing::info!(node, addr = %local_addr, "metadata quorum started");
        Ok(quorum)
    }

    /// The bound controller listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.inner.node
    }

    /// The latest applied image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.image.borrow().clone()
    }

    /// Every applied image, latest first.
    pub fn watch(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.image.clone()
    }

    /// The current Raft leader, i.e. the active controller, if known.
    pub fn leader(&self) -> Option<i32> {
        *self.inner.leader.borrow()
    }

    /// Leader changes.
    pub fn watch_leader(&self) -> watch::Receiver<Option<i32>> {
        self.inner.leader.clone()
    }

    /// Why this node's Raft core no longer runs (a fatal storage error, a
    /// panic, a shutdown), or `None` while it does. A broker without it can
    /// neither follow metadata nor heartbeat: it is not alive.
    pub fn failure(&self) -> Option<String> {
        let metrics = self.inner.raft.metrics();
        if metrics.has_changed().is_err() {
            return Some("the Raft core stopped".into());
        }
        let m = metrics.borrow();
        m.running_state
            .as_ref()
            .err()
            .map(|fatal| format!("the Raft core failed: {fatal}"))
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.node)
    }

    /// Voter id -> controller address, from the latest membership (the
    /// configured voters until this node has seen one).
    pub fn voters(&self) -> BTreeMap<i32, String> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeMap<i32, String> = membership
            .voter_ids()
            .filter_map(|id| self.address_in(membership, id).map(|a| (id, a)))
            .collect();
        if voters.is_empty() {
            self.inner.configured_voters.clone()
        } else {
            voters
        }
    }

    /// The controller address of a voter or learner.
    pub fn address_of(&self, node: i32) -> Option<String> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        self.address_in(m.membership_config.membership(), node)
            .or_else(|| self.inner.configured_voters.get(&node).cloned())
    }

    fn address_in(
        &self,
        membership: &openraft::Membership<NodeId, BasicNode>,
        node: i32,
    ) -> Option<String> {
        if self.inner.single_node && node == self.inner.node {
            return Some(self.inner.local_addr.to_string());
        }
        membership.get_node(&node).map(|n| n.addr.clone())
    }

    /// Leader only: replicates and applies `records` as one log entry; returns
    /// the image right after applying it.
    pub async fn propose(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, QuorumError> {
        let count = records.len();
        let written = self
            .inner
            .raft
            .client_write(Batch { records })
            .await
            .map_err(QuorumError::from_write)?;
        tracing::debug!(node = self.inner.node, log_id = %written.log_id, records = count, "metadata records committed");
        Ok(written.data.image)
    }

    /// Leader only: waits until everything committed before this call is
    /// applied here, and returns that image. Call before planning on a new leader.
    pub async fn barrier(&self) -> Result<Arc<MetadataImage>, QuorumError> {
        self.inner
            .raft
            .ensure_linearizable()
            .await
            .map_err(QuorumError::from_read)?;
        Ok(self.image())
    }

    /// Leader only: adds a non-voting learner so it receives the log. Returns
    /// once the membership change is committed, without waiting for the
    /// learner to catch up; a learner already known at this address is a no-op,
    /// a learner at a new address is updated.
    pub async fn add_learner(&self, node: i32, controller_addr: String) -> Result<(), QuorumError> {
        let _one_at_a_time = self.inner.membership_change.lock().await;
        if !self.is_leader() {
            return Err(QuorumError::NotLeader {
                leader: self.leader(),
            });
        }
        let (known, is_voter) = {
            let metrics = self.inner.raft.metrics();
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            (
                membership.get_node(&node).map(|n| n.addr.clone()),
                membership.voter_ids().any(|v| v == node),
            )
        };
        let raft = &self.inner.raft;
        let written = match known {
            Some(addr) if addr == controller_addr => return Ok(()),
            Some(addr) if is_voter => {
                return Err(QuorumError::Membership(format!(
                    "node {node} is a voter at {addr}; a voter's address cannot change to {controller_addr}"
                )));
            }
            Some(_) => {
                let change = ChangeMembers::SetNodes(BTreeMap::from([(
                    node,
                    BasicNode::new(&controller_addr),
                )]));
                raft.change_membership(change, true)
                    .await
                    .map_err(QuorumError::from_write)?
            }
            None => raft
                .add_learner(node, BasicNode::new(&controller_addr), false)
                .await
                .map_err(QuorumError::from_write)?,
        };
        // Committed; wait until `voters`/`address_of` (read from metrics) show it too.
        let index = written.log_id.index;
        raft.wait(Some(METRICS_LAG))
            .metrics(
                |m| {
                    m.membership_config
                        .log_id()
                        .is_some_and(|l| l.index >= index)
                },
                "membership change visible",
            )
            .await
            .map_err(|e| QuorumError::Fatal(e.to_string()))?;
        tracing::info!(node = self.inner.node, learner = node, addr = %controller_addr, "metadata learner added");
        Ok(())
    }

    /// Stops Raft and the controller listener (for every clone of this handle).
    pub async fn shutdown(self) {
        let inner = &self.inner;
        inner.stop.cancel();
        if let Err(e) = inner.raft.shutdown().await {
            tracing::warn!(node = inner.node, error = %e, "raft did not stop cleanly");
        }
        inner.tasks.close();
        inner.tasks.wait().await;
        tracing::info!(node = inner.node, "metadata quorum stopped");
    }

    #[cfg(test)]
    fn metrics(&self) -> openraft::RaftMetrics<NodeId, BasicNode> {
        self.inner.raft.metrics().borrow().clone()
    }
}

/// Publishes Raft's view of the leader on the leader watch channel.
async fn follow_leader(
    node: NodeId,
    raft: Raft,
    leader: watch::Sender<Option<i32>>,
    stop: CancellationToken,
) {
    let mut metrics = raft.metrics();
    loop {
        let (current, term) = {
            let m = metrics.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        let changed = leader.send_if_modified(|l| {
            let changed = *l != current;
            *l = current;
            changed
        });
        if changed {
            tracing::info!(node, term, leader = ?current, "metadata leader changed");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            r = metrics.changed() => if r.is_err() { break },
        }
    }
}
