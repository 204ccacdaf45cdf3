//! Table tests of the group state machine: every transition and every error, driven
//! by events and the clock, asserting the commands that come out.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError as E;

use super::*;
use crate::group::records::TopicPartition;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 5_000;

fn cfg() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        min_session_timeout_ms: 1_000,
        max_session_timeout_ms: 60_000,
        ..GroupConfig::default()
    }
}

/// Consumer-protocol metadata subscribing to `topics` (version-0 layout).
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

fn proto(name: &str, metadata: Bytes) -> Protocol {
    Protocol {
        name: name.into(),
        metadata,
    }
}

fn range(topics: &[&str]) -> Vec<Protocol> {
    vec![proto("range", subscription(topics))]
}

fn join_req(request: RequestId, member_id: &str, new_member_id: &str) -> JoinRequest {
    JoinRequest {
        request,
        member_id: member_id.into(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        protocol_type: "consumer".into(),
        protocols: range(&["t"]),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        require_known_member_id: false,
        supports_skip_assignment: false,
        new_member_id: new_member_id.into(),
    }
}

fn joins(cmds: &[Command]) -> BTreeMap<RequestId, JoinOutcome> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Join { request, outcome } => Some((*request, outcome.clone())),
            _ => None,
        })
        .collect()
}

fn syncs(cmds: &[Command]) -> BTreeMap<RequestId, SyncOutcome> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Sync { request, outcome } => Some((*request, outcome.clone())),
            _ => None,
        })
        .collect()
}

fn persists(cmds: &[Command]) -> Vec<(GroupMetadataValue, AfterPersist)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Persist { value, then } => Some((value.clone(), then.clone())),
            _ => None,
        })
        .collect()
}

fn member_ids(g: &Group) -> Vec<String> {
    g.members().map(|m| m.id.clone()).collect()
}

/// A step that brings the harness into the state a case needs.
type Setup = fn(&mut H);
/// (name, setup, member id, generation, SyncGroup protocol name, expected error).
type SyncCase = (
    &'static str,
    Setup,
    &'static str,
    i32,
    Option<&'static str>,
    E,
);
/// (name, setup, member id, instance id, generation, expected result).
type MemberCase = (
    &'static str,
    Setup,
    &'static str,
    Option<&'static str>,
    i32,
    Result<(), E>,
);

/// A group, a clock and request ids.
struct H {
    g: Group,
    cfg: GroupConfig,
    now: i64,
    next: RequestId,
}

impl H {
    fn new() -> Self {
        Self::with(cfg())
    }

    fn with(cfg: GroupConfig) -> Self {
        Self {
            g: Group::new("g"),
            cfg,
            now: 1_000,
            next: 0,
        }
    }

    fn req(&mut self) -> RequestId {
        self.next += 1;
        self.next
    }

    /// A JoinGroup of `member_id` ("" for a new member that will be `new_id`).
    fn join_with(
        &mut self,
        member_id: &str,
        new_id: &str,
        edit: impl FnOnce(&mut JoinRequest),
    ) -> (RequestId, Vec<Command>) {
        let r = self.req();
        let mut req = join_req(r, member_id, new_id);
        edit(&mut req);
        (r, self.g.join(req, self.now, &self.cfg))
    }

    fn join(&mut self, member_id: &str, new_id: &str) -> (RequestId, Vec<Command>) {
        self.join_with(member_id, new_id, |_| {})
    }

    fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: &[(&str, &'static [u8])],
    ) -> (RequestId, Vec<Command>) {
        let r = self.req();
        let req = SyncRequest {
            request: r,
            member_id: member_id.into(),
            instance_id: self.g.member(member_id).and_then(|m| m.instance_id.clone()),
            generation,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| ((*m).to_owned(), Bytes::from_static(a)))
                .collect(),
        };
        (r, self.g.sync(req, self.now, &self.cfg))
    }

    fn tick(&mut self, to: i64) -> Vec<Command> {
        self.now = to;
        self.g.on_timer(to, &self.cfg)
    }

    fn persisted(&mut self, then: AfterPersist, result: Result<(), E>) -> Vec<Command> {
        self.g.on_persisted(then, result, self.now, &self.cfg)
    }

    /// Members `ids` join a new group together and sync; the group ends Stable at
    /// generation 1 with assignment `a-<id>` for each.
    fn stable(ids: &[&str]) -> Self {
        let mut h = Self::new();
        let mut requests = Vec::new();
        for id in ids {
            let (r, out) = h.join("", id);
            assert!(out.is_empty(), "the initial delay parks every join");
            requests.push(r);
        }
        let out = h.tick(h.now);
        assert_eq!(joins(&out).len(), ids.len());
        assert_eq!(h.g.state(), GroupState::CompletingRebalance);
        let leader = h.g.leader().expect("a leader").to_owned();
        let assignments: Vec<(String, Bytes)> = ids
            .iter()
            .map(|id| ((*id).to_owned(), Bytes::from(format!("a-{id}"))))
            .collect();
        let r = h.req();
        let out = h.g.sync(
            SyncRequest {
                request: r,
                member_id: leader,
                instance_id: None,
                generation: 1,
                protocol_type: None,
                protocol_name: None,
                assignments,
            },
            h.now,
            &h.cfg,
        );
        let (_, then) = persists(&out).pop().expect("a metadata write");
        let out = h.persisted(then, Ok(()));
        assert_eq!(syncs(&out).len(), 1);
        for id in ids {
            if Some(*id) != h.g.leader() {
                let (_, out) = h.sync(id, 1, &[]);
                assert_eq!(syncs(&out).len(), 1);
            }
        }
        assert_eq!(h.g.state(), GroupState::Stable);
        h
    }
}

// ----- JoinGroup errors -----------------------------------------------------------

