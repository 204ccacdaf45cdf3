//! The single-node metadata store: records appended to a local file (one JSON
//! record per line, fsynced), replayed at start-up into the image. The
//! replicated quorum replaces this file with a Raft log; the records and the
//! image stay the same.
//!
//! Owns: the record file and publishing new images. Must not: decide what to
//! write (see `controller`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use thiserror::Error;
use tokio::sync::watch;
use tracing::warn;

use super::image::MetadataImage;
use super::records::MetadataRecord;

const FILE: &str = "records.jsonl";

/// The metadata store failed.
#[derive(Debug, Error)]
pub enum MetadataError {
    /// The file system failed.
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// A record in the middle of the file is unreadable.
    #[error("{path}: line {line} is not a metadata record: {reason}")]
    Corruption {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Durable metadata records and the image they build.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    commit_lock: tokio::sync::Mutex<()>,
    image: watch::Sender<Arc<MetadataImage>>,
}

impl MetadataStore {
    /// Opens (or creates) the store in `dir` and replays it. A torn last line
    /// (a crash mid-write) is cut; an unreadable line before it is corruption.
    pub fn open(dir: &Path) -> Result<Self, MetadataError> {
        let path = dir.join(FILE);
        let io = |op: &'static str| {
            let path = path.clone();
            move |source| MetadataError::Io { path, op, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create directory"))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open"))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io("read"))?;
        let mut image = MetadataImage::default();
        let mut valid_len = 0usize;
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let complete = line.ends_with(b"\n");
            match serde_json::from_slice::<MetadataRecord>(line) {
                Ok(record) if complete => {
                    image.apply(&record);
                    valid_len += line.len();
                }
                Ok(_) | Err(_) if i + 1 == lines.len() => {
                    warn!(path = %path.display(), bytes = line.len(), "metadata store: cutting a torn last record");
                    break;
                }
                Ok(_) => unreachable!("only the last line can lack a newline"),
                Err(e) => {
                    return Err(MetadataError::Corruption {
                        path,
                        line: i + 1,
                        reason: e.to_string(),
                    });
                }
            }
        }
        if valid_len < text.len() {
            file.set_len(valid_len as u64).map_err(io("truncate"))?;
            file.sync_all().map_err(io("sync"))?;
        }
        let (image, _) = watch::channel(Arc::new(image));
        Ok(Self {
            path,
            file: Arc::new(Mutex::new(file)),
            commit_lock: tokio::sync::Mutex::new(()),
            image,
        })
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// A receiver that sees every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    /// Plans records against the current image and commits them durably, one
    /// commit at a time (so plan and write are atomic). `Ok(Err(e))` is a
    /// refused plan; `Err` a storage failure.
    pub async fn commit<E>(
        &self,
        plan: impl FnOnce(&MetadataImage) -> Result<Vec<MetadataRecord>, E>,
    ) -> Result<Result<Arc<MetadataImage>, E>, MetadataError> {
        let _guard = self.commit_lock.lock().await;
        let current = self.image();
        let records = match plan(&current) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if records.is_empty() {
            return Ok(Ok(current));
        }
        let mut text = Vec::new();
        for r in &records {
            // Serialising our own enum cannot fail.
            serde_json::to_writer(&mut text, r).map_err(|e| MetadataError::Io {
                path: self.path.clone(),
                op: "encode",
                source: e.into(),
            })?;
            text.push(b'\n');
        }
        let file = self.file.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = file.lock().unwrap_or_else(PoisonError::into_inner);
            f.write_all(&text).and_then(|()| f.sync_data())
        })
        .await
        .map_err(|e| MetadataError::Io {
            path: path.clone(),
            op: "write",
            source: io::Error::other(e),
        })?
        .map_err(|source| MetadataError::Io {
            path,
            op: "write",
            source,
        })?;
        let mut next = (*current).clone();
        for r in &records {
            next.apply(r);
        }
        let next = Arc::new(next);
        self.image.send_replace(next.clone());
        Ok(Ok(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = MetadataStore::open(dir.path()).expect("open");
            let r = store
                .commit(|_| {
                    Ok::<_, ()>(vec![
                        MetadataRecord::ClusterFormatted {
                            cluster_id: "c1".into(),
                        },
                        MetadataRecord::ProducerIdsAllocated { next: 1000 },
                    ])
                })
                .await
                .expect("io");
            assert_eq!(r.expect("plan").next_producer_id, 1000);
            let refused = store
                .commit(|_| Err::<Vec<MetadataRecord>, _>("no"))
                .await
                .expect("io");
            assert_eq!(refused.unwrap_err(), "no");
        }
        let path = dir.path().join(FILE);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"{\"type\":\"producer_ids_alloc")
            .expect("torn write");
        drop(f);
        let store = MetadataStore::open(dir.path()).expect("reopen");
        let image = store.image();
        assert_eq!(
            (
                image.cluster_id.as_str(),
                image.next_producer_id,
                image.records
            ),
            ("c1", 1000, 2)
        );

        std::fs::write(
            &path,
            b"garbage\n{\"type\":\"cluster_formatted\",\"cluster_id\":\"x\"}\n",
        )
        .expect("write");
        assert!(matches!(
            MetadataStore::open(dir.path()),
            Err(MetadataError::Corruption { line: 1, .. })
        ));
    }
}
