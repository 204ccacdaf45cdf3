//! The faults tests inject through the harness: "kill the node" (every pod
//! process SIGKILLed at once and the agent silent) and "lose a disk" (a
//! claim's directory emptied while its volume stays bound).
//!
//! Skips like `tests/controlplane.rs` when the binaries are not cached and
//! `SKIFF_E2E_REQUIRE` is unset.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use skiff_e2e::controlplane::{Binaries, ControlPlane, ControlPlaneConfig};
use skiff_e2e::node::provisioner::{lose_disk, volume_root};
use skiff_e2e::node::{ImageMap, NodeAgent, NodeConfig};

const NAMESPACE: &str = "node-faults";
const IMAGE: &str = "skiff/e2e-workload";
const WORKLOAD: &str = env!("CARGO_BIN_EXE_skiff-e2e-workload");

fn workload_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn workload_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe == std::path::Path::new(WORKLOAD))
        })
        .filter(|pid| workload_running(*pid))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_sigkills_its_pods_and_losing_a_disk_empties_the_claim() {
    let Some(binaries) = Binaries::for_tests(
        "killing_the_node_sigkills_its_pods_and_losing_a_disk_empties_the_claim",
    )
    .unwrap() else {
        return;
    };
    let state_dir = tempfile::tempdir().unwrap();
    let control_plane = ControlPlane::start(ControlPlaneConfig::new(state_dir.path(), binaries))
        .await
        .unwrap();
    let client = control_plane.client().await.unwrap();
    let mut images = ImageMap::default();
    images.insert(IMAGE, WORKLOAD);
    let node_root = state_dir.path().join("node");
    let mut config = NodeConfig::new(&node_root, images);
    config.apiserver = Some(("127.0.0.1".into(), control_plane.ports().apiserver));
    let agent = NodeAgent::start(client.clone(), config).await.unwrap();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap(),
        )
        .await
        .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    let claim = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let claim = claims
        .create(
            &PostParams::default(),
            &serde_json::from_value(claim).unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod = json!({
        "metadata": {"name": "victim"},
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "workload", "image": IMAGE,
                "args": ["--listen=$(POD_IP):8080", "--data-dir=/data"],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
        }
    });
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(90);
    let pids = loop {
        let pids = workload_pids();
        let running = pods
            .get("victim")
            .await
            .ok()
            .and_then(|p| p.status?.phase)
            .is_some_and(|p| p == "Running");
        if running && !pids.is_empty() {
            break pids;
        }
        assert!(Instant::now() < deadline, "the pod never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Lose the disk: the claim's directory is emptied but stays in place.
    let uid = claim.metadata.uid.clone().unwrap();
    let dir = volume_root(&node_root).join(format!("pvc-{uid}"));
    std::fs::write(dir.join("marker"), b"before the loss").unwrap();
    lose_disk(&node_root, &uid).unwrap();
    assert!(dir.is_dir());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "the claim's directory is empty"
    );

    // Kill the node: with a 30 s grace period, only SIGKILL ends the pod this fast.
    let killed = Instant::now();
    agent.kill();
    assert!(killed.elapsed() < Duration::from_secs(5));
    for pid in pids {
        assert!(
            !workload_running(pid),
            "pod process {pid} survived the node's death"
        );
    }
    // The pod object stays bound to the dead node, as with a real crash.
    assert!(pods.get("victim").await.is_ok());
    control_plane.stop().await.unwrap();
}
