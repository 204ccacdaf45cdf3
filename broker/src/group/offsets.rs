//! A group's committed offsets, and the commits on their way to the store.
//!
//! Pure: no I/O, no clocks. A commit is visible only once it is durable: the runtime
//! calls `begin_commit` when it hands the records to the store and `complete_commit`
//! when the store answers. Completions may arrive in any order; each partition keeps
//! the newest durable commit, and a deletion (OffsetDelete, expiry) made while a
//! commit is in flight wins over that older commit, as it does in the log.

use std::collections::{BTreeMap, HashMap};

use super::records::{OffsetValue, TopicPartition};

/// Identifies one in-flight commit; later commits get larger tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommitTicket(u64);

/// Committed offsets of one group.
#[derive(Debug, Default)]
pub struct OffsetTable {
    /// Durable offsets with the ticket that wrote them (0: loaded from the store).
    committed: BTreeMap<TopicPartition, (u64, OffsetValue)>,
    /// How many commits of each partition are in flight.
    in_flight: HashMap<TopicPartition, u32>,
    /// Partitions deleted while a commit was in flight: commits older than this
    /// sequence number must not resurrect them.
    deleted_at: HashMap<TopicPartition, u64>,
    next_seq: u64,
}

impl OffsetTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replays a stored record: an offset, or its deletion.
    pub fn replay(&mut self, tp: TopicPartition, value: Option<OffsetValue>) {
        match value {
            Some(value) => {
                self.committed.insert(tp, (0, value));
            }
            None => {
                self.committed.remove(&tp);
            }
        }
    }

    /// Registers a commit of these partitions as in flight.
    pub fn begin_commit<'a>(
        &mut self,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> CommitTicket {
        let seq = self.bump();
        for tp in partitions {
            *self.in_flight.entry(tp.clone()).or_default() += 1;
        }
        CommitTicket(seq)
    }

    /// Applies (if `durable`) or drops a commit begun with `ticket`.
    pub fn complete_commit(
        &mut self,
        ticket: CommitTicket,
        entries: impl IntoIterator<Item = (TopicPartition, OffsetValue)>,
        durable: bool,
    ) {
        let seq = ticket.0;
        for (tp, value) in entries {
            match self.in_flight.get_mut(&tp) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    self.in_flight.remove(&tp);
                }
                // Not begun with this ticket: nothing to complete.
                None => continue,
            }
            // A newer durable commit or a later deletion raises the floor; an older
            // commit completing late must not undo either. (Equal: the same partition
            // twice in one commit; the later entry wins, as on replay.)
            let floor = self
                .committed
                .get(&tp)
                .map(|(s, _)| *s)
                .into_iter()
                .chain(self.deleted_at.get(&tp).copied())
                .max()
                .unwrap_or(0);
            if durable && seq >= floor {
                self.committed.insert(tp.clone(), (seq, value));
            }
            if !self.in_flight.contains_key(&tp) {
                self.deleted_at.remove(&tp);
            }
        }
    }

    /// Deletes a partition's offset; true if there was one, committed or in flight
    /// (so a tombstone is due).
    pub fn remove(&mut self, tp: &TopicPartition) -> bool {
        let had_committed = self.committed.remove(tp).is_some();
        let had_in_flight = self.in_flight.contains_key(tp);
        if had_in_flight {
            let seq = self.bump();
            self.deleted_at.insert(tp.clone(), seq);
        }
        had_committed || had_in_flight
    }

    /// The durable offset of a partition.
    pub fn get(&self, tp: &TopicPartition) -> Option<&OffsetValue> {
        self.committed.get(tp).map(|(_, v)| v)
    }

    /// Every durable offset, ordered by topic and partition.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, &OffsetValue)> {
        self.committed.iter().map(|(tp, (_, v))| (tp, v))
    }

    /// Every partition with a durable or in-flight offset (what a full deletion must
    /// write tombstones for).
    pub fn all_partitions(&self) -> Vec<TopicPartition> {
        let mut all: Vec<TopicPartition> = self
            .committed
            .keys()
            .chain(self.in_flight.keys())
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// No durable offsets.
    pub fn is_empty(&self) -> bool {
        self.committed.is_empty()
    }

    /// No durable and no in-flight offsets.
    pub fn is_blank(&self) -> bool {
        self.committed.is_empty() && self.in_flight.is_empty()
    }

    /// Partitions whose offset has expired at `now_ms`: past its explicit expiry
    /// timestamp if it has one, else `retention_ms` after `base(offset)`. Partitions
    /// of topics for which `keep_topic` is true, or with a commit in flight, never
    /// expire.
    pub fn expired(
        &self,
        now_ms: i64,
        retention_ms: i64,
        base: impl Fn(&OffsetValue) -> i64,
        keep_topic: impl Fn(&str) -> bool,
    ) -> Vec<TopicPartition> {
        self.committed
            .iter()
            .filter(|(tp, _)| !keep_topic(&tp.topic) && !self.in_flight.contains_key(*tp))
            .filter(|(_, (_, v))| match v.expire_timestamp_ms {
                Some(at) => now_ms >= at,
                None => now_ms.saturating_sub(base(v)) >= retention_ms,
            })
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    fn bump(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn off(offset: i64) -> OffsetValue {
        OffsetValue {
            offset,
            leader_epoch: None,
            metadata: String::new(),
            commit_timestamp_ms: 1000,
            expire_timestamp_ms: None,
        }
    }

    fn offset_of(table: &OffsetTable, p: i32) -> Option<i64> {
        table.get(&tp(p)).map(|v| v.offset)
    }

    #[test]
    fn commit_is_visible_only_when_durable() {
        let mut t = OffsetTable::new();
        let a = t.begin_commit([&tp(0)]);
        assert_eq!(offset_of(&t, 0), None);
        t.complete_commit(a, [(tp(0), off(5))], true);
        assert_eq!(offset_of(&t, 0), Some(5));
        let b = t.begin_commit([&tp(0)]);
        t.complete_commit(b, [(tp(0), off(9))], false);
        assert_eq!(offset_of(&t, 0), Some(5), "a failed commit changes nothing");
        assert!(t.in_flight.is_empty() && t.deleted_at.is_empty());
    }

    #[test]
    fn completions_in_any_order_keep_the_newest_commit() {
        // (order of completion, durable flags) → expected offset.
        let cases: &[(&[usize], [bool; 2], Option<i64>)] = &[
            (&[0, 1], [true, true], Some(2)),
            (&[1, 0], [true, true], Some(2)),
            (&[1, 0], [true, false], Some(1)),
            (&[0, 1], [false, true], Some(2)),
            (&[1, 0], [false, false], None),
        ];
        for (order, durable, want) in cases {
            let mut t = OffsetTable::new();
            let tickets = [t.begin_commit([&tp(0)]), t.begin_commit([&tp(0)])];
            for &i in *order {
                t.complete_commit(tickets[i], [(tp(0), off(i as i64 + 1))], durable[i]);
            }
            assert_eq!(
                offset_of(&t, 0),
                *want,
                "order {order:?} durable {durable:?}"
            );
            assert!(t.in_flight.is_empty() && t.deleted_at.is_empty());
        }
    }

    #[test]
    fn a_partition_twice_in_one_commit_keeps_the_later_entry() {
        let mut t = OffsetTable::new();
        let c = t.begin_commit([&tp(0), &tp(0)]);
        t.complete_commit(c, [(tp(0), off(1)), (tp(0), off(2))], true);
        assert_eq!(offset_of(&t, 0), Some(2));
        assert!(!t.is_blank() && t.in_flight.is_empty());
    }

    #[test]
    fn deletion_wins_over_an_older_in_flight_commit() {
        let mut t = OffsetTable::new();
        let old = t.begin_commit([&tp(0)]);
        assert!(t.remove(&tp(0)), "in-flight offset needs a tombstone");
        let new = t.begin_commit([&tp(0)]);
        t.complete_commit(old, [(tp(0), off(1))], true);
        assert_eq!(
            offset_of(&t, 0),
            None,
            "the deleted commit must not come back"
        );
        t.complete_commit(new, [(tp(0), off(2))], true);
        assert_eq!(offset_of(&t, 0), Some(2));

        // Two commits in flight, then a deletion; the newer completes first.
        let mut t = OffsetTable::new();
        let first = t.begin_commit([&tp(0)]);
        let second = t.begin_commit([&tp(0)]);
        t.remove(&tp(0));
        t.complete_commit(second, [(tp(0), off(2))], true);
        t.complete_commit(first, [(tp(0), off(1))], true);
        assert_eq!(offset_of(&t, 0), None);
        assert!(t.is_blank() && t.deleted_at.is_empty());

        let mut t = OffsetTable::new();
        let old = t.begin_commit([&tp(0)]);
        t.remove(&tp(0));
        t.complete_commit(old, [(tp(0), off(1))], true);
        assert_eq!(offset_of(&t, 0), None);
        assert!(t.is_blank());
        assert!(!t.remove(&tp(0)), "nothing left to delete");
    }

    #[test]
    fn replay_applies_values_and_tombstones() {
        let mut t = OffsetTable::new();
        t.replay(tp(0), Some(off(3)));
        t.replay(tp(1), Some(off(4)));
        t.replay(tp(0), None);
        assert_eq!(offset_of(&t, 0), None);
        assert_eq!(offset_of(&t, 1), Some(4));
        // A commit after loading supersedes the loaded value.
        let c = t.begin_commit([&tp(1)]);
        t.complete_commit(c, [(tp(1), off(8))], true);
        assert_eq!(offset_of(&t, 1), Some(8));
        assert_eq!(t.all_partitions(), vec![tp(1)]);
    }

    #[test]
    fn expiry_uses_explicit_timestamp_or_retention_from_base() {
        let mut t = OffsetTable::new();
        t.replay(tp(0), Some(off(1))); // committed at 1000
        t.replay(
            tp(1),
            Some(OffsetValue {
                expire_timestamp_ms: Some(1500),
                ..off(1)
            }),
        );
        t.replay(TopicPartition::new("kept", 0), Some(off(1)));
        let keep = |topic: &str| topic == "kept";
        let base = |v: &OffsetValue| v.commit_timestamp_ms;
        assert_eq!(t.expired(1499, 100, base, keep), vec![tp(0)]);
        assert_eq!(t.expired(1500, 100, base, keep), vec![tp(0), tp(1)]);
        assert_eq!(t.expired(1099, 100, base, keep), vec![]);
        // A later base (e.g. when the group became empty) delays expiry.
        assert_eq!(t.expired(1499, 100, |_| 1450, keep), vec![]);
        let _in_flight = t.begin_commit([&tp(0)]);
        assert_eq!(t.expired(5000, 100, base, keep), vec![tp(1)]);
    }
}
