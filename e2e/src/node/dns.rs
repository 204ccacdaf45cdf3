//! Per-pod DNS names for processes on this machine, through the hosts file.
//!
//! There is no cluster DNS here, yet brokers advertise themselves as
//! `<pod>.<headless-service>.<namespace>.svc.cluster.local`. So the node
//! agent watches its pods and every Service, works out the names cluster
//! DNS would serve ([`super::dns_records`]), and keeps them in its own
//! marked block of `/etc/hosts` ([`super::hosts`]), which every process on
//! the machine consults through the C library's resolver.
//!
//! Edits are serialized between processes by an exclusive `flock` on the
//! hosts file's directory (the file itself is replaced, so it cannot carry
//! the lock) and written atomically: a temporary file beside it, renamed
//! over it. Where the hosts file cannot be replaced (a bind mount, another
//! owner) it is rewritten in place instead.
//!
//! The block goes when the agent stops or is dropped; `skiff-e2e down`
//! removes it too, through the record this module leaves in the node root
//! ([`withdraw_recorded`]), and an agent starting up removes blocks whose
//! writer has died.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde::{Deserialize, Serialize};

use super::hosts::{self, HostEntry, Owner};
use crate::controlplane::process;

/// The hosts file every resolver on the machine reads.
pub const SYSTEM_HOSTS_FILE: &str = "/etc/hosts";
/// Overrides the hosts file the agent edits; empty turns names off.
pub const HOSTS_FILE_ENV: &str = "SKIFF_E2E_HOSTS_FILE";
/// The record in the node root that lets `down` find the block.
const RECORD_FILE: &str = "hosts-file.json";
/// How often the names are rewritten even without a change in the API, so
/// a failed write (or a block someone removed by hand) heals.
const RESYNC: Duration = Duration::from_secs(10);

/// The hosts file the agent should edit: `SKIFF_E2E_HOSTS_FILE` if set
/// (empty: none), else `/etc/hosts`.
pub fn default_hosts_file() -> Option<PathBuf> {
    match std::env::var_os(HOSTS_FILE_ENV) {
        Some(path) if path.is_empty() => None,
        Some(path) => Some(PathBuf::from(path)),
        None => Some(PathBuf::from(SYSTEM_HOSTS_FILE)),
    }
}

/// A hosts file edited under a lock.
#[derive(Debug, Clone)]
pub struct HostsFile {
    path: PathBuf,
}

impl HostsFile {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this process may rewrite it (the file and its directory,
    /// which holds the lock and the temporary file).
    pub fn writable(&self) -> bool {
        let access = |p: &Path| rustix::fs::access(p, rustix::fs::Access::WRITE_OK).is_ok();
        access(&self.path) && self.path.parent().is_some_and(access)
    }

    /// Applies `edit` to the text under the lock; writes only on a change.
    /// Returns whether the file changed.
    pub fn edit(&self, edit: impl FnOnce(&str) -> String) -> std::io::Result<bool> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let lock = File::open(dir)?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        let old = std::fs::read_to_string(&self.path)?;
        let new = edit(&old);
        if new == old {
            return Ok(false);
        }
        self.replace(dir, &new)?;
        Ok(true)
        // `lock` closes here, releasing the flock.
    }

    fn replace(&self, dir: &Path, text: &str) -> std::io::Result<()> {
        let meta = std::fs::metadata(&self.path)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "hosts".into());
        let tmp = dir.join(format!(".{name}.skiff-e2e.{}.tmp", std::process::id()));
        // Renaming would hand the file to us; keep someone else's file theirs.
        let ours = meta.uid() == rustix::process::geteuid().as_raw();
        if ours {
            let renamed = (|| {
                let mut file = File::create(&tmp)?;
                file.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
                file.write_all(text.as_bytes())?;
                file.sync_all()?;
                std::fs::rename(&tmp, &self.path)
            })();
            match renamed {
                Ok(()) => return Ok(()),
                Err(error) => {
                    let _ = std::fs::remove_file(&tmp);
                    tracing::debug!(%error, path = %self.path.display(), "cannot replace; rewriting in place");
                }
            }
        }
        let mut file = File::options()
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
}

/// What `down` needs to remove a block: which file, which key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    hosts_file: PathBuf,
    key: String,
}

/// The block key of a node rooted at `root`: its absolute path.
fn key_for(root: &Path) -> String {
    std::path::absolute(root)
        .unwrap_or_else(|_| root.to_owned())
        .display()
        .to_string()
}

