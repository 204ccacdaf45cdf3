//! Pod DNS names on a real control plane: StatefulSet pods behind a
//! headless Service resolve, for any process on the machine, as
//! `<pod>.<service>.<namespace>.svc.cluster.local`, the Service name as all
//! of them, and a pod's own hostname as itself; a pod that turns unready
//! leaves the Service's names (no `publishNotReadyAddresses`) and comes
//! back; a recreated pod's name follows its new address; and stopping the
//! agent takes every name out of `/etc/hosts`.
//!
//! Needs root (to edit `/etc/hosts`); skips without it, or without the
//! control plane binaries, unless `SKIFF_E2E_REQUIRE` is set.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use skiff_e2e::controlplane::Binaries;
use skiff_e2e::manifest;
use skiff_e2e::node::ImageMap;
use skiff_e2e::node::pod::pod_dir;
use support::{Harness, eventually, getent, has_block, pod_ip, ready, resolve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEST: &str = "statefulset_pods_resolve_by_dns_name_while_they_serve";
const IMAGE: &str = "skiff/e2e-workload";
const WORKLOAD: &str = env!("CARGO_BIN_EXE_skiff-e2e-workload");
const LIMIT: Duration = Duration::from_secs(90);

fn statefulset(namespace: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "dns-web", "namespace": namespace},
        "spec": {
            "serviceName": "dns-web",
            "replicas": 2,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "dns-web"}},
            "template": {
                "metadata": {"labels": {"app": "dns-web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "workload",
                        "image": IMAGE,
                        "args": ["--listen=$(POD_IP):8080", "--data-dir=/data"],
                        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                                           "periodSeconds": 1, "failureThreshold": 1},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }
            }
        }
    }))
    .expect("a valid StatefulSet")
}

/// GET /healthz through a DNS name.
async fn healthz_by_name(name: &str) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect((name, 8080)).await else {
        return false;
    };
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response.starts_with("HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_resolve_by_dns_name_while_they_serve() {
    let Some(binaries) = Binaries::for_tests(TEST).unwrap() else {
        return;
    };
    if !support::hosts_file_writable(TEST) {
        return;
    }
    let mut images = ImageMap::default();
    images.insert(IMAGE, WORKLOAD);
    let harness = Harness::start(binaries, images).await;
    assert!(harness.agent.as_ref().unwrap().hosts_file().is_some());
    let client = harness.client.clone();
    let ns = support::namespace("pod-dns");
    manifest::ensure_namespace(&client, &ns).await.unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let service = json!({"metadata": {"name": "dns-web"}, "spec": {"clusterIP": "None",
        "selector": {"app": "dns-web"}, "ports": [{"port": 8080}]}});
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(service).unwrap(),
        )
        .await
        .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &statefulset(&ns))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let listed = ListParams::default().labels("app=dns-web");
    let running = eventually("both pods Ready", LIMIT, || async {
        let mut list = pods.list(&listed).await.ok()?.items;
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        (list.len() == 2 && list.iter().all(ready)).then_some(list)
    })
    .await;

    // Each pod by its own name, through std (getaddrinfo) and getent, and
    // reachable through it; the Service name is both pods.
    let fqdn = |n: usize| format!("dns-web-{n}.dns-web.{ns}.svc.cluster.local");
    let service_name = format!("dns-web.{ns}.svc.cluster.local");
    for (n, pod) in running.iter().enumerate() {
        let ip = pod_ip(pod);
        eventually(&format!("{} resolving to {ip}", fqdn(n)), LIMIT, || async {
            resolve(&fqdn(n)).contains(&ip).then_some(())
        })
        .await;
        let getent = getent(&fqdn(n)).expect("getent finds the pod's name");
        assert!(getent.starts_with(&format!("{ip} ")), "{getent}");
        assert!(healthz_by_name(&fqdn(n)).await, "GET via {}", fqdn(n));
        let own = pod.metadata.name.clone().unwrap();
        assert!(resolve(&own).contains(&ip), "the pod's own hostname {own}");
    }
    let both: BTreeSet<_> = running.iter().map(pod_ip).collect();
    assert!(resolve(&service_name).is_superset(&both), "{service_name}");

    // dns-web-1 turns unready: without publishNotReadyAddresses it leaves
    // the endpoints, so its names go, and come back once it is Ready again.
    let unready_ip = pod_ip(&running[1]);
    let meta = &running[1].metadata;
    let marker = pod_dir(
        &harness.node_root(),
        &ns,
        meta.name.as_deref().unwrap(),
        meta.uid.as_deref().unwrap(),
    )
    .join("volumes/data/unready");
    std::fs::write(&marker, "").unwrap();
    eventually(
        "dns-web-1's name withdrawn while unready",
        LIMIT,
        || async {
            (!resolve(&fqdn(1)).contains(&unready_ip)
                && !resolve(&service_name).contains(&unready_ip))
            .then_some(())
        },
    )
    .await;
    assert!(resolve(&fqdn(0)).contains(&pod_ip(&running[0])));
    std::fs::remove_file(&marker).unwrap();
    eventually("dns-web-1's name back once Ready", LIMIT, || async {
        resolve(&fqdn(1)).contains(&unready_ip).then_some(())
    })
    .await;

    // A recreated pod gets a new address; its name follows.
    let old_ip = pod_ip(&running[0]);
    let old_uid = running[0].metadata.uid.clone().unwrap();
    pods.delete("dns-web-0", &DeleteParams::default())
        .await
        .unwrap();
    let recreated = eventually("dns-web-0 recreated and Ready", LIMIT, || async {
        let pod = pods.get_opt("dns-web-0").await.ok()??;
        (pod.metadata.uid.as_deref() != Some(old_uid.as_str()) && ready(&pod)).then_some(pod)
    })
    .await;
    let new_ip = pod_ip(&recreated);
    assert_ne!(new_ip, old_ip, "a recreated pod gets a fresh address");
    eventually(
        "dns-web-0's name moved to its new address",
        LIMIT,
        || async {
            let now = resolve(&fqdn(0));
            (now.contains(&new_ip) && !now.contains(&old_ip)).then_some(())
        },
    )
    .await;
    assert!(healthz_by_name(&fqdn(0)).await);

    // Stopping the agent takes its whole block out of /etc/hosts.
    let root = harness.node_root();
    assert!(has_block(&root));
    harness.stop().await;
    assert!(!has_block(&root), "the agent's hosts block outlived it");
    assert!(resolve(&fqdn(0)).is_empty() && resolve(&service_name).is_empty());
}

