//! What to do for a Cluster this pass, and the status that describes it.
//!
//! Input: the observed StatefulSet, claims, pods and broker answers; output:
//! the StatefulSet size to apply, claims to expand, the next roll step, what
//! is refused, and the status (conditions, operation, progress, counts).
//! Pure: the time for conditions is an argument.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::Planned;
use super::dynamic_config::{self, ConfigChange};
use super::rebalance::{self, Placement, RebalanceInput, ReplicaSizes};
use super::recovery::{self, BrokerHealth, RecoveryInput};
use super::roll::{self, BrokerPod, RollAction, RollInput, RollPlan, Safety};
use super::scale_down::{self, Moves, Replicas, ScaleDownAction, ScaleDownInput};
use super::topic::Refusal;
use crate::admin::http::BrokerState;
use crate::crd::cluster::{BrokerStatus, ClusterStatus};
use crate::crd::condition::{self, kind, reason};
use crate::crd::quantity;
use k8s_openapi::jiff::Timestamp;

/// Operations shown in `status.operation` (the OPERATION column).
pub mod operation {
    /// Child objects are created; brokers start.
    pub const CREATING: &str = "Creating";
    /// Brokers are being added.
    pub const SCALING_UP: &str = "ScalingUp";
    /// Leaving brokers are drained, then removed.
    pub const SCALING_DOWN: &str = "ScalingDown";
    /// Brokers restart one at a time.
    pub const ROLLING_RESTART: &str = "RollingRestart";
    /// Replicas move to even out the brokers.
    pub const REBALANCING: &str = "Rebalancing";
    /// Volume claims grow.
    pub const EXPANDING_STORAGE: &str = "ExpandingStorage";
    /// Waiting for brokers to become Ready.
    pub const WAITING_FOR_BROKERS: &str = "WaitingForBrokers";
    /// Dynamic broker settings are being applied (no restart).
    pub const CONFIGURING: &str = "Configuring";
    /// Nothing is happening.
    pub const IDLE: &str = "Idle";
}

/// The StatefulSet as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatefulSetState {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.updateRevision`, once the controller has seen the latest spec.
    pub update_revision: Option<String>,
    /// Whether `status.observedGeneration` has caught up with the spec.
    pub status_current: bool,
    /// Size in the volume claim template.
    pub claim_template_size: Option<String>,
}

/// Everything observed for one Cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterObservation {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `spec.brokers`.
    pub desired_brokers: i32,
    /// `spec.storage.size`.
    pub storage_size: String,
    /// The StatefulSet, if it exists.
    pub statefulset: Option<StatefulSetState>,
    /// Data claims of the brokers: name → requested size.
    pub claims: BTreeMap<String, String>,
    /// Broker pods by id, for ids `0..replicas`.
    pub pods: Vec<BrokerPod>,
    /// `/v1/status` answers by broker id.
    pub broker_states: BTreeMap<i32, BrokerState>,
    /// Restart-safety answers by broker id.
    pub safety: BTreeMap<i32, Safety>,
    /// Keys of `spec.config` the broker does not know.
    pub unknown_config_keys: Vec<String>,
    /// Pod names by broker id (for status).
    pub pod_names: BTreeMap<i32, String>,
    /// Every partition of the cluster, read when a scale-down is pending.
    pub partitions: Option<Vec<Replicas>>,
    /// Partitions being reassigned (when `partitions` was read).
    pub reassigning: usize,
    /// `spec.rebalance.maxMovesInFlight`.
    pub max_moves_in_flight: usize,
    /// `spec.storage.deleteClaim`.
    pub delete_claims: bool,
    /// Readiness history of each broker, for failure recovery.
    pub health: Vec<BrokerHealth>,
    /// `spec.failureRecovery.replaceAfter`.
    pub replace_after: std::time::Duration,
    /// The time of this pass (failure recovery is skipped without it).
    pub now: Option<Timestamp>,
    /// Brokers with their racks (read with `partitions`).
    pub brokers: Vec<rebalance::Broker>,
    /// Replica sizes by the broker that reported them (read with
    /// `partitions` when a rebalance may be due). A broker that did not
    /// answer is absent; partitions nobody reported count as empty.
    pub replica_sizes: BTreeMap<i32, ReplicaSizes>,
    /// Rebalance now: `mode: auto`, or `manual` with the annotation.
    pub rebalance_requested: bool,
    /// `spec.rebalance.imbalanceThresholdPercent`.
    pub imbalance_threshold_percent: u32,
    /// Metadata-quorum voters of the running cluster (brokers `0..voters`).
    pub voters: i32,
    /// The dynamic broker settings the spec asks for (cluster-wide defaults).
    pub dynamic_desired: BTreeMap<String, String>,
    /// The cluster-wide dynamic settings the brokers report; `None` when no
    /// broker could be asked.
    pub dynamic_current: Option<BTreeMap<String, String>>,
}