/// Removes the block of the node agent rooted at `node_root`, using the
/// record it left there. For `skiff-e2e down` and the control plane's drop
/// guard, which outlive an agent that was killed before it could clean up.
/// Nothing recorded is not an error.
pub fn withdraw_recorded(node_root: &Path) -> std::io::Result<()> {
    let path = node_root.join(RECORD_FILE);
    let record: Record = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match HostsFile::new(&record.hosts_file).edit(|text| hosts::with_block(text, &record.key, None))
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::remove_file(&path).or_else(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(e),
    })
}

/// One agent's block: publishes entries until withdrawn, never after.
#[derive(Debug)]
pub struct PodNames {
    file: HostsFile,
    key: String,
    owner: Owner,
    record: PathBuf,
    /// Set by [`PodNames::withdraw`]; guarded together with the writes, so
    /// a write still in flight cannot put the block back after withdrawal.
    withdrawn: Mutex<bool>,
}

impl PodNames {
    /// Claims the block of the node rooted at `root` in `hosts_file`:
    /// removes any block left under the same key and the blocks of writers
    /// that have died, and records where the block lives for `down`. An
    /// error means the file cannot be edited (typically: not root).
    pub fn claim(hosts_file: &Path, root: &Path) -> std::io::Result<Arc<Self>> {
        let file = HostsFile::new(hosts_file);
        if !file.writable() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} or its directory is not writable by this user",
                    hosts_file.display()
                ),
            ));
        }
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        let owner = Owner {
            pid: me,
            start_time: process::proc_stat(me).map_or(0, |s| s.start_time),
        };
        let key = key_for(root);
        let record = root.join(RECORD_FILE);
        let json = serde_json::to_vec(&Record {
            hosts_file: hosts_file.to_owned(),
            key: key.clone(),
        })
        .map_err(std::io::Error::other)?;
        std::fs::write(&record, json)?;
        file.edit(|text| {
            let mut text = hosts::with_block(text, &key, None);
            for block in hosts::blocks(&text) {
                if let Some(owner) = block.owner
                    && !process::alive(owner.pid, owner.start_time)
                {
                    tracing::info!(key = %block.key, pid = owner.pid, "removing a hosts block whose writer is gone");
                    text = hosts::with_block(&text, &block.key, None);
                }
            }
            text
        })?;
        Ok(Arc::new(Self {
            file,
            key,
            owner,
            record,
            withdrawn: Mutex::new(false),
        }))
    }

    /// The hosts file.
    pub fn hosts_file(&self) -> &Path {
        self.file.path()
    }

    /// Makes the block hold exactly `entries` (an empty list keeps an
    /// empty block). Does nothing once withdrawn.
    pub fn publish(&self, entries: &[HostEntry]) -> std::io::Result<bool> {
        let withdrawn = self.withdrawn.lock().unwrap_or_else(|p| p.into_inner());
        if *withdrawn {
            return Ok(false);
        }
        let block = hosts::render_block(&self.key, self.owner, entries);
        self.file
            .edit(|text| hosts::with_block(text, &self.key, Some(&block)))
    }

    /// Removes the block for good. Blocking, quick.
    pub fn withdraw(&self) {
        let mut withdrawn = self.withdrawn.lock().unwrap_or_else(|p| p.into_inner());
        if *withdrawn {
            return;
        }
        *withdrawn = true;
        match self
            .file
            .edit(|text| hosts::with_block(text, &self.key, None))
        {
            Ok(_) => {
                let _ = std::fs::remove_file(&self.record);
                tracing::info!(hosts = %self.file.path().display(), "pod names withdrawn");
            }
            Err(error) => {
                tracing::error!(%error, hosts = %self.file.path().display(), "could not remove the pod names block");
            }
        }
    }
}

