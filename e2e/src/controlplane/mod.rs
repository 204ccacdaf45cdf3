//! A real Kubernetes control plane on loopback: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler, built from source by
//! `e2e/controlplane/build.sh` and run as local processes.
//!
//! [`ControlPlane::start`] generates PKI and kubeconfigs into a state
//! directory, starts the components in order, waits (bounded) until each is
//! healthy, and hands back a guard; dropping the guard, or
//! [`ControlPlane::stop`], stops everything it started. [`down`] and
//! [`status`] work from the state file for a control plane started by
//! another process (`skiff-e2e up --detach`).

pub mod binaries;
pub mod components;
pub mod error;
pub mod health;
pub mod pki;
pub mod process;
pub mod state;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::Api;

pub use binaries::Binaries;
use components::{Ports, StateLayout};
pub use error::{ControlPlaneError, Result};
use pki::Pki;
use process::{GroupRecord, Supervised};
pub use state::State;

/// Component names, used for log files and messages.
pub mod names {
    /// etcd.
    pub const ETCD: &str = "etcd";
    /// kube-apiserver.
    pub const APISERVER: &str = "kube-apiserver";
    /// kube-controller-manager.
    pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
    /// kube-scheduler.
    pub const SCHEDULER: &str = "kube-scheduler";
    /// The node agent (`skiff-e2e node`), when `up --node` runs one.
    pub const NODE_AGENT: &str = "node-agent";
}

/// Entries a control plane creates in its state directory; only these are
/// removed when the directory is reused, never anything else in it.
const STATE_ENTRIES: [&str; 7] = [
    "pki",
    "etcd-data",
    "apiserver",
    "logs",
    "kubeconfig",
    "controlplane.json",
    "node",
];

/// How to start a control plane.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// Where PKI, kubeconfig, etcd data, logs and the state file go.
    pub state_dir: PathBuf,
    /// The binaries to run.
    pub binaries: Binaries,
    /// Bound on the whole startup, health checks included.
    pub startup_timeout: Duration,
    /// How long each component gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
}

impl ControlPlaneConfig {
    /// Defaults: two minutes to start (the apiserver alone takes several
    /// seconds on a busy 2-core machine), ten seconds of grace to stop.
    pub fn new(state_dir: impl Into<PathBuf>, binaries: Binaries) -> Self {
        Self {
            state_dir: state_dir.into(),
            binaries,
            startup_timeout: Duration::from_secs(120),
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// A running control plane. Dropping it stops every component (blocking for
/// at most a few seconds per component); [`ControlPlane::stop`] does the same
/// and reports failures.
#[derive(Debug)]
pub struct ControlPlane {
    layout: StateLayout,
    ports: Ports,
    pki: Pki,
    /// In start order; stopped in reverse.
    processes: Vec<Supervised>,
    stop_grace: Duration,
}

/// The default state directory, `e2e/.state` of this checkout (git-ignored).
pub fn default_state_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".state")
}

/// Free loopback ports, distinct from each other. Another process could take
/// one before the component binds it; the component then fails to start and
/// says so in its log.
fn free_ports() -> Result<Ports> {
    let listeners = (0..5)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| ControlPlaneError::io("binding a free port on", "127.0.0.1", e))?;
    let port = |i: usize| listeners[i].local_addr().map(|a| a.port()).unwrap_or(0);
    Ok(Ports {
        etcd_client: port(0),
        etcd_peer: port(1),
        apiserver: port(2),
        controller_manager: port(3),
        scheduler: port(4),
    })
}

/// Refuses a state directory whose control plane is still running, then
/// removes what a previous one left behind.
fn prepare_state_dir(layout: &StateLayout) -> Result<()> {
    if let Some(previous) = State::load(&layout.state_file())? {
        let alive_pid = previous
            .launcher
            .filter(|(pid, start)| process::alive(*pid, *start))
            .map(|(pid, _)| pid)
            .or_else(|| {
                previous
                    .components
                    .iter()
                    .find(|c| process::recorded_alive(c))
                    .map(|c| c.pid)
            });
        if let Some(pid) = alive_pid {
            return Err(ControlPlaneError::AlreadyRunning {
                state_dir: layout.root.clone(),
                pid,
            });
        }
    }
    // A previous instance killed outright leaves its pod names behind.
    withdraw_pod_names(layout);
    for entry in STATE_ENTRIES {
        let path = layout.root.join(entry);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ControlPlaneError::io("removing", path, e)),
        }
    }
    for dir in [
        layout.root.clone(),
        layout.logs(),
        layout.etcd_data(),
        layout.apiserver_certs(),
    ] {
        std::fs::create_dir_all(&dir)
            .map_err(|e| ControlPlaneError::io("creating", dir.clone(), e))?;
    }
    // etcd refuses a data directory others can read.
    set_mode(&layout.etcd_data(), 0o700)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ControlPlaneError::io("setting permissions of", path, e))
}

