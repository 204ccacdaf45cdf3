//! Producer-state table of one partition.
//!
//! Pure: batch headers in, verdicts out; no I/O, no clocks (timestamps come
//! from the batches).

use std::collections::{HashMap, VecDeque};

use thiserror::Error;

use crate::log::BatchHeader;

/// How many recent batches per producer are remembered for deduplication
/// (Kafka's `max.in.flight.requests.per.connection` limit for idempotence).
pub const BATCHES_KEPT: usize = 5;

/// One remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
    timestamp: i64,
}

/// How many sequence gaps a new leader answers as retriable before the
/// producer has resent in order (one in-flight window, see `check_as_leader`).
pub const GAPS_FORGIVEN: u8 = BATCHES_KEPT as u8;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// Leader epoch of the producer's last batch here, or of the leadership
    /// that last recognised one of its retries: the leadership that knows
    /// where the producer stands in its sequence.
    in_order_at: i32,
    /// Gaps answered as retriable since `in_order_at` last moved.
    gaps_forgiven: u8,
}

/// Why a producer's batch is refused (Kafka error codes in `code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProducerError {
    /// An older epoch than the producer's current one: a zombie instance.
    #[error("producer {pid} epoch {epoch} is older than the current epoch {current}")]
    InvalidEpoch { pid: i64, epoch: i16, current: i16 },
    /// A gap or reordering in sequence numbers.
    #[error("producer {pid}: out-of-order sequence {got}, expected {expected}")]
    OutOfOrder { pid: i64, got: i32, expected: i32 },
    /// A gap at a leader that took over since the producer last wrote: an
    /// earlier batch of the same in-flight window was refused before this
    /// replica knew it leads, and is about to be resent.
    #[error(
        "producer {pid}: sequence {got} arrived before {expected} at a new leader; resend from {expected}"
    )]
    ResendInOrder { pid: i64, got: i32, expected: i32 },
}

impl ProducerError {
    /// Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::InvalidEpoch { .. } => 47,
            Self::OutOfOrder { .. } => 45,
            // Retriable everywhere, and librdkafka keeps the producer epoch
            // (it bumps it on OUT_OF_ORDER_SEQUENCE_NUMBER behind a refused
            // request, renumbering batches this leader may already hold).
            Self::ResendInOrder { .. } => 6,
        }
    }
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchCheck {
    /// Append it.
    Append,
    /// Already appended: answer with these offsets, append nothing.
    Duplicate { first_offset: i64, last_offset: i64 },
}

/// A producer's state, for DescribeProducers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, Entry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

