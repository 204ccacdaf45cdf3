//! Topic reconcile: what to ask the brokers so a Kafka topic matches its
//! `Topic` spec.
//!
//! Create it when missing (a topic that already exists is adopted, never
//! recreated); add partitions when asked for more; refuse fewer (Kafka
//! cannot remove partitions); set and remove topic configs so they equal
//! the spec; refuse a replication factor above the number of brokers; change
//! the replication factor by reassignment, a bounded batch at a time,
//! placing new replicas on the least-loaded brokers and dropping followers
//! (never the leader) when shrinking.

use std::collections::{BTreeMap, BTreeSet};

use super::Planned;
use crate::crd::condition::reason;

/// What the Topic asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTopic {
    /// Kafka topic name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i16,
    /// Topic configs.
    pub config: BTreeMap<String, String>,
}

/// One partition as the brokers report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionState {
    /// Partition index.
    pub id: i32,
    /// Replica broker ids, preferred leader first.
    pub replicas: Vec<i32>,
    /// Current leader (`-1`: none).
    pub leader: i32,
}

/// The topic as the brokers report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedTopic {
    /// Every partition.
    pub partitions: Vec<PartitionState>,
    /// Configs set on the topic itself (not defaults, not broker-wide).
    pub config: BTreeMap<String, String>,
    /// Partitions with a reassignment in progress.
    pub reassigning: BTreeSet<i32>,
}

/// Everything the topic decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct TopicInput<'a> {
    /// The spec.
    pub desired: &'a DesiredTopic,
    /// The topic in the brokers, if it exists.
    pub observed: Option<&'a ObservedTopic>,
    /// Ids of the brokers that can hold replicas.
    pub brokers: &'a [i32],
    /// Most partition moves in flight at once.
    pub max_moves_in_flight: usize,
}

/// A request to the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicAction {
    /// CreateTopics.
    Create {
        /// Partitions.
        partitions: i32,
        /// Replicas per partition.
        replication_factor: i16,
        /// Topic configs.
        config: BTreeMap<String, String>,
    },
    /// CreatePartitions up to `total`.
    AddPartitions {
        /// The new partition count.
        total: i32,
    },
    /// IncrementalAlterConfigs: set these, delete those.
    AlterConfig {
        /// Keys to set.
        set: BTreeMap<String, String>,
        /// Keys to remove (back to the broker default).
        delete: Vec<String>,
    },
    /// AlterPartitionReassignments: partition → target replicas.
    Reassign(BTreeMap<i32, Vec<i32>>),
}

/// A part of the spec that is not applied, and why (a condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Condition reason constant.
    pub reason: &'static str,
    /// What and why.
    pub message: String,
}

/// The outcome of one pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPlan {
    /// Requests, in order.
    pub actions: Vec<Planned<TopicAction>>,
    /// What is refused.
    pub refusals: Vec<Refusal>,
    /// Progress of a replication-factor change, e.g. `reassigning 12/48 partitions`.
    pub progress: Option<String>,
}

impl TopicPlan {
    /// Whether the topic matches its spec (nothing to do, nothing refused, nothing moving).
    pub fn converged(&self) -> bool {
        self.actions.is_empty() && self.refusals.is_empty() && self.progress.is_none()
    }
}

