//! The runtime around the group state machines: one lock over all groups, parked
//! JoinGroup/SyncGroup requests (oneshot channels), a tokio timer per group, writes to
//! the `OffsetStore`, loading and unloading `__consumer_offsets` partitions, and the
//! periodic expiry of old offsets.
//!
//! Makes no group decisions: those are in `state`; request and response shapes are in
//! `wire`. Every store write is started while the lock is held (so the log sees
//! writes in the order the groups made them) and finished in a spawned task (so a
//! client that goes away cannot cancel a write halfway).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::config::GroupConfig;
use super::load;
use super::member::RequestId;
use super::offsets::CommitTicket;
use super::records::{OffsetValue, TopicPartition, group_record, offset_record};
use super::state::{
    Command, Group, GroupState, JoinOutcome, SyncOutcome, check_commit_to_missing_group,
};
use super::store::{OffsetStore, StoreError, StoredRecord};
use super::wire::{self, ClientInfo, FetchGroup, FetchResult};

/// The consumer-group coordinator of this broker, for the groups whose
/// `__consumer_offsets` partitions it has loaded.
pub struct GroupCoordinator {
    me: Weak<GroupCoordinator>,
    store: Arc<dyn OffsetStore>,
    config: GroupConfig,
    clock: Clock,
    inner: Mutex<Inner>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartitionStatus {
    Unloaded,
    Loading,
    Loaded,
}

struct Inner {
    partitions: Vec<PartitionStatus>,
    /// Bumped on every load and unload of a partition, so a load that was overtaken
    /// does not install its groups.
    load_epochs: Vec<u64>,
    groups: HashMap<String, Slot>,
    parked: HashMap<RequestId, Parked>,
    /// Source of request ids, group incarnations and timer tokens.
    next_id: u64,
    retention: Option<JoinHandle<()>>,
    shut_down: bool,
}

impl Inner {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

struct Slot {
    group: Group,
    partition: i32,
    /// Distinguishes this group object from a later one with the same id (after a
    /// deletion or a reload), so late store completions find the right one.
    incarnation: u64,
    timer: Option<Timer>,
}

struct Timer {
    at: i64,
    token: u64,
    handle: JoinHandle<()>,
}

enum Parked {
    Join(oneshot::Sender<JoinOutcome>),
    Sync(oneshot::Sender<SyncOutcome>),
}

/// Milliseconds since the Unix epoch that advance with tokio's clock (so tests can
/// pause time), anchored to the wall clock at start.
struct Clock {
    base: Instant,
    base_ms: i64,
}

impl Clock {
    fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self {
            base: Instant::now(),
            base_ms: wall,
        }
    }

    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.base.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.base_ms.saturating_add(elapsed)
    }

    fn instant_at(&self, at_ms: i64) -> Instant {
        let offset = u64::try_from(at_ms.saturating_sub(self.base_ms)).unwrap_or(0);
        self.base + Duration::from_millis(offset)
    }
}

impl fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("GroupCoordinator");
        d.field("config", &self.config);
        // Never block (or deadlock) on the lock just to print.
        if let Ok(inner) = self.inner.try_lock() {
            d.field("groups", &inner.groups.len())
                .field("parked", &inner.parked.len())
                .field("shut_down", &inner.shut_down);
        }
        d.finish_non_exhaustive()
    }
}

impl Drop for GroupCoordinator {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = inner.retention.take() {
            task.abort();
        }
        for slot in inner.groups.values_mut() {
            if let Some(timer) = slot.timer.take() {
                timer.handle.abort();
            }
        }
    }
}

