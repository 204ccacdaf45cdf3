//! The active controller's runtime: it serves controller requests while this
//! broker leads the metadata quorum, keeps broker sessions (heartbeats) and
//! fences a broker whose session runs out or whose heartbeat connection
//! resets (or, for the previous controller, whose listener refuses
//! connections), and runs preferred-leader elections.
//!
//! Owns: sessions, clocks and the order of commits. Must not: decide what the
//! records say — `request::plan` and `broker_lifecycle` do.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::broker_lifecycle;
use super::image::MetadataImage;
use super::quorum::{ConnId, ControllerRpc, Quorum, QuorumError};
use super::records::MetadataRecord;
use super::request::{ControllerReply, ControllerRequest, NOT_CONTROLLER, Refusal, plan};
use crate::config::BrokerConfig;

/// A committed answer: the reply, and how many records the image holds once
/// the request's records are applied (the asking broker waits until its own
/// image has them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub reply: ControllerReply,
    pub records: u64,
}

fn refusal(e: QuorumError) -> Refusal {
    match e {
        QuorumError::NotLeader { leader } => Refusal::not_controller(leader),
        other => Refusal::new(NOT_CONTROLLER, other.to_string()),
    }
}

/// Timing of the controller.
#[derive(Debug, Clone, Copy)]
pub struct ControllerTiming {
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout: Duration,
    /// How often sessions are checked.
    pub tick: Duration,
    /// `leader.imbalance.check.interval.seconds`: preferred-leader elections.
    pub preferred_leader_interval: Duration,
    /// How long a new active controller waits for the previous one to
    /// heartbeat before fencing it: it most likely crashed (that is why
    /// leadership moved), and a live broker heartbeats within its interval.
    pub previous_controller_grace: Duration,
}

#[derive(Debug, Default)]
struct Sessions {
    /// Whether these sessions belong to a term in which this node leads.
    leading: bool,
    /// The active controller seen last while not leading.
    previous_leader: Option<i32>,
    /// When this term's leadership began (sessions were reset then).
    active_since: Option<Instant>,
    last_heartbeat: HashMap<i32, Instant>,
    /// The connection each broker last heartbeated on.
    conn_of: HashMap<i32, ConnId>,
}

/// The controller of one broker; active only while that broker leads the quorum.
#[derive(Debug)]
pub struct Controller {
    node_id: i32,
    log: Quorum,
    timing: ControllerTiming,
    /// This broker's start-up config: the last layer of cluster-wide defaults
    /// while it is the active controller (as in Kafka).
    statics: Arc<BrokerConfig>,
    write: tokio::sync::Mutex<()>,
    sessions: Mutex<Sessions>,
}

impl Controller {
    pub fn new(
        node_id: i32,
        log: Quorum,
        timing: ControllerTiming,
        statics: Arc<BrokerConfig>,
    ) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            log,
            timing,
            statics,
            write: tokio::sync::Mutex::new(()),
            sessions: Mutex::new(Sessions::default()),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this broker is the active controller.
    pub fn is_active(&self) -> bool {
        self.log.leader() == Some(self.node_id)
    }

    /// Serves one request that arrived on `conn` (`None`: from this broker).
    pub async fn handle(
        &self,
        conn: Option<ConnId>,
        request: ControllerRequest,
    ) -> Result<Answer, Refusal> {
        if !self.is_active() {
            return Err(Refusal::not_controller(self.log.leader()));
        }
        if let ControllerRequest::Heartbeat { node_id, .. } = &request {
            let mut s = self.sessions();
            s.last_heartbeat.insert(*node_id, Instant::now());
            if let Some(conn) = conn {
                s.conn_of.insert(*node_id, conn);
            }
            // The common case changes nothing and needs no barrier or commit;
            // anything else (unfencing, a refusal) is decided again on the
            // freshest image below.
            if let Ok((records, reply)) = plan(&self.log.image(), &self.statics, &request)
                && records.is_empty()
            {
                return Ok(Answer { reply, records: 0 });
            }
        }
        if let ControllerRequest::Register(reg) = &request
            && let Some(addr) = &reg.controller
            && !self.log.voters().contains_key(&reg.node_id)
        {
            // A broker outside the voter set follows the log as a learner.
            self.log
                .add_learner(reg.node_id, addr.clone())
                .await
                .map_err(refusal)?;
        }
        self.commit(|image| plan(image, &self.statics, &request))
            .await
    }