/// An action on the Cluster's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAction {
    /// Server-side apply every child object, the StatefulSet at `replicas`
    /// with `claim_size` in its claim template.
    ApplyObjects {
        /// StatefulSet replicas.
        replicas: i32,
        /// Claim template size.
        claim_size: String,
    },
    /// Patch a claim's storage request up to `size`.
    ExpandClaim {
        /// Claim name.
        claim: String,
        /// New size.
        size: String,
    },
    /// A rolling-restart step.
    Roll(RollAction),
    /// Move partitions off leaving brokers: (topic, partition) → replicas.
    Reassign(Moves),
    /// Delete a removed broker's claim (`storage.deleteClaim`).
    DeleteClaim(String),
    /// Change the cluster-wide dynamic broker settings.
    SetDynamicConfig(ConfigChange),
}

/// The decision for one pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterPlan {
    /// Actions, in order.
    pub actions: Vec<Planned<ClusterAction>>,
    /// Parts of the spec not applied.
    pub refusals: Vec<Refusal>,
    /// `status.operation`.
    pub operation: &'static str,
    /// `status.progress`.
    pub progress: Option<String>,
    /// The roll stopped on a crash-looping pod.
    pub roll_aborted: Option<String>,
    /// Why the roll waits, if it does.
    pub waiting: Option<String>,
}

impl ClusterPlan {
    /// Whether something is still changing (look again soon).
    pub fn busy(&self) -> bool {
        self.operation != operation::IDLE
    }
}

