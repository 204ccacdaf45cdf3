//! Every API the broker advertises, at every advertised version, gets a
//! response that decodes (no encode failure, no closed connection); malformed
//! and hostile frames close only their own connection and never stall others.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use skiff_broker::broker::{self, BrokerOptions, RunningBroker};
use skiff_broker::config::BrokerConfig;
use skiff_broker::protocol::versions::SUPPORTED;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(dir: &std::path::Path) -> RunningBroker {
    let config =
        BrokerConfig::from_pairs([("group.initial.rebalance.delay.ms", "0")]).expect("config");
    let opts = BrokerOptions {
        node_id: 0,
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".into(),
        advertise: None,
        admin_listen: "127.0.0.1:0".into(),
        controller_listen: "127.0.0.1:0".into(),
        voters: Default::default(),
        cluster_id: None,
        config,
    };
    broker::start(opts).await.expect("broker starts")
}

async fn send_raw(stream: &mut TcpStream, body: &[u8]) {
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.put_u32(body.len() as u32);
    frame.extend_from_slice(body);
    stream.write_all(&frame).await.expect("write");
}

/// Reads one response frame, or `None` if the broker closed the connection.
async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut len))
        .await
        .expect("response within 20 s")
        .ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A minimal but meaningful request of each API.
fn request(api: ApiKey, version: i16) -> RequestKind {
    use RequestKind as R;
    match api {
        ApiKey::Produce => R::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(topic("conformance"))
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(Bytes::from(
                                    skiff_broker::log::batch::testing::batch(2, 10, 1),
                                ))),
                        ]),
                ]),
        ),
        ApiKey::Fetch => R::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![
                    fetch_request::FetchTopic::default()
                        .with_topic(topic("conformance"))
                        .with_partitions(vec![
                            fetch_request::FetchPartition::default()
                                .with_partition(0)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20),
                        ]),
                ]),
        ),
        ApiKey::ListOffsets => R::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic("conformance"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-2),
                    ]),
            ])),
        ApiKey::Metadata => R::Metadata(if version == 0 {
            MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(topic("conformance"))),
            ]))
        } else {
            MetadataRequest::default().with_topics(None)
        }),
        ApiKey::CreateTopics => R::CreateTopics(
            CreateTopicsRequest::default()
                .with_timeout_ms(1000)
                .with_topics(vec![
                    create_topics_request::CreatableTopic::default()
                        .with_name(topic(&format!("created-v{version}")))
                        .with_num_partitions(2)
                        .with_replication_factor(1),
                ]),
        ),
        ApiKey::DeleteTopics => R::DeleteTopics(if version >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(topic(&format!("created-v{}", version.min(7))))),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic("missing")])
        }),
        ApiKey::CreatePartitions => {
            R::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(topic("conformance"))
                    .with_count(1),
            ]))
        }
        ApiKey::DescribeConfigs => R::DescribeConfigs(
            DescribeConfigsRequest::default()
                .with_include_synonyms(version >= 1)
                .with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("conformance")),
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(StrBytes::from_static_str("0")),
                ]),
        ),
        ApiKey::AlterConfigs => R::AlterConfigs(
            AlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![
                    alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("conformance")),
                ]),
        ),
        ApiKey::IncrementalAlterConfigs => R::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![
                    incremental_alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("conformance")),
                ]),
        ),
        ApiKey::DescribeCluster => R::DescribeCluster(DescribeClusterRequest::default()),
        // Odd versions ask for everything (null), even ones for named partitions.
        ApiKey::DescribeLogDirs => R::DescribeLogDirs(
            DescribeLogDirsRequest::default().with_topics((version % 2 == 0).then(|| {
                vec![
                    describe_log_dirs_request::DescribableLogDirTopic::default()
                        .with_topic(topic("conformance"))
                        .with_partitions(vec![0, 99]),
                    describe_log_dirs_request::DescribableLogDirTopic::default()
                        .with_topic(topic("missing"))
                        .with_partitions(vec![0]),
                ]
            })),
        ),
        ApiKey::FindCoordinator => R::FindCoordinator(if version >= 4 {
            FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![StrBytes::from_static_str("g")])
        } else {
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
        }),
        ApiKey::InitProducerId => {
            R::InitProducerId(InitProducerIdRequest::default().with_transaction_timeout_ms(1000))
        }
        ApiKey::DescribeProducers => {
            R::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(topic("conformance"))
                    .with_partition_indexes(vec![0]),
            ]))
        }
        ApiKey::ApiVersions => R::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("t"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        ),
        ApiKey::SaslHandshake => R::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        ),
        ApiKey::Heartbeat => R::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::LeaveGroup => R::LeaveGroup(if version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default()
                        .with_member_id(StrBytes::from_static_str("nobody")),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_member_id(StrBytes::from_static_str("nobody"))
        }),
        ApiKey::SyncGroup => R::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::JoinGroup => R::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(if version >= 4 {
                    "g4"
                } else {
                    "g"
                })))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(Bytes::new()),
                ]),
        ),
        ApiKey::OffsetCommit => R::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("standalone")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic("conformance"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => R::OffsetFetch(if version >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("standalone")))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("standalone")))
                .with_topics(if version >= 2 { None } else { Some(vec![]) })
        }),
        ApiKey::ListGroups => R::ListGroups(ListGroupsRequest::default()),
        ApiKey::DescribeGroups => R::DescribeGroups(
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_static_str("standalone"))]),
        ),
        ApiKey::DeleteGroups => R::DeleteGroups(
            DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("missing"))]),
        ),
        ApiKey::OffsetDelete => R::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("missing"))),
        ),
        ApiKey::ElectLeaders => R::ElectLeaders(
            ElectLeadersRequest::default()
                .with_topic_partitions(Some(vec![
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(topic("conformance"))
                        .with_partitions(vec![0, 99]),
                ]))
                .with_timeout_ms(1000),
        ),
        ApiKey::AlterPartitionReassignments => R::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(1000)
                .with_topics(vec![
                    alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(topic("missing"))
                        .with_partitions(vec![
                            alter_partition_reassignments_request::ReassignablePartition::default()
                                .with_partition_index(0)
                                .with_replicas(Some(vec![BrokerId(0)])),
                        ]),
                ]),
        ),
        ApiKey::ListPartitionReassignments => R::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::default().with_timeout_ms(1000),
        ),
        other => panic!("no conformance request for {other:?}"),
    }
}

