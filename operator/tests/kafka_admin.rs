//! The operator's Kafka admin client against a real `skiff-broker` on
//! loopback: it creates a topic (and adopts an existing one), reads it back,
//! adds partitions, reads their replica sizes, changes and resets configs,
//! and deletes it.
//!
//! The broker binary is `$SKIFF_BROKER_BIN` or `target/debug/skiff-broker`
//! (`cargo build -p skiff-broker`); without it the test says so and skips.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_operator::admin::kafka::KafkaAdmin;

fn broker_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SKIFF_BROKER_BIN") {
        return Some(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug/skiff-broker");
    path.is_file().then_some(path)
}

/// Two distinct free loopback ports: both stay bound until both are chosen,
/// or the kernel may hand the same port out twice.
fn two_free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("bound").port();
    (port(&a), port(&b))
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn kafka_admin_client_creates_reads_grows_configures_and_deletes_a_topic() {
    let Some(bin) = broker_binary() else {
        eprintln!(
            "SKIPPED: no skiff-broker binary (cargo build -p skiff-broker, or SKIFF_BROKER_BIN)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (kafka, admin) = two_free_ports();
    let addr = format!("127.0.0.1:{kafka}");
    let _broker = Broker(
        Command::new(bin)
            .arg(format!("--data-dir={}", dir.path().display()))
            .arg(format!("--listen={addr}"))
            .arg(format!("--admin-listen=127.0.0.1:{admin}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = loop {
        match KafkaAdmin::connect(&addr).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("broker never answered: {e}"),
        }
    };

    assert_eq!(client.describe_topic("orders").await.unwrap(), None);
    let config = BTreeMap::from([("retention.ms".to_owned(), "3600000".to_owned())]);
    client.create_topic("orders", 2, 1, &config).await.unwrap();
    // Creating it again adopts it.
    client.create_topic("orders", 2, 1, &config).await.unwrap();
    let topic = client.describe_topic("orders").await.unwrap().unwrap();
    assert_eq!(topic.partitions.len(), 2);
    assert!(topic.partitions.iter().all(|p| p.replicas.len() == 1));
    assert_eq!(topic.config, config);

    client.create_partitions("orders", 4).await.unwrap();
    let set = BTreeMap::from([("segment.ms".to_owned(), "60000".to_owned())]);
    client
        .alter_topic_config("orders", &set, &["retention.ms".to_owned()])
        .await
        .unwrap();
    let topic = client.describe_topic("orders").await.unwrap().unwrap();
    assert_eq!(topic.partitions.len(), 4);
    assert_eq!(topic.config, set);

    // The broker opens new partitions' logs shortly after the change commits.
    let deadline = Instant::now() + Duration::from_secs(20);
    let sizes = loop {
        let sizes = client.describe_log_dirs().await.unwrap();
        let orders: Vec<(i32, u64)> = sizes
            .iter()
            .filter(|((t, _), _)| t == "orders")
            .map(|((_, p), bytes)| (*p, *bytes))
            .collect();
        if orders.len() == 4 || Instant::now() > deadline {
            break orders;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sizes,
        [(0, 0), (1, 0), (2, 0), (3, 0)],
        "nothing produced yet"
    );

    let brokers: Vec<i32> = client
        .metadata(Some(&[]))
        .await
        .unwrap()
        .brokers
        .iter()
        .map(|b| b.node_id.0)
        .collect();
    assert_eq!(brokers, [0]);

    client.delete_topic("orders").await.unwrap();
    client.delete_topic("orders").await.unwrap();
    assert_eq!(client.describe_topic("orders").await.unwrap(), None);
}
