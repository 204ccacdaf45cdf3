//! Log divergence between a follower and its leader, decided from leader-epoch
//! histories (KIP-101/KIP-320): the leader spots a follower whose last fetched
//! epoch ended earlier in its own log, and the follower works out where to
//! truncate so it never keeps records the leader does not have.
//!
//! Pure: epoch histories and offsets in, a verdict out.

use crate::log::EpochCache;

/// The leader's answer to a follower fetching at `fetch_offset` whose last
/// batch is from `last_fetched_epoch`: `Some((epoch, end_offset))` if the
/// follower's log diverges (it must truncate), `None` if the fetch may proceed.
pub fn check_fetch(
    leader_epochs: &EpochCache,
    leader_end: i64,
    last_fetched_epoch: i32,
    fetch_offset: i64,
) -> Option<(i32, i64)> {
    if last_fetched_epoch < 0 {
        return None;
    }
    match leader_epochs.end_offset_for(last_fetched_epoch, leader_end) {
        // The leader never had that epoch or anything before it: everything diverges.
        None => Some((-1, -1)),
        Some((epoch, end)) if epoch != last_fetched_epoch || end < fetch_offset => {
            Some((epoch, end))
        }
        Some(_) => None,
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
        // Leader: epoch 1 from 0, epoch 3 from 100, epoch 4 from 150; log end 200.
        let (_d, leader) = epochs(&[(1, 0), (3, 100), (4, 150)]);
        let cases = [
            (4, 180, None), // same epoch, within it
            (4, 200, None),
            (3, 150, None),           // fetched the whole of epoch 3
            (3, 160, Some((3, 150))), // has records of epoch 3 the leader never wrote
            (2, 120, Some((1, 100))), // epoch 2 never existed on the leader
            (0, 10, Some((-1, -1))),  // before any leader epoch
            (-1, 0, None),            // empty follower
        ];
        for (epoch, offset, want) in cases {
            assert_eq!(
                check_fetch(&leader, 200, epoch, offset),
                want,
                "epoch {epoch} offset {offset}"
            );
        }
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
