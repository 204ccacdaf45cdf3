//! Broker-wide settings (`--config FILE` and `--set key=value`).

use std::collections::BTreeMap;

use super::{ConfigDef, ConfigError, Kind, find};

const DAY_MS: &str = "604800000";

/// Every broker key Skiff understands. Unknown keys are an error.
pub const BROKER_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "num.partitions",
        kind: Kind::Int { min: 1 },
        default: Some("1"),
        doc: "Partitions of auto-created topics and of CreateTopics requests that ask for the default",
    },
    ConfigDef {
        name: "default.replication.factor",
        kind: Kind::Int { min: 1 },
        default: Some("1"),
        doc: "Replication factor of topics created without one",
    },
    ConfigDef {
        name: "auto.create.topics.enable",
        kind: Kind::Bool,
        default: Some("true"),
        doc: "Create a topic when a client asks for metadata of one that does not exist",
    },
    ConfigDef {
        name: "delete.topic.enable",
        kind: Kind::Bool,
        default: Some("true"),
        doc: "Allow DeleteTopics",
    },
    ConfigDef {
        name: "log.retention.ms",
        kind: Kind::Long { min: -1 },
        default: Some(DAY_MS),
        doc: "Default retention.ms of topics",
    },
    ConfigDef {
        name: "log.retention.bytes",
        kind: Kind::Long { min: -1 },
        default: Some("-1"),
        doc: "Default retention.bytes of topics",
    },
    ConfigDef {
        name: "log.retention.check.interval.ms",
        kind: Kind::Long { min: 1 },
        default: Some("300000"),
        doc: "How often retention runs",
    },
    ConfigDef {
        name: "log.segment.bytes",
        kind: Kind::Int { min: 14 },
        default: Some("1073741824"),
        doc: "Default segment.bytes of topics",
    },
    ConfigDef {
        name: "log.roll.ms",
        kind: Kind::Long { min: 1 },
        default: Some(DAY_MS),
        doc: "Default segment.ms of topics",
    },
    ConfigDef {
        name: "log.index.interval.bytes",
        kind: Kind::Int { min: 0 },
        default: Some("4096"),
        doc: "Default index.interval.bytes of topics",
    },
    ConfigDef {
        name: "log.index.size.max.bytes",
        kind: Kind::Int { min: 4 },
        default: Some("10485760"),
        doc: "Default segment.index.bytes of topics",
    },
    ConfigDef {
        name: "log.flush.interval.messages",
        kind: Kind::Long { min: 1 },
        default: Some("9223372036854775807"),
        doc: "Default flush.messages of topics",
    },
    ConfigDef {
        name: "log.flush.interval.ms",
        kind: Kind::Long { min: 0 },
        default: Some("9223372036854775807"),
        doc: "Default flush.ms of topics",
    },
    ConfigDef {
        name: "log.preallocate",
        kind: Kind::Bool,
        default: Some("true"),
        doc: "Default preallocate of topics",
    },
    ConfigDef {
        name: "log.cleanup.policy",
        kind: Kind::Choice(&["delete"]),
        default: Some("delete"),
        doc: "Default cleanup.policy of topics (compaction is not implemented)",
    },
    ConfigDef {
        name: "message.max.bytes",
        kind: Kind::Int { min: 0 },
        default: Some("1048588"),
        doc: "Default max.message.bytes of topics",
    },
    ConfigDef {
        name: "min.insync.replicas",
        kind: Kind::Int { min: 1 },
        default: Some("1"),
        doc: "Default min.insync.replicas of topics",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        kind: Kind::Bool,
        default: Some("false"),
        doc: "Default unclean.leader.election.enable of topics",
    },
    ConfigDef {
        name: "socket.request.max.bytes",
        kind: Kind::Int { min: 1 },
        default: Some("104857600"),
        doc: "Largest request frame accepted; larger ones are refused before any allocation",
    },
    ConfigDef {
        name: "offsets.topic.num.partitions",
        kind: Kind::Int { min: 1 },
        default: Some("50"),
        doc: "Partitions of __consumer_offsets",
    },
    ConfigDef {
        name: "offsets.topic.replication.factor",
        kind: Kind::Int { min: 1 },
        default: Some("3"),
        doc: "Replication factor of __consumer_offsets (capped at the number of brokers)",
    },
    ConfigDef {
        name: "offsets.topic.segment.bytes",
        kind: Kind::Int { min: 14 },
        default: Some("104857600"),
        doc: "segment.bytes of __consumer_offsets",
    },
    ConfigDef {
        name: "offsets.retention.minutes",
        kind: Kind::Int { min: 1 },
        default: Some("10080"),
        doc: "How long committed offsets of an empty group are kept",
    },
    ConfigDef {
        name: "group.initial.rebalance.delay.ms",
        kind: Kind::Int { min: 0 },
        default: Some("3000"),
        doc: "Wait for more members before the first rebalance of a new group",
    },
    ConfigDef {
        name: "group.min.session.timeout.ms",
        kind: Kind::Int { min: 0 },
        default: Some("6000"),
        doc: "Smallest session timeout a consumer may ask for",
    },
    ConfigDef {
        name: "group.max.session.timeout.ms",
        kind: Kind::Int { min: 0 },
        default: Some("1800000"),
        doc: "Largest session timeout a consumer may ask for",
    },
    ConfigDef {
        name: "producer.id.expiration.ms",
        kind: Kind::Long { min: 1 },
        default: Some("86400000"),
        doc: "How long a partition keeps an idempotent producer's state (for deduplication) after the timestamp of its last batch; checked with retention",
    },
    ConfigDef {
        name: "replica.lag.time.max.ms",
        kind: Kind::Long { min: 1 },
        default: Some("10000"),
        doc: "A follower that has not caught up for this long leaves the ISR",
    },
    ConfigDef {
        name: "follower.replication.throttled.rate",
        kind: Kind::Long { min: 1 },
        default: Some("9223372036854775807"),
        doc: "Bytes per second this broker fetches for replicas a reassignment is adding to it, until they are in sync; other replication is never throttled (default: unlimited)",
    },
    ConfigDef {
        name: "broker.session.timeout.ms",
        kind: Kind::Long { min: 1 },
        default: Some("1000"),
        doc: "The active controller fences a broker that has not heartbeated for this long",
    },
    ConfigDef {
        name: "broker.heartbeat.interval.ms",
        kind: Kind::Long { min: 1 },
        default: Some("250"),
        doc: "How often a broker heartbeats to the active controller",
    },
    ConfigDef {
        name: "leader.imbalance.check.interval.seconds",
        kind: Kind::Long { min: 1 },
        default: Some("30"),
        doc: "How often leadership moves back to preferred replicas",
    },
    ConfigDef {
        name: "broker.rack",
        kind: Kind::Text,
        default: None,
        doc: "Rack of this broker, for rack-aware replica placement",
    },
    ConfigDef {
        name: "skiff.ack.durability",
        kind: Kind::Choice(&["fsync", "memory"]),
        default: Some("fsync"),
        doc: "fsync: acks=all is answered only once the batch is fsynced on every ISR member; memory: as Kafka",
    },
];