fn encode_request(api: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> BytesMut {
    let mut buf = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("conformance")));
    header
        .encode(&mut buf, api.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_at_every_advertised_version_answers_decodably() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path()).await;
    let addr = running.kafka_addr;
    // The topic most requests refer to.
    let mut setup = TcpStream::connect(addr).await.expect("connect");
    let create = request(ApiKey::CreateTopics, 7);
    if let RequestKind::CreateTopics(mut c) = create {
        c.topics[0].name = topic("conformance");
        send_raw(
            &mut setup,
            &encode_request(ApiKey::CreateTopics, 7, 1, &RequestKind::CreateTopics(c)),
        )
        .await;
        read_frame(&mut setup).await.expect("create topic");
    }
    let mut failures = Vec::new();
    let mut correlation = 100;
    for &(api, min, max) in SUPPORTED {
        for version in min..=max {
            correlation += 1;
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            send_raw(
                &mut stream,
                &encode_request(api, version, correlation, &request(api, version)),
            )
            .await;
            let Some(mut frame) = read_frame(&mut stream).await else {
                failures.push(format!("{api:?} v{version}: connection closed"));
                continue;
            };
            let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
                .expect("response header");
            assert_eq!(header.correlation_id, correlation, "{api:?} v{version}");
            if let Err(e) = ResponseKind::decode(api, &mut frame, version) {
                failures.push(format!("{api:?} v{version}: response does not decode: {e}"));
            }
        }
    }
    running.shutdown().await;
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path()).await;
    let addr = running.kafka_addr;
    let mut healthy = TcpStream::connect(addr).await.expect("connect");
    let hostile: Vec<Vec<u8>> = vec![
        vec![],                                   // empty frame
        vec![0, 3],                               // shorter than a header
        vec![0x7f, 0x7f, 0, 0, 0, 0, 0, 1],       // unknown API key
        vec![0, 3, 0x7f, 0, 0, 0, 0, 1],          // Metadata v32512
        vec![0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff], // Produce v9 truncated after the header
        // Metadata v1 whose topic array claims two billion entries.
        vec![
            0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'x',
        ],
        // CreateTopics v4 with an array of 0x7fffffff topics and nothing else.
        vec![0, 19, 0, 4, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff],
    ];
    for (i, body) in hostile.iter().enumerate() {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        send_raw(&mut s, body).await;
        assert!(
            read_frame(&mut s).await.is_none(),
            "frame {i} should close the connection"
        );
    }
    // A frame larger than socket.request.max.bytes is refused from its length alone.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&0x7fff_fff0u32.to_be_bytes())
        .await
        .expect("write");
    assert!(read_frame(&mut s).await.is_none());
    // An unsupported ApiVersions version is answered (v0, UNSUPPORTED_VERSION), not closed.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    send_raw(&mut s, &[0, 18, 0, 99, 0, 0, 0, 7, 0, 0]).await;
    let mut frame = read_frame(&mut s).await.expect("answered");
    assert_eq!(frame.get_i32(), 7);
    let response = ApiVersionsResponse::decode(&mut frame, 0).expect("v0 body");
    assert_eq!(response.error_code, 35);
    assert!(!response.api_keys.is_empty());
    // The healthy connection still works.
    send_raw(
        &mut healthy,
        &encode_request(ApiKey::ApiVersions, 3, 42, &request(ApiKey::ApiVersions, 3)),
    )
    .await;
    let mut frame = read_frame(&mut healthy)
        .await
        .expect("healthy connection answered");
    assert_eq!(frame.get_i32(), 42);
    running.shutdown().await;
}