/// Decides what to do for one topic.
pub fn plan(input: &TopicInput<'_>) -> TopicPlan {
    let d = input.desired;
    let mut out = TopicPlan::default();
    let rf = usize::try_from(d.replication_factor).unwrap_or(0);
    let rf_fits = rf <= input.brokers.len();
    if !rf_fits {
        out.refusals.push(Refusal {
            reason: reason::REPLICATION_FACTOR_TOO_HIGH,
            message: format!(
                "replicationFactor {} is more than the {} brokers of the cluster",
                d.replication_factor,
                input.brokers.len()
            ),
        });
    }
    let Some(observed) = input.observed else {
        if rf_fits {
            out.actions.push(Planned::new(
                TopicAction::Create {
                    partitions: d.partitions,
                    replication_factor: d.replication_factor,
                    config: d.config.clone(),
                },
                format!(
                    "creating topic {} with {} partitions and replication factor {}",
                    d.name, d.partitions, d.replication_factor
                ),
            ));
        }
        return out;
    };

    let have = i32::try_from(observed.partitions.len()).unwrap_or(i32::MAX);
    if d.partitions < have {
        out.refusals.push(Refusal {
            reason: reason::PARTITION_SHRINK_REFUSED,
            message: format!(
                "topic {} has {have} partitions; partitions cannot shrink to {}",
                d.name, d.partitions
            ),
        });
    } else if d.partitions > have {
        out.actions.push(Planned::new(
            TopicAction::AddPartitions {
                total: d.partitions,
            },
            format!(
                "adding partitions to topic {}: {have} → {}",
                d.name, d.partitions
            ),
        ));
    }

    let set: BTreeMap<String, String> = d
        .config
        .iter()
        .filter(|(k, v)| observed.config.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete: Vec<String> = observed
        .config
        .keys()
        .filter(|k| !d.config.contains_key(*k))
        .cloned()
        .collect();
    if !set.is_empty() || !delete.is_empty() {
        let mut what: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        what.extend(delete.iter().map(|k| format!("{k} (reset)")));
        out.actions.push(Planned::new(
            TopicAction::AlterConfig { set, delete },
            format!("changing config of topic {}: {}", d.name, what.join(", ")),
        ));
    }

    if rf_fits {
        plan_replication(input, observed, rf, &mut out);
    }
    out
}

fn plan_replication(
    input: &TopicInput<'_>,
    observed: &ObservedTopic,
    rf: usize,
    out: &mut TopicPlan,
) {
    let d = input.desired;
    let wrong: Vec<&PartitionState> = observed
        .partitions
        .iter()
        .filter(|p| p.replicas.len() != rf || observed.reassigning.contains(&p.id))
        .collect();
    if wrong.is_empty() {
        return;
    }
    let total = observed.partitions.len();
    let done = total - wrong.len();
    out.progress = Some(format!(
        "reassigning {done}/{total} partitions to replication factor {rf}"
    ));
    let in_flight = observed.reassigning.len();
    let budget = input.max_moves_in_flight.saturating_sub(in_flight);
    // Replica count per broker over this topic, kept up to date as moves are planned.
    let mut load: BTreeMap<i32, usize> = input.brokers.iter().map(|b| (*b, 0)).collect();
    for p in &observed.partitions {
        for r in &p.replicas {
            *load.entry(*r).or_default() += 1;
        }
    }
    let mut moves = BTreeMap::new();
    for p in wrong
        .iter()
        .filter(|p| !observed.reassigning.contains(&p.id))
        .take(budget)
    {
        let target = target_replicas(p, rf, input.brokers, &mut load);
        if target != p.replicas {
            moves.insert(p.id, target);
        }
    }
    if !moves.is_empty() {
        let n = moves.len();
        out.actions.push(Planned::new(
            TopicAction::Reassign(moves),
            format!(
                "reassigning {n} partitions of topic {} to replication factor {rf} ({in_flight} already moving)",
                d.name
            ),
        ));
    }
}

/// Replicas of `p` at `rf`: grow onto the least-loaded brokers not yet
/// holding it (lowest id on ties); shrink by dropping followers, most
/// loaded first, keeping the leader.
fn target_replicas(
    p: &PartitionState,
    rf: usize,
    brokers: &[i32],
    load: &mut BTreeMap<i32, usize>,
) -> Vec<i32> {
    let mut replicas = p.replicas.clone();
    while replicas.len() < rf {
        let Some(next) = brokers
            .iter()
            .filter(|b| !replicas.contains(b))
            .min_by_key(|b| (load.get(b).copied().unwrap_or(0), **b))
            .copied()
        else {
            break;
        };
        *load.entry(next).or_default() += 1;
        replicas.push(next);
    }
    while replicas.len() > rf {
        let leader = if p.leader >= 0 { p.leader } else { replicas[0] };
        let Some((index, drop)) = replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| **r != leader)
            .max_by_key(|(i, r)| (load.get(r).copied().unwrap_or(0), *i))
            .map(|(i, r)| (i, *r))
        else {
            break;
        };
        if let Some(l) = load.get_mut(&drop) {
            *l = l.saturating_sub(1);
        }
        replicas.remove(index);
    }
    replicas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(partitions: i32, rf: i16, config: &[(&str, &str)]) -> DesiredTopic {
        DesiredTopic {
            name: "orders".into(),
            partitions,
            replication_factor: rf,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn observed(replicas: &[&[i32]], config: &[(&str, &str)]) -> ObservedTopic {
        ObservedTopic {
            partitions: replicas
                .iter()
                .enumerate()
                .map(|(i, r)| PartitionState {
                    id: i as i32,
                    replicas: r.to_vec(),
                    leader: r.first().copied().unwrap_or(-1),
                })
                .collect(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            reassigning: BTreeSet::new(),
        }
    }

    fn run(d: &DesiredTopic, o: Option<&ObservedTopic>, brokers: &[i32]) -> TopicPlan {
        plan(&TopicInput {
            desired: d,
            observed: o,
            brokers,
            max_moves_in_flight: 2,
        })
    }

    fn actions(p: &TopicPlan) -> Vec<TopicAction> {
        p.actions.iter().map(|a| a.action.clone()).collect()
    }

    #[test]
    fn creates_a_missing_topic() {
        let d = desired(6, 3, &[("retention.ms", "1000")]);
        let p = run(&d, None, &[0, 1, 2]);
        assert_eq!(
            actions(&p),
            [TopicAction::Create {
                partitions: 6,
                replication_factor: 3,
                config: d.config.clone()
            }]
        );
        assert_eq!(
            p.actions[0].reason,
            "creating topic orders with 6 partitions and replication factor 3"
        );
        assert!(p.refusals.is_empty());
    }

    #[test]
    fn adopts_an_existing_topic_that_matches() {
        let d = desired(2, 2, &[("retention.ms", "1000")]);
        let o = observed(&[&[0, 1], &[1, 2]], &[("retention.ms", "1000")]);
        let p = run(&d, Some(&o), &[0, 1, 2]);
        assert!(p.converged(), "{p:?}");
    }

    #[test]
    fn refuses_more_replicas_than_brokers_without_creating() {
        let d = desired(3, 4, &[]);
        let p = run(&d, None, &[0, 1, 2]);
        assert!(p.actions.is_empty());
        assert_eq!(p.refusals[0].reason, reason::REPLICATION_FACTOR_TOO_HIGH);
        assert_eq!(
            p.refusals[0].message,
            "replicationFactor 4 is more than the 3 brokers of the cluster"
        );
        // An existing topic still gets its config while RF is refused.
        let o = observed(&[&[0, 1, 2]], &[]);
        let d = desired(1, 4, &[("retention.ms", "5")]);
        let p = run(&d, Some(&o), &[0, 1, 2]);
        assert!(matches!(
            p.actions[..],
            [Planned {
                action: TopicAction::AlterConfig { .. },
                ..
            }]
        ));
        assert_eq!(p.progress, None);
    }

    #[test]
    fn grows_partitions_and_refuses_to_shrink_them() {
        let o = observed(&[&[0], &[1]], &[]);
        let p = run(&desired(5, 1, &[]), Some(&o), &[0, 1, 2]);
        assert_eq!(actions(&p), [TopicAction::AddPartitions { total: 5 }]);
        let p = run(&desired(1, 1, &[]), Some(&o), &[0, 1, 2]);
        assert!(p.actions.is_empty());
        assert_eq!(p.refusals[0].reason, reason::PARTITION_SHRINK_REFUSED);
        assert_eq!(
            p.refusals[0].message,
            "topic orders has 2 partitions; partitions cannot shrink to 1"
        );
    }

    #[test]
    fn config_is_made_equal_to_the_spec() {
        let o = observed(&[&[0]], &[("retention.ms", "1"), ("segment.ms", "9")]);
        let d = desired(1, 1, &[("retention.ms", "2"), ("cleanup.policy", "delete")]);
        let p = run(&d, Some(&o), &[0]);
        assert_eq!(
            actions(&p),
            [TopicAction::AlterConfig {
                set: BTreeMap::from([
                    ("cleanup.policy".into(), "delete".into()),
                    ("retention.ms".into(), "2".into())
                ]),
                delete: vec!["segment.ms".into()],
            }]
        );
        assert_eq!(
            p.actions[0].reason,
            "changing config of topic orders: cleanup.policy=delete, retention.ms=2, segment.ms (reset)"
        );
    }

    #[test]
    fn raising_the_replication_factor_adds_replicas_on_least_loaded_brokers_in_batches() {
        let o = observed(&[&[0], &[1], &[2]], &[]);
        let p = run(&desired(3, 3, &[]), Some(&o), &[0, 1, 2]);
        let [TopicAction::Reassign(moves)] = &actions(&p)[..] else {
            panic!("{p:?}")
        };
        // max_moves_in_flight = 2: partitions 0 and 1 this pass.
        assert_eq!(
            moves,
            &BTreeMap::from([(0, vec![0, 1, 2]), (1, vec![1, 0, 2])])
        );
        assert_eq!(
            p.progress.as_deref(),
            Some("reassigning 0/3 partitions to replication factor 3")
        );
        // Next pass: two in flight, so nothing new until they finish.
        let mut o2 = observed(&[&[0, 1, 2], &[1, 0, 2], &[2]], &[]);
        o2.reassigning = BTreeSet::from([0, 1]);
        let p = run(&desired(3, 3, &[]), Some(&o2), &[0, 1, 2]);
        assert!(p.actions.is_empty());
        assert_eq!(
            p.progress.as_deref(),
            Some("reassigning 0/3 partitions to replication factor 3")
        );
        o2.reassigning.clear();
        let p = run(&desired(3, 3, &[]), Some(&o2), &[0, 1, 2]);
        assert_eq!(
            actions(&p),
            [TopicAction::Reassign(BTreeMap::from([(2, vec![2, 0, 1])]))]
        );
        assert_eq!(
            p.progress.as_deref(),
            Some("reassigning 2/3 partitions to replication factor 3")
        );
    }

    #[test]
    fn lowering_the_replication_factor_keeps_the_leader() {
        let mut o = observed(&[&[0, 1, 2], &[1, 2, 0]], &[]);
        o.partitions[1].leader = 2;
        let p = run(&desired(2, 2, &[]), Some(&o), &[0, 1, 2]);
        let [TopicAction::Reassign(moves)] = &actions(&p)[..] else {
            panic!("{p:?}")
        };
        for (partition, target) in moves {
            let leader = o.partitions[*partition as usize].leader;
            assert_eq!(target.len(), 2);
            assert!(
                target.contains(&leader),
                "partition {partition}: {target:?}"
            );
        }
        // Load stays balanced: no broker holds both replicas lists' dropped slot twice.
        let mut count = BTreeMap::new();
        for t in moves.values() {
            for r in t {
                *count.entry(*r).or_insert(0) += 1;
            }
        }
        assert!(count.values().all(|c| *c <= 2), "{count:?}");
    }

    #[test]
    fn every_replica_list_is_distinct_and_within_the_brokers() {
        // Invariant over many shapes: targets have rf distinct live brokers.
        for brokers in 1..=5 {
            let ids: Vec<i32> = (0..brokers).collect();
            for rf in 1..=brokers {
                for start in 1..=brokers {
                    let replicas: Vec<Vec<i32>> = (0..4)
                        .map(|p| (0..start).map(|i| (p + i) % brokers).collect())
                        .collect();
                    let refs: Vec<&[i32]> = replicas.iter().map(Vec::as_slice).collect();
                    let o = observed(&refs, &[]);
                    let d = desired(4, rf as i16, &[]);
                    let p = plan(&TopicInput {
                        desired: &d,
                        observed: Some(&o),
                        brokers: &ids,
                        max_moves_in_flight: 100,
                    });
                    for a in &p.actions {
                        if let TopicAction::Reassign(moves) = &a.action {
                            for (partition, t) in moves {
                                let set: BTreeSet<_> = t.iter().collect();
                                assert_eq!(set.len(), rf as usize, "{t:?}");
                                assert!(t.iter().all(|b| ids.contains(b)));
                                assert!(t.contains(&o.partitions[*partition as usize].leader));
                            }
                        }
                    }
                }
            }
        }
    }
}
