//! Rolling restarts on real brokers under continuous traffic.
//!
//! A Cluster of three `skiff-broker` pods with a Topic of 6 partitions at
//! replication factor 3 (min.insync.replicas 2) takes an idempotent
//! acks=all producer (`support::traffic`) while `spec.config` changes
//! `log.retention.check.interval.ms`, which brokers read at start-up. The
//! operator restarts every broker pod exactly once
//! (new uid, new config hash), the active controller last; a watcher
//! polling the pods every 200 ms never sees more than one broker absent or
//! not Ready; afterwards every broker is out of maintenance mode and leads
//! partitions again; the producer has no failed send after its retries and
//! the full read finds every acknowledged message, once and in order.
//! Then dynamic settings change (`log.retention.ms`, `min.insync.replicas`
//! and the rebalance throttle): the brokers report the new cluster-wide
//! values and no pod restarts.
//!
//! The second scenario SIGKILLs the operator twice during the roll: while
//! the first broker is drained for its restart, and once its pod was
//! replaced. Each time a new operator process (which first waits for the
//! dead one's Lease to expire) carries the roll on, to the same end state.
//!
//! Needs the control plane binaries, root (pod DNS names), kcat and the
//! clients venv; skips without the first two unless `SKIFF_E2E_REQUIRE` is
//! set.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use skiff_e2e::manifest;
use skiff_operator::admin::kafka::KafkaAdmin;
use support::operator::{self as op, OperatorProcess, ReadinessWatch};
use support::resources;
use support::traffic::Traffic;

const LIMIT: Duration = Duration::from_secs(150);
const CLUSTER: &str = "load";
const TOPIC: &str = "orders";
const BROKERS: i32 = 3;
const PARTITIONS: i32 = 6;
const RATE: u32 = 200;

/// The two scenarios share the two cores with nothing else of this file.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `interval`: `log.retention.check.interval.ms` (read at start-up).
fn cluster(interval: &str) -> String {
    resources::cluster_yaml(
        CLUSTER,
        BROKERS,
        &[
            ("min.insync.replicas", "2"),
            ("log.retention.check.interval.ms", interval),
        ],
    )
}

/// The cluster-wide dynamic broker settings as broker 0 reports them.
async fn dynamic_settings(ns: &str) -> Option<BTreeMap<String, String>> {
    let bootstrap = op::bootstrap(CLUSTER, ns, BROKERS);
    let first = bootstrap.split(',').next()?;
    let mut admin = KafkaAdmin::connect(first).await.ok()?;
    admin.cluster_broker_config().await.ok()
}

fn uids(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.uid.clone().unwrap_or_default())
        .collect()
}

