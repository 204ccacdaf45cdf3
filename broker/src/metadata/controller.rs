//! Controller decisions: admin requests checked against the current image and
//! turned into metadata records.
//!
//! Pure: image + request in, records (or a Kafka error) out. The store commits
//! the records; this module never writes.

use std::collections::BTreeSet;

use thiserror::Error;
use uuid::Uuid;

use super::image::MetadataImage;
use super::placement::{self, Candidate};
use super::records::MetadataRecord;
use crate::config::{ConfigError, DynamicBrokerConfig, TopicConfig};

/// A refused admin request, mapped to Kafka's error codes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControllerError {
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(#[from] ConfigError),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("unknown topic id {0}")]
    UnknownTopicId(Uuid),
    #[error("topic deletion is disabled (delete.topic.enable=false)")]
    DeletionDisabled,
    #[error("{0}")]
    InvalidRequest(&'static str),
}

impl ControllerError {
    /// Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::TopicAlreadyExists(_) => 36,
            Self::InvalidTopic(_) => 17,
            Self::InvalidPartitions(_) => 37,
            Self::InvalidReplicationFactor(_) => 38,
            Self::InvalidReplicaAssignment(_) => 39,
            Self::InvalidConfig(_) => 40,
            Self::UnknownTopic(_) => 3,
            Self::UnknownTopicId(_) => 100,
            Self::DeletionDisabled => 73,
            Self::InvalidRequest(_) => 42,
        }
    }
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let bad = |why: &str| {
        Err(ControllerError::InvalidTopic(format!(
            "topic name '{name}' is illegal: {why}"
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > 249 {
        return bad("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// The most partitions one topic may have. Every partition is a directory
/// with open files on each replica, and the count comes straight from a
/// request: without a bound one CreateTopics could exhaust memory and file
/// handles (found by fuzzing).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

fn too_many(count: i32) -> ControllerError {
    ControllerError::InvalidPartitions(format!(
        "{count} partitions is more than the {MAX_PARTITIONS_PER_TOPIC} one topic may have"
    ))
}

/// A topic to create.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// `-1`: the broker's `num.partitions`.
    pub partitions: i32,
    /// `-1`: the broker's `default.replication.factor`.
    pub replication_factor: i32,
    /// Explicit replica lists per partition (then partitions and RF must be -1).
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub config: TopicConfig,
}

/// Brokers that may take new replicas: registered and usable.
fn candidates(image: &MetadataImage) -> Vec<Candidate> {
    image
        .brokers
        .values()
        .filter(|b| b.is_usable())
        .map(|b| Candidate {
            node_id: b.node_id,
            rack: b.rack.clone(),
        })
        .collect()
}

/// Too few brokers may take replicas for replication factor `rf`.
fn unavailable(image: &MetadataImage, rf: i32) -> ControllerError {
    let usable = candidates(image).len();
    let registered = image.brokers.len();
    let others = if registered > usable {
        format!(
            " ({} more registered but fenced or shutting down; a broker that just started is fenced until its first heartbeat)",
            registered - usable
        )
    } else {
        String::new()
    };
    ControllerError::InvalidReplicationFactor(format!(
        "replication factor {rf} is larger than the {usable} brokers available to take replicas{others}"
    ))
}

fn total_partitions(image: &MetadataImage) -> usize {
    image.topics.values().map(|t| t.partitions.len()).sum()
}

fn check_assignment(
    image: &MetadataImage,
    replicas: &[i32],
    rf: Option<usize>,
) -> Result<(), ControllerError> {
    let unique: BTreeSet<_> = replicas.iter().collect();
    if replicas.is_empty() || unique.len() != replicas.len() {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "replica list {replicas:?} is empty or repeats a broker"
        )));
    }
    if let Some(unknown) = replicas.iter().find(|id| !image.brokers.contains_key(id)) {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "broker {unknown} in {replicas:?} is not registered"
        )));
    }
    if rf.is_some_and(|rf| rf != replicas.len()) {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "replica list {replicas:?} does not match the topic's replication factor"
        )));
    }
    Ok(())
}

