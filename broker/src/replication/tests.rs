//! Replication between in-process replica managers on loopback: each serves
//! follower fetches over a real Kafka-protocol listener, and hand-built
//! metadata images say who leads.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, FetchRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use uuid::Uuid;

use super::{AlterIsr, AlterIsrError, IsrChannel};
use crate::config::{BrokerConfig, TopicConfig};
use crate::log::batch::testing;
use crate::metadata::MetadataImage;
use crate::metadata::image::{BrokerInfo, PartitionImage, TopicImage};
use crate::partition::fetch::{self, FetchContext};
use crate::partition::{AckError, Partition, ReplicaManager, RoleChange};
use crate::protocol::codec::FrameCodec;

const TOPIC: &str = "replicated";
const WAIT: Duration = Duration::from_secs(10);

/// A controller that commits every ISR change and remembers it.
#[derive(Debug, Default)]
struct RecordingController {
    seen: Mutex<Vec<AlterIsr>>,
}

impl IsrChannel for RecordingController {
    fn alter_isr(&self, req: AlterIsr) -> BoxFuture<'static, Result<i32, AlterIsrError>> {
        let epoch = req.partition_epoch + 1;
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(req);
        futures::future::ready(Ok(epoch)).boxed()
    }
}

/// One broker: a replica manager and a listener serving Fetch from it.
struct Node {
    id: i32,
    manager: Arc<ReplicaManager>,
    image: Arc<Mutex<Arc<MetadataImage>>>,
    port: u16,
    server: JoinHandle<()>,
}

impl Node {
    async fn start(id: i32, dir: &Path, pairs: &[(&str, &str)]) -> Self {
        let config = Arc::new(BrokerConfig::from_pairs(pairs.iter().copied()).expect("config"));
        let manager = Arc::new(ReplicaManager::with_isr_channel(
            id,
            dir,
            config,
            Arc::new(RecordingController::default()),
        ));
        let image = Arc::new(Mutex::new(Arc::new(MetadataImage::default())));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(serve(listener, manager.clone(), image.clone()));
        Self {
            id,
            manager,
            image,
            port,
            server,
        }
    }

    fn sync(&self, image: &MetadataImage) -> Vec<RoleChange> {
        *self.image.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(image.clone());
        let report = self.manager.sync_report(image);
        assert_eq!(report.failures, 0);
        report.changes.into_iter().map(|c| c.change).collect()
    }

    fn partition(&self) -> Arc<Partition> {
        self.manager.get(TOPIC, 0).expect("partition open")
    }

    fn stop(self) {
        self.manager.close_all();
        self.server.abort();
    }
}

