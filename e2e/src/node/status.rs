//! Pod status as the node reports it: phase, IPs, conditions and container
//! statuses, built from the worker's view of its processes. Pure, apart
//! from reading the clock in [`Conditions::set`] when a condition flips.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Why a container is waiting (`ContainerCreating`, `CrashLoopBackOff`, …).
pub const CONTAINER_CREATING: &str = "ContainerCreating";
/// Waiting for a restart back-off to expire.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
/// The image has no binary in the image map.
pub const IMAGE_NOT_MAPPED: &str = "ErrImageNeverPull";
/// The environment could not be built (missing ConfigMap key, …).
pub const CONFIG_ERROR: &str = "CreateContainerConfigError";
/// The binary could not be started.
pub const START_ERROR: &str = "StartError";

/// How a container run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    /// Exit code (128 + signal if killed by one).
    pub exit_code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// `Completed`, `Error`, …
    pub reason: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
}

/// A container's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not running: being created, backing off, or broken.
    Waiting {
        /// Machine-readable reason.
        reason: String,
        /// Human-readable detail.
        message: Option<String>,
    },
    /// Running since `started_at`.
    Running {
        /// When the current run started.
        started_at: Timestamp,
    },
    /// Ended and not restarting (yet).
    Terminated(Terminated),
}

/// The worker's view of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// Container name.
    pub name: String,
    /// Image as written in the spec.
    pub image: String,
    /// The local binary the image mapped to, if any.
    pub binary: Option<String>,
    /// Pid of the current run.
    pub pid: Option<i32>,
    /// Current state.
    pub state: State,
    /// How the previous run ended.
    pub last_state: Option<Terminated>,
    /// Restarts so far.
    pub restart_count: i32,
    /// Passing its readiness probe (or running without one).
    pub ready: bool,
    /// Passed its startup probe (or running without one).
    pub started: bool,
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn terminated(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        started_at: Some(time(t.started_at)),
        finished_at: Some(time(t.finished_at)),
        ..ContainerStateTerminated::default()
    }
}

impl ContainerView {
    /// The API's ContainerStatus.
    pub fn status(&self) -> ContainerStatus {
        let state = match &self.state {
            State::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..ContainerState::default()
            },
            State::Running { started_at } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(*started_at)),
                }),
                ..ContainerState::default()
            },
            State::Terminated(t) => ContainerState {
                terminated: Some(terminated(t)),
                ..ContainerState::default()
            },
        };
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self
                .binary
                .as_ref()
                .map(|b| format!("skiff-e2e://{b}"))
                .unwrap_or_default(),
            container_id: self.pid.map(|pid| format!("skiff-e2e://{pid}")),
            state: Some(state),
            last_state: Some(ContainerState {
                terminated: self.last_state.as_ref().map(terminated),
                ..ContainerState::default()
            }),
            restart_count: self.restart_count,
            ready: self.ready,
            started: Some(self.started),
            ..ContainerStatus::default()
        }
    }
}

/// Pod conditions with stable transition times.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    by_type: BTreeMap<&'static str, (bool, Timestamp)>,
}

impl Conditions {
    /// Sets a condition; its transition time changes only when it flips.
    pub fn set(&mut self, type_: &'static str, value: bool) {
        match self.by_type.get(type_) {
            Some((old, _)) if *old == value => {}
            _ => {
                self.by_type.insert(type_, (value, Timestamp::now()));
            }
        }
    }

    fn to_api(&self) -> Vec<PodCondition> {
        self.by_type
            .iter()
            .map(|(type_, (value, at))| PodCondition {
                type_: (*type_).to_owned(),
                status: if *value { "True" } else { "False" }.to_owned(),
                last_transition_time: Some(time(*at)),
                ..PodCondition::default()
            })
            .collect()
    }
}

