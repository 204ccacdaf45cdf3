//! The custom resources of group `skiff.dev`, version `v1alpha1`, and what
//! belongs to their schema: broker config keys, storage quantities, status
//! conditions.

pub mod broker_config;
pub mod cluster;
pub mod condition;
pub mod quantity;
pub mod topic;

pub use cluster::{Cluster, ClusterSpec, ClusterStatus};
pub use topic::{Topic, TopicSpec, TopicStatus};

/// API group of the resources.
pub const GROUP: &str = "skiff.dev";
/// API version of the resources.
pub const VERSION: &str = "v1alpha1";

/// File names under `crds/` and their YAML, as `crdgen` writes them.
pub fn generated() -> Vec<(&'static str, String)> {
    use kube::CustomResourceExt;
    let header = "# Generated from operator/src/crd by `make crds` (operator/src/bin/crdgen.rs). Do not edit.\n";
    let yaml = |crd| {
        serde_yaml::to_string(&crd)
            .map(|y| format!("{header}{y}"))
            .unwrap_or_else(|e| format!("# cannot serialize: {e}\n"))
    };
    vec![
        ("skiff.dev_clusters.yaml", yaml(Cluster::crd())),
        ("skiff.dev_topics.yaml", yaml(Topic::crd())),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn committed_crds_are_what_the_types_generate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
        for (file, yaml) in super::generated() {
            let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(
                committed == yaml,
                "crds/{file} differs from what the types generate; run `make crds`"
            );
        }
    }
}
