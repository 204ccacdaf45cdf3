//! Dynamic provisioning of PersistentVolumes as local directories.
//!
//! Installs a default StorageClass whose provisioner is this agent; for each
//! pending claim of that class it creates a `hostPath` PersistentVolume
//! pre-bound to the claim (the controller-manager's PV binder completes the
//! binding), and when a released volume's reclaim policy is Delete it
//! removes the directory and the PersistentVolume. Directories live under
//! the agent's root, outside any pod's directory, so data survives pods.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

/// The StorageClass installed as the cluster default.
pub const STORAGE_CLASS: &str = "skiff-e2e-local";
/// The provisioner name in that class.
pub const PROVISIONER: &str = "skiff.dev/e2e-local";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// Where provisioned volumes live.
pub fn volume_root(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// Creates the default StorageClass unless it exists.
pub async fn install_storage_class(client: &kube::Client) -> Result<(), kube::Error> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        // One node: nothing to wait for before choosing where data lives.
        volume_binding_mode: Some("Immediate".into()),
        // Nothing here resizes a volume, so do not accept resize requests.
        allow_volume_expansion: Some(false),
        ..StorageClass::default()
    };
    match classes.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Simulates a lost disk: empties the directory that backs the claim with
/// `claim_uid` (its volume stays bound, like a blank replacement disk), so
/// the pod that mounts it next starts with no data.
pub fn lose_disk(root: &Path, claim_uid: &str) -> std::io::Result<()> {
    let dir = volume_root(root).join(format!("pvc-{claim_uid}"));
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The PersistentVolume for a claim, pre-bound to it.
pub fn volume_for(
    claim: &PersistentVolumeClaim,
    root: &Path,
    reclaim: &str,
) -> Option<PersistentVolume> {
    let uid = claim.metadata.uid.as_deref()?;
    let name = format!("pvc-{uid}");
    let spec = claim.spec.as_ref()?;
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .unwrap_or_else(|| Quantity("1Gi".into()));
    let path = volume_root(root).join(&name);
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_owned(),
                PROVISIONER.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_owned(), size)])),
            access_modes: spec.access_modes.clone(),
            volume_mode: spec.volume_mode.clone(),
            storage_class_name: Some(STORAGE_CLASS.into()),
            persistent_volume_reclaim_policy: Some(reclaim.into()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: Some(uid.to_owned()),
                ..ObjectReference::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path: path.display().to_string(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    })
}

fn wants_provisioning(claim: &PersistentVolumeClaim) -> bool {
    let spec = claim.spec.as_ref();
    let pending = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
        == "Pending";
    let unbound = spec.and_then(|s| s.volume_name.as_ref()).is_none();
    let ours = spec.and_then(|s| s.storage_class_name.as_deref()) == Some(STORAGE_CLASS);
    pending && unbound && ours && claim.metadata.deletion_timestamp.is_none()
}

/// One provisioning pass: volumes for pending claims, deletion of released
/// volumes. Returns how many objects it created or deleted.
pub async fn reconcile(client: &kube::Client, root: &Path) -> Result<usize, kube::Error> {
    let mut changed = 0;
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let existing: Vec<PersistentVolume> = volumes.list(&ListParams::default()).await?.items;
    for claim in claims.list(&ListParams::default()).await?.items {
        if !wants_provisioning(&claim) {
            continue;
        }
        let Some(volume) = volume_for(&claim, root, "Delete") else {
            continue;
        };
        if existing
            .iter()
            .any(|v| v.metadata.name == volume.metadata.name)
        {
            continue;
        }
        let path = volume_root(root).join(volume.metadata.name.as_deref().unwrap_or_default());
        if let Err(e) = std::fs::create_dir_all(&path) {
            tracing::error!(path = %path.display(), error = %e, "cannot create volume directory");
            continue;
        }
        match volumes.create(&PostParams::default(), &volume).await {
            Ok(_) => {
                changed += 1;
                tracing::info!(
                    claim = claim.metadata.name.as_deref().unwrap_or_default(),
                    namespace = claim.metadata.namespace.as_deref().unwrap_or_default(),
                    volume = volume.metadata.name.as_deref().unwrap_or_default(),
                    "provisioned"
                );
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    for volume in existing {
        let ours = volume
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROVISIONED_BY))
            .is_some_and(|p| p == PROVISIONER);
        let phase = volume
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or_default();
        let delete = volume
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete");
        if !(ours && delete && phase == "Released") || volume.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let name = volume.metadata.name.clone().unwrap_or_default();
        let path = volume_root(root).join(&name);
        if let Err(e) = std::fs::remove_dir_all(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(path = %path.display(), error = %e, "cannot delete volume directory");
            continue;
        }
        match volumes.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                changed += 1;
                tracing::info!(volume = name, "deleted released volume");
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losing_a_disk_empties_the_claim_directory_and_keeps_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = volume_root(root.path()).join("pvc-abc");
        std::fs::create_dir_all(dir.join("topic-0")).unwrap();
        std::fs::write(dir.join("topic-0/00000000000000000000.log"), b"data").unwrap();
        std::fs::write(dir.join("meta.properties"), b"node.id=0").unwrap();
        lose_disk(root.path(), "abc").unwrap();
        assert!(dir.is_dir());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert!(lose_disk(root.path(), "missing").is_err());
    }

    fn claim(phase: &str, class: Option<&str>, volume: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data-broker-0", "namespace": "kafka", "uid": "u1"},
            "spec": {
                "storageClassName": class,
                "volumeName": volume,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "5Gi"}}
            },
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn provisions_only_pending_unbound_claims_of_its_class() {
        assert!(wants_provisioning(&claim(
            "Pending",
            Some(STORAGE_CLASS),
            None
        )));
        assert!(!wants_provisioning(&claim(
            "Bound",
            Some(STORAGE_CLASS),
            Some("pv")
        )));
        assert!(!wants_provisioning(&claim("Pending", Some("other"), None)));
        assert!(!wants_provisioning(&claim("Pending", None, None)));
    }

    #[test]
    fn volume_is_prebound_and_sized_like_the_claim() {
        let pv = volume_for(
            &claim("Pending", Some(STORAGE_CLASS), None),
            Path::new("/r"),
            "Delete",
        )
        .unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u1"));
        let spec = pv.spec.unwrap();
        assert_eq!(spec.capacity.unwrap()["storage"], Quantity("5Gi".into()));
        let claim_ref = spec.claim_ref.unwrap();
        assert_eq!(
            (claim_ref.namespace.as_deref(), claim_ref.name.as_deref()),
            (Some("kafka"), Some("data-broker-0"))
        );
        assert_eq!(spec.host_path.unwrap().path, "/r/volumes/pvc-u1");
    }
}
