//! Request dispatch: parse the header, check the API version, decode with the
//! `kafka-protocol` crate, route to the concept that owns the API, encode the
//! response.
//!
//! Bad input never panics the broker: a malformed frame, an unknown API key or
//! an unsupported version closes only that connection, with a log line naming
//! the client, except ApiVersions, which answers UNSUPPORTED_VERSION as Kafka does.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader,
    ResponseKind, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tracing::{debug, warn};

use super::outgoing::{HoleyBuf, Outgoing};
use super::versions;
use crate::admin;
use crate::broker::Broker;
use crate::group::ClientInfo;
use crate::log::LogSlice;
use crate::metadata::api as metadata_api;
use crate::partition::{fetch, list_offsets, produce};
use crate::producer::api as producer_api;

/// What the connection does with a request.
#[allow(missing_debug_implementations)] // holds futures
pub enum Dispatched {
    /// Write the response the future yields (`None`: close the connection).
    Respond(BoxFuture<'static, Option<Outgoing>>),
    /// No response (produce with acks=0).
    Nothing,
    /// Close the connection; the reason is logged.
    Close(String),
}

/// A handler's answer: ready now, or after waiting (acks=all, long-poll).
#[allow(missing_debug_implementations)] // holds futures
pub enum Reply {
    Now(Box<ResponseKind>),
    Later(BoxFuture<'static, ResponseKind>),
    /// A response (now or later) whose records fields stand in for these
    /// file ranges, in order, to be sent from the files (Fetch).
    Files(BoxFuture<'static, (ResponseKind, Vec<LogSlice>)>),
    None,
}

impl Reply {
    /// A response that is ready now.
    pub fn now(response: ResponseKind) -> Self {
        Self::Now(Box::new(response))
    }
}

/// Parses and handles one request frame.
pub async fn dispatch(broker: &Arc<Broker>, mut frame: Bytes, peer: SocketAddr) -> Dispatched {
    if frame.len() < 8 {
        return Dispatched::Close(format!(
            "request of {} bytes is too short for a header",
            frame.len()
        ));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api) = ApiKey::try_from(key) else {
        return Dispatched::Close(format!("unknown API key {key}"));
    };
    let Some((min, max)) = versions::range(api) else {
        return Dispatched::Close(format!("{api:?} is not supported by this broker"));
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions {
            // Kafka answers an ApiVersions it cannot parse with a v0 response
            // carrying UNSUPPORTED_VERSION and the supported ranges.
            let response = api_versions_response(35);
            return respond_now(encode(
                ApiKey::ApiVersions,
                0,
                correlation_id,
                ResponseKind::ApiVersions(response),
                Vec::new(),
            ));
        }
        return Dispatched::Close(format!(
            "{api:?} v{version} is not supported (this broker serves v{min}..v{max})"
        ));
    }
    let header_version = api.request_header_version(version);
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let header = RequestHeader::decode(&mut frame, header_version)?;
        let body = RequestKind::decode(api, &mut frame, version)?;
        Ok::<_, anyhow::Error>((header, body))
    }));
    let (header, request) = match decoded {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(e)) => {
            return Dispatched::Close(format!(
                "malformed {api:?} v{version} request (correlation id {correlation_id}): {e}"
            ));
        }
        Err(_) => {
            return Dispatched::Close(format!(
                "malformed {api:?} v{version} request (correlation id {correlation_id}): decoder panicked"
            ));
        }
    };
    let client = header
        .client_id
        .as_ref()
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    debug!(%peer, %client, ?api, version, correlation_id, "request");
    let started = Instant::now();
    let client = ClientInfo {
        client_id: client,
        client_host: peer.ip().to_string(),
    };
    let reply = route(broker, request, version, client).await;
    let metrics = broker.metrics.clone();
    let api_name = format!("{api:?}");
    let finish = move |(response, files): (ResponseKind, Vec<LogSlice>)| {
        metrics
            .request_seconds
            .with_label_values(&[&api_name])
            .observe(started.elapsed().as_secs_f64());
        metrics.requests.with_label_values(&[&api_name, "ok"]).inc();
        encode(api, version, correlation_id, response, files)
    };
    match reply {
        Reply::Now(response) => respond_now(finish((*response, Vec::new()))),
        Reply::Later(fut) => Dispatched::Respond(fut.map(move |r| finish((r, Vec::new()))).boxed()),
        Reply::Files(fut) => Dispatched::Respond(fut.map(finish).boxed()),
        Reply::None => Dispatched::Nothing,
    }
}

fn respond_now(response: Option<Outgoing>) -> Dispatched {
    Dispatched::Respond(futures::future::ready(response).boxed())
}

