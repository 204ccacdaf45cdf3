//! The replicated state machine (openraft `RaftStateMachine`): applies each
//! entry's records to the `MetadataImage`, publishes the new image, tracks the
//! last membership, and builds, persists and installs snapshots.
//!
//! A snapshot is the image (JSON) plus openraft's meta (last applied log id,
//! membership); the latest one is kept in `snapshot.json` (replaced atomically,
//! fsynced), so a restart loads it and openraft replays the log after it.
//!
//! Owns: the applied image and snapshot files. Must not: interpret records
//! (that is `MetadataImage::apply`) or touch the log.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::durable::{self, FileError};
use super::types::{
    Applied, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::metadata::MetadataImage;

const SNAPSHOT_FILE: &str = "snapshot.json";

/// A snapshot could not be read, written or decoded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{}: undecodable snapshot: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("snapshot {id}: undecodable image from the leader: {source}")]
    BadData {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("encoding snapshot: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("snapshot store lock poisoned by an earlier panic")]
    Poisoned,
}

/// The snapshot file: meta and image.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    #[serde(with = "arc_image")]
    image: Arc<MetadataImage>,
}

/// Serde for the shared image without depending on serde's `rc` feature.
mod arc_image {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::metadata::MetadataImage;

    pub fn serialize<S: Serializer>(image: &Arc<MetadataImage>, s: S) -> Result<S::Ok, S::Error> {
        image.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<MetadataImage>, D::Error> {
        MetadataImage::deserialize(d).map(Arc::new)
    }
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Result<Snapshot<TypeConfig>, SnapshotError> {
        let data = serde_json::to_vec(&*self.image).map_err(SnapshotError::Encode)?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// Where snapshots live; shared by the state machine and its builders.
#[derive(Debug, Clone)]
struct SnapshotStore {
    path: PathBuf,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl SnapshotStore {
    fn open(dir: &Path) -> Result<SnapshotStore, SnapshotError> {
        let path = dir.join(SNAPSHOT_FILE);
        let current = match durable::read_optional(&path)? {
            None => None,
            Some(b) => {
                Some(
                    serde_json::from_slice(&b).map_err(|source| SnapshotError::Corrupt {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
        };
        Ok(SnapshotStore {
            path,
            current: Arc::new(Mutex::new(current)),
        })
    }

    fn current(&self) -> Result<Option<StoredSnapshot>, SnapshotError> {
        Ok(self
            .current
            .lock()
            .map_err(|_| SnapshotError::Poisoned)?
            .clone())
    }

    /// Persists `snap` and makes it the current snapshot, unless a newer one is already there.
    async fn save(&self, snap: StoredSnapshot) -> Result<(), SnapshotError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut current = this.current.lock().map_err(|_| SnapshotError::Poisoned)?;
            if let Some(cur) = current.as_ref()
                && cur.meta.last_log_id > snap.meta.last_log_id
            {
                return Ok(());
            }
            let bytes = serde_json::to_vec(&snap).map_err(SnapshotError::Encode)?;
            durable::replace_file(&this.path, &bytes, true)?;
            *current = Some(snap);
            Ok(())
        })
        .await
        .map_err(|_| SnapshotError::Poisoned)?
    }
}

/// The state machine openraft drives.
#[derive(Debug)]
pub(crate) struct StateMachine {
    node: i32,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    image: Arc<MetadataImage>,
    published: watch::Sender<Arc<MetadataImage>>,
    snapshots: SnapshotStore,
    /// Distinguishes snapshots built at the same log id.
    builds: u64,
}

impl StateMachine {
    /// Opens the state machine under `dir`, starting from the persisted snapshot if any.
    pub(crate) fn open(
        node: i32,
        dir: &Path,
    ) -> Result<(StateMachine, watch::Receiver<Arc<MetadataImage>>), SnapshotError> {
        let snapshots = SnapshotStore::open(dir)?;
        let (last_applied, membership, image) = match snapshots.current()? {
            Some(s) => (s.meta.last_log_id, s.meta.last_membership, s.image),
            None => (None, StoredMembership::default(), Arc::default()),
        };
        if let Some(applied) = last_applied {
            tracing::info!(node, %applied, "metadata image loaded from snapshot");
        }
        let (published, rx) = watch::channel(image.clone());
        Ok((
            StateMachine {
                node,
                last_applied,
                membership,
                image,
                published,
                snapshots,
                builds: 0,
            },
            rx,
        ))
    }
}

/// Builds one snapshot of the state as it was when the builder was made.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    node: i32,
    snapshot: StoredSnapshot,
    snapshots: SnapshotStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let snap = self.snapshot.clone();
        let signature = Some(snap.meta.signature());
        let io = |e: SnapshotError| {
            StorageIOError::write_snapshot(signature.clone(), openraft::AnyError::new(&e))
        };
        self.snapshots.save(snap.clone()).await.map_err(io)?;
        tracing::info!(node = self.node, snapshot = %snap.meta, "metadata snapshot built");
        Ok(snap.to_snapshot().map_err(io)?)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    let image = Arc::make_mut(&mut self.image);
                    for record in &batch.records {
                        image.apply(record);
                    }
                }
                EntryPayload::Membership(m) => {
                    tracing::info!(node = self.node, log_id = %entry.log_id, membership = %m, "membership applied");
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            out.push(Applied {
                image: self.image.clone(),
            });
        }
        self.published.send_replace(self.image.clone());
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.builds += 1;
        let id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.builds),
            None => format!("none-{}", self.builds),
        };
        SnapshotBuilder {
            node: self.node,
            snapshot: StoredSnapshot {
                meta: SnapshotMeta {
                    last_log_id: self.last_applied,
                    last_membership: self.membership.clone(),
                    snapshot_id: id,
                },
                image: self.image.clone(),
            },
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let signature = Some(meta.signature());
        let io = |e: SnapshotError| {
            StorageIOError::write_snapshot(signature.clone(), openraft::AnyError::new(&e))
        };
        let image: MetadataImage = serde_json::from_slice(snapshot.get_ref())
            .map_err(|source| SnapshotError::BadData {
                id: meta.snapshot_id.clone(),
                source,
            })
            .map_err(io)?;
        let image = Arc::new(image);
        self.snapshots
            .save(StoredSnapshot {
                meta: meta.clone(),
                image: image.clone(),
            })
            .await
            .map_err(io)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.image = image;
        self.published.send_replace(self.image.clone());
        tracing::info!(node = self.node, snapshot = %meta, "metadata snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let read =
            |e: SnapshotError| StorageIOError::read_snapshot(None, openraft::AnyError::new(&e));
        match self.snapshots.current().map_err(read)? {
            None => Ok(None),
            Some(s) => Ok(Some(s.to_snapshot().map_err(read)?)),
        }
    }
}
