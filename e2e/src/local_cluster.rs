//! A long-running local cluster for people (`make up`): the control plane
//! and a node agent left running in the background, the example broker
//! StatefulSet applied and Ready, and the commands to use it printed.
//!
//! A machine that already has a cluster (`KUBECONFIG` names a kubeconfig
//! other than the harness's own) is left alone: nothing is built or started,
//! and the user is told how Skiff is meant to reach a real cluster.

use std::ffi::OsStr;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::broker_image::{self, BrokerBuildError, Profile};
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

/// The operator's Helm chart in this checkout (`charts/*/Chart.yaml`), if
/// one has been written.
pub fn helm_chart() -> Option<PathBuf> {
    let charts = crate::broker_image::workspace_root().join("charts");
    let mut found: Vec<PathBuf> = std::fs::read_dir(charts)
        .ok()?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|dir| dir.join("Chart.yaml").is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

/// What `make up` says, and does not do, when `KUBECONFIG` names another
/// cluster; `chart` is the Helm chart, if written.
pub fn foreign_cluster_message(paths: &[PathBuf], chart: Option<&Path>) -> String {
    let listed: Vec<String> = paths
        .iter()
        .map(|p| format!("  {} ({})", p.display(), describe_kubeconfig(p)))
        .collect();
    let helm = match chart {
        Some(chart) => format!(
            "On a real cluster Skiff is installed with its Helm chart:\n\
             \n\
             \x20 helm install skiff {} --namespace skiff --create-namespace\n",
            chart.display()
        ),
        None => {
            "On a real cluster Skiff will be installed with its Helm chart, along the lines of\n\
                 \n\
                 \x20 helm install skiff charts/skiff --namespace skiff --create-namespace\n\
                 \n\
                 but that chart is not written yet (there is no charts/*/Chart.yaml), so there\n\
                 is nothing to install on a real cluster today.\n"
                .to_owned()
        }
    };
    format!(
        "KUBECONFIG names a cluster already:\n{}\n\
         so `make up` leaves it alone: no broker was built, nothing was started or applied.\n\
         \n\
         The local harness (a Kubernetes control plane on loopback whose pods run as\n\
         processes on this machine) is for machines without a cluster.\n\
         {helm}\
         \n\
         To run the local harness anyway:  env -u KUBECONFIG make up\n",
        listed.join("\n")
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
    /// Applying the manifest failed.
    #[error("{}: {source}", manifest.display())]
    Manifest {
        /// The manifest file.
        manifest: PathBuf,
        /// What went wrong.
        #[source]
        source: ManifestError,
    },
    /// Reading the manifest failed.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
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
    /// The manifest to apply.
    pub manifest: PathBuf,
    /// The namespace to apply it into.
    pub namespace: String,
    /// Bound on starting the control plane and on waiting for Ready pods.
    pub timeout: Duration,
    /// The broker build profile.
    pub profile: Profile,
    /// The `skiff-e2e` binary, run as the node agent.
    pub exe: PathBuf,
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
    /// The namespace the manifest went into.
    pub namespace: String,
    /// What was applied, `kind/name`.
    pub applied: Vec<String>,
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
        let mut text = format!(
            "Skiff is up: {} in namespace {ns} ({}),\n\
             on a local Kubernetes control plane whose pods run as processes on this machine{}.\n\n",
            match self.brokers.len() {
                1 => "1 broker".to_owned(),
                n => format!("{n} brokers"),
            },
            self.applied.join(", "),
            if self.reused {
                "\n(it was already running; the manifest was re-applied)"
            } else {
                ""
            },
        );
        text.push_str(&format!(
            "kubectl:\n  export KUBECONFIG={}\n  {} -n {ns} get pods,pvc,svc -o wide\n\n",
            self.kubeconfig.display(),
            self.kubectl.display()
        ));
        if let Some(first) = self.brokers.first() {
            let first = address(first);
            text.push_str(&format!(
                "Produce and consume with kcat:\n  \
                 echo hello | kcat -P -b {first} -t demo\n  \
                 kcat -C -b {first} -t demo -e\n\
                 The three brokers are one cluster: topics are replicated to all three\n\
                 (default.replication.factor=3, min.insync.replicas=2), any broker serves.\n"
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
        text.push_str("\nBroker logs (there is no `kubectl logs`):\n");
        for broker in &self.brokers {
            text.push_str(&format!("  {}\n", broker.log.display()));
        }
        text.push_str("\nStop everything: make down\n");
        text
    }
}

/// Builds the broker, starts the control plane and node agent detached
/// (or reuses them if they already run), applies the manifest and waits
/// until every StatefulSet in the namespace is Ready.
pub async fn up(config: &LocalClusterConfig) -> Result<Summary, LocalClusterError> {
    let manifest_text =
        std::fs::read_to_string(&config.manifest).map_err(|source| LocalClusterError::Io {
            path: config.manifest.clone(),
            source,
        })?;
    // Before anything runs, so a broken manifest costs nothing.
    manifest::parse(&manifest_text).map_err(|source| LocalClusterError::Manifest {
        manifest: config.manifest.clone(),
        source,
    })?;
    let mut binaries = Binaries::cached();
    if !binaries.present() {
        tracing::info!(
            "control plane binaries not cached; running build.sh (a cold build takes a while)"
        );
        binaries = Binaries::build()?;
    }
    tracing::info!("building skiff-broker");
    let broker = broker_image::binary(config.profile)?;
    let image_map = format!("{}={}", broker_image::IMAGE, broker.display());

    let running = controlplane::status(&config.state_dir).await?;
    let reused = running.as_ref().is_some_and(|s| {
        s.healthy()
            && s.components
                .iter()
                .any(|c| c.name == controlplane::names::NODE_AGENT)
    });
    let kubeconfig = if reused {
        tracing::info!(state_dir = %config.state_dir.display(), "reusing the running cluster");
        config.state_dir.join("kubeconfig")
    } else {
        if running.is_some() {
            tracing::info!("clearing a stopped or incomplete cluster first");
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
    let manifest_err = |source| LocalClusterError::Manifest {
        manifest: config.manifest.clone(),
        source,
    };
    manifest::ensure_namespace(&client, &config.namespace)
        .await
        .map_err(manifest_err)?;
    let applied = manifest::apply(&client, &manifest_text, &config.namespace)
        .await
        .map_err(manifest_err)?;
    tracing::info!(?applied, namespace = %config.namespace, "applied; waiting for Ready pods");
    let pods = wait_ready(&client, &config.namespace, config.timeout).await?;

    let node_root = config.state_dir.join("node");
    let brokers: Vec<BrokerAddress> = pods.iter().map(|p| broker_address(p, &node_root)).collect();
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
        applied,
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
fn describe_pods(pods: &[Pod]) -> String {
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
    fn foreign_cluster_message_names_the_cluster_and_the_missing_chart() {
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
        let text = foreign_cluster_message(std::slice::from_ref(&path), None);
        assert!(text.contains("https://k8s.example:6443"), "{text}");
        assert!(text.contains("\"prod\""), "{text}");
        assert!(text.contains("helm install"), "{text}");
        assert!(text.contains("not written yet"), "{text}");
        assert!(text.contains("env -u KUBECONFIG make up"), "{text}");
        let text = foreign_cluster_message(&[path], Some(Path::new("charts/skiff-operator")));
        assert!(
            text.contains("helm install skiff charts/skiff-operator --namespace skiff"),
            "{text}"
        );
        assert!(!text.contains("not written yet"), "{text}");
    }

    #[test]
    fn instructions_use_dns_names_when_they_resolve_and_addresses_otherwise() {
        let broker = |n: u8| BrokerAddress {
            pod: format!("skiff-broker-{n}"),
            dns_name: Some(format!(
                "skiff-broker-{n}.skiff-broker.skiff.svc.cluster.local"
            )),
            ip: format!("127.0.1.{n}"),
            log: PathBuf::from(format!(
                "/s/node/pods/skiff_skiff-broker-{n}_u/logs/broker.log"
            )),
        };
        let mut summary = Summary {
            kubeconfig: "/s/kubeconfig".into(),
            kubectl: "/c/kubectl".into(),
            namespace: "skiff".into(),
            applied: vec![
                "Service/skiff-broker".into(),
                "StatefulSet/skiff-broker".into(),
            ],
            brokers: vec![broker(1), broker(2), broker(3)],
            names_resolve: true,
            reused: false,
            kcat_installed: true,
        };
        let text = summary.instructions();
        assert!(text.contains("export KUBECONFIG=/s/kubeconfig"), "{text}");
        assert!(text.contains("/c/kubectl -n skiff get pods"), "{text}");
        assert!(
            text.contains(
                "echo hello | kcat -P -b skiff-broker-1.skiff-broker.skiff.svc.cluster.local:9092 -t demo"
            ),
            "{text}"
        );
        assert!(text.contains("3 brokers"), "{text}");
        assert!(text.contains("make down"), "{text}");

        assert!(!text.contains("make kcat"), "{text}");

        summary.names_resolve = false;
        summary.kcat_installed = false;
        let text = summary.instructions();
        assert!(
            text.contains("kcat -C -b 127.0.1.1:9092 -t demo -e"),
            "{text}"
        );
        assert!(text.contains("do not resolve"), "{text}");
        assert!(text.contains("make kcat"), "{text}");
    }
}