impl GroupCoordinator {
    /// A coordinator with no partition loaded yet (requests get NOT_COORDINATOR until
    /// `load` or `load_partition`).
    pub fn new(store: Arc<dyn OffsetStore>, config: GroupConfig) -> Arc<Self> {
        let partitions = usize::try_from(config.offsets_topic_num_partitions.max(1)).unwrap_or(1);
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            store,
            config,
            clock: Clock::new(),
            inner: Mutex::new(Inner {
                partitions: vec![PartitionStatus::Unloaded; partitions],
                load_epochs: vec![0; partitions],
                groups: HashMap::new(),
                parked: HashMap::new(),
                next_id: 0,
                retention: None,
                shut_down: false,
            }),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Loads every partition of `__consumer_offsets` (replaying the stored records)
    /// and starts the offset expiry.
    pub async fn load(&self) -> Result<(), StoreError> {
        for partition in 0..self.config.offsets_topic_num_partitions.max(1) {
            self.load_partition(partition).await?;
        }
        self.start_retention();
        Ok(())
    }

    /// Loads one partition: this broker now coordinates its groups (e.g. it became
    /// the partition's leader). Until this finishes, its groups get
    /// COORDINATOR_LOAD_IN_PROGRESS.
    pub async fn load_partition(&self, partition: i32) -> Result<(), StoreError> {
        let epoch = {
            let mut inner = self.lock();
            if inner.shut_down {
                return Err(StoreError::new("group coordinator is shut down"));
            }
            let Some(index) = self.partition_index(&inner, partition) else {
                return Err(StoreError::new(format!(
                    "__consumer_offsets-{partition}: no such partition (offsets.topic.num.partitions = {})",
                    self.config.offsets_topic_num_partitions
                )));
            };
            self.drop_partition_groups(&mut inner, partition);
            inner.partitions[index] = PartitionStatus::Loading;
            inner.load_epochs[index] += 1;
            inner.load_epochs[index]
        };
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || store.read_all(partition))
            .await
            .map_err(|e| {
                StoreError::new(format!(
                    "__consumer_offsets-{partition}: reading failed: {e}"
                ))
            })
            .and_then(|r| r);
        let replayed = read.and_then(|records| load::replay(partition, &records));

        let mut inner = self.lock();
        let Some(index) = self.partition_index(&inner, partition) else {
            return Ok(());
        };
        if inner.load_epochs[index] != epoch {
            // Unloaded (or loaded again) meanwhile.
            return Ok(());
        }
        let replayed = match replayed {
            Ok(r) => r,
            Err(e) => {
                inner.partitions[index] = PartitionStatus::Unloaded;
                return Err(e);
            }
        };
        let count = replayed.groups.len();
        for (id, mut group) in replayed.groups {
            let commands = group.finish_load(self.clock.now_ms(), &self.config);
            let incarnation = inner.next_id();
            let slot = Slot {
                group,
                partition,
                incarnation,
                timer: None,
            };
            self.execute(&mut inner, &slot, commands);
            debug!(group = %id, state = slot.group.state().as_str(), generation = slot.group.generation(), "loaded group");
            self.settle(&mut inner, slot);
        }
        inner.partitions[index] = PartitionStatus::Loaded;
        info!(
            partition,
            groups = count,
            skipped_records = replayed.skipped,
            "loaded __consumer_offsets partition"
        );
        Ok(())
    }

    /// Stops coordinating the groups of one partition (e.g. leadership moved away):
    /// parked requests get NOT_COORDINATOR and the groups are forgotten.
    pub fn unload_partition(&self, partition: i32) {
        let mut inner = self.lock();
        if let Some(index) = self.partition_index(&inner, partition) {
            inner.partitions[index] = PartitionStatus::Unloaded;
            inner.load_epochs[index] += 1;
        }
        self.drop_partition_groups(&mut inner, partition);
    }

