//! Partition reassignment (KIP-455) and the leader's ISR changes
//! (AlterPartition), which drive reassignments forward.
//!
//! Pure. A reassignment to target replicas T from current replicas R sets
//! replicas = T followed by R − T, adding = T − R, removing = R − T. Once every
//! adding replica is in the ISR it completes: replicas = T, ISR ∩ T, and a new
//! leader from T if the old one is being removed. A cancelled reassignment goes
//! back to R (minus what was added).

use std::collections::BTreeSet;

use thiserror::Error;
use uuid::Uuid;

use super::image::{MetadataImage, NO_LEADER, PartitionImage};
use super::partition_change::{change_record, elect, unclean_allowed};
use super::records::MetadataRecord;
use crate::config::BrokerConfig;
pub use crate::replication::isr::AlterIsr;

/// A refused ISR change or reassignment, with Kafka's error code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChangeError {
    #[error("unknown partition {0}/{1}")]
    UnknownPartition(Uuid, i32),
    #[error("broker {requester} does not lead this partition (leader {leader})")]
    NotLeader { requester: i32, leader: i32 },
    #[error("leader epoch {got} is not the current {current}")]
    FencedLeaderEpoch { got: i32, current: i32 },
    #[error("partition epoch {got} is not the current {current}")]
    InvalidUpdateVersion { got: i32, current: i32 },
    #[error("{0}")]
    IneligibleReplica(String),
    #[error("{0}")]
    InvalidAssignment(String),
    #[error("no reassignment is in progress")]
    NoReassignmentInProgress,
}

impl ChangeError {
    /// Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::UnknownPartition(..) => 3,
            Self::NotLeader { .. } => 6,
            Self::FencedLeaderEpoch { .. } => 74,
            Self::InvalidUpdateVersion { .. } => 108,
            Self::IneligibleReplica(_) => 107,
            Self::InvalidAssignment(_) => 39,
            Self::NoReassignmentInProgress => 85,
        }
    }
}

fn partition<'a>(
    image: &'a MetadataImage,
    id: &Uuid,
    index: i32,
) -> Result<&'a PartitionImage, ChangeError> {
    image
        .partition(id, index)
        .ok_or(ChangeError::UnknownPartition(*id, index))
}

/// `p` with its reassignment completed, if every adding replica is in sync.
fn completed(
    image: &MetadataImage,
    statics: &BrokerConfig,
    id: &Uuid,
    p: &PartitionImage,
) -> Option<PartitionImage> {
    if (p.adding.is_empty() && p.removing.is_empty()) || !p.adding.iter().all(|r| p.isr.contains(r))
    {
        return None;
    }
    let mut next = p.clone();
    next.replicas = p.target_replicas();
    next.isr.retain(|r| next.replicas.contains(r));
    next.adding.clear();
    next.removing.clear();
    if !next.replicas.contains(&p.leader) || next.isr.is_empty() {
        if next.isr.is_empty() {
            // The old replicas held the only in-sync copies; keep them until
            // a target replica catches up.
            return None;
        }
        next.leader = elect(
            image,
            &next,
            unclean_allowed(image, statics, id),
            Some(p.leader),
        )
        .map_or(NO_LEADER, |(l, _)| l);
    }
    Some(next)
}