/// Keeps the block in step with the pods on `node` and every Service, until
/// the task is aborted.
pub async fn publish(client: kube::Client, node: String, names: Arc<PodNames>) {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (services, service_writer) = reflector::store::<Service>();
    let selector = format!("spec.nodeName={node}");
    let pod_events = reflector(
        pod_writer,
        watcher(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().fields(&selector),
        )
        .default_backoff(),
    )
    .map(|event| (true, event.map(|e| matches!(e, watcher::Event::InitDone))));
    let service_events = reflector(
        service_writer,
        watcher(Api::<Service>::all(client), watcher::Config::default()).default_backoff(),
    )
    .map(|event| (false, event.map(|e| matches!(e, watcher::Event::InitDone))));
    let mut events = std::pin::pin!(futures::stream::select(pod_events, service_events));
    let (mut pods_listed, mut services_listed) = (false, false);
    let mut published: Option<Vec<HostEntry>> = None;
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            event = events.next() => {
                let Some((from_pods, event)) = event else { return };
                match event {
                    Ok(true) if from_pods => pods_listed = true,
                    Ok(true) => services_listed = true,
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "watch for pod names failed; retrying");
                        continue;
                    }
                }
            }
            _ = resync.tick() => published = None,
        }
        if !(pods_listed && services_listed) {
            continue;
        }
        let (pod_list, service_list) = (pods.state(), services.state());
        let entries = super::dns_records::records(
            pod_list.iter().map(AsRef::as_ref),
            service_list.iter().map(AsRef::as_ref),
        );
        if published.as_ref() == Some(&entries) {
            continue;
        }
        let writer = names.clone();
        let to_write = entries.clone();
        match tokio::task::spawn_blocking(move || writer.publish(&to_write)).await {
            Ok(Ok(changed)) => {
                if changed {
                    tracing::info!(
                        hosts = %names.hosts_file().display(),
                        entries = entries.len(),
                        "pod names updated"
                    );
                }
                published = Some(entries);
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, hosts = %names.hosts_file().display(), "could not update pod names");
            }
            Err(error) => tracing::warn!(%error, "pod names writer failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn entry(last: u8, name: &str) -> HostEntry {
        HostEntry {
            ip: Ipv4Addr::new(127, 0, 1, last),
            names: vec![name.to_owned()],
        }
    }

    #[test]
    fn publish_then_withdraw_restores_the_file_and_nothing_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        let original = "127.0.0.1 localhost\n";
        std::fs::write(&hosts, original).unwrap();
        std::fs::set_permissions(&hosts, std::fs::Permissions::from_mode(0o644)).unwrap();
        let root = dir.path().join("node");
        std::fs::create_dir(&root).unwrap();

        let names = PodNames::claim(&hosts, &root).unwrap();
        assert!(names.publish(&[entry(1, "a")]).unwrap());
        assert!(
            !names.publish(&[entry(1, "a")]).unwrap(),
            "no change, no write"
        );
        let text = std::fs::read_to_string(&hosts).unwrap();
        assert!(
            text.starts_with(original) && text.contains("127.0.1.1\ta\n"),
            "{text}"
        );
        assert_eq!(
            std::fs::metadata(&hosts).unwrap().mode() & 0o777,
            0o644,
            "mode kept across the atomic replace"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        names.withdraw();
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), original);
        assert!(!names.publish(&[entry(2, "b")]).unwrap());
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), original);
    }

    #[test]
    fn down_removes_the_block_of_a_killed_agent_and_claim_prunes_dead_writers() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        let original = "127.0.0.1 localhost\n";
        let dead = hosts::render_block(
            "/gone",
            Owner {
                pid: i32::MAX,
                start_time: 1,
            },
            &[entry(9, "old")],
        );
        std::fs::write(&hosts, format!("{original}{dead}")).unwrap();
        let root = dir.path().join("node");
        std::fs::create_dir(&root).unwrap();

        let names = PodNames::claim(&hosts, &root).unwrap();
        assert_eq!(
            std::fs::read_to_string(&hosts).unwrap(),
            original,
            "the dead writer's block is gone"
        );
        names.publish(&[entry(1, "a")]).unwrap();
        // The agent is killed: its block stays until `down` removes it.
        std::mem::forget(names);
        assert!(std::fs::read_to_string(&hosts).unwrap().contains("\ta\n"));
        withdraw_recorded(&root).unwrap();
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), original);
        assert!(!root.join(RECORD_FILE).exists());
        withdraw_recorded(&root).unwrap();
    }

    #[test]
    fn concurrent_writers_keep_each_others_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
        let writers: Vec<_> = (0..4u8)
            .map(|i| {
                let root = dir.path().join(format!("node-{i}"));
                std::fs::create_dir(&root).unwrap();
                PodNames::claim(&hosts, &root).unwrap()
            })
            .collect();
        std::thread::scope(|scope| {
            for (i, names) in writers.iter().enumerate() {
                scope.spawn(move || {
                    for round in 1..=20u8 {
                        let last = u8::try_from(i).unwrap() * 50 + round;
                        names.publish(&[entry(last, &format!("n{i}"))]).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&hosts).unwrap();
        assert_eq!(hosts::blocks(&text).len(), 4, "{text}");
        for i in 0..4u8 {
            let last = i * 50 + 20;
            assert!(text.contains(&format!("127.0.1.{last}\tn{i}\n")), "{text}");
        }
        for names in &writers {
            names.withdraw();
        }
        assert_eq!(
            std::fs::read_to_string(&hosts).unwrap(),
            "127.0.0.1 localhost\n"
        );
    }
}
