//! ListOffsets: earliest (-2), latest (-1: the high watermark), max timestamp
//! (-3), or the first offset at or after a timestamp.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// Handles ListOffsets.
pub fn list_offsets(
    broker: &Arc<Broker>,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let image = broker.image();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.as_str();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let meta = image
                        .topics
                        .get(name)
                        .and_then(|x| x.partitions.get(&p.partition_index));
                    let Some(meta) = meta else {
                        return base.with_error_code(3);
                    };
                    if meta.leader != broker.node_id {
                        return base.with_error_code(6);
                    }
                    let Some(partition) = broker.replicas.get(name, p.partition_index) else {
                        return base.with_error_code(6);
                    };
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < meta.leader_epoch {
                        return base.with_error_code(74);
                    }
                    let (start, hw, _) = partition.offsets();
                    // The leader epoch field exists from v4; older versions refuse a value.
                    let epoch = if version >= 4 {
                        partition.leader_epoch()
                    } else {
                        -1
                    };
                    match p.timestamp {
                        LATEST => base.with_offset(hw).with_leader_epoch(epoch),
                        EARLIEST => base.with_offset(start).with_leader_epoch(epoch),
                        MAX_TIMESTAMP => match partition.max_timestamp() {
                            Some((ts, offset)) if offset < hw => base
                                .with_offset(offset)
                                .with_timestamp(ts)
                                .with_leader_epoch(epoch),
                            _ => base,
                        },
                        ts if ts >= 0 => match partition.offset_for_timestamp(ts) {
                            Ok(Some((offset, found_ts))) => base
                                .with_offset(offset)
                                .with_timestamp(found_ts)
                                .with_leader_epoch(epoch),
                            Ok(None) => base,
                            Err(_) => base.with_error_code(56),
                        },
                        _ => base.with_error_code(42),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
