//! DescribeCluster.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use crate::broker::Broker;
use crate::protocol::dispatch::text;

/// Handles DescribeCluster.
pub fn describe_cluster(
    broker: &Arc<Broker>,
    req: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let image = broker.image();
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(text(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(text))
        })
        .collect();
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(text(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(
            broker
                .active_controller()
                .filter(|c| image.brokers.get(c).is_some_and(|b| !b.fenced))
                .unwrap_or(broker.node_id),
        ))
        .with_brokers(brokers)
        .with_endpoint_type(req.endpoint_type.max(1));
    if req.include_cluster_authorized_operations {
        response.cluster_authorized_operations = -2_147_483_648;
    }
    response
}
