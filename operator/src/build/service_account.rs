//! The broker pods' ServiceAccount (no roles: brokers never call the API).

use k8s_openapi::api::core::v1::ServiceAccount;

use super::ClusterRef;

/// The ServiceAccount; its token is not mounted.
pub fn build(cluster: &ClusterRef<'_>) -> ServiceAccount {
    ServiceAccount {
        metadata: cluster.metadata(&cluster.names.service_account),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture;

    #[test]
    fn service_account_does_not_mount_a_token() {
        let cluster = fixture::cluster(1, serde_json::json!({}));
        let sa = build(&ClusterRef::new(&cluster).unwrap());
        assert_eq!(sa.metadata.name.as_deref(), Some("prod-broker"));
        assert_eq!(sa.automount_service_account_token, Some(false));
    }
}
