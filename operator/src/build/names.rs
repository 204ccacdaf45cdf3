//! Deterministic names of everything a Cluster owns, from its name.

/// Names of a Cluster's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The Cluster.
    pub cluster: String,
    /// StatefulSet (pods are `<statefulset>-<ordinal>`).
    pub statefulset: String,
    /// Headless Service giving each broker a stable DNS name.
    pub headless_service: String,
    /// Client (bootstrap) Service.
    pub client_service: String,
    /// ConfigMap with the broker properties.
    pub config_map: String,
    /// PodDisruptionBudget.
    pub pdb: String,
    /// ServiceAccount of the broker pods.
    pub service_account: String,
}

/// Name of the volume claim template (claims are `<this>-<pod>`).
pub const DATA_VOLUME: &str = "data";
/// Key of the properties file in the ConfigMap.
pub const PROPERTIES_KEY: &str = "broker.properties";

impl Names {
    /// Names for the Cluster `cluster`.
    pub fn new(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            statefulset: cluster.to_owned(),
            headless_service: format!("{cluster}-brokers"),
            client_service: format!("{cluster}-bootstrap"),
            config_map: format!("{cluster}-config"),
            pdb: cluster.to_owned(),
            service_account: format!("{cluster}-broker"),
        }
    }

    /// Pod of broker `ordinal`.
    pub fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.statefulset)
    }

    /// The ordinal of a pod of this StatefulSet, from its name.
    pub fn ordinal_of(&self, pod: &str) -> Option<i32> {
        pod.strip_prefix(&self.statefulset)?
            .strip_prefix('-')?
            .parse()
            .ok()
            .filter(|n: &i32| *n >= 0)
    }

    /// Claim of broker `ordinal`'s data volume.
    pub fn claim(&self, ordinal: i32) -> String {
        format!("{DATA_VOLUME}-{}", self.pod(ordinal))
    }

    /// Stable DNS name of broker `ordinal` behind the headless Service.
    pub fn pod_fqdn(&self, ordinal: i32, namespace: &str) -> String {
        format!(
            "{}.{}.{namespace}.svc.cluster.local",
            self.pod(ordinal),
            self.headless_service
        )
    }

    /// DNS name of the client Service.
    pub fn bootstrap_fqdn(&self, namespace: &str) -> String {
        format!("{}.{namespace}.svc.cluster.local", self.client_service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_cluster_name() {
        let n = Names::new("prod");
        assert_eq!(
            [
                &n.statefulset,
                &n.headless_service,
                &n.client_service,
                &n.config_map,
                &n.pdb,
                &n.service_account
            ],
            [
                "prod",
                "prod-brokers",
                "prod-bootstrap",
                "prod-config",
                "prod",
                "prod-broker"
            ]
        );
        assert_eq!(n.pod(2), "prod-2");
        assert_eq!(n.claim(2), "data-prod-2");
        assert_eq!(
            n.pod_fqdn(0, "kafka"),
            "prod-0.prod-brokers.kafka.svc.cluster.local"
        );
    }

    #[test]
    fn ordinals_come_back_from_pod_names() {
        let n = Names::new("prod");
        assert_eq!(n.ordinal_of("prod-0"), Some(0));
        assert_eq!(n.ordinal_of("prod-12"), Some(12));
        for other in ["prod", "prod-", "prod-x", "prodx-1", "other-1", "prod--1"] {
            assert_eq!(n.ordinal_of(other), None, "{other}");
        }
    }
}
