//! Seed inputs: for `request`, valid frames of every served API at every served
//! version (in a few variants each); for the log targets, valid batches laid
//! out in their input formats. `gen-seeds` writes them to `seeds/<target>/`.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use skiff_broker::log::batch::testing::{batch, batch_with};
use skiff_broker::protocol::versions::SUPPORTED;

use crate::request::SEED_TOPIC_ID_PLACEHOLDER;
use crate::shape::FIX_CRC;

fn s(v: &'static str) -> StrBytes {
    StrBytes::from_static_str(v)
}

fn topic() -> TopicName {
    TopicName(s("fuzz"))
}

fn group(g: &'static str) -> GroupId {
    GroupId(s(g))
}

fn records(b: Vec<u8>) -> Option<Bytes> {
    Some(Bytes::from(b))
}

/// Named request variants of `api`; versions that cannot carry a variant drop it
/// when it fails to encode.
fn variants(api: ApiKey) -> Vec<(&'static str, RequestKind)> {
    use RequestKind as R;
    let produce = |acks: i16, data: Vec<u8>| {
        R::Produce(
            ProduceRequest::default()
                .with_acks(acks)
                .with_timeout_ms(1000)
                .with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(topic())
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(records(data)),
                        ]),
                ]),
        )
    };
    let fetch = |by_id: bool, wait: i32, offset: i64, session: (i32, i32)| {
        let t = fetch_request::FetchTopic::default().with_partitions(vec![
            fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 16),
            fetch_request::FetchPartition::default()
                .with_partition(1)
                .with_fetch_offset(0)
                .with_partition_max_bytes(100),
        ]);
        let t = if by_id {
            t.with_topic_id(SEED_TOPIC_ID_PLACEHOLDER)
        } else {
            t.with_topic(topic())
        };
        R::Fetch(
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(wait)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_session_id(session.0)
                .with_session_epoch(session.1)
                .with_topics(vec![t]),
        )
    };
    let configs = |resource_type: i8, name: &'static str| {
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
    };
    match api {
        ApiKey::Produce => vec![
            ("acks1", produce(1, batch(3, 16, 1_700_000_000_000))),
            ("acks0", produce(0, batch(1, 4, 1_700_000_000_000))),
            ("acksall", produce(-1, batch(2, 8, 1_700_000_000_000))),
            (
                "idempotent",
                produce(-1, batch_with(&[b"a", b"b"], 1_700_000_000_000, 0, 0, 0)),
            ),
            ("two-batches", {
                let mut b = batch(1, 1, 1);
                b.extend(batch(2, 2, 2));
                produce(1, b)
            }),
        ],
        ApiKey::Fetch => vec![
            ("name", fetch(false, 0, 0, (0, -1))),
            ("id", fetch(true, 0, 0, (0, -1))),
            ("longpoll", fetch(false, 500, 0, (0, -1))),
            ("longpoll-id", fetch(true, 500, 0, (0, -1))),
            ("out-of-range", fetch(false, 0, 1 << 40, (0, -1))),
            ("session-new", fetch(false, 0, 0, (0, 0))),
            ("session-new-id", fetch(true, 0, 0, (0, 0))),
        ],
        ApiKey::ListOffsets => [
            ("latest", -1),
            ("earliest", -2),
            ("max-ts", -3),
            ("time", 0),
        ]
        .into_iter()
        .map(|(name, ts)| {
            let r = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(topic())
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(ts),
                        ]),
                ]);
            (name, R::ListOffsets(r))
        })
        .collect(),
        ApiKey::Metadata => vec![
            (
                "all",
                R::Metadata(MetadataRequest::default().with_topics(None)),
            ),
            (
                "named",
                R::Metadata(MetadataRequest::default().with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic())),
                ]))),
            ),
            (
                "autocreate",
                R::Metadata(
                    MetadataRequest::default()
                        .with_allow_auto_topic_creation(true)
                        .with_topics(Some(vec![
                            metadata_request::MetadataRequestTopic::default()
                                .with_name(Some(TopicName(s("auto")))),
                        ])),
                ),
            ),
            (
                "by-id",
                R::Metadata(MetadataRequest::default().with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default()
                        .with_topic_id(SEED_TOPIC_ID_PLACEHOLDER),
                ]))),
            ),
        ],
        ApiKey::OffsetCommit => vec![(
            "standalone",
            R::OffsetCommit(
                OffsetCommitRequest::default()
                    .with_group_id(group("g"))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![
                        offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(topic())
                            .with_partitions(vec![
                                offset_commit_request::OffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(1)
                                    .with_committed_metadata(Some(s("m"))),
                            ]),
                    ]),
            ),
        )],
        ApiKey::OffsetFetch => vec![
            (
                "v7",
                R::OffsetFetch(
                    OffsetFetchRequest::default()
                        .with_group_id(group("g"))
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopic::default()
                                .with_name(topic())
                                .with_partition_indexes(vec![0, 1]),
                        ])),
                ),
            ),
            (
                "all",
                R::OffsetFetch(
                    OffsetFetchRequest::default()
                        .with_group_id(group("g"))
                        .with_topics(None),
                ),
            ),
            (
                "groups",
                R::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(group("g"))
                        .with_topics(None),
                ])),
            ),
        ],
        ApiKey::FindCoordinator => vec![
            (
                "key",
                R::FindCoordinator(FindCoordinatorRequest::default().with_key(s("g"))),
            ),
            (
                "keys",
                R::FindCoordinator(
                    FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g"), s("h")]),
                ),
            ),
        ],
        ApiKey::JoinGroup => vec![(
            "new",
            R::JoinGroup(
                JoinGroupRequest::default()
                    .with_group_id(group("g"))
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(10_000)
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![
                        join_group_request::JoinGroupRequestProtocol::default()
                            .with_name(s("range"))
                            .with_metadata(Bytes::from_static(&[
                                0, 1, 0, 0, 0, 1, 0, 4, b'f', b'u', b'z', b'z',
                            ])),
                    ]),
            ),
        )],
        ApiKey::Heartbeat => vec![(
            "unknown",
            R::Heartbeat(
                HeartbeatRequest::default()
                    .with_group_id(group("g"))
                    .with_generation_id(1)
                    .with_member_id(s("m")),
            ),
        )],
        ApiKey::LeaveGroup => vec![
            (
                "member",
                R::LeaveGroup(
                    LeaveGroupRequest::default()
                        .with_group_id(group("g"))
                        .with_member_id(s("m")),
                ),
            ),
            (
                "members",
                R::LeaveGroup(
                    LeaveGroupRequest::default()
                        .with_group_id(group("g"))
                        .with_members(vec![
                            leave_group_request::MemberIdentity::default().with_member_id(s("m")),
                        ]),
                ),
            ),
        ],
        ApiKey::SyncGroup => vec![(
            "leader",
            R::SyncGroup(
                SyncGroupRequest::default()
                    .with_group_id(group("g"))
                    .with_generation_id(1)
                    .with_member_id(s("m"))
                    .with_assignments(vec![
                        sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(s("m"))
                            .with_assignment(Bytes::from_static(&[0, 1, 0, 0, 0, 0])),
                    ]),
            ),
        )],
        ApiKey::DescribeGroups => vec![(
            "g",
            R::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group("g")])),
        )],
        ApiKey::ListGroups => vec![("all", R::ListGroups(ListGroupsRequest::default()))],
        ApiKey::SaslHandshake => vec![(
            "plain",
            R::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(s("PLAIN"))),
        )],
        ApiKey::ApiVersions => vec![(
            "client",
            R::ApiVersions(
                ApiVersionsRequest::default()
                    .with_client_software_name(s("fuzz"))
                    .with_client_software_version(s("1.0")),
            ),
        )],
        ApiKey::CreateTopics => vec![
            (
                "two",
                R::CreateTopics(
                    CreateTopicsRequest::default()
                        .with_timeout_ms(1000)
                        .with_topics(vec![
                            create_topics_request::CreatableTopic::default()
                                .with_name(TopicName(s("created")))
                                .with_num_partitions(2)
                                .with_replication_factor(1)
                                .with_configs(vec![
                                    create_topics_request::CreatableTopicConfig::default()
                                        .with_name(s("segment.bytes"))
                                        .with_value(Some(s("1024"))),
                                    create_topics_request::CreatableTopicConfig::default()
                                        .with_name(s("retention.ms"))
                                        .with_value(Some(s("60000"))),
                                ]),
                        ]),
                ),
            ),
            (
                "assigned",
                R::CreateTopics(
                    CreateTopicsRequest::default()
                        .with_timeout_ms(1000)
                        .with_topics(vec![
                            create_topics_request::CreatableTopic::default()
                                .with_name(TopicName(s("assigned")))
                                .with_num_partitions(-1)
                                .with_replication_factor(-1)
                                .with_assignments(vec![
                                    create_topics_request::CreatableReplicaAssignment::default()
                                        .with_partition_index(0)
                                        .with_broker_ids(vec![BrokerId(0)]),
                                ]),
                        ]),
                ),
            ),
            (
                "validate-only",
                R::CreateTopics(
                    CreateTopicsRequest::default()
                        .with_validate_only(true)
                        .with_topics(vec![
                            create_topics_request::CreatableTopic::default()
                                .with_name(TopicName(s("dry")))
                                .with_num_partitions(1)
                                .with_replication_factor(1),
                        ]),
                ),
            ),
        ],
        ApiKey::DeleteTopics => vec![
            (
                "names",
                R::DeleteTopics(
                    DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("created"))]),
                ),
            ),
            (
                "states",
                R::DeleteTopics(DeleteTopicsRequest::default().with_topics(vec![
                    delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(TopicName(s("created")))),
                ])),
            ),
        ],
        ApiKey::InitProducerId => vec![(
            "idempotent",
            R::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
        )],
        ApiKey::DescribeConfigs => vec![(
            "topic-and-broker",
            R::DescribeConfigs(
                DescribeConfigsRequest::default()
                    .with_include_synonyms(true)
                    .with_resources(vec![configs(2, "fuzz"), configs(4, "0")]),
            ),
        )],
        ApiKey::AlterConfigs => vec![(
            "retention",
            R::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("fuzz"))
                    .with_configs(vec![
                        alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.bytes"))
                            .with_value(Some(s("100000"))),
                    ]),
            ])),
        )],
        ApiKey::IncrementalAlterConfigs => vec![(
            "set-delete",
            R::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default().with_resources(
                vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("fuzz"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("segment.ms"))
                            .with_config_operation(0)
                            .with_value(Some(s("1000"))),
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_config_operation(1),
                    ]),
            ],
            )),
        )],
        ApiKey::CreatePartitions => vec![(
            "grow",
            R::CreatePartitions(
                CreatePartitionsRequest::default()
                    .with_timeout_ms(1000)
                    .with_topics(vec![
                        create_partitions_request::CreatePartitionsTopic::default()
                            .with_name(topic())
                            .with_count(3),
                    ]),
            ),
        )],
        ApiKey::DeleteGroups => vec![(
            "g",
            R::DeleteGroups(DeleteGroupsRequest::default().with_groups_names(vec![group("g")])),
        )],
        ApiKey::OffsetDelete => vec![(
            "g",
            R::OffsetDelete(
                OffsetDeleteRequest::default()
                    .with_group_id(group("g"))
                    .with_topics(vec![
                        offset_delete_request::OffsetDeleteRequestTopic::default()
                            .with_name(topic())
                            .with_partitions(vec![
                                offset_delete_request::OffsetDeleteRequestPartition::default()
                                    .with_partition_index(0),
                            ]),
                    ]),
            ),
        )],
        ApiKey::DescribeCluster => vec![(
            "plain",
            R::DescribeCluster(DescribeClusterRequest::default()),
        )],
        ApiKey::DescribeProducers => vec![(
            "fuzz",
            R::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(topic())
                    .with_partition_indexes(vec![0, 1]),
            ])),
        )],
        _ => Vec::new(),
    }
}

