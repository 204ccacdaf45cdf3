//! Replica placement for new topics and partitions: rack-aware, leaders spread
//! evenly, followers staggered so one broker's loss spreads its load.
//!
//! Pure: no I/O, no clocks, no randomness (the caller passes the start index).

/// A broker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node_id: i32,
    pub rack: Option<String>,
}

/// Orders brokers so that consecutive entries alternate racks
/// (r1-a, r2-a, r3-a, r1-b, …), which makes round-robin rack-aware.
fn rack_alternating(brokers: &[Candidate]) -> Vec<Candidate> {
    let mut racks: Vec<(Option<String>, Vec<Candidate>)> = Vec::new();
    let mut sorted = brokers.to_vec();
    sorted.sort_by_key(|b| b.node_id);
    for b in sorted {
        match racks.iter_mut().find(|(r, _)| *r == b.rack) {
            Some((_, list)) => list.push(b),
            None => racks.push((b.rack.clone(), vec![b])),
        }
    }
    racks.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(brokers.len());
    let depth = racks.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
    for i in 0..depth {
        for (_, list) in &racks {
            if let Some(b) = list.get(i) {
                out.push(b.clone());
            }
        }
    }
    out
}

/// Replica lists for `count` partitions with `replication_factor` replicas each,
/// numbered from `first_partition`. `start` rotates the first leader (pass e.g.
/// the number of existing partitions in the cluster) so topics do not all start
/// on the same broker. Returns `None` if there are fewer brokers than replicas.
pub fn assign(
    brokers: &[Candidate],
    count: i32,
    replication_factor: i32,
    first_partition: i32,
    start: usize,
) -> Option<Vec<Vec<i32>>> {
    let order = rack_alternating(brokers);
    let n = order.len();
    let rf = usize::try_from(replication_factor).ok()?;
    if rf == 0 || rf > n {
        return None;
    }
    let mut out = Vec::new();
    for p in 0..count.max(0) as usize {
        let index = first_partition as usize + p;
        let leader = (start + index) % n;
        // Followers start a shift away that changes every n partitions, so the
        // replicas of one broker's partitions land on different brokers.
        let shift = 1 + (index / n) % (n - 1).max(1);
        let rotated: Vec<&Candidate> = (0..n).map(|k| &order[(leader + shift + k) % n]).collect();
        let mut replicas = vec![&order[leader]];
        // First pass: brokers in racks not used yet; second: anyone left.
        for new_rack_only in [true, false] {
            for &c in &rotated {
                if replicas.len() == rf {
                    break;
                }
                let taken = replicas.iter().any(|r| r.node_id == c.node_id);
                let rack_used = replicas.iter().any(|r| r.rack == c.rack);
                if !(taken || new_rack_only && rack_used) {
                    replicas.push(c);
                }
            }
        }
        out.push(replicas.into_iter().map(|b| b.node_id).collect());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(racks: &[&str]) -> Vec<Candidate> {
        racks
            .iter()
            .enumerate()
            .map(|(i, r)| Candidate {
                node_id: i as i32,
                rack: (!r.is_empty()).then(|| r.to_string()),
            })
            .collect()
    }

    #[test]
    fn single_broker_gets_everything() {
        assert_eq!(
            assign(&brokers(&[""]), 3, 1, 0, 0),
            Some(vec![vec![0], vec![0], vec![0]])
        );
        assert_eq!(assign(&brokers(&[""]), 1, 2, 0, 0), None);
    }

    #[test]
    fn leaders_spread_evenly() {
        let plan = assign(&brokers(&["", "", ""]), 6, 3, 0, 0).expect("plan");
        let mut leaders = [0; 3];
        for r in &plan {
            leaders[r[0] as usize] += 1;
        }
        assert_eq!(leaders, [2, 2, 2]);
    }

    proptest! {
        #[test]
        fn replicas_distinct_and_racks_distinct_when_possible(
            racks in prop::collection::vec(0u8..4, 1..9),
            rf in 1i32..5,
            count in 1i32..40,
            start in 0usize..100,
        ) {
            let names: Vec<String> = racks.iter().map(|r| format!("r{r}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let bs = brokers(&refs);
            let plan = assign(&bs, count, rf, 0, start);
            if rf as usize > bs.len() {
                prop_assert!(plan.is_none());
                return Ok(());
            }
            let plan = plan.expect("plan");
            prop_assert_eq!(plan.len(), count as usize);
            let distinct_racks = { let mut r = racks.clone(); r.sort(); r.dedup(); r.len() };
            for replicas in &plan {
                prop_assert_eq!(replicas.len(), rf as usize);
                let mut ids = replicas.clone(); ids.sort(); ids.dedup();
                prop_assert_eq!(ids.len(), rf as usize, "duplicate broker in {:?}", replicas);
                let mut rs: Vec<u8> = replicas.iter().map(|&id| racks[id as usize]).collect(); rs.sort(); rs.dedup();
                prop_assert_eq!(rs.len(), (rf as usize).min(distinct_racks), "racks not spread: {:?}", replicas);
            }
        }
    }
}
