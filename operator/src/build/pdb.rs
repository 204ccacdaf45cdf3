//! The PodDisruptionBudget: voluntary evictions take one broker at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ClusterRef, labels};

/// The PodDisruptionBudget (`maxUnavailable: 1`).
pub fn build(cluster: &ClusterRef<'_>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: cluster.metadata(&cluster.names.pdb),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(&cluster.names.cluster)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture;

    #[test]
    fn one_broker_at_a_time() {
        let cluster = fixture::cluster(3, serde_json::json!({}));
        let pdb = build(&ClusterRef::new(&cluster).unwrap());
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap(),
            labels::selector("prod")
        );
    }
}
