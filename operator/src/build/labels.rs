//! Labels and annotations the operator puts on what it builds.

use std::collections::BTreeMap;

/// `app.kubernetes.io/name`.
pub const NAME: &str = "app.kubernetes.io/name";
/// Value of [`NAME`] on everything of a broker cluster.
pub const NAME_VALUE: &str = "skiff-broker";
/// `app.kubernetes.io/instance`: the Cluster's name.
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Value of [`COMPONENT`] on broker pods.
pub const COMPONENT_BROKER: &str = "broker";
/// `app.kubernetes.io/managed-by`.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "skiff-operator";
/// The pod ordinal, set by the StatefulSet controller (Kubernetes ≥ 1.28).
pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";
/// The StatefulSet revision a pod was created from.
pub const REVISION: &str = "controller-revision-hash";
/// Pod-template annotation: hash of the broker properties, so a config
/// change is a new revision.
pub const CONFIG_HASH: &str = "skiff.dev/config-hash";

/// Labels selecting the broker pods of `cluster`.
pub fn selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_owned(), NAME_VALUE.to_owned()),
        (INSTANCE.to_owned(), cluster.to_owned()),
    ])
}

/// Labels of every object of `cluster`.
pub fn common(cluster: &str) -> BTreeMap<String, String> {
    let mut labels = selector(cluster);
    labels.insert(MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned());
    labels
}

/// Label selector text (`k=v,k=v`) for listing the broker pods of `cluster`.
pub fn selector_text(cluster: &str) -> String {
    selector(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