#[test]
fn join_errors() {
    type Edit = fn(&mut JoinRequest);
    let none: Setup = |_| {};
    let stable: Setup = |h| *h = H::stable(&["m1", "m2"]);
    let cases: &[(&str, Setup, &str, Edit, E, &str)] = &[
        (
            "session timeout below min",
            none,
            "",
            |r| r.session_timeout_ms = 999,
            E::InvalidSessionTimeout,
            "",
        ),
        (
            "session timeout above max",
            none,
            "x",
            |r| r.session_timeout_ms = 60_001,
            E::InvalidSessionTimeout,
            "x",
        ),
        (
            "empty protocol type",
            none,
            "",
            |r| r.protocol_type.clear(),
            E::InconsistentGroupProtocol,
            "",
        ),
        (
            "no protocols",
            none,
            "",
            |r| r.protocols.clear(),
            E::InconsistentGroupProtocol,
            "",
        ),
        (
            "known id, empty group",
            none,
            "ghost",
            |_| {},
            E::UnknownMemberId,
            "ghost",
        ),
        (
            "unknown id, stable group",
            stable,
            "ghost",
            |_| {},
            E::UnknownMemberId,
            "ghost",
        ),
        (
            "other protocol type",
            stable,
            "",
            |r| r.protocol_type = "connect".into(),
            E::InconsistentGroupProtocol,
            "",
        ),
        (
            "no common protocol",
            stable,
            "",
            |r| r.protocols = vec![proto("roundrobin", Bytes::new())],
            E::InconsistentGroupProtocol,
            "",
        ),
        (
            "two-step join (v4+)",
            none,
            "",
            |r| r.require_known_member_id = true,
            E::MemberIdRequired,
            "new",
        ),
        (
            "unknown instance id with member id",
            stable,
            "m1",
            |r| r.instance_id = Some("i9".into()),
            E::UnknownMemberId,
            "m1",
        ),
        (
            "dead group",
            |h| {
                h.g.shut(E::NotCoordinator);
            },
            "",
            |_| {},
            E::CoordinatorNotAvailable,
            "",
        ),
        (
            "dead group, known id",
            |h| {
                h.g.shut(E::NotCoordinator);
            },
            "m1",
            |_| {},
            E::CoordinatorNotAvailable,
            "m1",
        ),
    ];
    for (name, setup, member_id, edit, want, want_member) in cases {
        let mut h = H::new();
        setup(&mut h);
        let state = h.g.state();
        let generation = h.g.generation();
        let (r, out) = h.join_with(member_id, "new", *edit);
        let outcome = joins(&out)
            .remove(&r)
            .unwrap_or_else(|| panic!("{name}: no answer"));
        assert_eq!(outcome.error, Some(*want), "{name}");
        assert_eq!(outcome.member_id, *want_member, "{name}");
        assert_eq!(outcome.generation, -1, "{name}");
        assert_eq!(h.g.state(), state, "{name}: state unchanged");
        assert_eq!(h.g.generation(), generation, "{name}");
    }
}

#[test]
fn two_step_join_registers_a_pending_member_until_it_rejoins_or_times_out() {
    let mut h = H::new();
    let (r, out) = h.join_with("", "c-1", |r| r.require_known_member_id = true);
    assert_eq!(joins(&out)[&r].error, Some(E::MemberIdRequired));
    assert_eq!(joins(&out)[&r].member_id, "c-1");
    assert!(h.g.is_pending("c-1"));
    assert_eq!(h.g.state(), GroupState::Empty);
    assert!(!h.g.is_blank(), "a pending member keeps the group");
    assert_eq!(h.g.next_deadline(), Some(h.now + i64::from(SESSION)));

    // It rejoins with its id: now a member, and the rebalance starts.
    let (r2, out) = h.join_with("c-1", "unused", |r| r.require_known_member_id = true);
    assert!(out.is_empty());
    assert!(!h.g.is_pending("c-1"));
    assert_eq!(member_ids(&h.g), ["c-1"]);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    let out = h.tick(h.now);
    assert_eq!(joins(&out)[&r2].member_id, "c-1");
    assert_eq!(joins(&out)[&r2].generation, 1);

    // A pending member that never comes back is dropped after its session timeout.
    let mut h = H::new();
    h.join_with("", "c-2", |r| r.require_known_member_id = true);
    assert!(h.tick(h.now + i64::from(SESSION) - 1).is_empty());
    assert!(h.g.is_pending("c-2"));
    h.tick(h.now + 1);
    assert!(!h.g.is_pending("c-2"));
    assert!(h.g.is_blank());
}

#[test]
fn group_max_size_rejects_new_members_and_drops_late_ones() {
    let mut h = H::stable(&["m1", "m2"]);
    h.cfg.max_size = 2;
    let (r, out) = h.join("", "m3");
    assert_eq!(joins(&out)[&r].error, Some(E::GroupMaxSizeReached));
    assert_eq!(member_ids(&h.g), ["m1", "m2"]);
    assert_eq!(h.g.state(), GroupState::Stable);

    // With the limit lowered to 1 during a rebalance, the member that rejoins second
    // is dropped and the first completes the rebalance alone.
    h.cfg.max_size = 1;
    let (r1, out) = h.join_with("m1", "", |r| r.protocols = range(&["t", "u"]));
    assert!(out.is_empty());
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    let (r2, out) = h.join("m2", "");
    let answers = joins(&out);
    assert_eq!(answers[&r2].error, Some(E::GroupMaxSizeReached));
    assert_eq!(answers[&r1].error, None);
    assert_eq!(answers[&r1].generation, 2);
    assert_eq!(member_ids(&h.g), ["m1"]);
}

#[test]
fn a_full_group_takes_a_restarting_static_member_back() {
    let (mut h, _) = static_stable();
    h.cfg.max_size = 2;
    let (r, out) = h.join_with("", "d-1", |_| {});
    assert_eq!(joins(&out)[&r].error, Some(E::GroupMaxSizeReached));
    let (_, out) = h.join_with("", "i2-b", |r| r.instance_id = Some("i2".into()));
    assert!(joins(&out).is_empty());
    assert_eq!(persists(&out).len(), 1, "replaced without a rebalance");
    assert_eq!(member_ids(&h.g), ["i1-a", "i2-b"]);
}

// ----- the initial rebalance ------------------------------------------------------

