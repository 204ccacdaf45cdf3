//! Broker lifecycle decisions of the active controller: registration, fencing
//! (missed session or a reset connection), unfencing on heartbeat, controlled
//! shutdown, drain (maintenance mode) and preferred-leader elections.
//!
//! Pure: image + event in, records out. The runtime (`active`) decides *when*
//! (sessions, clocks); this module decides *what changes*.

use uuid::Uuid;

use super::image::{MetadataImage, NO_LEADER};
use super::partition_change::{change_record, elect, partitions, unclean_allowed, without_broker};
use super::records::MetadataRecord;
use crate::config::BrokerConfig;

/// What a broker announces when it (re)registers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    /// The cluster the broker's data directory belongs to.
    #[serde(default)]
    pub cluster_id: String,
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub incarnation: Uuid,
    pub controller: Option<String>,
}

fn after(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
    let mut next = image.clone();
    for r in records {
        next.apply(r);
    }
    next
}

/// Partition changes taking `node` out of every ISR and leadership.
fn leave_partitions(
    image: &MetadataImage,
    statics: &BrokerConfig,
    node: i32,
) -> Vec<MetadataRecord> {
    partitions(image)
        .filter(|(_, _, p)| p.leader == node || p.isr.contains(&node))
        .filter_map(|(id, i, p)| {
            change_record(id, i, p, without_broker(image, statics, &id, p, node))
        })
        .collect()
}

/// Records for a (re)registration. A broker that registers again while
/// unfenced restarted faster than its session: it is fenced first. One that
/// comes back with another incarnation lost its disk: it leaves every ISR,
/// even as the last member (its data is gone; only an unclean election may
/// then bring the partition back).
pub fn register(
    image: &MetadataImage,
    statics: &BrokerConfig,
    reg: &Registration,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    if let Some(old) = image.brokers.get(&reg.node_id) {
        if old.incarnation != reg.incarnation {
            for (id, i, p) in partitions(image) {
                if !p.isr.contains(&reg.node_id) && p.leader != reg.node_id {
                    continue;
                }
                let mut next = without_broker(image, statics, &id, p, reg.node_id);
                next.isr.retain(|&r| r != reg.node_id);
                if next.leader == reg.node_id || next.isr.is_empty() {
                    next.leader = NO_LEADER;
                }
                records.extend(change_record(id, i, p, next));
            }
        } else if !old.fenced {
            records.extend(leave_partitions(image, statics, reg.node_id));
        }
    }
    records.push(MetadataRecord::BrokerRegistered {
        node_id: reg.node_id,
        host: reg.host.clone(),
        port: reg.port,
        rack: reg.rack.clone(),
        incarnation: reg.incarnation,
        controller: reg.controller.clone(),
    });
    records
}

/// Records that fence `node` (no-op if it is unknown or already fenced);
/// `crashed`: its connection reset (the process is gone), rather than silence.
pub fn fence(
    image: &MetadataImage,
    statics: &BrokerConfig,
    node: i32,
    crashed: bool,
) -> Vec<MetadataRecord> {
    match image.brokers.get(&node) {
        Some(b) if !b.fenced => {
            let mut records = leave_partitions(image, statics, node);
            records.push(MetadataRecord::BrokerFenced {
                node_id: node,
                crashed,
            });
            records
        }
        _ => Vec::new(),
    }
}

/// Records that unfence `node` and give it back the offline partitions it can
/// lead (it is their last ISR member, or unclean election allows it).
pub fn unfence(image: &MetadataImage, statics: &BrokerConfig, node: i32) -> Vec<MetadataRecord> {
    match image.brokers.get(&node) {
        Some(b) if b.fenced || b.shutting_down => {}
        _ => return Vec::new(),
    }
    let mut records = vec![MetadataRecord::BrokerUnfenced { node_id: node }];
    let next = after(image, &records);
    records.extend(
        partitions(&next)
            .filter(|(_, _, p)| p.leader == NO_LEADER && p.replicas.contains(&node))
            .filter_map(|(id, i, p)| {
                let (leader, isr) = elect(&next, p, unclean_allowed(&next, statics, &id), None)?;
                let mut changed = p.clone();
                changed.leader = leader;
                changed.isr = isr;
                change_record(id, i, p, changed)
            }),
    );
    records
}

