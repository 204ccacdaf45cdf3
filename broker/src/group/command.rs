//! What goes into and comes out of the group state machine: requests as it sees
//! them, its answers, the commands the runtime executes, and descriptions.
//!
//! Pure data: no I/O, no decisions.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::member::{Protocol, RequestId};
use super::records::{GroupMetadataValue, TopicPartition};
use super::state::GroupState;

/// A JoinGroup, as the state machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The parked request to answer.
    pub request: RequestId,
    /// Member id, empty for a member that has none yet.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id of the connection.
    pub client_id: String,
    /// Address of the connection.
    pub client_host: String,
    /// Protocol type (e.g. `consumer`).
    pub protocol_type: String,
    /// Supported protocols, most preferred first.
    pub protocols: Vec<Protocol>,
    /// Requested session timeout.
    pub session_timeout_ms: i32,
    /// Requested rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a rejoining static leader gets the members with `skip_assignment`.
    pub supports_skip_assignment: bool,
    /// The member id to give this member if it is new.
    pub new_member_id: String,
}

/// A SyncGroup, as the state machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The parked request to answer.
    pub request: RequestId,
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Generation the member joined.
    pub generation: i32,
    /// SyncGroup v5+: the protocol type the member expects.
    pub protocol_type: Option<String>,
    /// SyncGroup v5+: the protocol the member expects.
    pub protocol_name: Option<String>,
    /// The leader's assignment: member id → assignment.
    pub assignments: Vec<(String, Bytes)>,
}

/// One member named in a LeaveGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMember {
    /// Member id; empty to name a static member by instance id only.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinOutcome {
    /// Error, if the join failed.
    pub error: Option<ResponseError>,
    /// Generation id (-1 on error).
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// Member id of the leader.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// All members with their metadata: for the leader only.
    pub members: Vec<JoinedMember>,
    /// The leader need not compute an assignment (static leader rejoin, v9+).
    pub skip_assignment: bool,
}

impl JoinOutcome {
    /// A failed join.
    pub fn error(error: ResponseError, member_id: impl Into<String>) -> Self {
        Self {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.into(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// The member's metadata for the selected protocol.
    pub metadata: Bytes,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Error, if the sync failed.
    pub error: Option<ResponseError>,
    /// The group's protocol type (on success).
    pub protocol_type: Option<String>,
    /// The selected protocol (on success).
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncOutcome {
    /// A failed sync.
    pub fn error(error: ResponseError) -> Self {
        Self {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// What the runtime must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Answer a parked JoinGroup.
    Join {
        /// The request.
        request: RequestId,
        /// Its answer.
        outcome: JoinOutcome,
    },
    /// Answer a parked SyncGroup.
    Sync {
        /// The request.
        request: RequestId,
        /// Its answer.
        outcome: SyncOutcome,
    },
    /// Write the group's metadata; then call `Group::on_persisted(then, result)`.
    Persist {
        /// What to write.
        value: GroupMetadataValue,
        /// What depends on the write.
        then: AfterPersist,
    },
}

/// What waits for a metadata write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPersist {
    /// Nothing (e.g. the group became empty); a failure is only logged.
    Nothing,
    /// The leader's assignment for `generation`: hand it out on success.
    Assignment {
        /// Generation the assignment belongs to.
        generation: i32,
        /// Member id → assignment, for every member.
        assignments: BTreeMap<String, Bytes>,
    },
    /// A static member rejoined under a new member id without a rebalance.
    StaticRejoin(Box<StaticRejoin>),
}

/// A static member's replacement waiting to be persisted; undone if the write fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRejoin {
    /// The parked JoinGroup.
    pub request: RequestId,
    /// `group.instance.id`.
    pub instance_id: String,
    /// The member id being replaced.
    pub old_member_id: String,
    /// The new member id.
    pub new_member_id: String,
    /// Protocols before the rejoin.
    pub old_protocols: Vec<Protocol>,
    /// Rebalance timeout before the rejoin.
    pub old_rebalance_timeout_ms: i32,
    /// Session timeout before the rejoin.
    pub old_session_timeout_ms: i32,
    /// Leader before the replacement.
    pub leader_before: Option<String>,
    /// The JoinGroup was v9+.
    pub supports_skip_assignment: bool,
}

/// A description of a group for DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// State.
    pub state: GroupState,
    /// Protocol type ("" if none).
    pub protocol_type: String,
    /// Selected protocol when Stable, else "".
    pub protocol_data: String,
    /// Members; metadata and assignment only when Stable.
    pub members: Vec<DescribedMember>,
}

/// One member in a `GroupDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata for the selected protocol.
    pub metadata: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

/// Offsets that expired and whether the group itself is gone with them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expiry {
    /// Partitions whose offsets were removed (tombstones are due).
    pub offsets: Vec<TopicPartition>,
    /// The group is empty with nothing left: remove it (a tombstone is due).
    pub delete_group: bool,
}