impl ProducerState {
    /// Decides what to do with a batch from a client (before appending).
    pub fn check(&self, h: &BatchHeader) -> Result<BatchCheck, ProducerError> {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return Ok(BatchCheck::Append);
        }
        let pid = h.producer_id;
        // A producer with a bumped epoch starts its sequence afresh at 0.
        let fresh = || {
            if h.base_sequence == 0 {
                Ok(BatchCheck::Append)
            } else {
                Err(ProducerError::OutOfOrder {
                    pid,
                    got: h.base_sequence,
                    expected: 0,
                })
            }
        };
        // A producer with no state here (expired, or every batch of it
        // deleted by retention) continues its sequence wherever it stands, as
        // in Kafka since 2.8: refusing it would be fatal to librdkafka.
        let Some(entry) = self.producers.get(&pid) else {
            return Ok(BatchCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                pid,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            return fresh();
        }
        let last_seq = h.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(BatchCheck::Duplicate {
                first_offset: dup.first_offset,
                last_offset: dup.last_offset,
            });
        }
        let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if h.base_sequence != expected {
            return Err(ProducerError::OutOfOrder {
                pid,
                got: h.base_sequence,
                expected,
            });
        }
        Ok(BatchCheck::Append)
    }

    /// `check` for a client's batch at the leader of `leader_epoch`, with one
    /// difference: while the producer has neither written nor had a retry
    /// recognised at this leadership, a gap ahead of the expected sequence is
    /// answered `ResendInOrder` (retriable, at most `GAPS_FORGIVEN` times)
    /// instead of `OutOfOrder`.
    ///
    /// The gap is then a leader change seen mid-window: the head of the
    /// producer's in-flight window reached this replica before it learnt it
    /// leads and was refused NOT_LEADER_OR_FOLLOWER, the next batch arrived
    /// just after. librdkafka answers OUT_OF_ORDER_SEQUENCE_NUMBER there by
    /// bumping its epoch and renumbering every unacknowledged batch, so a
    /// batch the old leader had already replicated here would be written
    /// twice (Apache Kafka answers the same and has the same duplicate). A
    /// retriable answer makes the client resend from its head, which this
    /// leader then recognises. The bound keeps a real gap (data lost at
    /// failover under acks=1) reported as out of order after one window.
    pub fn check_as_leader(
        &mut self,
        h: &BatchHeader,
        leader_epoch: i32,
    ) -> Result<BatchCheck, ProducerError> {
        let verdict = self.check(h);
        if !h.has_producer_id() || h.base_sequence < 0 {
            return verdict;
        }
        let Some(entry) = self.producers.get_mut(&h.producer_id) else {
            return verdict;
        };
        match verdict {
            Ok(BatchCheck::Duplicate { .. }) => {
                entry.in_order_at = entry.in_order_at.max(leader_epoch);
                entry.gaps_forgiven = 0;
            }
            Err(ProducerError::OutOfOrder { pid, got, expected })
                if got > expected
                    && entry.epoch == h.producer_epoch
                    && entry.in_order_at < leader_epoch
                    && entry.gaps_forgiven < GAPS_FORGIVEN =>
            {
                entry.gaps_forgiven += 1;
                return Err(ProducerError::ResendInOrder { pid, got, expected });
            }
            _ => {}
        }
        verdict
    }

    /// Records an appended batch (as leader after `check_as_leader`, or when
    /// replaying or replicating a log). `h` carries the offsets and the
    /// leader epoch the log assigned.
    pub fn record(&mut self, h: &BatchHeader) {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| Entry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                in_order_at: h.partition_leader_epoch,
                gaps_forgiven: 0,
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if h.partition_leader_epoch > entry.in_order_at {
            entry.in_order_at = h.partition_leader_epoch;
            entry.gaps_forgiven = 0;
        }
        if entry.batches.len() == BATCHES_KEPT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            timestamp: h.max_timestamp,
        });
    }

    /// Forgets the producers whose last batch is `max_age_ms` or older at
    /// `now_ms` (Kafka's `producer.id.expiration.ms`, on the batches'
    /// timestamps), so the table does not grow with every producer that ever
    /// wrote. Returns how many were forgotten.
    pub fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.batches
                .back()
                .is_some_and(|b| now_ms.saturating_sub(b.timestamp) < max_age_ms)
        });
        before - self.producers.len()
    }

    /// Forgets everything (the log was truncated; the caller replays what is left).
    pub fn clear(&mut self) {
        self.producers.clear();
    }

    /// Active producers.
    pub fn summaries(&self) -> Vec<ProducerSummary> {
        let mut out: Vec<_> = self
            .producers
            .iter()
            .filter_map(|(&producer_id, e)| {
                e.batches.back().map(|b| ProducerSummary {
                    producer_id,
                    epoch: e.epoch,
                    last_sequence: b.last_seq,
                    last_timestamp: b.timestamp,
                })
            })
            .collect();
        out.sort_by_key(|s| s.producer_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 7,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn idempotence_table() {
        let mut s = ProducerState::default();
        for i in 0..6 {
            let b = h(1, 0, i * 2, 2, 100 + i as i64 * 2);
            assert_eq!(s.check(&b), Ok(BatchCheck::Append), "batch {i}");
            s.record(&b);
        }
        // Batches kept: seqs 2..11 (the first was evicted).
        let cases: Vec<(BatchHeader, Result<BatchCheck, i16>)> = vec![
            (
                h(1, 0, 10, 2, 0),
                Ok(BatchCheck::Duplicate {
                    first_offset: 110,
                    last_offset: 111,
                }),
            ),
            (
                h(1, 0, 2, 2, 0),
                Ok(BatchCheck::Duplicate {
                    first_offset: 102,
                    last_offset: 103,
                }),
            ),
            (h(1, 0, 0, 2, 0), Err(45)), // too old to be remembered: not a duplicate, out of order
            (h(1, 0, 12, 1, 0), Ok(BatchCheck::Append)),
            (h(1, 0, 13, 1, 0), Err(45)),               // gap
            (h(1, 0, 10, 1, 0), Err(45)),               // overlaps but is not a remembered batch
            (h(1, 1, 0, 1, 0), Ok(BatchCheck::Append)), // epoch bump restarts at 0
            (h(1, 1, 5, 1, 0), Err(45)),
            (h(1, -1, 12, 1, 0), Err(47)),
            (h(2, 0, 0, 1, 0), Ok(BatchCheck::Append)), // new producer
            (h(3, 0, 4, 1, 0), Ok(BatchCheck::Append)), // unknown producer mid-sequence (expired)
            (h(-1, -1, -1, 1, 0), Ok(BatchCheck::Append)), // not idempotent
        ];
        for (batch, want) in cases {
            assert_eq!(s.check(&batch).map_err(|e| e.code()), want, "{batch:?}");
        }
    }

    #[test]
    fn sequences_wrap_and_epoch_bump_resets_memory() {
        let mut s = ProducerState::default();
        // Replayed from the log, as at start-up: the producer is already known.
        s.record(&h(9, 0, i32::MAX - 1, 2, 0));
        assert_eq!(s.check(&h(9, 0, 0, 1, 2)), Ok(BatchCheck::Append));
        s.record(&h(9, 3, 0, 1, 5));
        assert_eq!(
            s.summaries(),
            vec![ProducerSummary {
                producer_id: 9,
                epoch: 3,
                last_sequence: 0,
                last_timestamp: 7
            }]
        );
        assert_eq!(s.check(&h(9, 0, 1, 1, 0)).map_err(|e| e.code()), Err(47));
    }

    /// `h` as the log holds it: written by the leader of `leader_epoch`.
    fn written_at(leader_epoch: i32, mut b: BatchHeader) -> BatchHeader {
        b.partition_leader_epoch = leader_epoch;
        b
    }

    #[test]
    fn a_new_leader_answers_a_gap_retriable_until_the_producer_resends_in_order() {
        // Replicated at epoch 0: sequences 0..=54, one batch each, at offsets 0..=54.
        let mut s = ProducerState::default();
        for seq in 0..=54 {
            s.record(&written_at(0, h(1, 0, seq, 1, i64::from(seq))));
        }
        let code = |r: Result<BatchCheck, ProducerError>| r.map_err(|e| e.code());
        // Leading at epoch 1. 54..=56 were refused before this replica knew
        // it leads; 57 and 58 arrive first: retriable, not OUT_OF_ORDER.
        assert_eq!(code(s.check_as_leader(&h(1, 0, 57, 1, -1), 1)), Err(6));
        assert_eq!(code(s.check_as_leader(&h(1, 0, 58, 1, -1), 1)), Err(6));
        // The client resends from its head: recognised, then appended in order.
        assert_eq!(
            s.check_as_leader(&h(1, 0, 54, 1, -1), 1),
            Ok(BatchCheck::Duplicate {
                first_offset: 54,
                last_offset: 54
            })
        );
        assert_eq!(
            code(s.check_as_leader(&h(1, 0, 55, 1, -1), 1)),
            Ok(BatchCheck::Append)
        );
        s.record(&written_at(1, h(1, 0, 55, 1, 55)));
        // From now on a gap is what it is.
        assert_eq!(code(s.check_as_leader(&h(1, 0, 57, 1, -1), 1)), Err(45));
        // So is a rewind, and a bumped epoch starting mid-sequence.
        assert_eq!(code(s.check_as_leader(&h(1, 0, 40, 1, -1), 2)), Err(45));
        assert_eq!(code(s.check_as_leader(&h(1, 1, 5, 1, -1), 2)), Err(45));
    }

    #[test]
    fn producers_expire_after_their_last_batch_and_then_continue_anywhere() {
        let mut s = ProducerState::default();
        let at = |pid, seq, timestamp| {
            let mut b = h(pid, 0, seq, 1, i64::from(seq));
            b.max_timestamp = timestamp;
            b
        };
        s.record(&at(1, 0, 1_000));
        s.record(&at(1, 1, 5_000));
        s.record(&at(2, 0, 2_000));
        assert_eq!(
            s.expire(6_000, 4_000),
            1,
            "producer 2's last batch is 4 s old"
        );
        assert_eq!(s.expire(6_000, 4_000), 0);
        assert_eq!(
            s.summaries()
                .iter()
                .map(|p| p.producer_id)
                .collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(
            s.check(&at(1, 1, 6_000)),
            Ok(BatchCheck::Duplicate {
                first_offset: 1,
                last_offset: 1
            })
        );
        // Forgotten, producer 2 goes on from where it stands.
        assert_eq!(s.check(&at(2, 7, 9_000)), Ok(BatchCheck::Append));
        assert_eq!(s.expire(9_000, 4_000), 1);
        assert_eq!(s.check(&at(1, 9, 9_000)), Ok(BatchCheck::Append));
    }

    #[test]
    fn a_real_gap_at_a_new_leader_is_out_of_order_after_one_window() {
        // acks=1 lost sequence 3 at failover: the new leader ends at 2.
        let mut s = ProducerState::default();
        for seq in 0..=2 {
            s.record(&written_at(4, h(1, 0, seq, 1, i64::from(seq))));
        }
        for attempt in 0..GAPS_FORGIVEN {
            assert_eq!(
                s.check_as_leader(&h(1, 0, 4, 1, -1), 5)
                    .map_err(|e| e.code()),
                Err(6),
                "attempt {attempt}"
            );
        }
        assert_eq!(
            s.check_as_leader(&h(1, 0, 4, 1, -1), 5),
            Err(ProducerError::OutOfOrder {
                pid: 1,
                got: 4,
                expected: 3
            })
        );
        // The same leader that wrote the producer's last batch forgives nothing.
        assert_eq!(
            s.check_as_leader(&h(1, 0, 4, 1, -1), 4)
                .map_err(|e| e.code()),
            Err(45)
        );
    }
}