impl ControlPlane {
    /// Generates PKI, starts etcd, the apiserver, the controller-manager and
    /// the scheduler, and waits until each is healthy and the controllers
    /// have created the `default` service account. On error everything
    /// already started is stopped again.
    pub async fn start(config: ControlPlaneConfig) -> Result<Self> {
        let started = Instant::now();
        let deadline = started + config.startup_timeout;
        let remaining = || deadline.saturating_duration_since(Instant::now());
        config.binaries.verify()?;
        let layout = StateLayout {
            root: config.state_dir.clone(),
        };
        prepare_state_dir(&layout)?;
        let ports = free_ports()?;
        let pki = Pki::generate(
            &layout.pki(),
            &ports.apiserver_url(),
            components::KUBERNETES_SERVICE_IP.into(),
        )?;
        std::fs::copy(&pki.admin.kubeconfig, layout.kubeconfig())
            .map_err(|e| ControlPlaneError::io("writing", layout.kubeconfig(), e))?;

        let mut this = Self {
            layout,
            ports,
            pki,
            processes: Vec::new(),
            stop_grace: config.stop_grace,
        };
        let bins = &config.binaries;

        // etcd
        let args = components::etcd_args(&this.ports, &this.layout.etcd_data());
        let mut etcd = this.spawn(names::ETCD, &bins.etcd, &args)?;
        let client = &health::anonymous_client(&this.ports.etcd_url(), None)?;
        health::wait_healthy(&mut etcd, "GET /health", remaining(), || async move {
            let body = health::get(client, "/health").await?;
            if body.contains(r#""health":"true""#) {
                Ok(())
            } else {
                Err(format!("/health says {body}"))
            }
        })
        .await?;
        this.processes.push(etcd);

        // kube-apiserver
        let args =
            components::apiserver_args(&this.ports, &this.pki, &this.layout.apiserver_certs());
        let mut apiserver = this.spawn(names::APISERVER, &bins.kube_apiserver, &args)?;
        let admin = &this.client().await?;
        health::wait_healthy(&mut apiserver, "GET /readyz", remaining(), || async move {
            health::get(admin, "/readyz").await.map(drop)
        })
        .await?;
        this.processes.push(apiserver);

        // kube-controller-manager and kube-scheduler start together.
        let args = components::controller_manager_args(&this.ports, &this.pki);
        let mut cm = this.spawn(
            names::CONTROLLER_MANAGER,
            &bins.kube_controller_manager,
            &args,
        )?;
        let args = components::scheduler_args(&this.ports, &this.pki);
        let mut scheduler = this.spawn(names::SCHEDULER, &bins.kube_scheduler, &args)?;
        for (process, port) in [
            (&mut cm, this.ports.controller_manager),
            (&mut scheduler, this.ports.scheduler),
        ] {
            let client = &health::anonymous_client(
                &format!("https://127.0.0.1:{port}"),
                Some(&this.pki.ca_der),
            )?;
            health::wait_healthy(process, "GET /healthz", remaining(), || async move {
                let body = health::get(client, "/healthz").await?;
                if body.trim() == "ok" {
                    Ok(())
                } else {
                    Err(format!("/healthz says {body}"))
                }
            })
            .await?;
        }

        // The service-account controller creating `default/default` proves
        // the controller-manager reaches the apiserver with its own
        // credentials and that its controllers run.
        let accounts = &Api::<ServiceAccount>::namespaced(admin.clone(), "default");
        health::wait_healthy(
            &mut cm,
            "default service account created",
            remaining(),
            || async move {
                match accounts.get_opt("default").await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("service account default/default not created yet".to_owned()),
                    Err(e) => Err(format!("reading service account default/default: {e}")),
                }
            },
        )
        .await?;
        this.processes.push(cm);
        this.processes.push(scheduler);