/// Records that create `topic`, with defaults `(num.partitions, default.replication.factor)`.
pub fn create_topic(
    image: &MetadataImage,
    topic: &NewTopic,
    defaults: (i32, i32),
    id: Uuid,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    validate_topic_name(&topic.name)?;
    if image.topics.contains_key(&topic.name) {
        return Err(ControllerError::TopicAlreadyExists(topic.name.clone()));
    }
    // Kafka refuses names that collide once '.' and '_' are treated alike (metric names).
    let folded = topic.name.replace('.', "_");
    if let Some(other) = image.topics.keys().find(|n| n.replace('.', "_") == folded) {
        return Err(ControllerError::InvalidTopic(format!(
            "topic '{}' collides with existing topic '{other}'",
            topic.name
        )));
    }
    let assignments: Vec<Vec<i32>> = if topic.assignments.is_empty() {
        let partitions = if topic.partitions == -1 {
            defaults.0
        } else {
            topic.partitions
        };
        let rf = if topic.replication_factor == -1 {
            defaults.1
        } else {
            topic.replication_factor
        };
        if partitions > MAX_PARTITIONS_PER_TOPIC {
            return Err(too_many(partitions));
        }
        if partitions < 1 {
            return Err(ControllerError::InvalidPartitions(format!(
                "number of partitions must be at least 1, got {partitions}"
            )));
        }
        if rf < 1 {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor must be at least 1, got {rf}"
            )));
        }
        placement::assign(
            &candidates(image),
            partitions,
            rf,
            0,
            total_partitions(image),
        )
        .ok_or_else(|| unavailable(image, rf))?
    } else {
        if topic.partitions != -1 || topic.replication_factor != -1 {
            return Err(ControllerError::InvalidRequest(
                "both a replica assignment and a partition count or replication factor were given",
            ));
        }
        if topic.assignments.len() > MAX_PARTITIONS_PER_TOPIC as usize {
            return Err(too_many(topic.assignments.len() as i32));
        }
        let mut sorted = topic.assignments.clone();
        sorted.sort_by_key(|(p, _)| *p);
        if sorted.iter().enumerate().any(|(i, (p, _))| *p != i as i32) {
            return Err(ControllerError::InvalidReplicaAssignment(
                "partitions in the assignment must be numbered 0..n".into(),
            ));
        }
        let rf = sorted[0].1.len();
        for (_, replicas) in &sorted {
            check_assignment(image, replicas, Some(rf))?;
        }
        sorted.into_iter().map(|(_, r)| r).collect()
    };
    let mut records = vec![MetadataRecord::TopicCreated {
        name: topic.name.clone(),
        topic_id: id,
        config: topic.config.clone(),
    }];
    for (partition, replicas) in assignments.into_iter().enumerate() {
        records.push(MetadataRecord::PartitionCreated {
            topic_id: id,
            partition: partition as i32,
            leader: replicas[0],
            isr: replicas.clone(),
            replicas,
        });
    }
    Ok(records)
}

/// Records that grow `name` to `count` partitions.
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    count: i32,
    assignments: Option<&[Vec<i32>]>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = image
        .topics
        .get(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.to_owned()))?;
    let current = topic.partitions.len() as i32;
    if count > MAX_PARTITIONS_PER_TOPIC {
        return Err(too_many(count));
    }
    if count <= current {
        return Err(ControllerError::InvalidPartitions(format!(
            "topic '{name}' has {current} partitions; the count can only grow (asked for {count})"
        )));
    }
    let rf = topic
        .partitions
        .values()
        .next()
        .map_or(1, |p| p.replicas.len());
    let plan = match assignments {
        Some(a) => {
            if a.len() as i32 != count - current {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "{} replica lists given for {} new partitions",
                    a.len(),
                    count - current
                )));
            }
            for replicas in a {
                check_assignment(image, replicas, Some(rf))?;
            }
            a.to_vec()
        }
        None => placement::assign(
            &candidates(image),
            count - current,
            rf as i32,
            current,
            total_partitions(image),
        )
        .ok_or_else(|| unavailable(image, rf as i32))?,
    };
    Ok(plan
        .into_iter()
        .enumerate()
        .map(|(i, replicas)| MetadataRecord::PartitionCreated {
            topic_id: topic.id,
            partition: current + i as i32,
            leader: replicas[0],
            isr: replicas.clone(),
            replicas,
        })
        .collect())
}

/// Records that delete a topic.
pub fn delete_topic(
    image: &MetadataImage,
    id: Uuid,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    image
        .topic_by_id(&id)
        .ok_or(ControllerError::UnknownTopicId(id))?;
    Ok(vec![MetadataRecord::TopicDeleted { topic_id: id }])
}

/// Records that replace a topic's config overrides.
pub fn alter_topic_config(
    image: &MetadataImage,
    name: &str,
    config: TopicConfig,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = image
        .topics
        .get(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.to_owned()))?;
    Ok(vec![MetadataRecord::TopicConfigChanged {
        topic_id: topic.id,
        config,
    }])
}

/// Records that replace the dynamic settings of broker `node_id`, or the
/// cluster-wide ones (`None`). A broker id need not be registered yet (Kafka
/// accepts settings for a broker before it starts), but must be one.
pub fn alter_broker_config(
    node_id: Option<i32>,
    config: DynamicBrokerConfig,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    if node_id.is_some_and(|n| n < 0) {
        return Err(ControllerError::InvalidRequest(
            "a broker id is a non-negative integer",
        ));
    }
    Ok(vec![MetadataRecord::BrokerConfigChanged {
        node_id,
        config,
    }])
}

