//! The coordinator end to end over `MemoryStore`, with tokio's paused clock: the
//! request flows of real clients, persistence and reload, and every response
//! encoded at the version it answers.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::task::JoinHandle;

use super::*;
use crate::group::records;
use crate::group::store::MemoryStore;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn gid(s: &str) -> GroupId {
    GroupId(sb(s))
}

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

fn client(id: &str) -> ClientInfo {
    ClientInfo {
        client_id: id.to_owned(),
        client_host: "/127.0.0.1".to_owned(),
    }
}

/// Encodes a response at `version`, failing the test if the encoder refuses it.
fn encodes<T: Encodable>(message: &T, version: i16) {
    let mut buf = BytesMut::new();
    if let Err(e) = message.encode(&mut buf, version) {
        panic!(
            "{} v{version} does not encode: {e}",
            std::any::type_name::<T>()
        );
    }
}

fn join_req(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(SESSION)
        .with_rebalance_timeout_ms(REBALANCE)
        .with_member_id(sb(member))
        .with_protocol_type(sb("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(sb("range"))
                .with_metadata(subscription(&["orders"])),
        ])
}

fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, Bytes)],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(sb(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(sb(m))
                        .with_assignment(a.clone())
                })
                .collect(),
        )
}

fn heartbeat_req(group: &str, member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_member_id(sb(member))
        .with_generation_id(generation)
}

fn leave_req(group: &str, members: &[&str]) -> LeaveGroupRequest {
    LeaveGroupRequest::default()
        .with_group_id(gid(group))
        .with_members(
            members
                .iter()
                .map(|m| MemberIdentity::default().with_member_id(sb(m)))
                .collect(),
        )
}

fn commit_req(
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in offsets {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(3)
            .with_committed_metadata(Some(sb("meta")));
        match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(sb(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_member_id(sb(member))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(topics)
}

fn commit_errors(r: &OffsetCommitResponse) -> Vec<(String, i32, i16)> {
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

/// Topic → partitions of an OffsetFetch.
type Topics<'a> = &'a [(&'a str, &'a [i32])];

/// OffsetFetch v8+ of several groups: topic → partitions, `None` for all.
fn fetch_req(groups: &[(&str, Option<Topics<'_>>)]) -> OffsetFetchRequest {
    OffsetFetchRequest::default().with_groups(
        groups
            .iter()
            .map(|(g, topics)| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid(g))
                    .with_topics(topics.map(|ts| {
                        ts.iter()
                            .map(|(t, ps)| {
                                OffsetFetchRequestTopics::default()
                                    .with_name(TopicName(sb(t)))
                                    .with_partition_indexes(ps.to_vec())
                            })
                            .collect()
                    }))
            })
            .collect(),
    )
}

/// OffsetFetch before v8 of one group.
fn fetch_req_old(group: &str, topics: Option<Topics<'_>>) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(sb(t)))
                        .with_partition_indexes(ps.to_vec())
                })
                .collect()
        }))
}

/// (group, topic, partition, offset, leader epoch, metadata, error) of a v8+ response.
type FetchedRow = (String, String, i32, i64, i32, String, i16);

fn fetched(r: &OffsetFetchResponse) -> Vec<FetchedRow> {
    r.groups
        .iter()
        .flat_map(|g| {
            g.topics.iter().flat_map(move |t| {
                t.partitions.iter().map(move |p| {
                    (
                        g.group_id.to_string(),
                        t.name.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        p.error_code,
                    )
                })
            })
        })
        .collect()
}

fn row(g: &str, t: &str, p: i32, offset: i64, epoch: i32, meta: &str) -> FetchedRow {
    (g.into(), t.into(), p, offset, epoch, meta.into(), 0)
}

async fn fetch_one(c: &GroupCoordinator, group: &str, topic: &str, partition: i32) -> i64 {
    let parts = [partition];
    let topics = [(topic, &parts[..])];
    let r = c
        .offset_fetch(fetch_req(&[(group, Some(&topics[..]))]), 9)
        .await;
    r.groups[0].topics[0].partitions[0].committed_offset
}

async fn started(config: GroupConfig) -> (Arc<GroupCoordinator>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let c = GroupCoordinator::new(store.clone(), config);
    c.load().await.expect("load");
    (c, store)
}

fn spawn_join(
    c: &Arc<GroupCoordinator>,
    req: JoinGroupRequest,
    version: i16,
) -> JoinHandle<JoinGroupResponse> {
    let c = c.clone();
    tokio::spawn(async move { c.join_group(req, version).await })
}

fn spawn_sync(
    c: &Arc<GroupCoordinator>,
    req: SyncGroupRequest,
    version: i16,
) -> JoinHandle<SyncGroupResponse> {
    let c = c.clone();
    tokio::spawn(async move { c.sync_group(req, version).await })
}

async fn describe(c: &GroupCoordinator, group: &str) -> describe_groups_response::DescribedGroup {
    let r = c
        .describe_groups(
            DescribeGroupsRequest::default().with_groups(vec![gid(group)]),
            5,
        )
        .await;
    r.groups.into_iter().next().expect("found")
}

