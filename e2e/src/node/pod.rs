//! One worker task per pod bound to the node: prepares its volumes and
//! address, runs its init containers in order and then its containers as
//! local processes, probes them, restarts them per `restartPolicy` with a
//! capped back-off, reports status, and on deletion stops them (SIGTERM,
//! grace period, SIGKILL) and removes the pod object.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::watch;

use super::image_map::ImageMap;
use super::ip::IpAllocator;
use super::mount_ns;
use super::probe::{self, ProbeState};
use super::registration::Capacity;
use super::spec::{self, Invocation, Mounts, PodContext, parse_quantity};
use super::status::{self, Conditions, ContainerView, PodView, State, Terminated};
use super::volumes;
use crate::controlplane::process::{self, GroupRecord, Supervised};

/// How often a worker looks at its processes and probes.
const TICK: Duration = Duration::from_millis(200);
/// Retry interval while volumes or configuration are not ready.
const PREPARE_RETRY: Duration = Duration::from_secs(1);
/// First restart delay; doubles per crash up to the configured maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// A run this long resets the back-off.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// Grace period when the pod does not say.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Node-wide settings every pod worker needs.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The node's name.
    pub node_name: String,
    /// Per-pod directories go under `<root>/pods`.
    pub root: PathBuf,
    /// Image → binary.
    pub images: ImageMap,
    /// What the node advertises; also what resource limits default to.
    pub capacity: Capacity,
    /// The apiserver as pods should reach it (`KUBERNETES_SERVICE_HOST/PORT`).
    pub apiserver: Option<(String, u16)>,
    /// Longest restart back-off (the kubelet's is five minutes; tests want
    /// seconds).
    pub max_backoff: Duration,
    /// Cap on each pod's grace period when the agent itself shuts down.
    pub shutdown_grace: Duration,
}

/// State shared by all workers.
pub struct Shared {
    /// Admin client.
    pub client: kube::Client,
    /// Node settings.
    pub settings: NodeSettings,
    /// Pod addresses.
    pub ips: Mutex<IpAllocator>,
    /// Every live container process, so the agent's drop guard can stop
    /// them synchronously even while worker tasks are being torn down.
    pub processes: Mutex<BTreeMap<String, GroupRecord>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// One container of the pod and its current process.
#[derive(Debug)]
struct Run {
    spec: Container,
    init: bool,
    view: ContainerView,
    invocation: Option<Invocation>,
    process: Option<Supervised>,
    started: Option<(Instant, Timestamp)>,
    backoff: Duration,
    restart_at: Option<Instant>,
    startup: Option<ProbeState>,
    readiness: Option<ProbeState>,
    liveness: Option<ProbeState>,
    /// Set when an init container completed successfully.
    completed: bool,
}

impl Run {
    fn new(spec: &Container, init: bool) -> Self {
        Self {
            view: ContainerView {
                name: spec.name.clone(),
                image: spec.image.clone().unwrap_or_default(),
                binary: None,
                pid: None,
                state: State::Waiting {
                    reason: status::CONTAINER_CREATING.into(),
                    message: None,
                },
                last_state: None,
                restart_count: 0,
                ready: false,
                started: false,
            },
            spec: spec.clone(),
            init,
            invocation: None,
            process: None,
            started: None,
            backoff: FIRST_BACKOFF,
            restart_at: None,
            startup: None,
            readiness: None,
            liveness: None,
            completed: false,
        }
    }

    fn running(&self) -> bool {
        self.process.is_some()
    }
}

/// Where the worker is in the pod's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Address, volumes, environment.
    Preparing,
    /// Running init container `n`.
    Initializing(usize),
    /// App containers started.
    Running,
}

/// Identity of the pod a worker serves.
#[derive(Debug, Clone)]
struct PodId {
    namespace: String,
    name: String,
    uid: String,
}

impl PodId {
    fn key(&self, container: &str) -> String {
        format!("{}/{}/{}/{container}", self.namespace, self.name, self.uid)
    }
}

