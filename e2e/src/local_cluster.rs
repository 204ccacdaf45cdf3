//! A long-running local cluster for people (`make up`): the control plane
//! and a node agent left running in the background, the operator installed
//! from its Helm chart (`crate::chart`), the example Cluster (3 brokers) and
//! Topic applied and Ready, and the commands to use them printed.
//!
//! A machine that already has a cluster (`KUBECONFIG` names a kubeconfig
//! other than the harness's own) is left alone: nothing is built or started,
//! and the user is told how to install Skiff there with the chart.

use std::ffi::OsStr;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::broker_image::{self, BrokerBuildError, Profile};
use crate::chart::{self, ChartError, OPERATOR_IMAGE};
use crate::controlplane::{self, Binaries, ControlPlane, ControlPlaneConfig, ControlPlaneError};
use crate::manifest::{self, ManifestError};
use crate::node::pod::pod_dir;

/// The Kafka port of the example brokers.
pub const KAFKA_PORT: u16 = 9092;
/// How long `down` gives each component when a stale instance is cleared.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What `KUBECONFIG` says about this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeconfigEnv {
    /// Unset, empty, or naming only files that do not exist.
    Unset,
    /// The harness's own kubeconfig (from an earlier `make up`).
    Harness,
    /// Existing kubeconfigs of some other cluster.
    Other(Vec<PathBuf>),
}

/// Classifies a `KUBECONFIG` value (a `:`-separated list, as kubectl reads
/// it) against the harness's kubeconfig. Reads only file metadata.
pub fn classify_kubeconfig(value: Option<&OsStr>, harness: &Path) -> KubeconfigEnv {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return KubeconfigEnv::Unset;
    };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let mut harness_seen = false;
    let mut others = Vec::new();
    for path in std::env::split_paths(value).filter(|p| !p.as_os_str().is_empty()) {
        if same(&path, harness) {
            harness_seen = true;
        } else if path.exists() {
            others.push(path);
        }
    }
    match (others.is_empty(), harness_seen) {
        (false, _) => KubeconfigEnv::Other(others),
        (true, true) => KubeconfigEnv::Harness,
        (true, false) => KubeconfigEnv::Unset,
    }
}

/// `context "x", server https://…` of a kubeconfig, best effort.
fn describe_kubeconfig(path: &Path) -> String {
    let Ok(config) = kube::config::Kubeconfig::read_from(path) else {
        return "not readable as a kubeconfig".into();
    };
    let context = config.current_context.clone().unwrap_or_default();
    let cluster = config
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let server = config
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_else(|| "no server".into());
    format!("context {context:?}, server {server}")
}

/// What `make up` says, and does not do, when `KUBECONFIG` names another
/// cluster: how to install Skiff there with `chart` instead.
pub fn foreign_cluster_message(paths: &[PathBuf], chart: &Path) -> String {
    let listed: Vec<String> = paths
        .iter()
        .map(|p| format!("  {} ({})", p.display(), describe_kubeconfig(p)))
        .collect();
    format!(
        "KUBECONFIG names a cluster already:\n{}\n\
         so `make up` leaves it alone: nothing was built, started or applied.\n\
         \n\
         The local harness (a Kubernetes control plane on loopback whose pods run as\n\
         processes on this machine) is for machines without a cluster. On a real cluster,\n\
         install the operator with its Helm chart (CRDs, least-privilege RBAC, 2 replicas\n\
         with leader election), then a Cluster and a Topic:\n\
         \n\
         \x20 helm install {release} {} --namespace {ns} --create-namespace\n\
         \x20 kubectl create namespace skiff\n\
         \x20 kubectl apply -n skiff -f examples/cluster.yaml -f examples/topic.yaml\n\
         \x20 kubectl -n skiff get skc,skt,pods\n\
         \n\
         The images ({OPERATOR_IMAGE}, {broker}) are built from operator/Dockerfile and\n\
         broker/Dockerfile; push them where the cluster pulls from (chart value\n\
         image.repository, the Cluster's spec.image).\n\
         \n\
         To run the local harness anyway:  env -u KUBECONFIG make up\n",
        listed.join("\n"),
        chart.display(),
        release = chart::RELEASE,
        ns = chart::NAMESPACE,
        broker = broker_image::IMAGE,
    )
}

