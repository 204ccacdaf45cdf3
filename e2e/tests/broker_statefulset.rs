//! The proof that Skiff brokers run as Kubernetes runs them: the example
//! `examples/broker-statefulset.yaml` (a headless Service and a plain
//! StatefulSet of three `skiff-broker` pods) applied on the real control
//! plane becomes one cluster of three Ready brokers whose ids come from the pod index,
//! which advertise their stable DNS names, and which a real Kafka client
//! (kcat, librdkafka) produces to and consumes from through those names. A
//! deleted broker pod comes back with the same claim and still serves what
//! was produced before.
//!
//! The `skiff/broker` image is this workspace's `skiff-broker`, built by the
//! test with `cargo build -p skiff-broker` (or `SKIFF_BROKER_BIN`).
//!
//! Needs the control plane binaries, kcat and root (for the DNS names in
//! `/etc/hosts`); skips without them unless `SKIFF_E2E_REQUIRE` is set.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use skiff_e2e::broker_image::{self, Profile};
use skiff_e2e::controlplane::{Binaries, binaries};
use skiff_e2e::manifest;
use skiff_e2e::node::ImageMap;
use support::{Harness, eventually, has_block, kcat, pod_ip, ready, resolve};

const TEST: &str =
    "broker_statefulset_serves_clients_by_dns_name_and_keeps_data_across_pod_deletion";
