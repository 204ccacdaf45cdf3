//! The brokers' StatefulSet.
//!
//! `updateStrategy: OnDelete` (the operator decides every restart) and
//! `podManagementPolicy: Parallel` (brokers start together and find each
//! other through the headless Service). Each pod's broker id is its ordinal,
//! which the StatefulSet controller writes into the pod's
//! `apps.kubernetes.io/pod-index` label from the pod name; the downward API
//! hands it to `--node-id`, so one template serves every broker.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{DATA_VOLUME, PROPERTIES_KEY};
use super::service::port;
use super::{ClusterRef, labels};

/// Name of the broker container.
pub const CONTAINER: &str = "broker";
/// Where the data volume is mounted.
pub const DATA_MOUNT: &str = "/var/lib/skiff";
/// The broker's data directory inside the data volume.
pub const DATA_DIR: &str = "/var/lib/skiff/data";
/// Where the ConfigMap is mounted.
pub const CONFIG_MOUNT: &str = "/etc/skiff";
/// Writable scratch space (the root filesystem is read-only).
pub const TMP_MOUNT: &str = "/tmp";
/// User and group the broker runs as when the spec does not say.
pub const DEFAULT_UID: i64 = 65532;
/// Time a broker gets for a controlled shutdown after SIGTERM.
pub const TERMINATION_GRACE_SECONDS: i64 = 120;
/// Readiness path of the broker's admin endpoint.
pub const READINESS_PATH: &str = "/readyz";
/// Liveness path of the broker's admin endpoint.
pub const LIVENESS_PATH: &str = "/healthz";

const CONFIG_VOLUME: &str = "config";
const TMP_VOLUME: &str = "tmp";
/// Environment variables the command line refers to.
mod env {
    pub const POD_NAME: &str = "POD_NAME";
    pub const POD_IP: &str = "POD_IP";
    pub const POD_INDEX: &str = "POD_INDEX";
    pub const RACK: &str = "SKIFF_RACK";
}

/// What the StatefulSet needs besides the spec.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Hash of the broker properties ([`super::config_map::config_hash`]).
    pub config_hash: &'a str,
    /// Size in the volume claim template. Kubernetes forbids changing the
    /// templates of an existing StatefulSet, so this is the existing
    /// template's size once it exists (growth patches the claims instead).
    pub claim_size: &'a str,
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The host a broker advertises, with `$(VAR)` references the kubelet expands.
fn advertised_host(cluster: &ClusterRef<'_>) -> String {
    match &cluster.spec.listeners.advertised_host {
        Some(template) => template
            .replace("{pod}", &format!("$({})", env::POD_NAME))
            .replace("{ordinal}", &format!("$({})", env::POD_INDEX))
            .replace("{namespace}", &cluster.namespace),
        None => format!(
            "$({}).{}.{}.svc.cluster.local",
            env::POD_NAME,
            cluster.names.headless_service,
            cluster.namespace
        ),
    }
}

/// The broker's command-line arguments.
pub fn args(cluster: &ClusterRef<'_>) -> Vec<String> {
    let l = &cluster.spec.listeners;
    let ip = format!("$({})", env::POD_IP);
    let mut args = vec![
        format!("--node-id=$({})", env::POD_INDEX),
        format!("--data-dir={DATA_DIR}"),
        format!("--listen={ip}:{}", l.kafka_port),
        format!("--advertise={}:{}", advertised_host(cluster), l.kafka_port),
        format!("--admin-listen={ip}:{}", l.admin_port),
        format!("--controller-listen={ip}:{}", l.controller_port),
        format!("--voters={}", cluster.voters()),
        format!("--cluster-id={}", cluster.cluster_id),
        format!("--config={CONFIG_MOUNT}/{PROPERTIES_KEY}"),
    ];
    if cluster.spec.rack.is_some() {
        args.push(format!("--set=broker.rack=$({})", env::RACK));
    }
    args
}