/// Why the local cluster could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// Starting or inspecting the control plane failed.
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    /// No broker binary.
    #[error(transparent)]
    Broker(#[from] BrokerBuildError),
    /// Finding helm, building the operator or rendering the chart failed.
    #[error(transparent)]
    Chart(#[from] ChartError),
    /// Installing the operator, or waiting for it or the examples, failed
    /// once the cluster ran.
    #[error("{0}\n(the cluster is left running for a look; `make down` stops it)")]
    Running(ChartError),
    /// Applying an example failed.
    #[error("{}: {source}", manifest.display())]
    Manifest {
        /// The manifest file.
        manifest: PathBuf,
        /// What went wrong.
        #[source]
        source: ManifestError,
    },
    /// Reading an example failed.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The examples hold no Cluster.
    #[error("{}: no Cluster among the examples", examples.join(", "))]
    NoCluster {
        /// The example files.
        examples: Vec<String>,
    },
    /// The StatefulSets did not become Ready in time.
    #[error(
        "the StatefulSets in namespace {namespace} were not Ready after {waited:?}:\n{detail}\n\
         (the cluster is left running for a look; `make down` stops it)"
    )]
    NotReady {
        /// The namespace.
        namespace: String,
        /// How long was waited.
        waited: Duration,
        /// Each pod's state.
        detail: String,
    },
}

/// How to bring the local cluster up.
#[derive(Debug, Clone)]
pub struct LocalClusterConfig {
    /// The harness state directory.
    pub state_dir: PathBuf,
    /// The manifests of Skiff resources to apply (a Cluster, Topics).
    pub examples: Vec<PathBuf>,
    /// The namespace to apply them into.
    pub namespace: String,
    /// The namespace the operator is installed into.
    pub operator_namespace: String,
    /// Bound on starting the control plane and on each wait after it.
    pub timeout: Duration,
    /// The broker and operator build profile.
    pub profile: Profile,
    /// The `skiff-e2e` binary, run as the node agent.
    pub exe: PathBuf,
}

/// The examples `make up` applies.
pub fn default_examples() -> Vec<PathBuf> {
    let root = broker_image::workspace_root();
    vec![
        root.join("examples/cluster.yaml"),
        root.join("examples/topic.yaml"),
    ]
}

/// One broker pod as the user reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Pod name.
    pub pod: String,
    /// Its DNS name, if it has one.
    pub dns_name: Option<String>,
    /// Its address.
    pub ip: String,
    /// Its first container's log file.
    pub log: PathBuf,
}

/// What is running once [`up`] returns.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The kubectl built with the control plane.
    pub kubectl: PathBuf,
    /// The namespace of the Cluster and Topics.
    pub namespace: String,
    /// The namespace of the operator.
    pub operator_namespace: String,
    /// The chart the operator was installed from.
    pub chart: PathBuf,
    /// The operator pods (name, log file).
    pub operators: Vec<(String, PathBuf)>,
    /// The operator pod holding the leader Lease.
    pub leader: Option<String>,
    /// The Cluster's name and its `brokersReady` ("3/3").
    pub cluster: (String, String),
    /// The Topics, Ready.
    pub topics: Vec<String>,
    /// The broker pods, by name.
    pub brokers: Vec<BrokerAddress>,
    /// Whether the DNS names resolve on this machine.
    pub names_resolve: bool,
    /// Whether an already running cluster was reused.
    pub reused: bool,
    /// Whether `kcat` is on the PATH.
    pub kcat_installed: bool,
}

