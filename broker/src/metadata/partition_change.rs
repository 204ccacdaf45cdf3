//! Partition changes: leader election and the records that move a partition
//! from one (replicas, leader, ISR) state to the next with the right epochs.
//!
//! Pure: image in, records out. Rules (Kafka's):
//! - the leader epoch bumps whenever the leader or the replica set changes;
//!   the partition epoch bumps on every change;
//! - a leader is chosen in replica order among ISR members that are usable
//!   (registered, unfenced, not shutting down), preferring brokers that are not
//!   draining; with `unclean.leader.election.enable` and no such member, any
//!   usable replica may lead and becomes the whole ISR;
//! - the ISR never becomes empty by fencing: the last member stays, and the
//!   partition is offline (`NO_LEADER`) until it comes back.

use uuid::Uuid;

use super::image::{MetadataImage, NO_LEADER, PartitionImage};
use super::records::MetadataRecord;
use crate::config::BrokerConfig;

/// The record turning `old` into `new`, with epochs bumped as Kafka does; `None`
/// when nothing changes.
pub fn change_record(
    topic_id: Uuid,
    partition: i32,
    old: &PartitionImage,
    mut new: PartitionImage,
) -> Option<MetadataRecord> {
    let same = |a: &PartitionImage, b: &PartitionImage| {
        a.replicas == b.replicas
            && a.leader == b.leader
            && a.isr == b.isr
            && a.adding == b.adding
            && a.removing == b.removing
    };
    if same(old, &new) {
        return None;
    }
    new.partition_epoch = old.partition_epoch + 1;
    new.leader_epoch = if new.leader != old.leader || new.replicas != old.replicas {
        old.leader_epoch + 1
    } else {
        old.leader_epoch
    };
    Some(MetadataRecord::PartitionChanged {
        topic_id,
        partition,
        replicas: new.replicas,
        leader: new.leader,
        isr: new.isr,
        leader_epoch: new.leader_epoch,
        partition_epoch: new.partition_epoch,
        adding: new.adding,
        removing: new.removing,
    })
}

/// The broker that should lead `p` among its ISR, or, with `unclean`, among
/// any usable replica (which then is the whole ISR). `exclude` may not lead
/// (a broker handing leadership away).
pub fn elect(
    image: &MetadataImage,
    p: &PartitionImage,
    unclean: bool,
    exclude: Option<i32>,
) -> Option<(i32, Vec<i32>)> {
    let allowed = |r: &i32| Some(*r) != exclude && image.is_usable(*r);
    let draining = |r: &i32| image.brokers.get(r).is_some_and(|b| b.draining);
    let in_isr: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|r| p.isr.contains(r) && allowed(r))
        .collect();
    if let Some(&leader) = in_isr
        .iter()
        .find(|r| !draining(r))
        .or_else(|| in_isr.first())
    {
        return Some((leader, p.isr.clone()));
    }
    if unclean {
        let target = p.target_replicas();
        return target
            .iter()
            .copied()
            .find(allowed)
            .map(|leader| (leader, vec![leader]));
    }
    None
}

const UNCLEAN: &str = "unclean.leader.election.enable";

/// Whether the topic allows unclean leader election: its own override, else
/// the cluster-wide dynamic default, else the active controller's start-up
/// config (`statics`), as in Kafka.
pub fn unclean_allowed(image: &MetadataImage, statics: &BrokerConfig, topic_id: &Uuid) -> bool {
    let Some(topic) = image.topic_by_id(topic_id) else {
        return false;
    };
    match topic
        .config
        .overrides()
        .get(UNCLEAN)
        .or_else(|| image.broker_configs.cluster.overrides().get(UNCLEAN))
    {
        Some(v) => v == "true",
        None => statics.flag(UNCLEAN),
    }
}

/// `p` with `node` out of its ISR (kept if it is the last member) and, if it
/// led, a new leader elected (or none). `node` no longer leads either way.
pub fn without_broker(
    image: &MetadataImage,
    statics: &BrokerConfig,
    topic_id: &Uuid,
    p: &PartitionImage,
    node: i32,
) -> PartitionImage {
    let mut next = p.clone();
    if p.isr.contains(&node) && p.isr.len() > 1 {
        next.isr.retain(|&r| r != node);
    }
    if p.leader == node || (p.leader == NO_LEADER && p.isr.contains(&node)) {
        match elect(
            image,
            &next,
            unclean_allowed(image, statics, topic_id),
            Some(node),
        ) {
            Some((leader, isr)) => {
                next.leader = leader;
                next.isr = isr;
            }
            None => next.leader = NO_LEADER,
        }
    }
    next
}