/// The drop guard cleans up too: a test that panics midway (or forgets to
/// stop) leaves no names behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_node_agent_removes_its_pod_names() {
    const TEST: &str = "dropping_the_node_agent_removes_its_pod_names";
    let Some(binaries) = Binaries::for_tests(TEST).unwrap() else {
        return;
    };
    if !support::hosts_file_writable(TEST) {
        return;
    }
    let mut images = ImageMap::default();
    images.insert(IMAGE, WORKLOAD);
    let harness = Harness::start(binaries, images).await;
    let client = harness.client.clone();
    let ns = support::namespace("pod-dns-drop");
    manifest::ensure_namespace(&client, &ns).await.unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "solo", "namespace": ns, "labels": {"app": "solo"}},
        "spec": {
            "hostname": "solo",
            "subdomain": "names",
            "containers": [{
                "name": "workload",
                "image": IMAGE,
                "args": ["--listen=$(POD_IP):8080", "--data-dir=/data"],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    }))
    .unwrap();
    // The Service comes after the pod: the name appears once both exist.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let name = format!("solo.names.{ns}.svc.cluster.local");
    let running = eventually("solo running", LIMIT, || async {
        let pod = pods.get("solo").await.ok()?;
        pod.status.as_ref()?.pod_ip.as_ref()?;
        Some(pod)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        resolve(&name).is_empty(),
        "no headless Service yet, no name"
    );
    let service = json!({"metadata": {"name": "names"}, "spec": {"clusterIP": "None",
        "publishNotReadyAddresses": true, "selector": {"app": "solo"}, "ports": [{"port": 8080}]}});
    Api::<Service>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(service).unwrap(),
        )
        .await
        .unwrap();
    let ip = pod_ip(&running);
    eventually(&format!("{name} resolving"), LIMIT, || async {
        resolve(&name).contains(&ip).then_some(())
    })
    .await;

    let root = harness.node_root();
    drop(harness);
    assert!(
        !has_block(&root),
        "the agent's hosts block outlived its drop"
    );
    assert!(resolve(&name).is_empty());
}