/// The pod's phase from its containers and restart policy.
pub fn phase(containers: &[ContainerView], restart_policy: &str, started: bool) -> &'static str {
    if !started {
        return "Pending";
    }
    let all_done = containers.iter().all(|c| {
        matches!(&c.state, State::Terminated(t)
            if restart_policy == "Never" || (restart_policy == "OnFailure" && t.exit_code == 0))
    });
    if !all_done || containers.is_empty() {
        return "Running";
    }
    let failed = containers
        .iter()
        .any(|c| matches!(&c.state, State::Terminated(t) if t.exit_code != 0));
    if failed { "Failed" } else { "Succeeded" }
}

/// Everything the node reports about a pod.
#[derive(Debug, Clone)]
pub struct PodView<'a> {
    /// Phase, see [`phase`].
    pub phase: &'static str,
    /// The pod's address.
    pub pod_ip: Option<Ipv4Addr>,
    /// When the node accepted the pod.
    pub start_time: Timestamp,
    /// Init containers, in order.
    pub init_containers: &'a [ContainerView],
    /// App containers.
    pub containers: &'a [ContainerView],
    /// Conditions (Initialized, ContainersReady, Ready, …).
    pub conditions: &'a Conditions,
    /// A message when the pod cannot start.
    pub message: Option<String>,
}

impl PodView<'_> {
    /// The status subresource body. Conditions the node does not own
    /// (PodScheduled) are left to a strategic merge, keyed by type.
    pub fn status(&self) -> PodStatus {
        let ips = self.pod_ip.map(|ip| ip.to_string());
        PodStatus {
            phase: Some(self.phase.to_owned()),
            host_ip: Some("127.0.0.1".to_owned()),
            host_ips: Some(vec![HostIP {
                ip: "127.0.0.1".to_owned(),
            }]),
            pod_ip: ips.clone(),
            pod_ips: ips.map(|ip| vec![PodIP { ip }]),
            start_time: Some(time(self.start_time)),
            conditions: Some(self.conditions.to_api()),
            container_statuses: Some(self.containers.iter().map(ContainerView::status).collect()),
            init_container_statuses: (!self.init_containers.is_empty()).then(|| {
                self.init_containers
                    .iter()
                    .map(ContainerView::status)
                    .collect()
            }),
            message: self.message.clone(),
            qos_class: None,
            ..PodStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: State) -> ContainerView {
        ContainerView {
            name: "c".into(),
            image: "i".into(),
            binary: None,
            pid: None,
            state,
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }

    fn exited(code: i32) -> State {
        State::Terminated(Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            started_at: Timestamp::UNIX_EPOCH,
            finished_at: Timestamp::UNIX_EPOCH,
        })
    }

    #[test]
    fn phase_table() {
        let running = State::Running {
            started_at: Timestamp::UNIX_EPOCH,
        };
        let cases = [
            (vec![exited(0)], "Never", false, "Pending"),
            (vec![running.clone()], "Always", true, "Running"),
            (vec![exited(0)], "Always", true, "Running"),
            (vec![exited(0)], "OnFailure", true, "Succeeded"),
            (vec![exited(1)], "OnFailure", true, "Running"),
            (vec![exited(0), exited(1)], "Never", true, "Failed"),
            (vec![exited(0), running], "Never", true, "Running"),
            (vec![exited(0), exited(0)], "Never", true, "Succeeded"),
        ];
        for (states, policy, started, expected) in cases {
            let containers: Vec<_> = states.into_iter().map(view).collect();
            assert_eq!(
                phase(&containers, policy, started),
                expected,
                "{policy} {containers:?}"
            );
        }
    }

    #[test]
    fn condition_times_change_only_on_flips() {
        let mut conditions = Conditions::default();
        conditions.set("Ready", false);
        let first = conditions.to_api()[0].last_transition_time.clone();
        conditions.set("Ready", false);
        assert_eq!(conditions.to_api()[0].last_transition_time, first);
        conditions.set("Ready", true);
        assert_eq!(conditions.to_api()[0].status, "True");
    }
}
