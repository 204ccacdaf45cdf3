//! The e2e control plane: it starts from the cached binaries, serves the
//! Kubernetes API with working controllers, reports the pinned version, and
//! stops without leaving a process behind — through `stop`, through the drop
//! guard, and through the `skiff-e2e up --detach` / `down` CLI.
//!
//! Each test skips (saying so on stderr) when the binaries are not cached
//! and `SKIFF_E2E_REQUIRE` is unset. CI sets `SKIFF_E2E_REQUIRE=1`, which
//! builds missing binaries with `e2e/controlplane/build.sh` and turns any
//! failure into a test failure.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use skiff_e2e::controlplane::process::{self, GroupRecord};
use skiff_e2e::controlplane::{self, Binaries, ControlPlane, ControlPlaneConfig, binaries};

fn named<T: Default>(name: &str, build: impl FnOnce(ObjectMeta) -> T) -> T {
    build(ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    })
}

fn assert_all_gone(components: &[GroupRecord]) {
    assert_eq!(
        components.len(),
        4,
        "etcd, apiserver, controller-manager, scheduler"
    );
    for component in components {
        assert!(
            !process::recorded_alive(component),
            "{} (pid {}) is still running",
            component.name,
            component.pid
        );
    }
}

#[tokio::test]
async fn control_plane_starts_and_serves_api() {
    let Some(binaries) = Binaries::for_tests("control_plane_starts_and_serves_api").unwrap() else {
        return;
    };
    let state_dir = tempfile::tempdir().unwrap();
    let control_plane = ControlPlane::start(ControlPlaneConfig::new(state_dir.path(), binaries))
        .await
        .unwrap();
    let client = control_plane.client().await.unwrap();

    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, binaries::kubernetes_version());

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &named("scenario", |metadata| Namespace {
                metadata,
                ..Namespace::default()
            }),
        )
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "scenario");
    let data = BTreeMap::from([("min.insync.replicas".to_owned(), "2".to_owned())]);
    config_maps
        .create(
            &PostParams::default(),
            &named("broker-config", |metadata| ConfigMap {
                metadata,
                data: Some(data.clone()),
                ..ConfigMap::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        config_maps.get("broker-config").await.unwrap().data,
        Some(data)
    );

    // The root-CA publisher (a controller-manager controller) copies the CA
    // into every new namespace: the controllers act on what we create.
    let deadline = Instant::now() + Duration::from_secs(60);
    while config_maps
        .get_opt("kube-root-ca.crt")
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "kube-root-ca.crt never appeared in the new namespace"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let components = control_plane.state(false).components;
    control_plane.stop().await.unwrap();
    assert_all_gone(&components);
}

#[tokio::test]
async fn dropping_the_control_plane_stops_every_component() {
    let Some(binaries) =
        Binaries::for_tests("dropping_the_control_plane_stops_every_component").unwrap()
    else {
        return;
    };
    let state_dir = tempfile::tempdir().unwrap();
    let control_plane = ControlPlane::start(ControlPlaneConfig::new(state_dir.path(), binaries))
        .await
        .unwrap();
    let components = control_plane.state(false).components;
    drop(control_plane);
    assert_all_gone(&components);
}

/// `up --detach` leaves a usable control plane behind and `down` removes it;
/// a second `up` into the same state directory is refused while it runs.
#[tokio::test]
async fn cli_up_detach_then_down_leaves_nothing_running() {
    if Binaries::for_tests("cli_up_detach_then_down_leaves_nothing_running")
        .unwrap()
        .is_none()
    {
        return;
    }
    let state_dir = tempfile::tempdir().unwrap();
    let cli = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_skiff-e2e"));
        command.arg("--state-dir").arg(state_dir.path());
        command
    };

    let up = cli()
        .args(["up", "--detach", "--no-build"])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "up failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let kubeconfig = String::from_utf8(up.stdout).unwrap();
    assert_eq!(
        kubeconfig.trim(),
        state_dir.path().join("kubeconfig").to_str().unwrap()
    );

    let client = controlplane::client_for(kubeconfig.trim().as_ref())
        .await
        .unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, binaries::kubernetes_version());

    let status = cli().arg("status").output().unwrap();
    assert!(
        status.status.success(),
        "status: {}",
        String::from_utf8_lossy(&status.stdout)
    );

    let again = cli()
        .args(["up", "--detach", "--no-build"])
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "a second up into a live state dir must fail"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("still running"));

    let state = controlplane::State::load(&state_dir.path().join("controlplane.json"))
        .unwrap()
        .unwrap();
    let down = cli().args(["down", "--grace", "10"]).output().unwrap();
    assert!(
        down.status.success(),
        "down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_all_gone(&state.components);

    let status = cli().arg("status").output().unwrap();
    assert!(
        !status.status.success(),
        "status after down reports nothing running"
    );
}