/// A broker that has just (re)started is fenced until its first heartbeat. It
/// must not answer Kafka requests meanwhile: its Metadata would list no live
/// broker, not even itself, and librdkafka, applying that, forgets every broker
/// it knew (bootstrap included), so a consumer group member can never again
/// find its coordinator, heartbeat or commit (it stalls, and its close hangs).
/// The first Metadata answer after a start and after a restart on the same data
/// directory lists this broker and leaders for its partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_metadata_after_a_start_or_restart_lists_the_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in ["first start", "restart on the same data directory"] {
        let running = start(dir.path()).await;
        let mut stream = TcpStream::connect(running.kafka_addr)
            .await
            .expect("connect");
        if round == "first start" {
            let create = request(ApiKey::CreateTopics, 7);
            let RequestKind::CreateTopics(mut c) = create else {
                unreachable!()
            };
            c.topics[0].name = topic("fenced-restart");
            c.topics[0].num_partitions = 1;
            send_raw(
                &mut stream,
                &encode_request(ApiKey::CreateTopics, 7, 1, &RequestKind::CreateTopics(c)),
            )
            .await;
            read_frame(&mut stream).await.expect("create topic");
        }
        let topics = vec![
            metadata_request::MetadataRequestTopic::default()
                .with_name(Some(topic("fenced-restart"))),
        ];
        let metadata = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(topics)));
        send_raw(
            &mut stream,
            &encode_request(ApiKey::Metadata, 12, 2, &metadata),
        )
        .await;
        let mut frame = read_frame(&mut stream).await.expect("metadata answered");
        ResponseHeader::decode(&mut frame, ApiKey::Metadata.response_header_version(12))
            .expect("response header");
        let response = MetadataResponse::decode(&mut frame, 12).expect("metadata body");
        let brokers: Vec<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
        assert_eq!(
            brokers,
            vec![0],
            "{round}: brokers listed in the first Metadata"
        );
        let leaders: Vec<i32> = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.leader_id.0))
            .collect();
        assert_eq!(
            leaders,
            vec![0],
            "{round}: partition leaders in the first Metadata"
        );
        running.shutdown().await;
    }
}

