//! Command lines of the control plane components: pure functions from
//! addresses and file paths to arguments, so they are easy to read and test.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::pki::{FRONT_PROXY_CLIENT, Pki};

/// The service address range; its first address is the `kubernetes` Service.
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/16";
/// The address of the `kubernetes` Service in [`SERVICE_CLUSTER_IP_RANGE`].
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// Issuer of service-account tokens (what a real cluster would use).
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Name of the single etcd member.
const ETCD_NAME: &str = "skiff-e2e";

/// Loopback ports of every component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    /// etcd clients (plain HTTP).
    pub etcd_client: u16,
    /// etcd peers (unused by a single member, but etcd must listen).
    pub etcd_peer: u16,
    /// kube-apiserver (HTTPS).
    pub apiserver: u16,
    /// kube-controller-manager health and metrics (HTTPS).
    pub controller_manager: u16,
    /// kube-scheduler health and metrics (HTTPS).
    pub scheduler: u16,
}

impl Ports {
    /// URL clients use to reach the apiserver.
    pub fn apiserver_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver)
    }

    /// URL of etcd's client endpoint.
    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_client)
    }
}

fn flag(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

fn path(name: &str, value: &Path) -> String {
    flag(name, value.display())
}

/// etcd: one member on loopback, fsync off (a test cluster does not need to
/// survive power loss, and fsync on a shared CI disk dominates latency).
pub fn etcd_args(ports: &Ports, data_dir: &Path) -> Vec<String> {
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        flag("name", ETCD_NAME),
        path("data-dir", data_dir),
        flag("listen-client-urls", ports.etcd_url()),
        flag("advertise-client-urls", ports.etcd_url()),
        flag("listen-peer-urls", &peer),
        flag("initial-advertise-peer-urls", &peer),
        flag("initial-cluster", format!("{ETCD_NAME}={peer}")),
        flag("initial-cluster-state", "new"),
        flag("unsafe-no-fsync", true),
        flag("log-level", "warn"),
    ]
}

/// kube-apiserver with the authentication and authorization of a real
/// cluster (client certificates, service-account tokens, Node and RBAC).
pub fn apiserver_args(ports: &Ports, pki: &Pki, cert_dir: &Path) -> Vec<String> {
    vec![
        flag("etcd-servers", ports.etcd_url()),
        flag("bind-address", "127.0.0.1"),
        flag("advertise-address", "127.0.0.1"),
        flag("secure-port", ports.apiserver),
        path("cert-dir", cert_dir),
        path("tls-cert-file", &pki.serving_cert),
        path("tls-private-key-file", &pki.serving_key),
        path("client-ca-file", &pki.ca_cert),
        flag("authorization-mode", "Node,RBAC"),
        flag("service-cluster-ip-range", SERVICE_CLUSTER_IP_RANGE),
        flag("service-account-issuer", SERVICE_ACCOUNT_ISSUER),
        path("service-account-key-file", &pki.service_account_pub),
        path("service-account-signing-key-file", &pki.service_account_key),
        // Nothing would answer on 127.0.0.1 for the `kubernetes` Service's
        // endpoints; and a single apiserver needs no reconciliation.
        flag("endpoint-reconciler-type", "none"),
        flag("allow-privileged", true),
        flag("profiling", false),
        // The aggregation layer, as in a kubeadm cluster; without it every
        // component logs that the request-header CA bundle is missing.
        path("requestheader-client-ca-file", &pki.front_proxy_ca_cert),
        flag("requestheader-allowed-names", FRONT_PROXY_CLIENT),
        flag("requestheader-username-headers", "X-Remote-User"),
        flag("requestheader-group-headers", "X-Remote-Group"),
        flag("requestheader-extra-headers-prefix", "X-Remote-Extra-"),
        path("proxy-client-cert-file", &pki.front_proxy_client_cert),
        path("proxy-client-key-file", &pki.front_proxy_client_key),
    ]
}

