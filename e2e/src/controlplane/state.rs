//! The state file `up` writes into the state directory: which processes it
//! started and how to reach the apiserver. `down` and `status` read it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::components::Ports;
use super::error::{ControlPlaneError, Result};
use super::process::GroupRecord;

/// What a running control plane looks like from outside.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The foreground `skiff-e2e up` that owns the components, with its start
    /// time; `None` once `up --detach` has returned.
    pub launcher: Option<(i32, u64)>,
    /// The apiserver's URL.
    pub apiserver_url: String,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The Kubernetes version the binaries were built from.
    pub kubernetes_version: String,
    /// Every port in use.
    pub ports: Ports,
    /// The components, in start order.
    pub components: Vec<GroupRecord>,
}

impl State {
    /// Reads the state file; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ControlPlaneError::io("reading", path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ControlPlaneError::State {
                path: path.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Writes the state file atomically (a reader never sees half of it).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ControlPlaneError::State {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| ControlPlaneError::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| ControlPlaneError::io("renaming", &tmp, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controlplane.json");
        assert!(State::load(&path).unwrap().is_none());
        let state = State {
            launcher: Some((42, 7)),
            apiserver_url: "https://127.0.0.1:1".into(),
            kubeconfig: "/k".into(),
            kubernetes_version: "v1.34.4".into(),
            ports: Ports {
                etcd_client: 1,
                etcd_peer: 2,
                apiserver: 3,
                controller_manager: 4,
                scheduler: 5,
            },
            components: vec![GroupRecord {
                name: "etcd".into(),
                pid: 9,
                start_time: 1,
                log: "/l".into(),
            }],
        };
        state.write(&path).unwrap();
        let loaded = State::load(&path).unwrap().unwrap();
        assert_eq!(loaded.components, state.components);
        assert_eq!(loaded.launcher, Some((42, 7)));
    }
}