        tracing::info!(took = ?started.elapsed(), kubeconfig = %this.kubeconfig().display(), "control plane ready");
        Ok(this)
    }

    fn spawn(&self, name: &str, program: &Path, args: &[String]) -> Result<Supervised> {
        tracing::info!(component = name, "starting");
        process::spawn(name, program, args, &self.layout.log(name))
    }

    /// The admin kubeconfig (user in `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.layout.kubeconfig()
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn apiserver_url(&self) -> String {
        self.ports.apiserver_url()
    }

    /// Every port in use.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.layout.root
    }

    /// The generated keys and certificates.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// Starts the node agent as one more component: `exe node …` (normally
    /// this very `skiff-e2e` binary), with `image_map` as its image map, and
    /// waits until its Node is Ready. `down` stops it first, then any pod
    /// process it left behind.
    pub async fn start_node_agent_process(
        &mut self,
        exe: &Path,
        image_map: &str,
        timeout: Duration,
    ) -> Result<()> {
        let root = self.layout.node_root();
        let args = vec![
            "node".to_owned(),
            format!("--kubeconfig={}", self.kubeconfig().display()),
            format!("--root={}", root.display()),
            format!("--name={}", crate::node::DEFAULT_NODE_NAME),
            format!("--image-map={image_map}"),
            format!("--apiserver-port={}", self.ports.apiserver),
        ];
        let mut agent = self.spawn(names::NODE_AGENT, exe, &args)?;
        let nodes = &Api::<Node>::all(self.client().await?);
        health::wait_healthy(&mut agent, "node Ready", timeout, || async move {
            let node = nodes
                .get_opt(crate::node::DEFAULT_NODE_NAME)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("node not registered yet")?;
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                Ok(())
            } else {
                Err("node not Ready".to_owned())
            }
        })
        .await?;
        self.processes.push(agent);
        Ok(())
    }

    /// Log file of a component (see [`names`]).
    pub fn log(&self, component: &str) -> PathBuf {
        self.layout.log(component)
    }

    /// A client with the admin identity.
    pub async fn client(&self) -> Result<kube::Client> {
        client_for(&self.kubeconfig()).await
    }

    /// An error if any component has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.processes
            .iter_mut()
            .try_for_each(Supervised::check_running)
    }

    /// What the state file records; `launcher` is this process if `owned`.
    pub fn state(&self, owned: bool) -> State {
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        State {
            launcher: owned.then(|| {
                (
                    me,
                    process::proc_stat(me).map(|s| s.start_time).unwrap_or(0),
                )
            }),
            apiserver_url: self.apiserver_url(),
            kubeconfig: self.kubeconfig(),
            kubernetes_version: binaries::kubernetes_version(),
            ports: self.ports,
            components: self.processes.iter().map(|p| p.record().clone()).collect(),
        }
    }

    /// Writes the state file (for `status` and `down`) with this process as
    /// the owner.
    pub fn write_state(&self) -> Result<()> {
        self.state(true).write(&self.layout.state_file())
    }

    /// Leaves the components running after this process exits: writes the
    /// state file without an owner, so `skiff-e2e down` stops them directly.
    pub fn detach(mut self) -> Result<State> {
        let state = self.state(false);
        state.write(&self.layout.state_file())?;
        for process in std::mem::take(&mut self.processes) {
            process.detach();
        }
        Ok(state)
    }

    /// Stops every component, newest first, and removes the state file.
    pub async fn stop(mut self) -> Result<()> {
        let processes = std::mem::take(&mut self.processes);
        let grace = self.stop_grace;
        let layout = self.layout.clone();
        tokio::task::spawn_blocking(move || stop_all(processes, grace, &layout))
            .await
            .unwrap_or_else(|e| {
                Err(ControlPlaneError::Leftover(format!(
                    "stop task failed: {e}"
                )))
            })
    }
}

fn stop_all(mut processes: Vec<Supervised>, grace: Duration, layout: &StateLayout) -> Result<()> {
    let mut result = Ok(());
    while let Some(mut process) = processes.pop() {
        if let Err(e) = process.stop(grace) {
            result = Err(e);
        }
    }
    withdraw_pod_names(layout);
    if result.is_ok() {
        let _ = std::fs::remove_file(layout.state_file());
    }
    result
}

/// Removes the node agent's block from the hosts file, in case the agent
/// was killed before it could do so itself.
fn withdraw_pod_names(layout: &StateLayout) {
    if let Err(error) = crate::node::dns::withdraw_recorded(&layout.node_root()) {
        tracing::error!(%error, "removing the pod names from the hosts file");
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.processes.is_empty() {
            return;
        }
        let processes = std::mem::take(&mut self.processes);
        if let Err(error) = stop_all(
            processes,
            self.stop_grace.min(Duration::from_secs(5)),
            &self.layout,
        ) {
            tracing::error!(%error, "stopping the control plane on drop");
        }
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Result<kube::Client> {
    let err = |reason: String| ControlPlaneError::Kubeconfig {
        path: kubeconfig.to_owned(),
        reason,
    };
    let file = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| err(e.to_string()))?;
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| err(e.to_string()))?;
    kube::Client::try_from(config).map_err(|source| ControlPlaneError::Kube {
        action: "building the admin client".into(),
        source,
    })
}

