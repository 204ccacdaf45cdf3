//! A node agent: a small stand-in for the kubelet that runs every pod
//! scheduled to its node as local processes on this machine.
//!
//! It registers a Ready Node and keeps its Lease fresh, watches the pods
//! bound to it and runs one worker per pod ([`pod`]), and provisions
//! PersistentVolumes for claims of its default StorageClass
//! ([`provisioner`]). It also makes pods reachable by the names cluster DNS
//! would give them, through its own block of `/etc/hosts` ([`dns`]). What
//! it does not do (no kubelet API, so no
//! `kubectl logs/exec/port-forward`; no images, cgroups, namespaces,
//! Service virtual IPs or DNS server) is listed in `e2e/README.md`.

pub mod dns;
pub mod dns_records;
pub mod hosts;
pub mod image_map;
pub mod ip;
pub mod mount_ns;
pub mod pod;
pub mod probe;
pub mod provisioner;
pub mod registration;
pub mod spec;
pub mod status;
pub mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use image_map::ImageMap;
use pod::{NodeSettings, Shared};
pub use registration::Capacity;

use crate::controlplane::process;

/// The default node name.
pub const DEFAULT_NODE_NAME: &str = "skiff-e2e-node";
/// Lease renewal interval (a quarter of the lease duration).
const LEASE_RENEW: Duration = Duration::from_secs(10);
/// Node status refresh interval.
const STATUS_REFRESH: Duration = Duration::from_secs(60);
/// Provisioner pass interval.
const PROVISION_INTERVAL: Duration = Duration::from_millis(500);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Registering the node or installing the StorageClass failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
    /// The root directory could not be created.
    #[error("creating {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No block of pod addresses could be claimed.
    #[error("claiming a block of pod addresses in {}: {source}", dir.display())]
    Addresses {
        /// The lock directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// How to run the node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node name.
    pub name: String,
    /// Root for pod directories (`pods/`) and provisioned volumes (`volumes/`).
    pub root: PathBuf,
    /// Image → binary.
    pub images: ImageMap,
    /// What the node advertises.
    pub capacity: Capacity,
    /// The `kubeletVersion` to report (the control plane's version).
    pub kubelet_version: String,
    /// The apiserver as pods should reach it.
    pub apiserver: Option<(String, u16)>,
    /// Longest restart back-off.
    pub max_backoff: Duration,
    /// Cap on each pod's grace period when the agent stops.
    pub shutdown_grace: Duration,
    /// The hosts file that receives the pods' DNS names (see [`dns`]);
    /// `None` turns them off.
    pub hosts_file: Option<PathBuf>,
    /// Where address blocks are claimed (see [`ip`]); shared by every
    /// harness on the machine.
    pub address_lock_dir: PathBuf,
}

impl NodeConfig {
    /// Defaults for a test node rooted at `root`.
    pub fn new(root: impl Into<PathBuf>, images: ImageMap) -> Self {
        Self {
            name: DEFAULT_NODE_NAME.into(),
            root: root.into(),
            images,
            capacity: Capacity::default(),
            kubelet_version: crate::controlplane::binaries::kubernetes_version(),
            apiserver: None,
            max_backoff: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            hosts_file: dns::default_hosts_file(),
            address_lock_dir: ip::default_lock_dir(),
        }
    }
}

/// A running node agent. Dropping it stops every pod process synchronously;
/// [`NodeAgent::stop`] does so gracefully.
#[derive(Debug)]
pub struct NodeAgent {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    workers: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
    names: Option<Arc<dns::PodNames>>,
    /// Held for the agent's life; dropped last.
    _addresses: ip::AddressBlock,
}

