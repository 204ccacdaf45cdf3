//! CreateTopics, DeleteTopics and CreatePartitions.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use tracing::info;
use uuid::Uuid;

use super::configs::source_code;
use crate::broker::{Broker, OFFSETS_TOPIC};
use crate::config::{TopicConfig, broker_default_key};
use crate::metadata::controller::{self, ControllerError, NewTopic};
use crate::metadata::request::ControllerRequest;
use crate::protocol::dispatch::text;

/// Kafka's config sources for DescribeConfigs/CreateTopics.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// Handles CreateTopics.
pub async fn create_topics(
    broker: &Arc<Broker>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.as_str().to_owned();
        let mut result = CreatableTopicResult::default().with_name(t.name.clone());
        let config = TopicConfig::from_pairs(
            t.configs
                .iter()
                .filter_map(|c| c.value.as_ref().map(|v| (c.name.as_str(), v.as_str()))),
        );
        let outcome = match config {
            Err(e) => Err((
                ControllerError::from(e).code(),
                e_to_string(&t.configs, &name),
            )),
            Ok(config) => {
                let topic = NewTopic {
                    name: name.clone(),
                    partitions: t.num_partitions,
                    replication_factor: t.replication_factor as i32,
                    assignments: t
                        .assignments
                        .iter()
                        .map(|a| {
                            (
                                a.partition_index,
                                a.broker_ids.iter().map(|b| b.0).collect(),
                            )
                        })
                        .collect(),
                    config,
                };
                broker
                    .create_topic(topic, req.validate_only)
                    .await
                    .map_err(|e| (e.code, e.message))
            }
        };
        match outcome {
            Ok(id) => {
                info!(topic = %name, validate_only = req.validate_only, "topic created");
                if version >= 5 {
                    let image = broker.image();
                    let (partitions, rf, config) = match image.topics.get(&name) {
                        Some(t) => (
                            t.partitions.len() as i32,
                            t.partitions.values().next().map_or(1, |p| p.replicas.len()) as i16,
                            t.config.clone(),
                        ),
                        None => (
                            t.num_partitions,
                            t.replication_factor,
                            TopicConfig::default(),
                        ),
                    };
                    let effective = broker.effective_config(&image);
                    let configs = config
                        .entries(&effective)
                        .map(|(def, value, is_override)| {
                            let broker_key = broker_default_key(def.name).unwrap_or_default();
                            CreatableTopicConfigs::default()
                                .with_name(text(def.name))
                                .with_value(Some(text(value)))
                                .with_config_source(if is_override {
                                    SOURCE_TOPIC
                                } else {
                                    source_code(effective.source(broker_key))
                                })
                        })
                        .collect();
                    result = result
                        .with_num_partitions(partitions)
                        .with_replication_factor(rf)
                        .with_configs(Some(configs));
                }
                if version >= 7 {
                    result = result.with_topic_id(id);
                }
            }
            Err((code, message)) => {
                result = result
                    .with_error_code(code)
                    .with_error_message(Some(text(message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1);
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn e_to_string(
    configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig],
    topic: &str,
) -> String {
    match TopicConfig::from_pairs(
        configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.as_str(), v.as_str()))),
    ) {
        Err(e) => format!("topic '{topic}': {e}"),
        Ok(_) => String::new(),
    }
}

/// Handles DeleteTopics (by name, or by id from v6).
pub async fn delete_topics(
    broker: &Arc<Broker>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.as_str().to_owned()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.as_str().to_owned()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let image = broker.image();
        let found = match &name {
            Some(n) => image.topics.get(n).map(|t| (t.name.clone(), t.id)),
            None => image.topic_by_id(&id).map(|t| (t.name.clone(), t.id)),
        };
        let mut result = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(text(n))))
            .with_topic_id(id);
        let outcome = match found {
            None if name.is_some() => {
                Err((3, format!("unknown topic '{}'", name.unwrap_or_default())))
            }
            None => Err((100, format!("unknown topic id {id}"))),
            Some((n, _)) if n == OFFSETS_TOPIC => Err((
                17,
                format!("'{OFFSETS_TOPIC}' is internal and cannot be deleted"),
            )),
            Some(_) if !broker.config.flag("delete.topic.enable") => Err((
                ControllerError::DeletionDisabled.code(),
                ControllerError::DeletionDisabled.to_string(),
            )),
            Some((n, topic_id)) => match broker
                .submit(ControllerRequest::DeleteTopic { id: topic_id })
                .await
            {
                Ok(_) => {
                    info!(topic = %n, "topic deleted");
                    result = result
                        .with_name(Some(TopicName(text(n))))
                        .with_topic_id(topic_id);
                    Ok(())
                }
                Err(e) => Err((e.code, e.message)),
            },
        };
        if let Err((code, message)) = outcome {
            result = result.with_error_code(code);
            if version >= 5 {
                result = result.with_error_message(Some(text(message)));
            }
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Handles CreatePartitions (the count only grows).
pub async fn create_partitions(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.as_str().to_owned();
        let assignments: Option<Vec<Vec<i32>>> = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let outcome = if req.validate_only {
            controller::create_partitions(&broker.image(), &name, t.count, assignments.as_deref())
                .map(|_| ())
                .map_err(|e| (e.code(), e.to_string()))
        } else {
            match broker
                .submit(ControllerRequest::CreatePartitions {
                    name: name.clone(),
                    count: t.count,
                    assignments,
                })
                .await
            {
                Ok(_) => {
                    info!(topic = %name, count = t.count, "partitions added");
                    Ok(())
                }
                Err(e) => Err((e.code, e.message)),
            }
        };
        let mut result = CreatePartitionsTopicResult::default().with_name(t.name);
        if let Err((code, message)) = outcome {
            result = result
                .with_error_code(code)
                .with_error_message(Some(text(message)));
        }
        results.push(result);
    }
    CreatePartitionsResponse::default().with_results(results)
}