/// Broker keys that may change while the broker runs (IncrementalAlterConfigs
/// on a BROKER resource, kept in the metadata quorum): the topic defaults,
/// which the partitions resolve again with every metadata image, and the
/// replication throttle, which the fetchers read on every fetch. Every other
/// key is read once at start-up.
pub fn is_dynamic(key: &str) -> bool {
    key == "follower.replication.throttled.rate"
        || super::TOPIC_CONFIGS
            .iter()
            .any(|(_, broker_key)| *broker_key == key)
}

/// Where a broker setting's value comes from, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set dynamically for this one broker.
    DynamicBroker,
    /// Set dynamically as the cluster-wide default.
    DynamicDefault,
    /// Set at start-up (`--config`, `--set`).
    Static,
    /// Skiff's default.
    Default,
}

/// Dynamic overrides of broker settings: the cluster-wide default set, or one
/// broker's. Only [`is_dynamic`] keys; each value validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DynamicBrokerConfig {
    overrides: BTreeMap<String, String>,
}

impl DynamicBrokerConfig {
    /// Sets one override.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let def =
            find(BROKER_CONFIGS, key).ok_or_else(|| ConfigError::UnknownKey(key.to_owned()))?;
        if !is_dynamic(def.name) {
            return Err(ConfigError::NotDynamic(def.name.to_owned()));
        }
        self.overrides
            .insert(def.name.to_owned(), def.validate(value)?);
        Ok(())
    }

    /// Removes an override (back to the next layer down).
    pub fn remove(&mut self, key: &str) -> Result<(), ConfigError> {
        find(BROKER_CONFIGS, key).ok_or_else(|| ConfigError::UnknownKey(key.to_owned()))?;
        self.overrides.remove(key);
        Ok(())
    }

    /// The explicit overrides.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.overrides.is_empty()
    }
}

