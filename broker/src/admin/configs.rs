//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and
//! brokers. Topic overrides and dynamic broker settings (the cluster-wide
//! defaults, resource name "", and per broker, resource name = its id) live
//! in the metadata quorum; every other broker setting is static (set at
//! start-up) and read-only.

use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::info;

use super::topics::{
    SOURCE_DEFAULT, SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT, SOURCE_STATIC_BROKER,
    SOURCE_TOPIC,
};
use crate::broker::Broker;
use crate::config::{
    BROKER_CONFIGS, BrokerConfig, ConfigDef, ConfigError, DynamicBrokerConfig, Kind, Overrides,
    Source, broker_default_key, is_dynamic,
};
use crate::metadata::MetadataImage;
use crate::metadata::controller::ControllerError;
use crate::metadata::request::ControllerRequest;
use crate::protocol::dispatch::text;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

fn config_type(def: &ConfigDef) -> i8 {
    match def.kind {
        Kind::Bool => 1,
        Kind::Int { .. } => 3,
        Kind::Long { .. } => 5,
        Kind::Choice(_) if def.name.ends_with("cleanup.policy") => 7,
        Kind::Choice(_) | Kind::Text => 2,
    }
}

fn entry(
    def: &ConfigDef,
    value: Option<String>,
    source: i8,
    read_only: bool,
    synonyms: Vec<DescribeConfigsSynonym>,
    version: i16,
    docs: bool,
) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(text(def.name))
        .with_value(value.map(text))
        .with_read_only(read_only)
        .with_config_source(source)
        .with_synonyms(synonyms);
    if version >= 3 {
        r = r.with_config_type(config_type(def));
        if docs {
            r = r.with_documentation(Some(text(def.doc)));
        }
    }
    r
}

fn wanted(keys: &Option<Vec<StrBytes>>, name: &str) -> bool {
    keys.as_ref()
        .is_none_or(|k| k.iter().any(|k| k.as_str() == name))
}

/// Kafka's config source code for where a broker setting comes from.
pub fn source_code(source: Source) -> i8 {
    match source {
        Source::DynamicBroker => SOURCE_DYNAMIC_BROKER,
        Source::DynamicDefault => SOURCE_DYNAMIC_DEFAULT,
        Source::Static => SOURCE_STATIC_BROKER,
        Source::Default => SOURCE_DEFAULT,
    }
}

/// One DescribeConfigs synonym: `key` set to `value` by the layer `source`.
fn synonym(key: &str, value: Option<&str>, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(text(key))
        .with_value(value.map(text))
        .with_source(source)
}

/// Every layer that sets broker key `key` for `node`, highest precedence
/// first (DescribeConfigs synonyms).
fn broker_synonyms(
    statics: &BrokerConfig,
    image: &MetadataImage,
    node: i32,
    key: &'static str,
) -> Vec<DescribeConfigsSynonym> {
    let dynamic = [
        (Some(node), SOURCE_DYNAMIC_BROKER),
        (None, SOURCE_DYNAMIC_DEFAULT),
    ];
    let mut out: Vec<DescribeConfigsSynonym> = dynamic
        .into_iter()
        .filter_map(|(n, source)| {
            let value = image.broker_configs.of(n)?.overrides().get(key)?;
            Some(synonym(key, Some(value), source))
        })
        .collect();
    if statics.is_set(key) {
        out.push(synonym(key, statics.get(key), SOURCE_STATIC_BROKER));
    }
    let default = BROKER_CONFIGS
        .iter()
        .find(|d| d.name == key)
        .and_then(|d| d.default);
    if default.is_some() {
        out.push(synonym(key, default, SOURCE_DEFAULT));
    }
    out
}

