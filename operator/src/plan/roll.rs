//! Rolling restart: which broker pod to restart next, if any.
//!
//! Rules, in order: a pod of the new revision stuck in CrashLoopBackOff
//! aborts the roll; while any pod is missing or terminating, wait; stale
//! pods that are not Ready go first (they are down already, restarting them
//! takes nothing away); then wait until every pod is Ready and nothing is
//! under-replicated; then the stale Ready brokers one at a time, a broker
//! already being drained first, the active metadata-quorum leader last,
//! each only after its restart-safety probe says safe; drain (controlled
//! shutdown), then delete the pod. The drain is the broker's maintenance
//! mode and outlives the restart, so a restarted broker that is Ready on
//! the new revision has it ended before anything else happens (else it
//! would never lead again, and the next roll would find it drained and
//! skip its safety probe). All of it derives from observed state, so an
//! operator killed mid-roll resumes where it stopped.

use std::collections::BTreeMap;

use super::Planned;

/// A broker's drain (leadership and controlled shutdown) as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DrainState {
    /// Not asked to drain.
    #[default]
    None,
    /// Draining: moving leadership away.
    InProgress,
    /// Leads nothing; safe to stop.
    Done,
    /// The broker has no drain endpoint; SIGTERM does the controlled shutdown.
    Unsupported,
}

/// What the broker's restart-safety probe answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Safety {
    /// Restarting it keeps every partition at or above min.insync.replicas and the quorum's majority.
    Safe,
    /// Restarting it now would not; the partitions (or quorum) that block it.
    Unsafe(Vec<String>),
    /// No answer (unreachable, error); treated as unsafe.
    Unknown(String),
}

/// A broker pod as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BrokerPod {
    /// Broker id (pod ordinal).
    pub id: i32,
    /// The pod object exists.
    pub exists: bool,
    /// The pod has a deletion timestamp.
    pub terminating: bool,
    /// The pod is Ready.
    pub ready: bool,
    /// `controller-revision-hash` of the pod.
    pub revision: Option<String>,
    /// Its broker container waits in CrashLoopBackOff.
    pub crash_looping: bool,
    /// Drain state reported by the broker.
    pub drain: DrainState,
}

/// Everything the roll decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct RollInput<'a> {
    /// The StatefulSet's `updateRevision`.
    pub update_revision: &'a str,
    /// Every broker pod the StatefulSet should have, by id.
    pub brokers: &'a [BrokerPod],
    /// Id of the active metadata-quorum leader, if known.
    pub active_controller: Option<i32>,
    /// Under-replicated partitions in the cluster (`None`: unknown).
    pub under_replicated: Option<i32>,
    /// Restart-safety answers by broker id (missing = not asked = unknown).
    pub safety: &'a BTreeMap<i32, Safety>,
}

/// The next step of a roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollAction {
    /// Ask the broker to drain.
    Drain(i32),
    /// Delete the pod; the StatefulSet recreates it on the new revision.
    DeletePod(i32),
    /// End the maintenance mode of a broker restarted on the new revision.
    Undrain(i32),
    /// Nothing to do this pass; look again later.
    Wait,
    /// Stop rolling: the new revision does not run (Degraded).
    Abort(i32),
}

/// Decision of one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollPlan {
    /// Every pod runs the update revision.
    Done,
    /// A roll is under way; the next step and its reason, and progress.
    Rolling {
        /// The step.
        step: Planned<RollAction>,
        /// e.g. `restarted 1/3 brokers`.
        progress: String,
    },
}

fn up_to_date(b: &BrokerPod, update_revision: &str) -> bool {
    b.exists && !b.terminating && b.revision.as_deref() == Some(update_revision)
}

