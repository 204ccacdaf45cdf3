//! Translation between `kafka-protocol` messages and the coordinator's own types, per
//! API version: which fields a version has, which it must leave unset (the encoder
//! refuses fields a version lacks), and how old versions report errors.
//!
//! Pure: no I/O, no decisions about groups.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, OffsetCommitRequest, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::member::{Protocol, RequestId};
use super::records::{OffsetValue, TopicPartition};
use super::state::{
    GroupDescription, JoinOutcome, JoinRequest, LeaveMember, SyncOutcome, SyncRequest,
};

/// What a client connection tells about itself (from the request header and socket),
/// shown by DescribeGroups and used as the prefix of new member ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// `client.id` from the request header.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
}

/// Group type reported by ListGroups v5+.
pub const CLASSIC_GROUP_TYPE: &str = "classic";

/// Operations a client may perform on a group when there is no authorizer (READ,
/// DELETE and DESCRIBE, as AclOperation bits), for DescribeGroups v3+.
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// The wire code of an optional error.
pub fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

/// A `StrBytes` as an owned string.
pub fn string(s: &StrBytes) -> String {
    s.to_string()
}

/// An owned string as `StrBytes`.
pub fn strbytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

// ----- JoinGroup --------------------------------------------------------------

/// The state machine's view of a JoinGroup.
pub fn join_request(
    req: &JoinGroupRequest,
    version: i16,
    client: &ClientInfo,
    request: RequestId,
    new_member_id: String,
) -> JoinRequest {
    JoinRequest {
        request,
        member_id: string(&req.member_id),
        instance_id: req.group_instance_id.as_ref().map(string),
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
        protocol_type: string(&req.protocol_type),
        protocols: req
            .protocols
            .iter()
            .map(|p| Protocol {
                name: string(&p.name),
                metadata: p.metadata.clone(),
            })
            .collect(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout served as both.
        rebalance_timeout_ms: if version == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
        new_member_id,
    }
}

/// The JoinGroup response of `version`.
pub fn join_response(outcome: JoinOutcome, version: i16) -> JoinGroupResponse {
    let protocol_name = match outcome.protocol_name {
        // Before v7 the protocol name is not nullable.
        None if version < 7 => Some(StrBytes::default()),
        other => other.map(strbytes),
    };
    JoinGroupResponse::default()
        .with_error_code(code(outcome.error))
        .with_generation_id(outcome.generation)
        .with_protocol_type(if version >= 7 {
            outcome.protocol_type.map(strbytes)
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(strbytes(outcome.leader))
        .with_skip_assignment(version >= 9 && outcome.skip_assignment)
        .with_member_id(strbytes(outcome.member_id))
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(strbytes(m.member_id))
                        .with_group_instance_id(if version >= 5 {
                            m.instance_id.map(strbytes)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

// ----- SyncGroup --------------------------------------------------------------

/// The state machine's view of a SyncGroup.
pub fn sync_request(req: &SyncGroupRequest, request: RequestId) -> SyncRequest {
    SyncRequest {
        request,
        member_id: string(&req.member_id),
        instance_id: req.group_instance_id.as_ref().map(string),
        generation: req.generation_id,
        protocol_type: req.protocol_type.as_ref().map(string),
        protocol_name: req.protocol_name.as_ref().map(string),
        assignments: req
            .assignments
            .iter()
            .map(|a| (string(&a.member_id), a.assignment.clone()))
            .collect(),
    }
}

/// The SyncGroup response of `version`.
pub fn sync_response(outcome: SyncOutcome, version: i16) -> SyncGroupResponse {
    let v5 = version >= 5;
    SyncGroupResponse::default()
        .with_error_code(code(outcome.error))
        .with_protocol_type(outcome.protocol_type.filter(|_| v5).map(strbytes))
        .with_protocol_name(outcome.protocol_name.filter(|_| v5).map(strbytes))
        .with_assignment(outcome.assignment)
}

// ----- Heartbeat, LeaveGroup ---------------------------------------------------

/// The Heartbeat response.
pub fn heartbeat_response(result: Result<(), ResponseError>) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(code(result.err()))
}

/// The members a LeaveGroup names: one member id before v3, a list from v3 on.
pub fn leave_members(req: &LeaveGroupRequest, version: i16) -> Vec<LeaveMember> {
    if version < 3 {
        vec![LeaveMember {
            member_id: string(&req.member_id),
            instance_id: None,
        }]
    } else {
        req.members
            .iter()
            .map(|m| LeaveMember {
                member_id: string(&m.member_id),
                instance_id: m.group_instance_id.as_ref().map(string),
            })
            .collect()
    }
}

/// The LeaveGroup response of `version`: per-member results from v3 on; before, the
/// group-level error or else the member's.
pub fn leave_response(
    result: Result<Vec<Result<(), ResponseError>>, ResponseError>,
    members: &[LeaveMember],
    version: i16,
) -> LeaveGroupResponse {
    let (top, per_member) = match result {
        Ok(results) => (None, results),
        Err(error) => (Some(error), Vec::new()),
    };
    if version < 3 {
        let error = top.or_else(|| per_member.iter().find_map(|r| r.err()));
        return LeaveGroupResponse::default().with_error_code(code(error));
    }
    LeaveGroupResponse::default()
        .with_error_code(code(top))
        .with_members(
            members
                .iter()
                .zip(per_member)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(strbytes(m.member_id.clone()))
                        .with_group_instance_id(m.instance_id.clone().map(strbytes))
                        .with_error_code(code(r.err()))
                })
                .collect(),
        )
}

// ----- OffsetCommit -----------------------------------------------------------

/// An OffsetCommit, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// Group id.
    pub group_id: String,
    /// Member id ("" for standalone committers).
    pub member_id: String,
    /// `group.instance.id` (v7+).
    pub instance_id: Option<String>,
    /// Generation (-1 for standalone committers).
    pub generation: i32,
    /// Explicit retention (v2–v4), if not the broker default.
    pub retention_ms: Option<i64>,
    /// Partitions in request order, with what to commit.
    pub partitions: Vec<(TopicPartition, CommitPartition)>,
}

/// What one partition of an OffsetCommit asks to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPartition {
    /// Offset.
    pub offset: i64,
    /// Leader epoch (v6+).
    pub leader_epoch: Option<i32>,
    /// Metadata string.
    pub metadata: String,
}

impl CommitPartition {
    /// The stored value of this commit made at `now_ms`.
    pub fn value(&self, now_ms: i64, retention_ms: Option<i64>) -> OffsetValue {
        OffsetValue {
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.clone(),
            commit_timestamp_ms: now_ms,
            expire_timestamp_ms: retention_ms.map(|r| now_ms.saturating_add(r)),
        }
    }
}

/// Flattens an OffsetCommit.
pub fn commit_request(req: &OffsetCommitRequest, version: i16) -> CommitRequest {
    CommitRequest {
        group_id: string(&req.group_id),
        member_id: string(&req.member_id),
        instance_id: if version >= 7 {
            req.group_instance_id.as_ref().map(string)
        } else {
            None
        },
        generation: req.generation_id_or_member_epoch,
        retention_ms: (version <= 4 && req.retention_time_ms >= 0).then_some(req.retention_time_ms),
        partitions: req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    (
                        TopicPartition::new(t.name.to_string(), p.partition_index),
                        CommitPartition {
                            offset: p.committed_offset,
                            leader_epoch: (version >= 6 && p.committed_leader_epoch >= 0)
                                .then_some(p.committed_leader_epoch),
                            metadata: p
                                .committed_metadata
                                .as_ref()
                                .map(string)
                                .unwrap_or_default(),
                        },
                    )
                })
            })
            .collect(),
    }
}

