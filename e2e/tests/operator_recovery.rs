//! Failure recovery of a `Cluster` of four real brokers under continuous
//! idempotent acks=all traffic (issue #6, proof 5), one fault after another:
//!
//! (a) broker 1's process is SIGKILLed and its pod deleted: the pod comes
//!     back Ready, every partition is in sync again, nothing under-replicated.
//! (b) broker 3's process is SIGSTOPped, so its readiness fails for longer
//!     than `failureRecovery.replaceAfter`: the operator reassigns its
//!     replicas to the healthy brokers until every partition has its
//!     replication factor on Ready brokers. Resumed, the broker rejoins empty
//!     and the operator moves replicas back onto it.
//! (c) broker 3 loses its disk (its claim's directory emptied while the
//!     process is stopped, then the process killed and the pod deleted): it
//!     starts empty, re-replicates and is back in every ISR; no partition is
//!     ever led by it from an empty log (the checked read finds no loss).
//!
//! Needs the control plane binaries, root (pod DNS names) and the clients
//! venv; skips without the first two unless `SKIFF_E2E_REQUIRE` is set.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams};
use rustix::process::{Pid, Signal};
use skiff_e2e::node::provisioner::{lose_disk, volume_root};
use support::cluster_ops::{
    self, PartitionMeta, brokers_used, container_pid, fully_replicated, partitions, placement_text,
};
use support::operator::start_operator_env;
use support::resources::{self, cluster_line};
use support::traffic::Traffic;
use support::{eventually, ready};

const TEST: &str = "brokers_recover_from_kill_long_outage_and_lost_disk";
const LIMIT: Duration = Duration::from_secs(150);
const CLUSTER: &str = "heal";
const TOPIC: &str = "orders";
const REPLACE_AFTER_SECONDS: u64 = 15;

fn cluster_yaml() -> String {
    format!(
        "apiVersion: skiff.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: {CLUSTER}\nspec:\n  brokers: 4\n  image: skiff/broker:dev\n  storage:\n    size: 1Gi\n  failureRecovery:\n    replaceAfter: {REPLACE_AFTER_SECONDS}s\n  rebalance:\n    maxMovesInFlight: 6\n  config:\n    min.insync.replicas: \"2\"\n"
    )
}

fn signal(pid: i32, signal: Signal) {
    let pid = Pid::from_raw(pid).expect("a valid pid");
    rustix::process::kill_process(pid, signal)
        .unwrap_or_else(|e| panic!("signal {signal:?} to {pid:?}: {e}"));
}

async fn pod(client: &kube::Client, ns: &str, id: i32) -> Option<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .get_opt(&format!("{CLUSTER}-{id}"))
        .await
        .ok()
        .flatten()
}

/// Waits until broker `id` runs in a Ready pod other than `old_uid`
/// (or a restarted process other than `old_pid`), and returns it.
async fn back_ready(
    client: &kube::Client,
    ns: &str,
    id: i32,
    old_uid: Option<&str>,
    old_pid: i32,
) -> Pod {
    eventually(&format!("broker {id} Ready again"), LIMIT, || async {
        let p = pod(client, ns, id).await?;
        let new = p.metadata.uid.as_deref() != old_uid || container_pid(&p) != Some(old_pid);
        (new && ready(&p) && p.metadata.deletion_timestamp.is_none()).then_some(p)
    })
    .await
}

