//! The Metadata API: brokers, controller, and for each topic its partitions'
//! leaders, replicas and ISR, read from the metadata image. Topics that do not
//! exist are created when `auto.create.topics.enable` and the client allow it.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use tokio::sync::watch;
use tracing::info;
use uuid::Uuid;

use super::controller::NewTopic;
use super::image::{MetadataImage, TopicImage};
use crate::broker::{Broker, OFFSETS_TOPIC};
use crate::protocol::dispatch::text;

/// Kafka error code TOPIC_ALREADY_EXISTS.
pub const TOPIC_ALREADY_EXISTS: i16 = 36;

fn topic_entry(t: &TopicImage, image: &MetadataImage) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|(&index, p)| {
            let offline: Vec<BrokerId> = p
                .replicas
                .iter()
                .filter(|r| !image.is_usable(**r))
                .map(|&r| BrokerId(r))
                .collect();
            let leader_known = image.brokers.get(&p.leader).is_some_and(|b| !b.fenced);
            MetadataResponsePartition::default()
                .with_error_code(if leader_known { 0 } else { 5 })
                .with_partition_index(index)
                .with_leader_id(BrokerId(if leader_known { p.leader } else { -1 }))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|&r| BrokerId(r)).collect())
                .with_isr_nodes(p.isr.iter().map(|&r| BrokerId(r)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(text(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(t.name == OFFSETS_TOPIC)
        .with_partitions(partitions)
}

fn missing(name: Option<&str>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(text(n))))
        .with_topic_id(id)
}

/// How long a Metadata answer may wait for the controller to move the
/// leaderships of a leader this broker just found gone. The active controller
/// fences a crashed broker within tens of milliseconds (longer only when the
/// crashed broker was the active controller itself and a new one must be
/// elected first).
const LOST_LEADER_WAIT: Duration = Duration::from_millis(250);

/// The image once no partition is led by one of `lost` (the controller has
/// fenced them and moved their leaderships), or the latest image after
/// `wait`.
///
/// Why wait: a client asks for metadata the moment its connection to a
/// leader drops, before the fence. Named the dead leader, librdkafka waits
/// for its next periodic scan (measured: 950-1,011 ms of client-seen
/// failover); answered leaderless, the same (576 ms); answered a few
/// milliseconds later with the new leader, it produces at once (88-116 ms).
/// Past `wait` the image is answered as it is: a client sent to a dead
/// leader fails to connect and asks again at once, which converges sooner
/// than "leaderless" when the fence is slow.
async fn image_past(
    mut images: watch::Receiver<Arc<MetadataImage>>,
    lost: &[i32],
    wait: Duration,
) -> Arc<MetadataImage> {
    let led_by_lost = |image: &MetadataImage| {
        image
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .any(|p| lost.contains(&p.leader))
    };
    let _ = tokio::time::timeout(wait, images.wait_for(|i| !led_by_lost(i))).await;
    images.borrow().clone()
}

/// Handles a Metadata request.
pub async fn metadata(
    broker: &Arc<Broker>,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let lost = broker.replicas.lost_leaders();
    let mut image = if lost.is_empty() {
        broker.image()
    } else {
        image_past(broker.quorum.watch(), &lost, LOST_LEADER_WAIT).await
    };
    // v0 has no flag: it always auto-creates; v4+ lets the client say.
    let allow_create = broker.config.flag("auto.create.topics.enable")
        && (version < 4 || req.allow_auto_topic_creation);
    let topics = match &req.topics {
        None => image
            .topics
            .values()
            .map(|t| topic_entry(t, &image))
            .collect(),
        Some(requested) if requested.is_empty() && version == 0 => image
            .topics
            .values()
            .map(|t| topic_entry(t, &image))
            .collect(),
        Some(requested) => {
            let mut out = Vec::with_capacity(requested.len());
            for r in requested {
                // A by-id lookup may carry an empty name rather than null.
                let name = r
                    .name
                    .as_ref()
                    .map(|n| n.0.as_str().to_owned())
                    .filter(|n| !n.is_empty() || r.topic_id.is_nil());
                let found = match &name {
                    Some(n) => image.topics.get(n).cloned(),
                    None => image.topic_by_id(&r.topic_id).cloned(),
                };
                match (found, name) {
                    (Some(t), _) => out.push(topic_entry(&t, &image)),
                    (None, Some(n))
                        if allow_create && super::controller::validate_topic_name(&n).is_ok() =>
                    {
                        let created = broker
                            .create_topic(
                                NewTopic {
                                    name: n.clone(),
                                    partitions: -1,
                                    replication_factor: -1,
                                    ..Default::default()
                                },
                                false,
                            )
                            .await;
                        match created {
                            Err(e) if e.code != TOPIC_ALREADY_EXISTS => {
                                out.push(missing(Some(&n), Uuid::nil(), e.code))
                            }
                            _ => {
                                info!(topic = %n, "auto-created topic");
                                image = broker.image();
                                match image.topics.get(&n) {
                                    Some(t) => out.push(topic_entry(t, &image)),
                                    None => out.push(missing(Some(&n), Uuid::nil(), 5)),
                                }
                            }
                        }
                    }
                    (None, Some(n)) => {
                        let code = if super::controller::validate_topic_name(&n).is_ok() {
                            3
                        } else {
                            17
                        };
                        out.push(missing(Some(&n), Uuid::nil(), code));
                    }
                    (None, None) => out.push(missing(None, r.topic_id, 100)),
                }
            }
            out
        }
    };
    let brokers = listed_brokers(&image, broker.node_id)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(text(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(text))
        })
        .collect();
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(text(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(
            // Admin requests sent "to the controller" may go to any broker (they
            // are forwarded), but name the active one when it is live.
            broker
                .active_controller()
                .filter(|c| image.brokers.get(c).is_some_and(|b| !b.fenced))
                .unwrap_or(broker.node_id),
        ))
        .with_topics(topics);
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        response.cluster_authorized_operations = -2_147_483_648;
    }
    response
}