#[test]
fn initial_delay_waits_and_extends_while_members_arrive() {
    let mut h = H::with(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..cfg()
    });
    let start = h.now;
    let (r1, out) = h.join("", "m1");
    assert!(out.is_empty());
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert_eq!(h.g.next_deadline(), Some(start + 3_000));

    // Everyone has joined, yet the initial delay is not cut short.
    h.now += 1_000;
    let (r2, out) = h.join("", "m2");
    assert!(out.is_empty());

    // The delay ends with a new member seen: wait min(delay, rebalance - delay) more.
    assert!(h.tick(start + 3_000).is_empty());
    assert_eq!(h.g.next_deadline(), Some(start + 5_000));
    let out = h.tick(start + 5_000);
    let answers = joins(&out);
    assert_eq!(answers.len(), 2);
    let leader = &answers[&r1];
    assert_eq!(leader.error, None);
    assert_eq!(leader.generation, 1);
    assert_eq!(leader.leader, "m1");
    assert_eq!(leader.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(leader.protocol_name.as_deref(), Some("range"));
    assert_eq!(
        leader
            .members
            .iter()
            .map(|m| m.member_id.as_str())
            .collect::<Vec<_>>(),
        ["m1", "m2"]
    );
    assert_eq!(leader.members[0].metadata, subscription(&["t"]));
    let follower = &answers[&r2];
    assert_eq!(follower.leader, "m1");
    assert_eq!(follower.member_id, "m2");
    assert!(follower.members.is_empty());
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
    // Sessions run from the join response on; the sync deadline is the rebalance timeout.
    assert_eq!(
        h.g.member("m2").expect("member").heartbeat_deadline_ms(),
        Some(start + 5_000 + i64::from(SESSION))
    );
    assert_eq!(
        h.g.next_deadline(),
        Some(start + 5_000 + i64::from(REBALANCE))
    );
}

#[test]
fn initial_delay_without_new_members_ends_after_one_delay() {
    let mut h = H::with(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..cfg()
    });
    let start = h.now;
    let (r, _) = h.join("", "m1");
    assert!(h.tick(start + 2_999).is_empty());
    let out = h.tick(start + 3_000);
    assert_eq!(joins(&out)[&r].generation, 1);
    assert_eq!(joins(&out)[&r].members.len(), 1);
}

// ----- SyncGroup ------------------------------------------------------------------

#[test]
fn leader_sync_persists_then_hands_out_assignments() {
    let mut h = H::new();
    h.join("", "m1");
    h.join("", "m2");
    h.tick(h.now);
    // The follower syncs first and waits.
    let (rf, out) = h.sync("m2", 1, &[]);
    assert!(out.is_empty());
    // The leader leaves m2 out and names a stranger: m2 gets an empty assignment.
    let (rl, out) = h.sync("m1", 1, &[("m1", b"A1"), ("stranger", b"X")]);
    let (value, then) = persists(&out).pop().expect("a metadata write");
    assert_eq!(value.generation, 1);
    assert_eq!(value.leader.as_deref(), Some("m1"));
    assert_eq!(value.protocol.as_deref(), Some("range"));
    let stored: Vec<(&str, &[u8])> = value
        .members
        .iter()
        .map(|m| (m.member_id.as_str(), m.assignment.as_ref()))
        .collect();
    assert_eq!(stored, [("m1", &b"A1"[..]), ("m2", &b""[..])]);
    assert_eq!(value.members[0].subscription, subscription(&["t"]));
    assert_eq!(
        h.g.state(),
        GroupState::CompletingRebalance,
        "not before it is durable"
    );

    let out = h.persisted(then, Ok(()));
    let answers = syncs(&out);
    assert_eq!(answers[&rl].assignment, Bytes::from_static(b"A1"));
    assert_eq!(answers[&rl].protocol_name.as_deref(), Some("range"));
    assert_eq!(answers[&rf].assignment, Bytes::new());
    assert_eq!(answers[&rf].error, None);
    assert_eq!(h.g.state(), GroupState::Stable);

    // In Stable a SyncGroup just returns the member's assignment.
    let (r, out) = h.sync("m1", 1, &[]);
    assert_eq!(syncs(&out)[&r].assignment, Bytes::from_static(b"A1"));
}

#[test]
fn failed_assignment_write_fails_the_syncs_and_rebalances() {
    let mut h = H::new();
    h.join("", "m1");
    h.join("", "m2");
    h.tick(h.now);
    let (rf, _) = h.sync("m2", 1, &[]);
    let (rl, out) = h.sync("m1", 1, &[("m1", b"A1"), ("m2", b"A2")]);
    let (_, then) = persists(&out).pop().expect("a metadata write");
    let out = h.persisted(then, Err(E::NotCoordinator));
    let answers = syncs(&out);
    assert_eq!(answers[&rl].error, Some(E::NotCoordinator));
    assert_eq!(answers[&rf].error, Some(E::NotCoordinator));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert!(h.g.members().all(|m| m.assignment.is_empty()));
}

#[test]
fn assignment_written_for_an_old_generation_is_ignored() {
    let mut h = H::new();
    h.join("", "m1");
    h.tick(h.now);
    let (rl, out) = h.sync("m1", 1, &[("m1", b"A1")]);
    let (_, then) = persists(&out).pop().expect("a metadata write");
    // A member joins while the write is in flight: the leader is told to rejoin.
    let (_, out) = h.join("", "m2");
    assert_eq!(syncs(&out)[&rl].error, Some(E::RebalanceInProgress));
    assert!(h.persisted(then, Ok(())).is_empty());
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert!(h.g.member("m1").expect("member").assignment.is_empty());
}

