//! Replication-factor changes on real brokers under continuous traffic.
//!
//! A Topic of 6 partitions on a Cluster of three `skiff-broker` pods goes
//! from replication factor 1 to 3 and then to 2 while an idempotent
//! acks=all producer (`support::traffic`) writes to every partition. Each
//! change shows its progress in the Topic status (`reassigning k/6
//! partitions ...`), ends Ready with Kafka metadata listing the new replica
//! count for every partition, and the full read afterwards finds every
//! acknowledged message once and in order, with no failed send.
//!
//! The second scenario moves one partition at a time
//! (`rebalance.maxMovesInFlight: 1`) and SIGKILLs the operator half-way
//! through 1 → 3; a new operator process (waiting out the dead one's Lease)
//! finishes the change from where the brokers are, with the same end state.
//!
//! Needs the control plane binaries, root (pod DNS names), kcat and the
//! clients venv; skips without the first two unless `SKIFF_E2E_REQUIRE` is
//! set.

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use skiff_e2e::manifest;
use support::operator::{self as op, OperatorProcess, ProgressWatch};
use support::resources;
use support::traffic::Traffic;

const LIMIT: Duration = Duration::from_secs(150);
const CLUSTER: &str = "rf";
const TOPIC: &str = "orders";
const BROKERS: i32 = 3;
const PARTITIONS: i32 = 6;
const RATE: u32 = 200;

/// The two scenarios share the two cores with nothing else of this file.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster(max_moves_in_flight: i32) -> String {
    // acks=all must be possible at replication factor 1.
    let mut yaml = resources::cluster_yaml(CLUSTER, BROKERS, &[("min.insync.replicas", "1")]);
    yaml.push_str(&format!(
        "  rebalance:\n    maxMovesInFlight: {max_moves_in_flight}\n"
    ));
    yaml
}

/// Changes the Topic to `rf` and waits until it is Ready for that
/// generation; returns every progress string its status showed (watched,
/// so none is missed). `kill_at` is called with the latest progress and
/// may SIGKILL and replace the operator (once).
async fn change_replication_factor(
    client: &kube::Client,
    ns: &str,
    rf: i32,
    operator: &mut OperatorProcess,
    mut kill_at: impl AsyncFnMut(&str, &mut OperatorProcess) -> bool,
) -> Vec<String> {
    let topics: Api<DynamicObject> = resources::topics(client, ns);
    let progress = ProgressWatch::start(&topics, TOPIC);
    manifest::apply(
        client,
        &resources::topic_yaml(TOPIC, CLUSTER, PARTITIONS, rf),
        ns,
    )
    .await
    .expect("the Topic applies");
    let mut killed = false;
    let deadline = Instant::now() + LIMIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "replication factor {rf} not Ready within {LIMIT:?}; progress {:?}\n{}",
            progress.now(),
            operator.log_text()
        );
        if !killed && let Some(p) = progress.now().last() {
            killed = kill_at(p, operator).await;
        }
        if let Ok(t) = topics.get(TOPIC).await
            && resources::is_true_for_generation(&t, "Ready")
        {
            assert_eq!(t.data["status"]["replicationFactor"], rf, "{}", t.data);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress.stop()
}

async fn assert_replicas(bootstrap: &str, rf: usize) {
    let replicas = op::kafka_replicas(bootstrap, TOPIC).await;
    assert_eq!(replicas.len(), PARTITIONS as usize, "{replicas:?}");
    for (partition, r) in &replicas {
        let distinct: std::collections::BTreeSet<_> = r.iter().collect();
        assert_eq!(distinct.len(), rf, "partition {partition}: {r:?}");
    }
    eprintln!("kafka metadata at replication factor {rf}: {replicas:?}");
}

async fn replication_factor_scenario(test: &str, ns_prefix: &str, kill: bool) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let Some(mut env) = op::start_operator_env(test, ns_prefix).await else {
        return;
    };
    let (client, ns) = (env.client.clone(), env.ns.clone());

    // Few moves at a time, so the change takes several passes and shows them.
    let max_moves = if kill { 1 } else { 2 };
    resources::apply_when_served(&client, &cluster(max_moves), &ns, LIMIT).await;
    resources::wait_ready(&resources::clusters(&client, &ns), CLUSTER, LIMIT).await;
    manifest::apply(
        &client,
        &resources::topic_yaml(TOPIC, CLUSTER, PARTITIONS, 1),
        &ns,
    )
    .await
    .expect("the Topic applies");
    resources::wait_ready(&resources::topics(&client, &ns), TOPIC, LIMIT).await;
    let bootstrap = op::bootstrap(CLUSTER, &ns, BROKERS);
    assert_replicas(&bootstrap, 1).await;

    let traffic = Traffic::start(
        &bootstrap,
        TOPIC,
        PARTITIONS,
        RATE,
        env.harness.state_dir.path(),
    )
    .await;
    let mut progress = Vec::new();
    // Traffic before, during and after each change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if kill {
        let operator_bin = env.operator_bin.clone();
        let harness = &env.harness;
        let seen =
            change_replication_factor(&client, &ns, 3, &mut env.operator, async |p, operator| {
                // Half-way: some partitions moved, some not yet.
                let half_way = p.starts_with("reassigning ")
                    && !p.starts_with("reassigning 0/")
                    && !p.starts_with(&format!("reassigning {PARTITIONS}/"));
                if half_way {
                    operator.assert_running();
                    let dead = std::mem::replace(
                        operator,
                        op::spawn_operator(harness, &operator_bin, "operator-2.log"),
                    );
                    dead.kill().await;
                    eprintln!("operator SIGKILLed at {p:?}");
                }
                half_way
            })
            .await;
        eprintln!("replication factor 1 -> 3 progress: {seen:?}");
        progress.push(seen);
        assert_replicas(&bootstrap, 3).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    } else {
        for rf in [3, 2] {
            let previous = if rf == 3 { 1 } else { 3 };
            let seen =
                change_replication_factor(&client, &ns, rf, &mut env.operator, async |_, _| false)
                    .await;
            eprintln!("replication factor {previous} -> {rf} progress: {seen:?}");
            progress.push(seen);
            assert_replicas(&bootstrap, rf as usize).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let report = traffic.finish().await;
    eprintln!("{test}: traffic {}", report.figures());
    for seen in &progress {
        assert!(
            seen.iter().any(|p| p.starts_with("reassigning ")
                && p.contains(&format!("/{PARTITIONS} partitions"))),
            "the Topic status showed the reassignment's progress: {seen:?}"
        );
    }
    // Each finished change is announced, as its start was.
    let reasons = resources::event_reasons(&client, &ns, TOPIC).await;
    assert!(
        reasons.iter().any(|r| r == "ReassignmentFinished"),
        "a ReassignmentFinished Event on Topic {TOPIC}; reasons seen: {reasons:?}"
    );
    report.assert_no_loss();
    env.operator.assert_running();
    env.stop().await;
    eprintln!("{test}: {:.1}s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_factor_one_to_three_to_two_under_acks_all_traffic_without_loss() {
    replication_factor_scenario(
        "replication_factor_one_to_three_to_two_under_acks_all_traffic_without_loss",
        "rf-load",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_mid_reassignment_is_replaced_and_the_change_finishes_without_loss() {
    replication_factor_scenario(
        "operator_killed_mid_reassignment_is_replaced_and_the_change_finishes_without_loss",
        "rf-kill",
        true,
    )
    .await;
}
