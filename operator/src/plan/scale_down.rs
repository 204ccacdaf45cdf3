//! Scale-down: empty the brokers that are leaving before the StatefulSet
//! shrinks.
//!
//! The leaving brokers are the highest ordinals (a StatefulSet removes those).
//! Every replica on them moves to a remaining broker (least loaded first,
//! never one already holding the partition), a bounded batch at a time; only
//! when they hold nothing and nothing is moving may the StatefulSet shrink.
//! Refused outright: fewer brokers than some partition's replication factor,
//! and removing a metadata-quorum voter.

use std::collections::BTreeMap;

use super::Planned;
use super::topic::Refusal;
use crate::crd::condition::reason;

/// Partition moves: (topic, partition) → target replicas.
pub type Moves = BTreeMap<(String, i32), Vec<i32>>;

/// One partition anywhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicas {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Replica broker ids, preferred leader first.
    pub replicas: Vec<i32>,
}

/// Partitions being reassigned: (topic, partition) → replicas being removed.
pub type Removing = BTreeMap<(String, i32), Vec<i32>>;

/// Every partition as its reassignment will leave it. While a partition
/// moves, Metadata lists the union of its old and new replicas (e.g. five
/// for a replication factor of three); planning on that union would count
/// a transient replica set as the replication factor and re-plan a move
/// already under way.
pub fn targets(partitions: Vec<Replicas>, removing: &Removing) -> Vec<Replicas> {
    partitions
        .into_iter()
        .map(|mut p| {
            if let Some(gone) = removing.get(&(p.topic.clone(), p.partition)) {
                p.replicas.retain(|b| !gone.contains(b));
            }
            p
        })
        .collect()
}

/// Everything the scale-down decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct ScaleDownInput<'a> {
    /// Brokers now (ids `0..current`).
    pub current: i32,
    /// Brokers wanted.
    pub desired: i32,
    /// Voters of the metadata quorum (ids `0..voters`).
    pub voters: i32,
    /// Every partition of every topic.
    pub partitions: &'a [Replicas],
    /// Partitions being reassigned: (topic, partition).
    pub reassigning: usize,
    /// Most moves in flight.
    pub max_moves_in_flight: usize,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleDownAction {
    /// AlterPartitionReassignments: (topic, partition) → target replicas.
    Reassign(Moves),
    /// The leaving brokers are empty: shrink the StatefulSet to this size.
    Shrink(i32),
}

/// Decision of one pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScaleDownPlan {
    /// Actions.
    pub actions: Vec<Planned<ScaleDownAction>>,
    /// Why it is refused, if it is.
    pub refusal: Option<Refusal>,
    /// e.g. `draining brokers 3..4: 12 replicas to move`.
    pub progress: Option<String>,
}

