//! Errors of the quorum's public API; openraft's error types stop here.
//!
//! Owns: translating openraft errors into [`QuorumError`]. Must not: hide
//! "not the leader" inside a generic error — callers redirect on it.

use std::path::PathBuf;

use openraft::BasicNode;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};

use super::types::NodeId;

/// A quorum operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// Only the leader (the active controller) can do this; `leader` is the current one if known.
    #[error("not the metadata quorum leader (leader: {leader:?})")]
    NotLeader { leader: Option<i32> },
    /// Binding the controller listener failed.
    #[error("binding controller listener {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The raft log, vote or snapshot under `dir` could not be read or written.
    #[error("metadata quorum storage in {}: {message}", dir.display())]
    Storage { dir: PathBuf, message: String },
    /// The configuration was rejected.
    #[error("invalid metadata quorum config: {0}")]
    Config(String),
    /// The leader could not confirm its leadership with a majority (e.g. partitioned).
    #[error("metadata quorum leader lost its majority: {0}")]
    NoQuorum(String),
    /// A membership change was refused.
    #[error("metadata quorum membership change refused: {0}")]
    Membership(String),
    /// Raft stopped (shut down, or a storage failure it cannot recover from).
    #[error("metadata quorum stopped: {0}")]
    Fatal(String),
}

impl QuorumError {
    /// From a failed write or membership change.
    pub(crate) fn from_write(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => QuorumError::NotLeader {
                leader: f.leader_id,
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                QuorumError::Membership(e.to_string())
            }
            RaftError::Fatal(f) => QuorumError::Fatal(f.to_string()),
        }
    }

    /// From a failed leadership check.
    pub(crate) fn from_read(e: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => QuorumError::NotLeader {
                leader: f.leader_id,
            },
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                QuorumError::NoQuorum(q.to_string())
            }
            RaftError::Fatal(f) => QuorumError::Fatal(f.to_string()),
        }
    }

    /// From a failed initialization; `None` if the node was already initialized.
    pub(crate) fn from_init(
        e: RaftError<NodeId, InitializeError<NodeId, BasicNode>>,
    ) -> Option<Self> {
        match e {
            RaftError::APIError(InitializeError::NotAllowed(_)) => None,
            RaftError::APIError(InitializeError::NotInMembers(e)) => {
                Some(QuorumError::Config(e.to_string()))
            }
            RaftError::Fatal(f) => Some(QuorumError::Fatal(f.to_string())),
        }
    }
}