/// Dynamic settings change on the running brokers: they report the new
/// cluster-wide values, the Cluster is Ready for the new generation, and
/// no pod was restarted.
async fn dynamic_change_restarts_nothing(env: &op::OperatorEnv) {
    let (client, ns) = (&env.client, &env.ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={CLUSTER}"));
    let before = uids(&pods.list(&selector).await.expect("the broker pods").items);
    let started = Instant::now();
    let yaml = format!(
        "{}  rebalance:\n    throttleBytesPerSecond: 5000000\n",
        resources::cluster_yaml(
            CLUSTER,
            BROKERS,
            &[
                ("min.insync.replicas", "1"),
                ("log.retention.check.interval.ms", "3600000"),
                ("log.retention.ms", "7200000"),
            ],
        )
    );
    manifest::apply(client, &yaml, ns)
        .await
        .expect("the changed Cluster applies");
    let wanted = BTreeMap::from(
        [
            ("follower.replication.throttled.rate", "5000000"),
            ("log.retention.ms", "7200000"),
            ("min.insync.replicas", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let clusters = resources::clusters(client, ns);
    support::eventually(
        "the brokers report the new dynamic settings",
        LIMIT,
        || async { (dynamic_settings(ns).await? == wanted).then_some(()) },
    )
    .await;
    resources::wait_ready(&clusters, CLUSTER, LIMIT).await;
    let took = started.elapsed();
    let after = uids(&pods.list(&selector).await.expect("the broker pods").items);
    eprintln!(
        "dynamic settings {wanted:?} applied in {:.1}s; pods {before:?} -> {after:?}",
        took.as_secs_f64()
    );
    assert_eq!(before, after, "a dynamic setting restarted a broker pod");
}

fn config_hashes(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("skiff.dev/config-hash"))
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// SIGKILLs `operator` and starts operator number `n` in its place.
async fn kill_and_replace(
    mut operator: OperatorProcess,
    harness: &support::Harness,
    binary: &std::path::Path,
    n: u32,
    at: &str,
) -> OperatorProcess {
    operator.assert_running();
    operator.kill().await;
    eprintln!("operator SIGKILLed at: {at}");
    op::spawn_operator(harness, binary, &format!("operator-{n}.log"))
}

/// Runs a roll of the 3-broker Cluster under traffic; with `kill_mid_roll`
/// the operator is SIGKILLed while the first broker is drained for its
/// restart and again once its pod was replaced, each time replaced by a new
/// process that carries the roll on.
async fn roll_under_traffic(test: &str, ns_prefix: &str, kill_mid_roll: bool) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let Some(mut env) = op::start_operator_env(test, ns_prefix).await else {
        return;
    };
    let (client, ns) = (env.client.clone(), env.ns.clone());

    resources::apply_when_served(&client, &cluster("600000"), &ns, LIMIT).await;
    let clusters = resources::clusters(&client, &ns);
    resources::wait_ready(&clusters, CLUSTER, LIMIT).await;
    manifest::apply(
        &client,
        &resources::topic_yaml(TOPIC, CLUSTER, PARTITIONS, 3),
        &ns,
    )
    .await
    .expect("the Topic applies");
    resources::wait_ready(&resources::topics(&client, &ns), TOPIC, LIMIT).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={CLUSTER}"));
    let before = config_hashes(&pods.list(&selector).await.expect("the broker pods").items);
    let bootstrap = op::bootstrap(CLUSTER, &ns, BROKERS);
    let traffic = Traffic::start(
        &bootstrap,
        TOPIC,
        PARTITIONS,
        RATE,
        env.harness.state_dir.path(),
    )
    .await;
    let controller =
        support::eventually("the brokers agree on the active controller", LIMIT, || {
            op::active_controller(CLUSTER, &ns, BROKERS)
        })
        .await;
    let watch = ReadinessWatch::start(&client, &ns, CLUSTER, BROKERS as usize);
    let roll_started = Instant::now();
    manifest::apply(&client, &cluster("3600000"), &ns)
        .await
        .expect("the changed Cluster applies");

    if kill_mid_roll {
        // First while a broker is in maintenance mode before its restart
        // (drained, pod not yet deleted): a window of a few hundred ms, so
        // ask without pausing. Then once its pod was replaced.
        let deadline = Instant::now() + LIMIT;
        let first_kill = loop {
            assert!(
                Instant::now() < deadline,
                "no broker drained within {LIMIT:?}"
            );
            let states = op::broker_states(CLUSTER, &ns, BROKERS).await;
            let draining = states
                .iter()
                .find(|(_, (state, _))| state == "draining" || state == "drained");
            if let Some((id, (state, _))) = draining {
                break format!("broker {id} {state}, its pod not yet deleted");
            }
            let replaced = watch.now().replaced;
            if !replaced.is_empty() {
                break format!("missed the drain; replaced {replaced:?}");
            }
        };
        env.operator = kill_and_replace(
            env.operator,
            &env.harness,
            &env.operator_bin,
            2,
            &first_kill,
        )
        .await;
        if !first_kill.starts_with("missed") {
            support::eventually("the drained broker restarted", LIMIT, || async {
                (!watch.now().replaced.is_empty()).then_some(())
            })
            .await;
            let replaced = format!("replaced {:?}", watch.now().replaced);
            env.operator =
                kill_and_replace(env.operator, &env.harness, &env.operator_bin, 3, &replaced).await;
        }
    }

    let deadline = Instant::now() + LIMIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "the roll did not finish within {LIMIT:?}: {:?}\n{}",
            watch.now(),
            env.operator.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(c) = clusters.get(CLUSTER).await else {
            continue;
        };
        let all_current = c.data["status"]["brokers"].as_array().is_some_and(|b| {
            b.len() == BROKERS as usize && b.iter().all(|b| b["upToDate"] == true)
        });
        let restarted = watch.now().replaced.len() >= BROKERS as usize;
        if all_current && restarted && resources::is_true_for_generation(&c, "Ready") {
            break;
        }
    }
    let roll_took = roll_started.elapsed();
    // The roll ends with every broker out of maintenance mode, leading again.
    op::wait_brokers_serving(CLUSTER, &ns, BROKERS, Duration::from_secs(30)).await;
    // Traffic keeps flowing a little after the roll, then the checked read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = watch.stop();
    let report = traffic.finish().await;
    let after = pods.list(&selector).await.expect("the broker pods").items;
    let hashes = config_hashes(&after);
    eprintln!(
        "{test}: roll took {:.1}s; traffic {}; max brokers down={} over {} polls; active controller {controller}, restarts in order {:?}; config hash {:?} -> {:?}",
        roll_took.as_secs_f64(),
        report.figures(),
        seen.max_down,
        seen.polls,
        seen.replaced,
        before,
        hashes
    );

    report.assert_no_loss();
    assert!(
        seen.max_down <= 1,
        "{} brokers were down at once: {seen:?}",
        seen.max_down
    );
    for id in 0..BROKERS {
        let name = format!("{CLUSTER}-{id}");
        assert_eq!(seen.restarts(&name), 1, "{name}: {seen:?}");
    }
    assert_eq!(
        seen.replaced.last(),
        Some(&format!("{CLUSTER}-{controller}")),
        "the active controller goes last: {seen:?}"
    );
    assert_eq!(after.len(), BROKERS as usize);
    assert!(
        hashes
            .iter()
            .all(|h| !h.is_empty() && *h == hashes[0] && !before.contains(h)),
        "every pod runs the new config: {before:?} -> {hashes:?}"
    );
    if !kill_mid_roll {
        dynamic_change_restarts_nothing(&env).await;
    }
    env.operator.assert_running();
    env.stop().await;
    eprintln!("{test}: {:.1}s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_change_rolls_one_broker_at_a_time_under_acks_all_traffic_without_loss() {
    roll_under_traffic(
        "config_change_rolls_one_broker_at_a_time_under_acks_all_traffic_without_loss",
        "roll-load",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_mid_roll_is_replaced_and_the_roll_finishes_without_loss() {
    roll_under_traffic(
        "operator_killed_mid_roll_is_replaced_and_the_roll_finishes_without_loss",
        "roll-kill",
        true,
    )
    .await;
}
