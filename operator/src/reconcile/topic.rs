//! Reconcile of a `Topic`: find its Cluster and a Ready broker, read the
//! topic through the Kafka admin APIs, plan with [`crate::plan::topic`],
//! send the requests, write status. Deletion goes through a finalizer that
//! deletes the Kafka topic first.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as Finalizer};

use super::{BUSY_REQUEUE, Context, FIELD_MANAGER, IDLE_REQUEUE, ReconcileError};
use crate::admin::kafka::KafkaAdmin;
use crate::build::{Names, labels};
use crate::crd::condition::{self, kind, reason};
use crate::crd::topic::FINALIZER;
use crate::crd::{Cluster, Topic, TopicStatus};
use crate::plan::topic::{self as planner, DesiredTopic, TopicAction, TopicInput, TopicPlan};

/// A Ready broker's Kafka address (`ip:port`) in `cluster`.
async fn broker_address(
    ctx: &Context,
    cluster: &Cluster,
    ns: &str,
) -> Result<Option<String>, ReconcileError> {
    let names = Names::new(&cluster.name_any());
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&labels::selector_text(&names.cluster)))
        .await
        .map_err(ReconcileError::kube(format!("listing broker pods in {ns}")))?;
    let port = cluster.spec.listeners.kafka_port;
    Ok(pods.items.iter().find_map(|p| {
        let status = p.status.as_ref()?;
        let ready = status
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let ip = status.pod_ip.as_deref()?;
        ready.then(|| format!("{ip}:{port}"))
    }))
}

fn desired(topic: &Topic) -> DesiredTopic {
    DesiredTopic {
        name: topic.topic_name(),
        partitions: topic.spec.partitions,
        replication_factor: topic.spec.replication_factor,
        config: topic.spec.config.clone(),
    }
}

async fn write_status(
    ctx: &Context,
    topic: &Topic,
    status: TopicStatus,
) -> Result<(), ReconcileError> {
    let ns = topic.namespace().unwrap_or_default();
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    let patch =
        serde_json::json!({"apiVersion": "skiff.dev/v1alpha1", "kind": "Topic", "status": status});
    api.patch_status(
        &topic.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(ReconcileError::kube(format!(
        "writing status of Topic {ns}/{}",
        topic.name_any()
    )))?;
    Ok(())
}

/// Status when the topic cannot be reached at all.
fn blocked(topic: &Topic, why_reason: &str, message: &str) -> TopicStatus {
    let g = topic.metadata.generation;
    let now = Time(Timestamp::now());
    let previous = topic
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    TopicStatus {
        observed_generation: g,
        conditions: condition::merge(
            &previous,
            vec![
                condition::new(kind::READY, false, why_reason, message, g, &now),
                condition::new(kind::PROGRESSING, false, why_reason, message, g, &now),
                condition::new(kind::DEGRADED, true, why_reason, message, g, &now),
            ],
        ),
        topic_name: Some(topic.topic_name()),
        ..topic.status.clone().unwrap_or_default()
    }
}

fn status_from_plan(
    topic: &Topic,
    plan: &TopicPlan,
    observed: Option<&planner::ObservedTopic>,
) -> TopicStatus {
    let g = topic.metadata.generation;
    let now = Time(Timestamp::now());
    let previous = topic
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let refused = plan
        .refusals
        .iter()
        .map(|r| r.message.clone())
        .collect::<Vec<_>>()
        .join("; ");
    let converged = plan.converged();
    let acting = !plan.actions.is_empty() || plan.progress.is_some();
    let action_text = plan
        .actions
        .iter()
        .map(|a| a.reason.clone())
        .collect::<Vec<_>>()
        .join("; ");
    let conditions = vec![
        if converged {
            condition::new(
                kind::READY,
                true,
                reason::RECONCILED,
                "topic matches its spec",
                g,
                &now,
            )
        } else if let Some(r) = plan.refusals.first() {
            condition::new(kind::READY, false, r.reason, &refused, g, &now)
        } else {
            condition::new(
                kind::READY,
                false,
                reason::REASSIGNING,
                plan.progress.clone().unwrap_or(action_text.clone()),
                g,
                &now,
            )
        },
        condition::new(
            kind::PROGRESSING,
            acting,
            if plan.progress.is_some() {
                reason::REASSIGNING
            } else if acting {
                reason::CREATING
            } else {
                reason::IDLE
            },
            plan.progress.clone().unwrap_or(action_text),
            g,
            &now,
        ),
        match plan.refusals.first() {
            Some(r) => condition::new(kind::DEGRADED, true, r.reason, &refused, g, &now),
            None => condition::new(kind::DEGRADED, false, reason::IDLE, "", g, &now),
        },
    ];
    TopicStatus {
        observed_generation: g,
        conditions: condition::merge(&previous, conditions),
        progress: plan.progress.clone(),
        topic_name: Some(topic.topic_name()),
        topic_id: topic.status.as_ref().and_then(|s| s.topic_id.clone()),
        partitions: observed.map(|o| i32::try_from(o.partitions.len()).unwrap_or(i32::MAX)),
        replication_factor: observed.and_then(|o| {
            o.partitions
                .iter()
                .map(|p| i16::try_from(p.replicas.len()).unwrap_or(i16::MAX))
                .min()
        }),
    }
}

async fn apply_topic(topic: Arc<Topic>, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = topic.namespace().unwrap_or_default();
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cluster) =
        clusters
            .get_opt(&topic.spec.cluster)
            .await
            .map_err(ReconcileError::kube(format!(
                "reading Cluster {ns}/{}",
                topic.spec.cluster
            )))?
    else {
        let msg = format!("Cluster {ns}/{} does not exist", topic.spec.cluster);
        write_status(
            ctx,
            &topic,
            blocked(&topic, reason::CLUSTER_NOT_FOUND, &msg),
        )
        .await?;
        return Ok(Action::requeue(IDLE_REQUEUE));
    };
    let Some(addr) = broker_address(ctx, &cluster, &ns).await? else {
        let msg = format!("Cluster {ns}/{} has no Ready broker", topic.spec.cluster);
        write_status(
            ctx,
            &topic,
            blocked(&topic, reason::BROKERS_UNREACHABLE, &msg),
        )
        .await?;
        return Ok(Action::requeue(BUSY_REQUEUE));
    };
    let mut admin = KafkaAdmin::connect(&addr)
        .await
        .map_err(|e| ReconcileError::Broker(e.to_string()))?;
    let desired = desired(&topic);
    let brokers: Vec<i32> = admin
        .metadata(Some(&[]))
        .await
        .map_err(|e| ReconcileError::Broker(e.to_string()))?
        .brokers
        .iter()
        .map(|b| b.node_id.0)
        .collect();
    let observed = admin
        .describe_topic(&desired.name)
        .await
        .map_err(|e| ReconcileError::Broker(e.to_string()))?;
    let max_moves = usize::try_from(cluster.spec.rebalance.max_moves_in_flight).unwrap_or(1);
    let plan = planner::plan(&TopicInput {
        desired: &desired,
        observed: observed.as_ref(),
        brokers: &brokers,
        max_moves_in_flight: max_moves,
    });
    for r in &plan.refusals {
        ctx.event(topic.as_ref(), true, r.reason, &r.message).await;
    }
    let mut failure = None;
    for planned in &plan.actions {
        tracing::info!(topic = %desired.name, action = ?planned.action, reason = %planned.reason, "applying");
        let result = match &planned.action {
            TopicAction::Create {
                partitions,
                replication_factor,
                config,
            } => {
                admin
                    .create_topic(&desired.name, *partitions, *replication_factor, config)
                    .await
            }
            TopicAction::AddPartitions { total } => {
                admin.create_partitions(&desired.name, *total).await
            }
            TopicAction::AlterConfig { set, delete } => {
                admin.alter_topic_config(&desired.name, set, delete).await
            }
            TopicAction::Reassign(moves) => admin.reassign(&desired.name, moves).await,
        };
        match result {
            Ok(()) => {
                let event = match planned.action {
                    TopicAction::Create { .. } => "TopicCreated",
                    TopicAction::AddPartitions { .. } => "PartitionsAdded",
                    TopicAction::AlterConfig { .. } => "ConfigChanged",
                    TopicAction::Reassign(_) => "ReassignmentStarted",
                };
                ctx.event(topic.as_ref(), false, event, &planned.reason)
                    .await;
            }
            Err(e) => {
                failure = Some(ReconcileError::Broker(format!("{}: {e}", planned.reason)));
                break;
            }
        }
    }
    // The previous pass reported a reassignment under way; this one has
    // nothing left to move: it finished.
    let was_moving = topic.status.as_ref().and_then(|s| s.progress.as_ref());
    let moving = plan.progress.is_some()
        || plan
            .actions
            .iter()
            .any(|p| matches!(p.action, TopicAction::Reassign(_)));
    if let Some(progress) = was_moving
        && !moving
        && failure.is_none()
    {
        let note = format!(
            "replicas of {} are where the spec wants them (was: {progress})",
            desired.name
        );
        ctx.event(topic.as_ref(), false, "ReassignmentFinished", &note)
            .await;
    }
    let status = status_from_plan(&topic, &plan, observed.as_ref());
    write_status(ctx, &topic, status).await?;
    if let Some(e) = failure {
        return Err(e);
    }
    let busy = !plan.actions.is_empty() || plan.progress.is_some();
    Ok(Action::requeue(if busy {
        BUSY_REQUEUE
    } else {
        IDLE_REQUEUE
    }))
}