/// Hands out a block of `count` producer ids: `(first id, records)`.
pub fn allocate_producer_ids(image: &MetadataImage, count: i64) -> (i64, Vec<MetadataRecord>) {
    let first = image.next_producer_id;
    (
        first,
        vec![MetadataRecord::ProducerIdsAllocated {
            next: first + count,
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_brokers(n: i32) -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 0..n {
            image.apply(&MetadataRecord::BrokerRegistered {
                node_id: id,
                host: "127.0.0.1".into(),
                port: 9092 + id,
                rack: None,
                incarnation: Uuid::nil(),
                controller: None,
            });
            image.apply(&MetadataRecord::BrokerUnfenced { node_id: id });
        }
        image
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            image.apply(r);
        }
    }

    #[test]
    fn create_topic_table() {
        let image = image_with_brokers(1);
        let new = |name: &str, partitions, rf| NewTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            ..Default::default()
        };
        let cases: Vec<(NewTopic, Result<usize, i16>)> = vec![
            (new("orders", 3, 1), Ok(4)),
            (new("orders", -1, -1), Ok(3)),
            (new("", 1, 1), Err(17)),
            (new("a/b", 1, 1), Err(17)),
            (new("..", 1, 1), Err(17)),
            (new("ok", 0, 1), Err(37)),
            (new("ok", MAX_PARTITIONS_PER_TOPIC + 1, 1), Err(37)),
            (new("ok", i32::MAX, 1), Err(37)),
            (new("ok", 1, 2), Err(38)),
            (new("ok", 1, 0), Err(38)),
        ];
        for (topic, want) in cases {
            let got = create_topic(&image, &topic, (2, 1), Uuid::nil())
                .map(|r| r.len())
                .map_err(|e| e.code());
            assert_eq!(got, want, "{topic:?}");
        }
    }

    #[test]
    fn duplicates_collisions_growth_and_deletion() {
        let mut image = image_with_brokers(3);
        let id = Uuid::new_v4();
        let topic = NewTopic {
            name: "a.b".into(),
            partitions: 2,
            replication_factor: 3,
            ..Default::default()
        };
        let records = create_topic(&image, &topic, (1, 1), id).expect("create");
        apply(&mut image, &records);
        assert_eq!(image.topics["a.b"].partitions[&1].replicas.len(), 3);
        assert_eq!(
            create_topic(&image, &topic, (1, 1), id).unwrap_err().code(),
            36
        );
        let clash = NewTopic {
            name: "a_b".into(),
            partitions: 1,
            replication_factor: 1,
            ..Default::default()
        };
        assert_eq!(
            create_topic(&image, &clash, (1, 1), id).unwrap_err().code(),
            17
        );

        assert_eq!(
            create_partitions(&image, "a.b", 2, None)
                .unwrap_err()
                .code(),
            37
        );
        let grow = create_partitions(&image, "a.b", 5, None).expect("grow");
        apply(&mut image, &grow);
        assert_eq!(image.topics["a.b"].partitions.len(), 5);
        assert_eq!(
            create_partitions(&image, "nope", 5, None)
                .unwrap_err()
                .code(),
            3
        );
        assert_eq!(
            create_partitions(&image, "a.b", 6, Some(&[vec![0, 0, 1]]))
                .unwrap_err()
                .code(),
            39
        );

        let deletion = delete_topic(&image, id).expect("delete");
        apply(&mut image, &deletion);
        assert!(image.topics.is_empty());
        assert_eq!(delete_topic(&image, id).unwrap_err().code(), 100);
    }

    #[test]
    fn manual_assignment_is_checked() {
        let image = image_with_brokers(2);
        let topic = |a: Vec<(i32, Vec<i32>)>| NewTopic {
            name: "t".into(),
            partitions: -1,
            replication_factor: -1,
            assignments: a,
            ..Default::default()
        };
        assert!(
            create_topic(
                &image,
                &topic(vec![(0, vec![1, 0]), (1, vec![0, 1])]),
                (1, 1),
                Uuid::nil()
            )
            .is_ok()
        );
        assert_eq!(
            create_topic(&image, &topic(vec![(0, vec![5])]), (1, 1), Uuid::nil())
                .unwrap_err()
                .code(),
            39
        );
        assert_eq!(
            create_topic(&image, &topic(vec![(1, vec![0])]), (1, 1), Uuid::nil())
                .unwrap_err()
                .code(),
            39
        );
    }
}