#[test]
fn sync_errors() {
    let cases: &[SyncCase] = &[
        ("empty group", |_| {}, "m1", 0, None, E::UnknownMemberId),
        (
            "unknown member",
            |h| *h = H::stable(&["m1"]),
            "ghost",
            1,
            None,
            E::UnknownMemberId,
        ),
        (
            "old generation",
            |h| *h = H::stable(&["m1"]),
            "m1",
            0,
            None,
            E::IllegalGeneration,
        ),
        (
            "other protocol",
            |h| *h = H::stable(&["m1"]),
            "m1",
            1,
            Some("sticky"),
            E::InconsistentGroupProtocol,
        ),
        (
            "rebalance in progress",
            |h| {
                *h = H::stable(&["m1", "m2"]);
                h.join("", "m3");
            },
            "m1",
            1,
            None,
            E::RebalanceInProgress,
        ),
        (
            "dead group",
            |h| {
                *h = H::stable(&["m1"]);
                h.g.shut(E::NotCoordinator);
            },
            "m1",
            1,
            None,
            E::CoordinatorNotAvailable,
        ),
    ];
    for (name, setup, member, generation, protocol, want) in cases {
        let mut h = H::new();
        setup(&mut h);
        let r = h.req();
        let out = h.g.sync(
            SyncRequest {
                request: r,
                member_id: (*member).into(),
                instance_id: None,
                generation: *generation,
                protocol_type: Some("consumer".into()),
                protocol_name: protocol.map(str::to_owned),
                assignments: Vec::new(),
            },
            h.now,
            &h.cfg,
        );
        assert_eq!(syncs(&out)[&r].error, Some(*want), "{name}");
    }
}

// ----- Heartbeat ------------------------------------------------------------------

#[test]
fn heartbeat_answers_by_state() {
    let cases: &[MemberCase] = &[
        ("stable", |_| {}, "m1", None, 1, Ok(())),
        (
            "unknown member",
            |_| {},
            "ghost",
            None,
            1,
            Err(E::UnknownMemberId),
        ),
        (
            "old generation",
            |_| {},
            "m1",
            None,
            0,
            Err(E::IllegalGeneration),
        ),
        (
            "rebalancing",
            |h| drop(h.join("", "m3")),
            "m1",
            None,
            1,
            Err(E::RebalanceInProgress),
        ),
        (
            "completing rebalance",
            |h| {
                h.join("", "m3");
                h.join("m1", "");
                h.join("m2", "");
            },
            "m1",
            None,
            2,
            Ok(()),
        ),
        (
            "unknown instance",
            |_| {},
            "m1",
            Some("i1"),
            1,
            Err(E::UnknownMemberId),
        ),
        (
            "dead",
            |h| drop(h.g.shut(E::NotCoordinator)),
            "m1",
            None,
            1,
            Err(E::CoordinatorNotAvailable),
        ),
    ];
    for (name, setup, member, instance, generation, want) in cases {
        let mut h = H::stable(&["m1", "m2"]);
        setup(&mut h);
        assert_eq!(
            h.g.heartbeat(member, *instance, *generation, h.now),
            *want,
            "{name}"
        );
    }
    // A heartbeat pushes the session deadline.
    let mut h = H::stable(&["m1"]);
    h.now += 5_000;
    h.g.heartbeat("m1", None, 1, h.now).expect("heartbeat");
    assert_eq!(
        h.g.member("m1").expect("member").heartbeat_deadline_ms(),
        Some(h.now + i64::from(SESSION))
    );
}

// ----- rebalances -----------------------------------------------------------------

#[test]
fn third_member_triggers_rebalance_that_completes_when_all_rejoin() {
    let mut h = H::stable(&["m1", "m2"]);
    let (r3, out) = h.join("", "m3");
    assert!(out.is_empty());
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.g.heartbeat("m1", None, 1, h.now),
        Err(E::RebalanceInProgress)
    );
    assert_eq!(
        h.g.heartbeat("m2", None, 1, h.now),
        Err(E::RebalanceInProgress)
    );
    let (r1, out) = h.join("m1", "");
    assert!(out.is_empty(), "m2 has not rejoined yet");
    let (r2, out) = h.join("m2", "");
    let answers = joins(&out);
    assert_eq!(answers.len(), 3);
    for r in [r1, r2, r3] {
        assert_eq!(answers[&r].generation, 2);
        assert_eq!(answers[&r].error, None);
    }
    assert_eq!(answers[&r1].members.len(), 3, "m1 still leads");
    assert!(answers[&r2].members.is_empty());
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
    assert_eq!(h.g.heartbeat("m3", None, 2, h.now), Ok(()));
}

#[test]
fn rebalance_timeout_removes_members_that_did_not_rejoin() {
    let mut h = H::stable(&["m1", "m2"]);
    let start = h.now;
    let (r1, _) = h.join_with("m1", "", |r| r.protocols = range(&["t", "u"]));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert_eq!(h.g.next_deadline(), Some(start + i64::from(REBALANCE)));
    let out = h.tick(start + i64::from(REBALANCE));
    let answers = joins(&out);
    assert_eq!(answers[&r1].generation, 2);
    assert_eq!(answers[&r1].members.len(), 1);
    assert_eq!(member_ids(&h.g), ["m1"]);
    assert_eq!(h.g.heartbeat("m2", None, 2, h.now), Err(E::UnknownMemberId));
}

#[test]
fn leader_that_does_not_rejoin_is_replaced_by_one_that_did() {
    let mut h = H::stable(&["m1", "m2"]);
    let (r2, _) = h.join_with("m2", "", |r| r.protocols = range(&["u"]));
    let out = h.tick(h.now + i64::from(REBALANCE));
    let answers = joins(&out);
    assert_eq!(answers[&r2].leader, "m2");
    assert_eq!(answers[&r2].members.len(), 1);
    assert_eq!(h.g.leader(), Some("m2"));
}