/// A formed group: member ids (in client order), generation, leader.
struct Formed {
    members: Vec<String>,
    generation: i32,
    leader: String,
}

/// The Java consumer's dance (v9): MEMBER_ID_REQUIRED, join, sync. Member `i` gets
/// assignment `asg-i`.
async fn form_group(c: &Arc<GroupCoordinator>, group: &str, clients: &[&str]) -> Formed {
    let mut ids = Vec::new();
    for name in clients {
        let r = c
            .join_group_from(join_req(group, ""), 9, &client(name))
            .await;
        assert_eq!(r.error_code, E::MemberIdRequired.code());
        assert!(
            r.member_id.starts_with(&format!("{name}-")),
            "{}",
            r.member_id
        );
        ids.push(r.member_id.to_string());
    }
    let joins: Vec<_> = ids
        .iter()
        .zip(clients)
        .map(|(id, name)| {
            let (c, req, info) = (c.clone(), join_req(group, id), client(name));
            tokio::spawn(async move { c.join_group_from(req, 9, &info).await })
        })
        .collect();
    let mut responses = Vec::new();
    for j in joins {
        let r = j.await.expect("task");
        encodes(&r, 9);
        assert_eq!(r.error_code, 0);
        responses.push(r);
    }
    let generation = responses[0].generation_id;
    let leader = responses[0].leader.to_string();
    for (id, r) in ids.iter().zip(&responses) {
        assert_eq!(r.generation_id, generation);
        assert_eq!(r.leader.as_str(), leader);
        assert_eq!(r.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
        assert_eq!(
            r.protocol_type.as_ref().map(|p| p.as_str()),
            Some("consumer")
        );
        if *id == leader {
            let mut seen: Vec<String> = r.members.iter().map(|m| m.member_id.to_string()).collect();
            seen.sort();
            let mut want = ids.clone();
            want.sort();
            assert_eq!(seen, want, "the leader gets every member");
            assert!(
                r.members
                    .iter()
                    .all(|m| m.metadata == subscription(&["orders"]))
            );
        } else {
            assert!(r.members.is_empty());
        }
    }
    let assignments: Vec<(String, Bytes)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), Bytes::from(format!("asg-{i}"))))
        .collect();
    let mut syncs = Vec::new();
    for id in ids.iter().filter(|id| **id != leader) {
        syncs.push((
            id.clone(),
            spawn_sync(c, sync_req(group, id, generation, &[]), 5),
        ));
    }
    let refs: Vec<(&str, Bytes)> = assignments
        .iter()
        .map(|(m, a)| (m.as_str(), a.clone()))
        .collect();
    syncs.push((
        leader.clone(),
        spawn_sync(c, sync_req(group, &leader, generation, &refs), 5),
    ));
    for (id, s) in syncs {
        let r = s.await.expect("task");
        encodes(&r, 5);
        assert_eq!(r.error_code, 0);
        let i = ids.iter().position(|x| *x == id).expect("found");
        assert_eq!(r.assignment, Bytes::from(format!("asg-{i}")));
        assert_eq!(r.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    }
    Formed {
        members: ids,
        generation,
        leader,
    }
}

// ----- membership -----------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn two_members_sync_then_a_third_triggers_a_rebalance() {
    let (c, store) = started(GroupConfig::default()).await;
    let f = form_group(&c, "g", &["consumer-a", "consumer-b"]).await;
    assert_eq!(f.generation, 1);
    let (a, b) = (f.members[0].clone(), f.members[1].clone());
    assert_eq!(f.leader, a, "the first member to join leads");

    let d = describe(&c, "g").await;
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.protocol_data.as_str(), "range");
    let mut clients: Vec<(String, String, Bytes)> = d
        .members
        .iter()
        .map(|m| {
            (
                m.client_id.to_string(),
                m.client_host.to_string(),
                m.member_assignment.clone(),
            )
        })
        .collect();
    clients.sort();
    assert_eq!(
        clients,
        vec![
            (
                "consumer-a".into(),
                "/127.0.0.1".into(),
                Bytes::from("asg-0")
            ),
            (
                "consumer-b".into(),
                "/127.0.0.1".into(),
                Bytes::from("asg-1")
            ),
        ]
    );
    // The generation is durable.
    assert_eq!(store.records(c.partition_for("g")).len(), 1);

    // A third member joins and parks; the others learn it from their heartbeats.
    let third = c
        .join_group_from(join_req("g", ""), 9, &client("consumer-c"))
        .await;
    let third_id = third.member_id.to_string();
    let jc = spawn_join(&c, join_req("g", &third_id), 9);
    tokio::task::yield_now().await;
    for m in [&a, &b] {
        let hb = c.heartbeat(heartbeat_req("g", m, 1), 4).await;
        assert_eq!(hb.error_code, E::RebalanceInProgress.code());
    }
    assert_eq!(
        describe(&c, "g").await.group_state.as_str(),
        "PreparingRebalance"
    );
    let ja = spawn_join(&c, join_req("g", &a), 9);
    let jb = spawn_join(&c, join_req("g", &b), 9);
    let (ra, rb, rc) = (
        ja.await.expect("task"),
        jb.await.expect("task"),
        jc.await.expect("task"),
    );
    for r in [&ra, &rb, &rc] {
        assert_eq!((r.error_code, r.generation_id), (0, 2));
        assert_eq!(r.leader.as_str(), a);
    }
    assert_eq!(ra.members.len(), 3);
    assert!(rb.members.is_empty() && rc.members.is_empty());
    let hb = c.heartbeat(heartbeat_req("g", &a, 1), 4).await;
    assert_eq!(hb.error_code, E::IllegalGeneration.code());
    let hb = c.heartbeat(heartbeat_req("g", &third_id, 2), 4).await;
    assert_eq!(hb.error_code, 0, "heartbeats are fine while completing");
}

