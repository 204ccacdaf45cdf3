//! One member of a classic group: who it is, what protocols it speaks, its timeouts,
//! its assignment, and which of its requests the coordinator is holding.
//!
//! Pure: no I/O, no clocks.

use bytes::Bytes;

/// Identifies a JoinGroup or SyncGroup request parked by the runtime until the group
/// can answer it; opaque to the state machine.
pub type RequestId = u64;

/// One protocol a member supports (e.g. the `range` assignor) with its metadata
/// (for consumers: the subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// Protocol name.
    pub name: String,
    /// Opaque protocol metadata.
    pub metadata: Bytes,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member id, assigned by the coordinator.
    pub id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id of the member's connection.
    pub client_id: String,
    /// Address of the member's connection.
    pub client_host: String,
    /// Protocol type (e.g. `consumer`).
    pub protocol_type: String,
    /// Supported protocols, most preferred first.
    pub protocols: Vec<Protocol>,
    /// Session timeout: silence for longer removes the member.
    pub session_timeout_ms: i32,
    /// How long a rebalance waits for this member to rejoin.
    pub rebalance_timeout_ms: i32,
    /// The assignment of the current generation (empty until SyncGroup completes).
    pub assignment: Bytes,
    /// A JoinGroup of this member waiting for the rebalance to complete.
    pub(crate) awaiting_join: Option<RequestId>,
    /// A SyncGroup of this member waiting for the leader's assignment.
    pub(crate) awaiting_sync: Option<RequestId>,
    /// Added in the current rebalance and not yet through a join: its deadline is the
    /// new-member join timeout, and waiting in the join does not keep it alive.
    pub(crate) is_new: bool,
    /// When the session expires unless the member is heard from.
    pub(crate) heartbeat_deadline_ms: Option<i64>,
}

impl Member {
    /// A member with no assignment and no parked requests.
    pub fn new(id: impl Into<String>, protocol_type: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            instance_id: None,
            client_id: String::new(),
            client_host: String::new(),
            protocol_type: protocol_type.into(),
            protocols: Vec::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
            heartbeat_deadline_ms: None,
        }
    }

    /// Whether a JoinGroup of this member is parked.
    pub fn is_awaiting_join(&self) -> bool {
        self.awaiting_join.is_some()
    }

    /// Whether a SyncGroup of this member is parked.
    pub fn is_awaiting_sync(&self) -> bool {
        self.awaiting_sync.is_some()
    }

    /// When the member's session expires, if a deadline is running.
    pub fn heartbeat_deadline_ms(&self) -> Option<i64> {
        self.heartbeat_deadline_ms
    }

    /// Whether the member's session survives its deadline: members waiting in a
    /// rebalance are alive, except new ones (their client may be gone).
    pub(crate) fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.is_awaiting_join() || self.is_awaiting_sync())
    }

    /// Whether `protocols` is exactly what the member already supports (names,
    /// metadata and order).
    pub fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// Whether the member supports a protocol of this name.
    pub fn supports(&self, name: &str) -> bool {
        self.protocols.iter().any(|p| p.name == name)
    }

    /// The member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// The member's most preferred protocol among `candidates`.
    pub fn vote<'a>(&self, candidates: &[&'a str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .find_map(|p| candidates.iter().find(|c| **c == p.name).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(name: &str, meta: &'static [u8]) -> Protocol {
        Protocol {
            name: name.into(),
            metadata: Bytes::from_static(meta),
        }
    }

    #[test]
    fn votes_for_most_preferred_candidate() {
        let mut m = Member::new("m", "consumer");
        m.protocols = vec![proto("sticky", b"s"), proto("range", b"r")];
        assert_eq!(m.vote(&["range", "sticky"]), Some("sticky"));
        assert_eq!(m.vote(&["range"]), Some("range"));
        assert_eq!(m.vote(&["roundrobin"]), None);
        assert_eq!(m.metadata("range"), Bytes::from_static(b"r"));
        assert_eq!(m.metadata("other"), Bytes::new());
        assert!(m.matches(&[proto("sticky", b"s"), proto("range", b"r")]));
        assert!(!m.matches(&[proto("range", b"r"), proto("sticky", b"s")]));
        assert!(!m.matches(&[proto("sticky", b"x"), proto("range", b"r")]));
    }

    #[test]
    fn waiting_keeps_only_established_members_alive() {
        let mut m = Member::new("m", "consumer");
        assert!(!m.has_satisfied_heartbeat());
        m.awaiting_join = Some(1);
        assert!(m.has_satisfied_heartbeat());
        m.is_new = true;
        assert!(!m.has_satisfied_heartbeat());
        m.is_new = false;
        m.awaiting_join = None;
        m.awaiting_sync = Some(2);
        assert!(m.has_satisfied_heartbeat());
    }
}
