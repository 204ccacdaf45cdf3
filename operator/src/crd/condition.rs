//! Status conditions of both resources: the three types, the reasons, and
//! the merge rule that keeps `lastTransitionTime` while a status holds.
//! Pure: the time comes in as an argument.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub mod kind {
    /// The resource is what its spec asks for and serving.
    pub const READY: &str = "Ready";
    /// The operator is changing something (creating, rolling, reassigning).
    pub const PROGRESSING: &str = "Progressing";
    /// Something is wrong that the operator cannot fix by itself.
    pub const DEGRADED: &str = "Degraded";
}

/// Condition reasons (CamelCase, as Kubernetes conventions ask).
pub mod reason {
    /// Everything matches the spec.
    pub const RECONCILED: &str = "Reconciled";
    /// Child objects are being created.
    pub const CREATING: &str = "Creating";
    /// Not every broker pod is Ready yet.
    pub const BROKERS_NOT_READY: &str = "BrokersNotReady";
    /// A rolling restart is under way.
    pub const ROLLING_RESTART: &str = "RollingRestart";
    /// The roll waits for the restart-safety probe or for the cluster to catch up.
    pub const WAITING_FOR_SAFETY: &str = "WaitingForRestartSafety";
    /// A pod on the new revision is crash-looping; the roll stopped.
    pub const ROLL_ABORTED: &str = "RollAborted";
    /// The spec cannot be applied as it is.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The storage size in the spec is smaller than the claims.
    pub const STORAGE_SHRINK_REFUSED: &str = "StorageShrinkRefused";
    /// Some partitions have fewer in-sync replicas than they should.
    pub const UNDER_REPLICATED: &str = "UnderReplicatedPartitions";
    /// Nothing is happening.
    pub const IDLE: &str = "Idle";
    /// Dynamic broker settings are being applied (no restart).
    pub const CONFIGURING: &str = "Configuring";
    /// The brokers could not be reached.
    pub const BROKERS_UNREACHABLE: &str = "BrokersUnreachable";
    /// The Topic names a Cluster that does not exist.
    pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFound";
    /// The Topic asks for fewer partitions than it has.
    pub const PARTITION_SHRINK_REFUSED: &str = "PartitionShrinkRefused";
    /// The Topic asks for more replicas than there are brokers.
    pub const REPLICATION_FACTOR_TOO_HIGH: &str = "ReplicationFactorTooHigh";
    /// Replicas are being moved.
    pub const REASSIGNING: &str = "Reassigning";
}

/// `True`/`False` as conditions spell them.
pub fn status_text(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// A condition for `generation`, stamped `now`.
pub fn new(
    type_: &str,
    value: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status_text(value).to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// `next` merged over `previous`: a condition whose status did not change
/// keeps its `lastTransitionTime`. Conditions are sorted by type so the
/// status is stable from pass to pass.
pub fn merge(previous: &[Condition], next: Vec<Condition>) -> Vec<Condition> {
    let mut merged: Vec<Condition> = next
        .into_iter()
        .map(|mut c| {
            if let Some(old) = previous
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == c.status)
            {
                c.last_transition_time = old.last_transition_time.clone();
            }
            c
        })
        .collect();
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    merged
}

/// Whether `conditions` has `type_` with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn keeps_transition_time_while_status_holds_and_resets_it_on_change() {
        let before = vec![
            new(kind::READY, false, reason::CREATING, "a", Some(1), &at(10)),
            new(kind::DEGRADED, false, reason::IDLE, "", Some(1), &at(10)),
        ];
        let after = merge(
            &before,
            vec![
                new(kind::READY, true, reason::RECONCILED, "b", Some(2), &at(20)),
                new(kind::DEGRADED, false, reason::IDLE, "", Some(2), &at(20)),
            ],
        );
        assert_eq!(after[0].type_, kind::DEGRADED);
        assert_eq!(after[0].last_transition_time, at(10));
        assert_eq!(after[0].observed_generation, Some(2));
        assert_eq!(after[1].type_, kind::READY);
        assert_eq!(after[1].last_transition_time, at(20));
        assert!(is_true(&after, kind::READY));
        assert!(!is_true(&after, kind::DEGRADED));
    }
}