#[tokio::test(start_paused = true)]
async fn silent_member_is_removed_after_its_session_timeout() {
    let (c, _) = started(GroupConfig::default()).await;
    let f = form_group(&c, "g", &["a", "b"]).await;
    let (a, b) = (&f.members[0], &f.members[1]);
    // a heartbeats every 3 s; b is silent.
    let mut answers = Vec::new();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        answers.push(c.heartbeat(heartbeat_req("g", a, 1), 4).await.error_code);
    }
    let rebalance = E::RebalanceInProgress.code();
    assert_eq!(answers, vec![0, 0, 0, rebalance], "b expired after 10 s");
    let hb = c.heartbeat(heartbeat_req("g", b, 1), 4).await;
    assert_eq!(hb.error_code, E::UnknownMemberId.code());
    let r = c.join_group(join_req("g", a), 9).await;
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
    assert_eq!(describe(&c, "g").await.members.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let (c, _) = started(GroupConfig::default()).await;
    let f = form_group(&c, "g", &["a", "b"]).await;
    // a rejoins (the leader forcing a rebalance); b keeps heartbeating but never rejoins.
    let ja = spawn_join(&c, join_req("g", &f.members[0]), 9);
    tokio::task::yield_now().await;
    let b = f.members[1].clone();
    let c2 = c.clone();
    let hb = tokio::spawn(async move {
        let mut codes = Vec::new();
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            codes.push(c2.heartbeat(heartbeat_req("g", &b, 1), 4).await.error_code);
        }
        codes
    });
    let ra = ja.await.expect("task");
    assert_eq!((ra.generation_id, ra.members.len()), (2, 1));
    let codes = hb.await.expect("task");
    assert!(codes.contains(&E::RebalanceInProgress.code()));
    assert_eq!(codes.last(), Some(&E::UnknownMemberId.code()));
}

