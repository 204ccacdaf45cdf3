//! Quorum tests on loopback: single node, three voters with failover, a
//! learner, and the controller listener. Each test bounds itself with a timeout.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Upper bound for any one test.
const TEST_LIMIT: Duration = Duration::from_secs(90);
/// Upper bound for one wait inside a test (the machine is shared and slow).
const WAIT: Duration = Duration::from_secs(20);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn bounded<F: Future<Output = ()>>(test: F) {
    init_tracing();
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("test exceeded its time limit");
}

/// Echoes requests and records closed connections.
#[derive(Debug, Default)]
struct TestController {
    closed: Mutex<Vec<ConnId>>,
}

impl ControllerRpc for TestController {
    fn call(
        &self,
        conn: ConnId,
        request: serde_json::Value,
    ) -> BoxFuture<'static, serde_json::Value> {
        async move {
            if let Some(ms) = request.get("sleep_ms").and_then(|v| v.as_u64()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            serde_json::json!({ "conn": conn, "echo": request })
        }
        .boxed()
    }

    fn closed(&self, conn: ConnId) {
        self.closed.lock().unwrap().push(conn);
    }
}

fn controller() -> Arc<TestController> {
    Arc::new(TestController::default())
}

/// A loopback address that was free a moment ago (so a restarted node can reuse it).
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Polls `check` until it holds or `WAIT` passes.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn config(
    node: i32,
    listen: &str,
    voters: &BTreeMap<i32, String>,
    dir: &std::path::Path,
) -> QuorumConfig {
    QuorumConfig {
        voters: voters.clone(),
        snapshot_every: 10,
        ..QuorumConfig::new(node, listen, dir.join(format!("node-{node}")))
    }
}

fn pid_block(next: i64) -> Vec<MetadataRecord> {
    vec![MetadataRecord::ProducerIdsAllocated { next }]
}

fn broker(node_id: i32) -> MetadataRecord {
    MetadataRecord::BrokerRegistered {
        node_id,
        host: "127.0.0.1".into(),
        port: 9092 + node_id,
        rack: None,
        incarnation: uuid::Uuid::nil(),
        controller: None,
    }
}

async fn wait_leader_of(q: &Quorum) -> i32 {
    wait_until("a leader", || q.leader().is_some()).await;
    q.leader().unwrap()
}

/// Waits until every quorum in `qs` agrees on one leader among them, and returns it.
async fn common_leader(qs: &[&Quorum]) -> i32 {
    wait_until("a common leader", || {
        let l = qs[0].leader();
        l.is_some()
            && qs.iter().all(|q| q.leader() == l)
            && qs.iter().any(|q| Some(q.node_id()) == l && q.is_leader())
    })
    .await;
    qs[0].leader().unwrap()
}

