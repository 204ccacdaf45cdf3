//! Restart safety and broker status, as the operator reads them from
//! `/v1/restart-safety` and `/v1/status`.
//!
//! Pure: the metadata image, this broker's id, the quorum voters and the
//! broker's `min.insync.replicas` default in; a verdict out.

use serde::Serialize;

use crate::config::BrokerConfig;
use crate::metadata::MetadataImage;
use crate::metadata::partition_change::partitions;

/// One partition that stopping the broker would hurt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocking {
    pub topic: String,
    pub partition: i32,
    pub reason: String,
}

/// Whether this broker may be stopped now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartSafety {
    pub node_id: i32,
    pub safe: bool,
    /// Partitions that would fall below `min.insync.replicas`.
    pub blocking: Vec<Blocking>,
    /// Why the metadata quorum would lose its majority, if it would.
    pub quorum: Option<String>,
    /// Partitions with a single replica here: unavailable while the broker is
    /// down, but no restart can ever avoid that, so they do not block.
    pub single_replica: usize,
}

/// Decides whether stopping `node` now would leave any partition below its
/// `min.insync.replicas` or the quorum without a majority.
pub fn restart_safety(
    image: &MetadataImage,
    node: i32,
    voters: &[i32],
    config: &BrokerConfig,
) -> RestartSafety {
    let mut blocking = Vec::new();
    let mut single_replica = 0;
    for (id, index, p) in partitions(image) {
        if !p.replicas.contains(&node) {
            continue;
        }
        if p.replicas.len() == 1 {
            single_replica += 1;
            continue;
        }
        let Some(topic) = image.topic_by_id(&id) else {
            continue;
        };
        let min_isr = topic.config.resolve(config).min_insync_replicas.max(1) as usize;
        let others: Vec<i32> = p
            .isr
            .iter()
            .copied()
            .filter(|&r| r != node && image.is_usable(r))
            .collect();
        let in_isr = p.isr.contains(&node);
        let reason = if in_isr && others.len() < min_isr {
            Some(format!(
                "in-sync replicas would drop to {others:?}, below min.insync.replicas={min_isr}"
            ))
        } else if !in_isr && others.is_empty() {
            Some("no other in-sync replica is available".to_owned())
        } else {
            None
        };
        if let Some(reason) = reason {
            blocking.push(Blocking {
                topic: topic.name.clone(),
                partition: index,
                reason,
            });
        }
    }
    let quorum = voters.contains(&node).then(|| {
        let alive = voters
            .iter()
            .filter(|&&v| v != node && image.is_usable(v))
            .count();
        let majority = voters.len() / 2 + 1;
        // With one or two voters every restart loses the majority; waiting
        // would not help, so it does not block (the restart is an outage).
        let avoidable = voters.len() > majority;
        (alive < majority && avoidable).then(|| {
            format!(
                "{alive} of {} metadata voters would remain; a majority needs {majority}",
                voters.len()
            )
        })
    });
    let quorum = quorum.flatten();
    RestartSafety {
        node_id: node,
        safe: blocking.is_empty() && quorum.is_none(),
        blocking,
        quorum,
        single_replica,
    }
}

/// What `/v1/status` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokerStatus {
    pub node_id: i32,
    pub cluster_id: String,
    /// starting, catching-up, running, draining or fenced.
    pub state: &'static str,
    pub active_controller: Option<i32>,
    pub partitions: usize,
    pub leaders: usize,
    /// Partitions this broker leads whose ISR is smaller than their replicas.
    pub under_replicated: usize,
    /// Partitions this broker leads whose ISR is below min.insync.replicas.
    pub under_min_isr: usize,
    /// Partitions anywhere in the cluster without a leader.
    pub offline: usize,
    /// Share of hosted partitions where this broker is in sync, in percent.
    pub caught_up_percent: f64,
}

