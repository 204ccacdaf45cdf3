//! Log divergence between a follower and its leader, decided from leader-epoch
//! histories (KIP-101/KIP-320): the leader spots a follower whose last fetched
//! epoch ended earlier in its own log, and the follower works out where to
//! truncate so it never keeps records the leader does not have.
//!
//! Pure: epoch histories and offsets in, a verdict out.

use crate::log::EpochCache;

/// The leader's verdict on a follower's fetch position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchCheck {
    /// The follower's log agrees with ours up to its fetch offset.
    Proceed,
    /// It diverges: the follower must truncate (answered as `diverging_epoch`).
    Diverging { epoch: i32, end_offset: i64 },
    /// We cannot tell where its epoch ended (no epoch history here): answered
    /// OFFSET_OUT_OF_RANGE, as Kafka does.
    Undetermined,
}

/// The leader's answer to a follower fetching at `fetch_offset` whose last
/// batch is from `last_fetched_epoch` (−1: the follower has none), following
/// Kafka's `Partition.readRecords`: the end of that epoch here is the start of
/// the next one (our log end for our latest); an epoch older than any we know
/// ends where our first one starts.
pub fn check_fetch(
    leader_epochs: &EpochCache,
    leader_end: i64,
    last_fetched_epoch: i32,
    fetch_offset: i64,
) -> FetchCheck {
    if last_fetched_epoch < 0 {
        return FetchCheck::Proceed;
    }
    let (epoch, end) = match leader_epochs.end_offset_for(last_fetched_epoch, leader_end) {
        Some(found) => found,
        None => match leader_epochs.entries().first() {
            Some(first) => (last_fetched_epoch, first.start_offset),
            None => return FetchCheck::Undetermined,
        },
    };
    if epoch < last_fetched_epoch || end < fetch_offset {
        FetchCheck::Diverging {
            epoch,
            end_offset: end,
        }
    } else {
        FetchCheck::Proceed
    }
}

/// Where a follower truncates after the leader reported a diverging epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Truncate to this offset; the logs now agree.
    Final(i64),
    /// Truncate to this offset, then fetch again: the follower's history ends
    /// in an epoch the leader does not have, so another round compares earlier.
    Partial(i64),
    /// No usable epoch information: truncate to the high watermark (always safe).
    ToHighWatermark(i64),
}

/// The follower's decision on a diverging epoch `(leader_epoch, leader_end)`.
pub fn truncation(
    local_epochs: &EpochCache,
    local_end: i64,
    high_watermark: i64,
    leader_epoch: i32,
    leader_end: i64,
) -> Truncation {
    if leader_epoch < 0 || leader_end < 0 {
        return Truncation::ToHighWatermark(high_watermark.min(local_end));
    }
    match local_epochs.end_offset_for(leader_epoch, local_end) {
        None => Truncation::Final(leader_end.min(local_end)),
        Some((epoch, end)) if epoch == leader_epoch => Truncation::Final(leader_end.min(end)),
        Some((_, end)) => Truncation::Partial(end.min(local_end)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::StdFs;

    fn epochs(entries: &[(i32, i64)]) -> (tempfile::TempDir, EpochCache) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = EpochCache::load(&StdFs, dir.path());
        for &(e, s) in entries {
            c.assign(e, s);
        }
        (dir, c)
    }

    #[test]
    fn leader_check_table() {
        use FetchCheck::*;
        let diverging = |epoch, end_offset| Diverging { epoch, end_offset };
        // Leader: epoch 1 from 5, epoch 3 from 100, epoch 4 from 150; log end 200.
        let (_d, leader) = epochs(&[(1, 5), (3, 100), (4, 150)]);
        let cases = [
            (4, 180, Proceed), // same epoch, within it
            (4, 200, Proceed),
            (4, 210, diverging(4, 200)), // beyond our log end in our own epoch
            (3, 150, Proceed),           // fetched the whole of epoch 3
            (3, 160, diverging(3, 150)), // has records of epoch 3 the leader never wrote
            (2, 120, diverging(1, 100)), // epoch 2 never existed on the leader
            (2, 90, diverging(1, 100)),  // ... even below where epoch 1 ended
            (0, 10, diverging(0, 5)),    // older than any epoch here: ends where ours start
            (0, 5, Proceed),
            (-1, 0, Proceed), // empty follower
        ];
        for (epoch, offset, want) in cases {
            assert_eq!(
                check_fetch(&leader, 200, epoch, offset),
                want,
                "epoch {epoch} offset {offset}"
            );
        }
        let (_e, empty) = epochs(&[]);
        assert_eq!(check_fetch(&empty, 0, 3, 10), Undetermined);
        assert_eq!(check_fetch(&empty, 0, -1, 0), Proceed);
    }

    #[test]
    fn follower_truncation_table() {
        // Follower: epoch 1 from 0, epoch 2 from 100 (a leader that lost its
        // election), log end 130, high watermark 90.
        let (_d, follower) = epochs(&[(1, 0), (2, 100)]);
        let cases = [
            ((1, 100), Truncation::Final(100)), // leader's epoch 1 ended at 100: drop epoch 2
            ((1, 80), Truncation::Final(80)),
            ((2, 120), Truncation::Final(120)),
            ((3, 150), Truncation::Partial(130)), // leader's epoch 3 is unknown here: compare again
            ((0, 50), Truncation::Final(50)),
            ((-1, -1), Truncation::ToHighWatermark(90)),
        ];
        for ((epoch, end), want) in cases {
            assert_eq!(
                truncation(&follower, 130, 90, epoch, end),
                want,
                "leader epoch {epoch} end {end}"
            );
        }
    }
}