/// Decides this pass.
pub fn plan(o: &ClusterObservation) -> ClusterPlan {
    let mut out = ClusterPlan {
        operation: operation::IDLE,
        ..ClusterPlan::default()
    };
    if !o.unknown_config_keys.is_empty() {
        // The brokers would refuse to start with this config: change nothing.
        out.refusals.push(Refusal {
            reason: reason::INVALID_SPEC,
            message: format!(
                "config has keys the broker does not know: {}",
                o.unknown_config_keys.join(", ")
            ),
        });
        return out;
    }

    let current_replicas = o.statefulset.as_ref().map(|s| s.replicas);
    let mut replicas = o.desired_brokers;
    let mut scale_down_actions = Vec::new();
    let mut scaling_down = None;
    if let Some(current) = current_replicas.filter(|c| *c > o.desired_brokers) {
        replicas = current;
        match &o.partitions {
            // Below the voters is refused whatever the partitions are.
            None if o.desired_brokers < o.voters => {
                let sd = scale_down::plan(&ScaleDownInput {
                    current,
                    desired: o.desired_brokers,
                    voters: o.voters,
                    partitions: &[],
                    reassigning: 0,
                    max_moves_in_flight: 0,
                });
                out.refusals.extend(sd.refusal);
            }
            None => {
                scaling_down = Some(format!(
                    "scale-down from {current} to {} brokers waits for the brokers' partition map",
                    o.desired_brokers
                ));
            }
            Some(partitions) => {
                let sd = scale_down::plan(&ScaleDownInput {
                    current,
                    desired: o.desired_brokers,
                    voters: o.voters.max(1),
                    partitions,
                    reassigning: o.reassigning,
                    max_moves_in_flight: o.max_moves_in_flight,
                });
                out.refusals.extend(sd.refusal);
                scaling_down = sd.progress;
                for Planned { action, reason } in sd.actions {
                    match action {
                        ScaleDownAction::Shrink(n) => {
                            replicas = n;
                            scaling_down = Some(reason.clone());
                            if o.delete_claims {
                                for claim in o.claims.keys().filter(|c| {
                                    (n..current).any(|id| {
                                        o.pod_names
                                            .get(&id)
                                            .is_some_and(|p| c.ends_with(&format!("-{p}")))
                                    })
                                }) {
                                    scale_down_actions.push(Planned::new(
                                        ClusterAction::DeleteClaim(claim.clone()),
                                        format!("deleting claim {claim} of a removed broker (storage.deleteClaim)"),
                                    ));
                                }
                            }
                        }
                        ScaleDownAction::Reassign(moves) => {
                            scale_down_actions
                                .push(Planned::new(ClusterAction::Reassign(moves), reason));
                        }
                    }
                }
            }
        }
    }

    // Storage: the claim template keeps its first size (it is immutable);
    // growth patches the claims; shrinking is refused.
    let wanted = quantity::parse_bytes(&o.storage_size).ok();
    let claim_size = o
        .statefulset
        .as_ref()
        .and_then(|s| s.claim_template_size.clone())
        .unwrap_or_else(|| o.storage_size.clone());
    let mut expand = Vec::new();
    for (claim, size) in &o.claims {
        match (wanted, quantity::parse_bytes(size).ok()) {
            (Some(w), Some(have)) if w > have => expand.push(claim.clone()),
            (Some(w), Some(have)) if w < have => out.refusals.push(Refusal {
                reason: reason::STORAGE_SHRINK_REFUSED,
                message: format!(
                    "claim {claim} has {size}; storage.size {} would shrink it, which is refused",
                    o.storage_size
                ),
            }),
            _ => {}
        }
    }

    out.actions.push(Planned::new(
        ClusterAction::ApplyObjects {
            replicas,
            claim_size,
        },
        match current_replicas {
            None => format!("creating the StatefulSet of {replicas} brokers and its Services, ConfigMap, PodDisruptionBudget and ServiceAccount"),
            Some(c) if c < replicas => format!("scaling up from {c} to {replicas} brokers"),
            Some(_) => "applying the Cluster's objects".to_owned(),
        },
    ));
    out.actions.extend(scale_down_actions);
    // Why the dynamic settings are not known to match the spec, if they are not.
    let configuring = match &o.dynamic_current {
        Some(current) => {
            dynamic_config::plan(&o.dynamic_desired, current).map(|Planned { action, reason }| {
                out.actions.push(Planned::new(
                    ClusterAction::SetDynamicConfig(action),
                    reason.clone(),
                ));
                reason
            })
        }
        None if !o.dynamic_desired.is_empty() => {
            Some("waiting for a broker to report its dynamic settings".to_owned())
        }
        None => None,
    };
    for claim in &expand {
        out.actions.push(Planned::new(
            ClusterAction::ExpandClaim {
                claim: claim.clone(),
                size: o.storage_size.clone(),
            },
            format!("expanding claim {claim} to {}", o.storage_size),
        ));
    }

    if let (Some(now), Some(partitions), None) = (o.now, &o.partitions, &scaling_down) {
        let restore = recovery::plan(&RecoveryInput {
            brokers: &o.health,
            replace_after: o.replace_after,
            now,
            partitions,
            reassigning: o.reassigning,
            max_moves_in_flight: o.max_moves_in_flight,
        });
        if let Some(Planned { action, reason }) = restore {
            out.actions
                .push(Planned::new(ClusterAction::Reassign(action), reason));
        }
    }
    let mut rebalancing = false;
    let empty = empty_brokers(o);
    if let (Some(partitions), true, None, 0) = (
        &o.partitions,
        o.rebalance_requested || !empty.is_empty(),
        &scaling_down,
        o.reassigning,
    ) {
        let recovering = out
            .actions
            .iter()
            .any(|a| matches!(a.action, ClusterAction::Reassign(_)));
        let all_ready = o.pods.iter().all(|p| p.ready);
        // Only brokers this Cluster runs may receive replicas: Metadata also
        // lists brokers a scale-down removed (fenced, never unregistered).
        let brokers: Vec<rebalance::Broker> = o
            .brokers
            .iter()
            .filter(|b| o.pods.iter().any(|p| p.id == b.id && p.exists))
            .cloned()
            .collect();
        if !recovering && all_ready {
            let sizes = rebalance::partition_sizes(o.replica_sizes.values());
            let placements: Vec<Placement> = partitions
                .iter()
                .map(|p| Placement {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    replicas: p.replicas.clone(),
                    bytes: sizes
                        .get(&(p.topic.clone(), p.partition))
                        .copied()
                        .unwrap_or(0),
                })
                .collect();
            if let Some(Planned { action, reason }) = rebalance::plan(&RebalanceInput {
                brokers: &brokers,
                partitions: &placements,
                threshold_percent: o.imbalance_threshold_percent,
                max_moves: o.max_moves_in_flight,
            }) {
                rebalancing = true;
                let reason = if o.rebalance_requested {
                    reason
                } else {
                    let ids: Vec<String> = empty.iter().map(i32::to_string).collect();
                    format!(
                        "broker(s) {} hold no replicas (added by a scale-up or back after failure recovery); {reason}",
                        ids.join(", ")
                    )
                };
                out.actions
                    .push(Planned::new(ClusterAction::Reassign(action), reason));
            }
        }
    }

    let ready = o.pods.iter().filter(|p| p.ready).count();
    let Some(sts) = &o.statefulset else {
        out.operation = operation::CREATING;
        out.progress = Some(format!("0/{replicas} brokers ready"));
        return out;
    };
    if let Some(progress) = scaling_down.filter(|_| out.refusals.is_empty()) {
        out.operation = operation::SCALING_DOWN;
        out.progress = Some(progress);
        return out;
    }
    if sts.replicas < o.desired_brokers {
        out.operation = operation::SCALING_UP;
        out.progress = Some(format!("{ready}/{} brokers ready", o.desired_brokers));
        return out;
    }
    if rebalancing || o.reassigning > 0 {
        // Moves started by this pass are not in `reassigning` yet.
        let starting: usize = out
            .actions
            .iter()
            .map(|a| match &a.action {
                ClusterAction::Reassign(moves) => moves.len(),
                _ => 0,
            })
            .sum();
        out.operation = operation::REBALANCING;
        out.progress = Some(format!("{} partitions moving", o.reassigning + starting));
    }
    if !expand.is_empty() {
        out.operation = operation::EXPANDING_STORAGE;
        out.progress = Some(format!(
            "expanding {} claims to {}",
            expand.len(),
            o.storage_size
        ));
    }

    let roll = match (&sts.update_revision, sts.status_current) {
        (Some(rev), true) => roll::plan(&RollInput {
            update_revision: rev,
            brokers: &o.pods,
            active_controller: active_controller(&o.broker_states),
            under_replicated: under_replicated(&o.broker_states, &o.pods),
            safety: &o.safety,
        }),
        _ => RollPlan::Rolling {
            step: Planned::new(
                RollAction::Wait,
                "waiting for the StatefulSet controller to observe the latest spec",
            ),
            progress: format!("{ready}/{replicas} brokers ready"),
        },
    };
    match roll {
        RollPlan::Done => {
            if ready < o.pods.len() && out.operation == operation::IDLE {
                out.operation = operation::WAITING_FOR_BROKERS;
                out.progress = Some(format!("{ready}/{} brokers ready", o.pods.len()));
            }
            if let Some(why) = configuring.filter(|_| out.operation == operation::IDLE) {
                out.operation = operation::CONFIGURING;
                out.progress = Some(why);
            }
        }
        RollPlan::Rolling { step, progress } => {
            let starting = o.pods.iter().all(|p| p.revision.is_none() || !p.ready)
                && matches!(step.action, RollAction::Wait);
            out.operation = if starting && ready == 0 {
                operation::CREATING
            } else {
                operation::ROLLING_RESTART
            };
            out.progress = Some(progress);
            match &step.action {
                RollAction::Abort(_) => out.roll_aborted = Some(step.reason.clone()),
                RollAction::Wait => out.waiting = Some(step.reason.clone()),
                _ => {}
            }
            if !matches!(step.action, RollAction::Wait | RollAction::Abort(_)) {
                let Planned { action, reason } = step;
                out.actions
                    .push(Planned::new(ClusterAction::Roll(action), reason));
            }
        }
    }
    out
}