impl Summary {
    /// The text printed for the user: kubectl and kcat commands that work.
    pub fn instructions(&self) -> String {
        let ns = &self.namespace;
        let address = |b: &BrokerAddress| {
            let host = match (&b.dns_name, self.names_resolve) {
                (Some(name), true) => name.clone(),
                _ => b.ip.clone(),
            };
            format!("{host}:{KAFKA_PORT}")
        };
        let (cluster, ready) = &self.cluster;
        let mut text = format!(
            "Skiff is up on a local Kubernetes control plane whose pods run as processes on this machine{}:\n\
             \x20 operator   {} (Deployment skiff-operator, {} replicas; leader {}) in namespace {},\n\
             \x20            installed from {} with its CRDs and RBAC\n\
             \x20 Cluster    {cluster}: {ready} brokers Ready, in namespace {ns}\n",
            if self.reused {
                "\n(it was already running; the chart and the examples were re-applied)"
            } else {
                ""
            },
            OPERATOR_IMAGE,
            self.operators.len(),
            self.leader.as_deref().unwrap_or("unknown"),
            self.operator_namespace,
            self.chart.display(),
        );
        for topic in &self.topics {
            text.push_str(&format!("  Topic      {topic}: Ready\n"));
        }
        text.push_str(&format!(
            "\nkubectl:\n  export KUBECONFIG={}\n  {kubectl} -n {ns} get skc,skt,pods\n  {kubectl} -n {} get deploy,pods,lease\n\n",
            self.kubeconfig.display(),
            self.operator_namespace,
            kubectl = self.kubectl.display(),
        ));
        if let (Some(first), Some(topic)) = (self.brokers.first(), self.topics.first()) {
            let first = address(first);
            text.push_str(&format!(
                "Produce and consume with kcat:\n  \
                 echo hello | kcat -P -b {first} -t {topic}\n  \
                 kcat -C -b {first} -t {topic} -e\n\
                 The brokers are one cluster: Topic {topic} is replicated to {} of them\n\
                 (min.insync.replicas=2 as the Cluster sets it); any broker serves.\n",
                self.brokers.len()
            ));
            if !self.kcat_installed {
                text.push_str("(kcat is not installed here: `make kcat` installs it.)\n");
            }
            text.push('\n');
        }
        text.push_str("Brokers:\n");
        for broker in &self.brokers {
            text.push_str(&format!("  {:<60} {}\n", address(broker), broker.ip));
        }
        if !self.names_resolve {
            text.push_str(
                "\nThe brokers' DNS names do not resolve here: the node agent could not edit\n\
                 /etc/hosts (that needs root). The commands above use pod addresses, but the\n\
                 brokers advertise their DNS names, so clients will fail after bootstrapping.\n",
            );
        }
        text.push_str("\nLogs (there is no `kubectl logs`):\n");
        for (pod, log) in &self.operators {
            text.push_str(&format!("  {pod:<32} {}\n", log.display()));
        }
        for broker in &self.brokers {
            text.push_str(&format!("  {:<32} {}\n", broker.pod, broker.log.display()));
        }
        text.push_str("\nStop everything: make down\n");
        text
    }
}

/// The `--image-map=…` argument a running node agent was started with.
fn running_image_map(pid: i32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    cmdline
        .split(|b| *b == 0)
        .find_map(|arg| arg.strip_prefix(b"--image-map="))
        .map(|map| String::from_utf8_lossy(map).into_owned())
}

/// Reads and parses the examples; returns each file's text and the
/// `(kind, name)` of every object in it.
type Examples = Vec<(PathBuf, String, Vec<(String, String)>)>;