/// Sends `body` and decodes the response of `api` at `version`.
async fn call(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    body: RequestKind,
) -> ResponseKind {
    send_raw(stream, &encode_request(api, version, 1, &body)).await;
    let mut frame = read_frame(stream).await.expect("answered");
    ResponseHeader::decode(&mut frame, api.response_header_version(version))
        .expect("response header");
    ResponseKind::decode(api, &mut frame, version).expect("response body")
}

/// `(topic, partition, size)` of every partition in a DescribeLogDirs result.
fn sizes(result: &describe_log_dirs_response::DescribeLogDirsResult) -> Vec<(String, i32, i64)> {
    result
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                assert_eq!((p.offset_lag, p.is_future_key), (0, false));
                (t.name.0.to_string(), p.partition_index, p.partition_size)
            })
        })
        .collect()
}

/// DescribeLogDirs answers for this broker's replicas: its data directory
/// (absolute) with each asked partition's log size, which is the bytes of
/// the batches produced (not the preallocated segment file), and at v4 the
/// volume's space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_log_dirs_reports_the_data_dir_and_each_replica_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = start(dir.path()).await;
    let mut stream = TcpStream::connect(running.kafka_addr)
        .await
        .expect("connect");
    let RequestKind::CreateTopics(mut create) = request(ApiKey::CreateTopics, 7) else {
        unreachable!()
    };
    create.topics[0].name = topic("sized");
    call(
        &mut stream,
        ApiKey::CreateTopics,
        7,
        RequestKind::CreateTopics(create),
    )
    .await;
    let batches: Vec<Vec<u8>> = (0..3)
        .map(|i| skiff_broker::log::batch::testing::batch(5, 200, 1_000 + i))
        .collect();
    let produced: usize = batches.iter().map(Vec::len).sum();
    for b in batches {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let RequestKind::Produce(mut produce) = request(ApiKey::Produce, 9) else {
                unreachable!()
            };
            produce.topic_data[0].name = topic("sized");
            produce.topic_data[0].partition_data[0].records = Some(Bytes::from(b.clone()));
            let ResponseKind::Produce(r) = call(
                &mut stream,
                ApiKey::Produce,
                9,
                RequestKind::Produce(produce),
            )
            .await
            else {
                unreachable!()
            };
            let code = r.responses[0].partition_responses[0].error_code;
            if code == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "produce error {code}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let describe = |topics| {
        RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(topics))
    };
    let ResponseKind::DescribeLogDirs(all) =
        call(&mut stream, ApiKey::DescribeLogDirs, 4, describe(None)).await
    else {
        unreachable!()
    };
    assert_eq!(all.error_code, 0);
    assert_eq!(all.results.len(), 1, "one data directory");
    let result = &all.results[0];
    assert_eq!(result.error_code, 0);
    assert_eq!(
        result.log_dir.as_str(),
        std::path::absolute(dir.path())
            .expect("absolute")
            .to_string_lossy()
    );
    let mut sized: Vec<_> = sizes(result)
        .into_iter()
        .filter(|(t, _, _)| t == "sized")
        .collect();
    sized.sort();
    assert_eq!(
        sized,
        vec![
            ("sized".to_owned(), 0, produced as i64),
            ("sized".to_owned(), 1, 0)
        ]
    );
    assert!(result.total_bytes > 0, "total {}", result.total_bytes);
    assert!(
        (0..=result.total_bytes).contains(&result.usable_bytes),
        "usable {} of {}",
        result.usable_bytes,
        result.total_bytes
    );

    // Named partitions only; ones this broker does not hold are absent.
    let named = vec![
        describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(topic("sized"))
            .with_partitions(vec![1, 7]),
        describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(topic("missing"))
            .with_partitions(vec![0]),
    ];
    let ResponseKind::DescribeLogDirs(some) = call(
        &mut stream,
        ApiKey::DescribeLogDirs,
        1,
        describe(Some(named)),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(sizes(&some.results[0]), vec![("sized".to_owned(), 1, 0)]);
    let ResponseKind::DescribeLogDirs(none) = call(
        &mut stream,
        ApiKey::DescribeLogDirs,
        3,
        describe(Some(vec![])),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(none.results.len(), 1);
    assert!(none.results[0].topics.is_empty());
    running.shutdown().await;
}