/// Every partition of the image, with its topic id.
pub fn partitions(image: &MetadataImage) -> impl Iterator<Item = (Uuid, i32, &PartitionImage)> {
    image
        .topics
        .values()
        .flat_map(|t| t.partitions.iter().map(move |(&i, p)| (t.id, i, p)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metadata::image::BrokerInfo;

    /// An image with brokers `0..n` (all usable) and one topic "t" whose
    /// partition 0 has `replicas`, `leader` and `isr`.
    pub(crate) fn image(n: i32, replicas: &[i32], leader: i32, isr: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 0..n {
            image.brokers.insert(
                id,
                BrokerInfo {
                    node_id: id,
                    host: "127.0.0.1".into(),
                    port: 9092,
                    rack: None,
                    incarnation: Uuid::nil(),
                    epoch: 0,
                    controller: None,
                    fenced: false,
                    crashed: false,
                    shutting_down: false,
                    draining: false,
                },
            );
        }
        let id = Uuid::from_u128(1);
        image.apply(&MetadataRecord::TopicCreated {
            name: "t".into(),
            topic_id: id,
            config: Default::default(),
        });
        image.apply(&MetadataRecord::PartitionCreated {
            topic_id: id,
            partition: 0,
            replicas: replicas.to_vec(),
            leader,
            isr: isr.to_vec(),
        });
        image
    }

    pub(crate) fn p0(image: &MetadataImage) -> &PartitionImage {
        image
            .partition(&Uuid::from_u128(1), 0)
            .expect("partition 0")
    }

    #[test]
    fn election_table() {
        // (fenced, draining, replicas, isr, unclean, exclude) -> leader, isr
        type Case = (
            &'static [i32],
            &'static [i32],
            &'static [i32],
            &'static [i32],
            bool,
            Option<i32>,
            Option<(i32, &'static [i32])>,
        );
        let cases: &[Case] = &[
            (
                &[],
                &[],
                &[0, 1, 2],
                &[0, 1, 2],
                false,
                None,
                Some((0, &[0, 1, 2])),
            ),
            (
                &[0],
                &[],
                &[0, 1, 2],
                &[0, 1, 2],
                false,
                None,
                Some((1, &[0, 1, 2])),
            ),
            (
                &[],
                &[],
                &[0, 1, 2],
                &[2, 1],
                false,
                None,
                Some((1, &[2, 1])),
            ),
            (
                &[],
                &[0],
                &[0, 1, 2],
                &[0, 1, 2],
                false,
                None,
                Some((1, &[0, 1, 2])),
            ),
            (
                &[],
                &[0, 1, 2],
                &[0, 1, 2],
                &[0, 1, 2],
                false,
                None,
                Some((0, &[0, 1, 2])),
            ),
            (
                &[],
                &[],
                &[0, 1, 2],
                &[0, 1, 2],
                false,
                Some(0),
                Some((1, &[0, 1, 2])),
            ),
            (&[1, 2], &[], &[0, 1, 2], &[1, 2], false, None, None),
            (
                &[1, 2],
                &[],
                &[0, 1, 2],
                &[1, 2],
                true,
                None,
                Some((0, &[0])),
            ),
            (&[0, 1, 2], &[], &[0, 1, 2], &[0], true, None, None),
        ];
        for (i, &(fenced, draining, replicas, isr, unclean, exclude, want)) in
            cases.iter().enumerate()
        {
            let mut img = image(3, replicas, replicas[0], isr);
            for f in fenced {
                img.brokers.get_mut(f).expect("broker").fenced = true;
            }
            for d in draining {
                img.brokers.get_mut(d).expect("broker").draining = true;
            }
            let got = elect(&img, p0(&img), unclean, exclude);
            let want = want.map(|(l, isr)| (l, isr.to_vec()));
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn unclean_election_is_the_topic_setting_else_the_cluster_default_else_static() {
        const KEY: &str = "unclean.leader.election.enable";
        // (topic override, cluster-wide dynamic default, controller's static) -> allowed
        let cases = [
            (None, None, None, false),
            (None, None, Some("true"), true),
            (None, Some("true"), None, true),
            (None, Some("false"), Some("true"), false),
            (Some("true"), Some("false"), Some("false"), true),
            (Some("false"), Some("true"), Some("true"), false),
        ];
        let id = Uuid::from_u128(1);
        for (i, (topic, cluster, statics, want)) in cases.into_iter().enumerate() {
            let mut img = image(3, &[0, 1, 2], 0, &[0]);
            if let Some(v) = topic {
                let mut config = crate::config::TopicConfig::default();
                config.set(KEY, v).expect("topic key");
                img.apply(&MetadataRecord::TopicConfigChanged {
                    topic_id: id,
                    config,
                });
            }
            if let Some(v) = cluster {
                let mut config = crate::config::DynamicBrokerConfig::default();
                config.set(KEY, v).expect("dynamic key");
                img.apply(&MetadataRecord::BrokerConfigChanged {
                    node_id: None,
                    config,
                });
            }
            let statics = BrokerConfig::from_pairs(statics.map(|v| (KEY, v))).expect("valid");
            assert_eq!(unclean_allowed(&img, &statics, &id), want, "case {i}");
            // And it decides what fencing the last in-sync replica does.
            let next = without_broker(&img, &statics, &id, p0(&img), 0);
            let want_leader = if want { 1 } else { NO_LEADER };
            assert_eq!(next.leader, want_leader, "case {i}");
        }
        // A broker's own dynamic settings do not change the cluster's policy.
        let mut img = image(3, &[0, 1, 2], 0, &[0]);
        let mut config = crate::config::DynamicBrokerConfig::default();
        config.set(KEY, "true").expect("dynamic key");
        img.apply(&MetadataRecord::BrokerConfigChanged {
            node_id: Some(0),
            config: config.clone(),
        });
        assert!(!unclean_allowed(&img, &BrokerConfig::default(), &id));
        assert_eq!(img.broker_configs.of(Some(0)), Some(&config));
        // Emptied, a broker's layer is gone from the image.
        img.apply(&MetadataRecord::BrokerConfigChanged {
            node_id: Some(0),
            config: Default::default(),
        });
        assert_eq!(img.broker_configs.of(Some(0)), None);
    }

    #[test]
    fn epochs_bump_on_leader_or_replica_change_only() {
        let img = image(3, &[0, 1, 2], 0, &[0, 1, 2]);
        let old = p0(&img).clone();
        assert_eq!(change_record(Uuid::nil(), 0, &old, old.clone()), None);
        let epochs = |r: Option<MetadataRecord>| match r {
            Some(MetadataRecord::PartitionChanged {
                leader_epoch,
                partition_epoch,
                ..
            }) => (leader_epoch, partition_epoch),
            other => panic!("unexpected {other:?}"),
        };
        let mut shrink = old.clone();
        shrink.isr = vec![0, 1];
        assert_eq!(epochs(change_record(Uuid::nil(), 0, &old, shrink)), (0, 1));
        let mut lead = old.clone();
        lead.leader = 1;
        assert_eq!(epochs(change_record(Uuid::nil(), 0, &old, lead)), (1, 1));
        let mut moved = old.clone();
        moved.replicas = vec![0, 1];
        assert_eq!(epochs(change_record(Uuid::nil(), 0, &old, moved)), (1, 1));
    }

    #[test]
    fn removing_a_broker_keeps_the_last_isr_member() {
        let img = image(3, &[0, 1, 2], 0, &[0, 1, 2]);
        let id = Uuid::from_u128(1);
        let next = without_broker(&img, &BrokerConfig::default(), &id, p0(&img), 0);
        assert_eq!((next.leader, next.isr.clone()), (1, vec![1, 2]));
        let img = image(3, &[0], 0, &[0]);
        let next = without_broker(&img, &BrokerConfig::default(), &id, p0(&img), 0);
        assert_eq!((next.leader, next.isr), (NO_LEADER, vec![0]));
        // A follower leaving does not touch the leader.
        let img = image(3, &[0, 1, 2], 0, &[0, 1, 2]);
        let next = without_broker(&img, &BrokerConfig::default(), &id, p0(&img), 2);
        assert_eq!((next.leader, next.isr), (0, vec![0, 1]));
    }
}