fn http_probe(path: &str, period: i32, failures: i32, initial_delay: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port::ADMIN.to_owned()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn container(cluster: &ClusterRef<'_>) -> Container {
    let l = &cluster.spec.listeners;
    let mut env = vec![
        field_env(env::POD_NAME, "metadata.name"),
        field_env(env::POD_IP, "status.podIP"),
        field_env(
            env::POD_INDEX,
            &format!("metadata.labels['{}']", labels::POD_INDEX),
        ),
    ];
    if let Some(rack) = &cluster.spec.rack {
        env.push(field_env(
            env::RACK,
            &format!("metadata.labels['{}']", rack.topology_key),
        ));
    }
    let container_port = |name: &str, port: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    Container {
        name: CONTAINER.to_owned(),
        image: Some(cluster.spec.image()),
        args: Some(args(cluster)),
        env: Some(env),
        ports: Some(vec![
            container_port(port::KAFKA, l.kafka_port),
            container_port(port::CONTROLLER, l.controller_port),
            container_port(port::ADMIN, l.admin_port),
        ]),
        readiness_probe: Some(http_probe(READINESS_PATH, 2, 3, 0)),
        liveness_probe: Some(http_probe(LIVENESS_PATH, 10, 3, 10)),
        resources: cluster.spec.resources.clone(),
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount(DATA_VOLUME, DATA_MOUNT, false),
            mount(CONFIG_VOLUME, CONFIG_MOUNT, true),
            mount(TMP_VOLUME, TMP_MOUNT, false),
        ]),
        ..Container::default()
    }
}

fn default_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(DEFAULT_UID),
        run_as_group: Some(DEFAULT_UID),
        fs_group: Some(DEFAULT_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn pod_template(cluster: &ClusterRef<'_>, inputs: &Inputs<'_>) -> PodTemplateSpec {
    let overrides = &cluster.spec.pod_template;
    let selector = labels::selector(&cluster.names.cluster);
    let mut pod_labels = overrides.labels.clone();
    pod_labels.extend(labels::common(&cluster.names.cluster));
    pod_labels.insert(
        labels::COMPONENT.to_owned(),
        labels::COMPONENT_BROKER.to_owned(),
    );
    let mut annotations = overrides.annotations.clone();
    annotations.insert(
        labels::CONFIG_HASH.to_owned(),
        inputs.config_hash.to_owned(),
    );
    let spread = cluster.spec.rack.as_ref().map(|rack| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: rack.topology_key.clone(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }]
    });
    let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(cluster.names.service_account.clone()),
            automount_service_account_token: Some(false),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            security_context: Some(
                overrides
                    .security_context
                    .clone()
                    .unwrap_or_else(default_pod_security),
            ),
            containers: vec![container(cluster)],
            volumes: Some(vec![
                Volume {
                    name: CONFIG_VOLUME.to_owned(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: cluster.names.config_map.clone(),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: TMP_VOLUME.to_owned(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Volume::default()
                },
            ]),
            tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
            affinity: overrides.affinity.clone(),
            node_selector: non_empty(&overrides.node_selector),
            priority_class_name: overrides.priority_class_name.clone(),
            topology_spread_constraints: spread,
            ..PodSpec::default()
        }),
    }
}

