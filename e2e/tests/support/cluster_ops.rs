//! What the operator scenarios on real brokers share besides the resources
//! themselves (`super::resources`): the brokers' partition map as a real
//! client (kcat) reads it, a kcat round trip, a broker pod's process, and
//! the operator's own metrics.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Deserialize;

use super::{eventually, kcat, pod_ip, ready};

/// The broker pods of Cluster `cluster`, by ordinal.
pub async fn broker_pods(client: &kube::Client, ns: &str, cluster: &str) -> Vec<Pod> {
    let mut pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={cluster}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    pods.sort_by_key(|p| ordinal(p.metadata.name.as_deref().unwrap_or_default()));
    pods
}

fn ordinal(pod: &str) -> i32 {
    pod.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

/// Every Ready broker's Kafka address, comma-separated (a bootstrap list).
pub async fn bootstrap(client: &kube::Client, ns: &str, cluster: &str) -> String {
    broker_pods(client, ns, cluster)
        .await
        .iter()
        .filter(|p| ready(p))
        .map(|p| format!("{}:9092", pod_ip(p)))
        .collect::<Vec<_>>()
        .join(",")
}

/// One partition as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    /// Partition index.
    pub partition: i32,
    /// Leader (`-1`: none).
    pub leader: i32,
    /// Replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
}

#[derive(Deserialize)]
struct KcatMetadata {
    topics: Vec<KcatTopic>,
}

#[derive(Deserialize)]
struct KcatTopic {
    topic: String,
    #[serde(default)]
    partitions: Vec<KcatPartition>,
}

#[derive(Deserialize)]
struct KcatPartition {
    partition: i32,
    leader: i32,
    #[serde(default)]
    replicas: Vec<KcatBroker>,
    #[serde(default)]
    isrs: Vec<KcatBroker>,
}

#[derive(Deserialize)]
struct KcatBroker {
    id: i32,
}

/// The partitions of `topic` as a real client sees them (`kcat -L -J`).
pub async fn partitions(bootstrap: &str, topic: &str) -> Vec<PartitionMeta> {
    let json = kcat(&["-L", "-J", "-b", bootstrap, "-t", topic], "").await;
    let metadata: KcatMetadata =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("kcat -L -J: {e}: {json}"));
    let mut out: Vec<PartitionMeta> = metadata
        .topics
        .into_iter()
        .filter(|t| t.topic == topic)
        .flat_map(|t| t.partitions)
        .map(|p| PartitionMeta {
            partition: p.partition,
            leader: p.leader,
            replicas: p.replicas.iter().map(|b| b.id).collect(),
            isr: p.isrs.iter().map(|b| b.id).collect(),
        })
        .collect();
    out.sort_by_key(|p| p.partition);
    out
}

/// `partition: [replicas] isr [..] leader n` lines.
pub fn placement_text(partitions: &[PartitionMeta]) -> String {
    partitions
        .iter()
        .map(|p| {
            format!(
                "p{}: replicas {:?} isr {:?} leader {}",
                p.partition, p.replicas, p.isr, p.leader
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Brokers holding at least one replica.
pub fn brokers_used(partitions: &[PartitionMeta]) -> BTreeSet<i32> {
    partitions
        .iter()
        .flat_map(|p| p.replicas.iter().copied())
        .collect()
}

/// Whether every partition has `rf` replicas, all in sync, and a leader.
pub fn fully_replicated(partitions: &[PartitionMeta], rf: usize) -> bool {
    !partitions.is_empty()
        && partitions.iter().all(|p| {
            p.replicas.len() == rf
                && p.isr.len() == rf
                && p.leader >= 0
                && p.replicas.iter().all(|r| p.isr.contains(r))
        })
}

/// Produces three messages to partition 0 of `topic` with acks=all and reads
/// them back.
pub async fn produce_and_consume(bootstrap: &str, topic: &str) {
    let produced = kcat(
        &[
            "-P", "-b", bootstrap, "-t", topic, "-p", "0", "-X", "acks=all",
        ],
        "one\ntwo\nthree\n",
    )
    .await;
    assert_eq!(produced, "");
    let consumed = kcat(
        &[
            "-C",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        "",
    )
    .await;
    assert_eq!(consumed, "one\ntwo\nthree\n", "topic {topic}");
}

/// The process id of the pod's (first) container, from the node agent's
/// `containerID` (`skiff-e2e://<pid>`).
pub fn container_pid(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .container_id
        .as_deref()?
        .strip_prefix("skiff-e2e://")?
        .parse()
        .ok()
}

/// The address the operator serves `/metrics` on, from its log.
pub async fn operator_metrics_addr(log: &Path) -> String {
    eventually(
        "the operator's metrics address in its log",
        Duration::from_secs(30),
        || async {
            let text = strip_ansi(&std::fs::read_to_string(log).ok()?);
            text.lines()
                .find(|l| l.contains("serving /metrics"))?
                .split("addr=")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_owned)
        },
    )
    .await
}

/// `text` without terminal colour sequences (`ESC [ … m`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of the sample `name{labels}` in the operator's `/metrics`
/// (0 when absent).
pub async fn operator_metric(addr: &str, sample: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("the operator's metrics at {addr}: {e}"));
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("the metrics request is sent");
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut text))
        .await
        .expect("the metrics answer in time")
        .expect("the metrics are read");
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