#[tokio::test(start_paused = true)]
async fn static_member_restart_keeps_its_assignment() {
    let (c, store) = started(GroupConfig::default()).await;
    let static_join =
        |member: &str| join_req("g", member).with_group_instance_id(Some(sb("host-1")));
    // Static members are never asked for a member id first.
    let r = c.join_group_from(static_join(""), 5, &client("app")).await;
    encodes(&r, 5);
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let old = r.member_id.to_string();
    assert!(old.starts_with("host-1-"), "{old}");
    assert_eq!(
        r.members[0].group_instance_id.as_ref().map(|i| i.as_str()),
        Some("host-1")
    );
    let s = c
        .sync_group(
            sync_req("g", &old, 1, &[(&old, Bytes::from_static(b"P0"))])
                .with_group_instance_id(Some(sb("host-1"))),
            5,
        )
        .await;
    assert_eq!(s.assignment, Bytes::from_static(b"P0"));
    let writes = store.append_count();

    // The process restarts: same instance id, no member id. No rebalance.
    let r = c.join_group_from(static_join(""), 5, &client("app")).await;
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let new = r.member_id.to_string();
    assert_ne!(new, old);
    assert_eq!(
        r.leader.as_str(),
        old,
        "before v9 the rejoined leader is told the old id"
    );
    assert!(r.members.is_empty());
    assert_eq!(
        store.append_count(),
        writes + 1,
        "the new member id was persisted"
    );
    let s = c
        .sync_group(
            sync_req("g", &new, 1, &[]).with_group_instance_id(Some(sb("host-1"))),
            5,
        )
        .await;
    assert_eq!(
        (s.error_code, s.assignment.clone()),
        (0, Bytes::from_static(b"P0"))
    );
    let hb = c
        .heartbeat(
            heartbeat_req("g", &old, 1).with_group_instance_id(Some(sb("host-1"))),
            4,
        )
        .await;
    assert_eq!(hb.error_code, E::FencedInstanceId.code());
    let d = describe(&c, "g").await;
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id.as_str(), new);
    assert_eq!(
        d.members[0].group_instance_id.as_ref().map(|i| i.as_str()),
        Some("host-1")
    );

    // A v9 client restarting is told it leads, gets the members, and skips assigning.
    let r = c.join_group(static_join(""), 9).await;
    encodes(&r, 9);
    assert!(r.skip_assignment);
    assert_eq!(r.leader, r.member_id);
    assert_eq!(r.members.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn leaving_members_empty_the_group() {
    let (c, store) = started(GroupConfig::default()).await;
    let f = form_group(&c, "g", &["a", "b"]).await;
    let (a, b) = (&f.members[0], &f.members[1]);
    let r = c.leave_group(leave_req("g", &[b, "ghost"]), 5).await;
    encodes(&r, 5);
    assert_eq!(r.error_code, 0);
    let per_member: Vec<(String, i16)> = r
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.error_code))
        .collect();
    assert_eq!(
        per_member,
        vec![(b.clone(), 0), ("ghost".into(), E::UnknownMemberId.code())]
    );
    let hb = c.heartbeat(heartbeat_req("g", a, 1), 4).await;
    assert_eq!(hb.error_code, E::RebalanceInProgress.code());
    let r = c.join_group(join_req("g", a), 9).await;
    assert_eq!((r.generation_id, r.members.len()), (2, 1));

    // The last member leaves with the old (v0–v2) request shape.
    let old_shape = |m: &str| {
        LeaveGroupRequest::default()
            .with_group_id(gid("g"))
            .with_member_id(sb(m))
    };
    let r = c.leave_group(old_shape("ghost"), 1).await;
    encodes(&r, 1);
    assert_eq!(r.error_code, E::UnknownMemberId.code());
    assert!(r.members.is_empty());
    let r = c.leave_group(old_shape(a), 1).await;
    assert_eq!(r.error_code, 0);
    let d = describe(&c, "g").await;
    assert_eq!(d.group_state.as_str(), "Empty");
    assert!(d.members.is_empty());
    // The empty generation was written too.
    tokio::task::yield_now().await;
    let last = store.records(c.partition_for("g")).pop().expect("a record");
    match records::decode_record(&last.0, last.1.as_ref()).expect("decodes") {
        records::Record::GroupMetadata { value: Some(v), .. } => {
            assert_eq!(v.generation, 3);
            assert!(v.members.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
    // Unknown groups.
    let r = c.leave_group(leave_req("nope", &["x"]), 5).await;
    assert_eq!(r.error_code, E::UnknownMemberId.code());
}

#[tokio::test(start_paused = true)]
async fn members_that_never_sync_are_removed() {
    let (c, _) = started(GroupConfig::default()).await;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for name in ["a", "b"] {
            let r = c.join_group_from(join_req("g", ""), 9, &client(name)).await;
            ids.push(r.member_id.to_string());
        }
        ids
    };
    let joins: Vec<_> = ids
        .iter()
        .map(|id| spawn_join(&c, join_req("g", id), 9))
        .collect();
    let mut leader = String::new();
    for j in joins {
        leader = j.await.expect("task").leader.to_string();
    }
    let other = ids.iter().find(|i| **i != leader).expect("found").clone();
    // Only the leader syncs; both heartbeat.
    let s = c.sync_group(sync_req("g", &leader, 1, &[]), 5).await;
    assert_eq!(s.error_code, 0);
    let mut codes = Vec::new();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        codes.push(
            c.heartbeat(heartbeat_req("g", &other, 1), 4)
                .await
                .error_code,
        );
        c.heartbeat(heartbeat_req("g", &leader, 1), 4).await;
    }
    assert_eq!(codes.last(), Some(&E::UnknownMemberId.code()), "{codes:?}");
    assert_eq!(
        describe(&c, "g").await.group_state.as_str(),
        "PreparingRebalance"
    );
}

// ----- offsets ------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn commit_and_fetch_offsets() {
    let (c, _) = started(GroupConfig {
        offset_metadata_max_bytes: 8,
        ..GroupConfig::default()
    })
    .await;
    let f = form_group(&c, "g", &["a"]).await;
    let a = &f.members[0];
    let r = c
        .offset_commit(
            commit_req(
                "g",
                a,
                1,
                &[("orders", 0, 42), ("orders", 1, 7), ("pay", 0, 1)],
            ),
            9,
        )
        .await;
    encodes(&r, 9);
    assert_eq!(
        commit_errors(&r),
        vec![
            ("orders".into(), 0, 0),
            ("orders".into(), 1, 0),
            ("pay".into(), 0, 0)
        ]
    );

    let orders: Topics<'_> = &[("orders", &[0, 1, 2])];
    let r = c
        .offset_fetch(
            fetch_req(&[("g", Some(orders)), ("nobody", Some(orders)), ("g", None)]),
            9,
        )
        .await;
    encodes(&r, 9);
    assert!(r.groups.iter().all(|g| g.error_code == 0));
    assert_eq!(
        fetched(&r),
        vec![
            row("g", "orders", 0, 42, 3, "meta"),
            row("g", "orders", 1, 7, 3, "meta"),
            row("g", "orders", 2, -1, -1, ""),
            row("nobody", "orders", 0, -1, -1, ""),
            row("nobody", "orders", 1, -1, -1, ""),
            row("nobody", "orders", 2, -1, -1, ""),
            row("g", "orders", 0, 42, 3, "meta"),
            row("g", "orders", 1, 7, 3, "meta"),
            row("g", "pay", 0, 1, 3, "meta"),
        ]
    );

    // Older fetch versions: one group; leader epochs only from v5.
    for version in 1..=7 {
        let r = c
            .offset_fetch(fetch_req_old("g", Some(&[("orders", &[0])])), version)
            .await;
        encodes(&r, version);
        let p = &r.topics[0].partitions[0];
        let epoch = if version >= 5 { 3 } else { -1 };
        assert_eq!(
            (p.committed_offset, p.committed_leader_epoch, p.error_code),
            (42, epoch, 0),
            "v{version}"
        );
    }

    // Rejected commits.
    let cases: &[(&str, &str, i32, i16, E)] = &[
        ("g", a, 0, 9, E::IllegalGeneration),
        ("g", "stranger", 1, 9, E::UnknownMemberId),
        ("g", "", -1, 9, E::UnknownMemberId),
        ("missing", "x", 4, 8, E::IllegalGeneration),
        ("missing", "x", 4, 9, E::GroupIdNotFound),
    ];
    for (group, member, generation, version, want) in cases {
        let r = c
            .offset_commit(
                commit_req(group, member, *generation, &[("orders", 0, 99)]),
                *version,
            )
            .await;
        assert_eq!(
            commit_errors(&r),
            vec![("orders".into(), 0, want.code())],
            "{group} {member} {generation}"
        );
    }
    assert_eq!(fetch_one(&c, "g", "orders", 0).await, 42);
    assert_eq!(
        describe(&c, "missing").await.group_state.as_str(),
        "Dead",
        "not created"
    );

    // Metadata longer than offset.metadata.max.bytes fails only its partition.
    let mut req = commit_req("g", a, 1, &[("orders", 0, 50), ("orders", 1, 51)]);
    req.topics[0].partitions[1].committed_metadata = Some(sb("far too long"));
    let r = c.offset_commit(req, 9).await;
    assert_eq!(
        commit_errors(&r),
        vec![
            ("orders".into(), 0, 0),
            ("orders".into(), 1, E::OffsetMetadataTooLarge.code())
        ]
    );
    assert_eq!(fetch_one(&c, "g", "orders", 0).await, 50);
    assert_eq!(fetch_one(&c, "g", "orders", 1).await, 7);
}