/// Ready brokers that report holding no replica. A broker is empty after a
/// scale-up added it or after failure recovery moved its replicas away; in
/// either case it is filled by a rebalance whatever `rebalance.mode` says
/// (the mode governs rebalancing brokers that already hold data).
pub fn empty_brokers(o: &ClusterObservation) -> Vec<i32> {
    o.pods
        .iter()
        .filter(|p| p.ready)
        .filter(|p| o.broker_states.get(&p.id).and_then(|s| s.partitions) == Some(0))
        .map(|p| p.id)
        .collect()
}

/// The active controller as the brokers report it (the first that knows).
pub fn active_controller(states: &BTreeMap<i32, BrokerState>) -> Option<i32> {
    states
        .iter()
        .find(|(_, s)| s.is_active_controller == Some(true))
        .map(|(id, _)| *id)
        .or_else(|| states.values().find_map(|s| s.controller_id))
}

/// Under-replicated partitions over the cluster: the sum of what each
/// leader reports; unknown unless every Ready broker answered.
pub fn under_replicated(states: &BTreeMap<i32, BrokerState>, pods: &[BrokerPod]) -> Option<i32> {
    let mut total = 0;
    for p in pods.iter().filter(|p| p.ready) {
        total += states.get(&p.id)?.under_replicated?;
    }
    Some(total)
}

