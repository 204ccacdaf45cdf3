//! The operator on the real control plane: `skiff-operator` runs as a local
//! process with the control plane's kubeconfig, the generated CRDs are
//! installed, and a `Cluster` of three brokers becomes the objects the
//! operator builds (StatefulSet with `OnDelete` and `Parallel`, headless and
//! client Services, ConfigMap, PodDisruptionBudget, ServiceAccount, all
//! owned by the Cluster) with a status written for the current generation.
//! Admission rejects an invalid Cluster with the message the CRD carries.
//!
//! The brokers form one cluster (metadata quorum over the headless Service's
//! names) and the Cluster becomes `Ready=True` with 3/3 brokers. A Topic of
//! 6 partitions with replication factor 3 becomes Ready, and kcat produces to
//! it with acks=all and reads the messages back.
//!
//! Needs the control plane binaries and root (pod DNS names); skips without
//! them unless `SKIFF_E2E_REQUIRE` is set.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use skiff_e2e::manifest;
use skiff_operator::admin::kafka::KafkaAdmin;
use support::cluster_ops::produce_and_consume;
use support::eventually;
use support::operator::start_operator_env;
use support::resources::{self, condition};

const TEST: &str = "operator_turns_a_cluster_into_its_objects_and_status";
const LIMIT: Duration = Duration::from_secs(120);
const CLUSTER: &str = "demo";

fn cluster_yaml(brokers: i32) -> String {
    resources::cluster_yaml(CLUSTER, brokers, &[("min.insync.replicas", "2")])
}

fn owned_by_cluster(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Cluster" && o.name == CLUSTER && o.controller == Some(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_turns_a_cluster_into_its_objects_and_status() {
    let Some(mut env) = start_operator_env(TEST, "operator-cluster").await else {
        return;
    };
    let (client, ns) = (env.client.clone(), env.ns.clone());

    // The CRDs take a moment to be served; admission applies from then on.
    let rejected = eventually("admission of Cluster objects", LIMIT, || async {
        match manifest::apply(&client, &cluster_yaml(0), &ns).await {
            // Until the CRD is served, discovery or the endpoint answers 404.
            Err(manifest::ManifestError::Kube { source, .. })
                if source.to_string().contains("spec.brokers") =>
            {
                Some(source.to_string())
            }
            Ok(applied) => panic!("a Cluster with 0 brokers was admitted: {applied:?}"),
            Err(_) => None,
        }
    })
    .await;
    assert!(
        rejected.contains("greater than or equal to 1"),
        "{rejected}"
    );
    let applied = manifest::apply(&client, &cluster_yaml(3), &ns)
        .await
        .unwrap();
    assert_eq!(applied, [format!("Cluster/{CLUSTER}")]);

    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let sts = eventually("the StatefulSet", LIMIT, || async {
        statefulsets.get_opt(CLUSTER).await.ok().flatten()
    })
    .await;
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        spec.update_strategy.as_ref().unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    assert_eq!(spec.service_name.as_deref(), Some("demo-brokers"));
    assert!(owned_by_cluster(&sts.metadata));

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let headless = services.get("demo-brokers").await.unwrap();
    assert_eq!(
        headless.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("None")
    );
    assert!(owned_by_cluster(&headless.metadata));
    assert!(owned_by_cluster(
        &services.get("demo-bootstrap").await.unwrap().metadata
    ));
    let config = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("demo-config")
        .await
        .unwrap();
    // min.insync.replicas is a dynamic setting: the brokers take it from
    // their metadata quorum (checked once they run), not from the file.
    assert!(
        !config.data.unwrap()["broker.properties"].contains("min.insync.replicas"),
        "dynamic settings stay out of the properties file"
    );
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
        .get(CLUSTER)
        .await
        .unwrap();
    assert_eq!(
        pdb.spec.unwrap().max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get("demo-broker")
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let listed = eventually("three broker pods", LIMIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=demo"))
            .await
            .ok()?;
        (list.items.len() == 3).then_some(list.items)
    })
    .await;
    let args = listed[0].spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.contains(&"--node-id=$(POD_INDEX)".to_owned()),
        "{args:?}"
    );

    let api = resources::clusters(&client, &ns);
    let status = eventually(
        "a status for generation 1 listing 3 brokers",
        LIMIT,
        || async {
            let c = api.get(CLUSTER).await.ok()?;
            // The first pass writes status before the StatefulSet exists; the
            // broker list fills once its pods do.
            let brokers = c.data["status"]["brokers"].as_array().map_or(0, Vec::len);
            (c.data["status"]["observedGeneration"] == 1
                && condition(&c, "Ready").is_some()
                && brokers == 3)
                .then_some(c)
        },
    )
    .await;
    assert!(status.data["status"]["clusterId"].is_string());
    assert_eq!(
        status.data["status"]["brokers"].as_array().map(Vec::len),
        Some(3),
        "{}",
        status.data["status"]
    );

    let ready = eventually("Ready=True with 3/3 brokers", LIMIT, || async {
        let c = api.get(CLUSTER).await.ok()?;
        (condition(&c, "Ready")?["status"] == "True").then_some(c)
    })
    .await;
    assert_eq!(ready.data["status"]["brokersReady"], "3/3");
    // Ready means the brokers report spec.config's dynamic settings.
    let pod0 = Api::<Pod>::namespaced(client.clone(), &ns)
        .get(&format!("{CLUSTER}-0"))
        .await
        .unwrap();
    let mut admin = KafkaAdmin::connect(&format!("{}:9092", support::pod_ip(&pod0)))
        .await
        .expect("a Kafka connection to broker 0");
    let dynamic = admin
        .cluster_broker_config()
        .await
        .expect("the cluster-wide dynamic settings");
    assert_eq!(
        dynamic.get("min.insync.replicas").map(String::as_str),
        Some("2"),
        "{dynamic:?}"
    );

    // A Topic becomes a replicated Kafka topic that real clients use.
    let topics = resources::topics(&client, &ns);
    let topic_yaml = resources::topic_yaml("orders", CLUSTER, 6, 3);
    manifest::apply(&client, &topic_yaml, &ns).await.unwrap();
    let topic = eventually("Topic Ready=True", LIMIT, || async {
        let t = topics.get("orders").await.ok()?;
        (condition(&t, "Ready")?["status"] == "True").then_some(t)
    })
    .await;
    assert_eq!(
        topic.data["status"]["partitions"], 6,
        "{}",
        topic.data["status"]
    );
    assert_eq!(topic.data["status"]["replicationFactor"], 3);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod0 = pods.get(&format!("{CLUSTER}-0")).await.unwrap();
    let bootstrap = format!("{}:9092", support::pod_ip(&pod0));
    produce_and_consume(&bootstrap, "orders").await;

    env.operator.assert_running();
    env.stop().await;
}
