//! The configuration keys the broker understands, so `Cluster.spec.config`
//! and `Topic.spec.config` can be checked at admission and by the operator.
//!
//! The operator does not link the broker crate (it would pull the whole
//! storage engine into the operator's build); the lists are kept here and a
//! unit test reads the broker's source (`broker/src/config/{broker,topic}.rs`)
//! and fails when they drift apart.

use kube::core::{Message, Rule};

/// Every key of the broker's `BROKER_CONFIGS`, in its order.
pub const BROKER_CONFIG_KEYS: &[&str] = &[
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "delete.topic.enable",
    "log.retention.ms",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "log.segment.bytes",
    "log.roll.ms",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.preallocate",
    "log.cleanup.policy",
    "message.max.bytes",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "socket.request.max.bytes",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "offsets.topic.segment.bytes",
    "offsets.retention.minutes",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "producer.id.expiration.ms",
    "replica.lag.time.max.ms",
    "follower.replication.throttled.rate",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "leader.imbalance.check.interval.seconds",
    "broker.rack",
    "skiff.ack.durability",
];

/// Every key of the broker's `TOPIC_CONFIGS`, in its order.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "segment.index.bytes",
    "index.interval.bytes",
    "flush.messages",
    "flush.ms",
    "preallocate",
    "cleanup.policy",
    "max.message.bytes",
    "min.insync.replicas",
    "unclean.leader.election.enable",
];

/// The broker's replication throttle for moved replicas, which the operator
/// sets from `spec.rebalance.throttleBytesPerSecond`.
pub const THROTTLE_RATE_KEY: &str = "follower.replication.throttled.rate";

/// Broker keys the broker takes while it runs (dynamic broker settings, kept
/// in its metadata quorum): the topic defaults and the replication throttle.
/// The operator sets them as cluster-wide defaults through the Kafka API, so
/// changing one restarts nothing; every other key is read at start-up.
pub const DYNAMIC_BROKER_KEYS: &[&str] = &[
    "log.retention.ms",
    "log.retention.bytes",
    "log.segment.bytes",
    "log.roll.ms",
    "log.index.size.max.bytes",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.preallocate",
    "log.cleanup.policy",
    "message.max.bytes",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    THROTTLE_RATE_KEY,
];

/// Whether the broker takes `key` while it runs (see [`DYNAMIC_BROKER_KEYS`]).
pub fn is_dynamic(key: &str) -> bool {
    DYNAMIC_BROKER_KEYS.contains(&key)
}

/// Broker keys the operator sets itself (the rack per broker, the throttle
/// from `spec.rebalance`); users may not set them in `spec.config`.
pub const OPERATOR_OWNED_BROKER_KEYS: &[&str] = &["broker.rack", THROTTLE_RATE_KEY];

/// Keys of `config` a user may set on a Cluster.
pub fn cluster_config_keys() -> impl Iterator<Item = &'static str> + Clone {
    BROKER_CONFIG_KEYS
        .iter()
        .copied()
        .filter(|k| !OPERATOR_OWNED_BROKER_KEYS.contains(k))
}

/// The keys of `config` that are not in `known`, sorted.
pub fn unknown_keys<'a>(
    config: impl IntoIterator<Item = &'a String>,
    known: impl Iterator<Item = &'static str> + Clone,
) -> Vec<String> {
    let mut unknown: Vec<String> = config
        .into_iter()
        .filter(|k| !known.clone().any(|known| known == k.as_str()))
        .cloned()
        .collect();
    unknown.sort();
    unknown
}

/// Longest config value accepted (bounds the cost of the CEL rules).
pub const MAX_VALUE_LENGTH: u32 = 1024;

/// Schema of a `config` map: at most 64 keys, values of at most [`MAX_VALUE_LENGTH`] characters.
pub fn config_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": {"type": "string", "maxLength": MAX_VALUE_LENGTH},
    })
}

fn cel_list(keys: impl Iterator<Item = &'static str>) -> String {
    let quoted: Vec<String> = keys.map(|k| format!("'{k}'")).collect();
    format!("[{}]", quoted.join(", "))
}

