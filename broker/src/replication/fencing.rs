//! Leader-epoch fencing of fetches (KIP-320): a request names the leader epoch
//! its sender believes current, and a replica answers only at that epoch.
//!
//! Pure: the replica's role and epoch and the request's epoch in, a verdict out.

/// Why a replica refuses a fetch (Kafka error codes in `code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochRefusal {
    /// The sender's epoch is older than ours (FENCED_LEADER_EPOCH).
    Fenced,
    /// The sender's epoch is newer than ours: our metadata is behind (UNKNOWN_LEADER_EPOCH).
    Unknown,
    /// We do not lead the partition (NOT_LEADER_OR_FOLLOWER).
    NotLeader,
}

impl EpochRefusal {
    /// Kafka error code.
    pub fn code(self) -> i16 {
        match self {
            Self::Fenced => 74,
            Self::Unknown => 76,
            Self::NotLeader => 6,
        }
    }
}

/// Checks a fetch (from a consumer or a follower) sent at `requested` epoch
/// (−1: the client does not say) against a replica at `ours` that is leading
/// or not. As Kafka, the epoch is checked before leadership, so a stale leader
/// tells a follower of the new epoch that its own metadata is behind.
pub fn check_leader_epoch(leading: bool, ours: i32, requested: i32) -> Result<(), EpochRefusal> {
    if requested >= 0 && requested < ours {
        return Err(EpochRefusal::Fenced);
    }
    if requested > ours {
        return Err(EpochRefusal::Unknown);
    }
    if !leading {
        return Err(EpochRefusal::NotLeader);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_check_table() {
        use EpochRefusal::*;
        let cases = [
            // (leading, ours, requested, verdict)
            (true, 5, 5, Ok(())),
            (true, 5, -1, Ok(())),
            (true, 5, 4, Err(Fenced)),
            (true, 5, 6, Err(Unknown)),
            // A paused old leader still at epoch 5 asked by a follower of epoch 6.
            (true, 5, 6, Err(Unknown)),
            (false, 6, 6, Err(NotLeader)),
            (false, 6, -1, Err(NotLeader)),
            (false, 6, 5, Err(Fenced)),
            (false, 6, 7, Err(Unknown)),
        ];
        for (leading, ours, requested, want) in cases {
            assert_eq!(
                check_leader_epoch(leading, ours, requested),
                want,
                "leading {leading}, ours {ours}, requested {requested}"
            );
        }
        assert_eq!(
            [Fenced.code(), Unknown.code(), NotLeader.code()],
            [74, 76, 6]
        );
    }
}