/// The configs of one topic, resolved against this broker's effective settings.
fn describe_topic(
    broker: &Broker,
    image: &MetadataImage,
    name: &str,
    req: &DescribeConfigsRequest,
    keys: &Option<Vec<StrBytes>>,
    version: i16,
) -> Result<Vec<DescribeConfigsResourceResult>, (i16, String)> {
    let topic = image
        .topics
        .get(name)
        .ok_or_else(|| (3, format!("unknown topic '{name}'")))?;
    let effective = broker.effective_config(image);
    Ok(topic
        .config
        .entries(&effective)
        .filter(|(def, _, _)| wanted(keys, def.name))
        .map(|(def, value, is_override)| {
            let broker_key = broker_default_key(def.name).unwrap_or_default();
            let mut synonyms = Vec::new();
            if req.include_synonyms {
                if is_override {
                    synonyms.push(synonym(def.name, Some(&value), SOURCE_TOPIC));
                }
                synonyms.extend(broker_synonyms(
                    &broker.config,
                    image,
                    broker.node_id,
                    broker_key,
                ));
            }
            let source = if is_override {
                SOURCE_TOPIC
            } else {
                source_code(effective.source(broker_key))
            };
            entry(
                def,
                Some(value),
                source,
                false,
                synonyms,
                version,
                req.include_documentation,
            )
        })
        .collect())
}

/// Broker settings: resource name "" lists the cluster-wide dynamic defaults
/// (as Kafka does); this broker's id lists every setting with its effective
/// value and where it comes from.
fn describe_broker(
    broker: &Broker,
    image: &MetadataImage,
    name: &str,
    req: &DescribeConfigsRequest,
    keys: &Option<Vec<StrBytes>>,
    version: i16,
) -> Result<Vec<DescribeConfigsResourceResult>, (i16, String)> {
    if name.is_empty() {
        let defaults = image
            .broker_configs
            .of(None)
            .map(DynamicBrokerConfig::overrides);
        return Ok(BROKER_CONFIGS
            .iter()
            .filter(|def| wanted(keys, def.name))
            .filter_map(|def| {
                let value = defaults?.get(def.name)?;
                let synonyms = if req.include_synonyms {
                    vec![synonym(def.name, Some(value), SOURCE_DYNAMIC_DEFAULT)]
                } else {
                    vec![]
                };
                Some(entry(
                    def,
                    Some(value.clone()),
                    SOURCE_DYNAMIC_DEFAULT,
                    false,
                    synonyms,
                    version,
                    req.include_documentation,
                ))
            })
            .collect());
    }
    if name != broker.node_id.to_string() {
        return Err((
            42,
            format!(
                "this is broker {}, not '{name}'; ask broker '{name}' for its settings",
                broker.node_id
            ),
        ));
    }
    let effective = broker.effective_config(image);
    Ok(effective
        .entries()
        .filter(|(def, _, _)| wanted(keys, def.name))
        .map(|(def, value, source)| {
            let synonyms = if req.include_synonyms {
                broker_synonyms(&broker.config, image, broker.node_id, def.name)
            } else {
                vec![]
            };
            entry(
                def,
                value.map(str::to_owned),
                source_code(source),
                !is_dynamic(def.name),
                synonyms,
                version,
                req.include_documentation,
            )
        })
        .collect())
}