#[tokio::test(start_paused = true)]
async fn standalone_commits_create_a_simple_group() {
    let (c, _) = started(GroupConfig::default()).await;
    // kafka-python / admin tools: generation -1, no member id, OffsetCommit v2.
    let r = c
        .offset_commit(
            commit_req("solo", "", -1, &[("t", 0, 5)]).with_retention_time_ms(-1),
            2,
        )
        .await;
    encodes(&r, 2);
    assert_eq!(commit_errors(&r), vec![("t".into(), 0, 0)]);
    let r = c
        .offset_fetch(fetch_req_old("solo", Some(&[("t", &[0, 1])])), 1)
        .await;
    encodes(&r, 1);
    let got: Vec<(i32, i64)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(got, vec![(0, 5), (1, -1)]);
    let listed = c.list_groups(ListGroupsRequest::default(), 5).await;
    encodes(&listed, 5);
    let solo = listed
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == "solo")
        .expect("found");
    assert_eq!(
        (
            solo.group_state.as_str(),
            solo.protocol_type.as_str(),
            solo.group_type.as_str()
        ),
        ("Empty", "", "classic")
    );
    // A group formed later takes over the id.
    let f = form_group(&c, "solo", &["a"]).await;
    assert_eq!(f.generation, 1);
    assert_eq!(fetch_one(&c, "solo", "t", 0).await, 5);
}

#[tokio::test(start_paused = true)]
async fn failed_writes_are_reported_and_change_nothing() {
    let (c, store) = started(GroupConfig::default()).await;
    let f = form_group(&c, "g", &["a", "b"]).await;
    let a = &f.members[0];
    let r = c
        .offset_commit(commit_req("g", a, 1, &[("t", 0, 10)]), 9)
        .await;
    assert_eq!(commit_errors(&r), vec![("t".into(), 0, 0)]);
    store.fail_appends(true);
    let r = c
        .offset_commit(commit_req("g", a, 1, &[("t", 0, 20)]), 9)
        .await;
    assert_eq!(
        commit_errors(&r),
        vec![("t".into(), 0, E::CoordinatorNotAvailable.code())]
    );
    assert_eq!(fetch_one(&c, "g", "t", 0).await, 10);

    // The leader's assignment cannot be stored: every sync fails and the group rebalances.
    let ja = spawn_join(&c, join_req("g", &f.members[0]), 9);
    let jb = spawn_join(&c, join_req("g", &f.members[1]), 9);
    let (ra, rb) = (ja.await.expect("task"), jb.await.expect("task"));
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    let follower = if ra.leader == ra.member_id {
        &f.members[1]
    } else {
        &f.members[0]
    };
    let leader = ra.leader.to_string();
    let sf = spawn_sync(&c, sync_req("g", follower, 2, &[]), 5);
    let sl = c
        .sync_group(
            sync_req("g", &leader, 2, &[(&leader, Bytes::from_static(b"x"))]),
            5,
        )
        .await;
    assert_eq!(sl.error_code, E::CoordinatorNotAvailable.code());
    assert_eq!(
        sf.await.expect("task").error_code,
        E::CoordinatorNotAvailable.code()
    );
    let hb = c.heartbeat(heartbeat_req("g", &leader, 2), 4).await;
    assert_eq!(hb.error_code, E::RebalanceInProgress.code());
    store.fail_appends(false);
}