/// Serves Fetch requests only (one at a time per connection, as fetchers send them).
async fn serve(
    listener: TcpListener,
    manager: Arc<ReplicaManager>,
    image: Arc<Mutex<Arc<MetadataImage>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let manager = manager.clone();
        let image = image.clone();
        tokio::spawn(async move {
            let (reader, mut writer) = stream.into_split();
            let mut frames = FramedRead::new(reader, FrameCodec::new(64 << 20));
            while let Some(Ok(frame)) = frames.next().await {
                let mut frame = frame.freeze();
                let version = i16::from_be_bytes([frame[2], frame[3]]);
                let header = RequestHeader::decode(
                    &mut frame,
                    ApiKey::Fetch.request_header_version(version),
                )
                .expect("header");
                let req = FetchRequest::decode(&mut frame, version).expect("fetch request");
                let ctx = FetchContext {
                    replicas: manager.clone(),
                    bytes_out: None,
                    send_files: false,
                };
                let current = image.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let response = match fetch::handle(ctx, &current, req, version) {
                    Ok(r) => r,
                    Err(later) => later.await,
                }
                .response;
                let mut buf = BytesMut::new();
                buf.extend_from_slice(&[0; 4]);
                ResponseHeader::default()
                    .with_correlation_id(header.correlation_id)
                    .encode(&mut buf, ApiKey::Fetch.response_header_version(version))
                    .expect("encode header");
                response.encode(&mut buf, version).expect("encode response");
                let len = (buf.len() - 4) as u32;
                buf[..4].copy_from_slice(&len.to_be_bytes());
                if writer.write_all(&buf).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn image(
    nodes: &[&Node],
    topic_id: Uuid,
    leader: i32,
    isr: &[i32],
    leader_epoch: i32,
    partition_epoch: i32,
) -> MetadataImage {
    let mut img = MetadataImage {
        cluster_id: "test".into(),
        ..Default::default()
    };
    for n in nodes {
        img.brokers.insert(
            n.id,
            BrokerInfo {
                node_id: n.id,
                host: "127.0.0.1".into(),
                port: i32::from(n.port),
                rack: None,
                incarnation: Uuid::nil(),
                epoch: 0,
                controller: None,
                fenced: false,
                crashed: false,
                shutting_down: false,
                draining: false,
            },
        );
    }
    let mut partitions = BTreeMap::new();
    partitions.insert(
        0,
        PartitionImage {
            replicas: nodes.iter().map(|n| n.id).collect(),
            leader,
            isr: isr.to_vec(),
            leader_epoch,
            partition_epoch,
            adding: Vec::new(),
            removing: Vec::new(),
        },
    );
    img.topics.insert(
        TOPIC.into(),
        TopicImage {
            name: TOPIC.into(),
            id: topic_id,
            config: TopicConfig::default(),
            partitions,
        },
    );
    img.topic_names.insert(topic_id, TOPIC.into());
    img
}

/// Every byte of the log from its start to its end.
fn log_bytes(p: &Partition) -> Vec<u8> {
    let (start, _, end) = p.offsets();
    let mut out = Vec::new();
    let mut offset = start;
    while offset < end {
        let r = p.read(offset, 1 << 20, true, true).expect("read");
        let Some(slice) = r.slice else { break };
        let mut buf = Vec::new();
        slice.read_into(&mut buf).expect("read slice");
        let mut pos = 0;
        while pos < buf.len() {
            let h = crate::log::BatchHeader::parse(&buf[pos..]).expect("header");
            offset = h.last_offset() + 1;
            pos += h.size().expect("size");
        }
        out.extend_from_slice(&buf);
    }
    out
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn produce(p: &Partition, batch: Vec<u8>, acks_all: bool) -> crate::partition::Appended {
    let mut b = batch;
    p.append(&mut b, acks_all).expect("append")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_replicates_byte_identical_and_truncates_after_failover() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let cfg = [("min.insync.replicas", "2")];
    let a = Node::start(1, dirs[0].path(), &cfg).await;
    let b = Node::start(2, dirs[1].path(), &cfg).await;
    let id = Uuid::new_v4();
    let mut a_changes = a.manager.leadership_changes();

    // Epoch 1: A leads, B follows, both in the ISR. Only A knows it yet.
    let img1 = image(&[&a, &b], id, 1, &[1, 2], 1, 1);
    assert_eq!(
        a.sync(&img1),
        vec![RoleChange::BecameLeader {
            leader_epoch: 1,
            already_leading: false
        }]
    );
    let pa = a.partition();
    let first = produce(&pa, testing::batch_with(&[b"a", b"b"], 1, 7, 0, 0), true);
    assert_eq!((first.base_offset, first.last_offset), (0, 1));
    let acked = {
        let pa = pa.clone();
        tokio::spawn(async move { pa.wait_acks_all(first.last_offset + 1, 1).await })
    };
    // Without the follower, neither the high watermark nor acks=all move.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pa.high_watermark(), 0);
    assert!(!acked.is_finished());

    // B learns the image and fetches: acks=all completes once B has (and fsynced) it.
    assert_eq!(
        b.sync(&img1),
        vec![RoleChange::Follower {
            leader: 1,
            leader_epoch: 1
        }]
    );
    let pb = b.partition();
    tokio::time::timeout(WAIT, acked)
        .await
        .expect("acks=all within the wait")
        .expect("task")
        .expect("acknowledged");
    assert_eq!(pb.log_end(), 2);
    assert_eq!(pa.high_watermark(), 2);
    // fsync durability: the follower reported only what it had fsynced.
    assert!(pb.follower_position().expect("follows").durable_offset >= 2);
    for i in 0..5 {
        produce(&pa, testing::batch(3, 20, 10 + i), false);
    }
    eventually("B catches up", || pb.log_end() == pa.log_end()).await;
    eventually("B learns the high watermark", || {
        pb.high_watermark() == pa.high_watermark() && pa.high_watermark() == pa.log_end()
    })
    .await;
    assert_eq!(log_bytes(&pa), log_bytes(&pb), "byte-identical replicas");

    // Epoch 2: B is elected while A (paused, stale) still believes it leads
    // epoch 1 and takes more batches, which B never gets.
    let img2 = image(&[&a, &b], id, 2, &[1, 2], 2, 2);
    assert_eq!(
        b.sync(&img2),
        vec![RoleChange::BecameLeader {
            leader_epoch: 2,
            already_leading: false
        }]
    );
    let committed = pb.log_end();
    let stale = produce(&pa, testing::batch(4, 30, 100), true);
    produce(&pa, testing::batch(2, 30, 101), false);
    let stale_ack = {
        let pa = pa.clone();
        tokio::spawn(async move { pa.wait_acks_all(stale.last_offset + 1, 1).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stale_ack.is_finished(),
        "a stale leader must not acknowledge"
    );
    assert_eq!(pa.high_watermark(), committed);

    // The new leader deduplicates a retry of a batch the old one took.
    let retry = produce(&pb, testing::batch_with(&[b"a", b"b"], 1, 7, 0, 0), true);
    assert!(retry.duplicate && retry.base_offset == 0 && retry.last_offset == 1);
    let fresh = produce(&pb, testing::batch(1, 40, 200), true);
    assert_eq!(fresh.base_offset, committed);
    let fresh_ack = {
        let pb = pb.clone();
        tokio::spawn(async move { pb.wait_acks_all(fresh.last_offset + 1, 2).await })
    };

    // A learns epoch 2: its parked acks=all fails, it truncates its extra
    // batches at the diverging point and converges on B's log.
    assert_eq!(
        a.sync(&img2),
        vec![RoleChange::StoppedLeading {
            leader: 2,
            leader_epoch: 2
        }]
    );
    let stale_result = tokio::time::timeout(WAIT, stale_ack)
        .await
        .expect("stale ack settles")
        .expect("task");
    assert!(matches!(stale_result, Err(AckError::NotLeader)));
    tokio::time::timeout(WAIT, fresh_ack)
        .await
        .expect("new leader acks")
        .expect("task")
        .expect("acknowledged");
    eventually("A converges on B", || pa.log_end() == pb.log_end()).await;
    assert_eq!(log_bytes(&pa), log_bytes(&pb), "identical after truncation");
    assert_eq!(pb.high_watermark(), pb.log_end());
    let seen: Vec<RoleChange> = std::iter::from_fn(|| a_changes.try_recv().ok())
        .map(|c| c.change)
        .collect();
    assert_eq!(
        seen,
        vec![
            RoleChange::BecameLeader {
                leader_epoch: 1,
                already_leading: false
            },
            RoleChange::StoppedLeading {
                leader: 2,
                leader_epoch: 2
            }
        ]
    );
    // A now follows and refuses produce.
    let mut batch = testing::batch(1, 10, 300);
    assert_eq!(
        pa.append(&mut batch, false).map(|_| ()).unwrap_err().code(),
        6
    );

    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_leaves_the_isr_and_acks_fail_below_min_isr() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let cfg = [
        ("min.insync.replicas", "2"),
        ("replica.lag.time.max.ms", "1000"),
        ("skiff.ack.durability", "memory"),
    ];
    let a = Node::start(1, dirs[0].path(), &cfg).await;
    // B is assigned but does not fetch yet. (The lag window must exceed the
    // 500 ms a follower fetch may park on an idle leader, as in Kafka.)
    let b = Node::start(2, dirs[1].path(), &cfg).await;
    let id = Uuid::new_v4();
    let img = image(&[&a, &b], id, 1, &[1, 2], 1, 1);
    a.sync(&img);
    let pa = a.partition();
    let appended = produce(&pa, testing::batch(2, 10, 1), true);
    let result = tokio::time::timeout(WAIT, pa.wait_acks_all(appended.last_offset + 1, 1))
        .await
        .expect("settles");
    // The tick proposes B out, the controller commits, the ISR is below min.
    assert!(matches!(
        result,
        Err(AckError::NotEnoughReplicasAfterAppend)
    ));
    assert_eq!(pa.isr(), Some(vec![1]));
    assert!(pa.is_under_replicated() && pa.is_under_min_isr());
    assert_eq!(a.manager.under_replicated(), 1);
    // Below min ISR acks=all is refused before appending, and the high
    // watermark does not move.
    let mut batch = testing::batch(1, 10, 2);
    assert_eq!(
        pa.append(&mut batch, true).map(|_| ()).unwrap_err().code(),
        19
    );
    assert_eq!(pa.high_watermark(), 0);

    // B starts fetching, catches up and is proposed back in; acks=all works again.
    b.sync(&img);
    eventually("B rejoins the ISR", || pa.isr() == Some(vec![1, 2])).await;
    let again = produce(&pa, testing::batch(1, 10, 3), true);
    tokio::time::timeout(WAIT, pa.wait_acks_all(again.last_offset + 1, 1))
        .await
        .expect("settles")
        .expect("acknowledged");
    assert_eq!(pa.high_watermark(), 3);
    assert!(!pa.is_under_replicated());
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_watermark_survives_restart_through_the_checkpoint() {
    let dir = tempfile::tempdir().expect("dir");
    let id = Uuid::new_v4();
    {
        let a = Node::start(1, dir.path(), &[]).await;
        let img = image(&[&a], id, 1, &[1], 1, 1);
        a.sync(&img);
        let pa = a.partition();
        // One replica: the leader alone is the ISR, the high watermark follows its log end.
        produce(&pa, testing::batch(3, 10, 1), false);
        produce(&pa, testing::batch(2, 10, 1), false);
        assert_eq!(pa.high_watermark(), 5);
        a.stop();
    }
    // Pretend the last checkpoint was taken when only the first batch was committed.
    let mut hws = crate::partition::checkpoint::HighWatermarks::new();
    hws.insert((TOPIC.into(), 0), 3);
    crate::partition::checkpoint::write(&crate::log::StdFs, dir.path(), &hws).expect("write");
    let a = Node::start(1, dir.path(), &[]).await;
    // A follower (another broker leads now) starts from the checkpoint, not 0
    // and not beyond it.
    let other_dir = tempfile::tempdir().expect("dir");
    let other = Node::start(2, other_dir.path(), &[]).await;
    let mut img = image(&[&a, &other], id, 2, &[1, 2], 2, 2);
    img.brokers.get_mut(&2).expect("broker 2").port = 1; // nobody listens there
    a.sync(&img);
    let pa = a.partition();
    assert_eq!((pa.high_watermark(), pa.log_end()), (3, 5));
    // Elected alone (the other replica is gone), it leads with its own log end.
    let img = image(&[&a], id, 1, &[1], 3, 3);
    a.sync(&img);
    assert_eq!(pa.high_watermark(), 5);
    a.stop();
    other.stop();
}

/// The race behind librdkafka's duplicates at a leader change (its issue
/// 4953): the head of a producer's in-flight window reaches the new leader
/// before it knows it leads, the next batch just after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_lets_an_idempotent_producer_resend_in_order_after_a_gap() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let cfg = [("min.insync.replicas", "1")];
    let a = Node::start(1, dirs[0].path(), &cfg).await;
    let b = Node::start(2, dirs[1].path(), &cfg).await;
    let id = Uuid::new_v4();
    let img1 = image(&[&a, &b], id, 1, &[1, 2], 1, 1);
    a.sync(&img1);
    b.sync(&img1);
    let (pa, pb) = (a.partition(), b.partition());
    for seq in 0..3 {
        produce(&pa, testing::batch_with(&[b"v"], 1, 7, 0, seq), false);
    }
    eventually("B replicates sequences 0..=2", || pb.log_end() == 3).await;

    // B leads epoch 2. Sequences 2 and 3 (unacknowledged) were refused by B
    // as a follower a moment ago; sequence 4 arrives first.
    b.sync(&image(&[&a, &b], id, 2, &[2], 2, 2));
    let mut ahead = testing::batch_with(&[b"v"], 1, 7, 0, 4);
    let refused = pb.append(&mut ahead, true).expect_err("a gap");
    assert_eq!(refused.code(), 6, "{refused}");
    assert!(refused.to_string().contains("resend from 3"), "{refused}");
    // The resent head is recognised, the rest appended in order, once each.
    let head = produce(&pb, testing::batch_with(&[b"v"], 1, 7, 0, 2), true);
    assert_eq!((head.base_offset, head.duplicate), (2, true));
    for seq in 3..5 {
        let next = produce(&pb, testing::batch_with(&[b"v"], 1, 7, 0, seq), true);
        assert_eq!((next.base_offset, next.duplicate), (i64::from(seq), false));
    }
    assert_eq!(pb.log_end(), 5);
    // A gap after that is out of order, as in Kafka.
    let mut gap = testing::batch_with(&[b"v"], 1, 7, 0, 6);
    assert_eq!(pb.append(&mut gap, true).expect_err("a gap").code(), 45);
    // Once its state expires (producer.id.expiration.ms on the batches'
    // timestamps), the producer goes on from wherever it stands, as in Kafka.
    assert_eq!(pb.expire_producers(1 + 86_400_000, 86_400_000), 1);
    assert!(pb.producers().is_empty());
    let resumed = produce(&pb, testing::batch_with(&[b"v"], 2, 7, 0, 6), true);
    assert_eq!((resumed.base_offset, resumed.duplicate), (5, false));
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_survives_a_new_epoch_of_the_same_leader() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let cfg = [("min.insync.replicas", "2")];
    let a = Node::start(1, dirs[0].path(), &cfg).await;
    let b = Node::start(2, dirs[1].path(), &cfg).await;
    let id = Uuid::new_v4();
    a.sync(&image(&[&a, &b], id, 1, &[1, 2], 1, 1));
    let pa = a.partition();
    let appended = produce(&pa, testing::batch(2, 10, 1), true);
    let acked = {
        let pa = pa.clone();
        tokio::spawn(async move { pa.wait_acks_all(appended.last_offset + 1, 1).await })
    };
    // Same leader, new epoch: it re-inits, and the parked request keeps waiting.
    let img2 = image(&[&a, &b], id, 1, &[1, 2], 2, 2);
    assert_eq!(
        a.sync(&img2),
        vec![RoleChange::BecameLeader {
            leader_epoch: 2,
            already_leading: true
        }]
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!acked.is_finished());
    b.sync(&img2);
    tokio::time::timeout(WAIT, acked)
        .await
        .expect("settles")
        .expect("task")
        .expect("acknowledged at the new epoch");
    assert_eq!(b.partition().log_end(), 2);
    a.stop();
    b.stop();
}

fn fetch_request(
    topic_id: Uuid,
    replica: i32,
    offset: i64,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    max_wait_ms: i32,
) -> FetchRequest {
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
    FetchRequest::default()
        .with_replica_state(ReplicaState::default().with_replica_id(BrokerId(replica)))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_current_leader_epoch(current_leader_epoch)
                        .with_last_fetched_epoch(last_fetched_epoch)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

async fn answer(
    node: &Node,
    req: FetchRequest,
) -> kafka_protocol::messages::fetch_response::PartitionData {
    let ctx = FetchContext {
        replicas: node.manager.clone(),
        bytes_out: None,
        send_files: false,
    };
    let current = node
        .image
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let response = match fetch::handle(ctx, &current, req, 16) {
        Ok(r) => r,
        Err(later) => later.await,
    }
    .response;
    response.responses[0].partitions[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_answers_follower_fetches_as_kafka_does() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let cfg = [("skiff.ack.durability", "memory")];
    let a = Node::start(1, dirs[0].path(), &cfg).await;
    let b = Node::start(2, dirs[1].path(), &cfg).await;
    let id = Uuid::new_v4();
    let img = image(&[&a, &b], id, 1, &[1, 2], 3, 3);
    a.sync(&img);
    let pa = a.partition();
    produce(&pa, testing::batch(2, 10, 1), false);
    produce(&pa, testing::batch(3, 10, 2), false);
    assert_eq!((pa.log_end(), pa.high_watermark()), (5, 0));

    // Epoch fencing (KIP-320).
    assert_eq!(
        answer(&a, fetch_request(id, 2, 0, 2, -1, 0))
            .await
            .error_code,
        74
    );
    assert_eq!(
        answer(&a, fetch_request(id, 2, 0, 4, -1, 0))
            .await
            .error_code,
        76
    );
    // A consumer sees nothing beyond the high watermark.
    let consumer = answer(&a, fetch_request(id, -1, 0, 3, -1, 0)).await;
    assert_eq!(consumer.error_code, 0);
    assert!(consumer.records.unwrap_or_default().is_empty());
    // A follower reads up to the log end.
    let follower = answer(&a, fetch_request(id, 2, 0, 3, -1, 0)).await;
    assert_eq!(follower.error_code, 0);
    assert_eq!(
        follower.records.unwrap_or_default(),
        Bytes::from(log_bytes(&pa))
    );
    // Its next fetch at the log end moves the high watermark, and says so.
    let caught_up = answer(&a, fetch_request(id, 2, 5, 3, 3, 0)).await;
    assert_eq!((caught_up.error_code, caught_up.high_watermark), (0, 5));
    assert_eq!(pa.high_watermark(), 5);
    // Diverging logs (KIP-595's diverging_epoch): an epoch the leader never
    // had, and offsets past its log end in its own epoch.
    let d = answer(&a, fetch_request(id, 2, 5, 3, 2, 0)).await;
    assert_eq!(
        (d.diverging_epoch.epoch, d.diverging_epoch.end_offset),
        (2, 0)
    );
    let d = answer(&a, fetch_request(id, 2, 7, 3, 3, 0)).await;
    assert_eq!(
        (d.diverging_epoch.epoch, d.diverging_epoch.end_offset),
        (3, 5)
    );
    assert!(d.records.unwrap_or_default().is_empty());

    // A parked follower fetch wakes when the log end moves (not only the high watermark).
    let parked = {
        let req = fetch_request(id, 2, 5, 3, 3, 5_000);
        let ctx = FetchContext {
            replicas: a.manager.clone(),
            bytes_out: None,
            send_files: false,
        };
        let current = a
            .image
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let later = fetch::handle(ctx, &current, req, 16).expect_err("parks");
        tokio::spawn(later)
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!parked.is_finished());
    let started = tokio::time::Instant::now();
    produce(&pa, testing::batch(1, 10, 3), false);
    let woke = tokio::time::timeout(Duration::from_secs(3), parked)
        .await
        .expect("woken before max_wait")
        .expect("task");
    assert!(started.elapsed() < Duration::from_secs(3));
    let p = &woke.response.responses[0].partitions[0];
    assert!(!p.records.clone().unwrap_or_default().is_empty());
    assert_eq!(
        p.high_watermark, 5,
        "the follower does not have offset 5 yet"
    );

    // A follower refuses consumers.
    b.sync(&img);
    assert_eq!(
        answer(&b, fetch_request(id, -1, 0, 3, -1, 0))
            .await
            .error_code,
        6
    );
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_keep_acking_when_one_follower_is_lost() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let cfg = [
        ("min.insync.replicas", "2"),
        ("replica.lag.time.max.ms", "1000"),
    ];
    let a = Node::start(1, dirs[0].path(), &cfg).await;
    let b = Node::start(2, dirs[1].path(), &cfg).await;
    // C is assigned but down: it never fetches.
    let c = Node::start(3, dirs[2].path(), &cfg).await;
    let id = Uuid::new_v4();
    let img = image(&[&a, &b, &c], id, 1, &[1, 2, 3], 1, 1);
    a.sync(&img);
    b.sync(&img);
    let pa = a.partition();
    let appended = produce(&pa, testing::batch(5, 100, 1), true);
    // Held back by C until the lag window passes and the controller drops it.
    tokio::time::timeout(WAIT, pa.wait_acks_all(appended.last_offset + 1, 1))
        .await
        .expect("settles")
        .expect("acknowledged by the remaining ISR");
    assert_eq!(pa.isr(), Some(vec![1, 2]));
    assert!(pa.is_under_replicated() && !pa.is_under_min_isr());
    assert_eq!(b.partition().log_end(), 5);
    assert_eq!(log_bytes(&pa), log_bytes(&b.partition()));
    a.stop();
    b.stop();
    c.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_follower_restarts_at_the_leaders_log_start_and_joins_the_isr() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let cfg = [
        ("log.segment.bytes", "1024"),
        ("log.retention.bytes", "2048"),
    ];
    let a = Node::start(1, dirs[0].path(), &cfg).await;
    let b = Node::start(2, dirs[1].path(), &cfg).await;
    let id = Uuid::new_v4();
    // B is assigned but not in the ISR; A alone commits.
    let img = image(&[&a, &b], id, 1, &[1], 1, 1);
    a.sync(&img);
    let pa = a.partition();
    for i in 0..40 {
        produce(&pa, testing::batch(2, 100, i), false);
    }
    assert_eq!(pa.high_watermark(), 80);
    let start = pa.apply_retention().expect("retention");
    assert!(start > 0, "retention moved the log start");

    // B starts empty: its fetch at 0 is out of range, it restarts at A's log
    // start, catches up and is proposed into the ISR.
    b.sync(&img);
    let pb = b.partition();
    eventually("B joins the ISR", || pa.isr() == Some(vec![1, 2])).await;
    assert_eq!(pb.offsets().0, start);
    assert_eq!(pb.log_end(), 80);
    assert_eq!(log_bytes(&pa), log_bytes(&pb));
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_replica_being_added_counts_against_the_replication_throttle() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let a = Node::start(1, dirs[0].path(), &[]).await;
    let b = Node::start(
        2,
        dirs[1].path(),
        &[("follower.replication.throttled.rate", "200000")],
    )
    .await;
    let id = Uuid::new_v4();

    // A reassignment adds B: throttled until it is in sync.
    let mut moving = image(&[&a, &b], id, 1, &[1], 1, 1);
    let p0 = moving
        .topics
        .get_mut(TOPIC)
        .and_then(|t| t.partitions.get_mut(&0))
        .expect("partition");
    p0.adding = vec![2];
    a.sync(&moving);
    let pa = a.partition();
    for i in 0..20 {
        produce(&pa, testing::batch(10, 500, i), false);
    }
    b.sync(&moving);
    let pb = b.partition();
    eventually("B catches up under the throttle", || {
        pb.log_end() == pa.log_end()
    })
    .await;
    let (moved, _) = b.manager.throttled_totals();
    let copied = log_bytes(&pb).len() as u64;
    assert!(
        moved >= copied,
        "throttle counted {moved} of {copied} bytes"
    );

    // In sync and the move complete: no longer throttled.
    let done = image(&[&a, &b], id, 1, &[1, 2], 1, 2);
    a.sync(&done);
    b.sync(&done);
    for i in 20..30 {
        produce(&pa, testing::batch(10, 500, i), false);
    }
    eventually("B follows at full speed", || pb.log_end() == pa.log_end()).await;
    assert_eq!(b.manager.throttled_totals().0, moved);
    // The leader, with no throttle configured, counts nothing.
    assert_eq!(a.manager.throttled_totals().0, 0);
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sync_partitions_keep_fetching_while_the_throttle_holds_a_move_back() {
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let a = Node::start(1, dirs[0].path(), &[]).await;
    // 1000 bytes per second: after its first slice the move waits about a minute.
    let b = Node::start(
        2,
        dirs[1].path(),
        &[("follower.replication.throttled.rate", "1000")],
    )
    .await;
    let (moving_id, steady_id) = (Uuid::new_v4(), Uuid::new_v4());
    let mut img = image(&[&a, &b], moving_id, 1, &[1], 1, 1);
    let mut steady = img.topics[TOPIC].clone();
    steady.name = "steady".into();
    steady.id = steady_id;
    if let Some(p) = steady.partitions.get_mut(&0) {
        p.isr = vec![1, 2];
    }
    img.topics.insert("steady".into(), steady);
    img.topic_names.insert(steady_id, "steady".into());
    if let Some(p) = img
        .topics
        .get_mut(TOPIC)
        .and_then(|t| t.partitions.get_mut(&0))
    {
        p.adding = vec![2];
    }
    a.sync(&img);
    let moving = a.partition();
    for i in 0..40 {
        produce(&moving, testing::batch(10, 1000, i), false);
    }
    b.sync(&img);
    let behind = b.partition();
    eventually("the move to start", || behind.log_end() > 0).await;

    // Held back by the throttle, the move stalls; acks=all on the in-sync
    // partition, which waits on B, goes on.
    let leader = a.manager.get("steady", 0).expect("steady partition");
    for i in 0..20 {
        let appended = produce(&leader, testing::batch(2, 100, i), true);
        tokio::time::timeout(WAIT, leader.wait_acks_all(appended.last_offset + 1, 1))
            .await
            .expect("acks=all within the wait")
            .expect("acknowledged");
    }
    assert!(
        behind.log_end() < moving.log_end(),
        "the move was not held back: {} of {}",
        behind.log_end(),
        moving.log_end()
    );
    a.stop();
    b.stop();
}
