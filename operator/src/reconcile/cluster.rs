//! Reconcile of a `Cluster`: observe its StatefulSet, pods, claims and
//! brokers (status, partitions, replica sizes); plan with
//! [`crate::plan::cluster`]; apply; write status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BUSY_REQUEUE, Context, FIELD_MANAGER, IDLE_REQUEUE, ReconcileError};
use crate::admin::http;
use crate::admin::kafka::KafkaAdmin;
use crate::build::{self, ClusterRef, labels};
use crate::crd::Cluster;
use crate::crd::broker_config;
use crate::crd::cluster::{REBALANCE_ANNOTATION, RebalanceMode};
use crate::plan::Planned;
use crate::plan::cluster::{self as planner, ClusterAction, ClusterObservation, StatefulSetState};
use crate::plan::rebalance::ReplicaSizes;
use crate::plan::recovery::{self, BrokerHealth, RecoveryInput};
use crate::plan::roll::{BrokerPod, DrainState, RollAction};

/// What observe found besides the planner's input: addresses and objects.
struct Observed {
    input: ClusterObservation,
    /// Broker id → pod (for addresses and uids).
    pods: BTreeMap<i32, Pod>,
    /// `metadata.generation` of the StatefulSet (changes with its spec only).
    statefulset_generation: Option<i64>,
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn crash_looping(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
            })
        })
}