#[tokio::test(start_paused = true)]
async fn offset_delete_respects_subscriptions() {
    let (c, store) = started(GroupConfig::default()).await;
    let f = form_group(&c, "g", &["a"]).await;
    c.offset_commit(
        commit_req("g", &f.members[0], 1, &[("orders", 0, 1), ("old", 0, 2)]),
        9,
    )
    .await;
    let req = OffsetDeleteRequest::default()
        .with_group_id(gid("g"))
        .with_topics(
            ["orders", "old"]
                .iter()
                .map(|t| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(sb(t)))
                        .with_partitions(vec![
                            OffsetDeleteRequestPartition::default().with_partition_index(0),
                        ])
                })
                .collect(),
        );
    let before = store.records(c.partition_for("g")).len();
    let r = c.offset_delete(req.clone(), 0).await;
    encodes(&r, 0);
    assert_eq!(r.error_code, 0);
    let codes: Vec<(String, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.to_string(), t.partitions[0].error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("orders".into(), E::GroupSubscribedToTopic.code()),
            ("old".into(), 0)
        ]
    );
    assert_eq!(fetch_one(&c, "g", "old", 0).await, -1);
    assert_eq!(fetch_one(&c, "g", "orders", 0).await, 1);
    let after = store.records(c.partition_for("g"));
    assert_eq!(after.len(), before + 1);
    assert_eq!(after.last().expect("found").1, None, "a tombstone");

    let r = c.offset_delete(req.with_group_id(gid("nope")), 0).await;
    assert_eq!(r.error_code, E::GroupIdNotFound.code());
}

// ----- persistence ------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn restart_reloads_offsets_and_groups() {
    let store = Arc::new(MemoryStore::new());
    let c = GroupCoordinator::new(store.clone(), GroupConfig::default());
    c.load().await.expect("load");
    let f = form_group(&c, "g", &["a", "b"]).await;
    let r = c
        .offset_commit(
            commit_req(
                "g",
                &f.members[0],
                1,
                &[("orders", 0, 42), ("orders", 1, 43)],
            ),
            9,
        )
        .await;
    assert_eq!(commit_errors(&r).iter().filter(|e| e.2 == 0).count(), 2);
    let members: Vec<&str> = f.members.iter().map(String::as_str).collect();
    c.leave_group(leave_req("g", &members), 5).await;
    let live = form_group(&c, "live", &["x"]).await;
    tokio::task::yield_now().await;
    c.shutdown();
    let hb = c
        .heartbeat(heartbeat_req("live", &live.members[0], 1), 4)
        .await;
    assert_eq!(hb.error_code, E::NotCoordinator.code());
    drop(c);

    let c = GroupCoordinator::new(store.clone(), GroupConfig::default());
    let hb = c
        .heartbeat(heartbeat_req("live", &live.members[0], 1), 4)
        .await;
    assert_eq!(
        hb.error_code,
        E::NotCoordinator.code(),
        "nothing is coordinated before loading"
    );
    c.load().await.expect("load");
    let r = c.offset_fetch(fetch_req(&[("g", None)]), 9).await;
    assert_eq!(
        fetched(&r),
        vec![
            row("g", "orders", 0, 42, 3, "meta"),
            row("g", "orders", 1, 43, 3, "meta")
        ]
    );
    let d = describe(&c, "g").await;
    assert_eq!(
        (d.group_state.as_str(), d.protocol_type.as_str()),
        ("Empty", "consumer")
    );
    assert!(d.members.is_empty());
    // A group that was Stable carries on: same generation, members, assignment.
    let d = describe(&c, "live").await;
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.members[0].member_id.as_str(), live.members[0]);
    assert_eq!(d.members[0].client_id.as_str(), "x");
    let hb = c
        .heartbeat(heartbeat_req("live", &live.members[0], 1), 4)
        .await;
    assert_eq!(hb.error_code, 0);
    let s = c
        .sync_group(sync_req("live", &live.members[0], 1, &[]), 5)
        .await;
    assert_eq!(s.assignment, Bytes::from("asg-0"));
    // New members join the reloaded group at the next generation.
    let r = c.join_group(join_req("g", ""), 3).await;
    assert_eq!((r.error_code, r.generation_id), (0, 3));
}