    /// Plans against the freshest image and commits, one plan at a time.
    async fn commit(
        &self,
        planner: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, ControllerReply), Refusal>,
    ) -> Result<Answer, Refusal> {
        let _write = self.write.lock().await;
        let image = self.log.barrier().await.map_err(refusal)?;
        let (records, reply) = planner(&image)?;
        let applied = if records.is_empty() {
            image
        } else {
            self.log.propose(records).await.map_err(refusal)?
        };
        Ok(Answer {
            reply,
            records: applied.records,
        })
    }

    async fn commit_records(
        &self,
        what: &str,
        planner: impl FnOnce(&MetadataImage) -> Vec<MetadataRecord>,
    ) {
        let result = self
            .commit(|image| Ok((planner(image), ControllerReply::Done)))
            .await;
        if let Err(e) = result {
            warn!(error = %e, "controller: {what} failed");
        }
    }

    /// Connection `conn` closed: if a broker heartbeated on it last, it is gone
    /// (a crashed process resets its connections), so it is fenced now rather
    /// than after its session timeout.
    pub fn closed(self: &Arc<Self>, conn: ConnId) {
        let node = {
            let mut s = self.sessions();
            let node = s.conn_of.iter().find(|(_, c)| **c == conn).map(|(n, _)| *n);
            if let Some(n) = node {
                s.conn_of.remove(&n);
                s.last_heartbeat.remove(&n);
            }
            node
        };
        if let Some(node) = node
            && self.is_active()
        {
            let this = self.clone();
            tokio::spawn(async move {
                info!(
                    broker = node,
                    "controller: heartbeat connection closed; fencing"
                );
                this.commit_records("fencing", |image| {
                    broker_lifecycle::fence(image, &this.statics, node, true)
                })
                .await;
            });
        }
    }

    /// Leadership moved to this node, most likely because `previous` crashed:
    /// if its controller listener refuses a connection, no process is behind
    /// it any more (a live or restarting broker listens or does not answer at
    /// all), so it is fenced at once instead of after its grace. A refused
    /// connection is the same evidence a reset heartbeat connection is.
    async fn probe_previous(self: Arc<Self>, previous: i32, address: String, since: Instant) {
        let connect = tokio::net::TcpStream::connect(address.as_str());
        let refused =
            match tokio::time::timeout(self.timing.previous_controller_grace, connect).await {
                Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
                Ok(Ok(_)) | Err(_) => false,
            };
        let heard = {
            let s = self.sessions();
            s.active_since != Some(since)
                || s.last_heartbeat.get(&previous).is_some_and(|t| *t >= since)
        };
        if refused && !heard && self.is_active() {
            info!(
                broker = previous,
                %address,
                "controller: the previous controller's listener refuses connections; fencing"
            );
            self.commit_records("fencing", |image| {
                broker_lifecycle::fence(image, &self.statics, previous, true)
            })
            .await;
        }
    }

    /// Checks sessions and leadership balance until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_preferred = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.timing.tick) => {}
            }
            let image = self.log.image();
            let expired = {
                let mut s = self.sessions();
                if !self.is_active() {
                    let previous_leader = self.log.leader().or(s.previous_leader);
                    *s = Sessions {
                        previous_leader,
                        ..Sessions::default()
                    };
                    continue;
                }
                let now = Instant::now();
                if !s.leading {
                    // A new active controller gives every broker a full session
                    // before judging it, except the previous controller.
                    s.leading = true;
                    s.last_heartbeat = image.brokers.keys().map(|&b| (b, now)).collect();
                    if let Some(previous) = s.previous_leader.filter(|&p| p != self.node_id) {
                        let shortened = self
                            .timing
                            .session_timeout
                            .saturating_sub(self.timing.previous_controller_grace);
                        if let Some(t) = now.checked_sub(shortened) {
                            s.last_heartbeat.insert(previous, t);
                        }
                        if let Some(address) = self.log.address_of(previous) {
                            tokio::spawn(self.clone().probe_previous(previous, address, now));
                        }
                    }
                    s.active_since = Some(now);
                    last_preferred = now;
                }
                let timeout = self.timing.session_timeout;
                image
                    .brokers
                    .values()
                    .filter(|b| !b.fenced && b.node_id != self.node_id)
                    .filter(|b| {
                        s.last_heartbeat
                            .get(&b.node_id)
                            .is_none_or(|t| now.duration_since(*t) > timeout)
                    })
                    .map(|b| b.node_id)
                    .collect::<Vec<_>>()
            };
            for node in expired {
                info!(broker = node, "controller: session expired; fencing");
                self.commit_records("fencing", |image| {
                    broker_lifecycle::fence(image, &self.statics, node, false)
                })
                .await;
            }
            if last_preferred.elapsed() >= self.timing.preferred_leader_interval {
                last_preferred = Instant::now();
                self.commit_records(
                    "preferred leader election",
                    broker_lifecycle::preferred_leaders,
                )
                .await;
            }
        }
    }
}

/// The controller listener's hook: requests reach the controller once it
/// exists (the quorum starts first, since the controller needs it).
#[derive(Debug, Default)]
pub struct ControllerHook {
    controller: std::sync::OnceLock<Arc<Controller>>,
}

impl ControllerHook {
    /// Connects the hook to the controller.
    pub fn set(&self, controller: Arc<Controller>) {
        let _ = self.controller.set(controller);
    }
}

impl ControllerRpc for ControllerHook {
    fn call(
        &self,
        conn: ConnId,
        request: serde_json::Value,
    ) -> BoxFuture<'static, serde_json::Value> {
        let controller = self.controller.get().cloned();
        async move {
            let answer = match (
                controller,
                serde_json::from_value::<ControllerRequest>(request),
            ) {
                (None, _) => Err(Refusal::not_controller(None)),
                (_, Err(e)) => Err(Refusal::new(42, format!("not a controller request: {e}"))),
                (Some(c), Ok(request)) => c.handle(Some(conn), request).await,
            };
            serde_json::to_value(answer).unwrap_or_else(
                |e| serde_json::json!({ "Err": { "code": -1, "message": e.to_string() } }),
            )
        }
        .boxed()
    }

    fn closed(&self, conn: ConnId) {
        if let Some(c) = self.controller.get() {
            c.closed(conn);
        }
    }
}
