//! The openraft type configuration of the metadata quorum: what a log entry
//! carries (a batch of metadata records) and what applying one returns (the
//! image right after it).
//!
//! Owns: the mapping of Skiff's metadata onto openraft's generic types. Must
//! not: leak outside `quorum` — the public API speaks `MetadataRecord` and
//! `MetadataImage` only.

use std::io::Cursor;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::metadata::{MetadataImage, MetadataRecord};

/// Node id on the wire and in the log: the broker id.
pub(crate) type NodeId = i32;

openraft::declare_raft_types!(
    /// Raft types of the metadata quorum.
    pub(crate) TypeConfig:
        D = Batch,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The payload of one normal log entry: records applied together, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Batch {
    pub records: Vec<MetadataRecord>,
}

/// What applying one entry returns to the proposer: the image right after it.
///
/// Never crosses the network (responses are local), so the image is skipped by serde.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Applied {
    #[serde(skip)]
    pub image: Arc<MetadataImage>,
}

pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type Raft = openraft::Raft<TypeConfig>;
