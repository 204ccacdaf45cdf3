//! The `Cluster` resource (`skiff.dev/v1alpha1`, short name `skc`): a set of
//! brokers and how to run them. Admission rules (OpenAPI bounds and CEL
//! `x-kubernetes-validations`) live on the types so `crds/` carries them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, PodSecurityContext, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::broker_config;

/// Longest Cluster name: it prefixes pod names (`<name>-<ordinal>`), whose
/// `controller-revision-hash` label must stay within 63 characters.
pub const MAX_NAME_LENGTH: usize = 45;

/// Default Kafka listener port.
pub const DEFAULT_KAFKA_PORT: i32 = 9092;
/// Default metadata-quorum (controller) port.
pub const DEFAULT_CONTROLLER_PORT: i32 = 9093;
/// Default HTTP admin port (`/healthz`, `/readyz`, `/metrics`, `/v1/…`).
pub const DEFAULT_ADMIN_PORT: i32 = 9644;
/// Annotation that asks for a rebalance in `manual` mode (honoured while present).
pub const REBALANCE_ANNOTATION: &str = "skiff.dev/rebalance";
/// Default grace period before a not-Ready broker's replicas move elsewhere.
pub const DEFAULT_REPLACE_AFTER: &str = "10m";

/// Spec of a Skiff cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "skiff.dev",
    version = "v1alpha1",
    kind = "Cluster",
    plural = "clusters",
    namespaced,
    shortname = "skc",
    status = "ClusterStatus",
    doc = "A Skiff cluster: Kafka-compatible brokers run as a StatefulSet.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Brokers","type":"string","description":"ready/desired","jsonPath":".status.brokersReady"}"#,
    printcolumn = r#"{"name":"URP","type":"integer","description":"under-replicated partitions","jsonPath":".status.underReplicatedPartitions"}"#,
    printcolumn = r#"{"name":"Operation","type":"string","jsonPath":".status.operation"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 45").message("metadata.name must be at most 45 characters: it names the broker pods and Services")
)]
#[x_kube(
    validation = Rule::new("!has(self.image) || !has(self.version)").message("set image or version, not both"),
    validation = Rule::new("!has(self.config) || !('min.insync.replicas' in self.config) || (self.config['min.insync.replicas'].matches('^[0-9]{1,9}$') && int(self.config['min.insync.replicas']) <= self.brokers)").message("config min.insync.replicas must be a whole number no greater than brokers"),
    validation = Rule::new("has(self.clusterId) == has(oldSelf.clusterId) && (!has(self.clusterId) || self.clusterId == oldSelf.clusterId)").message("clusterId is immutable: the brokers' data directories are bound to it")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Number of brokers (pods). Broker ids are the pod ordinals 0..brokers-1.
    #[schemars(range(min = 1, max = 1000))]
    pub brokers: i32,
    /// Broker container image. Defaults to `skiff/broker:<version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Skiff version: the tag of the default image. Defaults to the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub version: Option<String>,
    /// CPU and memory of each broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Each broker's persistent volume.
    pub storage: StorageSpec,
    /// Kafka broker settings by their Kafka names (e.g. `log.retention.ms`). Only keys the
    /// broker knows. Topic defaults (`log.*`, `message.max.bytes`, `min.insync.replicas`,
    /// `unclean.leader.election.enable`) are applied to the running brokers as cluster-wide
    /// dynamic settings, without a restart; every other key is written to the brokers'
    /// properties file and a change restarts them one at a time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "broker_config::config_map_schema")]
    #[x_kube(validation = broker_config::cluster_config_rule())]
    pub config: BTreeMap<String, String>,
    /// Rack awareness: spread brokers over this node label and tell each broker its rack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackSpec>,
    /// Ports and advertised addresses.
    #[serde(default)]
    pub listeners: ListenersSpec,
    /// How replicas are rebalanced across brokers.
    #[serde(default)]
    pub rebalance: RebalanceSpec,
    /// What happens to a broker that stays down.
    #[serde(default)]
    pub failure_recovery: FailureRecoverySpec,
    /// Overrides for the broker pods.
    #[serde(default)]
    pub pod_template: PodTemplateOverrides,
    /// Cluster id the brokers' data is bound to; defaults to this object's uid.
    /// Set it only to adopt the volumes of an earlier Cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub cluster_id: Option<String>,
}

