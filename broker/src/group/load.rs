//! Rebuilding groups from the records of one `__consumer_offsets` partition.
//!
//! Pure: the records come in, groups come out; the runtime reads the store and
//! installs the result.

use std::collections::BTreeMap;

use super::records::{DecodeError, Record, decode_record};
use super::state::Group;
use super::store::{StoreError, StoredRecord};

/// Groups rebuilt from a partition, before `Group::finish_load`.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Group id → group.
    pub groups: BTreeMap<String, Group>,
    /// Records of a type this version does not know (written by a newer one).
    pub skipped: usize,
}

/// Replays `records` (oldest first; later records win, tombstones delete). Groups
/// left with neither metadata nor offsets are dropped. An undecodable record fails
/// the load: guessing past it could resurrect deleted offsets.
pub fn replay(partition: i32, records: &[StoredRecord]) -> Result<Replayed, StoreError> {
    let mut out = Replayed::default();
    for (index, (key, value)) in records.iter().enumerate() {
        match decode_record(key, value.as_ref()) {
            Ok(Record::OffsetCommit { group, tp, value }) => {
                group_entry(&mut out.groups, group)
                    .offsets_mut()
                    .replay(tp, value);
            }
            Ok(Record::GroupMetadata { group, value }) => {
                group_entry(&mut out.groups, group).replay_metadata(value);
            }
            Err(DecodeError::UnknownKeyType { .. }) => out.skipped += 1,
            Err(e) => {
                return Err(StoreError::Corruption {
                    partition,
                    offset: -1,
                    detail: format!("record #{index} of the partition: {e}"),
                });
            }
        }
    }
    out.groups.retain(|_, g| !g.is_blank());
    Ok(out)
}

fn group_entry(groups: &mut BTreeMap<String, Group>, id: String) -> &mut Group {
    groups.entry(id.clone()).or_insert_with(|| Group::new(id))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::group::config::GroupConfig;
    use crate::group::records::{
        GroupMetadataValue, MemberMetadata, OffsetValue, TopicPartition, group_record,
        offset_record,
    };
    use crate::group::state::GroupState;

    fn offset(o: i64) -> OffsetValue {
        OffsetValue {
            offset: o,
            leader_epoch: Some(1),
            metadata: "m".into(),
            commit_timestamp_ms: 10,
            expire_timestamp_ms: None,
        }
    }

    fn stable_value(generation: i32) -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: Some("consumer".into()),
            generation,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: Some(5),
            members: vec![MemberMetadata {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 1000,
                session_timeout_ms: 6000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        }
    }

    #[test]
    fn later_records_win_and_tombstones_delete() {
        let tp0 = TopicPartition::new("t", 0);
        let tp1 = TopicPartition::new("t", 1);
        let records = vec![
            offset_record("g", &tp0, Some(&offset(1))),
            offset_record("g", &tp1, Some(&offset(2))),
            group_record("g", Some(&stable_value(3))),
            offset_record("g", &tp0, Some(&offset(7))),
            offset_record("g", &tp1, None),
            group_record("g", Some(&stable_value(4))),
            // A group deleted entirely.
            offset_record("gone", &tp0, Some(&offset(1))),
            group_record("gone", Some(&stable_value(1))),
            offset_record("gone", &tp0, None),
            group_record("gone", None),
            // A standalone committer: offsets only.
            offset_record("simple", &tp1, Some(&offset(9))),
            // A record of an unknown (future) type.
            (
                Bytes::from_static(&[0, 99, 1]),
                Some(Bytes::from_static(b"x")),
            ),
        ];
        let mut replayed = replay(3, &records).expect("replays");
        assert_eq!(replayed.skipped, 1);
        assert_eq!(
            replayed.groups.keys().collect::<Vec<_>>(),
            vec!["g", "simple"]
        );
        let cfg = GroupConfig::default();
        let g = replayed.groups.get_mut("g").expect("group");
        assert!(g.finish_load(100, &cfg).is_empty());
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(g.generation(), 4);
        assert_eq!(g.protocol(), Some("range"));
        assert_eq!(g.leader(), Some("m1"));
        let m = g.member("m1").expect("member");
        assert_eq!(m.assignment, Bytes::from_static(b"asg"));
        assert_eq!(m.instance_id.as_deref(), Some("i1"));
        assert_eq!(m.metadata("range"), Bytes::from_static(b"sub"));
        assert_eq!(m.heartbeat_deadline_ms(), Some(6100));
        assert_eq!(g.offsets().get(&tp0).map(|v| v.offset), Some(7));
        assert_eq!(g.offsets().get(&tp1), None);
        let s = replayed.groups.get_mut("simple").expect("group");
        s.finish_load(100, &cfg);
        assert_eq!(s.state(), GroupState::Empty);
        assert_eq!(s.protocol_type(), None);
        assert_eq!(s.offsets().get(&tp1).map(|v| v.offset), Some(9));
    }

    #[test]
    fn corrupt_record_fails_the_load() {
        let records = vec![
            offset_record("g", &TopicPartition::new("t", 0), Some(&offset(1))),
            (
                group_record("g", None).0,
                Some(Bytes::from_static(&[0, 1, 0])),
            ),
        ];
        let err = replay(7, &records).expect_err("must fail");
        match err {
            StoreError::Corruption {
                partition, detail, ..
            } => {
                assert_eq!(partition, 7);
                assert!(detail.starts_with("record #1"), "{detail}");
            }
            other => panic!("unexpected {other}"),
        }
    }
}
