//! Shared by the e2e tests that run pods: a control plane with an
//! in-process node agent (dropped in the right order), bounded polling, and
//! name resolution the way any process on the machine does it.

#![allow(dead_code, unreachable_pub)] // each test crate uses its own subset

use std::collections::BTreeSet;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

pub mod chart;
pub mod cluster_ops;
pub mod operator;
pub mod resources;
pub mod traffic;

use k8s_openapi::api::core::v1::Pod;
use skiff_e2e::controlplane::{Binaries, ControlPlane, ControlPlaneConfig, binaries};
use skiff_e2e::node::dns::{HostsFile, SYSTEM_HOSTS_FILE};
use skiff_e2e::node::{ImageMap, NodeAgent, NodeConfig};

/// Polls `check` every 200 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the pod's Ready condition is True.
pub fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's address.
pub fn pod_ip(pod: &Pod) -> IpAddr {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .expect("the pod has an address")
        .parse()
        .expect("a valid address")
}

/// A namespace of this test run. The hosts file is shared by every harness
/// on the machine, so two runs of one test at once (two terminals, two
/// checkouts) must not publish the same DNS names.
pub fn namespace(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// The addresses `name` resolves to through the C library, as every client
/// on the machine resolves it (files first, per nsswitch.conf).
pub fn resolve(name: &str) -> BTreeSet<IpAddr> {
    (name, 0)
        .to_socket_addrs()
        .map(|addrs| addrs.map(|a| a.ip()).collect())
        .unwrap_or_default()
}

/// `getent hosts <name>`'s output, if it found the name.
pub fn getent(name: &str) -> Option<String> {
    let output = std::process::Command::new("getent")
        .args(["hosts", name])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Prints the skip notice past the test harness's capture.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Whether the test can prove DNS names: `/etc/hosts` must be writable (as
/// root). Without it the test skips, or fails under `SKIFF_E2E_REQUIRE`.
pub fn hosts_file_writable(test: &str) -> bool {
    if HostsFile::new(SYSTEM_HOSTS_FILE).writable() {
        return true;
    }
    let why = format!("{SYSTEM_HOSTS_FILE} is not writable (pod DNS names need root)");
    assert!(!binaries::require_e2e(), "{test}: {why}");
    skip(test, &why);
    false
}

/// A control plane and a node agent in this process. Dropping it stops
/// the agent (pods, then its hosts block) before the control plane.
pub struct Harness {
    pub agent: Option<NodeAgent>,
    pub control_plane: Option<ControlPlane>,
    pub client: kube::Client,
    pub state_dir: tempfile::TempDir,
}

impl Harness {
    /// Starts both, the agent with `images`.
    pub async fn start(binaries: Binaries, images: ImageMap) -> Self {
        let state_dir = tempfile::tempdir().expect("a temporary state directory");
        let control_plane =
            ControlPlane::start(ControlPlaneConfig::new(state_dir.path(), binaries))
                .await
                .expect("the control plane starts");
        let client = control_plane.client().await.expect("an admin client");
        let mut config = NodeConfig::new(state_dir.path().join("node"), images);
        config.apiserver = Some(("127.0.0.1".into(), control_plane.ports().apiserver));
        config.hosts_file = Some(SYSTEM_HOSTS_FILE.into());
        let agent = NodeAgent::start(client.clone(), config)
            .await
            .expect("the node agent starts");
        Self {
            agent: Some(agent),
            control_plane: Some(control_plane),
            client,
            state_dir,
        }
    }

    /// The node agent's root.
    pub fn node_root(&self) -> std::path::PathBuf {
        self.state_dir.path().join("node")
    }

    /// Stops the agent, then the control plane, reporting failures.
    pub async fn stop(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.stop().await;
        }
        if let Some(control_plane) = self.control_plane.take() {
            control_plane
                .stop()
                .await
                .expect("the control plane stops cleanly");
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.agent.take());
        drop(self.control_plane.take());
    }
}

/// Whether the hosts file holds a skiff-e2e block for the node at `root`.
pub fn has_block(root: &Path) -> bool {
    let key = std::path::absolute(root)
        .expect("an absolute path")
        .display()
        .to_string();
    let text = std::fs::read_to_string(SYSTEM_HOSTS_FILE).expect("/etc/hosts is readable");
    skiff_e2e::node::hosts::blocks(&text)
        .iter()
        .any(|b| b.key == key)
}

/// `skiff-operator`, built by cargo in the profile of the tests (`sibling`,
/// a binary of the same build, is no longer needed to find it).
pub fn operator_binary(_sibling: &Path) -> std::path::PathBuf {
    skiff_e2e::chart::operator_binary(skiff_e2e::broker_image::Profile::Debug)
        .expect("building skiff-operator")
}

/// Bound on one kcat run.
const KCAT_LIMIT: Duration = Duration::from_secs(60);

/// Runs kcat with `args`, feeding it `input`; its stdout, or a panic with
/// its stderr.
pub async fn kcat(args: &[&str], input: &str) -> String {
    let mut child = tokio::process::Command::new("kcat")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kcat runs");
    let mut stdin = child.stdin.take().expect("a piped stdin");
    stdin
        .write_all(input.as_bytes())
        .await
        .expect("kcat reads its input");
    drop(stdin);
    let output = tokio::time::timeout(KCAT_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kcat {args:?} did not finish within {KCAT_LIMIT:?}"))
        .expect("kcat's output");
    assert!(
        output.status.success(),
        "kcat {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("kcat prints UTF-8 here")
}