/// A broker's persistent volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0").message("storage.size may not shrink"),
    validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("storage.storageClassName is immutable")
)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each broker's claim (a quantity such as `100Gi`). It may grow
    /// (the claims are expanded) but never shrink.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("storage.size must be a positive quantity such as 10Gi"))]
    pub size: String,
    /// StorageClass of the claims; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Delete a broker's claim when the broker is removed by a scale-down
    /// (claims of a deleted Cluster are always kept).
    #[serde(default)]
    pub delete_claim: bool,
}

/// Rack awareness.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RackSpec {
    /// Node label whose value is a broker's rack, e.g. `topology.kubernetes.io/zone`.
    #[schemars(length(min = 1, max = 316))]
    pub topology_key: String,
}

/// Listener ports and the address each broker advertises.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.kafkaPort != self.adminPort && self.kafkaPort != self.controllerPort && self.adminPort != self.controllerPort").message("listeners: kafkaPort, adminPort and controllerPort must differ"),
    validation = Rule::new("self.controllerPort == oldSelf.controllerPort").message("listeners.controllerPort is immutable: it is part of the metadata quorum's voter addresses")
)]
#[serde(rename_all = "camelCase")]
pub struct ListenersSpec {
    /// Kafka protocol port.
    #[serde(default = "default_kafka_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub kafka_port: i32,
    /// Metadata-quorum port between brokers.
    #[serde(default = "default_controller_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub controller_port: i32,
    /// HTTP admin port (health, readiness, metrics, restart safety, drain).
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: i32,
    /// Host each broker advertises to clients, with `{pod}`, `{ordinal}` and
    /// `{namespace}` filled in. Defaults to the pod's stable DNS name behind
    /// the headless Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub advertised_host: Option<String>,
}

impl Default for ListenersSpec {
    fn default() -> Self {
        Self {
            kafka_port: DEFAULT_KAFKA_PORT,
            controller_port: DEFAULT_CONTROLLER_PORT,
            admin_port: DEFAULT_ADMIN_PORT,
            advertised_host: None,
        }
    }
}

fn default_kafka_port() -> i32 {
    DEFAULT_KAFKA_PORT
}
fn default_controller_port() -> i32 {
    DEFAULT_CONTROLLER_PORT
}
fn default_admin_port() -> i32 {
    DEFAULT_ADMIN_PORT
}

/// When rebalancing runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RebalanceMode {
    /// Whenever imbalance passes the threshold.
    Auto,
    /// Only when the Cluster is annotated `skiff.dev/rebalance`. (Brokers
    /// that hold no replica, after a scale-up or a failure recovery, are
    /// filled in either mode.)
    #[default]
    Manual,
}

/// Replica rebalancing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceSpec {
    /// `auto` or `manual`.
    #[serde(default)]
    pub mode: RebalanceMode,
    /// Replication throttle while moving replicas, in bytes per second per broker; unthrottled when unset.
    /// Set on the running brokers as the cluster-wide dynamic `follower.replication.throttled.rate`
    /// (no restart): it slows only replicas a reassignment is adding, until they are in sync,
    /// never in-sync replication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub throttle_bytes_per_second: Option<i64>,
    /// Most partition moves in flight at once.
    #[serde(default = "default_max_moves")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_moves_in_flight: i32,
    /// Imbalance (percent above the mean, per broker) that triggers `auto` mode.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub imbalance_threshold_percent: i32,
}

impl Default for RebalanceSpec {
    fn default() -> Self {
        Self {
            mode: RebalanceMode::default(),
            throttle_bytes_per_second: None,
            max_moves_in_flight: default_max_moves(),
            imbalance_threshold_percent: default_threshold(),
        }
    }
}