/// Validates a leader's ISR change exactly like Kafka's AlterPartition and
/// returns the record (which may also complete a reassignment).
pub fn alter_isr(
    image: &MetadataImage,
    statics: &BrokerConfig,
    req: &AlterIsr,
) -> Result<MetadataRecord, ChangeError> {
    let p = partition(image, &req.topic_id, req.partition)?;
    if p.leader != req.leader {
        return Err(ChangeError::NotLeader {
            requester: req.leader,
            leader: p.leader,
        });
    }
    if req.leader_epoch != p.leader_epoch {
        return Err(ChangeError::FencedLeaderEpoch {
            got: req.leader_epoch,
            current: p.leader_epoch,
        });
    }
    if req.partition_epoch != p.partition_epoch {
        return Err(ChangeError::InvalidUpdateVersion {
            got: req.partition_epoch,
            current: p.partition_epoch,
        });
    }
    let unique: BTreeSet<i32> = req.isr.iter().copied().collect();
    if unique.len() != req.isr.len() || !req.isr.contains(&req.leader) {
        return Err(ChangeError::IneligibleReplica(format!(
            "ISR {:?} must list the leader {} once and no broker twice",
            req.isr, req.leader
        )));
    }
    if let Some(r) = req.isr.iter().find(|r| !p.replicas.contains(r)) {
        return Err(ChangeError::IneligibleReplica(format!(
            "broker {r} is not a replica of this partition"
        )));
    }
    if let Some(r) = req
        .isr
        .iter()
        .find(|r| !p.isr.contains(r) && !image.is_usable(**r))
    {
        return Err(ChangeError::IneligibleReplica(format!(
            "broker {r} is fenced or shutting down and cannot join the ISR"
        )));
    }
    let mut next = p.clone();
    next.isr = req.isr.clone();
    let next = completed(image, statics, &req.topic_id, &next).unwrap_or(next);
    Ok(
        change_record(req.topic_id, req.partition, p, next.clone()).unwrap_or_else(|| {
            // Nothing changed: still bump the partition epoch so the leader's
            // pending proposal resolves against a fresh epoch.
            let mut bumped = next;
            bumped.partition_epoch = p.partition_epoch + 1;
            MetadataRecord::PartitionChanged {
                topic_id: req.topic_id,
                partition: req.partition,
                replicas: bumped.replicas,
                leader: bumped.leader,
                isr: bumped.isr,
                leader_epoch: bumped.leader_epoch,
                partition_epoch: bumped.partition_epoch,
                adding: bumped.adding,
                removing: bumped.removing,
            }
        }),
    )
}