#[tokio::test(start_paused = true)]
async fn delete_groups() {
    let (c, store) = started(GroupConfig::default()).await;
    form_group(&c, "busy", &["a"]).await;
    c.offset_commit(commit_req("solo", "", -1, &[("t", 0, 5), ("t", 1, 6)]), 9)
        .await;
    let r = c
        .delete_groups(
            DeleteGroupsRequest::default().with_groups_names(vec![
                gid("busy"),
                gid("nope"),
                gid("solo"),
            ]),
            2,
        )
        .await;
    encodes(&r, 2);
    let results: Vec<(String, i16)> = r
        .results
        .iter()
        .map(|g| (g.group_id.to_string(), g.error_code))
        .collect();
    assert_eq!(
        results,
        vec![
            ("busy".into(), E::NonEmptyGroup.code()),
            ("nope".into(), E::GroupIdNotFound.code()),
            ("solo".into(), 0),
        ]
    );
    assert_eq!(fetch_one(&c, "solo", "t", 0).await, -1);
    let d = c
        .describe_groups(
            DescribeGroupsRequest::default().with_groups(vec![gid("solo")]),
            6,
        )
        .await;
    encodes(&d, 6);
    assert_eq!(d.groups[0].error_code, E::GroupIdNotFound.code());
    assert_eq!(d.groups[0].group_state.as_str(), "Dead");
    let d = describe(&c, "solo").await;
    assert_eq!(
        (d.error_code, d.group_state.as_str()),
        (0, "Dead"),
        "before v6: no error"
    );

    // Tombstones: a reload does not bring it back.
    let tombstones = store
        .records(c.partition_for("solo"))
        .iter()
        .filter(|(_, v)| v.is_none())
        .count();
    assert_eq!(tombstones, 3, "two offsets and the group");
    let c2 = GroupCoordinator::new(store.clone(), GroupConfig::default());
    c2.load().await.expect("load");
    let listed = c2.list_groups(ListGroupsRequest::default(), 3).await;
    let ids: Vec<&str> = listed.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(ids, vec!["busy"]);
}

#[tokio::test(start_paused = true)]
async fn offsets_expire_after_retention() {
    let (c, store) = started(GroupConfig {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 10_000,
        ..GroupConfig::default()
    })
    .await;
    c.offset_commit(commit_req("solo", "", -1, &[("t", 0, 5)]), 9)
        .await;
    tokio::time::sleep(Duration::from_secs(55)).await;
    assert_eq!(fetch_one(&c, "solo", "t", 0).await, 5);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(fetch_one(&c, "solo", "t", 0).await, -1);
    let listed = c.list_groups(ListGroupsRequest::default(), 5).await;
    assert!(listed.groups.is_empty());
    let records = store.records(c.partition_for("solo"));
    assert_eq!(records.iter().filter(|(_, v)| v.is_none()).count(), 2);
}

// ----- coordinator status -----------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn unloading_answers_parked_requests_with_not_coordinator() {
    let (c, _) = started(GroupConfig::default()).await;
    let j = spawn_join(&c, join_req("g", ""), 3);
    for _ in 0..10 {
        if c.group_state("g").is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(c.group_state("g"), Some(GroupState::PreparingRebalance));
    c.unload_partition(c.partition_for("g"));
    let r = j.await.expect("task");
    assert_eq!(r.error_code, E::NotCoordinator.code());
    let r = c
        .offset_commit(commit_req("g", "", -1, &[("t", 0, 1)]), 9)
        .await;
    assert_eq!(commit_errors(&r)[0].2, E::NotCoordinator.code());
    let d = c
        .describe_groups(
            DescribeGroupsRequest::default().with_groups(vec![gid("g")]),
            6,
        )
        .await;
    assert_eq!(d.groups[0].error_code, E::NotCoordinator.code());
    // Other partitions are unaffected.
    let other = (0..)
        .map(|i| format!("h{i}"))
        .find(|g| c.partition_for(g) != c.partition_for("g"))
        .expect("found");
    let r = c
        .offset_commit(commit_req(&other, "", -1, &[("t", 0, 1)]), 9)
        .await;
    assert_eq!(commit_errors(&r)[0].2, 0);
    c.load_partition(c.partition_for("g")).await.expect("task");
    let r = c
        .offset_commit(commit_req("g", "", -1, &[("t", 0, 1)]), 9)
        .await;
    assert_eq!(commit_errors(&r)[0].2, 0);
}

#[tokio::test(start_paused = true)]
async fn requests_are_checked_before_the_group() {
    let (c, _) = started(GroupConfig::default()).await;
    let r = c.join_group(join_req("", ""), 9).await;
    assert_eq!(r.error_code, E::InvalidGroupId.code());
    let r = c
        .join_group(join_req("g", "").with_session_timeout_ms(1_000), 9)
        .await;
    assert_eq!(r.error_code, E::InvalidSessionTimeout.code());
    let r = c.sync_group(sync_req("g", "m", 1, &[]), 5).await;
    assert_eq!(r.error_code, E::UnknownMemberId.code());
    let r = c.heartbeat(heartbeat_req("g", "m", 1), 4).await;
    assert_eq!(r.error_code, E::UnknownMemberId.code());
    assert_eq!(
        c.group_state("g"),
        None,
        "failed requests leave no group behind"
    );
}

#[tokio::test(start_paused = true)]
async fn list_groups_filters_by_state_and_type() {
    let (c, _) = started(GroupConfig::default()).await;
    form_group(&c, "stable", &["a"]).await;
    c.offset_commit(commit_req("empty", "", -1, &[("t", 0, 1)]), 9)
        .await;
    let list = |states: &[&str], types: &[&str]| {
        ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|s| sb(s)).collect())
            .with_types_filter(types.iter().map(|s| sb(s)).collect())
    };
    let ids = |r: &ListGroupsResponse| -> Vec<String> {
        r.groups.iter().map(|g| g.group_id.to_string()).collect()
    };
    assert_eq!(
        ids(&c.list_groups(list(&[], &[]), 5).await),
        ["empty", "stable"]
    );
    assert_eq!(
        ids(&c.list_groups(list(&["stable"], &[]), 4).await),
        ["stable"]
    );
    assert_eq!(
        ids(&c
            .list_groups(list(&["Empty", "Dead"], &["Classic"]), 5)
            .await),
        ["empty"]
    );
    assert!(ids(&c.list_groups(list(&[], &["consumer"]), 5).await).is_empty());
    let r = c.list_groups(list(&[], &[]), 0).await;
    encodes(&r, 0);
    assert_eq!(r.groups[1].protocol_type.as_str(), "consumer");
}

