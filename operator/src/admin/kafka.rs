//! A small Kafka admin client: one TCP connection to one broker, requests
//! encoded and responses decoded with the `kafka-protocol` crate, versions
//! negotiated with ApiVersions. Used for topics (Metadata, CreateTopics,
//! CreatePartitions, DescribeConfigs, IncrementalAlterConfigs, DeleteTopics),
//! reassignments (AlterPartitionReassignments, ListPartitionReassignments)
//! and replica sizes (DescribeLogDirs).
//!
//! Requests go to whichever broker the connection reaches; like KRaft
//! brokers, Skiff brokers forward controller-bound requests themselves.
//! DescribeLogDirs is the exception: a broker answers it for itself only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest, BrokerId,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeLogDirsRequest, IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest,
    MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::plan::rebalance::ReplicaSizes;
use crate::plan::topic::{ObservedTopic, PartitionState};

/// Bound on one request/response exchange.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the brokers may take to apply a topic change.
const OPERATION_TIMEOUT_MS: i32 = 30_000;
/// Largest response accepted.
const MAX_FRAME: usize = 64 << 20;
/// DescribeConfigs/IncrementalAlterConfigs resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs config sources: a topic's own (dynamic) config, and the
/// cluster-wide dynamic broker defaults.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC: i16 = 3;
/// TOPIC_ALREADY_EXISTS.
const TOPIC_EXISTS: i16 = 36;
const CLIENT_ID: &str = "skiff-operator";

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The connection failed or timed out.
    #[error("{api:?} to {addr}: {reason}")]
    Connection {
        /// Request.
        api: ApiKey,
        /// Broker address.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The broker does not speak a version of this API the client knows.
    #[error("the broker at {addr} does not support {api:?}")]
    Unsupported {
        /// Request.
        api: ApiKey,
        /// Broker address.
        addr: String,
    },
    /// The broker answered with an error code.
    #[error("{api:?} {what}: {error}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        /// Request.
        api: ApiKey,
        /// What it was about (topic, partition).
        what: String,
        /// The Kafka error.
        error: String,
        /// The broker's message, if any.
        message: Option<String>,
    },
}

impl KafkaError {
    /// Whether retrying later may help (everything but unsupported APIs).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Unsupported { .. })
    }
}

/// An open connection to one broker.
#[derive(Debug)]
pub struct KafkaAdmin {
    addr: String,
    stream: TcpStream,
    correlation_id: i32,
    /// API key → (min, max) version the broker supports.
    versions: BTreeMap<i16, (i16, i16)>,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn broker_error(api: ApiKey, what: &str, code: i16, message: Option<&StrBytes>) -> KafkaError {
    KafkaError::Broker {
        api,
        what: what.to_owned(),
        error: code
            .err()
            .map(|e| format!("{e:?}"))
            .unwrap_or_else(|| code.to_string()),
        message: message.map(|m| m.to_string()),
    }
}

impl KafkaAdmin {
    /// Connects to the broker at `addr` and learns its API versions.
    pub async fn connect(addr: &str) -> Result<Self, KafkaError> {
        let fail = |reason: String| KafkaError::Connection {
            api: ApiKey::ApiVersions,
            addr: addr.to_owned(),
            reason,
        };
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| fail(format!("no connection within {TIMEOUT:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        let mut admin = Self {
            addr: addr.to_owned(),
            stream,
            correlation_id: 0,
            versions: BTreeMap::new(),
        };
        // Version 0 is understood by every broker and has a plain header.
        let response = admin.exchange(ApiVersionsRequest::default(), 0).await?;
        if response.error_code != 0 {
            return Err(broker_error(
                ApiKey::ApiVersions,
                addr,
                response.error_code,
                None,
            ));
        }
        admin.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(admin)
    }

    /// The highest version of `R` both sides speak.
    fn version<R: Request>(&self) -> Result<i16, KafkaError> {
        let api = ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions);
        let unsupported = || KafkaError::Unsupported {
            api,
            addr: self.addr.clone(),
        };
        let (min, max) = self
            .versions
            .get(&R::KEY)
            .copied()
            .ok_or_else(unsupported)?;
        let version = max.min(R::VERSIONS.max);
        if version < min.max(R::VERSIONS.min) {
            return Err(unsupported());
        }
        Ok(version)
    }