/// Encodes a frame as `dispatch` receives it: header then body, no length prefix.
pub fn encode_frame(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &RequestKind,
) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("fuzz")))
        .encode(&mut buf, api.request_header_version(version))
        .ok()?;
    body.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

/// `(file name, input)` seeds of the `request` target.
pub fn request_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for &(api, min, max) in SUPPORTED {
        let vs = variants(api);
        assert!(!vs.is_empty(), "no seed request for {api:?}");
        for version in min..=max {
            let mut encoded_any = false;
            for (name, body) in &vs {
                let Some(frame) = encode_frame(api, version, 7, body) else {
                    continue;
                };
                encoded_any = true;
                out.push((format!("{api:?}-v{version}-{name}"), frame.clone()));
                if api == ApiKey::Produce {
                    // The same request asking the harness to keep CRCs valid under mutation.
                    let mut fixing = frame;
                    let v = (version as u16 | FIX_CRC).to_be_bytes();
                    fixing[2..4].copy_from_slice(&v);
                    out.push((format!("{api:?}-v{version}-{name}-fixcrc"), fixing));
                }
            }
            assert!(encoded_any, "no seed of {api:?} encodes at v{version}");
        }
    }
    // Unknown API, unsupported version, the ApiVersions fallback.
    out.push((
        "raw-unknown-api".into(),
        vec![0x80 | 0x7f, 0x7f, 0, 0, 0, 0, 0, 1],
    ));
    out.push((
        "raw-metadata-v99".into(),
        vec![0x80, 3, 0, 99, 0, 0, 0, 1, 0, 0],
    ));
    out.push((
        "raw-apiversions-v99".into(),
        vec![0x80, 18, 0, 99, 0, 0, 0, 7, 0, 0],
    ));
    out
}