fn default_max_moves() -> i32 {
    4
}
fn default_threshold() -> i32 {
    10
}

/// Replacing brokers that stay down.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailureRecoverySpec {
    /// How long a broker may be not Ready before its replicas are re-created
    /// on other brokers (a duration such as `10m` or `1h30m`).
    #[serde(default = "default_replace_after")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("failureRecovery.replaceAfter must be a positive duration such as 10m"))]
    pub replace_after: kube::core::Duration,
}

impl Default for FailureRecoverySpec {
    fn default() -> Self {
        Self {
            replace_after: default_replace_after(),
        }
    }
}

fn default_replace_after() -> kube::core::Duration {
    // A constant that parses; the unit test below proves it.
    DEFAULT_REPLACE_AFTER
        .parse()
        .unwrap_or_else(|_| std::time::Duration::from_secs(600).into())
}

/// Overrides merged into the broker pod template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra pod labels (the operator's own labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Pod tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Pod affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Priority class of the broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Pod security context, replacing the operator's default (non-root, uid 65532).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
}

/// Observed state of a Skiff cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The operation under way (`Creating`, `RollingRestart`, `Idle`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Progress of a long operation, e.g. `restarted 1/3 brokers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// The cluster id the brokers run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Ready brokers over desired brokers, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers_ready: Option<String>,
    /// Number of Ready brokers.
    #[serde(default)]
    pub ready_brokers: i32,
    /// Partitions with fewer in-sync replicas than replicas.
    #[serde(default)]
    pub under_replicated_partitions: i32,
    /// Partitions without a leader.
    #[serde(default)]
    pub offline_partitions: i32,
    /// Every broker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<BrokerStatus>,
}

/// One broker as the operator last saw it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// Broker id (the pod ordinal).
    pub id: i32,
    /// Pod name.
    pub pod: String,
    /// Whether the pod is Ready.
    pub ready: bool,
    /// Whether the pod runs the current pod template.
    #[serde(default)]
    pub up_to_date: bool,
    /// The broker's own state from `/v1/status` (e.g. `running`, `draining`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Partitions replicated on this broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Partitions this broker leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaders: Option<i32>,
    /// Under-replicated partitions this broker leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_replicated: Option<i32>,
}

impl ClusterSpec {
    /// The broker image: `image`, else `skiff/broker:<version>`, else the operator's version.
    pub fn image(&self) -> String {
        match (&self.image, &self.version) {
            (Some(image), _) => image.clone(),
            (None, Some(version)) => format!("{DEFAULT_IMAGE_REPOSITORY}:{version}"),
            (None, None) => format!("{DEFAULT_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Repository of the default broker image.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "skiff/broker";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_a_minimal_spec() {
        let spec: ClusterSpec =
            serde_json::from_value(serde_json::json!({"brokers": 3, "storage": {"size": "1Gi"}}))
                .unwrap();
        assert_eq!(spec.listeners, ListenersSpec::default());
        assert_eq!(spec.rebalance.max_moves_in_flight, 4);
        assert_eq!(
            spec.failure_recovery.replace_after,
            std::time::Duration::from_secs(600)
        );
        assert_eq!(
            spec.image(),
            format!("skiff/broker:{}", env!("CARGO_PKG_VERSION"))
        );
        assert!(!spec.storage.delete_claim);
    }

    #[test]
    fn the_default_replace_after_parses() {
        assert!(
            DEFAULT_REPLACE_AFTER
                .parse::<kube::core::Duration>()
                .is_ok()
        );
    }

    #[test]
    fn image_comes_from_image_or_version() {
        let mut spec: ClusterSpec = serde_json::from_value(
            serde_json::json!({"brokers": 1, "storage": {"size": "1Gi"}, "version": "0.2.0"}),
        )
        .unwrap();
        assert_eq!(spec.image(), "skiff/broker:0.2.0");
        spec.image = Some("registry.example/skiff:x".into());
        assert_eq!(spec.image(), "registry.example/skiff:x");
    }
}