/// Records for a controlled shutdown: leaderships move to other ISR members
/// and `node` leaves the ISRs, before it stops. A partition `node` leads with
/// no other in-sync replica keeps its leader (there is nobody to hand it to;
/// it goes offline only when the broker is gone), so in-flight requests and
/// the last commits of consumers still succeed.
pub fn controlled_shutdown(image: &MetadataImage, node: i32) -> Vec<MetadataRecord> {
    match image.brokers.get(&node) {
        Some(b) if !b.shutting_down => {}
        _ => return Vec::new(),
    }
    let mut records: Vec<MetadataRecord> = partitions(image)
        .filter(|(_, _, p)| p.leader == node || p.isr.contains(&node))
        .filter_map(|(id, i, p)| {
            let mut next = p.clone();
            if p.leader == node {
                let (leader, _) = elect(image, p, false, Some(node))?;
                next.leader = leader;
            }
            if next.isr.len() > 1 {
                next.isr.retain(|&r| r != node);
            }
            change_record(id, i, p, next)
        })
        .collect();
    records.push(MetadataRecord::BrokerShuttingDown { node_id: node });
    records
}

/// Records that turn maintenance mode on or off. On: every leadership of
/// `node` moves to another usable ISR member where one exists (`node` stays in
/// the ISRs). Off: leaderships come back through preferred-leader elections.
pub fn set_draining(image: &MetadataImage, node: i32, draining: bool) -> Vec<MetadataRecord> {
    if image
        .brokers
        .get(&node)
        .is_none_or(|b| b.draining == draining)
    {
        return Vec::new();
    }
    let mut records = vec![MetadataRecord::BrokerDraining {
        node_id: node,
        draining,
    }];
    if draining {
        let next = after(image, &records);
        records.extend(
            partitions(&next)
                .filter(|(_, _, p)| p.leader == node)
                .filter_map(|(id, i, p)| {
                    let (leader, _) = elect(&next, p, false, Some(node))?;
                    let mut moved = p.clone();
                    moved.leader = leader;
                    change_record(id, i, p, moved)
                }),
        );
    }
    records
}

/// Preferred-leader elections: partitions whose first replica is a usable,
/// non-draining ISR member but does not lead get it back as leader (Kafka's
/// auto leader rebalance, so leadership spreads again after restarts).
pub fn preferred_leaders(image: &MetadataImage) -> Vec<MetadataRecord> {
    partitions(image)
        .filter_map(|(id, i, p)| {
            let preferred = *p.target_replicas().first()?;
            let eligible = p.leader != preferred
                && p.isr.contains(&preferred)
                && image
                    .brokers
                    .get(&preferred)
                    .is_some_and(|b| b.is_usable() && !b.draining);
            if !eligible {
                return None;
            }
            let mut moved = p.clone();
            moved.leader = preferred;
            change_record(id, i, p, moved)
        })
        .collect()
}