/// Handles DescribeConfigs.
pub fn describe_configs(
    broker: &Arc<Broker>,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let results = req
        .resources
        .iter()
        .map(|res| {
            let name = res.resource_name.as_str();
            let keys = &res.configuration_keys;
            let configs = match res.resource_type {
                TOPIC => describe_topic(broker, &image, name, &req, keys, version),
                BROKER => describe_broker(broker, &image, name, &req, keys, version),
                other => Err((42, format!("resource type {other} is not supported"))),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            match configs {
                Ok(configs) => result.with_configs(configs),
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(text(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Why an alteration was refused: `(code, message)`.
type Refusal = (i16, String);

fn refused(e: ConfigError) -> Refusal {
    (ControllerError::from(e.clone()).code(), e.to_string())
}

/// A topic's overrides, changed by `change`, committed through the controller.
async fn alter_topic(
    broker: &Arc<Broker>,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut dyn Overrides) -> Result<(), ConfigError>,
) -> Result<(), Refusal> {
    let image = broker.image();
    let topic = image
        .topics
        .get(name)
        .ok_or_else(|| (3, format!("unknown topic '{name}'")))?;
    let mut config = topic.config.clone();
    change(&mut config).map_err(refused)?;
    if validate_only {
        return Ok(());
    }
    broker
        .submit(ControllerRequest::AlterTopicConfig {
            name: name.to_owned(),
            config,
        })
        .await
        .map_err(|e| (e.code, e.message))?;
    info!(topic = %name, "topic config changed");
    Ok(())
}

/// Dynamic broker settings, changed by `change`, committed through the
/// controller: the cluster-wide defaults (`name` ""), or one broker's (its id).
async fn alter_broker(
    broker: &Arc<Broker>,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut dyn Overrides) -> Result<(), ConfigError>,
) -> Result<(), Refusal> {
    let node_id = match name {
        "" => None,
        id => Some(
            id.parse::<i32>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| (42, format!("'{id}' is not a broker id")))?,
        ),
    };
    let mut config = broker
        .image()
        .broker_configs
        .of(node_id)
        .cloned()
        .unwrap_or_default();
    change(&mut config).map_err(refused)?;
    if validate_only {
        return Ok(());
    }
    broker
        .submit(ControllerRequest::AlterBrokerConfig {
            node_id,
            config: config.clone(),
        })
        .await
        .map_err(|e| (e.code, e.message))?;
    match node_id {
        Some(n) => {
            info!(broker = n, settings = ?config.overrides(), "dynamic broker config changed")
        }
        None => info!(settings = ?config.overrides(), "cluster-wide dynamic broker config changed"),
    }
    Ok(())
}

/// Applies `change` to one resource's overrides.
async fn alter_resource(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut dyn Overrides) -> Result<(), ConfigError>,
) -> Result<(), Refusal> {
    match resource_type {
        TOPIC => alter_topic(broker, name, validate_only, change).await,
        BROKER => alter_broker(broker, name, validate_only, change).await,
        other => Err((42, format!("resource type {other} is not supported"))),
    }
}

/// Handles AlterConfigs: replaces a resource's whole set of overrides.
pub async fn alter_configs(
    broker: &Arc<Broker>,
    req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let pairs: Vec<(String, String)> = res
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.as_str().to_owned(), v.as_str().to_owned()))
            })
            .collect();
        let outcome = alter_resource(
            broker,
            res.resource_type,
            res.resource_name.as_str(),
            req.validate_only,
            |config| {
                config.clear();
                pairs.iter().try_for_each(|(k, v)| config.set(k, v))
            },
        )
        .await;
        let mut r = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        if let Err((code, message)) = outcome {
            r = r
                .with_error_code(code)
                .with_error_message(Some(text(message)));
        }
        responses.push(r);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Handles IncrementalAlterConfigs: SET and DELETE per key (APPEND/SUBTRACT
/// apply to list keys, of which there is only the topics' `cleanup.policy`).
pub async fn incremental_alter_configs(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let ops: Vec<(i8, String, Option<String>)> = res
            .configs
            .iter()
            .map(|c| {
                (
                    c.config_operation,
                    c.name.as_str().to_owned(),
                    c.value.as_ref().map(|v| v.as_str().to_owned()),
                )
            })
            .collect();
        let outcome = alter_resource(
            broker,
            res.resource_type,
            res.resource_name.as_str(),
            req.validate_only,
            |config| {
                for (op, key, value) in &ops {
                    match (op, value) {
                        (0, Some(v)) => config.set(key, v)?,
                        (1, _) => config.remove(key)?,
                        (2, Some(v)) if key == "cleanup.policy" => config.set(key, v)?,
                        (3, _) if key == "cleanup.policy" => config.remove(key)?,
                        _ => {
                            return Err(ConfigError::InvalidValue {
                                key: key.clone(),
                                value: value.clone().unwrap_or_default(),
                                reason: format!("operation {op} is not valid for this key"),
                            });
                        }
                    }
                }
                Ok(())
            },
        )
        .await;
        let mut r = IncrementalResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        if let Err((code, message)) = outcome {
            r = r
                .with_error_code(code)
                .with_error_message(Some(text(message)));
        }
        responses.push(r);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
