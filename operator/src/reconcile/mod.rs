//! The reconcile runtime: one controller per resource, each pass observe →
//! plan (pure, [`crate::plan`]) → apply (server-side apply under
//! [`FIELD_MANAGER`], admin calls) → status. Decisions live in the planners;
//! this code only reads, writes and reports.

pub mod cluster;
pub mod topic;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};

use crate::metrics::Metrics;

/// The one field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "skiff-operator";
/// Look again this soon while something changes.
pub const BUSY_REQUEUE: Duration = Duration::from_secs(5);
/// Look again this soon when all is well (broker state is not watched).
pub const IDLE_REQUEUE: Duration = Duration::from_secs(30);
/// Longest back-off after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why a reconcile pass failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The API server refused or failed a request (transient).
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// A broker request failed (transient).
    #[error("{0}")]
    Broker(String),
    /// The object cannot be reconciled as it is (not retried in a loop).
    #[error("invalid: {0}")]
    Invalid(String),
}

impl ReconcileError {
    /// A `Kube` error for `action`.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kube { action, source }
    }

    /// Label value for the errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "kube",
            Self::Broker(_) => "broker",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// Shared by every reconcile pass.
pub struct Context {
    /// API client.
    pub client: kube::Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Consecutive failures per object, for back-off.
    failures: Mutex<HashMap<String, u32>>,
    /// Operation of each Cluster, for the operations-in-flight gauge.
    operations: Mutex<HashMap<String, &'static str>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    /// A context for `client`.
    pub fn new(client: kube::Client, metrics: Metrics) -> Arc<Self> {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Mutex::new(HashMap::new()),
            operations: Mutex::new(HashMap::new()),
        })
    }

    /// Publishes an Event on `object`; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        note: &str,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// Records the operation of Cluster `key` and refreshes the gauges.
    pub fn record_operation(&self, key: &str, operation: &'static str) {
        let Ok(mut ops) = self.operations.lock() else {
            return;
        };
        ops.insert(key.to_owned(), operation);
        self.metrics
            .managed_clusters
            .set(i64::try_from(ops.len()).unwrap_or(i64::MAX));
        self.metrics.operations.reset();
        for op in ops
            .values()
            .filter(|op| **op != crate::plan::cluster::operation::IDLE)
        {
            self.metrics.operations.with_label_values(&[op]).inc();
        }
    }

    /// Forgets a deleted Cluster.
    pub fn forget(&self, key: &str) {
        if let Ok(mut ops) = self.operations.lock() {
            ops.remove(key);
            self.metrics
                .managed_clusters
                .set(i64::try_from(ops.len()).unwrap_or(i64::MAX));
        }
    }

    /// Forgets `key`'s failures after a good pass.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }

    /// Back-off for `key` after one more failure: 1 s doubling to 5 min.
    pub fn backoff(&self, key: &str) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key.to_owned()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        backoff_for(n)
    }
}

/// The delay after `failures` consecutive failures.
pub fn backoff_for(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

/// Key of an object for back-off bookkeeping.
pub fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// What the controller does after a failed pass: invalid objects wait for
/// a change of spec (their status already says why); everything else
/// retries with exponential back-off.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics
        .errors
        .with_label_values(&[&K::kind(&()), error.kind()])
        .inc();
    match error {
        ReconcileError::Invalid(why) => {
            tracing::warn!(object = %key(object.as_ref()), %why, "invalid; waiting for a change");
            Action::await_change()
        }
        _ => {
            let delay = ctx.backoff(&key(object.as_ref()));
            tracing::warn!(object = %key(object.as_ref()), error = %error, ?delay, "reconcile failed; retrying");
            Action::requeue(delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let delays: Vec<u64> = (1..=11).map(|n| backoff_for(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff_for(u32::MAX), MAX_BACKOFF);
    }
}
