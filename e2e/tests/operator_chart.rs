//! The operator as users install it: `helm template` of
//! `charts/skiff-operator` (CRDs, RBAC, ServiceAccount, Deployment) applied
//! to the control plane, the chart's image `skiff/operator` run by the node
//! agent as this workspace's `skiff-operator`, in pods that reach the
//! apiserver through in-cluster config with the chart's ServiceAccount. The
//! control plane is fresh, so that account has nothing but the chart's RBAC:
//! everything the operator does here proves the chart grants enough.
//!
//! The chart's default of two replicas comes up Ready (`/readyz`, also
//! fetched directly from each pod), one of them holds the leader Lease; the
//! leader reconciles a Cluster of three brokers to Ready 3/3 and a Topic to
//! Ready, and kcat produces to it with acks=all and reads the messages back.
//! Then the leader's pod is deleted: it releases the Lease on SIGTERM, a
//! running replica (the standby or the replacement pod) holds it well before
//! it would have expired, and reconciling goes on (a second Topic becomes Ready and carries
//! messages), the Deployment replaces the deleted pod, and no operator ever
//! logged a forbidden request.
//!
//! Needs the control plane binaries, helm, kcat and root (pod DNS names and
//! the service-account mount); skips without them unless
//! `SKIFF_E2E_REQUIRE` is set.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use skiff_e2e::chart;
use skiff_e2e::manifest;
use support::chart::{http_get, install_operator, lease_holder, logs};
use support::cluster_ops::produce_and_consume;
use support::eventually;
use support::operator::start_with_real_brokers_and_operator_image;
use support::resources;

const TEST: &str = "chart_installed_operator_reconciles_with_its_rbac_and_fails_over";
/// How long the operator's Lease is valid without renewal
/// (`operator/src/leader.rs`): a takeover faster than this was a release.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const LIMIT: Duration = Duration::from_secs(120);
const CLUSTER: &str = "demo";
/// The chart's default metrics port (`metricsPort`).
const METRICS_PORT: u16 = 8080;

fn cluster_yaml() -> String {
    resources::cluster_yaml(CLUSTER, 3, &[("min.insync.replicas", "2")])
}

fn topic_yaml(name: &str) -> String {
    resources::topic_yaml(name, CLUSTER, 3, 3)
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_installed_operator_reconciles_with_its_rbac_and_fails_over() {
    let started = Instant::now();
    let Some((harness, _)) = start_with_real_brokers_and_operator_image(TEST).await else {
        return;
    };
    let client = harness.client.clone();
    let system = support::namespace("chart-system");
    let ns = support::namespace("chart-brokers");

    // The chart with its defaults: two replicas, leader election on.
    let (rendered, pods) = install_operator(&harness, &system, &[], LIMIT).await;
    let deployment = Api::<Deployment>::namespaced(client.clone(), &system)
        .get(chart::RELEASE)
        .await
        .unwrap();
    assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(2));
    assert!(rendered.contains("kind: ClusterRole\n"), "{rendered}");
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some(chart::RELEASE),
            "the pod runs as the chart's ServiceAccount"
        );
        let probe = spec.containers[0].readiness_probe.as_ref().unwrap();
        assert_eq!(
            probe.http_get.as_ref().unwrap().path.as_deref(),
            Some("/readyz")
        );
        // The pod listens on its own address (the chart's 0.0.0.0), as the
        // node agent's readiness probe found.
        let addr = SocketAddr::new(support::pod_ip(pod), METRICS_PORT);
        let (code, body) = http_get(addr, "/readyz").await.unwrap();
        assert_eq!((code, body.trim()), (200, "ok"), "{addr}");
    }
    let names: Vec<String> = pods.iter().map(name).collect();
    let leader = eventually("a replica holding the Lease", LIMIT, || async {
        lease_holder(&client, &system)
            .await
            .filter(|h| names.contains(h))
    })
    .await;
    let standby = names.iter().find(|n| **n != leader).unwrap().clone();

    // The leader, with nothing but the chart's RBAC, reconciles.
    chart::wait_crds(&client, LIMIT).await.unwrap();
    manifest::ensure_namespace(&client, &ns).await.unwrap();
    manifest::apply(&client, &cluster_yaml(), &ns)
        .await
        .unwrap();
    manifest::apply(&client, &topic_yaml("orders"), &ns)
        .await
        .unwrap();
    let ready = chart::wait_resources_ready(
        &client,
        &ns,
        &[("Cluster", CLUSTER), ("Topic", "orders")],
        LIMIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&harness, &system, &[])));
    assert_eq!(ready[0].data["status"]["brokersReady"], "3/3");
    assert_eq!(ready[1].data["status"]["partitions"], 3);
    let brokers: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let bootstrap = format!(
        "{}:9092",
        support::pod_ip(&brokers.get(&format!("{CLUSTER}-0")).await.unwrap())
    );
    produce_and_consume(&bootstrap, "orders").await;
    let reconciled_at = started.elapsed();

    // The leader's pod goes; another replica takes the Lease over.
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), &system);
    operator_pods
        .delete(&leader, &DeleteParams::default())
        .await
        .unwrap();
    let deleted_at = Instant::now();
    let new_leader = eventually("another replica holding the Lease", LIMIT, || async {
        lease_holder(&client, &system)
            .await
            .filter(|h| *h != leader)
    })
    .await;
    let takeover = deleted_at.elapsed();
    // The deleted leader releases the Lease on SIGTERM, so whichever replica
    // asks first (the standby or the Deployment's replacement pod) takes it
    // at once instead of after the Lease expired.
    assert!(
        takeover < LEASE_DURATION,
        "the Lease moved to {new_leader} only after {takeover:?}: it was not released"
    );
    assert!(
        operator_pods.get_opt(&new_leader).await.unwrap().is_some(),
        "the new holder {new_leader} is a running replica"
    );

    // ... and keeps reconciling.
    manifest::apply(&client, &topic_yaml("payments"), &ns)
        .await
        .unwrap();
    chart::wait_resources_ready(&client, &ns, &[("Topic", "payments")], LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&harness, &system, &[])));
    produce_and_consume(&bootstrap, "payments").await;

    // The Deployment is whole again, without the deleted pod.
    let pods = chart::wait_operator(&client, &system, LIMIT).await.unwrap();
    let names: Vec<String> = pods.iter().map(name).collect();
    assert!(!names.contains(&leader), "{names:?}");
    assert!(names.contains(&standby), "{names:?}");

    let all_logs = logs(&harness, &system, &pods);
    assert!(
        !all_logs.to_lowercase().contains("forbidden"),
        "an operator was refused by RBAC:\n{all_logs}"
    );
    assert!(all_logs.contains("became leader"), "{all_logs}");
    eprintln!(
        "{TEST}: Cluster and Topic Ready and kcat round trip {reconciled_at:?} after start; \
         Lease moved {leader} -> {new_leader} {takeover:?} after the delete; total {:?}",
        started.elapsed()
    );
    harness.stop().await;
}
