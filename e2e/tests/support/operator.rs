//! Shared by the operator scenarios on real brokers: their setup (the
//! broker and operator built, a harness running the broker image, a fresh
//! namespace and the operator process with its CRDs: [`start_operator_env`]),
//! (re)starting and killing the operator process, the brokers' DNS
//! bootstrap and `/v1/status`, the topic as Kafka metadata shows it, and
//! watchers of the broker pods' readiness (how many were down at once,
//! which pods were replaced) and of an object's `status.progress`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams};

use super::{Harness, ready};

/// The Kafka bootstrap list of a Cluster by its brokers' stable DNS names
/// (pod addresses change when pods are recreated).
pub fn bootstrap(cluster: &str, ns: &str, brokers: i32) -> String {
    (0..brokers)
        .map(|id| format!("{cluster}-{id}.{cluster}-brokers.{ns}.svc.cluster.local:9092"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Replica lists of `topic` by partition, as Kafka Metadata (kcat -L) shows them.
pub async fn kafka_replicas(bootstrap: &str, topic: &str) -> BTreeMap<i64, Vec<i64>> {
    let out = super::kcat(&["-L", "-J", "-b", bootstrap, "-t", topic], "").await;
    let metadata: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kcat -L -J: {e}: {out}"));
    let topic = metadata["topics"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["topic"] == topic))
        .unwrap_or_else(|| panic!("{topic} is not in the metadata: {out}"));
    topic["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let replicas = p["replicas"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["id"].as_i64())
                .collect();
            (p["partition"].as_i64().unwrap_or(-1), replicas)
        })
        .collect()
}

/// An operator process started by [`spawn_operator`].
pub struct OperatorProcess {
    pub child: tokio::process::Child,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        assert!(
            self.child
                .try_wait()
                .expect("the operator's status")
                .is_none(),
            "the operator exited; log:\n{}",
            self.log_text()
        );
    }

    /// SIGKILL: no shutdown code runs, the Lease is not released.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("the operator is killed");
    }
}

/// Starts `binary` against the harness's control plane (CRDs must be
/// installed, e.g. by [`start_operator`]), logging to `<state
/// dir>/<log_name>`. A new process means a new Lease identity, so it waits
/// for a killed predecessor's Lease to expire, as a replacement pod would.
pub fn spawn_operator(harness: &Harness, binary: &Path, log_name: &str) -> OperatorProcess {
    let kubeconfig = harness
        .control_plane
        .as_ref()
        .expect("a control plane")
        .kubeconfig();
    let log = harness.state_dir.path().join(log_name);
    let file = std::fs::File::create(&log).expect("the operator log");
    let child = tokio::process::Command::new(binary)
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info")
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::from(
            file.try_clone().expect("a log handle"),
        ))
        .stderr(std::process::Stdio::from(file))
        .kill_on_drop(true)
        .spawn()
        .expect("the operator starts");
    OperatorProcess { child, log }
}

/// What [`ReadinessWatch`] saw.
#[derive(Debug, Default, Clone)]
pub struct Readiness {
    /// Polls made.
    pub polls: u64,
    /// Most broker pods at once that were absent, terminating or not Ready.
    pub max_down: usize,
    /// Every uid each pod name had, in order of appearance.
    pub uids: BTreeMap<String, Vec<String>>,
    /// Pod names in the order they were first seen with a new uid.
    pub replaced: Vec<String>,
}

impl Readiness {
    /// How often pod `name` was replaced (uids seen after the first).
    pub fn restarts(&self, name: &str) -> usize {
        self.uids.get(name).map_or(0, |u| u.len().saturating_sub(1))
    }
}