/// Since when a pod has not been Ready (`None` if it is Ready).
fn not_ready_since(pod: &Pod) -> Option<Timestamp> {
    if pod_ready(pod) {
        return None;
    }
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

fn admin_addr(pod: &Pod, port: i32) -> Option<String> {
    let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
    Some(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

async fn observe(
    cluster: &Cluster,
    c: &ClusterRef<'_>,
    ctx: &Context,
) -> Result<Observed, ReconcileError> {
    let ns = &c.namespace;
    let client = &ctx.client;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = sts_api
        .get_opt(&c.names.statefulset)
        .await
        .map_err(ReconcileError::kube(format!(
            "reading StatefulSet {ns}/{}",
            c.names.statefulset
        )))?;
    let selector = ListParams::default().labels(&labels::selector_text(&c.names.cluster));
    let pod_list = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&selector)
        .await
        .map_err(ReconcileError::kube(format!("listing broker pods in {ns}")))?;
    let claim_list = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list(&selector)
        .await
        .map_err(ReconcileError::kube(format!(
            "listing broker claims in {ns}"
        )))?;

    let statefulset = sts.as_ref().map(|s| {
        let spec = s.spec.as_ref();
        let status = s.status.as_ref();
        StatefulSetState {
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
            update_revision: status.and_then(|s| s.update_revision.clone()),
            status_current: status.and_then(|s| s.observed_generation) >= s.metadata.generation,
            claim_template_size: spec
                .and_then(|s| s.volume_claim_templates.as_ref())
                .and_then(|t| t.first())
                .and_then(|t| {
                    t.spec
                        .as_ref()?
                        .resources
                        .as_ref()?
                        .requests
                        .as_ref()?
                        .get("storage")
                })
                .map(|q| q.0.clone()),
        }
    });
    let replicas = statefulset.as_ref().map_or(0, |s| s.replicas);

    let mut pods = BTreeMap::new();
    for pod in pod_list.items {
        if let Some(id) = c.names.ordinal_of(&pod.name_any()) {
            pods.insert(id, pod);
        }
    }
    let admin_port = c.spec.listeners.admin_port;
    let mut input = ClusterObservation {
        generation: cluster.metadata.generation,
        desired_brokers: c.spec.brokers,
        storage_size: c.spec.storage.size.clone(),
        unknown_config_keys: broker_config::unknown_keys(
            c.spec.config.keys(),
            broker_config::cluster_config_keys(),
        ),
        ..ClusterObservation::default()
    };
    for claim in claim_list.items {
        let name = claim.name_any();
        let is_data_claim = (0..replicas.max(c.spec.brokers)).any(|id| c.names.claim(id) == name);
        let size = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage"))
            .map(|q| q.0.clone());
        if let (true, Some(size)) = (is_data_claim, size) {
            input.claims.insert(name, size);
        }
    }
    let update_revision = statefulset.as_ref().and_then(|s| s.update_revision.clone());
    for id in 0..replicas {
        input.pod_names.insert(id, c.names.pod(id));
        let Some(pod) = pods.get(&id) else {
            input.pods.push(BrokerPod {
                id,
                ..BrokerPod::default()
            });
            continue;
        };
        let revision = pod.labels().get(labels::REVISION).cloned();
        let ready = pod_ready(pod);
        let mut broker = BrokerPod {
            id,
            exists: true,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            ready,
            crash_looping: crash_looping(pod),
            revision: revision.clone(),
            drain: DrainState::None,
        };
        if let Some(addr) = admin_addr(pod, admin_port) {
            match http::status(&addr).await {
                Ok(Some(state)) => {
                    broker.drain = state.drain();
                    input.broker_states.insert(id, state);
                }
                Ok(None) => broker.drain = DrainState::Unsupported,
                Err(e) => tracing::debug!(broker = id, error = %e, "no broker status"),
            }
            let stale = update_revision.is_some() && revision != update_revision;
            if ready && stale {
                input.safety.insert(id, http::restart_safety(&addr).await);
            }
        }
        input.pods.push(broker);
    }
    input.statefulset = statefulset;
    input.max_moves_in_flight = usize::try_from(c.spec.rebalance.max_moves_in_flight).unwrap_or(1);
    input.delete_claims = c.spec.storage.delete_claim;
    input.voters = c.voters;
    input.replace_after = c.spec.failure_recovery.replace_after.into();
    input.now = Some(Timestamp::now());
    input.health = (0..replicas)
        .map(|id| BrokerHealth {
            id,
            not_ready_since: pods.get(&id).and_then(not_ready_since),
        })
        .collect();
    let mut observed = Observed {
        input,
        pods,
        statefulset_generation: sts.and_then(|s| s.metadata.generation),
    };
    let anyone_gone = !recovery::gone(&RecoveryInput {
        brokers: &observed.input.health,
        replace_after: observed.input.replace_after,
        now: Timestamp::now(),
        partitions: &[],
        reassigning: 0,
        max_moves_in_flight: 0,
    })
    .is_empty();
    let rebalance_requested = c.spec.rebalance.mode == RebalanceMode::Auto
        || cluster.annotations().contains_key(REBALANCE_ANNOTATION);
    observed.input.rebalance_requested = rebalance_requested;
    observed.input.imbalance_threshold_percent =
        u32::try_from(c.spec.rebalance.imbalance_threshold_percent).unwrap_or(10);
    observed.input.dynamic_desired = build::config_map::dynamic_settings(c.spec);
    if let Some(addr) = kafka_addr(c, &observed) {
        let read = async {
            let mut admin = KafkaAdmin::connect(&addr).await?;
            admin.cluster_broker_config().await
        };
        match tokio::time::timeout(ASK_TIMEOUT, read).await {
            Ok(Ok(current)) => observed.input.dynamic_current = Some(current),
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot read the dynamic broker settings"),
            Err(_) => tracing::debug!("no answer with the dynamic broker settings in time"),
        }
    }
    let anyone_empty = !planner::empty_brokers(&observed.input).is_empty();
    if replicas > c.spec.brokers || anyone_gone || rebalance_requested || anyone_empty {
        // A scale-down, a replacement or a rebalance may be due: the planner
        // needs every partition's replicas.
        if let Some(addr) = kafka_addr(c, &observed) {
            match read_partitions(&addr).await {
                Ok((partitions, reassigning, brokers)) => {
                    observed.input.partitions = Some(partitions);
                    observed.input.reassigning = reassigning;
                    observed.input.brokers = brokers;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the partition map for a scale-down")
                }
            }
        }
        if observed.input.partitions.is_some() && (rebalance_requested || anyone_empty) {
            // The rebalance moves the smallest replicas first.
            observed.input.replica_sizes = read_replica_sizes(c, &observed).await;
        }
    }
    Ok(observed)
}

/// How long observe waits for one broker's answer (replica sizes, dynamic settings).
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// Replica sizes from every Ready broker, asked at once (each answers for
/// its own replicas). A broker that does not answer in time is left out and
/// the reconcile goes on: partitions no other replica reports count as empty
/// this pass.
async fn read_replica_sizes(
    c: &ClusterRef<'_>,
    observed: &Observed,
) -> BTreeMap<i32, ReplicaSizes> {
    let asks = observed
        .pods
        .iter()
        .filter(|(_, pod)| pod_ready(pod))
        .filter_map(|(id, pod)| Some((*id, admin_addr(pod, c.spec.listeners.kafka_port)?)))
        .map(|(id, addr)| async move {
            let ask = async {
                let mut admin = KafkaAdmin::connect(&addr).await?;
                admin.describe_log_dirs().await
            };
            match tokio::time::timeout(ASK_TIMEOUT, ask).await {
                Ok(Ok(sizes)) => Some((id, sizes)),
                Ok(Err(e)) => {
                    tracing::debug!(broker = id, error = %e, "no replica sizes from this broker");
                    None
                }
                Err(_) => {
                    tracing::debug!(broker = id, timeout = ?ASK_TIMEOUT, "no replica sizes from this broker in time");
                    None
                }
            }
        });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

type PartitionMap = (
    Vec<crate::plan::scale_down::Replicas>,
    usize,
    Vec<crate::plan::rebalance::Broker>,
);

async fn read_partitions(addr: &str) -> Result<PartitionMap, crate::admin::kafka::KafkaError> {
    let mut admin = KafkaAdmin::connect(addr).await?;
    let brokers = admin
        .metadata(Some(&[]))
        .await?
        .brokers
        .iter()
        .map(|b| crate::plan::rebalance::Broker {
            id: b.node_id.0,
            rack: b.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    let partitions = admin.all_partitions().await?;
    let removing = admin.reassignments_in_progress().await?;
    let reassigning = removing.len();
    Ok((
        crate::plan::scale_down::targets(partitions, &removing),
        reassigning,
        brokers,
    ))
}

async fn apply<K>(ctx: &Context, object: &K) -> Result<K, ReconcileError>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let ns = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(ReconcileError::kube(format!(
        "applying {} {ns}/{name}",
        K::kind(&())
    )))
}

async fn apply_objects(
    cluster: &Cluster,
    c: &ClusterRef<'_>,
    ctx: &Context,
    observed: &Observed,
    replicas: i32,
    claim_size: &str,
    reason: &str,
) -> Result<(), ReconcileError> {
    apply::<ServiceAccount>(ctx, &build::service_account::build(c)).await?;
    apply::<ConfigMap>(ctx, &build::config_map::build(c)).await?;
    apply::<Service>(ctx, &build::service::headless(c)).await?;
    apply::<Service>(ctx, &build::service::client(c)).await?;
    apply::<PodDisruptionBudget>(ctx, &build::pdb::build(c)).await?;
    let hash = build::config_map::config_hash(c);
    let mut sts = build::statefulset::build(
        c,
        &build::statefulset::Inputs {
            config_hash: &hash,
            claim_size,
        },
    );
    if let Some(spec) = sts.spec.as_mut() {
        spec.replicas = Some(replicas);
    }
    let applied = apply::<StatefulSet>(ctx, &sts).await?;
    if applied.metadata.generation != observed.statefulset_generation {
        let what = if observed.statefulset_generation.is_none() {
            "StatefulSetCreated"
        } else {
            "StatefulSetUpdated"
        };
        ctx.event(cluster, false, what, reason).await;
    }
    Ok(())
}

async fn act(
    cluster: &Cluster,
    c: &ClusterRef<'_>,
    ctx: &Context,
    observed: &Observed,
    planned: &Planned<ClusterAction>,
) -> Result<(), ReconcileError> {
    let ns = &c.namespace;
    let reason = planned.reason.as_str();
    match &planned.action {
        ClusterAction::ApplyObjects {
            replicas,
            claim_size,
        } => apply_objects(cluster, c, ctx, observed, *replicas, claim_size, reason).await,
        ClusterAction::ExpandClaim { claim, size } => {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
            let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
            api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(ReconcileError::kube(format!(
                    "expanding claim {ns}/{claim}"
                )))?;
            ctx.event(cluster, false, "StorageExpanded", reason).await;
            Ok(())
        }
        ClusterAction::Roll(RollAction::Drain(id)) => {
            let pod = observed.pods.get(id);
            let addr = pod.and_then(|p| admin_addr(p, c.spec.listeners.admin_port));
            let Some(addr) = addr else {
                return Err(ReconcileError::Broker(format!(
                    "broker {id} has no address to drain"
                )));
            };
            match http::drain(&addr).await {
                Ok(true) => {
                    ctx.event(cluster, false, "BrokerDraining", reason).await;
                    Ok(())
                }
                // No drain endpoint: SIGTERM does the controlled shutdown.
                Ok(false) => delete_pod(cluster, c, ctx, observed, *id, reason).await,
                Err(e) => Err(ReconcileError::Broker(e.to_string())),
            }
        }
        ClusterAction::Roll(RollAction::Undrain(id)) => {
            let addr = observed
                .pods
                .get(id)
                .and_then(|p| admin_addr(p, c.spec.listeners.admin_port))
                .ok_or_else(|| {
                    ReconcileError::Broker(format!("broker {id} has no address to undrain"))
                })?;
            match http::undrain(&addr).await {
                Ok(_) => {
                    ctx.event(cluster, false, "BrokerUndrained", reason).await;
                    Ok(())
                }
                Err(e) => Err(ReconcileError::Broker(e.to_string())),
            }
        }
        ClusterAction::Roll(RollAction::DeletePod(id)) => {
            delete_pod(cluster, c, ctx, observed, *id, reason).await
        }
        ClusterAction::Roll(RollAction::Wait | RollAction::Abort(_)) => Ok(()),
        ClusterAction::Reassign(moves) => {
            let addr = kafka_addr(c, observed).ok_or_else(|| {
                ReconcileError::Broker("no Ready broker to reassign through".into())
            })?;
            let mut admin = KafkaAdmin::connect(&addr)
                .await
                .map_err(|e| ReconcileError::Broker(e.to_string()))?;
            let mut by_topic: BTreeMap<&str, BTreeMap<i32, Vec<i32>>> = BTreeMap::new();
            for ((topic, partition), replicas) in moves {
                by_topic
                    .entry(topic.as_str())
                    .or_default()
                    .insert(*partition, replicas.clone());
            }
            for (topic, moves) in by_topic {
                admin
                    .reassign(topic, &moves)
                    .await
                    .map_err(|e| ReconcileError::Broker(format!("{reason}: {e}")))?;
            }
            ctx.event(cluster, false, "ReassignmentStarted", reason)
                .await;
            Ok(())
        }
        ClusterAction::SetDynamicConfig(change) => {
            let addr = kafka_addr(c, observed).ok_or_else(|| {
                ReconcileError::Broker("no Ready broker to change dynamic settings through".into())
            })?;
            let mut admin = KafkaAdmin::connect(&addr)
                .await
                .map_err(|e| ReconcileError::Broker(e.to_string()))?;
            admin
                .alter_cluster_broker_config(&change.set, &change.delete)
                .await
                .map_err(|e| ReconcileError::Broker(format!("{reason}: {e}")))?;
            ctx.event(cluster, false, "DynamicConfigChanged", reason)
                .await;
            Ok(())
        }
        ClusterAction::DeleteClaim(claim) => {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
            match api.delete(claim, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => {
                    return Err(ReconcileError::kube(format!("deleting claim {ns}/{claim}"))(e));
                }
            }
            ctx.event(cluster, false, "ClaimDeleted", reason).await;
            Ok(())
        }
    }
}

/// The voter count of the StatefulSet if it exists.
async fn existing_voters(ctx: &Context, c: &ClusterRef<'_>) -> Result<Option<i32>, ReconcileError> {
    let sts = Api::<StatefulSet>::namespaced(ctx.client.clone(), &c.namespace)
        .get_opt(&c.names.statefulset)
        .await
        .map_err(ReconcileError::kube(format!(
            "reading StatefulSet {}/{}",
            c.namespace, c.names.statefulset
        )))?;
    Ok(sts
        .and_then(|s| s.spec?.template.spec?.containers.into_iter().next()?.args)
        .and_then(|args| build::voters_in_args(&args)))
}

/// Kafka address of a Ready broker.
fn kafka_addr(c: &ClusterRef<'_>, observed: &Observed) -> Option<String> {
    observed
        .pods
        .values()
        .filter(|p| pod_ready(p))
        .find_map(|p| admin_addr(p, c.spec.listeners.kafka_port))
}

async fn delete_pod(
    cluster: &Cluster,
    c: &ClusterRef<'_>,
    ctx: &Context,
    observed: &Observed,
    id: i32,
    reason: &str,
) -> Result<(), ReconcileError> {
    let name = c.names.pod(id);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &c.namespace);
    // Only the pod that was observed: a pod recreated meanwhile is left alone.
    let uid = observed.pods.get(&id).and_then(|p| p.metadata.uid.clone());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return Ok(()),
        Err(e) => {
            return Err(ReconcileError::kube(format!(
                "deleting pod {}/{name}",
                c.namespace
            ))(e));
        }
    }
    ctx.event(cluster, false, "BrokerRestarted", reason).await;
    Ok(())
}

/// One pass for `cluster`.
pub async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.with_label_values(&["Cluster"]).inc();
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children;
        // the claims stay (no owner), as Kafka data should.
        ctx.forget(&super::key(cluster.as_ref()));
        return Ok(Action::await_change());
    }
    let c = ClusterRef::new(&cluster).map_err(|e| ReconcileError::Invalid(e.to_string()))?;
    let voters = existing_voters(&ctx, &c).await?;
    let c = c.with_existing_voters(voters);
    let span =
        tracing::info_span!("reconcile", cluster = %c.names.cluster, namespace = %c.namespace);
    let _enter = span.enter();
    let observed = observe(&cluster, &c, &ctx).await?;
    let plan = planner::plan(&observed.input);
    for refusal in &plan.refusals {
        ctx.event(cluster.as_ref(), true, refusal.reason, &refusal.message)
            .await;
    }
    if let Some(why) = &plan.roll_aborted {
        ctx.event(cluster.as_ref(), true, "RollAborted", why).await;
    }
    let mut failure = None;
    for planned in &plan.actions {
        if matches!(planned.action, ClusterAction::ApplyObjects { .. }) {
            tracing::debug!(reason = %planned.reason, "applying objects");
        } else {
            tracing::info!(action = ?planned.action, reason = %planned.reason, "applying");
        }
        if let Err(e) = act(&cluster, &c, &ctx, &observed, planned).await {
            failure = Some(e);
            break;
        }
    }
    let previous = cluster
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = Time(Timestamp::now());
    let status = planner::status(&observed.input, &plan, &c.cluster_id, &previous, &now);
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), &c.namespace);
    let patch = serde_json::json!({
        "apiVersion": "skiff.dev/v1alpha1",
        "kind": "Cluster",
        "status": status,
    });
    api.patch_status(
        &c.names.cluster,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(ReconcileError::kube(format!(
        "writing status of Cluster {}/{}",
        c.namespace, c.names.cluster
    )))?;
    ctx.record_operation(&super::key(cluster.as_ref()), plan.operation);
    ctx.metrics
        .duration
        .with_label_values(&["Cluster"])
        .observe(started.elapsed().as_secs_f64());
    if let Some(e) = failure {
        return Err(e);
    }
    ctx.succeeded(&super::key(cluster.as_ref()));
    Ok(Action::requeue(if plan.busy() {
        BUSY_REQUEUE
    } else {
        IDLE_REQUEUE
    }))
}