/// Whether acks=all waits for fsync (`skiff.ack.durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckDurability {
    /// Acknowledge once fsynced on every ISR member.
    Fsync,
    /// Acknowledge once in every ISR member's memory (Kafka's behaviour).
    Memory,
}

/// Validated broker settings: explicit values over defaults, and, in the
/// broker's *effective* config ([`BrokerConfig::layered`]), dynamic overrides
/// over both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerConfig {
    values: BTreeMap<&'static str, String>,
    /// Keys whose value came from a dynamic layer, and which one.
    dynamic: BTreeMap<&'static str, Source>,
}

impl BrokerConfig {
    /// Applies `key=value` pairs (config file first, then `--set`), validating each.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        for (k, v) in pairs {
            config.set(k, v)?;
        }
        Ok(config)
    }

    /// Sets one key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let def =
            find(BROKER_CONFIGS, key).ok_or_else(|| ConfigError::UnknownKey(key.to_owned()))?;
        self.values.insert(def.name, def.validate(value)?);
        Ok(())
    }

    /// This static config with the cluster-wide dynamic defaults over it and
    /// this broker's own dynamic overrides over those (Kafka's precedence).
    pub fn layered(
        &self,
        cluster: &DynamicBrokerConfig,
        broker: Option<&DynamicBrokerConfig>,
    ) -> BrokerConfig {
        let mut config = self.clone();
        let layers = [
            (Some(cluster), Source::DynamicDefault),
            (broker, Source::DynamicBroker),
        ];
        for (layer, source) in layers {
            for (key, value) in layer.map(|l| &l.overrides).into_iter().flatten() {
                // Overrides were validated when written; a key this build no
                // longer knows is skipped rather than trusted.
                if let Some(def) = find(BROKER_CONFIGS, key)
                    && let Ok(value) = def.validate(value)
                {
                    config.values.insert(def.name, value);
                    config.dynamic.insert(def.name, source);
                }
            }
        }
        config
    }

    /// Where the value of `key` comes from.
    pub fn source(&self, key: &str) -> Source {
        match self.dynamic.get(key) {
            Some(&source) => source,
            None if self.values.contains_key(key) => Source::Static,
            None => Source::Default,
        }
    }

    /// The value of a key (explicit or default), as text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .or_else(|| find(BROKER_CONFIGS, key).and_then(|d| d.default))
    }

    /// Whether the key was set explicitly (at start-up, or in a dynamic
    /// layer of an effective config).
    pub fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// An integer key (definitions guarantee it parses).
    pub fn long(&self, key: &str) -> i64 {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    /// A boolean key.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }

    /// `skiff.ack.durability`.
    pub fn ack_durability(&self) -> AckDurability {
        match self.get("skiff.ack.durability") {
            Some("memory") => AckDurability::Memory,
            _ => AckDurability::Fsync,
        }
    }

    /// Every key with its value and where the value comes from.
    pub fn entries(&self) -> impl Iterator<Item = (&'static ConfigDef, Option<&str>, Source)> {
        BROKER_CONFIGS
            .iter()
            .map(|d| (d, self.get(d.name), self.source(d.name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamic(pairs: &[(&str, &str)]) -> DynamicBrokerConfig {
        let mut d = DynamicBrokerConfig::default();
        for (k, v) in pairs {
            d.set(k, v).expect("dynamic key");
        }
        d
    }

    #[test]
    fn dynamic_layers_override_static_in_kafkas_order() {
        let statics = BrokerConfig::from_pairs([
            ("log.retention.ms", "1000"),
            ("min.insync.replicas", "2"),
            ("num.partitions", "3"),
        ])
        .expect("valid");
        let cluster = dynamic(&[
            ("log.retention.ms", "2000"),
            ("follower.replication.throttled.rate", "5000"),
        ]);
        let mine = dynamic(&[("follower.replication.throttled.rate", "7000")]);
        let c = statics.layered(&cluster, Some(&mine));
        // (key, value, source)
        let cases = [
            (
                "follower.replication.throttled.rate",
                "7000",
                Source::DynamicBroker,
            ),
            ("log.retention.ms", "2000", Source::DynamicDefault),
            ("min.insync.replicas", "2", Source::Static),
            ("num.partitions", "3", Source::Static),
            ("log.retention.bytes", "-1", Source::Default),
        ];
        for (key, value, source) in cases {
            assert_eq!((c.get(key), c.source(key)), (Some(value), source), "{key}");
        }
        // Without this broker's own layer the cluster-wide one shows through.
        let c = statics.layered(&cluster, None);
        assert_eq!(c.long("follower.replication.throttled.rate"), 5000);
        assert_eq!(
            c.source("follower.replication.throttled.rate"),
            Source::DynamicDefault
        );
        // No dynamic layers at all: the static config, unchanged.
        assert_eq!(
            statics.layered(&DynamicBrokerConfig::default(), None),
            statics
        );
    }

    #[test]
    fn only_dynamic_keys_may_be_set_dynamically() {
        let mut d = DynamicBrokerConfig::default();
        assert_eq!(
            d.set("num.partitions", "3").unwrap_err(),
            ConfigError::NotDynamic("num.partitions".into())
        );
        assert!(
            d.set("socket.request.max.bytes", "1")
                .unwrap_err()
                .to_string()
                .contains("read only at start-up")
        );
        assert_eq!(
            d.set("no.such.key", "1").unwrap_err(),
            ConfigError::UnknownKey("no.such.key".into())
        );
        assert!(d.set("follower.replication.throttled.rate", "0").is_err());
        assert!(d.is_empty(), "refused keys leave nothing behind");
        d.set("unclean.leader.election.enable", "TRUE")
            .expect("dynamic");
        assert_eq!(
            d.overrides()
                .get("unclean.leader.election.enable")
                .map(String::as_str),
            Some("true")
        );
        d.remove("unclean.leader.election.enable")
            .expect("known key");
        assert!(d.is_empty());
    }

    #[test]
    fn defaults_overrides_and_errors() {
        let c = BrokerConfig::from_pairs([
            ("num.partitions", "3"),
            ("auto.create.topics.enable", "FALSE"),
        ])
        .expect("valid");
        assert_eq!(c.long("num.partitions"), 3);
        assert!(!c.flag("auto.create.topics.enable"));
        assert_eq!(c.long("message.max.bytes"), 1_048_588);
        assert_eq!(c.ack_durability(), AckDurability::Fsync);
        assert_eq!(c.long("follower.replication.throttled.rate"), i64::MAX);
        assert!(BrokerConfig::from_pairs([("follower.replication.throttled.rate", "0")]).is_err());
        assert_eq!(
            BrokerConfig::from_pairs([("num.partitons", "3")]).unwrap_err(),
            ConfigError::UnknownKey("num.partitons".into())
        );
        let err = BrokerConfig::from_pairs([("num.partitions", "0")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid value `0` for `num.partitions`: must be at least 1"
        );
        assert!(BrokerConfig::from_pairs([("skiff.ack.durability", "disk")]).is_err());
    }

    #[test]
    fn properties_file_syntax() {
        let pairs =
            super::super::parse_properties("# comment\nnum.partitions = 4\n\nbroker.rack:r1\n")
                .expect("parse");
        assert_eq!(
            pairs,
            vec![
                ("num.partitions".into(), "4".into()),
                ("broker.rack".into(), "r1".into())
            ]
        );
        assert!(super::super::parse_properties("just words").is_err());
    }
}