/// Partitions that have their replication factor, all in sync, on `brokers`.
fn restored_on(p: &[PartitionMeta], brokers: &BTreeSet<i32>) -> bool {
    fully_replicated(p, 3) && brokers_used(p).is_subset(brokers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_recover_from_kill_long_outage_and_lost_disk() {
    let Some(mut env) = start_operator_env(TEST, "operator-recovery").await else {
        return;
    };
    let (client, ns) = (env.client.clone(), env.ns.clone());
    let started = Instant::now();

    let clusters =
        resources::create_settled_cluster(&client, &ns, &cluster_yaml(), (CLUSTER, 4), LIMIT).await;
    let topic_yaml = resources::topic_yaml(TOPIC, CLUSTER, 6, 3);
    resources::create_ready_topic(&client, &ns, &topic_yaml, TOPIC, LIMIT).await;
    let bootstrap = cluster_ops::bootstrap(&client, &ns, CLUSTER).await;
    let initial = partitions(&bootstrap, TOPIC).await;
    println!("4 brokers: {}", placement_text(&initial));
    let traffic = Traffic::start(&bootstrap, TOPIC, 6, 100, env.harness.state_dir.path()).await;
    let all: BTreeSet<i32> = (0..4).collect();

    // (a) kill -9 broker 1 and delete its pod.
    let victim = pod(&client, &ns, 1).await.unwrap();
    let pid = container_pid(&victim).expect("broker 1's pid");
    let t = Instant::now();
    signal(pid, Signal::KILL);
    Api::<Pod>::namespaced(client.clone(), &ns)
        .delete(&format!("{CLUSTER}-1"), &DeleteParams::default())
        .await
        .unwrap();
    back_ready(&client, &ns, 1, victim.metadata.uid.as_deref(), pid).await;
    let c = resources::wait_cluster_settled(&clusters, CLUSTER, 4, LIMIT).await;
    let p = partitions(&bootstrap, TOPIC).await;
    println!(
        "(a) broker 1 (pid {pid}) killed and its pod deleted: recovered in {:?}: {} | {}",
        t.elapsed(),
        cluster_line(&c),
        placement_text(&p)
    );
    assert!(restored_on(&p, &all), "{}", placement_text(&p));

    // (b) broker 3 stops answering for longer than replaceAfter.
    let stopped = pod(&client, &ns, 3).await.unwrap();
    let pid = container_pid(&stopped).expect("broker 3's pid");
    let held = initial.iter().filter(|p| p.replicas.contains(&3)).count();
    assert!(
        held > 0,
        "broker 3 holds replicas: {}",
        placement_text(&initial)
    );
    let t = Instant::now();
    signal(pid, Signal::STOP);
    let healthy: BTreeSet<i32> = (0..3).collect();
    let moved = eventually(
        "broker 3's replicas restored on the Ready brokers",
        LIMIT,
        || async {
            let p = partitions(&bootstrap, TOPIC).await;
            restored_on(&p, &healthy).then_some(p)
        },
    )
    .await;
    let not_ready = pod(&client, &ns, 3).await.unwrap();
    assert!(
        !ready(&not_ready),
        "broker 3 is still not Ready while its replicas are elsewhere"
    );
    let c = clusters.get(CLUSTER).await.unwrap();
    println!(
        "(b) broker 3 (pid {pid}) stopped: {held} partitions re-created on brokers 0-2 after {:?}: {} | {}",
        t.elapsed(),
        cluster_line(&c),
        placement_text(&moved)
    );
    assert!(
        t.elapsed() > Duration::from_secs(REPLACE_AFTER_SECONDS),
        "nothing moves before replaceAfter"
    );
    signal(pid, Signal::CONT);
    let back = eventually(
        "broker 3 Ready and holding replicas again",
        LIMIT,
        || async {
            let p = pod(&client, &ns, 3).await?;
            if !ready(&p) {
                return None;
            }
            let m = partitions(&bootstrap, TOPIC).await;
            (brokers_used(&m).contains(&3) && fully_replicated(&m, 3)).then_some(m)
        },
    )
    .await;
    let c = resources::wait_cluster_settled(&clusters, CLUSTER, 4, LIMIT).await;
    println!(
        "(b) broker 3 resumed and refilled by the rebalance after {:?}: {} | {}",
        t.elapsed(),
        cluster_line(&c),
        placement_text(&back)
    );

    // (c) broker 3 loses its disk.
    let victim = pod(&client, &ns, 3).await.unwrap();
    let pid = container_pid(&victim).expect("broker 3's pid");
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .get(&format!("data-{CLUSTER}-3"))
        .await
        .unwrap();
    let claim_uid = claim.metadata.uid.clone().unwrap();
    let dir = volume_root(&env.harness.node_root()).join(format!("pvc-{claim_uid}"));
    let before = std::fs::read_dir(&dir).unwrap().count();
    let t = Instant::now();
    signal(pid, Signal::STOP);
    lose_disk(&env.harness.node_root(), &claim_uid).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    signal(pid, Signal::KILL);
    Api::<Pod>::namespaced(client.clone(), &ns)
        .delete(&format!("{CLUSTER}-3"), &DeleteParams::default())
        .await
        .unwrap();
    back_ready(&client, &ns, 3, victim.metadata.uid.as_deref(), pid).await;
    let c = resources::wait_cluster_settled(&clusters, CLUSTER, 4, LIMIT).await;
    let p = eventually("every partition in sync again", LIMIT, || async {
        let p = partitions(&bootstrap, TOPIC).await;
        restored_on(&p, &all).then_some(p)
    })
    .await;
    let after = std::fs::read_dir(&dir).unwrap().count();
    println!(
        "(c) broker 3 lost its disk ({before} entries → 0) and re-replicated ({after} entries) in {:?}: {} | {}",
        t.elapsed(),
        cluster_line(&c),
        placement_text(&p)
    );
    assert!(after > 0, "broker 3 wrote its data directory again");

    let report = traffic.finish().await;
    println!("traffic: {report:?}");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(
        report.acked > 0 && report.violations.is_empty(),
        "{report:?}"
    );
    env.operator.assert_running();
    println!("{TEST}: {:?}", started.elapsed());
    env.stop().await;
}