impl NodeAgent {
    /// Registers the node and the StorageClass, then starts the heartbeat,
    /// the provisioner and the pod watch.
    pub async fn start(client: kube::Client, config: NodeConfig) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&config.root).map_err(|source| NodeError::Io {
            path: config.root.clone(),
            source,
        })?;
        let kube_err = |action: &str| {
            let action = action.to_owned();
            move |source| NodeError::Kube { action, source }
        };
        registration::register(
            &client,
            &config.name,
            &config.capacity,
            &config.kubelet_version,
        )
        .await
        .map_err(kube_err(&format!("registering node {}", config.name)))?;
        provisioner::install_storage_class(&client)
            .await
            .map_err(kube_err("installing the default StorageClass"))?;
        let addresses = ip::AddressBlock::claim(&config.address_lock_dir).map_err(|source| {
            NodeError::Addresses {
                dir: config.address_lock_dir.clone(),
                source,
            }
        })?;
        tracing::info!(
            block = %format!("127.{}.0.0/16", addresses.octet()),
            "pod addresses"
        );

        let shared = Arc::new(Shared {
            client,
            settings: NodeSettings {
                node_name: config.name.clone(),
                root: config.root.clone(),
                images: config.images.clone(),
                capacity: config.capacity.clone(),
                apiserver: config.apiserver.clone(),
                max_backoff: config.max_backoff,
                shutdown_grace: config.shutdown_grace,
            },
            ips: Mutex::new(ip::IpAllocator::new(addresses.octet())),
            processes: Mutex::default(),
        });
        let names = config.hosts_file.as_deref().and_then(|hosts| {
            dns::PodNames::claim(hosts, &config.root)
                .inspect_err(|error| {
                    tracing::warn!(
                        %error,
                        hosts = %hosts.display(),
                        "pods get no DNS names: the hosts file cannot be edited (this needs root)"
                    );
                })
                .ok()
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let workers = Arc::new(Mutex::new(HashMap::new()));
        let span = tracing::info_span!("node", node = %config.name);
        let mut tasks = vec![
            tokio::spawn(
                heartbeat(shared.clone(), config.kubelet_version.clone()).instrument(span.clone()),
            ),
            tokio::spawn(provision(shared.clone()).instrument(span.clone())),
            tokio::spawn(
                dispatch(shared.clone(), shutdown_rx, workers.clone()).instrument(span.clone()),
            ),
        ];
        if let Some(names) = &names {
            let publish = dns::publish(shared.client.clone(), config.name.clone(), names.clone());
            tasks.push(tokio::spawn(publish.instrument(span)));
        }
        tracing::info!(node = %config.name, root = %config.root.display(), "node agent running");
        Ok(Self {
            shared,
            shutdown,
            tasks,
            workers,
            names,
            _addresses: addresses,
        })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.shared.settings.node_name
    }

    /// The hosts file holding the pods' DNS names, or `None` when pods get
    /// no names (not configured, or the file is not writable).
    pub fn hosts_file(&self) -> Option<&std::path::Path> {
        self.names.as_deref().map(dns::PodNames::hosts_file)
    }

    /// Stops every pod's processes (each with its grace period, capped by
    /// `shutdown_grace`) and the agent's tasks. Pods stay bound to the node.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        let workers: Vec<JoinHandle<()>> = self
            .workers
            .lock()
            .map(|mut w| w.drain().map(|(_, handle)| handle).collect())
            .unwrap_or_default();
        let bound = self.shared.settings.shutdown_grace + Duration::from_secs(10);
        let _ = tokio::time::timeout(bound, futures::future::join_all(workers)).await;
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.kill_leftovers();
        if let Some(names) = self.names.take() {
            let _ = tokio::task::spawn_blocking(move || names.withdraw()).await;
        }
    }

    /// Simulates the node dying: every pod process gets SIGKILL at once (no
    /// SIGTERM, no grace period) and the agent stops at once, with no further
    /// lease renewals or status updates, so the control plane sees the node
    /// fall silent as after a crash. Pods stay bound to the node; their DNS
    /// names are withdrawn (the harness owns that file).
    pub fn kill(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Ok(mut workers) = self.workers.lock() {
            for (_, worker) in workers.drain() {
                worker.abort();
            }
        }
        let records: Vec<_> = self
            .shared
            .processes
            .lock()
            .map(|mut p| std::mem::take(&mut *p).into_values().collect())
            .unwrap_or_default();
        for record in records {
            if let Err(error) = process::kill_recorded(&record) {
                tracing::error!(%error, "killing a pod process");
            }
        }
    }

    /// Stops, synchronously, any process still recorded as running.
    fn kill_leftovers(&self) {
        let records: Vec<_> = self
            .shared
            .processes
            .lock()
            .map(|mut p| std::mem::take(&mut *p).into_values().collect())
            .unwrap_or_default();
        for record in records {
            if let Err(error) = process::stop_recorded(&record, Duration::from_secs(2)) {
                tracing::error!(%error, "stopping a pod process");
            }
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Ok(mut workers) = self.workers.lock() {
            for (_, worker) in workers.drain() {
                worker.abort();
            }
        }
        self.kill_leftovers();
        if let Some(names) = self.names.take() {
            names.withdraw();
        }
    }
}

