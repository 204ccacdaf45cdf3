//! The broker's side of the controller: sends requests to whichever broker is
//! the active controller (itself included), retrying while leadership moves,
//! and keeps this broker registered and heartbeating.
//!
//! Owns: finding the active controller and the heartbeat loop. Must not:
//! decide anything about metadata.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::active::{Answer, Controller};
use super::broker_lifecycle::Registration;
use super::quorum::{Quorum, RpcClient};
use super::reassignment::AlterIsr;
use super::request::{
    ControllerReply, ControllerRequest, NOT_CONTROLLER, Refusal, STALE_BROKER_EPOCH,
};
use crate::replication::isr::{AlterIsrError, IsrChannel};

/// Error code for "the controller could not be reached in time" (REQUEST_TIMED_OUT).
const TIMED_OUT: i16 = 7;
/// How long a caller waits for an active controller before giving up.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// ISR changes are retried by the leader's state machine; one try is short.
const ISR_DEADLINE: Duration = Duration::from_secs(2);

/// Sends controller requests and keeps the broker's session alive.
#[derive(Debug)]
pub struct ControllerClient {
    me: std::sync::Weak<ControllerClient>,
    node_id: i32,
    log: Quorum,
    local: Arc<Controller>,
    remotes: Mutex<HashMap<String, RpcClient>>,
    /// The broker epoch of our current registration.
    epoch: Mutex<Option<i64>>,
}