/// Polls the broker pods of a Cluster every 200 ms in the background.
pub struct ReadinessWatch {
    seen: Arc<Mutex<Readiness>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadinessWatch {
    /// Starts watching the `brokers` pods of Cluster `cluster` in `ns`.
    pub fn start(client: &kube::Client, ns: &str, cluster: &str, brokers: usize) -> Self {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let selector =
            ListParams::default().labels(&format!("app.kubernetes.io/instance={cluster}"));
        let seen = Arc::new(Mutex::new(Readiness::default()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                loop {
                    if let Ok(list) = pods.list(&selector).await {
                        let mut s = seen.lock().expect("the watcher's record");
                        s.polls += 1;
                        let up: BTreeSet<&str> = list
                            .items
                            .iter()
                            .filter(|p| ready(p) && p.metadata.deletion_timestamp.is_none())
                            .filter_map(|p| p.metadata.name.as_deref())
                            .collect();
                        s.max_down = s.max_down.max(brokers.saturating_sub(up.len()));
                        for p in &list.items {
                            let (Some(name), Some(uid)) = (&p.metadata.name, &p.metadata.uid)
                            else {
                                continue;
                            };
                            let uids = s.uids.entry(name.clone()).or_default();
                            if !uids.contains(uid) {
                                let replaced = !uids.is_empty();
                                uids.push(uid.clone());
                                if replaced {
                                    s.replaced.push(name.clone());
                                }
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Self { seen, task }
    }

    /// What it saw so far.
    pub fn now(&self) -> Readiness {
        self.seen.lock().expect("the watcher's record").clone()
    }

    /// Stops watching; what it saw.
    pub fn stop(self) -> Readiness {
        self.task.abort();
        self.now()
    }
}

/// A broker's `GET /v1/status` document, by its pod DNS name.
pub async fn broker_status(host: &str) -> Option<serde_json::Value> {
    let output = tokio::process::Command::new("curl")
        .args(["-s", "-m", "3", &format!("http://{host}:9644/v1/status")])
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    serde_json::from_slice(&output.stdout).ok()
}

/// The active metadata-quorum leader as the Cluster's brokers report it
/// (the answers must agree).
pub async fn active_controller(cluster: &str, ns: &str, brokers: i32) -> Option<i64> {
    let mut seen = BTreeSet::new();
    for id in 0..brokers {
        let host = format!("{cluster}-{id}.{cluster}-brokers.{ns}.svc.cluster.local");
        seen.insert(broker_status(&host).await?["active_controller"].as_i64()?);
    }
    (seen.len() == 1).then(|| seen.into_iter().next()).flatten()
}

/// Installs the generated CRDs and starts `operator` against the harness's
/// control plane, logging to `<state dir>/operator.log`.
pub async fn start_operator(
    harness: &Harness,
    operator: &Path,
    namespace: &str,
) -> OperatorProcess {
    let root = skiff_e2e::broker_image::workspace_root();
    for file in ["crds/skiff.dev_clusters.yaml", "crds/skiff.dev_topics.yaml"] {
        let yaml = std::fs::read_to_string(root.join(file)).expect("the CRD file");
        skiff_e2e::manifest::apply(&harness.client, &yaml, namespace)
            .await
            .expect("the CRDs apply");
    }
    spawn_operator(harness, operator, "operator.log")
}

/// The debug `skiff-broker` and `skiff-operator` built, and a harness
/// whose node runs the broker image as the broker binary; `None` when the
/// test skips (no control plane binaries, or no root for pod DNS names).
pub async fn start_with_real_brokers(test: &str) -> Option<(Harness, PathBuf)> {
    start_harness(test, false).await
}

/// As [`start_with_real_brokers`], and the node also runs the chart's
/// operator image as the built `skiff-operator`.
pub async fn start_with_real_brokers_and_operator_image(test: &str) -> Option<(Harness, PathBuf)> {
    start_harness(test, true).await
}

async fn start_harness(test: &str, operator_image: bool) -> Option<(Harness, PathBuf)> {
    use skiff_e2e::broker_image::{self, Profile};

    let binaries =
        skiff_e2e::controlplane::Binaries::for_tests(test).expect("the control plane binaries")?;
    if !super::hosts_file_writable(test) {
        return None;
    }
    let broker = tokio::task::spawn_blocking(|| broker_image::binary(Profile::Debug))
        .await
        .expect("the build task")
        .expect("skiff-broker builds");
    let operator = tokio::task::spawn_blocking({
        let broker = broker.clone();
        move || super::operator_binary(&broker)
    })
    .await
    .expect("the build task");
    let mut images = skiff_e2e::node::ImageMap::default();
    images.insert(broker_image::IMAGE, &broker);
    if operator_image {
        images.insert(skiff_e2e::chart::OPERATOR_IMAGE, &operator);
    }
    Some((Harness::start(binaries, images).await, operator))
}

/// An operator scenario's world: real brokers on the harness's node, a
/// fresh namespace, and the operator process watching the control plane.
pub struct OperatorEnv {
    pub harness: Harness,
    /// The harness's admin client.
    pub client: kube::Client,
    /// The scenario's namespace (created).
    pub ns: String,
    /// The operator, started by [`start_operator`].
    pub operator: OperatorProcess,
    /// The operator binary, to start a replacement with.
    pub operator_bin: PathBuf,
}

/// [`start_with_real_brokers`], a namespace `<ns_prefix>-<pid>` and the
/// operator started in it; `None` when the test skips.
pub async fn start_operator_env(test: &str, ns_prefix: &str) -> Option<OperatorEnv> {
    let (harness, operator_bin) = start_with_real_brokers(test).await?;
    let client = harness.client.clone();
    let ns = super::namespace(ns_prefix);
    skiff_e2e::manifest::ensure_namespace(&client, &ns)
        .await
        .expect("the namespace");
    let operator = start_operator(&harness, &operator_bin, &ns).await;
    Some(OperatorEnv {
        harness,
        client,
        ns,
        operator,
        operator_bin,
    })
}

impl OperatorEnv {
    /// SIGKILLs the operator, then stops the harness.
    pub async fn stop(self) {
        self.operator.kill().await;
        self.harness.stop().await;
    }
}

/// Each broker's `(state, leaders)` from `/v1/status`, by broker id (asked
/// all at once).
pub async fn broker_states(cluster: &str, ns: &str, brokers: i32) -> BTreeMap<i32, (String, i64)> {
    let asked = (0..brokers).map(|id| async move {
        let host = format!("{cluster}-{id}.{cluster}-brokers.{ns}.svc.cluster.local");
        let s = broker_status(&host).await?;
        let state = s["state"].as_str().unwrap_or_default().to_owned();
        Some((id, (state, s["leaders"].as_i64().unwrap_or(-1))))
    });
    futures::future::join_all(asked)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Waits until every broker reports `running` (none left in maintenance
/// mode) and leads at least one partition (leadership spread back).
pub async fn wait_brokers_serving(cluster: &str, ns: &str, brokers: i32, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let states = broker_states(cluster, ns, brokers).await;
        let serving = states.len() == brokers as usize
            && states
                .values()
                .all(|(state, leaders)| state == "running" && *leaders > 0);
        if serving {
            eprintln!("brokers serving again: {states:?}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "brokers not all running and leading within {limit:?}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every distinct `status.progress` one object showed, in order, seen
/// through a watch (so a short-lived value between two polls is not
/// missed).
pub struct ProgressWatch {
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressWatch {
    /// Starts watching object `name` of `api`.
    pub fn start(api: &Api<DynamicObject>, name: &str) -> Self {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};

        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let stream = watcher(
            api.clone(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .applied_objects();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    let Ok(object) = event else { continue };
                    let Some(p) = object.data["status"]["progress"].as_str() else {
                        continue;
                    };
                    let mut seen = seen.lock().expect("the progress record");
                    if seen.last().map(String::as_str) != Some(p) {
                        seen.push(p.to_owned());
                    }
                }
            }
        });
        Self { seen, task }
    }

    /// What it saw so far.
    pub fn now(&self) -> Vec<String> {
        self.seen.lock().expect("the progress record").clone()
    }

    /// Stops watching; what it saw.
    pub fn stop(self) -> Vec<String> {
        self.task.abort();
        self.now()
    }
}
