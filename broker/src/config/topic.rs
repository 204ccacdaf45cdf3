//! Per-topic settings: explicit overrides on top of the broker's defaults.

use std::collections::BTreeMap;

use super::{BrokerConfig, ConfigDef, ConfigError, Kind};
use crate::log::LogConfig;

/// Every topic key Skiff understands, with the broker key its default comes from.
pub const TOPIC_CONFIGS: &[(ConfigDef, &str)] = &[
    (
        ConfigDef {
            name: "retention.ms",
            kind: Kind::Long { min: -1 },
            default: None,
            doc: "Delete segments whose newest record is older (-1: never)",
        },
        "log.retention.ms",
    ),
    (
        ConfigDef {
            name: "retention.bytes",
            kind: Kind::Long { min: -1 },
            default: None,
            doc: "Delete old segments while the partition is larger (-1: no limit)",
        },
        "log.retention.bytes",
    ),
    (
        ConfigDef {
            name: "segment.bytes",
            kind: Kind::Int { min: 14 },
            default: None,
            doc: "Roll a new segment at this size",
        },
        "log.segment.bytes",
    ),
    (
        ConfigDef {
            name: "segment.ms",
            kind: Kind::Long { min: 1 },
            default: None,
            doc: "Roll a new segment at this age",
        },
        "log.roll.ms",
    ),
    (
        ConfigDef {
            name: "segment.index.bytes",
            kind: Kind::Int { min: 4 },
            default: None,
            doc: "Largest index file",
        },
        "log.index.size.max.bytes",
    ),
    (
        ConfigDef {
            name: "index.interval.bytes",
            kind: Kind::Int { min: 0 },
            default: None,
            doc: "Bytes between offset-index entries",
        },
        "log.index.interval.bytes",
    ),
    (
        ConfigDef {
            name: "flush.messages",
            kind: Kind::Long { min: 1 },
            default: None,
            doc: "fsync after this many records",
        },
        "log.flush.interval.messages",
    ),
    (
        ConfigDef {
            name: "flush.ms",
            kind: Kind::Long { min: 0 },
            default: None,
            doc: "fsync at least this often",
        },
        "log.flush.interval.ms",
    ),
    (
        ConfigDef {
            name: "preallocate",
            kind: Kind::Bool,
            default: None,
            doc: "Preallocate segment files",
        },
        "log.preallocate",
    ),
    (
        ConfigDef {
            name: "cleanup.policy",
            kind: Kind::Choice(&["delete"]),
            default: None,
            doc: "delete (compaction is not implemented)",
        },
        "log.cleanup.policy",
    ),
    (
        ConfigDef {
            name: "max.message.bytes",
            kind: Kind::Int { min: 0 },
            default: None,
            doc: "Largest record batch accepted",
        },
        "message.max.bytes",
    ),
    (
        ConfigDef {
            name: "min.insync.replicas",
            kind: Kind::Int { min: 1 },
            default: None,
            doc: "Replicas that must be in sync for acks=all",
        },
        "min.insync.replicas",
    ),
    (
        ConfigDef {
            name: "unclean.leader.election.enable",
            kind: Kind::Bool,
            default: None,
            doc: "Allow an out-of-sync replica to become leader (may lose data)",
        },
        "unclean.leader.election.enable",
    ),
];

fn topic_def(key: &str) -> Option<&'static (ConfigDef, &'static str)> {
    TOPIC_CONFIGS.iter().find(|(d, _)| d.name == key)
}

/// A topic's explicit overrides (what CreateTopics and AlterConfigs set).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfig {
    overrides: BTreeMap<String, String>,
}

/// A topic's settings resolved against the broker's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// What the partition logs use.
    pub log: LogConfig,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election: bool,
}