async fn cleanup(topic: Arc<Topic>, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = topic.namespace().unwrap_or_default();
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), &ns);
    let cluster = clusters
        .get_opt(&topic.spec.cluster)
        .await
        .map_err(ReconcileError::kube(format!(
            "reading Cluster {ns}/{}",
            topic.spec.cluster
        )))?;
    // Without its Cluster the topic is gone with the brokers.
    let Some(cluster) = cluster.filter(|c| c.metadata.deletion_timestamp.is_none()) else {
        return Ok(Action::await_change());
    };
    let Some(addr) = broker_address(ctx, &cluster, &ns).await? else {
        return Err(ReconcileError::Broker(format!(
            "cannot delete topic {}: Cluster {ns}/{} has no Ready broker",
            topic.topic_name(),
            topic.spec.cluster
        )));
    };
    let mut admin = KafkaAdmin::connect(&addr)
        .await
        .map_err(|e| ReconcileError::Broker(e.to_string()))?;
    admin
        .delete_topic(&topic.topic_name())
        .await
        .map_err(|e| ReconcileError::Broker(e.to_string()))?;
    ctx.event(
        topic.as_ref(),
        false,
        "TopicDeleted",
        &format!("deleted topic {}", topic.topic_name()),
    )
    .await;
    Ok(Action::await_change())
}

/// One pass for `topic`.
pub async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciles.with_label_values(&["Topic"]).inc();
    let started = std::time::Instant::now();
    let ns = topic.namespace().unwrap_or_default();
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    let key = super::key(topic.as_ref());
    let result = finalizer::finalizer(&api, FINALIZER, topic, |event| async {
        match event {
            Finalizer::Apply(t) => apply_topic(t, &ctx).await,
            Finalizer::Cleanup(t) => cleanup(t, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Broker(format!("finalizer: {other}")),
    });
    ctx.metrics
        .duration
        .with_label_values(&["Topic"])
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}
