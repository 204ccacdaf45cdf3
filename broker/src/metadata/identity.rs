//! The data directory's identity (`meta.properties`): which cluster and node it
//! belongs to. A broker refuses to start on a directory of another cluster or
//! node, so a mis-mounted volume never mixes two brokers' data.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

const FILE: &str = "meta.properties";

/// The data directory belongs to someone else, or cannot be read.
#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} belongs to node {found}, not node {expected}; refusing to start")]
    WrongNode {
        path: PathBuf,
        found: i32,
        expected: i32,
    },
    #[error("{path} belongs to cluster {found}, not cluster {expected}; refusing to start")]
    WrongCluster {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}: unreadable: {reason}")]
    Malformed { path: PathBuf, reason: String },
}

/// Cluster and node a data directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: i32,
    /// Written once when the directory is formatted: a broker that comes back
    /// with a new one has lost its data.
    pub directory_id: uuid::Uuid,
}

/// Checks (or, on an empty directory, records) the identity of `dir`.
/// `cluster_id` `None` accepts whatever cluster the directory has, or
/// generates a new id for a fresh directory.
pub fn ensure(
    dir: &Path,
    node_id: i32,
    cluster_id: Option<&str>,
) -> Result<Identity, IdentityError> {
    let path = dir.join(FILE);
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut found_node = None;
            let mut found_cluster = None;
            let mut directory_id = uuid::Uuid::nil();
            for (k, v) in
                crate::config::parse_properties(&text).map_err(|e| IdentityError::Malformed {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            {
                match k.as_str() {
                    "node.id" => found_node = v.parse::<i32>().ok(),
                    "cluster.id" => found_cluster = Some(v),
                    "directory.id" => directory_id = uuid::Uuid::parse_str(&v).unwrap_or_default(),
                    _ => {}
                }
            }
            let (Some(found_node), Some(found_cluster)) = (found_node, found_cluster) else {
                return Err(IdentityError::Malformed {
                    path,
                    reason: "node.id or cluster.id missing".into(),
                });
            };
            if found_node != node_id {
                return Err(IdentityError::WrongNode {
                    path,
                    found: found_node,
                    expected: node_id,
                });
            }
            if let Some(expected) = cluster_id.filter(|c| *c != found_cluster) {
                return Err(IdentityError::WrongCluster {
                    path,
                    found: found_cluster,
                    expected: expected.to_owned(),
                });
            }
            Ok(Identity {
                cluster_id: found_cluster,
                node_id,
                directory_id,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let cluster_id = cluster_id.map_or_else(new_cluster_id, str::to_owned);
            let directory_id = uuid::Uuid::new_v4();
            let text = format!(
                "# Written by skiff-broker; identifies this data directory.\nversion=1\ncluster.id={cluster_id}\nnode.id={node_id}\ndirectory.id={directory_id}\n"
            );
            let tmp = dir.join(format!("{FILE}.tmp"));
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(io)?;
            Ok(Identity {
                cluster_id,
                node_id,
                directory_id,
            })
        }
        Err(e) => Err(io(e)),
    }
}

/// A new cluster id in Kafka's style (22 characters of URL-safe base64 of a UUID).
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = uuid::Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_refuses_another_node_or_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = ensure(dir.path(), 1, None).expect("fresh");
        assert_eq!(id.cluster_id.len(), 22);
        assert_eq!(ensure(dir.path(), 1, None).expect("same"), id);
        assert_eq!(
            ensure(dir.path(), 1, Some(&id.cluster_id)).expect("same cluster"),
            id
        );
        assert!(matches!(
            ensure(dir.path(), 2, None),
            Err(IdentityError::WrongNode {
                found: 1,
                expected: 2,
                ..
            })
        ));
        assert!(matches!(
            ensure(dir.path(), 1, Some("other")),
            Err(IdentityError::WrongCluster { .. })
        ));
    }
}
