//! FindCoordinator: a group's coordinator is the leader of its
//! `__consumer_offsets` partition (Kafka's rule). Transactions are not
//! implemented, so there is no transaction coordinator.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::warn;

use crate::broker::{Broker, OFFSETS_TOPIC};
use crate::protocol::dispatch::text;

const GROUP: i8 = 0;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;

async fn lookup(broker: &Arc<Broker>, key: &StrBytes, key_type: i8) -> Coordinator {
    let base = Coordinator::default().with_key(key.clone());
    if key_type != GROUP {
        return base
            .with_error_code(15)
            .with_error_message(Some(text("transactions are not supported by this broker")))
            .with_node_id(BrokerId(-1))
            .with_port(-1);
    }
    if let Err(e) = broker.ensure_offsets_topic().await {
        warn!(error = %e, "cannot create __consumer_offsets");
        return base
            .with_error_code(15)
            .with_error_message(Some(text(e)))
            .with_node_id(BrokerId(-1))
            .with_port(-1);
    }
    let partition = broker.groups.partition_for(key.as_str());
    let image = broker.image();
    let leader = image
        .topics
        .get(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.get(&partition))
        .map(|p| p.leader)
        .and_then(|l| image.brokers.get(&l).filter(|b| !b.fenced));
    match leader {
        Some(b) => base
            .with_node_id(BrokerId(b.node_id))
            .with_host(text(b.host.clone()))
            .with_port(b.port),
        None => base
            .with_error_code(COORDINATOR_NOT_AVAILABLE)
            .with_error_message(Some(text(format!(
                "{OFFSETS_TOPIC}-{partition} has no leader right now"
            ))))
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    }
}

/// Handles FindCoordinator (one key before v4, a list from v4).
pub async fn find_coordinator(
    broker: &Arc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in &req.coordinator_keys {
            coordinators.push(lookup(broker, key, req.key_type).await);
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = lookup(broker, &req.key, req.key_type).await;
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        response = response.with_error_message(c.error_message);
    }
    response
}
