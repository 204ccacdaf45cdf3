//! The operator's rolling restart on the real control plane: a `Cluster`
//! of three brokers becomes Ready, then a config change restarts every
//! broker pod exactly once, one at a time (never two brokers unavailable at
//! once), the active metadata-quorum leader (broker 0) last, after which the
//! Cluster is Ready again with every broker on the new revision. Scaling
//! below the quorum's voters is then refused with a Degraded condition.
//!
//! The brokers are `skiff-e2e-fake-broker`, which serves the broker's HTTP
//! admin API (status, restart safety, drain) and nothing else, so this
//! proves the operator's side of the contract independently of the broker.
//!
//! Needs the control plane binaries and root; skips without them unless
//! `SKIFF_E2E_REQUIRE` is set.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams};
use skiff_e2e::controlplane::Binaries;
use skiff_e2e::manifest;
use skiff_e2e::node::ImageMap;
use support::operator::{OperatorProcess, start_operator};
use support::resources;
use support::{Harness, eventually, ready};

const TEST: &str = "config_change_restarts_brokers_one_at_a_time_controller_last";
const FAKE_BROKER: &str = env!("CARGO_BIN_EXE_skiff-e2e-fake-broker");
const LIMIT: Duration = Duration::from_secs(180);

/// `interval`: `log.retention.check.interval.ms`, a setting the brokers read
/// at start-up (a dynamic one would change without a restart).
fn cluster_yaml(interval: &str) -> String {
    format!(
        "apiVersion: skiff.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: roll\nspec:\n  brokers: 3\n  image: skiff/broker:dev\n  storage:\n    size: 1Gi\n  config:\n    log.retention.check.interval.ms: \"{interval}\"\n"
    )
}

fn ready_condition(c: &DynamicObject) -> bool {
    c.data["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_change_restarts_brokers_one_at_a_time_controller_last() {
    let Some(binaries) = Binaries::for_tests(TEST).unwrap() else {
        return;
    };
    if !support::hosts_file_writable(TEST) {
        return;
    }
    let operator = tokio::task::spawn_blocking(|| support::operator_binary(Path::new(FAKE_BROKER)))
        .await
        .unwrap();
    let mut images = ImageMap::default();
    images.insert("skiff/broker", Path::new(FAKE_BROKER));
    let harness = Harness::start(binaries, images).await;
    let client = harness.client.clone();
    let ns = support::namespace("operator-roll");
    manifest::ensure_namespace(&client, &ns).await.unwrap();
    let OperatorProcess {
        child: mut operator,
        log,
    } = start_operator(&harness, &operator, &ns).await;
    let operator_log = || std::fs::read_to_string(&log).unwrap_or_default();

    eventually("the Cluster admitted", LIMIT, || async {
        manifest::apply(&client, &cluster_yaml("1000"), &ns)
            .await
            .ok()
    })
    .await;
    let clusters = resources::clusters(&client, &ns);
    eventually("Ready=True with 3/3 brokers", LIMIT, || async {
        let c = clusters.get("roll").await.ok()?;
        (ready_condition(&c) && c.data["status"]["brokersReady"] == "3/3").then_some(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let selector = ListParams::default().labels("app.kubernetes.io/instance=roll");
    let uids = |list: &[Pod]| -> BTreeMap<String, String> {
        list.iter()
            .map(|p| {
                (
                    p.metadata.name.clone().unwrap(),
                    p.metadata.uid.clone().unwrap(),
                )
            })
            .collect()
    };
    let before = uids(&pods.list(&selector).await.unwrap().items);
    assert_eq!(before.len(), 3);

    manifest::apply(&client, &cluster_yaml("2000"), &ns)
        .await
        .unwrap();
    let mut order: Vec<String> = Vec::new();
    let mut worst = 0;
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the roll; restarted {order:?}\n{}",
            operator_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(list) = pods.list(&selector).await else {
            continue;
        };
        let available = list
            .items
            .iter()
            .filter(|p| ready(p) && p.metadata.deletion_timestamp.is_none())
            .count();
        worst = worst.max(3 - available.min(3));
        for p in &list.items {
            let name = p.metadata.name.clone().unwrap();
            if before.get(&name) != p.metadata.uid.as_ref() && !order.contains(&name) {
                order.push(name);
            }
        }
        let Ok(c) = clusters.get("roll").await else {
            continue;
        };
        let all_current = c.data["status"]["brokers"]
            .as_array()
            .is_some_and(|b| b.len() == 3 && b.iter().all(|b| b["upToDate"] == true));
        if order.len() == 3 && available == 3 && ready_condition(&c) && all_current {
            break;
        }
    }
    assert!(
        worst <= 1,
        "{worst} brokers were unavailable at once; order {order:?}"
    );
    assert_eq!(
        order,
        ["roll-1", "roll-2", "roll-0"],
        "one at a time by id, the active controller (0) last\n{}",
        operator_log()
    );

    // Scaling below the metadata-quorum voters is refused with a condition;
    // the StatefulSet keeps its brokers.
    let two = cluster_yaml("2000").replace("brokers: 3", "brokers: 2");
    manifest::apply(&client, &two, &ns).await.unwrap();
    let degraded = eventually("Degraded=True for the scale-down", LIMIT, || async {
        let c = clusters.get("roll").await.ok()?;
        c.data["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Degraded" && c["status"] == "True")
            .map(|c| c["message"].as_str().unwrap_or_default().to_owned())
    })
    .await;
    assert_eq!(
        degraded,
        "scale-down to 2 brokers is refused: brokers 0..2 are metadata-quorum voters"
    );
    let statefulsets: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(client.clone(), &ns);
    assert_eq!(
        statefulsets
            .get("roll")
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(3)
    );

    assert!(
        operator.try_wait().unwrap().is_none(),
        "the operator exited:\n{}",
        operator_log()
    );
    operator.kill().await.unwrap();
    harness.stop().await;
}