/// The OffsetCommit response: one error per partition, in request order and grouped
/// by topic as the request was.
pub fn commit_response(
    req: &OffsetCommitRequest,
    errors: &[Option<ResponseError>],
) -> kafka_protocol::messages::OffsetCommitResponse {
    let mut errors = errors.iter();
    kafka_protocol::messages::OffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code(errors.next().copied().flatten()))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

// ----- OffsetFetch ------------------------------------------------------------

/// One group of an OffsetFetch: its topics and partitions, or `None` for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchGroup {
    /// Group id.
    pub group_id: String,
    /// Topic → partitions asked for; `None` asks for every committed offset.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

/// The groups of an OffsetFetch: one before v8, a list from v8 on.
pub fn fetch_groups(req: &OffsetFetchRequest, version: i16) -> Vec<FetchGroup> {
    if version < 8 {
        vec![FetchGroup {
            group_id: string(&req.group_id),
            topics: req.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                    .collect()
            }),
        }]
    } else {
        req.groups
            .iter()
            .map(|g| FetchGroup {
                group_id: string(&g.group_id),
                topics: g.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                }),
            })
            .collect()
    }
}

/// The answer for one group of an OffsetFetch: offsets per topic (`None` for a
/// partition without a committed offset), or a group-level error.
pub type FetchResult = Result<Vec<(String, Vec<(i32, Option<OffsetValue>)>)>, ResponseError>;