async fn converge(qs: &[&Quorum], image: &Arc<MetadataImage>) {
    wait_until("images to converge", || {
        qs.iter().all(|q| *q.image() == **image)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_node_commits_and_restores_image_across_restarts_and_snapshots() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(1, "127.0.0.1:0", &BTreeMap::new(), dir.path());

        let q = Quorum::start(cfg.clone(), controller()).await.unwrap();
        assert_eq!(wait_leader_of(&q).await, 1);
        assert!(q.is_leader());
        assert_eq!(
            q.voters(),
            BTreeMap::from([(1, q.local_addr().to_string())])
        );
        let image = q
            .propose(vec![
                MetadataRecord::ClusterFormatted {
                    cluster_id: "c1".into(),
                },
                broker(1),
            ])
            .await
            .unwrap();
        assert_eq!(image.cluster_id, "c1");
        assert!(image.brokers.contains_key(&1));
        let image = q.propose(pid_block(1000)).await.unwrap();
        assert_eq!(image.next_producer_id, 1000);
        assert_eq!(*q.image(), *image);
        assert_eq!(*q.barrier().await.unwrap(), *image);
        assert_eq!(q.failure(), None, "a running quorum reports no failure");
        let after_stop = q.clone();
        q.shutdown().await;
        assert!(
            after_stop.failure().is_some(),
            "a stopped Raft core is reported (the broker's /healthz fails on it)"
        );

        // Restart: the committed entries are replayed from the log.
        let q = Quorum::start(cfg.clone(), controller()).await.unwrap();
        wait_until("image restored from the log", || *q.image() == *image).await;
        wait_leader_of(&q).await;
        // Port 0 binds a new port each run; a single node reports where it is now.
        assert_eq!(
            q.voters(),
            BTreeMap::from([(1, q.local_addr().to_string())])
        );
        assert_eq!(q.address_of(1), Some(q.local_addr().to_string()));

        // Enough entries for a snapshot (every 10) and a purge behind it.
        let mut image = image;
        for i in 0..25 {
            image = q.propose(pid_block(2000 + i)).await.unwrap();
        }
        assert_eq!(image.next_producer_id, 2024);
        wait_until("snapshot and purge", || {
            let m = q.metrics();
            m.snapshot.is_some() && m.purged.is_some()
        })
        .await;
        let snapshot_at = q.metrics().snapshot.unwrap().index;
        println!(
            "single node: snapshot at index {snapshot_at}, purged up to {:?}",
            q.metrics().purged
        );
        q.shutdown().await;

        let q = Quorum::start(cfg, controller()).await.unwrap();
        wait_until("image restored from snapshot + log", || {
            *q.image() == *image
        })
        .await;
        assert!(q.metrics().purged.is_some());
        wait_leader_of(&q).await;
        let after = q.propose(pid_block(5000)).await.unwrap();
        assert_eq!(after.next_producer_id, 5000);
        assert_eq!(after.records, image.records + 1);
        q.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_voters_replicate_fail_over_and_catch_up() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let voters: BTreeMap<i32, String> = (1..=3).map(|id| (id, free_addr())).collect();
        let start = |id: i32| {
            let cfg = config(id, &voters[&id], &voters, dir.path());
            async move { Quorum::start(cfg, controller()).await.unwrap() }
        };
        let mut nodes: BTreeMap<i32, Quorum> = BTreeMap::new();
        for id in 1..=3 {
            nodes.insert(id, start(id).await);
        }
        let all: Vec<&Quorum> = nodes.values().collect();
        let leader = common_leader(&all).await;
        assert_eq!(nodes[&1].voters(), voters);

        let mut image = nodes[&leader]
            .propose(vec![broker(1), broker(2), broker(3)])
            .await
            .unwrap();
        converge(&all, &image).await;

        let follower = *nodes.keys().find(|id| **id != leader).unwrap();
        match nodes[&follower].propose(pid_block(1)).await {
            Err(QuorumError::NotLeader { leader: l }) => assert_eq!(l, Some(leader)),
            other => panic!("propose on a follower: {other:?}"),
        }
        assert!(matches!(
            nodes[&follower].barrier().await,
            Err(QuorumError::NotLeader { .. })
        ));
        assert_eq!(*nodes[&leader].barrier().await.unwrap(), *image);

        // Kill the leader; the other two elect a new one.
        let old = leader;
        let last_index_of_old = nodes[&old].metrics().last_log_index.unwrap();
        let stopped = Instant::now();
        nodes.remove(&old).unwrap().shutdown().await;
        let shutdown_took = stopped.elapsed();
        let rest: Vec<&Quorum> = nodes.values().collect();
        wait_until("a new leader", || {
            let l = rest[0].leader();
            l.is_some() && l != Some(old) && rest.iter().all(|q| q.leader() == l)
        })
        .await;
        let elapsed = stopped.elapsed();
        let leader = rest[0].leader().unwrap();
        println!(
            "three voters: leader {old} stopped (shutdown took {shutdown_took:?}), \
             node {leader} elected {elapsed:?} after the shutdown began"
        );
        assert!(
            elapsed < Duration::from_secs(5),
            "failover took {elapsed:?}"
        );

        // Proposals continue; enough of them that the new leader snapshots and
        // purges past everything the old node has.
        for i in 0..30 {
            image = nodes[&leader].propose(pid_block(100 + i)).await.unwrap();
        }
        let rest: Vec<&Quorum> = nodes.values().collect();
        converge(&rest, &image).await;
        wait_until("leader purged past the old node's log", || {
            nodes[&leader]
                .metrics()
                .purged
                .is_some_and(|p| p.index > last_index_of_old)
        })
        .await;

        // The old node restarts and catches up (by snapshot: its next entry is purged).
        nodes.insert(old, start(old).await);
        let all: Vec<&Quorum> = nodes.values().collect();
        converge(&all, &image).await;
        assert!(nodes[&old].metrics().snapshot.is_some());
        assert_eq!(nodes[&old].leader(), Some(leader));

        // And takes part in later commits.
        let image = nodes[&leader].propose(vec![broker(4)]).await.unwrap();
        converge(&all, &image).await;

        for (_, q) in nodes {
            q.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learner_added_by_the_leader_receives_the_log() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let voters = BTreeMap::from([(1, free_addr())]);
        let voter = Quorum::start(config(1, &voters[&1], &voters, dir.path()), controller())
            .await
            .unwrap();
        let learner = Quorum::start(config(7, "127.0.0.1:0", &voters, dir.path()), controller())
            .await
            .unwrap();
        assert_eq!(wait_leader_of(&voter).await, 1);
        assert_eq!(learner.voters(), voters, "configured voters before joining");
        assert_eq!(learner.address_of(1), Some(voters[&1].clone()));

        let before = voter.propose(vec![broker(1), broker(7)]).await.unwrap();
        let learner_addr = learner.local_addr().to_string();
        assert!(matches!(
            learner.add_learner(7, learner_addr.clone()).await,
            Err(QuorumError::NotLeader { .. })
        ));
        // Concurrent registrations queue instead of failing with "change in progress".
        let absent = free_addr();
        let (a, b) = tokio::join!(
            voter.add_learner(7, learner_addr.clone()),
            voter.add_learner(8, absent.clone())
        );
        a.unwrap();
        b.unwrap();
        voter.add_learner(7, learner_addr.clone()).await.unwrap(); // idempotent
        assert_eq!(voter.address_of(8), Some(absent));
        assert!(matches!(
            voter.add_learner(1, learner_addr.clone()).await,
            Err(QuorumError::Membership(_))
        ));
        converge(&[&voter, &learner], &before).await;

        let after = voter.propose(pid_block(77)).await.unwrap();
        converge(&[&voter, &learner], &after).await;
        assert_eq!(learner.leader(), Some(1));
        assert!(!learner.is_leader());
        assert_eq!(learner.voters(), voters);
        assert_eq!(voter.address_of(7), Some(learner_addr));
        match learner.propose(pid_block(1)).await {
            Err(QuorumError::NotLeader { leader }) => assert_eq!(leader, Some(1)),
            other => panic!("propose on a learner: {other:?}"),
        }
        learner.shutdown().await;
        voter.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_refuses_bad_frames_and_reports_closed_controller_connections() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ctl = controller();
        let q = Quorum::start(
            config(1, "127.0.0.1:0", &BTreeMap::new(), dir.path()),
            ctl.clone(),
        )
        .await
        .unwrap();
        let addr = q.local_addr();

        // A length over the limit: the connection is closed without reading a body.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "oversized frame must close the connection");

        // A well-framed body that is not a request.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&5u32.to_be_bytes()).await.unwrap();
        s.write_all(b"nope!").await.unwrap();
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "garbage frame must close the connection");

        // A frame cut short by the peer.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&100u32.to_be_bytes()).await.unwrap();
        s.write_all(b"{\"contr").await.unwrap();
        drop(s);

        // The listener still serves; a controller call goes to the hook.
        let client = RpcClient::new(addr.to_string());
        let reply = client
            .call(serde_json::json!({"hello": 1}), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(reply["echo"]["hello"], 1);
        let conn = reply["conn"].as_u64().unwrap();
        // The same connection is reused.
        let again = client
            .call(serde_json::json!({}), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(again["conn"].as_u64(), Some(conn));
        assert!(
            ctl.closed.lock().unwrap().is_empty(),
            "raw connections carried no controller request"
        );

        // Dropping the connection fires `closed` for it.
        client.disconnect().await;
        wait_until("closed callback", || {
            ctl.closed.lock().unwrap().contains(&conn)
        })
        .await;

        // A timed-out call drops its connection; the next call reconnects.
        let slow = client
            .call(
                serde_json::json!({"sleep_ms": 2000}),
                Duration::from_millis(100),
            )
            .await;
        assert!(matches!(slow, Err(RpcError::Timeout { .. })), "{slow:?}");
        let reply = client
            .call(serde_json::json!({}), Duration::from_secs(5))
            .await
            .unwrap();
        assert_ne!(reply["conn"].as_u64(), Some(conn));

        // Nothing listening: a connect error, not a hang.
        q.shutdown().await;
        let err = client
            .call(serde_json::json!({}), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            err.is_connect() || matches!(err, RpcError::Closed { .. } | RpcError::Frame { .. }),
            "{err:?}"
        );
        let err = client
            .call(serde_json::json!({}), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
    })
    .await;
}