/// The directory of a pod (logs, pod-lifetime volumes, process records).
pub fn pod_dir(root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    root.join("pods").join(format!("{namespace}_{name}_{uid}"))
}

/// Runs the pod whose object arrives through `pod_rx` (`None` once it is
/// gone from the API) until it is deleted or `shutdown` turns true.
pub async fn run(
    shared: Arc<Shared>,
    mut pod_rx: watch::Receiver<Option<Pod>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(first) = pod_rx.borrow().clone() else {
        return;
    };
    let id = PodId {
        namespace: first.metadata.namespace.clone().unwrap_or_default(),
        name: first.metadata.name.clone().unwrap_or_default(),
        uid: first.metadata.uid.clone().unwrap_or_default(),
    };
    let mut worker = Worker::new(shared, id, &first);
    loop {
        let pod = pod_rx.borrow_and_update().clone();
        let shutting_down = *shutdown.borrow();
        match pod {
            Some(pod) if pod.metadata.deletion_timestamp.is_none() && !shutting_down => {
                worker.step(&pod).await;
                worker.report(&pod).await;
            }
            Some(pod) if !shutting_down => {
                worker.terminate(grace_for(&pod, None)).await;
                worker.remove_object(&pod).await;
                break;
            }
            Some(pod) => {
                // The agent is stopping: stop the processes, leave the pod.
                worker
                    .terminate(grace_for(&pod, Some(worker.shared.settings.shutdown_grace)))
                    .await;
                break;
            }
            None => {
                worker.terminate(Duration::from_secs(2)).await;
                break;
            }
        }
        tokio::select! {
            changed = pod_rx.changed() => {
                if changed.is_err() {
                    // The dispatcher is gone: treat like agent shutdown.
                    worker.terminate(worker.shared.settings.shutdown_grace).await;
                    break;
                }
            }
            _ = shutdown.changed() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
    worker.cleanup();
}

/// The grace period for stopping the pod's containers.
fn grace_for(pod: &Pod, cap: Option<Duration>) -> Duration {
    let seconds = pod.metadata.deletion_grace_period_seconds.or(pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds));
    let grace = seconds
        .map(|s| Duration::from_secs(u64::try_from(s.max(0)).unwrap_or(0)))
        .unwrap_or(DEFAULT_GRACE);
    cap.map_or(grace, |cap| grace.min(cap))
}

#[derive(Debug)]
struct Worker {
    shared: Arc<Shared>,
    id: PodId,
    dir: PathBuf,
    ip: Option<Ipv4Addr>,
    start_time: Timestamp,
    stage: Stage,
    next_prepare: Instant,
    runs: Vec<Run>,
    conditions: Conditions,
    message: Option<String>,
    restart_policy: String,
    last_reported: Option<serde_json::Value>,
}

impl Worker {
    fn new(shared: Arc<Shared>, id: PodId, pod: &Pod) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let runs = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| Run::new(c, true))
            .chain(spec.containers.iter().map(|c| Run::new(c, false)))
            .collect();
        let ip = shared
            .ips
            .lock()
            .map(|mut ips| ips.allocate(&id.uid))
            .ok()
            .flatten();
        let dir = pod_dir(&shared.settings.root, &id.namespace, &id.name, &id.uid);
        let mut conditions = Conditions::default();
        for condition in [
            "PodReadyToStartContainers",
            "Initialized",
            "ContainersReady",
            "Ready",
        ] {
            conditions.set(condition, false);
        }
        Self {
            shared,
            id,
            dir,
            ip,
            start_time: Timestamp::now(),
            stage: Stage::Preparing,
            next_prepare: Instant::now(),
            runs,
            conditions,
            message: None,
            restart_policy: spec.restart_policy.unwrap_or_else(|| "Always".into()),
            last_reported: None,
        }
    }

    fn context<'a>(&'a self, pod: &'a Pod) -> PodContext<'a> {
        let capacity = &self.shared.settings.capacity;
        PodContext {
            pod,
            pod_ip: self.ip.unwrap_or(Ipv4Addr::LOCALHOST),
            host_ip: Ipv4Addr::LOCALHOST,
            node_name: &self.shared.settings.node_name,
            node_cpu: parse_quantity(&capacity.cpu).unwrap_or(1.0),
            node_memory: parse_quantity(&capacity.memory).unwrap_or(1e9),
        }
    }

    fn base_env(&self, pod: &Pod) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        let mut env = vec![
            ("PATH".to_owned(), path),
            (
                "HOSTNAME".to_owned(),
                pod.metadata.name.clone().unwrap_or_default(),
            ),
            ("HOME".to_owned(), self.dir.display().to_string()),
        ];
        if let Some((host, port)) = &self.shared.settings.apiserver {
            env.push(("KUBERNETES_SERVICE_HOST".to_owned(), host.clone()));
            env.push(("KUBERNETES_SERVICE_PORT".to_owned(), port.to_string()));
        }
        env
    }

    /// Address, directories, volumes and every container's invocation.
    async fn prepare(&mut self, pod: &Pod) -> Result<(), String> {
        if self.ip.is_none() {
            return Err("no free loopback address for the pod".into());
        }
        for sub in ["logs", "processes", "volumes"] {
            let dir = self.dir.join(sub);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let ctx = self.context(pod);
        let volumes = volumes::prepare(&self.shared.client, &ctx, &self.dir).await?;
        let base = self.base_env(pod);
        let mut invocations = Vec::new();
        for run in &self.runs {
            let fail =
                |reason: &str, message: String| (run.spec.name.clone(), reason.to_owned(), message);
            let outcome = (|| {
                let mounts = Mounts::for_container(&run.spec, &volumes.dirs)
                    .map_err(|m| fail(status::CONFIG_ERROR, m))?;
                for dir in mounts.host_dirs() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        fail(
                            status::CONFIG_ERROR,
                            format!("creating {}: {e}", dir.display()),
                        )
                    })?;
                }
                let env = spec::container_env(&ctx, &run.spec, &volumes.env_sources, &base)
                    .map_err(|m| fail(status::CONFIG_ERROR, m))?;
                let image = run.spec.image.as_deref().unwrap_or_default();
                if self.shared.settings.images.resolve(image).is_none() {
                    return Err(fail(
                        status::IMAGE_NOT_MAPPED,
                        format!("image {image:?} has no binary in the image map (SKIFF_IMAGE_MAP)"),
                    ));
                }
                spec::invocation(
                    &run.spec,
                    &self.shared.settings.images,
                    &env,
                    &mounts,
                    &self.dir,
                    ctx.pod_ip,
                )
                .map_err(|m| fail(status::CONFIG_ERROR, m))
            })();
            invocations.push(outcome);
        }
        let mut first_error = None;
        for (run, outcome) in self.runs.iter_mut().zip(invocations) {
            match outcome {
                Ok(invocation) => {
                    run.view.binary = Some(invocation.program.display().to_string());
                    run.invocation = Some(invocation);
                }
                Err((name, reason, message)) => {
                    run.view.state = State::Waiting {
                        reason,
                        message: Some(message.clone()),
                    };
                    first_error.get_or_insert(format!("container {name}: {message}"));
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn start(&mut self, index: usize) {
        let key = self.id.key(&self.runs[index].spec.name);
        let log = self
            .dir
            .join("logs")
            .join(format!("{}.log", self.runs[index].spec.name));
        let record_file = self
            .dir
            .join("processes")
            .join(format!("{}.json", self.runs[index].spec.name));
        let run = &mut self.runs[index];
        let Some(invocation) = &run.invocation else {
            return;
        };
        let mut command = match mount_ns::command(invocation) {
            Ok(command) => command,
            Err(error) => {
                tracing::warn!(container = %run.spec.name, %error, "cannot start");
                run.view.state = State::Waiting {
                    reason: status::START_ERROR.into(),
                    message: Some(error),
                };
                run.restart_at = Some(Instant::now() + run.backoff);
                run.backoff = (run.backoff * 2).min(self.shared.settings.max_backoff);
                return;
            }
        };
        command
            .env_clear()
            .envs(invocation.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&invocation.working_dir);
        match process::spawn_command(&key, command, &log) {
            Ok(process) => {
                let now = (Instant::now(), Timestamp::now());
                let record = process.record().clone();
                if let Ok(json) = serde_json::to_vec(&record) {
                    let _ = std::fs::write(&record_file, json);
                }
                if let Ok(mut processes) = self.shared.processes.lock() {
                    processes.insert(key, record.clone());
                }
                tracing::info!(container = %run.spec.name, pid = record.pid, restarts = run.view.restart_count, "started");
                run.view.pid = Some(record.pid);
                run.view.state = State::Running { started_at: now.1 };
                run.started = Some(now);
                run.restart_at = None;
                run.process = Some(process);
                run.startup = run
                    .spec
                    .startup_probe
                    .as_ref()
                    .map(|p| ProbeState::new(p, now.0, false));
                run.readiness = run
                    .spec
                    .readiness_probe
                    .as_ref()
                    .map(|p| ProbeState::new(p, now.0, false));
                run.liveness = run
                    .spec
                    .liveness_probe
                    .as_ref()
                    .map(|p| ProbeState::new(p, now.0, true));
                run.view.started = run.startup.is_none();
                run.view.ready = run.readiness.is_none() && run.view.started && !run.init;
            }
            Err(error) => {
                tracing::warn!(container = %run.spec.name, %error, "cannot start");
                run.view.state = State::Waiting {
                    reason: status::START_ERROR.into(),
                    message: Some(error.to_string()),
                };
                run.restart_at = Some(Instant::now() + run.backoff);
                run.backoff = (run.backoff * 2).min(self.shared.settings.max_backoff);
            }
        }
    }

    /// Records how a run ended and schedules a restart if the policy says so.
    fn ended(&mut self, index: usize, exit: std::process::ExitStatus) {
        let policy = self.restart_policy.clone();
        let max_backoff = self.shared.settings.max_backoff;
        let key = self.id.key(&self.runs[index].spec.name);
        if let Ok(mut processes) = self.shared.processes.lock() {
            processes.remove(&key);
        }
        let run = &mut self.runs[index];
        if let Some(process) = run.process.take() {
            // Stops anything the container left running in its group.
            tokio::task::spawn_blocking(move || drop(process));
        }
        let signal = exit.signal();
        let exit_code = exit.code().unwrap_or_else(|| 128 + signal.unwrap_or(0));
        let (started_instant, started_at) = run
            .started
            .take()
            .unwrap_or((Instant::now(), Timestamp::now()));
        let terminated = Terminated {
            exit_code,
            signal,
            reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
            started_at,
            finished_at: Timestamp::now(),
        };
        tracing::info!(container = %run.spec.name, exit_code, "exited");
        run.view.pid = None;
        run.view.ready = false;
        run.view.started = false;
        run.readiness = None;
        run.liveness = None;
        run.startup = None;
        let restart = if run.init {
            exit_code != 0 && policy != "Never"
        } else {
            policy == "Always" || (policy == "OnFailure" && exit_code != 0)
        };
        if run.init && exit_code == 0 {
            run.completed = true;
        }
        if restart {
            if started_instant.elapsed() >= BACKOFF_RESET_AFTER {
                run.backoff = FIRST_BACKOFF;
            }
            run.view.restart_count += 1;
            run.view.last_state = Some(terminated);
            run.restart_at = Some(Instant::now() + run.backoff);
            run.view.state = State::Waiting {
                reason: status::CRASH_LOOP_BACK_OFF.into(),
                message: Some(format!(
                    "back-off {:?} restarting failed container {}",
                    run.backoff, run.spec.name
                )),
            };
            run.backoff = (run.backoff * 2).min(max_backoff);
        } else {
            run.view.state = State::Terminated(terminated);
        }
    }

    /// Stops one container (liveness or startup failure) and records it.
    async fn kill(&mut self, index: usize, grace: Duration, why: &str) {
        tracing::info!(container = %self.runs[index].spec.name, why, "killing");
        if let Some(mut process) = self.runs[index].process.take() {
            let stopped = tokio::task::spawn_blocking(move || {
                let _ = process.stop(grace);
                process.exited()
            })
            .await
            .ok()
            .flatten();
            // The process is gone; put a stand-in back so `ended` can run.
            let exit = stopped.unwrap_or_else(|| std::process::ExitStatus::from_raw(9));
            self.ended(index, exit);
        }
    }

    /// Checks exits, restarts and probes of container `index`.
    async fn supervise(&mut self, index: usize, pod: &Pod) {
        let now = Instant::now();
        if let Some(exit) = self.runs[index]
            .process
            .as_mut()
            .and_then(Supervised::exited)
        {
            self.ended(index, exit);
        }
        let run = &self.runs[index];
        if !run.running() {
            if run.restart_at.is_some_and(|at| now >= at) {
                self.start(index);
            }
            return;
        }
        let grace = grace_for(pod, None);
        let ip = self.ip.unwrap_or(Ipv4Addr::LOCALHOST);
        let env = self.runs[index]
            .invocation
            .as_ref()
            .map(|i| i.env.clone())
            .unwrap_or_default();
        let container = self.runs[index].spec.clone();
        // Startup probe first; the others wait until it has passed.
        if let Some((passing, due)) = self.runs[index]
            .startup
            .as_ref()
            .map(|s| (s.passing, s.due(now)))
            && !passing
        {
            if !due {
                return;
            }
            let probe = container.startup_probe.clone().unwrap_or_default();
            let outcome = probe::check(&probe, &container, ip, &env).await;
            let Some(state) = self.runs[index].startup.as_mut() else {
                return;
            };
            let change = state.record(outcome, Instant::now());
            let exhausted = state.exhausted();
            if change == Some(true) {
                let run = &mut self.runs[index];
                run.view.started = true;
                run.view.ready = run.readiness.is_none() && !run.init;
            } else if exhausted {
                self.kill(index, grace, "startup probe failed").await;
            }
            return;
        }
        if self.runs[index]
            .liveness
            .as_ref()
            .is_some_and(|s| s.due(now))
        {
            let probe = container.liveness_probe.clone().unwrap_or_default();
            let outcome = probe::check(&probe, &container, ip, &env).await;
            let Some(state) = self.runs[index].liveness.as_mut() else {
                return;
            };
            if state.record(outcome, Instant::now()) == Some(false) {
                let why = state.last_error.clone().unwrap_or_default();
                tracing::info!(container = %container.name, %why, "liveness probe failed");
                self.kill(index, grace, "liveness probe failed").await;
                return;
            }
        }
        if self.runs[index]
            .readiness
            .as_ref()
            .is_some_and(|s| s.due(now))
        {
            let probe = container.readiness_probe.clone().unwrap_or_default();
            let outcome = probe::check(&probe, &container, ip, &env).await;
            let Some(state) = self.runs[index].readiness.as_mut() else {
                return;
            };
            if let Some(ready) = state.record(outcome, Instant::now()) {
                tracing::info!(container = %container.name, ready, "readiness changed");
                self.runs[index].view.ready = ready;
            }
        }
    }

    /// One pass: prepare, run init containers in order, then supervise.
    async fn step(&mut self, pod: &Pod) {
        match self.stage {
            Stage::Preparing => {
                if Instant::now() < self.next_prepare {
                    return;
                }
                match self.prepare(pod).await {
                    Ok(()) => {
                        self.message = None;
                        self.conditions.set("PodReadyToStartContainers", true);
                        self.stage = Stage::Initializing(0);
                    }
                    Err(error) => {
                        if self.message.as_deref() != Some(error.as_str()) {
                            tracing::info!(%error, "pod not ready to start");
                        }
                        self.message = Some(error);
                        self.next_prepare = Instant::now() + PREPARE_RETRY;
                        return;
                    }
                }
                Box::pin(self.step(pod)).await;
            }
            Stage::Initializing(n) => {
                let inits: Vec<usize> = (0..self.runs.len())
                    .filter(|&i| self.runs[i].init)
                    .collect();
                let Some(&index) = inits.get(n) else {
                    self.conditions.set("Initialized", true);
                    self.stage = Stage::Running;
                    for index in 0..self.runs.len() {
                        if !self.runs[index].init {
                            self.start(index);
                        }
                    }
                    return;
                };
                if self.runs[index].completed {
                    self.stage = Stage::Initializing(n + 1);
                    return;
                }
                if !self.runs[index].running()
                    && self.runs[index].restart_at.is_none()
                    && !matches!(self.runs[index].view.state, State::Terminated(_))
                {
                    self.start(index);
                    return;
                }
                self.supervise(index, pod).await;
            }
            Stage::Running => {
                for index in 0..self.runs.len() {
                    if !self.runs[index].init {
                        self.supervise(index, pod).await;
                    }
                }
            }
        }
    }

    /// Patches the pod's status if it changed since the last report.
    async fn report(&mut self, pod: &Pod) {
        let (inits, apps): (Vec<&Run>, Vec<&Run>) = self.runs.iter().partition(|r| r.init);
        let init_views: Vec<ContainerView> = inits.iter().map(|r| r.view.clone()).collect();
        let app_views: Vec<ContainerView> = apps.iter().map(|r| r.view.clone()).collect();
        let init_failed = init_views
            .iter()
            .any(|v| matches!(&v.state, State::Terminated(t) if t.exit_code != 0));
        let all_ready = !app_views.is_empty() && app_views.iter().all(|v| v.ready);
        self.conditions.set("ContainersReady", all_ready);
        self.conditions.set("Ready", all_ready);
        let phase = if init_failed && self.restart_policy == "Never" {
            "Failed"
        } else {
            status::phase(
                &app_views,
                &self.restart_policy,
                self.stage == Stage::Running,
            )
        };
        let view = PodView {
            phase,
            pod_ip: self.ip,
            start_time: self.start_time,
            init_containers: &init_views,
            containers: &app_views,
            conditions: &self.conditions,
            message: self.message.clone(),
        };
        let body = serde_json::json!({ "status": view.status() });
        if self.last_reported.as_ref() == Some(&body) {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.id.namespace);
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match pods
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Strategic(body.clone()),
            )
            .await
        {
            Ok(_) => self.last_reported = Some(body),
            Err(error) => tracing::warn!(%error, "status patch failed; will retry"),
        }
    }

    /// Stops every container, in parallel, each with `grace`.
    async fn terminate(&mut self, grace: Duration) {
        let mut stops = Vec::new();
        for run in &mut self.runs {
            if let Some(mut process) = run.process.take() {
                let name = run.spec.name.clone();
                stops.push(tokio::task::spawn_blocking(move || {
                    if let Err(error) = process.stop(grace) {
                        tracing::error!(container = %name, %error, "could not stop");
                    }
                }));
            }
            run.view.pid = None;
        }
        for stop in stops {
            let _ = stop.await;
        }
        if let Ok(mut processes) = self.shared.processes.lock() {
            processes.retain(|key, _| !key.starts_with(&self.id.key("")));
        }
        tracing::info!(?grace, "containers stopped");
    }

    /// The kubelet's last word: delete the object for good (grace 0, same
    /// UID) once the containers are gone.
    async fn remove_object(&self, pod: &Pod) {
        let pods: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.id.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.id.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match pods.delete(name, &params).await {
            Ok(_) => tracing::info!("pod removed"),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => tracing::warn!(%error, "final pod delete failed"),
        }
    }

    /// Frees the address and the pod-lifetime volumes (logs are kept).
    fn cleanup(&self) {
        if let Ok(mut ips) = self.shared.ips.lock() {
            ips.release(&self.id.uid);
        }
        let _ = std::fs::remove_dir_all(self.dir.join("volumes"));
        let _ = std::fs::remove_dir_all(self.dir.join("processes"));
    }
}