/// Starts (`Some(target)`) or cancels (`None`) a reassignment of one partition.
pub fn reassign(
    image: &MetadataImage,
    statics: &BrokerConfig,
    id: &Uuid,
    index: i32,
    target: Option<&[i32]>,
) -> Result<Option<MetadataRecord>, ChangeError> {
    let p = partition(image, id, index)?;
    let original: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|r| !p.adding.contains(r))
        .collect();
    let Some(target) = target else {
        if p.adding.is_empty() && p.removing.is_empty() {
            return Err(ChangeError::NoReassignmentInProgress);
        }
        let mut back = p.clone();
        back.replicas = original.clone();
        back.isr.retain(|r| original.contains(r));
        back.adding.clear();
        back.removing.clear();
        if !original.contains(&back.leader) || back.isr.is_empty() {
            back.isr = if back.isr.is_empty() {
                p.isr.clone()
            } else {
                back.isr
            };
            back.leader = elect(image, &back, false, None).map_or(NO_LEADER, |(l, _)| l);
        }
        return Ok(change_record(*id, index, p, back));
    };
    let unique: BTreeSet<i32> = target.iter().copied().collect();
    if target.is_empty() || unique.len() != target.len() {
        return Err(ChangeError::InvalidAssignment(format!(
            "replica list {target:?} is empty or repeats a broker"
        )));
    }
    if let Some(r) = target.iter().find(|r| !image.brokers.contains_key(r)) {
        return Err(ChangeError::InvalidAssignment(format!(
            "broker {r} is not registered"
        )));
    }
    let mut next = p.clone();
    next.replicas = target.to_vec();
    next.replicas
        .extend(original.iter().filter(|r| !target.contains(r)));
    next.adding = target
        .iter()
        .copied()
        .filter(|r| !original.contains(r))
        .collect();
    next.removing = original
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    next.isr.retain(|r| next.replicas.contains(r));
    let next = completed(image, statics, id, &next).unwrap_or(next);
    Ok(change_record(*id, index, p, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::partition_change::tests::{image, p0};

    fn id() -> Uuid {
        Uuid::from_u128(1)
    }

    fn apply(img: &MetadataImage, r: Option<MetadataRecord>) -> MetadataImage {
        let mut next = img.clone();
        if let Some(r) = r {
            next.apply(&r);
        }
        next
    }

    fn req(img: &MetadataImage, isr: &[i32]) -> AlterIsr {
        let p = p0(img);
        AlterIsr {
            topic_id: id(),
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn alter_isr_is_validated_like_alter_partition() {
        let img = image(3, &[0, 1, 2], 0, &[0, 1, 2]);
        let ok = alter_isr(&img, &BrokerConfig::default(), &req(&img, &[0, 1])).expect("shrink");
        let next = apply(&img, Some(ok));
        assert_eq!(
            (p0(&next).isr.clone(), p0(&next).partition_epoch),
            (vec![0, 1], 1)
        );

        let stale = req(&img, &[0]);
        assert_eq!(
            alter_isr(&next, &BrokerConfig::default(), &stale)
                .unwrap_err()
                .code(),
            108
        );
        let mut old_epoch = req(&next, &[0]);
        old_epoch.leader_epoch -= 1;
        assert_eq!(
            alter_isr(&next, &BrokerConfig::default(), &old_epoch)
                .unwrap_err()
                .code(),
            74
        );
        let mut other = req(&next, &[1]);
        other.leader = 1;
        assert_eq!(
            alter_isr(&next, &BrokerConfig::default(), &other)
                .unwrap_err()
                .code(),
            6
        );
        assert_eq!(
            alter_isr(&next, &BrokerConfig::default(), &req(&next, &[1]))
                .unwrap_err()
                .code(),
            107
        );
        assert_eq!(
            alter_isr(&next, &BrokerConfig::default(), &req(&next, &[0, 5]))
                .unwrap_err()
                .code(),
            107
        );
        let mut fenced = next.clone();
        fenced.brokers.get_mut(&2).expect("b2").fenced = true;
        assert_eq!(
            alter_isr(&fenced, &BrokerConfig::default(), &req(&fenced, &[0, 1, 2]))
                .unwrap_err()
                .code(),
            107
        );
    }

    #[test]
    fn grow_rf_1_to_3_completes_when_new_replicas_are_in_sync() {
        let img = image(3, &[0], 0, &[0]);
        let started = apply(
            &img,
            reassign(&img, &BrokerConfig::default(), &id(), 0, Some(&[0, 1, 2])).expect("start"),
        );
        let p = p0(&started);
        assert_eq!(
            (
                p.replicas.clone(),
                p.adding.clone(),
                p.removing.clone(),
                p.leader_epoch
            ),
            (vec![0, 1, 2], vec![1, 2], vec![], 1)
        );
        let half = apply(
            &started,
            Some(
                alter_isr(&started, &BrokerConfig::default(), &req(&started, &[0, 1]))
                    .expect("1 in"),
            ),
        );
        assert_eq!(p0(&half).adding, vec![1, 2], "2 is not in sync yet");
        let done = apply(
            &half,
            Some(
                alter_isr(&half, &BrokerConfig::default(), &req(&half, &[0, 1, 2])).expect("2 in"),
            ),
        );
        let p = p0(&done);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.adding.is_empty()),
            (vec![0, 1, 2], vec![0, 1, 2], true)
        );
    }

    #[test]
    fn shrink_3_to_2_away_from_the_leader_completes_at_once() {
        let img = image(3, &[0, 1, 2], 0, &[0, 1, 2]);
        let done = apply(
            &img,
            reassign(&img, &BrokerConfig::default(), &id(), 0, Some(&[1, 2])).expect("start"),
        );
        let p = p0(&done);
        assert_eq!(
            (
                p.replicas.clone(),
                p.isr.clone(),
                p.leader,
                p.removing.is_empty()
            ),
            (vec![1, 2], vec![1, 2], 1, true)
        );
    }

    #[test]
    fn cancel_restores_the_original_replicas() {
        let img = image(4, &[0, 1], 0, &[0, 1]);
        let started = apply(
            &img,
            reassign(&img, &BrokerConfig::default(), &id(), 0, Some(&[2, 3])).expect("start"),
        );
        assert_eq!(p0(&started).replicas, vec![2, 3, 0, 1]);
        assert_eq!(
            p0(&started).leader,
            0,
            "the old leader leads until the move completes"
        );
        let back = apply(
            &started,
            reassign(&started, &BrokerConfig::default(), &id(), 0, None).expect("cancel"),
        );
        let p = p0(&back);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.adding.is_empty()),
            (vec![0, 1], vec![0, 1], true)
        );
        assert_eq!(
            reassign(&back, &BrokerConfig::default(), &id(), 0, None)
                .unwrap_err()
                .code(),
            85
        );
        assert_eq!(
            reassign(&back, &BrokerConfig::default(), &id(), 0, Some(&[0, 9]))
                .unwrap_err()
                .code(),
            39
        );
    }
}
