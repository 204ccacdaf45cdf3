//! The Skiff custom resources (`Cluster`, `Topic`) as the operator
//! scenarios handle them: their APIs and manifests, their conditions, and
//! waiting until one is admitted, Ready or settled. Builds on
//! `skiff_e2e::chart`'s dynamic-object helpers; starts no processes.

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
pub use skiff_e2e::chart::condition;

use super::eventually;

/// The `Cluster` objects of `ns`.
pub fn clusters(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    skiff_e2e::chart::custom_resources(client, ns, "Cluster")
}

/// The `Topic` objects of `ns`.
pub fn topics(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    skiff_e2e::chart::custom_resources(client, ns, "Topic")
}

/// Whether the condition `type_` is `True` (for whichever generation the
/// status was written).
pub fn is_true(object: &DynamicObject, type_: &str) -> bool {
    condition(object, type_).is_some_and(|c| c["status"] == "True")
}

/// Whether condition `type_` is True for the object's current generation.
pub fn is_true_for_generation(object: &DynamicObject, type_: &str) -> bool {
    let current = object.data["status"]["observedGeneration"].as_i64()
        == object.metadata.generation
        && object.metadata.generation.is_some();
    current && is_true(object, type_)
}

/// Waits until `name` in `api` is Ready=True for its current generation.
pub async fn wait_ready(api: &Api<DynamicObject>, name: &str, limit: Duration) -> DynamicObject {
    eventually(&format!("{name} Ready=True"), limit, || async {
        let object = api.get(name).await.ok()?;
        is_true_for_generation(&object, "Ready").then_some(object)
    })
    .await
}

/// Waits until Topic `name` is `Ready=True`.
pub async fn wait_topic_ready(api: &Api<DynamicObject>, name: &str, limit: Duration) {
    eventually(&format!("Topic {name} Ready"), limit, || async {
        let t = api.get(name).await.ok()?;
        is_true(&t, "Ready").then_some(())
    })
    .await;
}

/// Waits until Cluster `name` is `Ready=True` with `brokers` brokers, no
/// under-replicated partitions and nothing under way.
pub async fn wait_cluster_settled(
    api: &Api<DynamicObject>,
    name: &str,
    brokers: usize,
    limit: Duration,
) -> DynamicObject {
    let want = format!("{brokers}/{brokers}");
    eventually(
        &format!("Cluster {name} Ready and idle with {want} brokers"),
        limit,
        || async {
            let c = api.get(name).await.ok()?;
            let s = &c.data["status"];
            (is_true(&c, "Ready")
                && s["brokersReady"] == want.as_str()
                && s["underReplicatedPartitions"] == 0
                && s["operation"] == "Idle")
                .then_some(c)
        },
    )
    .await
}

/// Applies `yaml` once the API server serves its kind (the CRDs take a
/// moment after they are installed).
pub async fn apply_when_served(client: &kube::Client, yaml: &str, ns: &str, limit: Duration) {
    eventually("the object admitted", limit, || async {
        skiff_e2e::manifest::apply(client, yaml, ns).await.ok()
    })
    .await;
}

/// Applies Cluster `yaml` once its kind is served and waits until Cluster
/// `name` settles with `brokers` brokers; the `Cluster` objects of `ns`.
pub async fn create_settled_cluster(
    client: &kube::Client,
    ns: &str,
    yaml: &str,
    (name, brokers): (&str, usize),
    limit: Duration,
) -> Api<DynamicObject> {
    apply_when_served(client, yaml, ns, limit).await;
    let clusters = clusters(client, ns);
    wait_cluster_settled(&clusters, name, brokers, limit).await;
    clusters
}

/// Applies Topic `yaml` and waits until Topic `name` is Ready; the `Topic`
/// objects of `ns`.
pub async fn create_ready_topic(
    client: &kube::Client,
    ns: &str,
    yaml: &str,
    name: &str,
    limit: Duration,
) -> Api<DynamicObject> {
    skiff_e2e::manifest::apply(client, yaml, ns)
        .await
        .unwrap_or_else(|e| panic!("applying Topic {name}: {e}"));
    let topics = topics(client, ns);
    wait_topic_ready(&topics, name, limit).await;
    topics
}

/// Merge-patches the spec of Cluster `name`.
pub async fn patch_spec(api: &Api<DynamicObject>, name: &str, spec: serde_json::Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "spec": spec })),
    )
    .await
    .unwrap_or_else(|e| panic!("patching {name} with {spec}: {e}"));
}

/// A Cluster of `brokers` brokers named `name` with `config` as `spec.config`.
pub fn cluster_yaml(name: &str, brokers: i32, config: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: skiff.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: {name}\nspec:\n  brokers: {brokers}\n  image: skiff/broker:dev\n  storage:\n    size: 1Gi\n  config:\n"
    );
    for (key, value) in config {
        yaml.push_str(&format!("    {key}: \"{value}\"\n"));
    }
    yaml
}

/// A Topic `name` on Cluster `cluster`.
pub fn topic_yaml(name: &str, cluster: &str, partitions: i32, replication_factor: i32) -> String {
    format!(
        "apiVersion: skiff.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: {name}\nspec:\n  cluster: {cluster}\n  partitions: {partitions}\n  replicationFactor: {replication_factor}\n"
    )
}

/// One line about a Cluster's status, for the test's output.
pub fn cluster_line(c: &DynamicObject) -> String {
    let s = &c.data["status"];
    let text = |type_: &str| {
        condition(c, type_)
            .map(|c| format!("{}={} ({})", type_, c["status"], c["message"]))
            .unwrap_or_default()
    };
    format!(
        "brokers {} operation {} progress {} URP {} | {} | {}",
        s["brokersReady"],
        s["operation"],
        s["progress"],
        s["underReplicatedPartitions"],
        text("Ready"),
        text("Degraded")
    )
}

/// The reasons of the Events in `ns` about the object named `name`, oldest
/// first. Events are how a test checks that a short operation happened at all:
/// a status that showed it for less than a poll interval can be missed.
pub async fn event_reasons(client: &kube::Client, ns: &str, name: &str) -> Vec<String> {
    let mut events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("the namespace's Events")
        .items;
    events.sort_by_key(|e| e.metadata.creation_timestamp.clone());
    events
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}