    /// Whether the broker supports `R` at all.
    fn supports<R: Request>(&self) -> bool {
        self.version::<R>().is_ok()
    }

    async fn send<R: Request>(&mut self, request: R) -> Result<R::Response, KafkaError> {
        let version = self.version::<R>()?;
        self.exchange(request, version).await
    }

    async fn exchange<R: Request>(
        &mut self,
        request: R,
        version: i16,
    ) -> Result<R::Response, KafkaError> {
        let api = ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions);
        let addr = self.addr.clone();
        let fail = |reason: String| KafkaError::Connection {
            api,
            addr: addr.clone(),
            reason,
        };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(str_bytes(CLIENT_ID)));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api.request_header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| fail(format!("encoding: {e}")))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_u32(u32::try_from(body.len()).map_err(|_| fail("request too large".into()))?);
        frame.extend_from_slice(&body);
        let exchange = async {
            self.stream.write_all(&frame).await?;
            let len = self.stream.read_u32().await? as usize;
            if len > MAX_FRAME {
                return Err(std::io::Error::other(format!("response of {len} bytes")));
            }
            let mut buf = vec![0u8; len];
            self.stream.read_exact(&mut buf).await?;
            Ok(Bytes::from(buf))
        };
        let mut response = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| fail(format!("no response within {TIMEOUT:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        let header = ResponseHeader::decode(&mut response, api.response_header_version(version))
            .map_err(|e| fail(format!("decoding the response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(fail(format!(
                "correlation id {} in the response to {correlation_id}",
                header.correlation_id
            )));
        }
        let decoded = R::Response::decode(&mut response, version)
            .map_err(|e| fail(format!("decoding the response: {e}")))?;
        if response.has_remaining() {
            tracing::debug!(api = ?api, left = response.remaining(), "response has trailing bytes");
        }
        Ok(decoded)
    }

    /// Metadata of `topics` (all topics when `None`).
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
    ) -> Result<MetadataResponse, KafkaError> {
        // Never auto-create: a Topic being reconciled must be created with its spec.
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(str_bytes(n))))
                    })
                    .collect()
            }));
        self.send(request).await
    }

    /// The topic as the brokers have it, or `None` if it does not exist.
    pub async fn describe_topic(
        &mut self,
        name: &str,
    ) -> Result<Option<ObservedTopic>, KafkaError> {
        let metadata = self.metadata(Some(&[name.to_owned()])).await?;
        let Some(topic) = metadata.topics.into_iter().next() else {
            return Ok(None);
        };
        match topic.error_code {
            0 => {}
            UNKNOWN_TOPIC => return Ok(None),
            code => return Err(broker_error(ApiKey::Metadata, name, code, None)),
        }
        let mut partitions: Vec<PartitionState> = topic
            .partitions
            .iter()
            .map(|p| PartitionState {
                id: p.partition_index,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                leader: p.leader_id.0,
            })
            .collect();
        partitions.sort_by_key(|p| p.id);
        let config = self.topic_config(name).await?;
        let reassigning = self.reassigning(name).await?;
        Ok(Some(ObservedTopic {
            partitions,
            config,
            reassigning,
        }))
    }

    /// The configs set on the topic itself.
    async fn topic_config(&mut self, name: &str) -> Result<BTreeMap<String, String>, KafkaError> {
        self.described_config(RESOURCE_TOPIC, name, SOURCE_DYNAMIC_TOPIC)
            .await
    }

    /// The cluster-wide dynamic broker settings (Kafka's `--entity-default`).
    pub async fn cluster_broker_config(&mut self) -> Result<BTreeMap<String, String>, KafkaError> {
        self.described_config(RESOURCE_BROKER, "", SOURCE_DYNAMIC_DEFAULT_BROKER)
            .await
    }

    /// Sets `set` and removes `delete` in the cluster-wide dynamic broker settings.
    pub async fn alter_cluster_broker_config(
        &mut self,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), KafkaError> {
        self.alter_config(RESOURCE_BROKER, "", set, delete).await
    }

    /// The configs of one resource that come from `source`.
    async fn described_config(
        &mut self,
        resource_type: i8,
        name: &str,
        source: i8,
    ) -> Result<BTreeMap<String, String>, KafkaError> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(str_bytes(name))
                // null asks for every key; an empty list would ask for none.
                .with_configuration_keys(None),
        ]);
        let response = self.send(request).await?;
        let mut config = BTreeMap::new();
        for result in response.results {
            if result.error_code != 0 {
                return Err(broker_error(
                    ApiKey::DescribeConfigs,
                    name,
                    result.error_code,
                    result.error_message.as_ref(),
                ));
            }
            for c in result.configs {
                if c.config_source == source
                    && let Some(value) = c.value
                {
                    config.insert(c.name.to_string(), value.to_string());
                }
            }
        }
        Ok(config)
    }

    /// Partitions of `name` being reassigned; empty when the broker has no
    /// ListPartitionReassignments (it cannot be reassigning then).
    async fn reassigning(&mut self, name: &str) -> Result<BTreeSet<i32>, KafkaError> {
        if !self.supports::<ListPartitionReassignmentsRequest>() {
            return Ok(BTreeSet::new());
        }
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_topics(None);
        let response = self.send(request).await?;
        if response.error_code != 0 {
            return Err(broker_error(
                ApiKey::ListPartitionReassignments,
                name,
                response.error_code,
                response.error_message.as_ref(),
            ));
        }
        Ok(response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == name)
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect())
    }

    /// Every partition of every topic, for cluster-wide planning.
    pub async fn all_partitions(
        &mut self,
    ) -> Result<Vec<crate::plan::scale_down::Replicas>, KafkaError> {
        let metadata = self.metadata(None).await?;
        let mut out = Vec::new();
        for t in metadata.topics {
            let Some(name) = t.name else { continue };
            for p in t.partitions {
                out.push(crate::plan::scale_down::Replicas {
                    topic: name.0.to_string(),
                    partition: p.partition_index,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                });
            }
        }
        Ok(out)
    }

    /// Partitions being reassigned in the whole cluster, each with the
    /// replicas it is removing (none when the broker has no
    /// ListPartitionReassignments: it cannot be reassigning then).
    pub async fn reassignments_in_progress(
        &mut self,
    ) -> Result<crate::plan::scale_down::Removing, KafkaError> {
        if !self.supports::<ListPartitionReassignmentsRequest>() {
            return Ok(BTreeMap::new());
        }
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_topics(None);
        let response = self.send(request).await?;
        if response.error_code != 0 {
            return Err(broker_error(
                ApiKey::ListPartitionReassignments,
                "cluster",
                response.error_code,
                response.error_message.as_ref(),
            ));
        }
        Ok(response
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        (t.name.0.to_string(), p.partition_index),
                        p.removing_replicas.iter().map(|b| b.0).collect(),
                    )
                })
            })
            .collect())
    }

    /// Sizes of the replicas the connected broker holds (every partition of
    /// every log directory). Replicas being copied between directories of the
    /// broker (future replicas) are left out; a directory the broker reports
    /// with an error (offline) lists nothing.
    pub async fn describe_log_dirs(&mut self) -> Result<ReplicaSizes, KafkaError> {
        // A null topic list asks for every partition.
        let request = DescribeLogDirsRequest::default().with_topics(None);
        let response = self.send(request).await?;
        if response.error_code != 0 {
            return Err(broker_error(
                ApiKey::DescribeLogDirs,
                &self.addr,
                response.error_code,
                None,
            ));
        }
        let mut sizes = ReplicaSizes::new();
        for dir in response.results {
            if dir.error_code != 0 {
                tracing::debug!(addr = %self.addr, log_dir = %dir.log_dir, error_code = dir.error_code, "log directory reported with an error");
            }
            for topic in dir.topics {
                for p in topic.partitions.iter().filter(|p| !p.is_future_key) {
                    sizes.insert(
                        (topic.name.0.to_string(), p.partition_index),
                        u64::try_from(p.partition_size).unwrap_or(0),
                    );
                }
            }
        }
        Ok(sizes)
    }

    /// Creates a topic; one that already exists counts as created (adopted).
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        config: &BTreeMap<String, String>,
    ) -> Result<(), KafkaError> {
        let topic = CreatableTopic::default()
            .with_name(TopicName(str_bytes(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                config
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(str_bytes(k))
                            .with_value(Some(str_bytes(v)))
                    })
                    .collect(),
            );
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(OPERATION_TIMEOUT_MS);
        let response = self.send(request).await?;
        for t in response.topics {
            if t.error_code != 0 && t.error_code != TOPIC_EXISTS {
                return Err(broker_error(
                    ApiKey::CreateTopics,
                    name,
                    t.error_code,
                    t.error_message.as_ref(),
                ));
            }
        }
        Ok(())
    }

    /// Raises the topic's partition count to `total`.
    pub async fn create_partitions(&mut self, name: &str, total: i32) -> Result<(), KafkaError> {
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(TopicName(str_bytes(name)))
                    .with_count(total)
                    .with_assignments(None),
            ])
            .with_timeout_ms(OPERATION_TIMEOUT_MS);
        let response = self.send(request).await?;
        for r in response.results {
            if r.error_code != 0 {
                return Err(broker_error(
                    ApiKey::CreatePartitions,
                    name,
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
        }
        Ok(())
    }

    /// Sets `set` and removes `delete` on the topic.
    pub async fn alter_topic_config(
        &mut self,
        name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), KafkaError> {
        self.alter_config(RESOURCE_TOPIC, name, set, delete).await
    }

    /// Sets `set` and removes `delete` on one resource.
    async fn alter_config(
        &mut self,
        resource_type: i8,
        name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), KafkaError> {
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(str_bytes(k))
                    .with_config_operation(OP_SET)
                    .with_value(Some(str_bytes(v)))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(str_bytes(k))
                .with_config_operation(OP_DELETE)
                .with_value(None)
        }));
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(str_bytes(name))
                .with_configs(configs),
        ]);
        let response = self.send(request).await?;
        for r in response.responses {
            if r.error_code != 0 {
                return Err(broker_error(
                    ApiKey::IncrementalAlterConfigs,
                    name,
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
        }
        Ok(())
    }

    /// Moves the partitions of `name` to the given replica lists.
    pub async fn reassign(
        &mut self,
        name: &str,
        moves: &BTreeMap<i32, Vec<i32>>,
    ) -> Result<(), KafkaError> {
        let partitions = moves
            .iter()
            .map(|(p, replicas)| {
                ReassignablePartition::default()
                    .with_partition_index(*p)
                    .with_replicas(Some(replicas.iter().map(|b| BrokerId(*b)).collect()))
            })
            .collect();
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_allow_replication_factor_change(true)
            .with_topics(vec![
                ReassignableTopic::default()
                    .with_name(TopicName(str_bytes(name)))
                    .with_partitions(partitions),
            ]);
        let response = self.send(request).await?;
        if response.error_code != 0 {
            return Err(broker_error(
                ApiKey::AlterPartitionReassignments,
                name,
                response.error_code,
                response.error_message.as_ref(),
            ));
        }
        for t in response.responses {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(broker_error(
                        ApiKey::AlterPartitionReassignments,
                        &format!("{name}-{}", p.partition_index),
                        p.error_code,
                        p.error_message.as_ref(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Deletes the topic; one that does not exist counts as deleted.
    pub async fn delete_topic(&mut self, name: &str) -> Result<(), KafkaError> {
        let version = self.version::<DeleteTopicsRequest>()?;
        let request = if version >= 6 {
            use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(TopicName(str_bytes(name)))),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![TopicName(str_bytes(name))])
        }
        .with_timeout_ms(OPERATION_TIMEOUT_MS);
        let response = self.exchange(request, version).await?;
        for r in response.responses {
            if r.error_code != 0 && r.error_code != UNKNOWN_TOPIC {
                return Err(broker_error(
                    ApiKey::DeleteTopics,
                    name,
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
        }
        Ok(())
    }
}
