//! Rebalancing without Cruise Control: a placement planner that evens out
//! replicas (and their bytes) and preferred leaders across brokers while
//! moving as little as it can.
//!
//! Greedy and bounded: while the most loaded broker holds more than one
//! replica above the least loaded, move one replica from the former to the
//! latter — the smallest follower replica first (least data), never onto a
//! broker already holding the partition, and never into a rack the
//! partition already uses when another choice exists. Preferred leaders are
//! then evened out by reordering replica lists, which moves no data. Pure.

use std::collections::{BTreeMap, BTreeSet};

use super::Planned;
use super::scale_down::Moves;

/// A broker and its rack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Id.
    pub id: i32,
    /// Rack (`broker.rack`), if rack awareness is on.
    pub rack: Option<String>,
}

/// A partition's placement and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// Bytes of one replica.
    pub bytes: u64,
}

/// Replica sizes as one broker reports them: (topic, partition) → bytes.
pub type ReplicaSizes = BTreeMap<(String, i32), u64>;

/// The size of each partition: the largest any of its replicas reports (a
/// follower that lags or is still being filled holds less than the
/// partition has). Partitions no broker reported are absent.
pub fn partition_sizes<'a>(reports: impl IntoIterator<Item = &'a ReplicaSizes>) -> ReplicaSizes {
    let mut sizes = ReplicaSizes::new();
    for report in reports {
        for (key, bytes) in report {
            let size = sizes.entry(key.clone()).or_default();
            *size = (*size).max(*bytes);
        }
    }
    sizes
}

/// Everything the rebalance decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct RebalanceInput<'a> {
    /// Brokers that may hold replicas.
    pub brokers: &'a [Broker],
    /// Every partition.
    pub partitions: &'a [Placement],
    /// Act only when a broker is this many percent above the mean replica count.
    pub threshold_percent: u32,
    /// Most partitions changed in one plan.
    pub max_moves: usize,
}

/// Replicas per broker.
pub fn replica_counts(brokers: &[Broker], partitions: &[Placement]) -> BTreeMap<i32, usize> {
    let mut counts: BTreeMap<i32, usize> = brokers.iter().map(|b| (b.id, 0)).collect();
    for p in partitions {
        for r in &p.replicas {
            if let Some(c) = counts.get_mut(r) {
                *c += 1;
            }
        }
    }
    counts
}

/// Percent by which the most loaded broker exceeds the mean replica count.
pub fn imbalance_percent(counts: &BTreeMap<i32, usize>) -> u32 {
    let total: usize = counts.values().sum();
    if counts.is_empty() || total == 0 {
        return 0;
    }
    let max = counts.values().copied().max().unwrap_or(0);
    // (max - mean) / mean, in integers: (max * n - total) * 100 / total
    let n = counts.len();
    let excess = (max * n).saturating_sub(total) * 100 / total;
    u32::try_from(excess).unwrap_or(u32::MAX)
}

fn rack_of(brokers: &[Broker], id: i32) -> Option<&str> {
    brokers
        .iter()
        .find(|b| b.id == id)
        .and_then(|b| b.rack.as_deref())
}

/// The moves that even out the cluster, or nothing when it is within the threshold.
pub fn plan(input: &RebalanceInput<'_>) -> Option<Planned<Moves>> {
    let before = replica_counts(input.brokers, input.partitions);
    let before_pct = imbalance_percent(&before);
    if before_pct <= input.threshold_percent || input.brokers.len() < 2 {
        return None;
    }
    let mut placements: Vec<Placement> = input.partitions.to_vec();
    let mut counts = before.clone();
    let mut changed: BTreeSet<usize> = BTreeSet::new();
    while let (Some((&hot, &hot_n)), Some((&cold, &cold_n))) = (
        counts.iter().max_by_key(|(id, n)| (**n, -**id)),
        counts.iter().min_by_key(|(id, n)| (**n, **id)),
    ) {
        if hot_n <= cold_n + 1 {
            break;
        }
        let cold_rack = rack_of(input.brokers, cold);
        // Candidates on the hot broker that the cold one may take; followers
        // and small replicas first, rack-preserving ones before the rest.
        let candidate = placements
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                p.replicas.contains(&hot)
                    && !p.replicas.contains(&cold)
                    && (changed.contains(i) || changed.len() < input.max_moves)
            })
            .map(|(i, p)| {
                let others: Vec<Option<&str>> = p
                    .replicas
                    .iter()
                    .filter(|r| **r != hot)
                    .map(|r| rack_of(input.brokers, *r))
                    .collect();
                let rack_clash = cold_rack.is_some() && others.contains(&cold_rack);
                let is_leader = p.replicas.first() == Some(&hot);
                (rack_clash, is_leader, p.bytes, i)
            })
            .min();
        let Some((_, _, _, index)) = candidate else {
            break;
        };
        let p = &mut placements[index];
        if let Some(slot) = p.replicas.iter().position(|r| *r == hot) {
            p.replicas[slot] = cold;
        }
        changed.insert(index);
        *counts.entry(hot).or_default() -= 1;
        *counts.entry(cold).or_default() += 1;
    }
    balance_leaders(input, &mut placements, &mut changed);
    let moves: Moves = changed
        .iter()
        .map(|i| {
            let p = &placements[*i];
            ((p.topic.clone(), p.partition), p.replicas.clone())
        })
        .filter(|(key, target)| {
            input
                .partitions
                .iter()
                .find(|p| (&p.topic, p.partition) == (&key.0, key.1))
                .is_some_and(|p| &p.replicas != target)
        })
        .collect();
    if moves.is_empty() {
        return None;
    }
    let after_pct = imbalance_percent(&counts);
    Some(Planned::new(
        moves,
        format!(
            "rebalancing: the most loaded broker is {before_pct}% above the mean (threshold {}%); after these moves {after_pct}%",
            input.threshold_percent
        ),
    ))
}