impl ControllerClient {
    pub fn new(node_id: i32, log: Quorum, local: Arc<Controller>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            node_id,
            log,
            local,
            remotes: Mutex::new(HashMap::new()),
            epoch: Mutex::new(None),
        })
    }

    /// This broker's controller (active or not).
    pub fn local(&self) -> &Arc<Controller> {
        &self.local
    }

    fn remote(&self, node: i32) -> Option<RpcClient> {
        let addr = self.log.address_of(node)?;
        let mut remotes = self.remotes.lock().unwrap_or_else(PoisonError::into_inner);
        Some(
            remotes
                .entry(addr.clone())
                .or_insert_with(|| RpcClient::new(addr))
                .clone(),
        )
    }

    /// Sends `request` once to the current active controller.
    async fn send(
        &self,
        request: &ControllerRequest,
        via: Option<&RpcClient>,
        timeout: Duration,
    ) -> Result<Answer, Refusal> {
        let leader = self.log.leader();
        match leader {
            Some(l) if l == self.node_id => self.local.handle(None, request.clone()).await,
            Some(l) => {
                let owned;
                let client = match via {
                    Some(c) => c,
                    None => {
                        owned = self.remote(l).ok_or_else(|| {
                            Refusal::new(NOT_CONTROLLER, format!("no address for controller {l}"))
                        })?;
                        &owned
                    }
                };
                Self::send_to(l, client, request, timeout).await
            }
            None => {
                // A learner learns the leader only once the leader has added
                // it, which its registration asks for: ask every voter; the
                // active one answers, the others refuse with NOT_CONTROLLER.
                let mut last = Refusal::not_controller(None);
                for (voter, addr) in self.log.voters() {
                    if voter == self.node_id {
                        continue;
                    }
                    let client = {
                        let mut remotes =
                            self.remotes.lock().unwrap_or_else(PoisonError::into_inner);
                        remotes
                            .entry(addr.clone())
                            .or_insert_with(|| RpcClient::new(addr))
                            .clone()
                    };
                    match Self::send_to(voter, &client, request, timeout).await {
                        Err(e) if e.code == NOT_CONTROLLER => last = e,
                        other => return other,
                    }
                }
                Err(last)
            }
        }
    }

    async fn send_to(
        node: i32,
        client: &RpcClient,
        request: &ControllerRequest,
        timeout: Duration,
    ) -> Result<Answer, Refusal> {
        let body = serde_json::to_value(request)
            .map_err(|e| Refusal::new(-1, format!("encoding a controller request: {e}")))?;
        let answer = client
            .call(body, timeout)
            .await
            .map_err(|e| Refusal::new(NOT_CONTROLLER, format!("controller {node}: {e}")))?;
        serde_json::from_value::<Result<Answer, Refusal>>(answer)
            .map_err(|e| Refusal::new(-1, format!("controller {node} answered garbage: {e}")))?
    }

    /// Sends `request` to the active controller, retrying while there is none
    /// or it moves, until `deadline` passes; then waits (within the deadline)
    /// until this broker's image has the records the request committed.
    pub async fn call(
        &self,
        request: ControllerRequest,
        deadline: Duration,
    ) -> Result<ControllerReply, Refusal> {
        let until = Instant::now() + deadline;
        let answer = self.call_once_committed(request, deadline).await?;
        let mut images = self.log.watch();
        let caught_up = tokio::time::timeout_at(
            until.into(),
            images.wait_for(|image| image.records >= answer.records),
        )
        .await;
        if !matches!(caught_up, Ok(Ok(_))) {
            warn!(
                records = answer.records,
                "the local metadata image did not catch up with a committed change in time"
            );
        }
        Ok(answer.reply)
    }

    async fn call_once_committed(
        &self,
        request: ControllerRequest,
        deadline: Duration,
    ) -> Result<Answer, Refusal> {
        let until = Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self
                .send(&request, None, left.max(Duration::from_millis(100)))
                .await
            {
                Err(e) if e.code == NOT_CONTROLLER && Instant::now() < until => {
                    debug!(error = %e, "controller request: retrying");
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e) if e.code == NOT_CONTROLLER => {
                    return Err(Refusal::new(
                        TIMED_OUT,
                        format!(
                            "no active controller answered within {deadline:?}: {}",
                            e.message
                        ),
                    ));
                }
                other => return other,
            }
        }
    }

    /// The broker epoch of the current registration, once registered.
    pub fn epoch(&self) -> Option<i64> {
        *self.epoch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers this broker (retrying until a controller takes it).
    pub async fn register(&self, registration: &Registration) -> Result<i64, Refusal> {
        let reply = self
            .call(
                ControllerRequest::Register(registration.clone()),
                Duration::from_secs(60),
            )
            .await?;
        let ControllerReply::Registered { epoch } = reply else {
            return Err(Refusal::new(-1, format!("unexpected reply {reply:?}")));
        };
        *self.epoch.lock().unwrap_or_else(PoisonError::into_inner) = Some(epoch);
        info!(epoch, "registered with the controller");
        Ok(epoch)
    }

    /// Heartbeats every `every` on one connection per active controller (its
    /// reset tells the controller we are gone), re-registering when the
    /// controller no longer knows our epoch.
    pub async fn heartbeat_loop(
        self: Arc<Self>,
        registration: Registration,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut connection: Option<(i32, RpcClient)> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let Some(epoch) = self.epoch() else { continue };
            let request = ControllerRequest::Heartbeat {
                node_id: self.node_id,
                epoch,
            };
            let leader = self.log.leader();
            if let Some(l) = leader
                && l != self.node_id
                && connection.as_ref().is_none_or(|(n, _)| *n != l)
            {
                connection = self.log.address_of(l).map(|a| (l, RpcClient::new(a)));
            }
            let via = connection.as_ref().map(|(_, c)| c);
            match self
                .send(&request, via, every.max(Duration::from_millis(500)))
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == STALE_BROKER_EPOCH => {
                    warn!(error = %e, "controller no longer knows this broker; registering again");
                    if let Err(e) = self.register(&registration).await {
                        warn!(error = %e, "registration failed");
                    }
                }
                Err(e) => debug!(error = %e, "heartbeat failed"),
            }
        }
    }
}

impl IsrChannel for ControllerClient {
    fn alter_isr(&self, req: AlterIsr) -> BoxFuture<'static, Result<i32, AlterIsrError>> {
        let Some(this) = self.me.upgrade() else {
            return futures::future::ready(Err(AlterIsrError::Retriable(
                "the broker is shutting down".into(),
            )))
            .boxed();
        };
        async move {
            match this
                .call(ControllerRequest::AlterIsr(req), ISR_DEADLINE)
                .await
            {
                Ok(ControllerReply::PartitionEpoch { epoch }) => Ok(epoch),
                Ok(other) => Err(AlterIsrError::Invalid(format!(
                    "unexpected controller reply {other:?}"
                ))),
                Err(e) => Err(match e.code {
                    // FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION, NOT_LEADER_OR_FOLLOWER,
                    // UNKNOWN_TOPIC_OR_PARTITION: metadata moved on.
                    74 | 108 | 6 | 3 => AlterIsrError::Fenced,
                    NOT_CONTROLLER | TIMED_OUT => AlterIsrError::Retriable(e.message),
                    _ => AlterIsrError::Invalid(e.to_string()),
                }),
            }
        }
        .boxed()
    }
}