/// The next step of the roll towards `input.update_revision`.
pub fn plan(input: &RollInput<'_>) -> RollPlan {
    let rev = input.update_revision;
    let total = input.brokers.len();
    let current = input.brokers.iter().filter(|b| up_to_date(b, rev)).count();
    let progress = format!("restarted {current}/{total} brokers");
    let rolling = |action, reason: String| RollPlan::Rolling {
        step: Planned::new(action, reason),
        progress: progress.clone(),
    };
    // Restarted and serving, but still in the maintenance mode its drain set.
    if let Some(b) = input.brokers.iter().find(|b| {
        up_to_date(b, rev)
            && b.ready
            && matches!(b.drain, DrainState::InProgress | DrainState::Done)
    }) {
        return rolling(
            RollAction::Undrain(b.id),
            format!(
                "ending the maintenance mode of broker {}: it runs revision {rev} and is Ready",
                b.id
            ),
        );
    }
    if current == total {
        return RollPlan::Done;
    }

    if let Some(b) = input
        .brokers
        .iter()
        .find(|b| up_to_date(b, rev) && b.crash_looping)
    {
        return rolling(
            RollAction::Abort(b.id),
            format!(
                "broker {} is in CrashLoopBackOff on the new revision {rev}; roll stopped",
                b.id
            ),
        );
    }
    if let Some(b) = input.brokers.iter().find(|b| !b.exists || b.terminating) {
        return rolling(
            RollAction::Wait,
            format!("waiting for broker {} to be recreated", b.id),
        );
    }
    let stale = || input.brokers.iter().filter(|b| !up_to_date(b, rev));
    if let Some(b) = stale().find(|b| !b.ready) {
        return rolling(
            RollAction::DeletePod(b.id),
            format!(
                "restarting broker {} on revision {rev}: it is not Ready, so restarting it first costs no availability",
                b.id
            ),
        );
    }
    if let Some(b) = input.brokers.iter().find(|b| !b.ready) {
        return rolling(
            RollAction::Wait,
            format!("waiting for broker {} to be Ready", b.id),
        );
    }
    match input.under_replicated {
        Some(0) => {}
        Some(n) => {
            return rolling(
                RollAction::Wait,
                format!("waiting for {n} under-replicated partitions to catch up"),
            );
        }
        None => {
            return rolling(
                RollAction::Wait,
                "waiting for the brokers to report under-replicated partitions".to_owned(),
            );
        }
    }
    // A broker already draining goes first (the operator may have stopped
    // half-way); otherwise by id, the active controller last.
    let candidate = stale()
        .min_by_key(|b| {
            (
                matches!(b.drain, DrainState::None),
                Some(b.id) == input.active_controller,
                b.id,
            )
        })
        .map(|b| (b.id, b.drain));
    let Some((id, drain)) = candidate else {
        return RollPlan::Done;
    };
    match drain {
        DrainState::InProgress => rolling(
            RollAction::Wait,
            format!("waiting for broker {id} to finish draining"),
        ),
        DrainState::Done | DrainState::Unsupported => rolling(
            RollAction::DeletePod(id),
            format!("restarting broker {id} on revision {rev} (config or image changed)"),
        ),
        DrainState::None => match input.safety.get(&id) {
            Some(Safety::Safe) => rolling(
                RollAction::Drain(id),
                format!(
                    "draining broker {id} before its restart: the restart-safety probe says safe"
                ),
            ),
            Some(Safety::Unsafe(blocking)) => rolling(
                RollAction::Wait,
                format!(
                    "broker {id} is not safe to restart yet; blocking: {}",
                    blocking.join(", ")
                ),
            ),
            Some(Safety::Unknown(why)) => rolling(
                RollAction::Wait,
                format!("cannot tell whether broker {id} is safe to restart: {why}"),
            ),
            None => rolling(
                RollAction::Wait,
                format!("broker {id}'s restart-safety probe has not answered"),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "rev-2";
    const OLD: &str = "rev-1";

    fn pod(id: i32, revision: &str) -> BrokerPod {
        BrokerPod {
            id,
            exists: true,
            ready: true,
            revision: Some(revision.into()),
            ..BrokerPod::default()
        }
    }

    fn all_safe(n: i32) -> BTreeMap<i32, Safety> {
        (0..n).map(|id| (id, Safety::Safe)).collect()
    }

    fn step(
        brokers: &[BrokerPod],
        controller: Option<i32>,
        urp: Option<i32>,
        safety: &BTreeMap<i32, Safety>,
    ) -> Option<RollAction> {
        match plan(&RollInput {
            update_revision: NEW,
            brokers,
            active_controller: controller,
            under_replicated: urp,
            safety,
        }) {
            RollPlan::Done => None,
            RollPlan::Rolling { step, .. } => Some(step.action),
        }
    }

    #[test]
    fn nothing_to_do_when_every_pod_runs_the_update_revision() {
        let brokers = [pod(0, NEW), pod(1, NEW), pod(2, NEW)];
        assert_eq!(step(&brokers, Some(1), Some(0), &all_safe(3)), None);
    }

    #[test]
    fn table_of_roll_decisions() {
        use RollAction::*;
        let safe = all_safe(3);
        let none = BTreeMap::new();
        let mut unsafe_1 = all_safe(3);
        unsafe_1.insert(
            1,
            Safety::Unsafe(vec!["orders-0 would drop below min.insync.replicas".into()]),
        );
        let mut unknown_0 = all_safe(3);
        unknown_0.insert(0, Safety::Unknown("connection refused".into()));
        let not_ready = |mut p: BrokerPod| {
            p.ready = false;
            p
        };
        let draining = |mut p: BrokerPod, d: DrainState| {
            p.drain = d;
            p
        };
        // (case, pods, active controller, under-replicated, safety, expected step)
        type Case<'a> = (
            &'a str,
            Vec<BrokerPod>,
            Option<i32>,
            Option<i32>,
            &'a BTreeMap<i32, Safety>,
            Option<RollAction>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "first stale broker by id, drained before restart",
                vec![pod(0, OLD), pod(1, OLD), pod(2, OLD)],
                Some(2),
                Some(0),
                &safe,
                Some(Drain(0)),
            ),
            (
                "the active controller goes last",
                vec![pod(0, OLD), pod(1, OLD), pod(2, OLD)],
                Some(0),
                Some(0),
                &safe,
                Some(Drain(1)),
            ),
            (
                "the controller alone is left: its turn",
                vec![pod(0, OLD), pod(1, NEW), pod(2, NEW)],
                Some(0),
                Some(0),
                &safe,
                Some(Drain(0)),
            ),
            (
                "a not-Ready stale pod first, without a probe",
                vec![pod(0, OLD), pod(1, OLD), not_ready(pod(2, OLD))],
                Some(0),
                Some(5),
                &none,
                Some(DeletePod(2)),
            ),
            (
                "a not-Ready updated pod: wait for it",
                vec![not_ready(pod(0, NEW)), pod(1, OLD), pod(2, OLD)],
                None,
                Some(0),
                &safe,
                Some(Wait),
            ),
            (
                "under-replicated partitions: wait",
                vec![pod(0, NEW), pod(1, OLD), pod(2, OLD)],
                None,
                Some(3),
                &safe,
                Some(Wait),
            ),
            (
                "unknown under-replication: wait",
                vec![pod(0, NEW), pod(1, OLD), pod(2, OLD)],
                None,
                None,
                &safe,
                Some(Wait),
            ),
            (
                "unsafe probe: wait",
                vec![pod(0, NEW), pod(1, OLD), pod(2, NEW)],
                None,
                Some(0),
                &unsafe_1,
                Some(Wait),
            ),
            (
                "no probe answer: wait",
                vec![pod(0, OLD), pod(1, NEW), pod(2, NEW)],
                None,
                Some(0),
                &unknown_0,
                Some(Wait),
            ),
            (
                "probe not asked: wait",
                vec![pod(0, OLD), pod(1, NEW), pod(2, NEW)],
                None,
                Some(0),
                &none,
                Some(Wait),
            ),
            (
                "draining: wait for it",
                vec![
                    pod(0, OLD),
                    draining(pod(1, OLD), DrainState::InProgress),
                    pod(2, OLD),
                ],
                None,
                Some(0),
                &safe,
                Some(Wait),
            ),
            (
                "drained broker is deleted, even out of order (resume after a crash)",
                vec![
                    pod(0, OLD),
                    draining(pod(1, OLD), DrainState::Done),
                    pod(2, OLD),
                ],
                Some(1),
                Some(0),
                &unsafe_1,
                Some(DeletePod(1)),
            ),
            (
                "no drain endpoint: delete, SIGTERM drains",
                vec![
                    draining(pod(0, OLD), DrainState::Unsupported),
                    pod(1, NEW),
                    pod(2, NEW),
                ],
                None,
                Some(0),
                &safe,
                Some(DeletePod(0)),
            ),
            (
                "a crash-looping pod on the new revision aborts",
                vec![
                    BrokerPod {
                        crash_looping: true,
                        ready: false,
                        ..pod(0, NEW)
                    },
                    pod(1, OLD),
                    pod(2, OLD),
                ],
                None,
                Some(0),
                &safe,
                Some(Abort(0)),
            ),
            (
                "a crash-looping stale pod is restarted onto the new revision",
                vec![
                    BrokerPod {
                        crash_looping: true,
                        ready: false,
                        ..pod(0, OLD)
                    },
                    pod(1, NEW),
                    pod(2, NEW),
                ],
                None,
                Some(1),
                &safe,
                Some(DeletePod(0)),
            ),
            (
                "a terminating pod: wait (never two down)",
                vec![
                    BrokerPod {
                        terminating: true,
                        ..pod(0, OLD)
                    },
                    pod(1, OLD),
                    not_ready(pod(2, OLD)),
                ],
                None,
                Some(0),
                &safe,
                Some(Wait),
            ),
            (
                "a restarted Ready broker is taken out of maintenance mode first",
                vec![
                    pod(0, OLD),
                    draining(pod(1, NEW), DrainState::Done),
                    pod(2, OLD),
                ],
                Some(0),
                Some(1),
                &safe,
                Some(Undrain(1)),
            ),
            (
                "every pod updated but the last still drained: the roll is not done",
                vec![
                    pod(0, NEW),
                    pod(1, NEW),
                    draining(pod(2, NEW), DrainState::InProgress),
                ],
                Some(0),
                Some(0),
                &safe,
                Some(Undrain(2)),
            ),
            (
                "a restarted broker not Ready yet keeps its maintenance mode",
                vec![
                    pod(0, OLD),
                    not_ready(draining(pod(1, NEW), DrainState::Done)),
                    pod(2, OLD),
                ],
                Some(0),
                Some(0),
                &safe,
                Some(Wait),
            ),
            (
                "a missing pod: wait",
                vec![
                    BrokerPod {
                        exists: false,
                        ..BrokerPod {
                            id: 0,
                            ..BrokerPod::default()
                        }
                    },
                    pod(1, OLD),
                    pod(2, OLD),
                ],
                None,
                Some(0),
                &safe,
                Some(Wait),
            ),
        ];
        for (name, brokers, controller, urp, safety, expected) in cases {
            assert_eq!(step(&brokers, controller, urp, safety), expected, "{name}");
        }
    }

    #[test]
    fn never_more_than_one_broker_down_because_of_the_roll() {
        // Simulate whole rolls: each pass applies the step; a deleted pod
        // comes back on the new revision not Ready (still in the
        // maintenance mode of its drain, as the broker keeps it), then
        // turns Ready on the next pass; a drain completes on the next pass.
        for controller in 0..3 {
            let mut brokers = vec![pod(0, OLD), pod(1, OLD), pod(2, OLD)];
            let mut order = Vec::new();
            for _ in 0..50 {
                let down = brokers.iter().filter(|b| !b.ready).count();
                assert!(down <= 1, "{brokers:?}");
                let action = step(&brokers, Some(controller), Some(0), &all_safe(3));
                let all_ready = down == 0;
                for b in &mut brokers {
                    if b.revision.as_deref() == Some(NEW) {
                        b.ready = true;
                    }
                    if b.drain == DrainState::InProgress {
                        b.drain = DrainState::Done;
                    }
                }
                match action {
                    // A restarted broker reports its maintenance mode only
                    // once it serves: the roll is over when all are Ready.
                    None if all_ready => break,
                    None => {}
                    Some(RollAction::Drain(id)) => {
                        brokers[id as usize].drain = DrainState::InProgress
                    }
                    Some(RollAction::DeletePod(id)) => {
                        order.push(id);
                        brokers[id as usize] = BrokerPod {
                            ready: false,
                            drain: brokers[id as usize].drain,
                            ..pod(id, NEW)
                        };
                    }
                    Some(RollAction::Undrain(id)) => brokers[id as usize].drain = DrainState::None,
                    Some(RollAction::Wait) => {}
                    Some(RollAction::Abort(id)) => panic!("abort {id}"),
                }
            }
            assert_eq!(order.len(), 3, "every broker restarted once");
            assert!(
                brokers.iter().all(|b| b.drain == DrainState::None),
                "no broker left in maintenance mode: {brokers:?}"
            );
            assert_eq!(
                order.last(),
                Some(&controller),
                "controller last: {order:?}"
            );
        }
    }

    #[test]
    fn progress_counts_updated_brokers_and_reasons_name_the_blockers() {
        let mut safety = all_safe(3);
        safety.insert(1, Safety::Unsafe(vec!["orders-0".into(), "quorum".into()]));
        let brokers = [pod(0, NEW), pod(1, OLD), pod(2, NEW)];
        let RollPlan::Rolling { step, progress } = plan(&RollInput {
            update_revision: NEW,
            brokers: &brokers,
            active_controller: None,
            under_replicated: Some(0),
            safety: &safety,
        }) else {
            panic!("rolling")
        };
        assert_eq!(progress, "restarted 2/3 brokers");
        assert_eq!(
            step.reason,
            "broker 1 is not safe to restart yet; blocking: orders-0, quorum"
        );
    }
}