fn read_examples(paths: &[PathBuf]) -> Result<Examples, LocalClusterError> {
    let mut examples = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| LocalClusterError::Io {
            path: path.clone(),
            source,
        })?;
        let objects = manifest::parse(&text).map_err(|source| LocalClusterError::Manifest {
            manifest: path.clone(),
            source,
        })?;
        let kinds = objects
            .iter()
            .map(|o| {
                (
                    o.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default(),
                    o.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        examples.push((path.clone(), text, kinds));
    }
    Ok(examples)
}

/// Builds the broker and the operator, starts the control plane and node
/// agent detached (or reuses them if they already run with the same image
/// map), installs the operator from its Helm chart, applies the examples
/// and waits until the operator's pods, the Cluster and the Topics are
/// Ready.
pub async fn up(config: &LocalClusterConfig) -> Result<Summary, LocalClusterError> {
    // Before anything runs, so a broken example or chart costs nothing.
    let examples = read_examples(&config.examples)?;
    let named = |kind: &str| -> Vec<String> {
        examples
            .iter()
            .flat_map(|(_, _, objects)| objects)
            .filter(|(k, _)| k == kind)
            .map(|(_, name)| name.clone())
            .collect()
    };
    let cluster =
        named("Cluster")
            .into_iter()
            .next()
            .ok_or_else(|| LocalClusterError::NoCluster {
                examples: config
                    .examples
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            })?;
    let topics = named("Topic");
    let helm = chart::helm()?;
    let rendered = chart::render(&helm, chart::RELEASE, &config.operator_namespace, &[])?;

    let mut binaries = Binaries::cached();
    if !binaries.present() {
        tracing::info!(
            "control plane binaries not cached; running build.sh (a cold build takes a while)"
        );
        binaries = Binaries::build()?;
    }
    tracing::info!("building skiff-broker and skiff-operator");
    let broker = broker_image::binary(config.profile)?;
    let operator = chart::operator_binary(config.profile)?;
    let image_map = format!(
        "{}={},{}={}",
        broker_image::IMAGE,
        broker.display(),
        OPERATOR_IMAGE,
        operator.display()
    );

    let running = controlplane::status(&config.state_dir).await?;
    let agent = running.as_ref().and_then(|s| {
        s.components
            .iter()
            .find(|c| c.name == controlplane::names::NODE_AGENT && c.running)
    });
    // An agent started with another image map (an older `make up`, another
    // build profile) would run other binaries: start afresh instead.
    let reused = running.as_ref().is_some_and(|s| s.healthy())
        && agent.is_some_and(|a| running_image_map(a.pid).as_deref() == Some(&image_map));
    let kubeconfig = if reused {
        tracing::info!(state_dir = %config.state_dir.display(), "reusing the running cluster");
        config.state_dir.join("kubeconfig")
    } else {
        if running.is_some() {
            tracing::info!("clearing a stopped, incomplete or differently built cluster first");
            controlplane::down(&config.state_dir, STOP_GRACE)?;
        }
        let mut cp_config = ControlPlaneConfig::new(&config.state_dir, binaries.clone());
        cp_config.startup_timeout = config.timeout;
        let mut control_plane = ControlPlane::start(cp_config).await?;
        control_plane
            .start_node_agent_process(&config.exe, &image_map, config.timeout)
            .await?;
        control_plane.detach()?.kubeconfig
    };

    let client = controlplane::client_for(&kubeconfig).await?;
    let installed = chart::install(&client, &rendered, &config.operator_namespace)
        .await
        .map_err(LocalClusterError::Running)?;
    tracing::info!(objects = installed.len(), namespace = %config.operator_namespace, "installed the operator from the chart; waiting for its pods");
    let operator_pods = chart::wait_operator(&client, &config.operator_namespace, config.timeout)
        .await
        .map_err(LocalClusterError::Running)?;
    chart::wait_crds(&client, config.timeout)
        .await
        .map_err(LocalClusterError::Running)?;

    let manifest_err = |path: &Path| {
        let manifest = path.to_owned();
        move |source| LocalClusterError::Manifest { manifest, source }
    };
    manifest::ensure_namespace(&client, &config.namespace)
        .await
        .map_err(manifest_err(Path::new(&config.namespace)))?;
    for (path, text, _) in &examples {
        let applied = manifest::apply(&client, text, &config.namespace)
            .await
            .map_err(manifest_err(path))?;
        tracing::info!(?applied, namespace = %config.namespace, "applied");
    }
    let mut wanted = vec![("Cluster", cluster.as_str())];
    wanted.extend(topics.iter().map(|t| ("Topic", t.as_str())));
    tracing::info!(?wanted, "waiting until the operator makes them Ready");
    let ready = chart::wait_resources_ready(&client, &config.namespace, &wanted, config.timeout)
        .await
        .map_err(LocalClusterError::Running)?;
    let brokers_ready = ready[0].data["status"]["brokersReady"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let pods = wait_ready(&client, &config.namespace, config.timeout).await?;
    let leader = Api::<Lease>::namespaced(client.clone(), &config.operator_namespace)
        .get_opt(chart::LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity);

    let node_root = config.state_dir.join("node");
    let brokers: Vec<BrokerAddress> = pods.iter().map(|p| broker_address(p, &node_root)).collect();
    let operators = operator_pods
        .iter()
        .map(|p| {
            let address = broker_address(p, &node_root);
            (address.pod, address.log)
        })
        .collect();
    let names_resolve = !brokers.is_empty()
        && brokers.iter().all(|b| {
            b.dns_name.as_ref().is_some_and(|name| {
                (name.as_str(), KAFKA_PORT)
                    .to_socket_addrs()
                    .is_ok_and(|mut a| a.any(|a| a.ip().to_string() == b.ip))
            })
        });
    Ok(Summary {
        kubeconfig,
        kubectl: binaries.kubectl,
        namespace: config.namespace.clone(),
        operator_namespace: config.operator_namespace.clone(),
        chart: chart::chart_dir(),
        operators,
        leader,
        cluster: (cluster, brokers_ready),
        topics,
        brokers,
        names_resolve,
        reused,
        kcat_installed: std::process::Command::new("kcat")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
    })
}

fn broker_address(pod: &Pod, node_root: &Path) -> BrokerAddress {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let dns_name = spec.and_then(|s| {
        let hostname = s.hostname.as_deref()?;
        let subdomain = s.subdomain.as_deref()?;
        Some(crate::node::dns_records::pod_fqdn(
            hostname, subdomain, &namespace,
        ))
    });
    let container = spec
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    BrokerAddress {
        dns_name,
        ip: pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default(),
        log: pod_dir(node_root, &namespace, &name, &uid)
            .join("logs")
            .join(format!("{container}.log")),
        pod: name,
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// One line per pod: name, phase, readiness, and why a container waits.
pub fn describe_pods(pods: &[Pod]) -> String {
    if pods.is_empty() {
        return "  (no pods)".into();
    }
    pods.iter()
        .map(|pod| {
            let status = pod.status.clone().unwrap_or_default();
            let waiting: Vec<String> = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| {
                    let w = c.state.as_ref()?.waiting.as_ref()?;
                    Some(format!(
                        "{}: {} {}",
                        c.name,
                        w.reason.clone().unwrap_or_default(),
                        w.message.clone().unwrap_or_default()
                    ))
                })
                .collect();
            format!(
                "  {} phase={} ready={} {}{}",
                pod.metadata.name.as_deref().unwrap_or_default(),
                status.phase.unwrap_or_default(),
                pod_ready(pod),
                status.message.unwrap_or_default(),
                waiting.join("; ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until every StatefulSet in `namespace` has all its replicas Ready;
/// returns their pods, sorted by name.
async fn wait_ready(
    client: &kube::Client,
    namespace: &str,
    timeout: Duration,
) -> Result<Vec<Pod>, LocalClusterError> {
    let started = Instant::now();
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut last_pods = Vec::new();
    while started.elapsed() < timeout {
        let sets = statefulsets
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let pods = pods_api
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let wanted: i32 = sets
            .iter()
            .map(|s| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
            .sum();
        let all_ready = !sets.is_empty()
            && sets.iter().all(|s| {
                let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                s.status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0)
                    == want
            })
            && pods.iter().filter(|p| pod_ready(p)).count() == usize::try_from(wanted).unwrap_or(0);
        if all_ready {
            let mut ready: Vec<Pod> = pods.into_iter().filter(pod_ready).collect();
            ready.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            return Ok(ready);
        }
        last_pods = pods;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(LocalClusterError::NotReady {
        namespace: namespace.to_owned(),
        waited: timeout,
        detail: describe_pods(&last_pods),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_classification() {
        let dir = tempfile::tempdir().unwrap();
        let harness = dir.path().join("state/kubeconfig");
        let other = dir.path().join("other-kubeconfig");
        std::fs::create_dir_all(harness.parent().unwrap()).unwrap();
        std::fs::write(&harness, "").unwrap();
        std::fs::write(&other, "").unwrap();
        let missing = dir.path().join("missing");
        let join = |paths: &[&Path]| std::env::join_paths(paths).unwrap();

        let cases: [(Option<std::ffi::OsString>, KubeconfigEnv); 7] = [
            (None, KubeconfigEnv::Unset),
            (Some("".into()), KubeconfigEnv::Unset),
            (Some(missing.clone().into()), KubeconfigEnv::Unset),
            (Some(harness.clone().into()), KubeconfigEnv::Harness),
            (
                Some(dir.path().join("state/../state/kubeconfig").into()),
                KubeconfigEnv::Harness,
            ),
            (
                Some(other.clone().into()),
                KubeconfigEnv::Other(vec![other.clone()]),
            ),
            (
                Some(join(&[&harness, &missing, &other])),
                KubeconfigEnv::Other(vec![other.clone()]),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                classify_kubeconfig(value.as_deref(), &harness),
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn foreign_cluster_message_names_the_cluster_and_the_chart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: prod\n\
             contexts: [{name: prod, context: {cluster: c1, user: u}}]\n\
             clusters: [{name: c1, cluster: {server: 'https://k8s.example:6443'}}]\n\
             users: [{name: u, user: {}}]\n",
        )
        .unwrap();
        let text = foreign_cluster_message(&[path], Path::new("charts/skiff-operator"));
        assert!(text.contains("https://k8s.example:6443"), "{text}");
        assert!(text.contains("\"prod\""), "{text}");
        assert!(
            text.contains(
                "helm install skiff-operator charts/skiff-operator --namespace skiff-system --create-namespace"
            ),
            "{text}"
        );
        assert!(text.contains("examples/cluster.yaml"), "{text}");
        assert!(text.contains("env -u KUBECONFIG make up"), "{text}");
    }

    fn summary() -> Summary {
        let broker = |n: u8| BrokerAddress {
            pod: format!("demo-{n}"),
            dns_name: Some(format!("demo-{n}.demo-brokers.skiff.svc.cluster.local")),
            ip: format!("127.1.0.{n}"),
            log: PathBuf::from(format!("/s/node/pods/skiff_demo-{n}_u/logs/broker.log")),
        };
        Summary {
            kubeconfig: "/s/kubeconfig".into(),
            kubectl: "/c/kubectl".into(),
            namespace: "skiff".into(),
            operator_namespace: "skiff-system".into(),
            chart: "/w/charts/skiff-operator".into(),
            operators: vec![
                ("skiff-operator-a".into(), "/s/a.log".into()),
                ("skiff-operator-b".into(), "/s/b.log".into()),
            ],
            leader: Some("skiff-operator-b".into()),
            cluster: ("demo".into(), "3/3".into()),
            topics: vec!["orders".into()],
            brokers: vec![broker(0), broker(1), broker(2)],
            names_resolve: true,
            reused: false,
            kcat_installed: true,
        }
    }

    #[test]
    fn instructions_use_dns_names_when_they_resolve_and_addresses_otherwise() {
        let mut summary = summary();
        let text = summary.instructions();
        assert!(text.contains("export KUBECONFIG=/s/kubeconfig"), "{text}");
        assert!(
            text.contains("/c/kubectl -n skiff get skc,skt,pods"),
            "{text}"
        );
        assert!(
            text.contains("/c/kubectl -n skiff-system get deploy,pods,lease"),
            "{text}"
        );
        assert!(text.contains("leader skiff-operator-b"), "{text}");
        assert!(
            text.contains("installed from /w/charts/skiff-operator"),
            "{text}"
        );
        assert!(text.contains("demo: 3/3 brokers Ready"), "{text}");
        assert!(
            text.contains(
                "echo hello | kcat -P -b demo-0.demo-brokers.skiff.svc.cluster.local:9092 -t orders"
            ),
            "{text}"
        );
        assert!(text.contains("/s/a.log"), "{text}");
        assert!(text.contains("make down"), "{text}");
        assert!(!text.contains("make kcat"), "{text}");

        summary.names_resolve = false;
        summary.kcat_installed = false;
        let text = summary.instructions();
        assert!(
            text.contains("kcat -C -b 127.1.0.0:9092 -t orders -e"),
            "{text}"
        );
        assert!(text.contains("do not resolve"), "{text}");
        assert!(text.contains("make kcat"), "{text}");
    }

    #[test]
    fn the_examples_hold_a_cluster_and_a_topic() {
        let examples = read_examples(&default_examples()).unwrap();
        let objects: Vec<_> = examples.iter().flat_map(|(_, _, o)| o.clone()).collect();
        assert_eq!(
            objects,
            [
                ("Cluster".to_owned(), "demo".to_owned()),
                ("Topic".to_owned(), "orders".to_owned())
            ]
        );
    }
}