    /// The `__consumer_offsets` partition of a group, as Kafka computes it.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        self.config.partition_for(group_id)
    }

    /// Stops everything: timers and offset expiry end, parked requests get
    /// NOT_COORDINATOR, and later requests too.
    pub fn shutdown(&self) {
        let mut inner = self.lock();
        inner.shut_down = true;
        if let Some(task) = inner.retention.take() {
            task.abort();
        }
        for index in 0..inner.partitions.len() {
            inner.partitions[index] = PartitionStatus::Unloaded;
            inner.load_epochs[index] += 1;
        }
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            if let Some(slot) = inner.groups.remove(&id) {
                self.discard(&mut inner, slot, ResponseError::NotCoordinator);
            }
        }
        info!("group coordinator shut down");
    }

    // ----- group membership ---------------------------------------------------

    /// JoinGroup (v0–v9) from a client whose id and address are unknown; see
    /// `join_group_from`.
    pub async fn join_group(&self, req: JoinGroupRequest, version: i16) -> JoinGroupResponse {
        self.join_group_from(req, version, &ClientInfo::default())
            .await
    }

    /// JoinGroup (v0–v9). Waits until the rebalance completes (at most the rebalance
    /// timeout, or the initial delay for a new group). `client` gives the client id
    /// (prefix of new member ids) and address shown by DescribeGroups.
    pub async fn join_group_from(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client: &ClientInfo,
    ) -> JoinGroupResponse {
        let group_id = req.group_id.to_string();
        let member_id = req.member_id.to_string();
        if group_id.is_empty() {
            let outcome = JoinOutcome::error(ResponseError::InvalidGroupId, member_id);
            return wire::join_response(outcome, version);
        }
        let receiver = {
            let mut inner = self.lock();
            if let Some(error) = self.status_error(&inner, &group_id) {
                return wire::join_response(JoinOutcome::error(error, member_id), version);
            }
            let request = inner.next_id();
            let (sender, receiver) = oneshot::channel();
            inner.parked.insert(request, Parked::Join(sender));
            let prefix = req
                .group_instance_id
                .as_ref()
                .map_or(client.client_id.as_str(), |i| i.as_str());
            let new_member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
            let event = wire::join_request(&req, version, client, request, new_member_id);
            self.with_group(&mut inner, &group_id, true, None, |group, now| {
                ((), group.join(event, now, &self.config))
            });
            receiver
        };
        let outcome = receiver.await.unwrap_or_else(|_| {
            JoinOutcome::error(ResponseError::CoordinatorNotAvailable, member_id)
        });
        wire::join_response(outcome, version)
    }

    /// SyncGroup (v0–v5). The leader's call stores the assignment; everyone waits
    /// until it is stored, then gets their part.
    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let group_id = req.group_id.to_string();
        if group_id.is_empty() {
            return wire::sync_response(SyncOutcome::error(ResponseError::InvalidGroupId), version);
        }
        let receiver = {
            let mut inner = self.lock();
            if let Some(error) = self.status_error(&inner, &group_id) {
                return wire::sync_response(SyncOutcome::error(error), version);
            }
            if !inner.groups.contains_key(&group_id) {
                return wire::sync_response(
                    SyncOutcome::error(ResponseError::UnknownMemberId),
                    version,
                );
            }
            let request = inner.next_id();
            let (sender, receiver) = oneshot::channel();
            inner.parked.insert(request, Parked::Sync(sender));
            let event = wire::sync_request(&req, request);
            self.with_group(&mut inner, &group_id, false, None, |group, now| {
                ((), group.sync(event, now, &self.config))
            });
            receiver
        };
        let outcome = receiver
            .await
            .unwrap_or_else(|_| SyncOutcome::error(ResponseError::CoordinatorNotAvailable));
        wire::sync_response(outcome, version)
    }

    /// Heartbeat (v0–v4).
    pub async fn heartbeat(&self, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
        let group_id = req.group_id.to_string();
        if group_id.is_empty() {
            return wire::heartbeat_response(Err(ResponseError::InvalidGroupId));
        }
        let mut inner = self.lock();
        if let Some(error) = self.status_error(&inner, &group_id) {
            return wire::heartbeat_response(Err(error));
        }
        let member_id = req.member_id.to_string();
        let instance_id = req.group_instance_id.as_ref().map(|i| i.to_string());
        let result = self
            .with_group(&mut inner, &group_id, false, None, |group, now| {
                let r = group.heartbeat(&member_id, instance_id.as_deref(), req.generation_id, now);
                (r, Vec::new())
            })
            .map_or(Err(ResponseError::UnknownMemberId), |(r, _)| r);
        wire::heartbeat_response(result)
    }

    /// LeaveGroup (v0–v5).
    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let group_id = req.group_id.to_string();
        let members = wire::leave_members(&req, version);
        if group_id.is_empty() {
            return wire::leave_response(Err(ResponseError::InvalidGroupId), &members, version);
        }
        let mut inner = self.lock();
        if let Some(error) = self.status_error(&inner, &group_id) {
            return wire::leave_response(Err(error), &members, version);
        }
        let result = self
            .with_group(&mut inner, &group_id, false, None, |group, now| {
                group.leave(&members, now, &self.config)
            })
            .map_or(Err(ResponseError::UnknownMemberId), |(r, _)| r);
        wire::leave_response(result, &members, version)
    }

    // ----- offsets ----------------------------------------------------------------

    /// OffsetCommit (v2–v9). Answers once the offsets are durable in the store.
    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        let commit = wire::commit_request(&req, version);
        let count = commit.partitions.len();
        let mut errors: Vec<Option<ResponseError>> = vec![None; count];
        let receiver = {
            let mut inner = self.lock();
            if let Some(error) = self.status_error(&inner, &commit.group_id) {
                return wire::commit_response(&req, &vec![Some(error); count]);
            }
            if !inner.groups.contains_key(&commit.group_id)
                && let Err(error) = check_commit_to_missing_group(commit.generation, version)
            {
                return wire::commit_response(&req, &vec![Some(error); count]);
            }
            let now = self.clock.now_ms();
            let mut accepted: Vec<(TopicPartition, OffsetValue)> = Vec::new();
            for (i, (tp, partition)) in commit.partitions.iter().enumerate() {
                if partition.metadata.len() > self.config.offset_metadata_max_bytes {
                    errors[i] = Some(ResponseError::OffsetMetadataTooLarge);
                } else {
                    accepted.push((tp.clone(), partition.value(now, commit.retention_ms)));
                }
            }
            let begun = self.with_group(&mut inner, &commit.group_id, true, None, |group, now| {
                let result = group
                    .validate_offset_commit(
                        &commit.member_id,
                        commit.instance_id.as_deref(),
                        commit.generation,
                        now,
                    )
                    .map(|()| {
                        (!accepted.is_empty()).then(|| {
                            group
                                .offsets_mut()
                                .begin_commit(accepted.iter().map(|(tp, _)| tp))
                        })
                    });
                (result, Vec::new())
            });
            match begun {
                // `create` makes the group exist; `None` cannot happen.
                None => {
                    let error = ResponseError::CoordinatorNotAvailable;
                    return wire::commit_response(&req, &vec![Some(error); count]);
                }
                Some((Err(error), _)) => {
                    return wire::commit_response(&req, &vec![Some(error); count]);
                }
                Some((Ok(None), _)) => return wire::commit_response(&req, &errors),
                Some((Ok(Some(ticket)), incarnation)) => {
                    self.start_commit(&commit.group_id, incarnation, ticket, accepted)
                }
            }
        };
        let result = receiver
            .await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable));
        if let Err(error) = result {
            for (i, (_, partition)) in commit.partitions.iter().enumerate() {
                if partition.metadata.len() <= self.config.offset_metadata_max_bytes {
                    errors[i] = Some(error);
                }
            }
        }
        wire::commit_response(&req, &errors)
    }

    /// OffsetFetch (v1–v9, several groups from v8). `require_stable` needs no waiting:
    /// there are no transactional offsets.
    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let groups = wire::fetch_groups(&req, version);
        let inner = self.lock();
        let results: Vec<FetchResult> = groups.iter().map(|g| self.fetch(&inner, g)).collect();
        wire::fetch_response(&groups, results, version)
    }

    /// OffsetDelete (v0): deletes offsets of an empty group, or of topics a consumer
    /// group no longer subscribes to.
    pub async fn offset_delete(
        &self,
        req: OffsetDeleteRequest,
        _version: i16,
    ) -> OffsetDeleteResponse {
        let group_id = req.group_id.to_string();
        let top_error =
            |error: ResponseError| OffsetDeleteResponse::default().with_error_code(error.code());
        let (topics, write) = {
            let mut inner = self.lock();
            if let Some(error) = self.status_error(&inner, &group_id) {
                return top_error(error);
            }
            let partition = self.partition_for(&group_id);
            let done = self.with_group(&mut inner, &group_id, false, None, |group, _now| {
                if let Err(error) = group.validate_offset_delete() {
                    return (Err(error), Vec::new());
                }
                let mut tombstones: Vec<StoredRecord> = Vec::new();
                let topics: Vec<OffsetDeleteResponseTopic> = req
                    .topics
                    .iter()
                    .map(|t| {
                        let name = t.name.to_string();
                        let subscribed = group.is_subscribed_to(&name);
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|p| {
                                let mut response = OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index);
                                if subscribed {
                                    response = response.with_error_code(
                                        ResponseError::GroupSubscribedToTopic.code(),
                                    );
                                } else {
                                    let tp = TopicPartition::new(name.clone(), p.partition_index);
                                    if group.offsets_mut().remove(&tp) {
                                        tombstones.push(offset_record(&group_id, &tp, None));
                                    }
                                }
                                response
                            })
                            .collect();
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(partitions)
                    })
                    .collect();
                (Ok((topics, tombstones)), Vec::new())
            });
            match done {
                None => return top_error(ResponseError::GroupIdNotFound),
                Some((Err(error), _)) => return top_error(error),
                Some((Ok((topics, tombstones)), _)) => {
                    let write =
                        (!tombstones.is_empty()).then(|| self.spawn_write(partition, tombstones));
                    (topics, write)
                }
            }
        };
        if let Some(write) = write
            && let Err(error) = finish_write(write).await
        {
            return top_error(error.group_error());
        }
        OffsetDeleteResponse::default().with_topics(topics)
    }

    // ----- administration -----------------------------------------------------

    /// ListGroups (v0–v5), with the state (v4+) and type (v5+) filters.
    pub async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let states: BTreeSet<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
        let types: BTreeSet<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
        let inner = self.lock();
        let loading = inner.partitions.contains(&PartitionStatus::Loading);
        let classic_listed = types.is_empty() || types.contains(wire::CLASSIC_GROUP_TYPE);
        let mut listed: Vec<(&String, &Group)> = inner
            .groups
            .iter()
            .map(|(id, slot)| (id, &slot.group))
            .filter(|(_, g)| {
                classic_listed
                    && (states.is_empty() || states.contains(&g.state().as_str().to_lowercase()))
            })
            .collect();
        listed.sort_by(|a, b| a.0.cmp(b.0));
        let mut response = ListGroupsResponse::default().with_groups(
            listed
                .into_iter()
                .map(|(id, g)| {
                    wire::listed_group(
                        id,
                        g.protocol_type().unwrap_or_default(),
                        g.state().as_str(),
                        version,
                    )
                })
                .collect(),
        );
        if loading {
            response = response.with_error_code(ResponseError::CoordinatorLoadInProgress.code());
        }
        response
    }

    /// DescribeGroups (v0–v6).
    pub async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let include = req.include_authorized_operations;
        let inner = self.lock();
        DescribeGroupsResponse::default().with_groups(
            req.groups
                .iter()
                .map(|id| {
                    let id = id.to_string();
                    if let Some(error) = self.status_error(&inner, &id) {
                        return wire::described_error(&id, error, version);
                    }
                    match inner.groups.get(&id) {
                        Some(slot) => {
                            wire::described_group(&id, slot.group.describe(), include, version)
                        }
                        None => wire::described_missing_group(&id, include, version),
                    }
                })
                .collect(),
        )
    }

    /// DeleteGroups (v0–v2): deletes empty groups with their offsets.
    pub async fn delete_groups(
        &self,
        req: DeleteGroupsRequest,
        _version: i16,
    ) -> DeleteGroupsResponse {
        type Pending = Result<Option<JoinHandle<Result<(), StoreError>>>, ResponseError>;
        let pending: Vec<(String, Pending)> = {
            let mut inner = self.lock();
            req.groups_names
                .iter()
                .map(|id| {
                    let id = id.to_string();
                    let result = self.delete_group(&mut inner, &id);
                    (id, result)
                })
                .collect()
        };
        let mut results = Vec::with_capacity(pending.len());
        for (id, result) in pending {
            let error = match result {
                Err(error) => Some(error),
                Ok(None) => None,
                Ok(Some(write)) => finish_write(write).await.err().map(|e| e.group_error()),
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(kafka_protocol::messages::GroupId(wire::strbytes(id)))
                    .with_error_code(wire::code(error)),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    /// Removes offsets past `offsets.retention.minutes` (and empty groups left with
    /// nothing) now; runs every `offsets.retention.check.interval.ms` once loaded.
    /// Returns how many offsets were removed.
    /// Every committed offset of the groups this broker coordinates, as
    /// (group, topic, partition, offset).
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let inner = self.lock();
        let mut out = Vec::new();
        for (id, slot) in &inner.groups {
            for (tp, value) in slot.group.offsets().iter() {
                out.push((id.clone(), tp.topic.clone(), tp.partition, value.offset));
            }
        }
        out
    }

    pub fn expire_offsets(&self) -> usize {
        let mut inner = self.lock();
        let now = self.clock.now_ms();
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        let mut removed = 0;
        for id in ids {
            let Some(mut slot) = inner.groups.remove(&id) else {
                continue;
            };
            let expiry = slot.group.expire_offsets(now, &self.config);
            removed += expiry.offsets.len();
            let mut records: Vec<StoredRecord> = expiry
                .offsets
                .iter()
                .map(|tp| offset_record(&id, tp, None))
                .collect();
            if expiry.delete_group {
                records.push(group_record(&id, None));
            }
            if !records.is_empty() {
                info!(group = %id, offsets = expiry.offsets.len(), group_deleted = expiry.delete_group, "expired offsets");
                let write = self.spawn_write(slot.partition, records);
                drop(write);
            }
            if expiry.delete_group {
                self.discard(&mut inner, slot, ResponseError::CoordinatorNotAvailable);
            } else {
                self.settle(&mut inner, slot);
            }
        }
        removed
    }

    // ----- internals ----------------------------------------------------------

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation of `Inner` completes without panicking in between, so the
        // data behind a poisoned lock is consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn partition_index(&self, inner: &Inner, partition: i32) -> Option<usize> {
        usize::try_from(partition)
            .ok()
            .filter(|&i| i < inner.partitions.len())
    }

    /// The coordinator-level error for a request about `group_id`, if any.
    fn status_error(&self, inner: &Inner, group_id: &str) -> Option<ResponseError> {
        if inner.shut_down {
            return Some(ResponseError::NotCoordinator);
        }
        let index = self.partition_index(inner, self.partition_for(group_id))?;
        match inner.partitions[index] {
            PartitionStatus::Unloaded => Some(ResponseError::NotCoordinator),
            PartitionStatus::Loading => Some(ResponseError::CoordinatorLoadInProgress),
            PartitionStatus::Loaded => None,
        }
    }

    /// Runs `f` on a group (creating it if `create`; only the given incarnation if
    /// one is given), executes the commands it returns, re-arms the group's timer and
    /// forgets the group if nothing is left of it. Returns `f`'s result and the
    /// group's incarnation, or `None` if there is no such group.
    fn with_group<R>(
        &self,
        inner: &mut Inner,
        group_id: &str,
        create: bool,
        incarnation: Option<u64>,
        f: impl FnOnce(&mut Group, i64) -> (R, Vec<Command>),
    ) -> Option<(R, u64)> {
        let mut slot = match inner.groups.remove(group_id) {
            Some(slot) if incarnation.is_some_and(|i| i != slot.incarnation) => {
                inner.groups.insert(group_id.to_owned(), slot);
                return None;
            }
            Some(slot) => slot,
            None if create && incarnation.is_none() => Slot {
                group: Group::new(group_id),
                partition: self.partition_for(group_id),
                incarnation: inner.next_id(),
                timer: None,
            },
            None => return None,
        };
        let before = (slot.group.state(), slot.group.generation());
        let (result, commands) = f(&mut slot.group, self.clock.now_ms());
        let after = (slot.group.state(), slot.group.generation());
        if before != after {
            info!(
                group = %group_id,
                from = before.0.as_str(),
                to = after.0.as_str(),
                generation = after.1,
                members = slot.group.members().count(),
                "group state changed"
            );
        }
        self.execute(inner, &slot, commands);
        let incarnation = slot.incarnation;
        self.settle(inner, slot);
        Some((result, incarnation))
    }

    /// Puts a group back after a change: re-arms its timer, or forgets it if blank.
    fn settle(&self, inner: &mut Inner, mut slot: Slot) {
        if slot.group.is_blank() {
            if let Some(timer) = slot.timer.take() {
                timer.handle.abort();
            }
            return;
        }
        let next = slot.group.next_deadline();
        // A timer due no later than needed stays: firing early costs a no-op wake-up
        // and a re-arm, far less than replacing the task on every heartbeat.
        let keep = match (&slot.timer, next) {
            (Some(timer), Some(at)) => timer.at <= at,
            (Some(_), None) | (None, None) => true,
            (None, Some(_)) => false,
        };
        if !keep {
            if let Some(timer) = slot.timer.take() {
                timer.handle.abort();
            }
            if let Some(at) = next {
                let token = inner.next_id();
                let me = self.me.clone();
                let id = slot.group.id().to_owned();
                let when = self.clock.instant_at(at);
                let handle = tokio::spawn(async move {
                    tokio::time::sleep_until(when).await;
                    if let Some(me) = me.upgrade() {
                        me.fire_timer(&id, token);
                    }
                });
                slot.timer = Some(Timer { at, token, handle });
            }
        }
        inner.groups.insert(slot.group.id().to_owned(), slot);
    }

    fn fire_timer(&self, group_id: &str, token: u64) {
        let mut inner = self.lock();
        if let Some(slot) = inner.groups.get_mut(group_id)
            && slot.timer.as_ref().is_some_and(|t| t.token == token)
        {
            // This task is the timer: nothing to abort.
            slot.timer = None;
        }
        self.with_group(&mut inner, group_id, false, None, |group, now| {
            ((), group.on_timer(now, &self.config))
        });
    }

    /// Shuts a group that is leaving memory: its parked requests get `error`.
    fn discard(&self, inner: &mut Inner, mut slot: Slot, error: ResponseError) {
        let commands = slot.group.shut(error);
        self.execute(inner, &slot, commands);
        if let Some(timer) = slot.timer.take() {
            timer.handle.abort();
        }
    }

    fn drop_partition_groups(&self, inner: &mut Inner, partition: i32) {
        let ids: Vec<String> = inner
            .groups
            .iter()
            .filter(|(_, slot)| slot.partition == partition)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(slot) = inner.groups.remove(&id) {
                self.discard(inner, slot, ResponseError::NotCoordinator);
            }
        }
    }

    fn execute(&self, inner: &mut Inner, slot: &Slot, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::Join { request, outcome } => {
                    if let Some(Parked::Join(sender)) = inner.parked.remove(&request) {
                        // The client may be gone; nothing to do then.
                        let _ = sender.send(outcome);
                    }
                }
                Command::Sync { request, outcome } => {
                    if let Some(Parked::Sync(sender)) = inner.parked.remove(&request) {
                        let _ = sender.send(outcome);
                    }
                }
                Command::Persist { value, then } => {
                    let group_id = slot.group.id().to_owned();
                    let record = group_record(&group_id, Some(&value));
                    let write = self.store.append(slot.partition, vec![record]);
                    let me = self.me.clone();
                    let incarnation = slot.incarnation;
                    tokio::spawn(async move {
                        let result = write.await;
                        if let Some(me) = me.upgrade() {
                            me.persisted(&group_id, incarnation, then, result);
                        }
                    });
                }
            }
        }
    }

    fn persisted(
        &self,
        group_id: &str,
        incarnation: u64,
        then: super::state::AfterPersist,
        result: Result<(), StoreError>,
    ) {
        let result = result.map_err(|e| {
            warn!(group = %group_id, error = %e, "writing group metadata failed");
            e.group_error()
        });
        let mut inner = self.lock();
        self.with_group(
            &mut inner,
            group_id,
            false,
            Some(incarnation),
            |group, now| ((), group.on_persisted(then, result, now, &self.config)),
        );
    }

    fn start_commit(
        &self,
        group_id: &str,
        incarnation: u64,
        ticket: CommitTicket,
        accepted: Vec<(TopicPartition, OffsetValue)>,
    ) -> oneshot::Receiver<Result<(), ResponseError>> {
        let records: Vec<StoredRecord> = accepted
            .iter()
            .map(|(tp, v)| offset_record(group_id, tp, Some(v)))
            .collect();
        let write = self.store.append(self.partition_for(group_id), records);
        let (sender, receiver) = oneshot::channel();
        let me = self.me.clone();
        let group_id = group_id.to_owned();
        tokio::spawn(async move {
            let result = write.await.map_err(|e| {
                warn!(group = %group_id, error = %e, "writing offsets failed");
                e.commit_error()
            });
            if let Some(me) = me.upgrade() {
                let mut inner = me.lock();
                me.with_group(
                    &mut inner,
                    &group_id,
                    false,
                    Some(incarnation),
                    |group, _| {
                        group
                            .offsets_mut()
                            .complete_commit(ticket, accepted, result.is_ok());
                        ((), Vec::new())
                    },
                );
            }
            let _ = sender.send(result);
        });
        receiver
    }

    fn fetch(&self, inner: &Inner, request: &FetchGroup) -> FetchResult {
        if let Some(error) = self.status_error(inner, &request.group_id) {
            return Err(error);
        }
        let group = inner.groups.get(&request.group_id).map(|slot| &slot.group);
        Ok(match &request.topics {
            Some(topics) => topics
                .iter()
                .map(|(topic, partitions)| {
                    let offsets = partitions
                        .iter()
                        .map(|&p| {
                            let tp = TopicPartition::new(topic.clone(), p);
                            (p, group.and_then(|g| g.offsets().get(&tp).cloned()))
                        })
                        .collect();
                    (topic.clone(), offsets)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> =
                    BTreeMap::new();
                for (tp, value) in group.iter().flat_map(|g| g.offsets().iter()) {
                    by_topic
                        .entry(tp.topic.clone())
                        .or_default()
                        .push((tp.partition, Some(value.clone())));
                }
                by_topic.into_iter().collect()
            }
        })
    }

    fn delete_group(
        &self,
        inner: &mut Inner,
        group_id: &str,
    ) -> Result<Option<JoinHandle<Result<(), StoreError>>>, ResponseError> {
        if let Some(error) = self.status_error(inner, group_id) {
            return Err(error);
        }
        let Some(slot) = inner.groups.remove(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        if let Err(error) = slot.group.validate_delete() {
            inner.groups.insert(group_id.to_owned(), slot);
            return Err(error);
        }
        let mut records: Vec<StoredRecord> = slot
            .group
            .offsets()
            .all_partitions()
            .iter()
            .map(|tp| offset_record(group_id, tp, None))
            .collect();
        records.push(group_record(group_id, None));
        info!(group = %group_id, offsets = records.len() - 1, "deleting group");
        let write = self.spawn_write(slot.partition, records);
        self.discard(inner, slot, ResponseError::GroupIdNotFound);
        Ok(Some(write))
    }

    /// Starts a write that completes even if nobody waits for it.
    fn spawn_write(
        &self,
        partition: i32,
        records: Vec<StoredRecord>,
    ) -> JoinHandle<Result<(), StoreError>> {
        let write: BoxFuture<'static, Result<(), StoreError>> =
            self.store.append(partition, records);
        tokio::spawn(async move {
            let result = write.await;
            if let Err(e) = &result {
                warn!(partition, error = %e, "writing to __consumer_offsets failed");
            }
            result
        })
    }

    /// Starts the periodic expiry of old offsets (idempotent).
    pub fn start_offset_expiry(&self) {
        self.start_retention();
    }

    fn start_retention(&self) {
        let mut inner = self.lock();
        if inner.retention.is_some() || inner.shut_down {
            return;
        }
        let every = Duration::from_millis(
            u64::try_from(self.config.offsets_retention_check_interval_ms.max(1)).unwrap_or(1),
        );
        let me = self.me.clone();
        inner.retention = Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(me) = me.upgrade() else { break };
                me.expire_offsets();
            }
        }));
    }

    /// The state of a group, if this coordinator holds it (tests, admin endpoint).
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.lock()
            .groups
            .get(group_id)
            .map(|slot| slot.group.state())
    }
}

async fn finish_write(write: JoinHandle<Result<(), StoreError>>) -> Result<(), StoreError> {
    write
        .await
        .unwrap_or_else(|e| Err(StoreError::new(format!("write task failed: {e}"))))
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
