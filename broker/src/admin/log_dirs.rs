//! DescribeLogDirs: the replicas this broker holds, with their log sizes, and
//! the space of the volume under its data directory.
//!
//! A broker answers for its own replicas only (as Kafka does), from the one
//! data directory it has. Must not: ask other brokers or the controller.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use crate::broker::Broker;
use crate::protocol::dispatch::text;

/// Handles DescribeLogDirs.
pub fn describe_log_dirs(
    broker: &Arc<Broker>,
    req: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    // Requested partitions by topic; `None` (a null array) asks for every one.
    let wanted: Option<BTreeMap<&str, BTreeSet<i32>>> = req.topics.as_ref().map(|topics| {
        let mut by_topic: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
        for t in topics {
            by_topic
                .entry(t.topic.0.as_str())
                .or_default()
                .extend(t.partitions.iter().copied());
        }
        by_topic
    });
    let mut sizes: BTreeMap<Arc<str>, BTreeMap<i32, u64>> = BTreeMap::new();
    for p in broker.replicas.all() {
        let asked = wanted.as_ref().is_none_or(|w| {
            w.get(&*p.topic)
                .is_some_and(|parts| parts.contains(&p.index))
        });
        if asked {
            sizes
                .entry(p.topic.clone())
                .or_default()
                .insert(p.index, p.size_bytes());
        }
    }
    let topics = sizes
        .into_iter()
        .map(|(topic, partitions)| {
            DescribeLogDirsTopic::default()
                .with_name(TopicName(text(&*topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, bytes)| {
                            DescribeLogDirsPartition::default()
                                .with_partition_index(index)
                                .with_partition_size(i64::try_from(bytes).unwrap_or(i64::MAX))
                                .with_offset_lag(0)
                                .with_is_future_key(false)
                        })
                        .collect(),
                )
        })
        .collect();
    let dir = broker.replicas.data_dir();
    // Kafka reports the absolute path; a relative --data-dir is resolved
    // against the working directory (symlinks are kept as configured).
    let log_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let mut result = DescribeLogDirsResult::default()
        .with_error_code(0)
        .with_log_dir(text(log_dir.to_string_lossy()))
        .with_topics(topics);
    if version >= 4 {
        let (total, usable) = volume_space(dir);
        result = result.with_total_bytes(total).with_usable_bytes(usable);
    }
    DescribeLogDirsResponse::default()
        .with_error_code(0)
        .with_results(vec![result])
}

/// `(total, usable)` bytes of the file system holding `dir`, as Kafka reports
/// them (usable: what an unprivileged writer may still use); `(-1, -1)` if
/// the file system cannot be asked.
fn volume_space(dir: &Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let bytes =
                |blocks: u64| i64::try_from(blocks.saturating_mul(s.f_frsize)).unwrap_or(i64::MAX);
            (bytes(s.f_blocks), bytes(s.f_bavail))
        }
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "statvfs of the data directory failed");
            (-1, -1)
        }
    }
}