// ----- every version ----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn every_supported_version_answers_and_encodes() {
    let (c, _) = started(GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    })
    .await;
    for version in 0..=9i16 {
        let group = format!("g{version}");
        let mut req = join_req(&group, "");
        if version >= 5 && version % 2 == 1 {
            req = req.with_group_instance_id(Some(sb(&format!("inst-{version}"))));
        }
        let mut r = c.join_group(req.clone(), version).await;
        encodes(&r, version);
        if r.error_code == E::MemberIdRequired.code() {
            assert!(version >= 4);
            r = c
                .join_group(req.with_member_id(r.member_id.clone()), version)
                .await;
            encodes(&r, version);
        }
        assert_eq!(
            (r.error_code, r.generation_id),
            (0, 1),
            "JoinGroup v{version}"
        );
        let member = r.member_id.to_string();
        let instance = r.members[0].group_instance_id.clone();
        assert_eq!(
            instance.is_some(),
            version >= 5 && version % 2 == 1,
            "v{version}"
        );

        let sv = version.min(5);
        let s = c
            .sync_group(
                sync_req(&group, &member, 1, &[(&member, Bytes::from_static(b"A"))])
                    .with_group_instance_id(instance.clone().filter(|_| sv >= 3)),
                sv,
            )
            .await;
        encodes(&s, sv);
        assert_eq!(
            (s.error_code, s.assignment.clone()),
            (0, Bytes::from_static(b"A")),
            "SyncGroup v{sv}"
        );

        let hv = version.min(4);
        let h = c
            .heartbeat(
                heartbeat_req(&group, &member, 1)
                    .with_group_instance_id(instance.clone().filter(|_| hv >= 3)),
                hv,
            )
            .await;
        encodes(&h, hv);
        assert_eq!(h.error_code, 0, "Heartbeat v{hv}");

        let cv = version.max(2);
        let mut commit = commit_req(&group, &member, 1, &[("t", 0, i64::from(version))]);
        if cv >= 7 {
            commit = commit.with_group_instance_id(instance.clone());
        }
        let o = c.offset_commit(commit, cv).await;
        encodes(&o, cv);
        assert_eq!(
            commit_errors(&o),
            vec![("t".into(), 0, 0)],
            "OffsetCommit v{cv}"
        );

        let fv = version.max(1);
        let f = if fv >= 8 {
            c.offset_fetch(fetch_req(&[(&group, Some(&[("t", &[0])]))]), fv)
                .await
        } else {
            c.offset_fetch(fetch_req_old(&group, Some(&[("t", &[0])])), fv)
                .await
        };
        encodes(&f, fv);
        let offset = if fv >= 8 {
            f.groups[0].topics[0].partitions[0].committed_offset
        } else {
            f.topics[0].partitions[0].committed_offset
        };
        assert_eq!(offset, i64::from(version), "OffsetFetch v{fv}");

        let dv = version.min(6);
        let d = c
            .describe_groups(
                DescribeGroupsRequest::default()
                    .with_groups(vec![gid(&group)])
                    .with_include_authorized_operations(dv >= 3),
                dv,
            )
            .await;
        encodes(&d, dv);
        assert_eq!(
            d.groups[0].group_state.as_str(),
            "Stable",
            "DescribeGroups v{dv}"
        );
        assert_eq!(
            d.groups[0].members[0].member_assignment,
            Bytes::from_static(b"A")
        );
        let ops = if dv >= 3 {
            wire::GROUP_AUTHORIZED_OPERATIONS
        } else {
            i32::MIN
        };
        assert_eq!(d.groups[0].authorized_operations, ops);

        let lv = version.min(5);
        let l = c.list_groups(ListGroupsRequest::default(), lv).await;
        encodes(&l, lv);
        assert!(
            l.groups.iter().any(|g| g.group_id.as_str() == group),
            "ListGroups v{lv}"
        );

        let leave_v = version.min(5);
        let leave = if leave_v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_members(vec![
                    MemberIdentity::default()
                        .with_member_id(sb(&member))
                        .with_group_instance_id(instance.clone()),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_member_id(sb(&member))
        };
        let lr = c.leave_group(leave, leave_v).await;
        encodes(&lr, leave_v);
        assert_eq!(lr.error_code, 0, "LeaveGroup v{leave_v}");

        let delv = version.min(2);
        let del = c
            .delete_groups(
                DeleteGroupsRequest::default().with_groups_names(vec![gid(&group)]),
                delv,
            )
            .await;
        encodes(&del, delv);
        assert_eq!(del.results[0].error_code, 0, "DeleteGroups v{delv}");
    }
}