impl TopicConfig {
    /// Validates `key=value` overrides.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        let mut c = Self::default();
        for (k, v) in pairs {
            c.set(k, v)?;
        }
        Ok(c)
    }

    /// Sets one override.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let (def, _) = topic_def(key).ok_or_else(|| ConfigError::UnknownKey(key.to_owned()))?;
        self.overrides
            .insert(def.name.to_owned(), def.validate(value)?);
        Ok(())
    }

    /// Removes an override (back to the broker default).
    pub fn remove(&mut self, key: &str) -> Result<(), ConfigError> {
        topic_def(key).ok_or_else(|| ConfigError::UnknownKey(key.to_owned()))?;
        self.overrides.remove(key);
        Ok(())
    }

    /// The explicit overrides.
    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// Every topic key: definition, effective value, and whether it is an override.
    pub fn entries<'a>(
        &'a self,
        broker: &'a BrokerConfig,
    ) -> impl Iterator<Item = (&'static ConfigDef, String, bool)> + 'a {
        TOPIC_CONFIGS.iter().map(
            move |(def, broker_key)| match self.overrides.get(def.name) {
                Some(v) => (def, v.clone(), true),
                None => (
                    def,
                    broker.get(broker_key).unwrap_or_default().to_owned(),
                    false,
                ),
            },
        )
    }

    fn long(&self, key: &str, broker: &BrokerConfig) -> i64 {
        match self.overrides.get(key) {
            Some(v) => v.parse().unwrap_or_default(),
            None => topic_def(key).map_or(0, |(_, bk)| broker.long(bk)),
        }
    }

    fn flag(&self, key: &str, broker: &BrokerConfig) -> bool {
        match self.overrides.get(key) {
            Some(v) => v == "true",
            None => topic_def(key).is_some_and(|(_, bk)| broker.flag(bk)),
        }
    }

    /// Resolves against the broker defaults.
    pub fn resolve(&self, broker: &BrokerConfig) -> TopicSettings {
        let log = LogConfig {
            segment_bytes: self.long("segment.bytes", broker) as u64,
            segment_ms: self.long("segment.ms", broker),
            index_interval_bytes: self.long("index.interval.bytes", broker) as u64,
            segment_index_bytes: self.long("segment.index.bytes", broker) as usize,
            retention_bytes: self.long("retention.bytes", broker),
            retention_ms: self.long("retention.ms", broker),
            flush_messages: self.long("flush.messages", broker),
            flush_ms: self.long("flush.ms", broker),
            max_message_bytes: self.long("max.message.bytes", broker) as usize,
            preallocate: self.flag("preallocate", broker),
        };
        TopicSettings {
            log,
            min_insync_replicas: self.long("min.insync.replicas", broker) as i32,
            unclean_leader_election: self.flag("unclean.leader.election.enable", broker),
        }
    }
}

/// The broker key topic key `key` takes its default from (`retention.ms` →
/// `log.retention.ms`).
pub fn broker_default_key(key: &str) -> Option<&'static str> {
    topic_def(key).map(|(_, broker_key)| *broker_key)
}

/// Whether `key` is a topic config key.
pub fn is_topic_key(key: &str) -> bool {
    topic_def(key).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_broker_defaults() {
        let broker =
            BrokerConfig::from_pairs([("log.retention.ms", "1000"), ("min.insync.replicas", "2")])
                .expect("broker");
        let topic =
            TopicConfig::from_pairs([("retention.bytes", "5000"), ("segment.bytes", "1048576")])
                .expect("topic");
        let s = topic.resolve(&broker);
        assert_eq!(
            (
                s.log.retention_ms,
                s.log.retention_bytes,
                s.log.segment_bytes
            ),
            (1000, 5000, 1 << 20)
        );
        assert_eq!(s.min_insync_replicas, 2);
        assert!(!s.unclean_leader_election);
        let entry = topic
            .entries(&broker)
            .find(|(d, _, _)| d.name == "retention.ms")
            .expect("entry");
        assert_eq!((entry.1.as_str(), entry.2), ("1000", false));
    }

    #[test]
    fn unknown_and_unsupported_values_are_refused() {
        assert_eq!(
            TopicConfig::from_pairs([("retention.hours", "1")]).unwrap_err(),
            ConfigError::UnknownKey("retention.hours".into())
        );
        let err = TopicConfig::from_pairs([("cleanup.policy", "compact")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be one of: delete"), "{err}");
    }

    #[test]
    fn every_topic_key_has_a_broker_default() {
        let broker = BrokerConfig::default();
        for (def, bk) in TOPIC_CONFIGS {
            assert!(
                broker.get(bk).is_some(),
                "{} has no default via {bk}",
                def.name
            );
        }
    }
}