/// Records that elect leaders for the given partitions: `preferred` moves
/// leadership to the first replica if eligible; otherwise only leaderless
/// partitions get a leader, through unclean election if `unclean`.
pub fn elect_leaders(
    image: &MetadataImage,
    targets: &[(Uuid, i32)],
    preferred: bool,
) -> Vec<Result<Option<MetadataRecord>, (i16, String)>> {
    let preferred_records = if preferred {
        preferred_leaders(image)
    } else {
        Vec::new()
    };
    targets
        .iter()
        .map(|(id, index)| {
            let p = image
                .partition(id, *index)
                .ok_or((3, format!("unknown partition {id}/{index}")))?;
            if preferred {
                let first = p.target_replicas().first().copied();
                if p.leader == first.unwrap_or(NO_LEADER) {
                    return Err((84, "the preferred replica already leads".into()));
                }
                return preferred_records
                    .iter()
                    .find(|r| {
                        matches!(r, MetadataRecord::PartitionChanged { topic_id, partition, .. }
                            if topic_id == id && partition == index)
                    })
                    .cloned()
                    .map(Some)
                    .ok_or((
                        80,
                        "the preferred replica is not an available in-sync replica".into(),
                    ));
            }
            if p.leader != NO_LEADER {
                return Err((84, "the partition already has a leader".into()));
            }
            let (leader, isr) =
                elect(image, p, true, None).ok_or((83, "no replica is available".into()))?;
            let mut changed = p.clone();
            changed.leader = leader;
            changed.isr = isr;
            Ok(change_record(*id, *index, p, changed))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::partition_change::tests::{image, p0};

    fn apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        after(image, records)
    }

    fn state(img: &MetadataImage) -> (i32, Vec<i32>, i32) {
        let p = p0(img);
        (p.leader, p.isr.clone(), p.leader_epoch)
    }

    #[test]
    fn fencing_the_leader_moves_leadership_and_bumps_the_epoch() {
        let img = image(3, &[0, 1, 2], 0, &[0, 1, 2]);
        let next = apply(&img, &fence(&img, &BrokerConfig::default(), 0, false));
        assert_eq!(state(&next), (1, vec![1, 2], 1));
        assert!(next.brokers[&0].fenced);
        assert!(
            fence(&next, &BrokerConfig::default(), 0, false).is_empty(),
            "fencing twice changes nothing"
        );
    }

    #[test]
    fn last_isr_member_goes_offline_and_comes_back_on_unfence() {
        let img = image(3, &[0, 1], 0, &[0]);
        let offline = apply(&img, &fence(&img, &BrokerConfig::default(), 0, false));
        assert_eq!(state(&offline), (NO_LEADER, vec![0], 1));
        // Broker 1 is not in the ISR: it may not lead (no unclean election).
        let still = apply(&offline, &unfence(&offline, &BrokerConfig::default(), 1));
        assert_eq!(p0(&still).leader, NO_LEADER);
        let back = apply(&offline, &unfence(&offline, &BrokerConfig::default(), 0));
        assert_eq!(state(&back), (0, vec![0], 2));
    }

    #[test]
    fn a_broker_with_a_new_disk_leaves_every_isr() {
        let mut img = image(3, &[0, 1], 0, &[0]);
        let reg = |inc| Registration {
            cluster_id: "c".into(),
            node_id: 0,
            host: "h".into(),
            port: 1,
            rack: None,
            incarnation: inc,
            controller: None,
        };
        let fenced = apply(&img, &fence(&img, &BrokerConfig::default(), 0, false));
        let back = apply(
            &fenced,
            &register(&fenced, &BrokerConfig::default(), &reg(Uuid::from_u128(9))),
        );
        let back = apply(&back, &unfence(&back, &BrokerConfig::default(), 0));
        let p = p0(&back);
        assert_eq!(
            (p.leader, p.isr.clone()),
            (NO_LEADER, vec![]),
            "never elect a wiped replica"
        );
        // Same incarnation, restarted before its session ran out: fenced, then back.
        img.brokers.get_mut(&0).expect("b0").incarnation = Uuid::from_u128(5);
        let img = apply(&img, &unfence(&img, &BrokerConfig::default(), 1));
        let records = register(&img, &BrokerConfig::default(), &reg(Uuid::from_u128(5)));
        let re = apply(&img, &records);
        assert!(re.brokers[&0].fenced);
        let re = apply(&re, &unfence(&re, &BrokerConfig::default(), 0));
        assert_eq!(p0(&re).leader, 0);
    }

    #[test]
    fn controlled_shutdown_and_drain_move_leadership() {
        let img = image(3, &[0, 1, 2], 0, &[0, 1, 2]);
        let down = apply(&img, &controlled_shutdown(&img, 0));
        assert_eq!(state(&down), (1, vec![1, 2], 1));
        assert!(down.brokers[&0].shutting_down);
        // Alone in the ISR: it keeps leading until it is gone.
        let alone = image(3, &[0], 0, &[0]);
        let down = apply(&alone, &controlled_shutdown(&alone, 0));
        assert_eq!(state(&down), (0, vec![0], 0));

        let drained = apply(&img, &set_draining(&img, 0, true));
        assert_eq!(state(&drained), (1, vec![0, 1, 2], 1));
        assert!(
            preferred_leaders(&drained).is_empty(),
            "a draining broker does not get leadership back"
        );
        let undrained = apply(&drained, &set_draining(&drained, 0, false));
        let back = apply(&undrained, &preferred_leaders(&undrained));
        assert_eq!(state(&back), (0, vec![0, 1, 2], 2));
    }

    #[test]
    fn elect_leaders_reports_per_partition() {
        let img = image(3, &[0, 1, 2], 1, &[0, 1, 2]);
        let id = Uuid::from_u128(1);
        let got = elect_leaders(&img, &[(id, 0), (id, 7)], true);
        assert!(matches!(got[0], Ok(Some(_))));
        assert_eq!(got[1].as_ref().unwrap_err().0, 3);
        let got = elect_leaders(&img, &[(id, 0)], false);
        assert_eq!(got[0].as_ref().unwrap_err().0, 84);
    }
}