/// The status after this pass.
pub fn status(
    o: &ClusterObservation,
    plan: &ClusterPlan,
    cluster_id: &str,
    previous: &[Condition],
    now: &Time,
) -> ClusterStatus {
    let g = o.generation;
    let ready = o.pods.iter().filter(|p| p.ready).count();
    let ready_i32 = i32::try_from(ready).unwrap_or(i32::MAX);
    let urp = under_replicated(&o.broker_states, &o.pods);
    let offline = o
        .broker_states
        .values()
        .filter_map(|s| s.offline_partitions)
        .max();
    let rev = o
        .statefulset
        .as_ref()
        .and_then(|s| s.update_revision.clone());
    let brokers = o
        .pods
        .iter()
        .map(|p| {
            let s = o.broker_states.get(&p.id);
            BrokerStatus {
                id: p.id,
                pod: o.pod_names.get(&p.id).cloned().unwrap_or_default(),
                ready: p.ready,
                up_to_date: rev.is_some() && p.revision == rev,
                state: s.and_then(|s| s.state.clone()),
                partitions: s.and_then(|s| s.partitions),
                leaders: s.and_then(|s| s.leaders),
                under_replicated: s.and_then(|s| s.under_replicated),
            }
        })
        .collect();

    let refused = plan
        .refusals
        .iter()
        .map(|r| r.message.clone())
        .collect::<Vec<_>>()
        .join("; ");
    let degraded = if let Some(r) = plan.refusals.first() {
        condition::new(kind::DEGRADED, true, r.reason, &refused, g, now)
    } else if let Some(why) = &plan.roll_aborted {
        condition::new(kind::DEGRADED, true, reason::ROLL_ABORTED, why, g, now)
    } else if urp.is_some_and(|n| n > 0) || offline.is_some_and(|n| n > 0) {
        condition::new(
            kind::DEGRADED,
            true,
            reason::UNDER_REPLICATED,
            format!(
                "{} under-replicated and {} offline partitions",
                urp.unwrap_or(0),
                offline.unwrap_or(0)
            ),
            g,
            now,
        )
    } else {
        condition::new(kind::DEGRADED, false, reason::IDLE, "", g, now)
    };
    let progressing_reason = match plan.operation {
        operation::ROLLING_RESTART if plan.waiting.is_some() => reason::WAITING_FOR_SAFETY,
        operation::ROLLING_RESTART => reason::ROLLING_RESTART,
        operation::CREATING => reason::CREATING,
        operation::CONFIGURING => reason::CONFIGURING,
        operation::IDLE => reason::IDLE,
        _ => reason::BROKERS_NOT_READY,
    };
    let progressing_message = plan
        .waiting
        .clone()
        .or_else(|| plan.progress.clone())
        .unwrap_or_default();
    let progressing = condition::new(
        kind::PROGRESSING,
        plan.busy() && plan.roll_aborted.is_none(),
        progressing_reason,
        progressing_message,
        g,
        now,
    );
    let all_ready = ready == o.pods.len() && ready_i32 == o.desired_brokers;
    let ready_condition = if !plan.refusals.is_empty()
        && plan
            .refusals
            .iter()
            .any(|r| r.reason == reason::INVALID_SPEC)
    {
        condition::new(kind::READY, false, reason::INVALID_SPEC, &refused, g, now)
    } else if all_ready && !plan.busy() {
        condition::new(
            kind::READY,
            true,
            reason::RECONCILED,
            format!("{ready} brokers ready"),
            g,
            now,
        )
    } else {
        condition::new(
            kind::READY,
            false,
            if plan.operation == operation::CREATING {
                reason::CREATING
            } else {
                reason::BROKERS_NOT_READY
            },
            format!("{ready}/{} brokers ready", o.desired_brokers),
            g,
            now,
        )
    };
    ClusterStatus {
        observed_generation: g,
        conditions: condition::merge(previous, vec![ready_condition, progressing, degraded]),
        operation: Some(plan.operation.to_owned()),
        progress: plan.progress.clone(),
        cluster_id: Some(cluster_id.to_owned()),
        brokers_ready: Some(format!("{ready}/{}", o.desired_brokers)),
        ready_brokers: ready_i32,
        under_replicated_partitions: urp.unwrap_or(0),
        offline_partitions: offline.unwrap_or(0),
        brokers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use std::collections::BTreeSet;

    fn pod(id: i32, rev: &str, ready: bool) -> BrokerPod {
        BrokerPod {
            id,
            exists: true,
            ready,
            revision: Some(rev.into()),
            ..BrokerPod::default()
        }
    }

    fn observation(pods: Vec<BrokerPod>) -> ClusterObservation {
        let n = pods.len() as i32;
        ClusterObservation {
            generation: Some(2),
            desired_brokers: n,
            storage_size: "10Gi".into(),
            statefulset: Some(StatefulSetState {
                replicas: n,
                update_revision: Some("r2".into()),
                status_current: true,
                claim_template_size: Some("10Gi".into()),
            }),
            claims: (0..n)
                .map(|i| (format!("data-prod-{i}"), "10Gi".to_owned()))
                .collect(),
            broker_states: (0..n)
                .map(|i| {
                    (
                        i,
                        BrokerState {
                            under_replicated: Some(0),
                            is_active_controller: Some(i == 0),
                            ..BrokerState::default()
                        },
                    )
                })
                .collect(),
            safety: (0..n).map(|i| (i, Safety::Safe)).collect(),
            pod_names: (0..n).map(|i| (i, format!("prod-{i}"))).collect(),
            pods,
            ..ClusterObservation::default()
        }
    }

    fn kinds(p: &ClusterPlan) -> Vec<ClusterAction> {
        p.actions.iter().map(|a| a.action.clone()).collect()
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).unwrap())
    }

    #[test]
    fn a_new_cluster_creates_its_objects() {
        let mut o = observation(vec![]);
        o.desired_brokers = 3;
        o.statefulset = None;
        o.claims.clear();
        let p = plan(&o);
        assert_eq!(
            kinds(&p),
            [ClusterAction::ApplyObjects {
                replicas: 3,
                claim_size: "10Gi".into()
            }]
        );
        assert_eq!(p.operation, operation::CREATING);
        let s = status(&o, &p, "id", &[], &now());
        assert_eq!(s.brokers_ready.as_deref(), Some("0/3"));
        assert_eq!(s.operation.as_deref(), Some("Creating"));
        assert!(!condition::is_true(&s.conditions, kind::READY));
        assert!(condition::is_true(&s.conditions, kind::PROGRESSING));
    }

    #[test]
    fn a_healthy_cluster_is_ready_and_idle() {
        let o = observation(vec![
            pod(0, "r2", true),
            pod(1, "r2", true),
            pod(2, "r2", true),
        ]);
        let p = plan(&o);
        assert_eq!(p.operation, operation::IDLE);
        assert_eq!(p.actions.len(), 1, "only the idempotent apply");
        let s = status(&o, &p, "id", &[], &now());
        assert!(condition::is_true(&s.conditions, kind::READY));
        assert!(!condition::is_true(&s.conditions, kind::PROGRESSING));
        assert!(!condition::is_true(&s.conditions, kind::DEGRADED));
        assert_eq!(s.ready_brokers, 3);
        assert_eq!(s.brokers.len(), 3);
        assert!(s.brokers.iter().all(|b| b.up_to_date));
        assert_eq!(s.observed_generation, Some(2));
    }

    #[test]
    fn a_dynamic_setting_is_applied_without_a_roll_and_ready_waits_for_it() {
        let mut o = observation(vec![
            pod(0, "r2", true),
            pod(1, "r2", true),
            pod(2, "r2", true),
        ]);
        o.dynamic_desired = BTreeMap::from([(
            "follower.replication.throttled.rate".to_owned(),
            "1000000".to_owned(),
        )]);
        o.dynamic_current = Some(BTreeMap::new());
        let p = plan(&o);
        let change = ConfigChange {
            set: o.dynamic_desired.clone(),
            delete: vec![],
        };
        assert_eq!(kinds(&p)[1..], [ClusterAction::SetDynamicConfig(change)]);
        assert!(
            !kinds(&p)
                .iter()
                .any(|a| matches!(a, ClusterAction::Roll(_))),
            "no broker restarts"
        );
        assert_eq!(p.operation, operation::CONFIGURING);
        let s = status(&o, &p, "id", &[], &now());
        assert!(!condition::is_true(&s.conditions, kind::READY));
        assert!(condition::is_true(&s.conditions, kind::PROGRESSING));

        // Once the brokers report it: ready and idle again.
        o.dynamic_current = Some(o.dynamic_desired.clone());
        let p = plan(&o);
        assert_eq!(p.operation, operation::IDLE);
        assert_eq!(p.actions.len(), 1, "only the idempotent apply");
        // Unknown (no broker answered): nothing is changed blindly, and the
        // Cluster is not Ready until they can be confirmed.
        o.dynamic_current = None;
        let p = plan(&o);
        assert_eq!(p.actions.len(), 1, "only the idempotent apply");
        assert_eq!(p.operation, operation::CONFIGURING);
        // Unless the spec has none: then nothing waits on the brokers' answer.
        o.dynamic_desired.clear();
        assert_eq!(plan(&o).operation, operation::IDLE);
    }

    #[test]
    fn a_changed_template_rolls_one_broker() {
        let o = observation(vec![
            pod(0, "r1", true),
            pod(1, "r1", true),
            pod(2, "r1", true),
        ]);
        let p = plan(&o);
        assert_eq!(p.operation, operation::ROLLING_RESTART);
        assert_eq!(
            kinds(&p)[1..],
            [ClusterAction::Roll(RollAction::Drain(1))],
            "controller (0) last"
        );
        assert_eq!(p.progress.as_deref(), Some("restarted 0/3 brokers"));
    }

    #[test]
    fn a_crash_looping_new_revision_is_degraded_and_stops() {
        let mut o = observation(vec![
            pod(0, "r2", false),
            pod(1, "r1", true),
            pod(2, "r1", true),
        ]);
        o.pods[0].crash_looping = true;
        let p = plan(&o);
        assert_eq!(p.actions.len(), 1);
        let s = status(&o, &p, "id", &[], &now());
        let degraded = s
            .conditions
            .iter()
            .find(|c| c.type_ == kind::DEGRADED)
            .unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", reason::ROLL_ABORTED)
        );
    }

    #[test]
    fn unknown_config_keys_change_nothing_and_say_why() {
        let mut o = observation(vec![pod(0, "r2", true)]);
        o.unknown_config_keys = vec!["foo.bar".into()];
        let p = plan(&o);
        assert!(p.actions.is_empty());
        let s = status(&o, &p, "id", &[], &now());
        let ready = s
            .conditions
            .iter()
            .find(|c| c.type_ == kind::READY)
            .unwrap();
        assert_eq!(ready.reason, reason::INVALID_SPEC);
        assert_eq!(
            ready.message,
            "config has keys the broker does not know: foo.bar"
        );
    }

    #[test]
    fn scale_down_drains_first_then_shrinks_and_deletes_claims_if_asked() {
        let pods: Vec<BrokerPod> = (0..5).map(|i| pod(i, "r2", true)).collect();
        let mut o = observation(pods);
        o.desired_brokers = 3;
        o.voters = 3;
        o.max_moves_in_flight = 4;
        // Without the partition map: keep 5 brokers and wait.
        let p = plan(&o);
        assert_eq!(
            kinds(&p),
            [ClusterAction::ApplyObjects {
                replicas: 5,
                claim_size: "10Gi".into()
            }]
        );
        assert_eq!(p.operation, operation::SCALING_DOWN);
        assert!(p.refusals.is_empty());
        // Replicas on broker 4: move them, still at 5.
        o.partitions = Some(vec![Replicas {
            topic: "t".into(),
            partition: 0,
            replicas: vec![4, 0],
        }]);
        let p = plan(&o);
        assert_eq!(
            kinds(&p),
            [
                ClusterAction::ApplyObjects {
                    replicas: 5,
                    claim_size: "10Gi".into()
                },
                ClusterAction::Reassign(BTreeMap::from([(("t".into(), 0), vec![1, 0])])),
            ]
        );
        // Empty: shrink to 3 and, with deleteClaim, delete the claims of 3 and 4.
        o.partitions = Some(vec![Replicas {
            topic: "t".into(),
            partition: 0,
            replicas: vec![1, 0],
        }]);
        o.delete_claims = true;
        let p = plan(&o);
        assert_eq!(
            kinds(&p),
            [
                ClusterAction::ApplyObjects {
                    replicas: 3,
                    claim_size: "10Gi".into()
                },
                ClusterAction::DeleteClaim("data-prod-3".into()),
                ClusterAction::DeleteClaim("data-prod-4".into()),
            ]
        );
    }

    #[test]
    fn a_broker_down_past_replace_after_gets_its_replicas_recreated() {
        let mut o = observation(vec![
            pod(0, "r2", true),
            pod(1, "r2", false),
            pod(2, "r2", true),
            pod(3, "r2", true),
        ]);
        o.max_moves_in_flight = 4;
        o.replace_after = std::time::Duration::from_secs(600);
        o.now = Some(Timestamp::from_second(1_800_000_601).unwrap());
        o.health = (0..4)
            .map(|id| BrokerHealth {
                id,
                not_ready_since: (id == 1).then(|| Timestamp::from_second(1_800_000_000).unwrap()),
            })
            .collect();
        o.partitions = Some(vec![Replicas {
            topic: "t".into(),
            partition: 0,
            replicas: vec![1, 0, 2],
        }]);
        let p = plan(&o);
        assert_eq!(
            kinds(&p)[1],
            ClusterAction::Reassign(BTreeMap::from([(("t".into(), 0), vec![3, 0, 2])]))
        );
    }

    /// `n` ready brokers that may take up to 10 moves at a 10% threshold.
    fn rebalance_observation(n: i32) -> ClusterObservation {
        let mut o = observation((0..n).map(|i| pod(i, "r2", true)).collect());
        o.max_moves_in_flight = 10;
        o.imbalance_threshold_percent = 10;
        o.brokers = (0..n)
            .map(|id| rebalance::Broker { id, rack: None })
            .collect();
        o
    }

    #[test]
    fn a_requested_rebalance_moves_replicas_onto_empty_brokers() {
        let mut o = rebalance_observation(4);
        o.partitions = Some(
            (0..3)
                .map(|i| Replicas {
                    topic: "t".into(),
                    partition: i,
                    replicas: vec![i % 3, (i + 1) % 3],
                })
                .collect(),
        );
        assert_eq!(plan(&o).actions.len(), 1, "not requested: nothing moves");
        o.rebalance_requested = true;
        let p = plan(&o);
        assert!(
            matches!(p.actions[1].action, ClusterAction::Reassign(_)),
            "{p:?}"
        );
        assert_eq!(p.operation, operation::REBALANCING);
    }

    #[test]
    fn a_rebalance_moves_the_partitions_the_brokers_report_smallest() {
        // Brokers 0 and 1 hold both replicas of four partitions; broker 2 is
        // new. Partitions 1 and 2 are small; 3 is large although broker 0,
        // a follower far behind, reports 10 bytes of it (the largest report
        // counts).
        let mut o = rebalance_observation(3);
        o.rebalance_requested = true;
        o.partitions = Some(
            (0..4)
                .map(|i| Replicas {
                    topic: "t".into(),
                    partition: i,
                    replicas: if i < 2 { vec![0, 1] } else { vec![1, 0] },
                })
                .collect(),
        );
        let key = |p: i32| ("t".to_owned(), p);
        o.replica_sizes = BTreeMap::from([
            (
                0,
                ReplicaSizes::from([
                    (key(0), 5 << 30),
                    (key(1), 1 << 10),
                    (key(2), 2 << 10),
                    (key(3), 10),
                ]),
            ),
            (
                1,
                ReplicaSizes::from([(key(2), 1 << 10), (key(3), 3 << 30)]),
            ),
        ]);
        let p = plan(&o);
        let ClusterAction::Reassign(moves) = &p.actions[1].action else {
            panic!("{p:?}")
        };
        let moved: BTreeSet<i32> = moves.keys().map(|(_, p)| *p).collect();
        assert_eq!(moved, BTreeSet::from([1, 2]), "{moves:?}");
        // Without sizes (no broker answered) every partition counts as empty
        // and the tie goes by position.
        o.replica_sizes.clear();
        let ClusterAction::Reassign(moves) = &plan(&o).actions[1].action else {
            panic!()
        };
        let moved: BTreeSet<i32> = moves.keys().map(|(_, p)| *p).collect();
        assert_ne!(moved, BTreeSet::from([1, 2]), "{moves:?}");
    }

    #[test]
    fn empty_brokers_are_filled_in_manual_mode_and_removed_ones_never() {
        // A scale-up from 3 to 5: brokers 3 and 4 report no replicas.
        // Metadata still lists broker 5, removed by an earlier scale-down.
        let mut o = observation((0..5).map(|i| pod(i, "r2", true)).collect());
        o.max_moves_in_flight = 100;
        o.imbalance_threshold_percent = 10;
        o.brokers = (0..6)
            .map(|id| rebalance::Broker { id, rack: None })
            .collect();
        o.partitions = Some(
            (0..6)
                .map(|i| Replicas {
                    topic: "t".into(),
                    partition: i,
                    replicas: vec![i % 3, (i + 1) % 3, (i + 2) % 3],
                })
                .collect(),
        );
        for (id, s) in &mut o.broker_states {
            s.partitions = Some(if *id < 3 { 6 } else { 0 });
        }
        assert_eq!(empty_brokers(&o), [3, 4]);
        assert!(!o.rebalance_requested);
        let p = plan(&o);
        let ClusterAction::Reassign(moves) = &p.actions[1].action else {
            panic!("{p:?}")
        };
        let targets: BTreeSet<i32> = moves.values().flatten().copied().collect();
        assert!(targets.contains(&3) && targets.contains(&4), "{moves:?}");
        assert!(
            !targets.contains(&5),
            "a removed broker receives nothing: {moves:?}"
        );
        assert!(
            p.actions[1]
                .reason
                .starts_with("broker(s) 3, 4 hold no replicas"),
            "{}",
            p.actions[1].reason
        );
        assert_eq!(p.operation, operation::REBALANCING);
        assert_eq!(
            p.progress,
            Some(format!("{} partitions moving", moves.len()))
        );
        // Once they hold replicas, manual mode leaves the cluster alone.
        for s in o.broker_states.values_mut() {
            s.partitions = Some(4);
        }
        assert!(empty_brokers(&o).is_empty());
        assert_eq!(plan(&o).actions.len(), 1);
    }

    #[test]
    fn scale_down_below_the_voters_is_refused() {
        let mut o = observation(vec![
            pod(0, "r2", true),
            pod(1, "r2", true),
            pod(2, "r2", true),
        ]);
        o.desired_brokers = 2;
        o.voters = 3;
        // Refused before the partition map is even read.
        assert_eq!(plan(&o).refusals.len(), 1);
        o.partitions = Some(vec![]);
        let p = plan(&o);
        assert_eq!(
            kinds(&p),
            [ClusterAction::ApplyObjects {
                replicas: 3,
                claim_size: "10Gi".into()
            }]
        );
        assert_eq!(
            p.refusals[0].message,
            "scale-down to 2 brokers is refused: brokers 0..2 are metadata-quorum voters"
        );
        let s = status(&o, &p, "id", &[], &now());
        assert!(condition::is_true(&s.conditions, kind::DEGRADED));
    }

    #[test]
    fn storage_grows_by_patching_claims_and_never_shrinks() {
        let mut o = observation(vec![pod(0, "r2", true), pod(1, "r2", true)]);
        o.storage_size = "20Gi".into();
        let p = plan(&o);
        assert_eq!(
            kinds(&p),
            [
                ClusterAction::ApplyObjects {
                    replicas: 2,
                    claim_size: "10Gi".into()
                },
                ClusterAction::ExpandClaim {
                    claim: "data-prod-0".into(),
                    size: "20Gi".into()
                },
                ClusterAction::ExpandClaim {
                    claim: "data-prod-1".into(),
                    size: "20Gi".into()
                },
            ]
        );
        assert_eq!(p.operation, operation::EXPANDING_STORAGE);
        o.storage_size = "5Gi".into();
        let p = plan(&o);
        assert_eq!(p.refusals.len(), 2);
        assert_eq!(p.refusals[0].reason, reason::STORAGE_SHRINK_REFUSED);
    }

    #[test]
    fn under_replication_is_unknown_until_every_ready_broker_answers() {
        let mut o = observation(vec![pod(0, "r2", true), pod(1, "r2", true)]);
        assert_eq!(under_replicated(&o.broker_states, &o.pods), Some(0));
        o.broker_states.get_mut(&1).unwrap().under_replicated = Some(4);
        assert_eq!(under_replicated(&o.broker_states, &o.pods), Some(4));
        o.broker_states.remove(&0);
        assert_eq!(under_replicated(&o.broker_states, &o.pods), None);
    }
}