/// Evens out preferred leaders by reordering replica lists (no data moves).
fn balance_leaders(
    input: &RebalanceInput<'_>,
    placements: &mut [Placement],
    changed: &mut BTreeSet<usize>,
) {
    let mut leaders: BTreeMap<i32, usize> = input.brokers.iter().map(|b| (b.id, 0)).collect();
    for p in placements.iter() {
        if let Some(l) = p.replicas.first().and_then(|l| leaders.get_mut(l)) {
            *l += 1;
        }
    }
    for (i, p) in placements.iter_mut().enumerate() {
        if !changed.contains(&i) && changed.len() >= input.max_moves {
            continue;
        }
        let Some(&leader) = p.replicas.first() else {
            continue;
        };
        let leader_n = leaders.get(&leader).copied().unwrap_or(0);
        let best = p
            .replicas
            .iter()
            .enumerate()
            .skip(1)
            .min_by_key(|(_, r)| (leaders.get(r).copied().unwrap_or(usize::MAX), **r))
            .map(|(slot, r)| (slot, *r));
        if let Some((slot, to)) = best {
            let to_n = leaders.get(&to).copied().unwrap_or(usize::MAX);
            if leader_n > to_n + 1 {
                p.replicas.swap(0, slot);
                *leaders.entry(leader).or_default() -= 1;
                *leaders.entry(to).or_default() += 1;
                changed.insert(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(n: i32, racks: usize) -> Vec<Broker> {
        (0..n)
            .map(|id| Broker {
                id,
                rack: (racks > 0).then(|| format!("r{}", id as usize % racks)),
            })
            .collect()
    }

    fn input<'a>(
        brokers: &'a [Broker],
        partitions: &'a [Placement],
        threshold_percent: u32,
        max_moves: usize,
    ) -> RebalanceInput<'a> {
        RebalanceInput {
            brokers,
            partitions,
            threshold_percent,
            max_moves,
        }
    }

    fn placement(p: i32, replicas: &[i32]) -> Placement {
        Placement {
            topic: "t".into(),
            partition: p,
            replicas: replicas.to_vec(),
            bytes: 100,
        }
    }

    fn apply(partitions: &[Placement], moves: &Moves) -> Vec<Placement> {
        partitions
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if let Some(t) = moves.get(&(p.topic.clone(), p.partition)) {
                    p.replicas = t.clone();
                }
                p
            })
            .collect()
    }

    #[test]
    fn a_balanced_cluster_is_left_alone() {
        let b = brokers(3, 0);
        let p = vec![
            placement(0, &[0, 1]),
            placement(1, &[1, 2]),
            placement(2, &[2, 0]),
        ];
        let input = input(&b, &p, 10, 10);
        assert_eq!(plan(&input), None);
    }

    #[test]
    fn new_brokers_receive_replicas_with_few_moves() {
        // Three brokers hold everything; two new ones are empty (a scale-up).
        let b = brokers(5, 0);
        let p: Vec<Placement> = (0..6)
            .map(|i| placement(i, &[i % 3, (i + 1) % 3, (i + 2) % 3]))
            .collect();
        let input = input(&b, &p, 10, 100);
        let planned = plan(&input).unwrap();
        let after = replica_counts(&b, &apply(&p, &planned.action));
        let (min, max) = (after.values().min().unwrap(), after.values().max().unwrap());
        assert!(max - min <= 1, "{after:?}");
        assert!(after[&3] >= 3 && after[&4] >= 3, "{after:?}");
        assert!(
            planned
                .reason
                .starts_with("rebalancing: the most loaded broker is 66% above the mean"),
            "{}",
            planned.reason
        );
    }

    #[test]
    fn moves_avoid_putting_two_replicas_in_one_rack() {
        // Racks: r0 = {0, 2}, r1 = {1, 3}. Broker 3 is empty.
        let b = brokers(4, 2);
        let p = vec![
            placement(0, &[0, 1]),
            placement(1, &[2, 1]),
            placement(2, &[0, 1]),
            placement(3, &[2, 1]),
        ];
        let input = input(&b, &p, 10, 10);
        let planned = plan(&input).unwrap();
        for p in apply(&p, &planned.action) {
            let racks: BTreeSet<_> = p.replicas.iter().map(|r| rack_of(&b, *r)).collect();
            assert_eq!(racks.len(), p.replicas.len(), "{p:?}");
        }
    }

    #[test]
    fn the_smallest_follower_replicas_move_and_the_large_ones_stay() {
        // Brokers 0 and 1 hold every replica, broker 2 none. Two partitions
        // are large; the small ones are moved.
        let b = brokers(3, 0);
        let sized = |p: i32, replicas: &[i32], bytes: u64| Placement {
            bytes,
            ..placement(p, replicas)
        };
        let p = vec![
            sized(0, &[0, 1], 5 << 30),
            sized(1, &[0, 1], 1 << 10),
            sized(2, &[1, 0], 2 << 10),
            sized(3, &[1, 0], 3 << 30),
        ];
        let input = input(&b, &p, 10, 10);
        let planned = plan(&input).unwrap();
        let moved: BTreeSet<i32> = planned.action.keys().map(|(_, p)| *p).collect();
        assert_eq!(moved, BTreeSet::from([1, 2]), "{:?}", planned.action);
        for target in planned.action.values() {
            assert!(target.contains(&2), "{:?}", planned.action);
        }
        // The same cluster with the sizes swapped moves the other two.
        let swapped: Vec<Placement> = p
            .iter()
            .map(|q| Placement {
                bytes: if q.bytes > 1 << 20 { 1 << 10 } else { 5 << 30 },
                ..q.clone()
            })
            .collect();
        let planned = plan(&RebalanceInput {
            partitions: &swapped,
            ..input
        })
        .unwrap();
        let moved: BTreeSet<i32> = planned.action.keys().map(|(_, p)| *p).collect();
        assert_eq!(moved, BTreeSet::from([0, 3]), "{:?}", planned.action);
    }

    #[test]
    fn a_partition_is_as_large_as_its_largest_replica() {
        let report = |entries: &[(&str, i32, u64)]| -> ReplicaSizes {
            entries
                .iter()
                .map(|(t, p, b)| ((t.to_string(), *p), *b))
                .collect()
        };
        // Broker 0 leads a-0 and follows b-0; broker 1 follows a-0 (lagging)
        // and leads b-0; broker 2 (a new follower of a-0) is half filled.
        let reports = [
            report(&[("a", 0, 900), ("b", 0, 40)]),
            report(&[("a", 0, 700), ("b", 0, 50), ("a", 1, 10)]),
            report(&[("a", 0, 450)]),
        ];
        assert_eq!(
            partition_sizes(&reports),
            report(&[("a", 0, 900), ("a", 1, 10), ("b", 0, 50)])
        );
        assert!(partition_sizes(&[]).is_empty());
    }

    proptest! {
        #[test]
        fn targets_stay_valid_and_never_worse(
            n in 2i32..7,
            rf in 1usize..4,
            partitions in 1i32..30,
            skew in 0i32..7,
            max_moves in 1usize..50,
        ) {
            let rf = rf.min(n as usize);
            let b = brokers(n, 0);
            let p: Vec<Placement> = (0..partitions)
                .map(|i| placement(i, &(0..rf as i32).map(|k| (i * skew.max(1) % n + k) % n).collect::<Vec<_>>()))
                .collect();
            let input = input(&b, &p, 0, max_moves);
            if let Some(planned) = plan(&input) {
                prop_assert!(planned.action.len() <= max_moves);
                let after = apply(&p, &planned.action);
                for q in &after {
                    let set: BTreeSet<_> = q.replicas.iter().collect();
                    prop_assert_eq!(set.len(), rf);
                    prop_assert!(q.replicas.iter().all(|r| *r >= 0 && *r < n));
                }
                let spread = |c: &BTreeMap<i32, usize>| c.values().max().unwrap() - c.values().min().unwrap();
                prop_assert!(spread(&replica_counts(&b, &after)) <= spread(&replica_counts(&b, &p)));
            }
        }
    }
}