/// Stops the control plane recorded in `state_dir`: asks a foreground `up`
/// to stop its components, then stops whatever is still running. Bounded by
/// roughly `grace` plus a few seconds per component. Returns false if there
/// was nothing to stop.
pub fn down(state_dir: &Path, grace: Duration) -> Result<bool> {
    let layout = StateLayout {
        root: state_dir.to_owned(),
    };
    let Some(state) = State::load(&layout.state_file())? else {
        return Ok(false);
    };
    if let Some((pid, start_time)) = state.launcher
        && process::alive(pid, start_time)
    {
        // The launcher stops its own children on SIGTERM; give it the time
        // that takes, then fall through and stop any survivors ourselves.
        let record = GroupRecord {
            name: "skiff-e2e up".into(),
            pid,
            start_time,
            log: PathBuf::new(),
        };
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let wait =
            grace * u32::try_from(state.components.len()).unwrap_or(4) + Duration::from_secs(5);
        let deadline = Instant::now() + wait;
        while process::alive(record.pid, start_time) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut result = Ok(());
    for component in state.components.iter().rev() {
        if let Err(e) = process::stop_recorded(component, grace) {
            result = Err(e);
        }
    }
    // Pod processes a killed node agent could not stop itself, and its
    // pod names.
    for record in pod_process_records(&layout.node_root()) {
        if let Err(e) = process::stop_recorded(&record, grace) {
            result = Err(e);
        }
    }
    withdraw_pod_names(&layout);
    result?;
    match std::fs::remove_file(layout.state_file()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ControlPlaneError::io("removing", layout.state_file(), e)),
    }
    Ok(true)
}

/// The process records the node agent keeps for each running container,
/// `<node root>/pods/*/processes/*.json`.
fn pod_process_records(node_root: &Path) -> Vec<GroupRecord> {
    let Ok(pods) = std::fs::read_dir(node_root.join("pods")) else {
        return Vec::new();
    };
    pods.filter_map(|pod| std::fs::read_dir(pod.ok()?.path().join("processes")).ok())
        .flatten()
        .filter_map(|file| std::fs::read(file.ok()?.path()).ok())
        .filter_map(|json| serde_json::from_slice(&json).ok())
        .collect()
}

/// One line per component of a control plane's status.
#[derive(Debug, Clone)]
pub struct ComponentStatus {
    /// Component name.
    pub name: String,
    /// Its pid.
    pub pid: i32,
    /// Whether it is running.
    pub running: bool,
    /// Its log file.
    pub log: PathBuf,
}

/// What `skiff-e2e status` reports.
#[derive(Debug, Clone)]
pub struct Status {
    /// The state file's contents.
    pub state: State,
    /// Each component.
    pub components: Vec<ComponentStatus>,
    /// The apiserver's `/readyz` answer, or why it failed.
    pub readyz: Result<String, String>,
    /// The apiserver's `/version` gitVersion, or why it failed.
    pub version: Result<String, String>,
}

impl Status {
    /// Every component running and the apiserver ready.
    pub fn healthy(&self) -> bool {
        self.components.iter().all(|c| c.running) && self.readyz.is_ok()
    }
}

/// The status of the control plane recorded in `state_dir`, or `None`.
pub async fn status(state_dir: &Path) -> Result<Option<Status>> {
    let layout = StateLayout {
        root: state_dir.to_owned(),
    };
    let Some(state) = State::load(&layout.state_file())? else {
        return Ok(None);
    };
    let components = state
        .components
        .iter()
        .map(|c| ComponentStatus {
            name: c.name.clone(),
            pid: c.pid,
            running: process::alive(c.pid, c.start_time),
            log: c.log.clone(),
        })
        .collect();
    let (readyz, version) =
        match client_for(&state.kubeconfig).await {
            Ok(client) => {
                let version =
                    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version())
                        .await
                    {
                        Ok(Ok(info)) => Ok(info.git_version),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("no answer within 5s".to_owned()),
                    };
                (health::get(&client, "/readyz").await, version)
            }
            Err(e) => (Err(e.to_string()), Err(e.to_string())),
        };
    Ok(Some(Status {
        state,
        components,
        readyz,
        version,
    }))
}