/// Renews the lease and refreshes the node status.
async fn heartbeat(shared: Arc<Shared>, kubelet_version: String) {
    let name = shared.settings.node_name.clone();
    let mut lease = tokio::time::interval(LEASE_RENEW);
    let mut status = tokio::time::interval(STATUS_REFRESH);
    loop {
        tokio::select! {
            _ = lease.tick() => {
                if let Err(error) = registration::renew_lease(&shared.client, &name).await {
                    tracing::warn!(%error, "lease renewal failed");
                }
            }
            _ = status.tick() => {
                let capacity = &shared.settings.capacity;
                if let Err(error) = registration::report_status(&shared.client, &name, capacity, &kubelet_version).await {
                    tracing::warn!(%error, "node status update failed");
                }
            }
        }
    }
}

/// Runs the provisioner forever.
async fn provision(shared: Arc<Shared>) {
    loop {
        if let Err(error) = provisioner::reconcile(&shared.client, &shared.settings.root).await {
            tracing::warn!(%error, "provisioning pass failed");
        }
        tokio::time::sleep(PROVISION_INTERVAL).await;
    }
}

/// Watches the node's pods and feeds one worker per pod UID.
async fn dispatch(
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    workers: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let selector = format!("spec.nodeName={}", shared.settings.node_name);
    let mut events = std::pin::pin!(watcher(pods, watcher::Config::default().fields(&selector)));
    let mut senders: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut listed: Option<Vec<String>> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(%error, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (pod, deleted) = match event {
            watcher::Event::Init => {
                listed = Some(Vec::new());
                continue;
            }
            watcher::Event::InitDone => {
                // Pods that vanished while the watch was down.
                let seen = listed.take().unwrap_or_default();
                senders.retain(|uid, sender| {
                    let keep = seen.contains(uid);
                    if !keep {
                        let _ = sender.send(None);
                    }
                    keep
                });
                continue;
            }
            watcher::Event::InitApply(pod) => {
                if let (Some(list), Some(uid)) = (listed.as_mut(), pod.metadata.uid.clone()) {
                    list.push(uid);
                }
                (pod, false)
            }
            watcher::Event::Apply(pod) => (pod, false),
            watcher::Event::Delete(pod) => (pod, true),
        };
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        if deleted {
            if let Some(sender) = senders.remove(&uid) {
                let _ = sender.send(None);
            }
            continue;
        }
        if let Some(sender) = senders.get(&uid) {
            let _ = sender.send(Some(pod));
            continue;
        }
        let span = tracing::info_span!(
            "pod",
            namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod = pod.metadata.name.as_deref().unwrap_or_default()
        );
        let (sender, receiver) = watch::channel(Some(pod));
        let handle =
            tokio::spawn(pod::run(shared.clone(), receiver, shutdown.clone()).instrument(span));
        senders.insert(uid.clone(), sender);
        if let Ok(mut workers) = workers.lock() {
            workers.retain(|_, handle| !handle.is_finished());
            workers.insert(uid, handle);
        }
    }
}