fn keys_rule(what: &str, keys: impl Iterator<Item = &'static str> + Clone) -> Rule {
    // A messageExpression naming the offending keys is over the apiserver's
    // CEL cost budget (map keys have no length bound), so the message lists
    // the keys that are allowed instead.
    let list = cel_list(keys.clone());
    let allowed: Vec<&str> = keys.collect();
    Rule::new(format!("self.all(k, k in {list})")).message(Message::Message(format!(
        "unknown {what} config key; the broker knows: {}",
        allowed.join(", ")
    )))
}

/// CEL rule on `Cluster.spec.config`: only keys the broker knows.
pub fn cluster_config_rule() -> Rule {
    keys_rule("broker", cluster_config_keys())
}

/// CEL rule on `Topic.spec.config`: only topic keys the broker knows.
pub fn topic_config_rule() -> Rule {
    keys_rule("topic", TOPIC_CONFIG_KEYS.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The `name: "…"` entries of the named const array in a broker source file.
    fn broker_keys(file: &str, array: &str) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../broker/src/config")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text
            .find(&format!("pub const {array}"))
            .unwrap_or_else(|| panic!("{array} not in {}", path.display()));
        let body = &text[start..];
        let end = body.find("\n];").unwrap();
        body[..end]
            .lines()
            .filter_map(|l| l.trim().strip_prefix("name: \""))
            .filter_map(|l| l.split('"').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn broker_keys_match_the_broker_source() {
        assert_eq!(
            broker_keys("broker.rs", "BROKER_CONFIGS"),
            BROKER_CONFIG_KEYS,
            "update BROKER_CONFIG_KEYS from broker/src/config/broker.rs"
        );
    }

    #[test]
    fn topic_keys_match_the_broker_source() {
        assert_eq!(
            broker_keys("topic.rs", "TOPIC_CONFIGS"),
            TOPIC_CONFIG_KEYS,
            "update TOPIC_CONFIG_KEYS from broker/src/config/topic.rs"
        );
    }

    /// The broker keys topic defaults come from: the second entry of each
    /// `(ConfigDef, "broker.key")` pair of the broker's `TOPIC_CONFIGS`.
    fn topic_default_keys() -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../broker/src/config/topic.rs");
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("pub const TOPIC_CONFIGS").unwrap();
        let body = &text[start..];
        body[..body.find("\n];").unwrap()]
            .lines()
            .filter(|l| l.starts_with("        \"") && l.ends_with("\","))
            .map(|l| l.trim().trim_end_matches(',').trim_matches('"').to_owned())
            .collect()
    }

    #[test]
    fn dynamic_keys_match_the_brokers_rule() {
        // The broker's `is_dynamic`: every topic default, and the throttle.
        let mut expected = topic_default_keys();
        assert_eq!(expected.len(), TOPIC_CONFIG_KEYS.len());
        expected.push(THROTTLE_RATE_KEY.to_owned());
        assert_eq!(
            DYNAMIC_BROKER_KEYS, expected,
            "update DYNAMIC_BROKER_KEYS from broker/src/config/{{broker,topic}}.rs"
        );
        assert!(is_dynamic("min.insync.replicas"));
        assert!(!is_dynamic("num.partitions"));
        for key in DYNAMIC_BROKER_KEYS {
            assert!(BROKER_CONFIG_KEYS.contains(key), "{key}");
        }
    }

    #[test]
    fn operator_owned_keys_are_broker_keys() {
        for key in OPERATOR_OWNED_BROKER_KEYS {
            assert!(BROKER_CONFIG_KEYS.contains(key), "{key}");
        }
    }

    #[test]
    fn unknown_keys_are_reported_sorted_and_operator_keys_are_not_allowed() {
        let config = [
            "zz.bad",
            "log.retention.ms",
            "broker.rack",
            THROTTLE_RATE_KEY,
            "aa.bad",
        ]
        .map(String::from);
        assert_eq!(
            unknown_keys(&config, cluster_config_keys()),
            [
                "aa.bad",
                "broker.rack",
                "follower.replication.throttled.rate",
                "zz.bad"
            ]
        );
        assert!(unknown_keys(&config[1..2], cluster_config_keys()).is_empty());
    }
}
