//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics
//! (dynamic, stored in metadata) and brokers (static: set at start-up, read-only).

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

use super::topics::{SOURCE_DEFAULT, SOURCE_STATIC_BROKER, SOURCE_TOPIC};
use crate::broker::Broker;
use crate::config::{ConfigDef, ConfigError, Kind, TOPIC_CONFIGS, TopicConfig};
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
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            match res.resource_type {
                TOPIC => match image.topics.get(name) {
                    Some(topic) => {
                        let configs = topic
                            .config
                            .entries(&broker.config)
                            .filter(|(def, _, _)| wanted(&res.configuration_keys, def.name))
                            .map(|(def, value, is_override)| {
                                let broker_key = TOPIC_CONFIGS
                                    .iter()
                                    .find(|(d, _)| d.name == def.name)
                                    .map_or("", |(_, bk)| bk);
                                let broker_source = if broker.config.is_set(broker_key) {
                                    SOURCE_STATIC_BROKER
                                } else {
                                    SOURCE_DEFAULT
                                };
                                let mut synonyms = Vec::new();
                                if req.include_synonyms {
                                    if is_override {
                                        synonyms.push(
                                            DescribeConfigsSynonym::default()
                                                .with_name(text(def.name))
                                                .with_value(Some(text(value.clone())))
                                                .with_source(SOURCE_TOPIC),
                                        );
                                    }
                                    let default =
                                        broker.config.get(broker_key).map(|v| text(v.to_owned()));
                                    synonyms.push(
                                        DescribeConfigsSynonym::default()
                                            .with_name(text(broker_key))
                                            .with_value(default)
                                            .with_source(broker_source),
                                    );
                                }
                                let source = if is_override {
                                    SOURCE_TOPIC
                                } else {
                                    broker_source
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
                            .collect();
                        result = result.with_configs(configs);
                    }
                    None => {
                        result = result
                            .with_error_code(3)
                            .with_error_message(Some(text(format!("unknown topic '{name}'"))))
                    }
                },
                BROKER if name.is_empty() || name == broker.node_id.to_string() => {
                    let configs = broker
                        .config
                        .entries()
                        .filter(|(def, _, _)| wanted(&res.configuration_keys, def.name))
                        .map(|(def, value, set)| {
                            let source = if set {
                                SOURCE_STATIC_BROKER
                            } else {
                                SOURCE_DEFAULT
                            };
                            let synonyms = if req.include_synonyms {
                                vec![
                                    DescribeConfigsSynonym::default()
                                        .with_name(text(def.name))
                                        .with_value(value.map(|v| text(v.to_owned())))
                                        .with_source(source),
                                ]
                            } else {
                                vec![]
                            };
                            entry(
                                def,
                                value.map(str::to_owned),
                                source,
                                true,
                                synonyms,
                                version,
                                req.include_documentation,
                            )
                        })
                        .collect();
                    result = result.with_configs(configs);
                }
                BROKER => {
                    result = result
                        .with_error_code(42)
                        .with_error_message(Some(text(format!(
                            "this is broker {}, not '{name}'",
                            broker.node_id
                        ))))
                }
                other => {
                    result = result
                        .with_error_code(42)
                        .with_error_message(Some(text(format!(
                            "resource type {other} is not supported"
                        ))))
                }
            }
            result
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Why an alteration was refused: `(code, message)`.
type Refusal = (i16, String);

fn broker_read_only(broker: &Broker) -> Refusal {
    (
        40,
        format!(
            "broker {} configs are static (set with --config/--set at start-up) and cannot be altered",
            broker.node_id
        ),
    )
}

async fn alter_topic(
    broker: &Arc<Broker>,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut TopicConfig) -> Result<(), ConfigError>,
) -> Result<(), Refusal> {
    let image = broker.image();
    let topic = image
        .topics
        .get(name)
        .ok_or_else(|| (3, format!("unknown topic '{name}'")))?;
    let mut config = topic.config.clone();
    change(&mut config).map_err(|e| (ControllerError::from(e.clone()).code(), e.to_string()))?;
    if validate_only {
        return Ok(());
    }
    match broker
        .submit(ControllerRequest::AlterTopicConfig {
            name: name.to_owned(),
            config,
        })
        .await
    {
        Ok(_) => {
            info!(topic = %name, "topic config changed");
            Ok(())
        }
        Err(e) => Err((e.code, e.message)),
    }
}

/// Applies `change` to one resource: topic configs change, broker configs are read-only.
async fn alter_resource(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut TopicConfig) -> Result<(), ConfigError>,
) -> Result<(), Refusal> {
    match resource_type {
        TOPIC => alter_topic(broker, name, validate_only, change).await,
        BROKER => Err(broker_read_only(broker)),
        other => Err((42, format!("resource type {other} is not supported"))),
    }
}

/// Handles AlterConfigs: replaces a topic's whole set of overrides.
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
                *config =
                    TopicConfig::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
                Ok(())
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
/// apply to list keys, of which topics have only `cleanup.policy`).
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
