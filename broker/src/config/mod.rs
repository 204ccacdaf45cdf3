//! Broker and topic configuration under Kafka's own key names, so users'
//! knowledge carries over. Definitions are tables: validation, defaults and
//! DescribeConfigs all read the same entries.
//!
//! Owns: which keys exist, their types, defaults and validation. Must not: apply
//! them; the log, partitions and server read the resolved values.

mod broker;
mod topic;

pub use broker::{
    AckDurability, BROKER_CONFIGS, BrokerConfig, DynamicBrokerConfig, Source, is_dynamic,
};
pub use topic::{TOPIC_CONFIGS, TopicConfig, TopicSettings, broker_default_key, is_topic_key};

use thiserror::Error;

/// The type of a config value and its accepted range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 64-bit integer ≥ `min`.
    Long { min: i64 },
    /// A 32-bit integer ≥ `min`.
    Int { min: i32 },
    /// `true` or `false`.
    Bool,
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// Free text (e.g. a rack name).
    Text,
}

/// One known config key.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    /// Kafka's name for it.
    pub name: &'static str,
    /// Type and range.
    pub kind: Kind,
    /// Default value as text (`None`: unset, e.g. `broker.rack`).
    pub default: Option<&'static str>,
    /// One-line description.
    pub doc: &'static str,
}

/// A config key or value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The key is not one Skiff knows.
    #[error("unknown config key `{0}`")]
    UnknownKey(String),
    /// The value does not fit the key's type or range.
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    /// The key is read only at start-up.
    #[error(
        "`{0}` is read only at start-up and cannot be changed while the broker runs; set it with --config/--set and restart"
    )]
    NotDynamic(String),
    /// A line of a config file is not `key=value`.
    #[error("line {line}: expected `key=value`, got `{text}`")]
    Syntax { line: usize, text: String },
}

/// A set of explicit overrides that admin requests edit: a topic's, or the
/// dynamic broker settings.
pub trait Overrides {
    /// Sets one key, validating key and value.
    fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError>;
    /// Removes one key (back to the layer below).
    fn remove(&mut self, key: &str) -> Result<(), ConfigError>;
    /// Removes every key.
    fn clear(&mut self);
}

impl Overrides for TopicConfig {
    fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        TopicConfig::set(self, key, value)
    }
    fn remove(&mut self, key: &str) -> Result<(), ConfigError> {
        TopicConfig::remove(self, key)
    }
    fn clear(&mut self) {
        *self = TopicConfig::default();
    }
}

impl Overrides for DynamicBrokerConfig {
    fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        DynamicBrokerConfig::set(self, key, value)
    }
    fn remove(&mut self, key: &str) -> Result<(), ConfigError> {
        DynamicBrokerConfig::remove(self, key)
    }
    fn clear(&mut self) {
        *self = DynamicBrokerConfig::default();
    }
}

impl ConfigDef {
    /// Checks `value` against the key's type and range, returning it normalised.
    pub fn validate(&self, value: &str) -> Result<String, ConfigError> {
        let value = value.trim();
        let invalid = |reason: String| ConfigError::InvalidValue {
            key: self.name.to_owned(),
            value: value.to_owned(),
            reason,
        };
        match self.kind {
            Kind::Long { min } => match value.parse::<i64>() {
                Ok(v) if v >= min => Ok(v.to_string()),
                Ok(_) => Err(invalid(format!("must be at least {min}"))),
                Err(_) => Err(invalid("not an integer".into())),
            },
            Kind::Int { min } => match value.parse::<i32>() {
                Ok(v) if v >= min => Ok(v.to_string()),
                Ok(_) => Err(invalid(format!("must be at least {min}"))),
                Err(_) => Err(invalid("not a 32-bit integer".into())),
            },
            Kind::Bool => match value.to_ascii_lowercase().as_str() {
                "true" | "false" => Ok(value.to_ascii_lowercase()),
                _ => Err(invalid("must be true or false".into())),
            },
            Kind::Choice(words) => {
                if words.contains(&value) {
                    Ok(value.to_owned())
                } else {
                    Err(invalid(format!("must be one of: {}", words.join(", "))))
                }
            }
            Kind::Text => Ok(value.to_owned()),
        }
    }
}

/// Looks a key up in a table of definitions.
pub fn find(defs: &'static [ConfigDef], key: &str) -> Option<&'static ConfigDef> {
    defs.iter().find(|d| d.name == key)
}

/// Parses a Java-properties style file: `key=value` lines, `#` or `!` comments.
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            return Err(ConfigError::Syntax {
                line: i + 1,
                text: raw.to_owned(),
            });
        };
        out.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(out)
}
