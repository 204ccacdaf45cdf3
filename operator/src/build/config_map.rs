//! The ConfigMap holding every broker's `broker.properties` (the settings read
//! at start-up), and its hash. Dynamic settings are not in it: the brokers
//! take them from their metadata quorum, where the operator sets them
//! (`plan::dynamic_config`), so changing one restarts nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::ClusterRef;
use super::names::PROPERTIES_KEY;
use crate::crd::ClusterSpec;
use crate::crd::broker_config::{THROTTLE_RATE_KEY, is_dynamic};

/// Every broker setting a Cluster makes: `spec.config`, and the replication
/// throttle of `spec.rebalance`.
pub fn broker_settings(spec: &ClusterSpec) -> BTreeMap<String, String> {
    let mut settings = spec.config.clone();
    if let Some(rate) = spec.rebalance.throttle_bytes_per_second {
        settings.insert(THROTTLE_RATE_KEY.to_owned(), rate.to_string());
    }
    settings
}

/// The settings a broker reads at start-up: the ConfigMap's, and its hash's
/// (a change rolls the brokers).
pub fn startup_settings(spec: &ClusterSpec) -> BTreeMap<String, String> {
    let mut settings = broker_settings(spec);
    settings.retain(|k, _| !is_dynamic(k));
    settings
}

/// The settings the brokers take while running, as cluster-wide defaults.
pub fn dynamic_settings(spec: &ClusterSpec) -> BTreeMap<String, String> {
    let mut settings = broker_settings(spec);
    settings.retain(|k, _| is_dynamic(k));
    settings
}

/// `config` as a Java properties file: sorted keys, values escaped, so the
/// same spec always gives the same bytes (and the same hash).
pub fn properties(config: &BTreeMap<String, String>) -> String {
    // The header stays as it was when only spec.config was written: a new
    // header would change every Cluster's hash and roll its brokers.
    let mut out = String::from("# Written by skiff-operator from Cluster.spec.config\n");
    for (key, value) in config {
        out.push_str(&escape(key, true));
        out.push('=');
        out.push_str(&escape(value, false));
        out.push('\n');
    }
    out
}

fn escape(text: &str, is_key: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '=' | ':' if is_key => {
                out.push('\\');
                out.push(c);
            }
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            '#' | '!' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A stable 64-bit FNV-1a hash of `text` in hex. It detects change (it goes
/// into the pod template); it is not a security boundary.
pub fn hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The ConfigMap.
pub fn build(cluster: &ClusterRef<'_>) -> ConfigMap {
    ConfigMap {
        metadata: cluster.metadata(&cluster.names.config_map),
        data: Some(BTreeMap::from([(
            PROPERTIES_KEY.to_owned(),
            properties(&startup_settings(cluster.spec)),
        )])),
        ..ConfigMap::default()
    }
}

/// The hash of the ConfigMap's properties, for the pod template.
pub fn config_hash(cluster: &ClusterRef<'_>) -> String {
    hash(&properties(&startup_settings(cluster.spec)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixture;

    #[test]
    fn properties_are_sorted_and_escaped() {
        let config = BTreeMap::from([
            ("log.retention.ms".to_owned(), "1000".to_owned()),
            ("broker.weird".to_owned(), " lead\\ing\nx".to_owned()),
            ("a=b".to_owned(), "#c".to_owned()),
        ]);
        assert_eq!(
            properties(&config),
            "# Written by skiff-operator from Cluster.spec.config\n\
             a\\=b=\\#c\n\
             broker.weird=\\ lead\\\\ing\\nx\n\
             log.retention.ms=1000\n"
        );
    }

    #[test]
    fn hash_is_stable_and_changes_with_startup_config_only() {
        assert_eq!(hash(""), "cbf29ce484222325");
        assert_eq!(hash("a"), "af63dc4c8601ec8c");
        let cluster =
            |config: serde_json::Value| fixture::cluster(3, serde_json::json!({"config": config}));
        let a = cluster(serde_json::json!({"offsets.retention.minutes": "1"}));
        let b = cluster(serde_json::json!({"offsets.retention.minutes": "2"}));
        let (a, b) = (ClusterRef::new(&a).unwrap(), ClusterRef::new(&b).unwrap());
        assert_ne!(config_hash(&a), config_hash(&b));
        assert_eq!(config_hash(&a), config_hash(&a.clone()));
        // Dynamic settings change neither the hash nor the file.
        let c =
            cluster(serde_json::json!({"offsets.retention.minutes": "1", "log.retention.ms": "5"}));
        let c = ClusterRef::new(&c).unwrap();
        assert_eq!(config_hash(&a), config_hash(&c));
        assert_eq!(build(&a), build(&c));
        assert_eq!(
            dynamic_settings(c.spec),
            BTreeMap::from([("log.retention.ms".to_owned(), "5".to_owned())])
        );
    }

    #[test]
    fn the_rebalance_throttle_is_a_dynamic_setting_and_rolls_nothing() {
        let set = |rate: i64| {
            fixture::cluster(
                3,
                serde_json::json!({
                    "config": {"log.retention.ms": "1", "offsets.retention.minutes": "9"},
                    "rebalance": {"throttleBytesPerSecond": rate},
                }),
            )
        };
        let (a, b) = (set(2_000_000), set(3_000_000));
        let (a, b) = (ClusterRef::new(&a).unwrap(), ClusterRef::new(&b).unwrap());
        assert_eq!(
            properties(&startup_settings(a.spec)),
            "# Written by skiff-operator from Cluster.spec.config\n\
             offsets.retention.minutes=9\n"
        );
        assert_eq!(config_hash(&a), config_hash(&b));
        assert_eq!(
            dynamic_settings(b.spec),
            BTreeMap::from([
                (
                    "follower.replication.throttled.rate".to_owned(),
                    "3000000".to_owned()
                ),
                ("log.retention.ms".to_owned(), "1".to_owned()),
            ])
        );
    }

    #[test]
    fn config_map_carries_the_properties_under_its_name() {
        let cluster = fixture::cluster(
            3,
            serde_json::json!({"config": {"offsets.topic.replication.factor": "2"}}),
        );
        let cm = build(&ClusterRef::new(&cluster).unwrap());
        assert_eq!(cm.metadata.name.as_deref(), Some("prod-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("kafka"));
        assert!(
            cm.data.unwrap()[PROPERTIES_KEY].ends_with("\noffsets.topic.replication.factor=2\n")
        );
    }
}