fn chunk(flags: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Seeds of the `log_append` target.
pub fn log_append_seeds() -> Vec<(String, Vec<u8>)> {
    let one = batch(3, 10, 1_700_000_000_000);
    let two = {
        let mut b = batch(1, 5, 1_700_000_000_000);
        b.extend(batch_with(&[b"x", b"yy"], 1_700_000_000_500, 5, 0, 0));
        b
    };
    let mut torn = batch(2, 30, 1);
    torn.truncate(50);
    let mut out = Vec::new();
    for (cfg, cfg_name) in [
        (0u8, "default"),
        (0x01 | 0x04, "small-segments"),
        (0x02 | 0x08 | 0x10, "roll-by-time"),
        (0x20, "small-max"),
    ] {
        let mut input = vec![cfg];
        input.extend(chunk(0x01, &one));
        input.extend(chunk(0x04 | 0x30, &two));
        input.extend(chunk(0x00, &torn));
        input.extend(chunk(0x03 | 0x40, &batch(5, 40, 1_700_000_001_000)));
        out.push((cfg_name.to_string(), input));
    }
    out.push(("empty-log".into(), vec![0]));
    out
}

/// Seeds of the `segment_recovery` target.
pub fn segment_recovery_seeds() -> Vec<(String, Vec<u8>)> {
    let mut log = Vec::new();
    let mut offset = 0i64;
    let mut boundary = (0usize, 0i64);
    for i in 0..4 {
        if i == 2 {
            boundary = (log.len(), offset);
        }
        let mut b = batch(2 + i, 12, 1_700_000_000_000 + i as i64);
        b[0..8].copy_from_slice(&offset.to_be_bytes());
        b[12..16].copy_from_slice(&(i as i32).to_be_bytes());
        offset += 2 + i as i64;
        log.extend(b);
    }
    let mut out = vec![
        ("valid".to_string(), [vec![0u8], log.clone()].concat()),
        (
            "valid-clean".to_string(),
            [vec![0x04u8], log.clone()].concat(),
        ),
    ];
    let mut torn = log.clone();
    torn.truncate(log.len() - 7);
    out.push(("torn-tail".into(), [vec![0u8], torn].concat()));
    let mut zero_tail = log.clone();
    zero_tail.extend([0u8; 200]);
    out.push(("zero-tail".into(), [vec![0x80u8], zero_tail].concat()));
    let mut flipped = log.clone();
    flipped[100] ^= 0x10;
    out.push(("bad-crc".into(), [vec![0u8], flipped.clone()].concat()));
    out.push(("bad-crc-fixed".into(), [vec![0x01u8], flipped].concat()));
    // Two segments, the second starting where the first ends; with an index and a recovery point.
    let mut two = vec![0x08 | 0x10 | 0x20];
    two.extend((boundary.1 as u32).to_be_bytes());
    two.extend((boundary.0 as u16).to_be_bytes());
    two.push(16);
    two.extend([0, 0, 0, 2, 0, 0, 0, 70, 0, 0, 0, 5, 0, 0, 0, 150]);
    two.extend(3u32.to_be_bytes());
    two.extend(&log);
    out.push(("two-segments".into(), two));
    out
}