async fn route(
    broker: &Arc<Broker>,
    request: RequestKind,
    version: i16,
    client: ClientInfo,
) -> Reply {
    use RequestKind as R;
    use ResponseKind as S;
    match request {
        R::ApiVersions(req) => Reply::now(S::ApiVersions(api_versions(&req))),
        R::Metadata(req) => Reply::now(S::Metadata(
            metadata_api::metadata(broker, req, version).await,
        )),
        R::Produce(req) => produce::produce(broker, req, version),
        R::Fetch(req) => fetch::fetch(broker, req, version),
        R::ListOffsets(req) => Reply::now(S::ListOffsets(list_offsets::list_offsets(
            broker, req, version,
        ))),
        R::CreateTopics(req) => Reply::now(S::CreateTopics(
            admin::topics::create_topics(broker, req, version).await,
        )),
        R::DeleteTopics(req) => Reply::now(S::DeleteTopics(
            admin::topics::delete_topics(broker, req, version).await,
        )),
        R::CreatePartitions(req) => Reply::now(S::CreatePartitions(
            admin::topics::create_partitions(broker, req, version).await,
        )),
        R::DescribeConfigs(req) => Reply::now(S::DescribeConfigs(
            admin::configs::describe_configs(broker, req, version),
        )),
        R::AlterConfigs(req) => Reply::now(S::AlterConfigs(
            admin::configs::alter_configs(broker, req, version).await,
        )),
        R::IncrementalAlterConfigs(req) => Reply::now(S::IncrementalAlterConfigs(
            admin::configs::incremental_alter_configs(broker, req, version).await,
        )),
        R::DescribeLogDirs(req) => Reply::now(S::DescribeLogDirs(
            admin::log_dirs::describe_log_dirs(broker, req, version),
        )),
        R::DescribeCluster(req) => Reply::now(S::DescribeCluster(
            admin::cluster::describe_cluster(broker, req, version),
        )),
        R::AlterPartitionReassignments(req) => Reply::now(S::AlterPartitionReassignments(
            admin::reassignments::alter_partition_reassignments(broker, req, version).await,
        )),
        R::ListPartitionReassignments(req) => Reply::now(S::ListPartitionReassignments(
            admin::reassignments::list_partition_reassignments(broker, req, version),
        )),
        R::ElectLeaders(req) => Reply::now(S::ElectLeaders(
            admin::reassignments::elect_leaders(broker, req, version).await,
        )),
        R::FindCoordinator(req) => Reply::now(S::FindCoordinator(
            admin::coordinator::find_coordinator(broker, req, version).await,
        )),
        R::InitProducerId(req) => Reply::now(S::InitProducerId(
            producer_api::init_producer_id(broker, req, version).await,
        )),
        R::DescribeProducers(req) => Reply::now(S::DescribeProducers(
            producer_api::describe_producers(broker, req, version),
        )),
        R::JoinGroup(req) => {
            let groups = broker.groups.clone();
            Reply::Later(
                async move { S::JoinGroup(groups.join_group_from(req, version, &client).await) }
                    .boxed(),
            )
        }
        R::SyncGroup(req) => {
            let groups = broker.groups.clone();
            Reply::Later(async move { S::SyncGroup(groups.sync_group(req, version).await) }.boxed())
        }
        R::Heartbeat(req) => Reply::now(S::Heartbeat(broker.groups.heartbeat(req, version).await)),
        R::LeaveGroup(req) => {
            Reply::now(S::LeaveGroup(broker.groups.leave_group(req, version).await))
        }
        R::OffsetCommit(req) => {
            let groups = broker.groups.clone();
            Reply::Later(
                async move { S::OffsetCommit(groups.offset_commit(req, version).await) }.boxed(),
            )
        }
        R::OffsetFetch(req) => Reply::now(S::OffsetFetch(
            broker.groups.offset_fetch(req, version).await,
        )),
        R::ListGroups(req) => {
            Reply::now(S::ListGroups(broker.groups.list_groups(req, version).await))
        }
        R::DescribeGroups(req) => Reply::now(S::DescribeGroups(
            broker.groups.describe_groups(req, version).await,
        )),
        R::DeleteGroups(req) => Reply::now(S::DeleteGroups(
            broker.groups.delete_groups(req, version).await,
        )),
        R::OffsetDelete(req) => Reply::now(S::OffsetDelete(
            broker.groups.offset_delete(req, version).await,
        )),
        R::SaslHandshake(_) => {
            // No SASL yet: Kafka's answer for an unsupported mechanism, listing none.
            Reply::now(S::SaslHandshake(
                SaslHandshakeResponse::default()
                    .with_error_code(33)
                    .with_mechanisms(vec![]),
            ))
        }
        other => {
            // `versions::range` only lets implemented APIs through.
            warn!(api = ?api_key_of(&other), "request for an API without a handler");
            Reply::now(S::ApiVersions(api_versions_response(35)))
        }
    }
}

fn api_key_of(r: &RequestKind) -> String {
    format!("{r:?}")
        .split('(')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    let api_keys = versions::SUPPORTED
        .iter()
        .map(|&(api, min, max)| {
            ApiVersion::default()
                .with_api_key(api as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

fn api_versions(_req: &ApiVersionsRequest) -> ApiVersionsResponse {
    api_versions_response(0)
}

/// Encodes header and body, leaving `files` where their stand-ins are; an
/// encoding failure is a bug, logged, and closes the connection.
fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: ResponseKind,
    files: Vec<LogSlice>,
) -> Option<Outgoing> {
    let mut buf = HoleyBuf::with_capacity(256);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(&mut buf, api.response_header_version(version))
        .and_then(|()| match &response {
            // Only fetches carry stand-ins; `ResponseKind::encode` wants a `BytesMut`.
            ResponseKind::Fetch(fetch) => fetch.encode(&mut buf, version),
            other => other.encode(buf.bytes_mut(), version),
        });
    let result = encoded.and_then(|()| buf.finish(files).map_err(anyhow::Error::msg));
    match result {
        Ok(outgoing) => Some(outgoing),
        Err(e) => {
            warn!(?api, version, error = %e, "could not encode response; closing connection");
            None
        }
    }
}

/// A string for a response field.
pub fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