const EXAMPLE: &str = "examples/broker-statefulset.yaml";
const STATEFULSET: &str = "skiff-broker";
const BROKERS: usize = 3;
const LIMIT: Duration = Duration::from_secs(120);
fn kcat_available() -> bool {
    if std::process::Command::new("kcat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    let why = "kcat is not installed (make kcat)";
    assert!(!binaries::require_e2e(), "{TEST}: {why}");
    support::skip(TEST, why);
    false
}

/// Every message of `topic` on the broker at `bootstrap`, in order.
async fn consume(bootstrap: &str, topic: &str) -> Vec<String> {
    let out = kcat(
        &[
            "-C",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%s\n",
            "-m",
            "15",
        ],
        "",
    )
    .await;
    out.lines().map(str::to_owned).collect()
}

async fn produce(bootstrap: &str, topic: &str, messages: &[String]) {
    let input = messages.join("\n") + "\n";
    kcat(
        &[
            "-P", "-b", bootstrap, "-t", topic, "-p", "0", "-X", "acks=all", "-m", "15",
        ],
        &input,
    )
    .await;
}

fn messages(broker: usize, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| format!("to broker {broker}: message {i}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_statefulset_serves_clients_by_dns_name_and_keeps_data_across_pod_deletion() {
    let Some(binaries) = Binaries::for_tests(TEST).unwrap() else {
        return;
    };
    if !kcat_available() || !support::hosts_file_writable(TEST) {
        return;
    }
    let broker = tokio::task::spawn_blocking(|| broker_image::binary(Profile::Debug))
        .await
        .unwrap()
        .unwrap();
    let mut images = ImageMap::default();
    images.insert(broker_image::IMAGE, &broker);
    let harness = Harness::start(binaries, images).await;
    let client = harness.client.clone();

    let ns = support::namespace("broker-statefulset");
    let example = std::fs::read_to_string(broker_image::workspace_root().join(EXAMPLE)).unwrap();
    manifest::ensure_namespace(&client, &ns).await.unwrap();
    let applied = manifest::apply(&client, &example, &ns).await.unwrap();
    assert_eq!(
        applied,
        ["Service/skiff-broker", "StatefulSet/skiff-broker"]
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let selector = ListParams::default().labels("app.kubernetes.io/name=skiff-broker");
    let running = eventually("three Ready brokers", LIMIT, || async {
        let mut list = pods.list(&selector).await.ok()?.items;
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        (list.len() == BROKERS && list.iter().all(ready)).then_some(list)
    })
    .await;

    let fqdn = |n: usize| format!("{STATEFULSET}-{n}.{STATEFULSET}.{ns}.svc.cluster.local");
    let bootstrap = |n: usize| format!("{}:9092", fqdn(n));
    for (n, pod) in running.iter().enumerate() {
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels
                .get("apps.kubernetes.io/pod-index")
                .map(String::as_str),
            Some(n.to_string().as_str()),
            "the StatefulSet controller labels the pod index"
        );
        let ip = pod_ip(pod);
        eventually(&format!("{} resolving to {ip}", fqdn(n)), LIMIT, || async {
            resolve(&fqdn(n)).contains(&ip).then_some(())
        })
        .await;

        // Every broker's id is its pod index and it advertises its DNS name:
        // what the client is told is what it connects to from then on. Any
        // broker knows all three (one metadata quorum).
        let all: Vec<serde_json::Value> = (0..BROKERS)
            .map(|i| serde_json::json!({"id": i, "name": bootstrap(i)}))
            .collect();
        eventually(
            &format!("broker {n} listing all brokers"),
            LIMIT,
            || async {
                let metadata: serde_json::Value = serde_json::from_str(
                    &kcat(&["-L", "-J", "-b", &bootstrap(n), "-m", "15"], "").await,
                )
                .ok()?;
                let mut advertised = metadata["brokers"].as_array()?.clone();
                advertised.sort_by_key(|b| b["id"].as_i64());
                (advertised == all).then_some(())
            },
        )
        .await;

        produce(&bootstrap(n), &format!("topic-{n}"), &messages(n, 0..5)).await;
        assert_eq!(
            consume(&bootstrap(n), &format!("topic-{n}")).await,
            messages(n, 0..5)
        );
    }
    // One cluster: every broker knows every topic.
    let topics: serde_json::Value =
        serde_json::from_str(&kcat(&["-L", "-J", "-b", &bootstrap(0), "-m", "15"], "").await)
            .unwrap();
    let names: Vec<&str> = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["topic"].as_str())
        .filter(|t| t.starts_with("topic-"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["topic-0", "topic-1", "topic-2"]);

    // Delete broker 1: the StatefulSet recreates it on the same claim, the
    // name follows the new address, and the data is still there.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let claim_name = format!("data-{STATEFULSET}-1");
    let volume_before = claims
        .get(&claim_name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .volume_name;
    assert!(volume_before.is_some(), "the claim is bound");
    let old = &running[1];
    let old_uid = old.metadata.uid.clone().unwrap();
    pods.delete(&format!("{STATEFULSET}-1"), &DeleteParams::default())
        .await
        .unwrap();
    let recreated = eventually("broker 1 recreated and Ready", LIMIT, || async {
        let pod = pods.get_opt(&format!("{STATEFULSET}-1")).await.ok()??;
        (pod.metadata.uid.as_deref() != Some(old_uid.as_str()) && ready(&pod)).then_some(pod)
    })
    .await;
    let claimed: Vec<String> = recreated
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.clone()))
        .collect();
    assert_eq!(claimed, std::slice::from_ref(&claim_name));
    assert_eq!(
        claims
            .get(&claim_name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .volume_name,
        volume_before,
        "the same volume"
    );
    let (old_ip, new_ip) = (pod_ip(old), pod_ip(&recreated));
    eventually("broker 1's name at its new address", LIMIT, || async {
        let now = resolve(&fqdn(1));
        (now.contains(&new_ip) && (old_ip == new_ip || !now.contains(&old_ip))).then_some(())
    })
    .await;
    assert_eq!(
        consume(&bootstrap(1), "topic-1").await,
        messages(1, 0..5),
        "what broker 1 acknowledged before the deletion"
    );
    produce(&bootstrap(1), "topic-1", &messages(1, 5..7)).await;
    assert_eq!(consume(&bootstrap(1), "topic-1").await, messages(1, 0..7));

    let root = harness.node_root();
    harness.stop().await;
    assert!(!has_block(&root), "the brokers' names outlived the harness");
}