fn claim_template(cluster: &ClusterRef<'_>, size: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(labels::common(&cluster.names.cluster)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: cluster.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(size.to_owned()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The StatefulSet.
pub fn build(cluster: &ClusterRef<'_>, inputs: &Inputs<'_>) -> StatefulSet {
    StatefulSet {
        metadata: cluster.metadata(&cluster.names.statefulset),
        spec: Some(StatefulSetSpec {
            replicas: Some(cluster.spec.brokers),
            service_name: Some(cluster.names.headless_service.clone()),
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(labels::selector(&cluster.names.cluster)),
                ..LabelSelector::default()
            },
            template: pod_template(cluster, inputs),
            volume_claim_templates: Some(vec![claim_template(cluster, inputs.claim_size)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture;

    fn built(extra: serde_json::Value) -> StatefulSet {
        let cluster = fixture::cluster(3, extra);
        let inputs = Inputs {
            config_hash: "feedface00000000",
            claim_size: "10Gi",
        };
        build(&ClusterRef::new(&cluster).unwrap(), &inputs)
    }

    fn pod_spec(sts: &StatefulSet) -> &PodSpec {
        sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    /// The whole object, compared with `testdata/statefulset.yaml`; run with
    /// `SKIFF_UPDATE_SNAPSHOTS=1` to rewrite it after an intended change.
    #[test]
    fn statefulset_matches_snapshot() {
        let yaml = serde_yaml::to_string(&built(serde_json::json!({}))).unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/build/testdata/statefulset.yaml");
        if std::env::var_os("SKIFF_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &yaml).unwrap();
        }
        assert_eq!(
            yaml,
            std::fs::read_to_string(&path).unwrap_or_default(),
            "{} is stale: SKIFF_UPDATE_SNAPSHOTS=1 cargo test -p skiff-operator",
            path.display()
        );
    }

    #[test]
    fn the_operator_decides_every_restart_and_pods_start_together() {
        let sts = built(serde_json::json!({}));
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(
            spec.update_strategy.as_ref().unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("prod-brokers"));
        assert_eq!(
            spec.template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[labels::CONFIG_HASH],
            "feedface00000000"
        );
    }

    #[test]
    fn command_line_gives_each_broker_its_ordinal_addresses_and_the_voters() {
        let sts = built(serde_json::json!({}));
        let c = &pod_spec(&sts).containers[0];
        assert_eq!(
            c.args.as_ref().unwrap(),
            &[
                "--node-id=$(POD_INDEX)",
                "--data-dir=/var/lib/skiff/data",
                "--listen=$(POD_IP):9092",
                "--advertise=$(POD_NAME).prod-brokers.kafka.svc.cluster.local:9092",
                "--admin-listen=$(POD_IP):9644",
                "--controller-listen=$(POD_IP):9093",
                "--voters=0@prod-0.prod-brokers.kafka.svc.cluster.local:9093,1@prod-1.prod-brokers.kafka.svc.cluster.local:9093,2@prod-2.prod-brokers.kafka.svc.cluster.local:9093",
                "--cluster-id=0b6c7a52-5b1e-4a43-9d52-2f2b1f8e6a01",
                "--config=/etc/skiff/broker.properties",
            ]
        );
        let index = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "POD_INDEX")
            .unwrap();
        assert_eq!(
            index
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.labels['apps.kubernetes.io/pod-index']"
        );
    }

    #[test]
    fn probes_security_and_volumes() {
        let sts = built(serde_json::json!({}));
        let pod = pod_spec(&sts);
        let c = &pod.containers[0];
        let path = |p: &Option<Probe>| p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone();
        assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
        assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_user,
            Some(65532)
        );
        let mounts: Vec<_> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert_eq!(
            mounts,
            [
                ("data", "/var/lib/skiff"),
                ("config", "/etc/skiff"),
                ("tmp", "/tmp")
            ]
        );
        let claim = &sts
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .as_ref()
            .unwrap()[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("data"));
        assert_eq!(
            claim
                .spec
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"],
            Quantity("10Gi".into())
        );
    }

    #[test]
    fn overrides_rack_and_listeners_reach_the_pod() {
        let sts = built(serde_json::json!({
            "rack": {"topologyKey": "topology.kubernetes.io/zone"},
            "listeners": {"advertisedHost": "{pod}.kafka.example.com", "kafkaPort": 9094},
            "storage": {"size": "10Gi", "storageClassName": "fast"},
            "podTemplate": {
                "annotations": {"a": "b"},
                "labels": {"team": "x", "app.kubernetes.io/name": "mine"},
                "priorityClassName": "high",
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "securityContext": {"runAsUser": 1000}
            }
        }));
        let spec = sts.spec.as_ref().unwrap();
        let meta = spec.template.metadata.as_ref().unwrap();
        let pod_labels = meta.labels.as_ref().unwrap();
        assert_eq!(pod_labels["team"], "x");
        assert_eq!(
            pod_labels["app.kubernetes.io/name"], "skiff-broker",
            "operator labels win"
        );
        assert_eq!(meta.annotations.as_ref().unwrap()["a"], "b");
        let pod = pod_spec(&sts);
        assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
        assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1);
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_user,
            Some(1000)
        );
        let spread = &pod.topology_spread_constraints.as_ref().unwrap()[0];
        assert_eq!(spread.topology_key, "topology.kubernetes.io/zone");
        let args = pod.containers[0].args.as_ref().unwrap();
        assert!(args.contains(&"--advertise=$(POD_NAME).kafka.example.com:9094".to_owned()));
        assert!(args.contains(&"--set=broker.rack=$(SKIFF_RACK)".to_owned()));
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        assert_eq!(
            claim.spec.as_ref().unwrap().storage_class_name.as_deref(),
            Some("fast")
        );
    }
}
