//! `make up` / `make down` through the CLI they run: `skiff-e2e
//! local-cluster` leaves a machine with its own cluster alone (and says how
//! to install the chart there), and otherwise installs the operator from its
//! Helm chart in the background, applies the example Cluster and Topic and
//! prints kcat commands that work as printed; `skiff-e2e down` then leaves
//! no process (broker or operator) and no DNS name behind, even after the
//! node agent was killed outright.
//!
//! The second test needs the control plane binaries, kcat and root; it
//! skips without them unless `SKIFF_E2E_REQUIRE` is set.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use skiff_e2e::controlplane::{self, Binaries, binaries};
use support::{has_block, resolve};

const CLI: &str = env!("CARGO_BIN_EXE_skiff-e2e");

fn cli(state_dir: &Path) -> Command {
    let mut command = Command::new(CLI);
    command.arg("--state-dir").arg(state_dir);
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Command lines of running processes that mention `path` (the brokers'
/// data directories live under the state directory).
fn processes_mentioning(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .filter(|c| c.contains(&needle))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn local_cluster_leaves_a_machine_with_its_own_cluster_alone() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("real-cluster");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: prod\n\
         contexts: [{name: prod, context: {cluster: prod, user: admin}}]\n\
         clusters: [{name: prod, cluster: {server: 'https://prod.example:6443'}}]\n\
         users: [{name: admin, user: {}}]\n",
    )
    .unwrap();
    let state_dir = dir.path().join("state");
    let output = cli(&state_dir)
        .arg("local-cluster")
        .env("KUBECONFIG", &kubeconfig)
        // Would make the test fail loudly if anything tried to build.
        .env("CARGO", "/nonexistent/cargo")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("https://prod.example:6443"), "{stderr}");
    assert!(
        stderr.contains("helm install skiff-operator ") && stderr.contains("charts/skiff-operator"),
        "{stderr}"
    );
    assert!(!state_dir.exists(), "nothing was started");
    assert_eq!(
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .lines()
            .count(),
        6,
        "the kubeconfig is untouched"
    );
}

#[test]
fn local_cluster_runs_brokers_whose_printed_kcat_commands_work_until_down() {
    const TEST: &str = "local_cluster_runs_brokers_whose_printed_kcat_commands_work_until_down";
    if Binaries::for_tests(TEST).unwrap().is_none() || !support::hosts_file_writable(TEST) {
        return;
    }
    if Command::new("kcat").arg("-V").output().is_err() {
        assert!(!binaries::require_e2e(), "{TEST}: kcat is not installed");
        support::skip(TEST, "kcat is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let namespace = support::namespace("local-cluster");
    // Whatever happens below, stop what was started.
    struct Down<'a>(&'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = cli(self.0).args(["down", "--grace", "10"]).output();
        }
    }
    let _down = Down(&state_dir);

    let operator_namespace = support::namespace("local-cluster-system");
    let local_cluster = [
        "local-cluster",
        "--debug",
        "--namespace",
        &namespace,
        "--operator-namespace",
        &operator_namespace,
    ];
    let up = cli(&state_dir)
        .args(local_cluster)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", text(&up));
    let printed = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(printed.contains("demo: 3/3 brokers Ready"), "{printed}");
    assert!(printed.contains("orders: Ready"), "{printed}");
    assert!(
        printed.contains("2 replicas; leader skiff-operator-"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "export KUBECONFIG={}",
            state_dir.join("kubeconfig").display()
        )),
        "{printed}"
    );
    let command = |prefix: &str| {
        printed
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{printed}"))
            .to_owned()
    };
    let broker_name = format!("demo-0.demo-brokers.{namespace}.svc.cluster.local");
    let produce = command("echo hello | kcat -P");
    assert!(produce.contains(&broker_name), "{produce}");
    let consume = command("kcat -C");

    // The commands exactly as printed (bounded: kcat's metadata timeout).
    let shell = |line: &str| {
        Command::new("bash")
            .args([
                "-c",
                &format!("timeout 60 {}", line.replacen("kcat", "kcat -m 15", 1)),
            ])
            .output()
            .unwrap()
    };
    let produced = shell(&produce);
    assert!(produced.status.success(), "{}", text(&produced));
    let consumed = shell(&consume);
    assert!(consumed.status.success(), "{}", text(&consumed));
    assert_eq!(String::from_utf8_lossy(&consumed.stdout).trim(), "hello");

    // The kubectl command printed works with that KUBECONFIG.
    let kubectl = command(&format!("{}", Binaries::cached().kubectl.display()));
    let pods = Command::new("bash")
        .args(["-c", &format!("timeout 60 {kubectl}")])
        .env("KUBECONFIG", state_dir.join("kubeconfig"))
        .output()
        .unwrap();
    assert!(pods.status.success(), "{}", text(&pods));
    let listing = String::from_utf8_lossy(&pods.stdout);
    assert_eq!(listing.matches("Running").count(), 3, "{listing}");

    // A second `make up` reuses what runs.
    let again = cli(&state_dir)
        .args(local_cluster)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already running"));

    // Every pod process the agent started (the operator's too), by pid.
    let pod_processes: Vec<controlplane::process::GroupRecord> =
        std::fs::read_dir(state_dir.join("node/pods"))
            .unwrap()
            .filter_map(|e| e.ok())
            .flat_map(|pod| std::fs::read_dir(pod.path().join("processes")).unwrap())
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .filter_map(|json| serde_json::from_slice(&json).ok())
            .collect();
    assert!(pod_processes.len() >= 5, "{pod_processes:?}");
    let state = controlplane::State::load(&state_dir.join("controlplane.json"))
        .unwrap()
        .unwrap();
    // The node agent dies without cleaning up (SIGKILL): its names stay
    // until `down`, which also stops the brokers it left running.
    let agent = state
        .components
        .iter()
        .find(|c| c.name == controlplane::names::NODE_AGENT)
        .expect("a node agent component");
    let pid = rustix::process::Pid::from_raw(agent.pid).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while controlplane::process::alive(agent.pid, agent.start_time) {
        assert!(std::time::Instant::now() < deadline, "SIGKILL did not take");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        has_block(&state_dir.join("node")),
        "a killed agent cannot clean up"
    );
    assert!(
        !processes_mentioning(&state_dir).is_empty(),
        "brokers outlive their agent"
    );
    let down = cli(&state_dir)
        .args(["down", "--grace", "10"])
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", text(&down));
    for component in &state.components {
        assert!(
            !controlplane::process::recorded_alive(component),
            "{} still running",
            component.name
        );
    }
    assert!(
        !has_block(&state_dir.join("node")),
        "names left in /etc/hosts"
    );
    let leftovers = processes_mentioning(&state_dir);
    assert!(leftovers.is_empty(), "still running: {leftovers:?}");
    for process in &pod_processes {
        assert!(
            !controlplane::process::recorded_alive(process),
            "{} still running",
            process.name
        );
    }
    assert!(resolve(&broker_name).is_empty());
}
