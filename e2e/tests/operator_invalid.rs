//! Invalid specs on the real control plane with a real broker (issue #6,
//! proof 6). Admission rejects, with the message the CRD carries: a Cluster
//! whose `min.insync.replicas` exceeds its brokers, a Cluster with a broker
//! config key the broker does not know, shrinking a Cluster's storage, and
//! shrinking a Topic's partitions. A Topic asking for more replicas than
//! there are brokers is admitted (admission cannot count brokers) and shows
//! `Ready=False`/`Degraded=True` with reason `ReplicationFactorTooHigh`.
//! Meanwhile the operator stays calm — it keeps running, and over a quiet
//! window its reconcile counters grow only by its periodic passes, with no
//! failed pass — and keeps reconciling: a valid Topic created afterwards
//! becomes Ready.
//!
//! Needs the control plane binaries and root (pod DNS names); skips without
//! them unless `SKIFF_E2E_REQUIRE` is set.

mod support;

use std::time::{Duration, Instant};

use skiff_e2e::manifest;
use support::cluster_ops::{self, operator_metric};
use support::eventually;
use support::operator::start_operator_env;
use support::resources;

const TEST: &str = "invalid_specs_are_rejected_or_surfaced_and_the_operator_carries_on";
const LIMIT: Duration = Duration::from_secs(120);
const CLUSTER: &str = "strict";
/// How long the operator is watched for a hot loop.
const QUIET: Duration = Duration::from_secs(20);

fn cluster_yaml(name: &str, size: &str, config: &str) -> String {
    format!(
        "apiVersion: skiff.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: {name}\nspec:\n  brokers: 1\n  image: skiff/broker:dev\n  storage:\n    size: {size}\n  config:\n{config}"
    )
}