#[test]
fn rejoin_of_stable_members() {
    // A follower with unchanged metadata learns the current generation; no rebalance.
    let mut h = H::stable(&["m1", "m2"]);
    let (r, out) = h.join("m2", "");
    let outcome = &joins(&out)[&r];
    assert_eq!((outcome.generation, outcome.leader.as_str()), (1, "m1"));
    assert!(outcome.members.is_empty());
    assert_eq!(h.g.state(), GroupState::Stable);

    // The leader rejoining asks for a rebalance (e.g. topic metadata changed).
    let (_, out) = h.join("m1", "");
    assert!(out.is_empty());
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);

    // A follower with changed metadata too.
    let mut h = H::stable(&["m1", "m2"]);
    h.join_with("m2", "", |r| r.protocols = range(&["other"]));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn rejoin_while_completing_repeats_the_join_response() {
    let mut h = H::new();
    h.join("", "m1");
    h.join("", "m2");
    h.tick(h.now);
    let (r, out) = h.join("m1", "");
    let outcome = &joins(&out)[&r];
    assert_eq!(outcome.generation, 1);
    assert_eq!(
        outcome.members.len(),
        2,
        "the leader gets the members again"
    );
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
    // Changed metadata instead restarts the rebalance; the waiting sync is told so.
    let (rs, _) = h.sync("m2", 1, &[]);
    let (_, out) = h.join_with("m1", "", |r| r.protocols = range(&["u"]));
    assert_eq!(syncs(&out)[&rs].error, Some(E::RebalanceInProgress));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_repeated_join_replaces_the_parked_one() {
    let mut h = H::stable(&["m1", "m2"]);
    h.join("", "m3");
    let (first, _) = h.join("m1", "");
    let (_, out) = h.join("m1", "");
    assert_eq!(joins(&out)[&first].error, Some(E::RebalanceInProgress));
}

#[test]
fn protocol_selection_by_vote() {
    let p = |names: &[&str]| {
        names
            .iter()
            .map(|n| proto(n, Bytes::new()))
            .collect::<Vec<_>>()
    };
    let cases: &[(&[&[&str]], &str)] = &[
        (&[&["range"]], "range"),
        (
            &[
                &["sticky", "range"],
                &["range", "sticky"],
                &["sticky", "range"],
            ],
            "sticky",
        ),
        (&[&["sticky", "range"], &["range"]], "range"),
        // A tie: the alphabetically first.
        (&[&["sticky", "range"], &["range", "sticky"]], "range"),
        (&[&["a", "b", "c"], &["c", "b"], &["b", "c"]], "b"),
    ];
    for (members, want) in cases {
        let mut h = H::new();
        let mut requests = Vec::new();
        for (i, names) in members.iter().enumerate() {
            let (r, out) = h.join_with("", &format!("m{i}"), |r| r.protocols = p(names));
            assert!(out.is_empty(), "{members:?}");
            requests.push(r);
        }
        let out = h.tick(h.now);
        assert_eq!(
            joins(&out)[&requests[0]].protocol_name.as_deref(),
            Some(*want),
            "{members:?}"
        );
        assert_eq!(h.g.protocol(), Some(*want));
    }
}

// ----- sessions and sync deadlines ----------------------------------------------------

#[test]
fn session_expiry_removes_a_member_and_rebalances() {
    let mut h = H::stable(&["m1", "m2"]);
    let start = h.now;
    // m1 heartbeats, m2 goes silent.
    h.now = start + 9_000;
    h.g.heartbeat("m1", None, 1, h.now).expect("heartbeat");
    assert!(h.tick(start + i64::from(SESSION) - 1).is_empty());
    h.tick(start + i64::from(SESSION));
    assert_eq!(member_ids(&h.g), ["m1"]);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    let (r, out) = h.join("m1", "");
    assert_eq!(joins(&out)[&r].generation, 2);
}

#[test]
fn last_member_expiring_empties_the_group_and_persists_it() {
    let mut h = H::stable(&["m1"]);
    let out = h.tick(h.now + i64::from(SESSION));
    assert_eq!(h.g.state(), GroupState::Empty);
    assert_eq!(h.g.generation(), 2);
    assert_eq!(h.g.protocol(), None);
    let (value, then) = persists(&out).pop().expect("a metadata write");
    assert_eq!(then, AfterPersist::Nothing);
    assert_eq!(value.generation, 2);
    assert!(value.members.is_empty());
    assert_eq!(value.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(h.g.next_deadline(), None);
}

#[test]
fn waiting_in_a_rebalance_keeps_a_member_alive_but_not_a_new_one() {
    let mut h = H::stable(&["m1", "m2"]);
    let start = h.now;
    // A long rebalance timeout, so sessions run out while it is in progress.
    h.join_with("", "m3", |r| r.rebalance_timeout_ms = 30_000);
    h.join("m1", "");
    // m1 waits in the join past its session timeout: it stays; silent m2 expires.
    h.tick(start + i64::from(SESSION));
    assert!(h.g.member("m1").is_some());
    assert!(h.g.member("m2").is_none());
    // Removing m2 completed the rebalance for m1 and m3; m1's session restarts.
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
    assert_eq!(
        h.g.member("m1").expect("member").heartbeat_deadline_ms(),
        Some(start + i64::from(SESSION) * 2)
    );

    // A new member whose client vanished is dropped after the new-member timeout.
    let mut h = H::stable(&["m1"]);
    h.cfg.new_member_join_timeout_ms = 2_000;
    let (r3, _) = h.join("", "m3");
    let out = h.tick(h.now + 2_000);
    assert_eq!(joins(&out)[&r3].error, Some(E::UnknownMemberId));
    assert!(h.g.member("m3").is_none());
    assert_eq!(
        h.g.state(),
        GroupState::PreparingRebalance,
        "m1 has not rejoined yet"
    );
}

#[test]
fn members_that_never_sync_are_removed_at_the_sync_deadline() {
    let mut h = H::new();
    h.join("", "m1");
    h.join("", "m2");
    h.tick(h.now);
    let deadline = h.now + i64::from(REBALANCE);
    let (_, out) = h.sync("m1", 1, &[("m1", b"A"), ("m2", b"B")]);
    let (_, then) = persists(&out).pop().expect("a metadata write");
    h.persisted(then, Ok(()));
    assert_eq!(h.g.state(), GroupState::Stable);
    // m2 heartbeats but never syncs.
    h.now = deadline - 1;
    h.g.heartbeat("m2", None, 1, h.now).expect("heartbeat");
    h.g.heartbeat("m1", None, 1, h.now).expect("heartbeat");
    h.tick(deadline);
    assert_eq!(member_ids(&h.g), ["m1"]);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

// ----- static membership ------------------------------------------------------------

fn static_stable() -> (H, RequestId) {
    let mut h = H::new();
    let (r1, _) = h.join_with("", "i1-a", |r| {
        r.instance_id = Some("i1".into());
        r.require_known_member_id = true;
    });
    let (r2, _) = h.join_with("", "i2-a", |r| r.instance_id = Some("i2".into()));
    let out = h.tick(h.now);
    assert_eq!(
        joins(&out)[&r1].error,
        None,
        "static members skip MEMBER_ID_REQUIRED"
    );
    assert_eq!(joins(&out)[&r2].members.len(), 0);
    assert_eq!(h.g.leader(), Some("i1-a"));
    assert_eq!(
        joins(&out)[&r1].members[0].instance_id.as_deref(),
        Some("i1")
    );
    let (_, out) = h.sync("i1-a", 1, &[("i1-a", b"A1"), ("i2-a", b"A2")]);
    let (_, then) = persists(&out).pop().expect("a metadata write");
    h.persisted(then, Ok(()));
    h.sync("i2-a", 1, &[]);
    assert_eq!(h.g.state(), GroupState::Stable);
    (h, r1)
}

#[test]
fn static_member_rejoin_keeps_assignment_without_rebalance() {
    let (mut h, _) = static_stable();
    let (r, out) = h.join_with("", "i2-b", |r| r.instance_id = Some("i2".into()));
    assert_eq!(h.g.state(), GroupState::Stable, "no rebalance");
    let (value, then) = persists(&out).pop().expect("a metadata write");
    assert!(value.members.iter().any(|m| m.member_id == "i2-b"));
    assert!(
        joins(&out).is_empty(),
        "answered once the new id is durable"
    );
    let out = h.persisted(then, Ok(()));
    let outcome = &joins(&out)[&r];
    assert_eq!(outcome.member_id, "i2-b");
    assert_eq!(outcome.generation, 1);
    assert_eq!(outcome.leader, "i1-a");
    assert!(!outcome.skip_assignment);
    assert_eq!(
        h.g.member("i2-b").expect("member").assignment,
        Bytes::from_static(b"A2")
    );
    // The old incarnation is fenced.
    assert_eq!(
        h.g.heartbeat("i2-a", Some("i2"), 1, h.now),
        Err(E::FencedInstanceId)
    );
    assert_eq!(
        h.g.heartbeat("i2-a", None, 1, h.now),
        Err(E::UnknownMemberId)
    );
    assert_eq!(h.g.heartbeat("i2-b", Some("i2"), 1, h.now), Ok(()));
    let (rs, out) = h.sync("i2-b", 1, &[]);
    assert_eq!(syncs(&out)[&rs].assignment, Bytes::from_static(b"A2"));
}

#[test]
fn static_leader_rejoin_by_version() {
    // v9+: the leader gets the members and skip_assignment.
    let (mut h, _) = static_stable();
    let (r, out) = h.join_with("", "i1-b", |r| {
        r.instance_id = Some("i1".into());
        r.supports_skip_assignment = true;
    });
    let (_, then) = persists(&out).pop().expect("a metadata write");
    let out = h.persisted(then, Ok(()));
    let outcome = &joins(&out)[&r];
    assert_eq!(outcome.leader, "i1-b");
    assert!(outcome.skip_assignment);
    assert_eq!(outcome.members.len(), 2);

    // Older versions: the old leader id, so the member acts as a follower.
    let (mut h, _) = static_stable();
    let (r, out) = h.join_with("", "i1-b", |r| r.instance_id = Some("i1".into()));
    let (_, then) = persists(&out).pop().expect("a metadata write");
    let out = h.persisted(then, Ok(()));
    let outcome = &joins(&out)[&r];
    assert_eq!(outcome.leader, "i1-a");
    assert!(outcome.members.is_empty());
    assert_eq!(h.g.leader(), Some("i1-b"));
}

#[test]
fn static_rejoin_is_undone_when_it_cannot_be_persisted() {
    let (mut h, _) = static_stable();
    let (r, out) = h.join_with("", "i2-b", |r| r.instance_id = Some("i2".into()));
    let (_, then) = persists(&out).pop().expect("a metadata write");
    let out = h.persisted(then, Err(E::CoordinatorNotAvailable));
    assert_eq!(joins(&out)[&r].error, Some(E::CoordinatorNotAvailable));
    assert_eq!(member_ids(&h.g), ["i1-a", "i2-a"]);
    assert_eq!(h.g.heartbeat("i2-a", Some("i2"), 1, h.now), Ok(()));
}

#[test]
fn static_rejoin_fences_the_old_members_parked_requests_and_rebalances_when_completing() {
    let mut h = H::new();
    h.join_with("", "i1-a", |r| r.instance_id = Some("i1".into()));
    h.join_with("", "i2-a", |r| r.instance_id = Some("i2".into()));
    h.tick(h.now);
    let (old_sync, _) = h.sync("i2-a", 1, &[]);
    let (_, out) = h.join_with("", "i2-b", |r| r.instance_id = Some("i2".into()));
    assert_eq!(syncs(&out)[&old_sync].error, Some(E::FencedInstanceId));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    let (_, out) = h.join("i1-a", "");
    let answers = joins(&out);
    assert!(answers.values().all(|o| o.generation == 2));
    assert_eq!(member_ids(&h.g), ["i1-a", "i2-b"]);
}

#[test]
fn static_member_that_misses_a_rebalance_stays_in_the_group() {
    let (mut h, _) = static_stable();
    let (r, _) = h.join_with("", "d-1", |_| {});
    let (r1, _) = h.join_with("i1-a", "", |r| r.instance_id = Some("i1".into()));
    // i2 does not rejoin: at the rebalance timeout it is kept, the dynamic members
    // that did rejoin go ahead.
    let out = h.tick(h.now + i64::from(REBALANCE));
    let answers = joins(&out);
    assert_eq!(answers[&r].generation, 2);
    assert_eq!(answers[&r1].members.len(), 3);
    assert!(h.g.member("i2-a").is_some());
}

// ----- LeaveGroup -------------------------------------------------------------------

#[test]
fn leave_results_per_member() {
    let leave = |id: &str, instance: Option<&str>| LeaveMember {
        member_id: id.into(),
        instance_id: instance.map(str::to_owned),
    };
    let (mut h, _) = static_stable();
    h.join("", "d-1");
    let (r, out) = h.join_with("", "p-1", |r| r.require_known_member_id = true);
    assert_eq!(joins(&out)[&r].error, Some(E::MemberIdRequired));
    let (result, out) = h.g.leave(
        &[
            leave("ghost", None),
            leave("", Some("i1")),
            leave("i2-x", Some("i2")),
            leave("", Some("nobody")),
            leave("p-1", None),
            leave("d-1", None),
        ],
        h.now,
        &h.cfg,
    );
    assert_eq!(
        result.expect("member results"),
        vec![
            Err(E::UnknownMemberId),
            Ok(()),
            Err(E::FencedInstanceId),
            Err(E::UnknownMemberId),
            Ok(()),
            Ok(()),
        ]
    );
    // d-1's parked join is answered; i2 is all that is left, and must rejoin.
    assert_eq!(joins(&out).len(), 1);
    assert!(
        joins(&out)
            .values()
            .all(|o| o.error == Some(E::UnknownMemberId))
    );
    assert_eq!(member_ids(&h.g), ["i2-a"]);
    assert!(!h.g.is_pending("p-1"));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn last_member_leaving_empties_the_group() {
    let mut h = H::stable(&["m1", "m2"]);
    let leave = |id: &str| LeaveMember {
        member_id: id.into(),
        instance_id: None,
    };
    let (result, _) = h.g.leave(&[leave("m1")], h.now, &h.cfg);
    assert_eq!(result.expect("member results"), vec![Ok(())]);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert_eq!(h.g.leader(), Some("m2"));
    let (_, out) = h.g.leave(&[leave("m2")], h.now, &h.cfg);
    assert_eq!(h.g.state(), GroupState::Empty);
    assert_eq!(h.g.generation(), 2);
    assert_eq!(persists(&out).len(), 1);
    assert_eq!(h.g.validate_delete(), Ok(()));

    h.g.shut(E::NotCoordinator);
    let (result, _) = h.g.leave(&[leave("m2")], h.now, &h.cfg);
    assert_eq!(result, Err(E::CoordinatorNotAvailable));
}

// ----- offsets ----------------------------------------------------------------------

#[test]
fn offset_commit_validation() {
    let stable: Setup = |h| *h = H::stable(&["m1"]);
    let completing: Setup = |h| {
        h.join("", "m1");
        h.tick(h.now);
    };
    let preparing: Setup = |h| {
        *h = H::stable(&["m1"]);
        h.join("", "m2");
    };
    let cases: &[MemberCase] = &[
        ("standalone, empty group", |_| {}, "", None, -1, Ok(())),
        (
            "standalone with a member id, empty group",
            |_| {},
            "x",
            None,
            -1,
            Ok(()),
        ),
        (
            "standalone, active group",
            stable,
            "",
            None,
            -1,
            Err(E::UnknownMemberId),
        ),
        ("member, stable", stable, "m1", None, 1, Ok(())),
        (
            "member, old generation",
            stable,
            "m1",
            None,
            0,
            Err(E::IllegalGeneration),
        ),
        ("stranger", stable, "x", None, 1, Err(E::UnknownMemberId)),
        (
            "stranger with generation, empty group",
            |_| {},
            "x",
            None,
            3,
            Err(E::UnknownMemberId),
        ),
        (
            "unknown instance id",
            stable,
            "m1",
            Some("i1"),
            1,
            Err(E::UnknownMemberId),
        ),
        (
            "completing rebalance",
            completing,
            "m1",
            None,
            1,
            Err(E::RebalanceInProgress),
        ),
        ("preparing rebalance", preparing, "m1", None, 1, Ok(())),
        (
            "dead",
            |h| drop(h.g.shut(E::NotCoordinator)),
            "",
            None,
            -1,
            Err(E::CoordinatorNotAvailable),
        ),
    ];
    for (name, setup, member, instance, generation, want) in cases {
        let mut h = H::new();
        setup(&mut h);
        assert_eq!(
            h.g.validate_offset_commit(member, *instance, *generation, h.now),
            *want,
            "{name}"
        );
    }
    let cases = [
        (-1, 2, Ok(())),
        (-1, 9, Ok(())),
        (1, 8, Err(E::IllegalGeneration)),
        (1, 9, Err(E::GroupIdNotFound)),
    ];
    for (generation, version, want) in cases {
        assert_eq!(check_commit_to_missing_group(generation, version), want);
    }
}

#[test]
fn commit_from_a_member_extends_its_session() {
    let mut h = H::stable(&["m1"]);
    h.now += 7_000;
    h.g.validate_offset_commit("m1", None, 1, h.now)
        .expect("valid commit");
    assert_eq!(
        h.g.member("m1").expect("member").heartbeat_deadline_ms(),
        Some(h.now + i64::from(SESSION))
    );
}

#[test]
fn deletion_rules() {
    let h = H::stable(&["m1"]);
    assert_eq!(h.g.validate_delete(), Err(E::NonEmptyGroup));
    // A consumer group may drop offsets of topics it does not consume.
    assert_eq!(h.g.validate_offset_delete(), Ok(()));
    assert!(h.g.is_subscribed_to("t"));
    assert!(!h.g.is_subscribed_to("other"));

    // Another protocol type: nothing may go while members are active.
    let mut h = H::new();
    h.join_with("", "w1", |r| r.protocol_type = "connect".into());
    assert_eq!(h.g.validate_offset_delete(), Err(E::NonEmptyGroup));
    assert_eq!(h.g.validate_delete(), Err(E::NonEmptyGroup));
    assert!(!h.g.is_subscribed_to("t"));

    // Unreadable consumer metadata counts as subscribed to everything.
    let mut h = H::new();
    h.join_with("", "m1", |r| {
        r.protocols = vec![proto("range", Bytes::from_static(b"?"))]
    });
    h.tick(h.now);
    assert!(h.g.is_subscribed_to("anything"));

    let mut h = H::new();
    h.g.shut(E::NotCoordinator);
    assert_eq!(h.g.validate_delete(), Err(E::GroupIdNotFound));
    assert_eq!(h.g.validate_offset_delete(), Err(E::GroupIdNotFound));
}

fn committed(g: &mut Group, topic: &str, p: i32, at: i64) {
    let tp = TopicPartition::new(topic, p);
    let t = g.offsets_mut().begin_commit([&tp]);
    let v = OffsetValue {
        offset: 1,
        leader_epoch: None,
        metadata: String::new(),
        commit_timestamp_ms: at,
        expire_timestamp_ms: None,
    };
    g.offsets_mut().complete_commit(t, [(tp, v)], true);
}

#[test]
fn offset_expiry_by_group_state() {
    let retention = 100_000;
    let c = GroupConfig {
        offsets_retention_ms: retention,
        ..cfg()
    };
    // Standalone committer: counted from each commit; the group goes with the last.
    let mut g = Group::new("simple");
    committed(&mut g, "t", 0, 0);
    committed(&mut g, "t", 1, 50_000);
    let e = g.expire_offsets(retention, &c);
    assert_eq!(e.offsets, vec![TopicPartition::new("t", 0)]);
    assert!(!e.delete_group);
    let e = g.expire_offsets(150_000, &c);
    assert_eq!(e.offsets, vec![TopicPartition::new("t", 1)]);
    assert!(e.delete_group);

    // Empty consumer group: counted from when it became empty.
    let mut h = H::stable(&["m1"]);
    committed(&mut h.g, "t", 0, 0);
    let _ = h.g.leave(
        &[LeaveMember {
            member_id: "m1".into(),
            instance_id: None,
        }],
        500_000,
        &h.cfg,
    );
    assert_eq!(h.g.state(), GroupState::Empty);
    assert!(
        h.g.expire_offsets(500_000 + retention - 1, &c)
            .offsets
            .is_empty()
    );
    let e = h.g.expire_offsets(500_000 + retention, &c);
    assert_eq!(e.offsets.len(), 1);
    assert!(e.delete_group);

    // Stable consumer group: only topics it does not consume, counted from the commit.
    let mut h = H::stable(&["m1"]);
    committed(&mut h.g, "t", 0, 0);
    committed(&mut h.g, "old", 0, 0);
    let e = h.g.expire_offsets(10 * retention, &c);
    assert_eq!(e.offsets, vec![TopicPartition::new("old", 0)]);
    assert!(!e.delete_group);

    // A rebalancing group keeps everything.
    h.join("", "m2");
    committed(&mut h.g, "old", 1, 0);
    assert!(h.g.expire_offsets(10 * retention, &c).offsets.is_empty());
}

// ----- loading and shutting -------------------------------------------------------------

#[test]
fn metadata_round_trips_through_replay() {
    let h = H::stable(&["m1", "m2"]);
    let value = h.g.metadata_value(None);
    let mut loaded = Group::new("g");
    loaded.replay_metadata(Some(value.clone()));
    assert!(loaded.finish_load(h.now, &h.cfg).is_empty());
    assert_eq!(loaded.state(), GroupState::Stable);
    assert_eq!(loaded.metadata_value(None).members, value.members);
    assert_eq!(loaded.generation(), 1);
    assert_eq!(loaded.leader(), Some("m1"));
    assert!(loaded.is_subscribed_to("t"));
    let d = loaded.describe();
    assert_eq!(d.protocol_data, "range");
    assert_eq!(d.members[0].assignment, Bytes::from_static(b"a-m1"));
    assert_eq!(d.members[0].client_id, "client");
    // Members rejoining after a coordinator move keep going without a rebalance.
    let mut h2 = H {
        g: loaded,
        ..H::new()
    };
    assert_eq!(h2.g.heartbeat("m2", None, 1, h2.now), Ok(()));
    let (r, out) = h2.sync("m2", 1, &[]);
    assert_eq!(syncs(&out)[&r].assignment, Bytes::from_static(b"a-m2"));
}

#[test]
fn loaded_group_over_max_size_rebalances() {
    let h = H::stable(&["m1", "m2", "m3"]);
    let mut loaded = Group::new("g");
    loaded.replay_metadata(Some(h.g.metadata_value(None)));
    let small = GroupConfig {
        max_size: 2,
        ..cfg()
    };
    loaded.finish_load(0, &small);
    assert_eq!(loaded.state(), GroupState::PreparingRebalance);
}

#[test]
fn shut_answers_every_parked_request() {
    let mut h = H::new();
    h.join("", "m1");
    h.join("", "m2");
    h.tick(h.now);
    let (rs, _) = h.sync("m2", 1, &[]);
    h.join("", "m3");
    let (rj, _) = h.join("m1", "");
    let out = h.g.shut(E::NotCoordinator);
    assert_eq!(joins(&out)[&rj].error, Some(E::NotCoordinator));
    assert_eq!(joins(&out).len(), 2, "m1 and m3 were waiting");
    assert!(
        syncs(&out).is_empty(),
        "m2's sync was already told to rejoin"
    );
    let _ = rs;
    assert_eq!(h.g.state(), GroupState::Dead);
    assert_eq!(h.g.next_deadline(), None);
}

#[test]
fn describe_hides_metadata_unless_stable() {
    let mut h = H::new();
    h.join("", "m1");
    let d = h.g.describe();
    assert_eq!(d.state, GroupState::PreparingRebalance);
    assert_eq!(d.protocol_type, "consumer");
    assert_eq!(d.protocol_data, "");
    assert_eq!(d.members.len(), 1);
    assert!(d.members[0].metadata.is_empty());
    assert_eq!(d.members[0].client_host, "/127.0.0.1");
}

#[test]
fn blank_only_when_nothing_is_left() {
    let mut h = H::new();
    assert!(h.g.is_blank());
    let (r, out) = h.join_with("", "x", |r| r.protocols.clear());
    assert_eq!(joins(&out)[&r].error, Some(E::InconsistentGroupProtocol));
    assert!(h.g.is_blank(), "a refused join leaves nothing behind");
    h.join("", "m1");
    assert!(!h.g.is_blank());
}