/// Flags shared by the controller-manager and the scheduler: their identity,
/// delegated authentication/authorization for their own HTTPS endpoint, and
/// no leader election (there is one of each).
fn component_common_args(kubeconfig: &Path, port: u16, pki: &Pki) -> Vec<String> {
    vec![
        path("kubeconfig", kubeconfig),
        path("authentication-kubeconfig", kubeconfig),
        path("authorization-kubeconfig", kubeconfig),
        flag("bind-address", "127.0.0.1"),
        flag("secure-port", port),
        path("tls-cert-file", &pki.serving_cert),
        path("tls-private-key-file", &pki.serving_key),
        path("client-ca-file", &pki.ca_cert),
        flag("leader-elect", false),
        flag("profiling", false),
    ]
}

/// kube-controller-manager running every default controller (statefulset,
/// garbage collector, PV binder, PVC/PV protection, namespace, service
/// accounts and their tokens, disruption, endpoints, endpointslices,
/// replicaset, deployment, …), each with its own service-account credentials.
pub fn controller_manager_args(ports: &Ports, pki: &Pki) -> Vec<String> {
    let mut args = component_common_args(
        &pki.controller_manager.kubeconfig,
        ports.controller_manager,
        pki,
    );
    args.extend([
        flag("controllers", "*"),
        flag("use-service-account-credentials", true),
        path("service-account-private-key-file", &pki.service_account_key),
        path("root-ca-file", &pki.ca_cert),
        path("cluster-signing-cert-file", &pki.ca_cert),
        path("cluster-signing-key-file", &pki.ca_key),
        flag("service-cluster-ip-range", SERVICE_CLUSTER_IP_RANGE),
    ]);
    args
}

/// kube-scheduler with the default profile.
pub fn scheduler_args(ports: &Ports, pki: &Pki) -> Vec<String> {
    component_common_args(&pki.scheduler.kubeconfig, ports.scheduler, pki)
}

/// Layout of a state directory.
#[derive(Debug, Clone)]
pub struct StateLayout {
    /// The state directory itself.
    pub root: PathBuf,
}

impl StateLayout {
    /// Keys, certificates and component kubeconfigs.
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    /// etcd's data.
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd-data")
    }
    /// The apiserver's `--cert-dir`.
    pub fn apiserver_certs(&self) -> PathBuf {
        self.root.join("apiserver")
    }
    /// One `<component>.log` per component.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Log file of a component.
    pub fn log(&self, component: &str) -> PathBuf {
        self.logs().join(format!("{component}.log"))
    }
    /// The admin kubeconfig handed to users and tests.
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    /// The node agent's root (pod directories, provisioned volumes).
    pub fn node_root(&self) -> PathBuf {
        self.root.join("node")
    }
    /// What `up` started, for `down` and `status`.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("controlplane.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Ports {
        Ports {
            etcd_client: 1,
            etcd_peer: 2,
            apiserver: 3,
            controller_manager: 4,
            scheduler: 5,
        }
    }

    #[test]
    fn everything_listens_on_loopback_only() {
        let args = etcd_args(&ports(), Path::new("/d"));
        assert!(args.contains(&"--listen-client-urls=http://127.0.0.1:1".to_owned()));
        assert!(args.contains(&"--listen-peer-urls=http://127.0.0.1:2".to_owned()));
        for arg in &args {
            if arg.contains("://") {
                assert!(arg.contains("://127.0.0.1:"), "{arg}");
            }
        }
    }

    #[test]
    fn apiserver_uses_real_authorization_and_service_account_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(
            dir.path(),
            "https://127.0.0.1:3",
            KUBERNETES_SERVICE_IP.into(),
        )
        .unwrap();
        let args = apiserver_args(&ports(), &pki, Path::new("/c"));
        for expected in [
            "--authorization-mode=Node,RBAC",
            "--endpoint-reconciler-type=none",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--secure-port=3",
            "--etcd-servers=http://127.0.0.1:1",
        ] {
            assert!(
                args.contains(&expected.to_owned()),
                "{expected} missing from {args:?}"
            );
        }
        let cm = controller_manager_args(&ports(), &pki);
        assert!(cm.contains(&"--use-service-account-credentials=true".to_owned()));
        assert!(cm.contains(&"--leader-elect=false".to_owned()));
        assert!(scheduler_args(&ports(), &pki).contains(&"--secure-port=5".to_owned()));
    }
}