/// The OffsetFetch response of `version` for the groups, in request order.
pub fn fetch_response(
    groups: &[FetchGroup],
    results: Vec<FetchResult>,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        return OffsetFetchResponse::default().with_groups(
            groups
                .iter()
                .zip(results)
                .map(|(g, result)| {
                    let group = OffsetFetchResponseGroup::default()
                        .with_group_id(GroupId(strbytes(g.group_id.clone())));
                    match result {
                        Err(error) => group.with_error_code(error.code()),
                        Ok(topics) => group.with_topics(
                            topics
                                .into_iter()
                                .map(|(name, partitions)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(strbytes(name)))
                                        .with_partitions(
                                            partitions
                                                .into_iter()
                                                .map(|(p, v)| fetch_partition_v8(p, v))
                                                .collect(),
                                        )
                                })
                                .collect(),
                        ),
                    }
                })
                .collect(),
        );
    }
    let (group, result) = match (groups.first(), results.into_iter().next()) {
        (Some(g), Some(r)) => (g, r),
        _ => return OffsetFetchResponse::default(),
    };
    match result {
        // v1 has no top-level error: every asked-for partition carries it.
        Err(error) if version < 2 => OffsetFetchResponse::default().with_topics(
            group
                .topics
                .iter()
                .flatten()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(strbytes(name.clone())))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|p| {
                                    fetch_partition_old(*p, None, version)
                                        .with_error_code(error.code())
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(error) => OffsetFetchResponse::default().with_error_code(error.code()),
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(strbytes(name)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(p, v)| fetch_partition_old(p, v, version))
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

fn fetch_partition_v8(partition: i32, value: Option<OffsetValue>) -> OffsetFetchResponsePartitions {
    let (offset, epoch, metadata) = offset_fields(value);
    OffsetFetchResponsePartitions::default()
        .with_partition_index(partition)
        .with_committed_offset(offset)
        .with_committed_leader_epoch(epoch)
        .with_metadata(Some(strbytes(metadata)))
}

fn fetch_partition_old(
    partition: i32,
    value: Option<OffsetValue>,
    version: i16,
) -> OffsetFetchResponsePartition {
    let (offset, epoch, metadata) = offset_fields(value);
    OffsetFetchResponsePartition::default()
        .with_partition_index(partition)
        .with_committed_offset(offset)
        .with_committed_leader_epoch(if version >= 5 { epoch } else { -1 })
        .with_metadata(Some(strbytes(metadata)))
}

/// Offset, leader epoch and metadata as sent: -1, -1 and "" when nothing is committed.
fn offset_fields(value: Option<OffsetValue>) -> (i64, i32, String) {
    match value {
        Some(v) => (v.offset, v.leader_epoch.unwrap_or(-1), v.metadata),
        None => (-1, -1, String::new()),
    }
}

// ----- ListGroups, DescribeGroups ------------------------------------------------

/// A ListGroups entry of `version`.
pub fn listed_group(group_id: &str, protocol_type: &str, state: &str, version: i16) -> ListedGroup {
    let mut listed = ListedGroup::default()
        .with_group_id(GroupId(strbytes(group_id)))
        .with_protocol_type(strbytes(protocol_type));
    if version >= 4 {
        listed = listed.with_group_state(strbytes(state));
    }
    if version >= 5 {
        listed = listed.with_group_type(strbytes(CLASSIC_GROUP_TYPE));
    }
    listed
}

/// A DescribeGroups entry of `version` for an existing group.
pub fn described_group(
    group_id: &str,
    description: GroupDescription,
    include_authorized_operations: bool,
    version: i16,
) -> DescribedGroup {
    DescribedGroup::default()
        .with_group_id(GroupId(strbytes(group_id)))
        .with_group_state(strbytes(description.state.as_str()))
        .with_protocol_type(strbytes(description.protocol_type))
        .with_protocol_data(strbytes(description.protocol_data))
        .with_authorized_operations(authorized_operations(
            include_authorized_operations,
            version,
        ))
        .with_members(
            description
                .members
                .into_iter()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(strbytes(m.member_id))
                        .with_group_instance_id(if version >= 4 {
                            m.instance_id.map(strbytes)
                        } else {
                            None
                        })
                        .with_client_id(strbytes(m.client_id))
                        .with_client_host(strbytes(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment)
                })
                .collect(),
        )
}

/// A DescribeGroups entry for a group that does not exist: state Dead, and from v6 on
/// GROUP_ID_NOT_FOUND (KIP-1043).
pub fn described_missing_group(
    group_id: &str,
    include_authorized_operations: bool,
    version: i16,
) -> DescribedGroup {
    let group = DescribedGroup::default()
        .with_group_id(GroupId(strbytes(group_id)))
        .with_group_state(strbytes("Dead"))
        .with_authorized_operations(authorized_operations(
            include_authorized_operations,
            version,
        ));
    if version >= 6 {
        group
            .with_error_code(ResponseError::GroupIdNotFound.code())
            .with_error_message(Some(strbytes(format!("Group {group_id} not found."))))
    } else {
        group
    }
}

/// A DescribeGroups entry carrying only an error (e.g. NOT_COORDINATOR).
pub fn described_error(group_id: &str, error: ResponseError, version: i16) -> DescribedGroup {
    let group = DescribedGroup::default()
        .with_group_id(GroupId(strbytes(group_id)))
        .with_error_code(error.code());
    if version >= 6 {
        group.with_error_message(Some(strbytes(error.to_string())))
    } else {
        group
    }
}

fn authorized_operations(include: bool, version: i16) -> i32 {
    if include && version >= 3 {
        GROUP_AUTHORIZED_OPERATIONS
    } else {
        i32::MIN
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::error::ResponseError as E;
    use kafka_protocol::messages::OffsetCommitRequest;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::protocol::Encodable;

    use super::*;
    use crate::group::state::JoinedMember;

    fn encodes<T: Encodable>(message: &T, version: i16) {
        let mut buf = BytesMut::new();
        message
            .encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("v{version}: {e}"));
    }

    #[test]
    fn join_response_fits_each_version() {
        let success = JoinOutcome {
            error: None,
            generation: 4,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: "m-1".into(),
            member_id: "m-1".into(),
            members: vec![JoinedMember {
                member_id: "m-1".into(),
                instance_id: Some("i-1".into()),
                metadata: Bytes::from_static(b"meta"),
            }],
            skip_assignment: true,
        };
        for version in 0..=9 {
            let r = join_response(JoinOutcome::error(E::MemberIdRequired, "m-1"), version);
            encodes(&r, version);
            assert_eq!(r.error_code, E::MemberIdRequired.code());
            assert_eq!(r.generation_id, -1);
            // The protocol name is not nullable before v7.
            let want = (version < 7).then(StrBytes::default);
            assert_eq!(r.protocol_name, want, "v{version}");

            let r = join_response(success.clone(), version);
            encodes(&r, version);
            assert_eq!(r.skip_assignment, version >= 9);
            assert_eq!(r.members[0].group_instance_id.is_some(), version >= 5);
            assert_eq!(r.protocol_type.is_some(), version >= 7);
            assert_eq!(r.members[0].metadata, Bytes::from_static(b"meta"));
        }
    }

    #[test]
    fn leave_response_before_v3_carries_one_error() {
        let members = [
            LeaveMember {
                member_id: "a".into(),
                instance_id: None,
            },
            LeaveMember {
                member_id: "b".into(),
                instance_id: Some("i".into()),
            },
        ];
        type Case = (Result<Vec<Result<(), E>>, E>, i16, i16, usize);
        let cases: Vec<Case> = vec![
            (Ok(vec![Ok(()), Ok(())]), 1, 0, 0),
            (
                Ok(vec![Err(E::UnknownMemberId), Ok(())]),
                2,
                E::UnknownMemberId.code(),
                0,
            ),
            (Err(E::NotCoordinator), 0, E::NotCoordinator.code(), 0),
            (Ok(vec![Err(E::UnknownMemberId), Ok(())]), 3, 0, 2),
            (Err(E::NotCoordinator), 5, E::NotCoordinator.code(), 0),
        ];
        for (result, version, code, listed) in cases {
            let r = leave_response(result, &members, version);
            encodes(&r, version);
            assert_eq!(
                (r.error_code, r.members.len()),
                (code, listed),
                "v{version}"
            );
        }
        let r = leave_response(Ok(vec![Err(E::FencedInstanceId), Ok(())]), &members, 5);
        assert_eq!(r.members[0].error_code, E::FencedInstanceId.code());
        assert_eq!(r.members[1].group_instance_id.as_deref(), Some("i"));
    }

    #[test]
    fn fetch_errors_by_version() {
        let groups = [FetchGroup {
            group_id: "g".into(),
            topics: Some(vec![("t".into(), vec![0, 1])]),
        }];
        let error = || vec![Err(E::CoordinatorLoadInProgress)];
        // v1 has no top-level error: each partition carries it.
        let r = fetch_response(&groups, error(), 1);
        encodes(&r, 1);
        let codes: Vec<i16> = r.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, vec![E::CoordinatorLoadInProgress.code(); 2]);
        for version in 2..=7 {
            let r = fetch_response(&groups, error(), version);
            encodes(&r, version);
            assert_eq!(r.error_code, E::CoordinatorLoadInProgress.code());
            assert!(r.topics.is_empty());
        }
        for version in 8..=9 {
            let r = fetch_response(&groups, error(), version);
            encodes(&r, version);
            assert_eq!(r.groups[0].error_code, E::CoordinatorLoadInProgress.code());
            assert_eq!(r.groups[0].group_id.as_str(), "g");
        }
    }

    #[test]
    fn commit_fields_by_version() {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(strbytes("g")))
            .with_member_id(strbytes("m"))
            .with_generation_id_or_member_epoch(3)
            .with_group_instance_id(Some(strbytes("i")))
            .with_retention_time_ms(60_000)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(strbytes("t")))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(2)
                            .with_committed_offset(10)
                            .with_committed_leader_epoch(5)
                            .with_committed_metadata(None),
                    ]),
            ]);
        for version in 2..=9 {
            let c = commit_request(&req, version);
            assert_eq!(
                (c.group_id.as_str(), c.member_id.as_str(), c.generation),
                ("g", "m", 3)
            );
            assert_eq!(
                c.retention_ms,
                (version <= 4).then_some(60_000),
                "v{version}"
            );
            assert_eq!(c.instance_id.is_some(), version >= 7, "v{version}");
            let (tp, p) = &c.partitions[0];
            assert_eq!((tp.topic.as_str(), tp.partition, p.offset), ("t", 2, 10));
            assert_eq!(p.leader_epoch, (version >= 6).then_some(5), "v{version}");
            assert_eq!(p.metadata, "");
            let v = p.value(1_000, c.retention_ms);
            assert_eq!(v.expire_timestamp_ms, (version <= 4).then_some(61_000));
        }
        let r = commit_response(&req, &[Some(E::OffsetMetadataTooLarge)]);
        encodes(&r, 9);
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            E::OffsetMetadataTooLarge.code()
        );
    }

    #[test]
    fn describe_of_a_missing_group_by_version() {
        for version in 0..=6 {
            let d = described_missing_group("g", true, version);
            let mut r = kafka_protocol::messages::DescribeGroupsResponse::default();
            r.groups.push(d.clone());
            encodes(&r, version);
            assert_eq!(d.group_state.as_str(), "Dead");
            let want = if version >= 6 {
                E::GroupIdNotFound.code()
            } else {
                0
            };
            assert_eq!(d.error_code, want);
            assert_eq!(d.error_message.is_some(), version >= 6);
            let ops = if version >= 3 {
                GROUP_AUTHORIZED_OPERATIONS
            } else {
                i32::MIN
            };
            assert_eq!(d.authorized_operations, ops);
        }
    }
}