/// The status of `node` as the image shows it; `ready` says whether it serves.
pub fn status(
    image: &MetadataImage,
    node: i32,
    ready: bool,
    active_controller: Option<i32>,
    config: &BrokerConfig,
) -> BrokerStatus {
    let mut hosted = 0;
    let mut leaders = 0;
    let mut under_replicated = 0;
    let mut under_min_isr = 0;
    let mut in_sync = 0;
    let mut offline = 0;
    for (id, _, p) in partitions(image) {
        if p.leader < 0 {
            offline += 1;
        }
        if !p.replicas.contains(&node) {
            continue;
        }
        hosted += 1;
        if p.isr.contains(&node) {
            in_sync += 1;
        }
        if p.leader == node {
            leaders += 1;
            if p.isr.len() < p.replicas.len() {
                under_replicated += 1;
            }
            let min_isr = image
                .topic_by_id(&id)
                .map_or(1, |t| t.config.resolve(config).min_insync_replicas)
                as usize;
            if p.isr.len() < min_isr {
                under_min_isr += 1;
            }
        }
    }
    let me = image.brokers.get(&node);
    let state = match me {
        _ if !ready => "starting",
        None => "starting",
        Some(b) if b.fenced => "fenced",
        Some(b) if b.draining => "draining",
        Some(_) if in_sync < hosted => "catching-up",
        Some(_) => "running",
    };
    BrokerStatus {
        node_id: node,
        cluster_id: image.cluster_id.clone(),
        state,
        active_controller,
        partitions: hosted,
        leaders,
        under_replicated,
        under_min_isr,
        offline,
        caught_up_percent: if hosted == 0 {
            100.0
        } else {
            (in_sync as f64 * 1000.0 / hosted as f64).round() / 10.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::partition_change::tests::image;

    fn config() -> BrokerConfig {
        let mut c = BrokerConfig::default();
        c.set("min.insync.replicas", "2").expect("valid");
        c
    }

    #[test]
    fn restart_safety_table() {
        // (replicas, isr, fenced, node, voters) -> safe, blocking count
        type Case = (
            &'static [i32],
            &'static [i32],
            &'static [i32],
            i32,
            &'static [i32],
            bool,
            usize,
        );
        let cases: &[Case] = &[
            (&[0, 1, 2], &[0, 1, 2], &[], 0, &[0, 1, 2], true, 0),
            (&[0, 1, 2], &[0, 1], &[], 0, &[0, 1, 2], false, 1),
            (&[0, 1, 2], &[0, 1], &[], 2, &[0, 1, 2], true, 0),
            (&[0, 1, 2], &[0, 1, 2], &[2], 0, &[0, 1, 2], false, 1),
            (&[0], &[0], &[], 0, &[0], true, 0),
            (&[0], &[0], &[], 0, &[], true, 0),
            (&[0, 1, 2], &[0, 1, 2], &[], 0, &[0, 1], true, 0),
            (&[0, 1, 2], &[0, 1, 2], &[2], 0, &[0, 1, 2], false, 1),
        ];
        for (i, &(replicas, isr, fenced, node, voters, safe, blocking)) in cases.iter().enumerate()
        {
            let mut img = image(3, replicas, replicas[0], isr);
            for f in fenced {
                img.brokers.get_mut(f).expect("broker").fenced = true;
            }
            let verdict = restart_safety(&img, node, voters, &config());
            assert_eq!(
                (verdict.safe, verdict.blocking.len()),
                (safe, blocking),
                "case {i}: {verdict:?}"
            );
        }
    }

    #[test]
    fn status_counts() {
        let img = image(3, &[0, 1, 2], 0, &[0, 1]);
        let s = status(&img, 0, true, Some(0), &config());
        assert_eq!(
            (s.partitions, s.leaders, s.under_replicated, s.state),
            (1, 1, 1, "running")
        );
        let s = status(&img, 2, true, Some(0), &config());
        assert_eq!((s.state, s.caught_up_percent), ("catching-up", 0.0));
        assert_eq!(status(&img, 2, false, None, &config()).state, "starting");
    }
}