/// Plans one pass of a scale-down from `current` to `desired`.
pub fn plan(input: &ScaleDownInput<'_>) -> ScaleDownPlan {
    let mut out = ScaleDownPlan::default();
    if input.desired >= input.current {
        return out;
    }
    let refuse = |message: String| ScaleDownPlan {
        refusal: Some(Refusal {
            reason: reason::INVALID_SPEC,
            message,
        }),
        ..ScaleDownPlan::default()
    };
    if input.desired < input.voters {
        return refuse(format!(
            "scale-down to {} brokers is refused: brokers 0..{} are metadata-quorum voters",
            input.desired,
            input.voters - 1
        ));
    }
    let desired = usize::try_from(input.desired).unwrap_or(0);
    if let Some(p) = input.partitions.iter().find(|p| p.replicas.len() > desired) {
        return refuse(format!(
            "scale-down to {} brokers is refused: {}-{} has replication factor {}",
            input.desired,
            p.topic,
            p.partition,
            p.replicas.len()
        ));
    }
    let leaving = |b: &i32| *b >= input.desired;
    let on_leaving: Vec<&Replicas> = input
        .partitions
        .iter()
        .filter(|p| p.replicas.iter().any(leaving))
        .collect();
    let range = format!("{}..{}", input.desired, input.current - 1);
    if on_leaving.is_empty() && input.reassigning == 0 {
        out.actions.push(Planned::new(
            ScaleDownAction::Shrink(input.desired),
            format!(
                "brokers {range} hold no replicas: shrinking from {} to {} brokers",
                input.current, input.desired
            ),
        ));
        return out;
    }
    let to_move: usize = on_leaving
        .iter()
        .map(|p| p.replicas.iter().filter(|b| leaving(b)).count())
        .sum();
    out.progress = Some(format!(
        "draining brokers {range}: {to_move} replicas to move, {} partitions moving",
        input.reassigning
    ));
    let mut load: BTreeMap<i32, usize> = (0..input.desired).map(|b| (b, 0)).collect();
    for p in input.partitions {
        for b in p.replicas.iter().filter(|b| !leaving(b)) {
            *load.entry(*b).or_default() += 1;
        }
    }
    let budget = input.max_moves_in_flight.saturating_sub(input.reassigning);
    let mut moves = BTreeMap::new();
    for p in on_leaving.into_iter().take(budget) {
        let mut target = p.replicas.clone();
        for slot in 0..target.len() {
            if !leaving(&target[slot]) {
                continue;
            }
            let Some(next) = (0..input.desired)
                .filter(|b| !target.contains(b))
                .min_by_key(|b| (load.get(b).copied().unwrap_or(0), *b))
            else {
                break;
            };
            *load.entry(next).or_default() += 1;
            target[slot] = next;
        }
        moves.insert((p.topic.clone(), p.partition), target);
    }
    if !moves.is_empty() {
        let n = moves.len();
        out.actions.push(Planned::new(
            ScaleDownAction::Reassign(moves),
            format!("moving {n} partitions off brokers {range} before the scale-down"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(list: &[(&str, i32, &[i32])]) -> Vec<Replicas> {
        list.iter()
            .map(|(t, p, r)| Replicas {
                topic: t.to_string(),
                partition: *p,
                replicas: r.to_vec(),
            })
            .collect()
    }

    fn run(
        current: i32,
        desired: i32,
        partitions: &[Replicas],
        reassigning: usize,
    ) -> ScaleDownPlan {
        plan(&ScaleDownInput {
            current,
            desired,
            voters: 3,
            partitions,
            reassigning,
            max_moves_in_flight: 2,
        })
    }

    #[test]
    fn partitions_in_flight_count_with_their_target_replicas() {
        // A move 3,4,0 → 0,1,2 in flight: Metadata lists all five.
        let p = parts(&[("a", 0, &[3, 4, 0, 1, 2]), ("a", 1, &[0, 1, 2])]);
        let removing = Removing::from([(("a".to_owned(), 0), vec![3, 4])]);
        let t = targets(p, &removing);
        assert_eq!(t, parts(&[("a", 0, &[0, 1, 2]), ("a", 1, &[0, 1, 2])]));
        // Neither refused for a replication factor of 5 nor moved again:
        // the scale-down waits for the move, then shrinks.
        let plan = run(5, 3, &t, 1);
        assert_eq!(plan.refusal, None);
        assert!(plan.actions.is_empty(), "{plan:?}");
        assert_eq!(
            run(5, 3, &t, 0).actions[0].action,
            ScaleDownAction::Shrink(3)
        );
    }

    #[test]
    fn nothing_when_not_shrinking() {
        assert_eq!(run(3, 3, &[], 0), ScaleDownPlan::default());
        assert_eq!(run(3, 5, &[], 0), ScaleDownPlan::default());
    }

    #[test]
    fn empty_leaving_brokers_shrink_at_once() {
        let p = parts(&[("a", 0, &[0, 1, 2])]);
        let plan = run(5, 3, &p, 0);
        assert_eq!(plan.actions[0].action, ScaleDownAction::Shrink(3));
        assert_eq!(
            plan.actions[0].reason,
            "brokers 3..4 hold no replicas: shrinking from 5 to 3 brokers"
        );
    }

    #[test]
    fn replicas_move_off_leaving_brokers_in_batches_without_duplicates() {
        let p = parts(&[
            ("a", 0, &[3, 0, 1]),
            ("a", 1, &[4, 3, 2]),
            ("b", 0, &[0, 4, 1]),
        ]);
        let plan = run(5, 3, &p, 0);
        let ScaleDownAction::Reassign(moves) = &plan.actions[0].action else {
            panic!("{plan:?}")
        };
        assert_eq!(moves.len(), 2, "max 2 in flight");
        assert_eq!(moves[&("a".to_owned(), 0)], vec![2, 0, 1]);
        let a1 = &moves[&("a".to_owned(), 1)];
        let mut sorted = a1.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2]);
        assert_eq!(
            plan.progress.as_deref(),
            Some("draining brokers 3..4: 4 replicas to move, 0 partitions moving")
        );
        // Moves still in flight: wait, never shrink.
        let done = parts(&[
            ("a", 0, &[2, 0, 1]),
            ("a", 1, &[0, 1, 2]),
            ("b", 0, &[0, 2, 1]),
        ]);
        let plan = run(5, 3, &done, 1);
        assert!(plan.actions.is_empty());
        assert!(plan.progress.is_some());
        let plan = run(5, 3, &done, 0);
        assert_eq!(plan.actions[0].action, ScaleDownAction::Shrink(3));
    }

    #[test]
    fn refuses_to_go_below_a_replication_factor_or_the_voters() {
        let p = parts(&[("orders", 7, &[0, 1, 2, 3])]);
        let plan = run(5, 3, &p, 0);
        assert!(plan.actions.is_empty());
        assert_eq!(
            plan.refusal.unwrap().message,
            "scale-down to 3 brokers is refused: orders-7 has replication factor 4"
        );
        let plan = run(3, 2, &[], 0);
        assert_eq!(
            plan.refusal.unwrap().message,
            "scale-down to 2 brokers is refused: brokers 0..2 are metadata-quorum voters"
        );
    }

    #[test]
    fn targets_never_use_leaving_brokers_or_repeat_one() {
        for current in 4..=7 {
            for desired in 3..current {
                let p: Vec<Replicas> = (0..10)
                    .map(|i| Replicas {
                        topic: "t".into(),
                        partition: i,
                        replicas: (0..3).map(|k| (i + k) % current).collect(),
                    })
                    .collect();
                let plan = plan(&ScaleDownInput {
                    current,
                    desired,
                    voters: 3,
                    partitions: &p,
                    reassigning: 0,
                    max_moves_in_flight: 100,
                });
                for a in &plan.actions {
                    if let ScaleDownAction::Reassign(moves) = &a.action {
                        for t in moves.values() {
                            assert!(t.iter().all(|b| *b < desired), "{t:?}");
                            let mut s = t.clone();
                            s.sort();
                            s.dedup();
                            assert_eq!(s.len(), t.len(), "{t:?}");
                        }
                    }
                }
            }
        }
    }
}