/// The message admission answered `yaml` with; panics if it was admitted.
async fn rejected(client: &kube::Client, ns: &str, yaml: &str) -> String {
    match manifest::apply(client, yaml, ns).await {
        Ok(applied) => panic!("admitted: {applied:?}\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_rejected_or_surfaced_and_the_operator_carries_on() {
    let Some(mut env) = start_operator_env(TEST, "operator-invalid").await else {
        return;
    };
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let metrics = cluster_ops::operator_metrics_addr(&env.operator.log).await;
    let started = Instant::now();

    // min.insync.replicas above the brokers: rejected once the CRD is served.
    let too_strict = cluster_yaml(CLUSTER, "1Gi", "    min.insync.replicas: \"2\"\n");
    let message = eventually("admission of Cluster objects", LIMIT, || async {
        match manifest::apply(&client, &too_strict, &ns).await {
            Err(e) if e.to_string().contains("min.insync.replicas") => Some(e.to_string()),
            Ok(applied) => panic!("min.insync.replicas 2 on 1 broker was admitted: {applied:?}"),
            Err(_) => None,
        }
    })
    .await;
    println!("min.insync.replicas > brokers: {message}");
    assert!(
        message
            .contains("config min.insync.replicas must be a whole number no greater than brokers"),
        "{message}"
    );
    let message = rejected(
        &client,
        &ns,
        &cluster_yaml(CLUSTER, "1Gi", "    log.retention.hours: \"1\"\n"),
    )
    .await;
    println!("unknown broker config key: {message}");
    assert!(
        message.contains("unknown broker config key; the broker knows: num.partitions"),
        "{message}"
    );

    let valid = cluster_yaml(CLUSTER, "1Gi", "    min.insync.replicas: \"1\"\n");
    manifest::apply(&client, &valid, &ns).await.unwrap();
    let clusters = resources::clusters(&client, &ns);
    let topics = resources::topics(&client, &ns);
    resources::wait_cluster_settled(&clusters, CLUSTER, 1, LIMIT).await;
    let message = rejected(
        &client,
        &ns,
        &cluster_yaml(CLUSTER, "512Mi", "    min.insync.replicas: \"1\"\n"),
    )
    .await;
    println!("shrinking storage: {message}");
    assert!(message.contains("storage.size may not shrink"), "{message}");

    // A Topic's partitions only grow.
    manifest::apply(
        &client,
        &resources::topic_yaml("events", CLUSTER, 3, 1),
        &ns,
    )
    .await
    .unwrap();
    resources::wait_topic_ready(&topics, "events", LIMIT).await;
    let message = rejected(
        &client,
        &ns,
        &resources::topic_yaml("events", CLUSTER, 2, 1),
    )
    .await;
    println!("shrinking partitions: {message}");
    assert!(
        message.contains("partitions may only grow: Kafka cannot remove partitions"),
        "{message}"
    );

    // More replicas than brokers: admitted, then a condition says why.
    manifest::apply(
        &client,
        &resources::topic_yaml("too-wide", CLUSTER, 3, 2),
        &ns,
    )
    .await
    .unwrap();
    let (ready, degraded) = eventually("too-wide's conditions", LIMIT, || async {
        let t = topics.get("too-wide").await.ok()?;
        let ready = resources::condition(&t, "Ready")?.clone();
        let degraded = resources::condition(&t, "Degraded")?.clone();
        (degraded["status"] == "True").then_some((ready, degraded))
    })
    .await;
    println!("replicationFactor > brokers: Ready {ready} Degraded {degraded}");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ReplicationFactorTooHigh");
    assert_eq!(
        degraded["message"],
        "replicationFactor 2 is more than the 1 brokers of the cluster"
    );

    // Calm: no failed pass and no reconcile storm over a quiet window.
    let sample = |kind: &str| format!("skiff_operator_reconciles_total{{kind=\"{kind}\"}}");
    let before_topic = operator_metric(&metrics, &sample("Topic")).await;
    let before_cluster = operator_metric(&metrics, &sample("Cluster")).await;
    assert!(
        before_topic > 0.0 && before_cluster > 0.0,
        "the reconcile counters are read ({before_topic}, {before_cluster})"
    );
    tokio::time::sleep(QUIET).await;
    let topic_passes = operator_metric(&metrics, &sample("Topic")).await - before_topic;
    let cluster_passes = operator_metric(&metrics, &sample("Cluster")).await - before_cluster;
    let errors = failed_passes(&metrics).await;
    println!(
        "over {QUIET:?}: {topic_passes} Topic passes (2 Topics), {cluster_passes} Cluster passes, failed passes {errors}"
    );
    // Idle objects are looked at every 30 s, besides watch events.
    assert!(
        topic_passes <= 6.0,
        "Topic reconciles in a loop: {topic_passes}"
    );
    assert!(
        cluster_passes <= 6.0,
        "Cluster reconciles in a loop: {cluster_passes}"
    );
    assert_eq!(errors, 0.0, "failed reconcile passes");

    // The operator carries on: a valid Topic becomes Ready.
    manifest::apply(&client, &resources::topic_yaml("after", CLUSTER, 2, 1), &ns)
        .await
        .unwrap();
    resources::wait_topic_ready(&topics, "after", LIMIT).await;
    println!("a valid Topic created afterwards is Ready");
    let t = topics.get("too-wide").await.unwrap();
    assert!(!resources::is_true(&t, "Ready"));

    env.operator.assert_running();
    println!("{TEST}: {:?}", started.elapsed());
    env.stop().await;
}

/// Failed reconcile passes of any kind and error class.
async fn failed_passes(metrics: &str) -> f64 {
    let mut total = 0.0;
    for kind in ["Cluster", "Topic"] {
        for error in ["kube", "broker", "invalid"] {
            total += operator_metric(
                metrics,
                &format!(
                    "skiff_operator_reconcile_errors_total{{error=\"{error}\",kind=\"{kind}\"}}"
                ),
            )
            .await;
        }
    }
    total
}
