//! The Node object and its heartbeats: the node registers itself Ready with
//! its capacity, renews its Lease in `kube-node-lease` (which is what the
//! node-lifecycle controller watches) and refreshes its Ready condition now
//! and then.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

/// The namespace holding node leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Seconds a lease is valid; renewed every quarter of that.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// Field manager for status patches.
pub const FIELD_MANAGER: &str = "skiff-e2e-node";

/// What the node offers the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// CPU cores, e.g. "8".
    pub cpu: String,
    /// Memory, e.g. "16Gi".
    pub memory: String,
    /// Maximum number of pods.
    pub pods: u32,
    /// Ephemeral storage, e.g. "100Gi".
    pub ephemeral_storage: String,
}

impl Default for Capacity {
    /// Generous enough that scheduling never fails for lack of resources in
    /// a test, but finite so requests still mean something.
    fn default() -> Self {
        Self {
            cpu: "16".into(),
            memory: "64Gi".into(),
            pods: 250,
            ephemeral_storage: "200Gi".into(),
        }
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// The node's conditions; `transition` sets their transition time, which
/// only registration does (a refresh leaves it alone: the conditions never
/// change while the agent runs).
fn conditions(transition: bool) -> Vec<NodeCondition> {
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now()),
        last_transition_time: transition.then(now),
    };
    vec![
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "skiff-e2e node agent is posting ready status",
        ),
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "no memory pressure",
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "no disk pressure",
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "no PID pressure",
        ),
    ]
}

/// The status the node reports (see [`conditions`] for `transition`).
pub fn node_status(
    capacity: &Capacity,
    kubelet_version: &str,
    name: &str,
    transition: bool,
) -> NodeStatus {
    let resources = BTreeMap::from([
        ("cpu".to_owned(), Quantity(capacity.cpu.clone())),
        ("memory".to_owned(), Quantity(capacity.memory.clone())),
        ("pods".to_owned(), Quantity(capacity.pods.to_string())),
        (
            "ephemeral-storage".to_owned(),
            Quantity(capacity.ephemeral_storage.clone()),
        ),
    ]);
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(conditions(transition)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: "127.0.0.1".into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.into(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
            operating_system: "linux".into(),
            os_image: "skiff-e2e local processes".into(),
            kernel_version: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            kubelet_version: kubelet_version.into(),
            container_runtime_version: format!("skiff-e2e://{}", env!("CARGO_PKG_VERSION")),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            machine_id: name.into(),
            system_uuid: name.into(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// The Node object to register.
pub fn node(name: &str, capacity: &Capacity, kubelet_version: &str) -> Node {
    let arch = std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64");
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_owned(), name.to_owned()),
                ("kubernetes.io/os".to_owned(), "linux".to_owned()),
                ("kubernetes.io/arch".to_owned(), arch),
                ("skiff.dev/e2e-node".to_owned(), "true".to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(node_status(capacity, kubelet_version, name, true)),
    }
}

/// Creates the Node (replacing one of the same name left by an earlier run)
/// and sets its status, then renews the lease once.
pub async fn register(
    client: &kube::Client,
    name: &str,
    capacity: &Capacity,
    kubelet_version: &str,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = node(name, capacity, kubelet_version);
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::info!(node = name, "node already registered; taking it over");
        }
        Err(e) => return Err(e),
    }
    // A node taken over from an earlier run gets fresh conditions too.
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({ "status": node_status(capacity, kubelet_version, name, true) });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    renew_lease(client, name).await
}

/// Refreshes the node's status (conditions' heartbeat times, capacity).
pub async fn report_status(
    client: &kube::Client,
    name: &str,
    capacity: &Capacity,
    kubelet_version: &str,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch =
        serde_json::json!({ "status": node_status(capacity, kubelet_version, name, false) });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map(drop)
}

/// Creates or renews the node's Lease.
pub async fn renew_lease(client: &kube::Client, name: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(LEASE_NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };
    leases
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": lease.metadata,
                "spec": lease.spec,
            })),
        )
        .await
        .map(drop)
}
