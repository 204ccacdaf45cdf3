//! Failure recovery: a broker that has not been Ready for longer than
//! `failureRecovery.replaceAfter` has its replicas re-created on healthy
//! brokers, so every partition gets back to its replication factor. A
//! shorter outage is left to Kubernetes (restart) and the brokers (ISR,
//! leader election). Pure: the time is an input.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::Planned;
use super::scale_down::{Moves, Replicas};

/// A broker's readiness over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerHealth {
    /// Broker id.
    pub id: i32,
    /// Not Ready since this time (`None`: Ready).
    pub not_ready_since: Option<Timestamp>,
}

/// Everything the recovery decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryInput<'a> {
    /// Every broker of the cluster.
    pub brokers: &'a [BrokerHealth],
    /// Grace period before replicas are replaced.
    pub replace_after: Duration,
    /// Now.
    pub now: Timestamp,
    /// Every partition.
    pub partitions: &'a [Replicas],
    /// Partitions being reassigned.
    pub reassigning: usize,
    /// Most moves in flight.
    pub max_moves_in_flight: usize,
}

/// Brokers down for longer than the grace period.
pub fn gone(input: &RecoveryInput<'_>) -> Vec<i32> {
    input
        .brokers
        .iter()
        .filter(|b| {
            b.not_ready_since.is_some_and(|since| {
                input.now.duration_since(since).as_secs_f64() > input.replace_after.as_secs_f64()
            })
        })
        .map(|b| b.id)
        .collect()
}

/// The reassignments that restore the replication factor, or nothing.
pub fn plan(input: &RecoveryInput<'_>) -> Option<Planned<Moves>> {
    let gone = gone(input);
    if gone.is_empty() {
        return None;
    }
    let healthy: Vec<i32> = input
        .brokers
        .iter()
        .filter(|b| b.not_ready_since.is_none())
        .map(|b| b.id)
        .collect();
    let mut load: BTreeMap<i32, usize> = healthy.iter().map(|b| (*b, 0)).collect();
    for p in input.partitions {
        for b in &p.replicas {
            if let Some(l) = load.get_mut(b) {
                *l += 1;
            }
        }
    }
    let budget = input.max_moves_in_flight.saturating_sub(input.reassigning);
    let mut moves = BTreeMap::new();
    let mut stuck = 0;
    for p in input
        .partitions
        .iter()
        .filter(|p| p.replicas.iter().any(|b| gone.contains(b)))
    {
        if moves.len() >= budget {
            break;
        }
        let mut target = p.replicas.clone();
        let mut complete = true;
        for slot in 0..target.len() {
            if !gone.contains(&target[slot]) {
                continue;
            }
            let next = healthy
                .iter()
                .filter(|b| !target.contains(b))
                .min_by_key(|b| (load.get(b).copied().unwrap_or(0), **b))
                .copied();
            match next {
                Some(b) => {
                    *load.entry(b).or_default() += 1;
                    target[slot] = b;
                }
                None => complete = false,
            }
        }
        if complete {
            moves.insert((p.topic.clone(), p.partition), target);
        } else {
            stuck += 1;
        }
    }
    if moves.is_empty() {
        return None;
    }
    let ids: Vec<String> = gone.iter().map(i32::to_string).collect();
    let mut reason = format!(
        "broker(s) {} not Ready for longer than replaceAfter ({}s): re-creating {} partitions' replicas on healthy brokers",
        ids.join(", "),
        input.replace_after.as_secs(),
        moves.len()
    );
    if stuck > 0 {
        reason.push_str(&format!(
            "; {stuck} partitions cannot be restored: too few healthy brokers"
        ));
    }
    Some(Planned::new(moves, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn health(down: &[(i32, i64)], n: i32) -> Vec<BrokerHealth> {
        (0..n)
            .map(|id| BrokerHealth {
                id,
                not_ready_since: down.iter().find(|(d, _)| *d == id).map(|(_, s)| at(*s)),
            })
            .collect()
    }

    fn parts(list: &[&[i32]]) -> Vec<Replicas> {
        list.iter()
            .enumerate()
            .map(|(i, r)| Replicas {
                topic: "t".into(),
                partition: i as i32,
                replicas: r.to_vec(),
            })
            .collect()
    }

    fn run(brokers: &[BrokerHealth], now: i64, p: &[Replicas]) -> Option<Planned<Moves>> {
        plan(&RecoveryInput {
            brokers,
            replace_after: Duration::from_secs(600),
            now: at(now),
            partitions: p,
            reassigning: 0,
            max_moves_in_flight: 10,
        })
    }

    #[test]
    fn a_short_outage_is_left_alone() {
        let b = health(&[(1, 0)], 4);
        assert_eq!(run(&b, 600, &parts(&[&[1, 0, 2]])), None);
    }

    #[test]
    fn a_long_outage_moves_replicas_to_healthy_brokers() {
        let b = health(&[(1, 0)], 4);
        let p = parts(&[&[1, 0, 2], &[0, 2, 3]]);
        let planned = run(&b, 601, &p).unwrap();
        assert_eq!(
            planned.action,
            BTreeMap::from([(("t".to_owned(), 0), vec![3, 0, 2])])
        );
        assert!(
            planned
                .reason
                .starts_with("broker(s) 1 not Ready for longer than replaceAfter (600s)"),
            "{}",
            planned.reason
        );
    }

    #[test]
    fn nothing_to_move_when_no_healthy_broker_is_free() {
        let b = health(&[(2, 0)], 3);
        assert_eq!(run(&b, 700, &parts(&[&[0, 1, 2]])), None);
    }

    #[test]
    fn targets_never_hold_a_gone_broker_or_a_duplicate() {
        let b = health(&[(0, 0), (3, 0)], 6);
        let p: Vec<Replicas> = parts(&[&[0, 1, 2], &[3, 4, 5], &[0, 3, 1], &[2, 4, 0]]);
        let planned = run(&b, 1000, &p).unwrap();
        assert_eq!(planned.action.len(), 4);
        for t in planned.action.values() {
            assert!(!t.contains(&0) && !t.contains(&3), "{t:?}");
            let mut s = t.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3);
        }
    }
}
