//! The consumer-group coordinator's storage on the real `__consumer_offsets`
//! partitions: records go in as ordinary record batches, appended as leader
//! and acknowledged once durable, so committed offsets survive restarts (and,
//! with replication, the loss of a broker).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::{AckError, ProduceError, ReplicaManager, now_ms};
use crate::broker::OFFSETS_TOPIC;
use crate::group::{OffsetStore, StoreError, StoredRecord};

/// How long a write waits for the ISR (Kafka's `offsets.commit.timeout.ms`).
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// [`OffsetStore`] backed by this broker's `__consumer_offsets` partitions.
#[derive(Debug)]
pub struct PartitionOffsetStore {
    replicas: Arc<ReplicaManager>,
}

impl PartitionOffsetStore {
    /// A store over the manager's partitions.
    pub fn new(replicas: Arc<ReplicaManager>) -> Self {
        Self { replicas }
    }
}

fn encode(records: &[StoredRecord]) -> Result<BytesMut, StoreError> {
    let now = now_ms();
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: Some(k.clone()),
            value: v.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| StoreError::new(format!("encoding offsets batch: {e}")))?;
    Ok(buf)
}

impl OffsetStore for PartitionOffsetStore {
    fn append(
        &self,
        partition: i32,
        records: Vec<StoredRecord>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        // Append now, in call order (the coordinator calls under its lock); only
        // the wait for durability is deferred to the returned future.
        let appended = (|| {
            let p = self
                .replicas
                .get(OFFSETS_TOPIC, partition)
                .ok_or(StoreError::NotLeader { partition })?;
            if records.is_empty() {
                return Ok(None);
            }
            let mut batch = encode(&records)?;
            let a = p.append(&mut batch, true).map_err(|e| match e {
                ProduceError::NotLeader { .. } => StoreError::NotLeader { partition },
                e => StoreError::new(format!("{OFFSETS_TOPIC}-{partition}: {e}")),
            })?;
            Ok(Some((p, a.last_offset + 1, a.leader_epoch)))
        })();
        async move {
            match appended? {
                Some((p, end, epoch)) => {
                    match tokio::time::timeout(COMMIT_TIMEOUT, p.wait_acks_all(end, epoch)).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(AckError::NotLeader)) => Err(StoreError::NotLeader { partition }),
                        Ok(Err(e)) => {
                            Err(StoreError::new(format!("{OFFSETS_TOPIC}-{partition}: {e}")))
                        }
                        Err(_) => Err(StoreError::new(format!(
                            "{OFFSETS_TOPIC}-{partition}: not replicated within {COMMIT_TIMEOUT:?}"
                        ))),
                    }
                }
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn read_all(&self, partition: i32) -> Result<Vec<StoredRecord>, StoreError> {
        let Some(p) = self.replicas.get(OFFSETS_TOPIC, partition) else {
            return Ok(Vec::new());
        };
        let err = |e: &dyn std::fmt::Display| {
            StoreError::new(format!("{OFFSETS_TOPIC}-{partition}: {e}"))
        };
        // Up to the log end, as Kafka's coordinator loads: a new leader was in
        // the ISR, so its log holds everything committed, while its high
        // watermark may not have caught up yet.
        let (start, _, end) = p.offsets();
        let mut out = Vec::new();
        let mut offset = start;
        let mut buf = Vec::new();
        while offset < end {
            let read = p.read(offset, 1 << 20, true, true).map_err(|e| err(&e))?;
            let Some(slice) = read.slice else { break };
            buf.clear();
            slice.read_into(&mut buf).map_err(|e| err(&e))?;
            let mut bytes = Bytes::copy_from_slice(&buf);
            let mut progressed = false;
            while bytes.len() >= crate::log::batch::HEADER_LEN {
                let Ok(h) = crate::log::BatchHeader::parse(&bytes) else {
                    break;
                };
                let Ok(size) = h.size() else { break };
                if size > bytes.len() {
                    break;
                }
                let mut one = bytes.split_to(size);
                let set = RecordBatchDecoder::decode(&mut one).map_err(|e| err(&e))?;
                for r in set.records {
                    if r.offset >= offset
                        && let Some(k) = r.key
                    {
                        out.push((k, r.value));
                    }
                }
                offset = h.last_offset().saturating_add(1);
                progressed = true;
            }
            if !progressed {
                return Err(err(&"a batch larger than 1 MiB could not be read"));
            }
        }
        Ok(out)
    }
}