/// The brokers a Metadata answer from broker `this` lists.
///
/// Like Kafka, a broker fenced for silence (a pause, a partition) is not
/// listed: a client then drops its connection and the requests parked in
/// it instead of waiting out request.timeout.ms (listing it stalled an
/// idempotent producer's partition for 20 s). A broker whose process is
/// gone (its connection reset) stays listed: nothing is parked in its
/// sockets, and when the old leader vanishes in the same answer that names
/// the new one, librdkafka parks the partition until its next leader query
/// (retry.backoff.max.ms, 1 s by default; measured 1.4 s -> 0.45 s
/// client-seen failover). The answering broker, if fenced (e.g. just
/// started, before its first heartbeat), is listed only when no other
/// is: a client told of no broker at all is stranded, but one told of a
/// broker that cannot yet take replicas would count it as available.
fn listed_brokers(image: &MetadataImage, this: i32) -> Vec<&crate::metadata::BrokerInfo> {
    let listed = |b: &&crate::metadata::BrokerInfo| !b.fenced || b.crashed;
    let alone = !image.brokers.values().any(|b| listed(&b));
    image
        .brokers
        .values()
        .filter(|b| listed(b) || (alone && b.node_id == this))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::metadata::partition_change::tests::image;

    fn leader(image: &MetadataImage) -> i32 {
        image.topics["t"].partitions[&0].leader
    }

    #[tokio::test]
    async fn an_answer_about_a_lost_leader_waits_for_the_controller_to_move_it() {
        let before = Arc::new(image(3, &[1, 2, 0], 1, &[1, 2, 0]));
        let (tx, rx) = watch::channel(before.clone());
        let fenced = Arc::new(image(3, &[1, 2, 0], 2, &[2, 0]));
        let moved = fenced.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            tx.send_replace(moved);
            // Keep the sender until the wait is over.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let started = Instant::now();
        let answered = image_past(rx, &[1], Duration::from_secs(5)).await;
        assert_eq!(leader(&answered), 2, "the new leader, not the lost one");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "returned when the image moved"
        );
    }

    #[test]
    fn metadata_lists_unfenced_and_crashed_brokers_and_a_fenced_self_only_when_alone() {
        /// (fenced, crashed, answering broker) -> listed
        type Case = (&'static [i32], &'static [i32], i32, &'static [i32]);
        let cases: &[Case] = &[
            (&[], &[], 0, &[0, 1, 2]),
            // Just started, before its first heartbeat: not counted as available.
            (&[2], &[], 2, &[0, 1]),
            // Silent (paused, partitioned): not listed; gone (reset): listed.
            (&[1], &[], 0, &[0, 2]),
            (&[1], &[1], 0, &[0, 1, 2]),
            // Nobody else to name: the answering broker, so the client is not stranded.
            (&[0, 1, 2], &[], 1, &[1]),
        ];
        for (i, &(fenced, crashed, this, want)) in cases.iter().enumerate() {
            let mut img = image(3, &[0, 1, 2], 0, &[0, 1, 2]);
            for f in fenced {
                img.brokers.get_mut(f).expect("broker").fenced = true;
            }
            for c in crashed {
                img.brokers.get_mut(c).expect("broker").crashed = true;
            }
            let got: Vec<i32> = listed_brokers(&img, this)
                .iter()
                .map(|b| b.node_id)
                .collect();
            assert_eq!(got, want, "case {i}");
        }
    }

    #[tokio::test]
    async fn past_the_wait_the_image_is_answered_as_it_is() {
        let before = Arc::new(image(3, &[1, 2, 0], 1, &[1, 2, 0]));
        let (_tx, rx) = watch::channel(before);
        let answered = image_past(rx.clone(), &[1], Duration::from_millis(20)).await;
        assert_eq!(leader(&answered), 1);
        // A lost broker that leads nothing costs no wait.
        let started = Instant::now();
        let answered = image_past(rx, &[0], Duration::from_secs(5)).await;
        assert_eq!(leader(&answered), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
