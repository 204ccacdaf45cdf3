//! The node agent on a real control plane: a StatefulSet with volume claim
//! templates is scheduled to it, runs as local processes on their own
//! loopback addresses, passes HTTP readiness probes, keeps its data across
//! pod deletion, and gets SIGTERM on deletion; a crashing pod is restarted
//! per its restart policy; stopping the agent leaves no process behind.
//!
//! Skips like `tests/controlplane.rs` when the binaries are not cached and
//! `SKIFF_E2E_REQUIRE` is unset.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Service,
};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use skiff_e2e::controlplane::{Binaries, ControlPlane, ControlPlaneConfig};
use skiff_e2e::node::{ImageMap, NodeAgent, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAMESPACE: &str = "node-agent";
const IMAGE: &str = "skiff/e2e-workload";
const WORKLOAD: &str = env!("CARGO_BIN_EXE_skiff-e2e-workload");

/// Polls `check` every 200 ms until it returns `Some`, for at most `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
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

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn http_get(ip: &str, port: u16, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.starts_with("HTTP/1.1 200").then_some(response)
}

/// Pids of running workload processes (to prove nothing is left behind).
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
        .filter(|pid| {
            // Zombies have no exe link, but be explicit.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
        })
        .collect()
}

fn statefulset() -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "serviceName": "web",
            "replicas": 2,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "workload",
                        "image": format!("{IMAGE}:test"),
                        "command": ["/usr/local/bin/workload"],
                        "args": ["--listen=$(POD_IP):8080", "--data-dir=/data"],
                        "env": [
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                        ],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
                        "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                    }]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))
    .expect("a valid StatefulSet")
}

fn crashing_pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "crasher", "namespace": NAMESPACE},
        "spec": {
            "restartPolicy": "Always",
            "containers": [{
                "name": "workload",
                "image": IMAGE,
                "args": ["--listen=$(POD_IP):8080", "--data-dir=/scratch",
                         "--exit-after-ms=300", "--exit-code=3"],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]
            }],
            "volumes": [{"name": "scratch", "emptyDir": {}}]
        }
    }))
    .expect("a valid Pod")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_agent_runs_statefulset_pods_as_local_processes() {
    let Some(binaries) =
        Binaries::for_tests("node_agent_runs_statefulset_pods_as_local_processes").unwrap()
    else {
        return;
    };
    let state_dir = tempfile::tempdir().unwrap();
    let control_plane = ControlPlane::start(ControlPlaneConfig::new(state_dir.path(), binaries))
        .await
        .unwrap();
    let client = control_plane.client().await.unwrap();
    let mut images = ImageMap::default();
    images.insert(IMAGE, WORKLOAD);
    let mut config = NodeConfig::new(state_dir.path().join("node"), images);
    config.apiserver = Some(("127.0.0.1".into(), control_plane.ports().apiserver));
    let agent = NodeAgent::start(client.clone(), config).await.unwrap();

    // The node registers Ready with allocatable resources.
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get(agent.name()).await.unwrap();
    let status = node.status.unwrap();
    assert!(status.allocatable.unwrap().contains_key("pods"));
    assert!(
        status
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let service = json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "None",
        "selector": {"app": "web"}, "ports": [{"port": 8080}]}});
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(service).unwrap(),
        )
        .await
        .unwrap();
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);
    statefulsets
        .create(&PostParams::default(), &statefulset())
        .await
        .unwrap();

    // Both replicas run, each on its own loopback address, and pass their
    // readiness probes; their claims were provisioned and bound.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let web = ListParams::default().labels("app=web");
    let running = eventually("both web pods ready", Duration::from_secs(90), || async {
        let list = pods.list(&web).await.ok()?.items;
        (list.len() == 2 && list.iter().all(ready)).then_some(list)
    })
    .await;
    let ips: Vec<String> = running
        .iter()
        .map(|p| p.status.as_ref().unwrap().pod_ip.clone().unwrap())
        .collect();
    assert_ne!(ips[0], ips[1]);
    for ip in &ips {
        let ip: Ipv4Addr = ip.parse().unwrap();
        assert!(ip.is_loopback() && ip != Ipv4Addr::LOCALHOST, "{ip}");
        assert!(http_get(&ip.to_string(), 8080, "/healthz").await.is_some());
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    let claim = claims.get("data-web-0").await.unwrap();
    assert_eq!(claim.status.unwrap().phase.as_deref(), Some("Bound"));
    let volume = claim.spec.unwrap().volume_name.unwrap();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let data_dir = PathBuf::from(
        pvs.get(&volume)
            .await
            .unwrap()
            .spec
            .unwrap()
            .host_path
            .unwrap()
            .path,
    );

    // Deleting web-0 sends it SIGTERM; the StatefulSet recreates it with the
    // same claim, so the data directory keeps the first run's start line.
    let old_uid = running
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("web-0"))
        .and_then(|p| p.metadata.uid.clone())
        .unwrap();
    pods.delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    let recreated = eventually(
        "web-0 recreated and ready",
        Duration::from_secs(90),
        || async {
            let pod = pods.get_opt("web-0").await.ok()??;
            (pod.metadata.uid.as_deref() != Some(old_uid.as_str()) && ready(&pod)).then_some(pod)
        },
    )
    .await;
    let terminations = std::fs::read_to_string(data_dir.join("terminations.log")).unwrap();
    assert_eq!(terminations.trim(), "sigterm");
    let starts = std::fs::read_to_string(data_dir.join("starts.log")).unwrap();
    assert_eq!(
        starts.lines().count(),
        2,
        "one start per pod incarnation: {starts}"
    );
    let ip = recreated.status.unwrap().pod_ip.unwrap();
    let served = http_get(&ip, 8080, "/starts").await.unwrap();
    assert!(served.contains("pod=web-0"), "{served}");

    // A container that keeps exiting with code 3 is restarted (Always).
    pods.create(&PostParams::default(), &crashing_pod())
        .await
        .unwrap();
    let status = eventually(
        "crasher restarted twice",
        Duration::from_secs(60),
        || async {
            let pod = pods.get("crasher").await.ok()?;
            let status = pod.status?.container_statuses?.into_iter().next()?;
            (status.restart_count >= 2).then_some(status)
        },
    )
    .await;
    let last = status.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 3);

    // Stopping the agent stops every pod process.
    agent.stop().await;
    assert_eq!(
        workload_pids(),
        Vec::<u32>::new(),
        "workload processes left running"
    );
    control_plane.stop().await.unwrap();
}
