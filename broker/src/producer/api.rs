//! InitProducerId and DescribeProducers. Producer ids come from blocks
//! allocated through the metadata, so they are unique across restarts.

use std::sync::Arc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId,
};
use tracing::warn;

use crate::broker::Broker;
use crate::protocol::dispatch::text;

/// Handles InitProducerId for idempotent producers (transactions are not supported).
pub async fn init_producer_id(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let failed = |code| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        // Without a transaction coordinator; clients report it and do not retry forever.
        return failed(15);
    }
    // KIP-360: a producer that knows its id asks for an epoch bump.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return InitProducerIdResponse::default()
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match broker.next_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            warn!(error = %e, "cannot allocate producer ids");
            failed(15)
        }
    }
}

/// Handles DescribeProducers.
pub fn describe_producers(
    broker: &Arc<Broker>,
    req: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&i| match broker.replicas.get(t.name.0.as_str(), i) {
                    Some(p) => PartitionResponse::default()
                        .with_partition_index(i)
                        .with_active_producers(
                            p.producers()
                                .into_iter()
                                .map(|s| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(s.producer_id))
                                        .with_producer_epoch(s.epoch as i32)
                                        .with_last_sequence(s.last_sequence)
                                        .with_last_timestamp(s.last_timestamp)
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(-1)
                                })
                                .collect(),
                        ),
                    None => PartitionResponse::default()
                        .with_partition_index(i)
                        .with_error_code(3)
                        .with_error_message(Some(text("unknown partition"))),
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
