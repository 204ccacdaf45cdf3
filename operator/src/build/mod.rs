//! Pure builders of the objects a `Cluster` owns: StatefulSet, headless and
//! client Services, ConfigMap, PodDisruptionBudget, ServiceAccount.
//!
//! Pure: a [`ClusterRef`] (and what was observed, passed in) goes in, a
//! complete object comes out, with a deterministic name, the operator's
//! labels and an owner reference. No API calls, no clocks.

pub mod config_map;
pub mod labels;
pub mod names;
pub mod pdb;
pub mod service;
pub mod service_account;
pub mod statefulset;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::{Cluster, ClusterSpec};
pub use names::Names;

/// Why objects cannot be built for a Cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The Cluster has no name, namespace or uid (it was not read from the API).
    #[error("Cluster {0:?} has no {1}: it must come from the API server")]
    Incomplete(String, &'static str),
}

/// A Cluster with what every builder needs: its spec, names, namespace,
/// owner reference and cluster id.
#[derive(Debug, Clone)]
pub struct ClusterRef<'a> {
    /// The spec.
    pub spec: &'a ClusterSpec,
    /// Object names derived from the Cluster's name.
    pub names: Names,
    /// The namespace of the Cluster and of everything it owns.
    pub namespace: String,
    /// Controller owner reference to the Cluster.
    pub owner: OwnerReference,
    /// The id the brokers' data directories are bound to.
    pub cluster_id: String,
    /// Number of metadata-quorum voters (brokers `0..voters`).
    pub voters: i32,
}

impl<'a> ClusterRef<'a> {
    /// The view of `cluster` the builders use.
    pub fn new(cluster: &'a Cluster) -> Result<Self, BuildError> {
        let name = cluster.name_any();
        let namespace = cluster
            .namespace()
            .ok_or_else(|| BuildError::Incomplete(name.clone(), "namespace"))?;
        let uid = cluster
            .uid()
            .ok_or_else(|| BuildError::Incomplete(name.clone(), "uid"))?;
        let owner = cluster
            .controller_owner_ref(&())
            .ok_or_else(|| BuildError::Incomplete(name.clone(), "uid"))?;
        Ok(Self {
            voters: initial_voters(cluster.spec.brokers),
            spec: &cluster.spec,
            cluster_id: cluster.spec.cluster_id.clone().unwrap_or(uid),
            names: Names::new(&name),
            namespace,
            owner,
        })
    }

    /// Metadata of an owned object called `name`, with the cluster's labels.
    pub fn metadata(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels::common(&self.names.cluster)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// Keeps the voter set of a running cluster (`voters` parsed from its
    /// StatefulSet): the quorum is not reconfigured by changing a flag, so a
    /// scale-up adds brokers, never voters.
    pub fn with_existing_voters(mut self, voters: Option<i32>) -> Self {
        if let Some(v) = voters.filter(|v| *v >= 1) {
            self.voters = v;
        }
        self
    }

    /// Broker ids that vote in the metadata quorum.
    pub fn voter_ids(&self) -> std::ops::Range<i32> {
        0..self.voters
    }

    /// `--voters`: `ID@HOST:PORT,…` over the voters' stable DNS names.
    pub fn voters(&self) -> String {
        self.voter_ids()
            .map(|id| {
                format!(
                    "{id}@{}:{}",
                    self.names.pod_fqdn(id, &self.namespace),
                    self.spec.listeners.controller_port
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Voters of a new cluster: the first min(3, brokers) brokers.
pub fn initial_voters(brokers: i32) -> i32 {
    brokers.clamp(1, 3)
}

/// The number of voters in a `--voters=ID@HOST:PORT,…` argument.
pub fn voters_in_args(args: &[String]) -> Option<i32> {
    let list = args.iter().find_map(|a| a.strip_prefix("--voters="))?;
    i32::try_from(list.split(',').filter(|v| !v.is_empty()).count()).ok()
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A Cluster as the API server returns it, for the builders' tests.
    use crate::crd::{Cluster, ClusterSpec};

    /// `prod` in namespace `kafka` with `brokers` brokers and `extra` merged into the spec.
    pub fn cluster(brokers: i32, extra: serde_json::Value) -> Cluster {
        let mut spec = serde_json::json!({"brokers": brokers, "storage": {"size": "10Gi"}});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        let spec: ClusterSpec = serde_json::from_value(spec).unwrap();
        let mut cluster = Cluster::new("prod", spec);
        cluster.metadata.namespace = Some("kafka".into());
        cluster.metadata.uid = Some("0b6c7a52-5b1e-4a43-9d52-2f2b1f8e6a01".into());
        cluster.metadata.generation = Some(1);
        cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_are_the_first_three_brokers_by_dns_name() {
        let cases = [
            (1, "0@prod-0.prod-brokers.kafka.svc.cluster.local:9093"),
            (
                2,
                "0@prod-0.prod-brokers.kafka.svc.cluster.local:9093,1@prod-1.prod-brokers.kafka.svc.cluster.local:9093",
            ),
            (
                5,
                "0@prod-0.prod-brokers.kafka.svc.cluster.local:9093,1@prod-1.prod-brokers.kafka.svc.cluster.local:9093,2@prod-2.prod-brokers.kafka.svc.cluster.local:9093",
            ),
        ];
        for (brokers, voters) in cases {
            let cluster = fixture::cluster(brokers, serde_json::json!({}));
            assert_eq!(
                ClusterRef::new(&cluster).unwrap().voters(),
                voters,
                "{brokers} brokers"
            );
        }
    }

    #[test]
    fn a_running_cluster_keeps_its_voters_when_it_grows() {
        let cluster = fixture::cluster(5, serde_json::json!({}));
        let c = ClusterRef::new(&cluster)
            .unwrap()
            .with_existing_voters(Some(1));
        assert_eq!(
            c.voters(),
            "0@prod-0.prod-brokers.kafka.svc.cluster.local:9093"
        );
        let args = vec!["--node-id=1".to_owned(), format!("--voters={}", c.voters())];
        assert_eq!(voters_in_args(&args), Some(1));
        assert_eq!(
            voters_in_args(&["--voters=0@a:1,1@b:1,2@c:1".to_owned()]),
            Some(3)
        );
        assert_eq!(voters_in_args(&[]), None);
        let fresh = ClusterRef::new(&cluster)
            .unwrap()
            .with_existing_voters(None);
        assert_eq!(fresh.voter_ids(), 0..3);
    }

    #[test]
    fn cluster_id_is_the_uid_unless_the_spec_adopts_one() {
        let cluster = fixture::cluster(1, serde_json::json!({}));
        assert_eq!(
            ClusterRef::new(&cluster).unwrap().cluster_id,
            "0b6c7a52-5b1e-4a43-9d52-2f2b1f8e6a01"
        );
        let adopted = fixture::cluster(1, serde_json::json!({"clusterId": "old"}));
        assert_eq!(ClusterRef::new(&adopted).unwrap().cluster_id, "old");
        let mut no_uid = cluster.clone();
        no_uid.metadata.uid = None;
        assert!(ClusterRef::new(&no_uid).is_err());
    }

    #[test]
    fn owned_objects_point_at_the_cluster_as_controller() {
        let cluster = fixture::cluster(1, serde_json::json!({}));
        let meta = ClusterRef::new(&cluster).unwrap().metadata("x");
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("Cluster", "prod", Some(true))
        );
        assert_eq!(owner.api_version, "skiff.dev/v1alpha1");
    }
}
