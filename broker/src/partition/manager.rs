//! The replicas this broker hosts, kept in step with the metadata image:
//! partitions appear when the image assigns them here, change settings when
//! their topic's config changes, and are deleted with their topic.
//!
//! Owns: partition directories and the map of open partitions. Must not:
//! decide placement or leadership.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use tracing::{error, info, warn};
use uuid::Uuid;

use super::Partition;
use crate::config::{AckDurability, BrokerConfig};
use crate::metadata::MetadataImage;

const PARTITION_METADATA: &str = "partition.metadata";

type Key = (Arc<str>, i32);

/// Open partitions of this broker.
#[derive(Debug)]
pub struct ReplicaManager {
    node_id: i32,
    data_dir: PathBuf,
    config: Arc<BrokerConfig>,
    partitions: RwLock<HashMap<Key, Arc<Partition>>>,
}

impl ReplicaManager {
    /// A manager with no partitions yet; `sync` opens them.
    pub fn new(node_id: i32, data_dir: &Path, config: Arc<BrokerConfig>) -> Self {
        Self {
            node_id,
            data_dir: data_dir.to_owned(),
            config,
            partitions: RwLock::new(HashMap::new()),
        }
    }

    /// The partition `topic`-`index`, if this broker hosts it.
    pub fn get(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let map = self
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&(Arc::from(topic), index)).cloned()
    }

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn dir_of(&self, topic: &str, index: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{index}"))
    }

    /// Opens partitions the image assigns to this broker, applies config
    /// changes and deletes partitions whose topic is gone. Returns how many
    /// partitions failed to open (they are logged and left out).
    pub fn sync(&self, image: &MetadataImage) -> usize {
        let mut failures = 0;
        let durability: AckDurability = self.config.ack_durability();
        let mut wanted: HashMap<Key, ()> = HashMap::new();
        for topic in image.topics.values() {
            let settings = topic.config.resolve(&self.config);
            for (&index, p) in &topic.partitions {
                if !p.replicas.contains(&self.node_id) {
                    continue;
                }
                let key: Key = (Arc::from(topic.name.as_str()), index);
                wanted.insert(key.clone(), ());
                if let Some(existing) = self.get(&topic.name, index)
                    && existing.topic_id == topic.id
                {
                    if existing.settings() != settings {
                        existing.set_settings(settings.clone());
                    }
                    continue;
                }
                let dir = self.dir_of(&topic.name, index);
                if let Err(e) = claim_dir(&dir, topic.id) {
                    error!(dir = %dir.display(), error = %e, "cannot prepare partition directory");
                    failures += 1;
                    continue;
                }
                match Partition::open(
                    &dir,
                    &topic.name,
                    topic.id,
                    index,
                    settings.clone(),
                    p.leader_epoch,
                    durability,
                ) {
                    Ok(partition) => {
                        self.partitions
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(key, partition);
                    }
                    Err(e) => {
                        error!(topic = %topic.name, partition = index, error = %e, "cannot open partition");
                        failures += 1;
                    }
                }
            }
        }
        let gone: Vec<(Key, Arc<Partition>)> = {
            let mut map = self
                .partitions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<Key> = map
                .keys()
                .filter(|k| !wanted.contains_key(*k))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| map.remove(&k).map(|p| (k, p)))
                .collect()
        };
        for ((topic, index), partition) in gone {
            let _ = partition.close();
            let dir = self.dir_of(&topic, index);
            let doomed = self.data_dir.join(format!(
                "{topic}-{index}.{}-delete",
                partition.topic_id.simple()
            ));
            info!(topic = %topic, partition = index, "deleting partition");
            match std::fs::rename(&dir, &doomed) {
                Ok(()) => {
                    if let Err(e) = std::fs::remove_dir_all(&doomed) {
                        warn!(dir = %doomed.display(), error = %e, "could not remove deleted partition");
                    }
                }
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "could not remove deleted partition")
                }
            }
        }
        failures
    }

    /// Closes every partition cleanly (flush, clean-shutdown markers).
    pub fn close_all(&self) {
        for p in self.all() {
            if let Err(e) = p.close() {
                error!(topic = %p.topic, partition = p.index, error = %e, "unclean close");
            }
        }
    }

    /// Removes directories of topics deleted while the broker was down, and
    /// leftovers of interrupted deletions.
    pub fn remove_strays(&self, image: &MetadataImage) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !path.join(PARTITION_METADATA).exists() && !name.ends_with("-delete") {
                continue;
            }
            let keep = read_topic_id(&path).is_some_and(|id| {
                image.topic_by_id(&id).is_some_and(|t| {
                    t.partitions.iter().any(|(i, p)| {
                        p.replicas.contains(&self.node_id) && name == format!("{}-{i}", t.name)
                    })
                })
            });
            if !keep {
                info!(dir = %path.display(), "removing directory of a deleted partition");
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    warn!(dir = %path.display(), error = %e, "could not remove");
                }
            }
        }
    }
}

fn read_topic_id(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
}

/// Makes `dir` the directory of topic `id`: a directory left by an older topic
/// of the same name is wiped first.
fn claim_dir(dir: &Path, id: Uuid) -> std::io::Result<()> {
    match read_topic_id(dir) {
        Some(existing) if existing == id => return Ok(()),
        Some(existing) => {
            warn!(dir = %dir.display(), old = %existing, new = %id, "directory belongs to a deleted topic of the same name; wiping it");
            std::fs::remove_dir_all(dir)?;
        }
        None => {}
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{PARTITION_METADATA}.tmp"));
    std::fs::write(&tmp, format!("version: 0\ntopic_id: {id}\n"))?;
    std::fs::rename(&tmp, dir.join(PARTITION_METADATA))
}
