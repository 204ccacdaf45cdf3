//! A pod's volumes as directories on this machine.
//!
//! `emptyDir`, `configMap`, `secret`, `downwardAPI` and `projected` volumes
//! (including service-account tokens) are written under the pod's own
//! directory and go away with the pod; a `persistentVolumeClaim` resolves to
//! its bound PersistentVolume's directory, which outlives the pod;
//! `hostPath` is used as is. Anything not ready yet (an unbound claim, a
//! missing ConfigMap) is an error the pod worker retries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    Secret, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};

use super::spec::{EnvSources, PodContext, field_ref};

/// Files and directories of one pod's volumes, and what its environment
/// refers to.
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    /// Volume name → host directory.
    pub dirs: BTreeMap<String, PathBuf>,
    /// ConfigMaps and Secrets its containers' environments refer to.
    pub env_sources: EnvSources,
}

fn io_err(action: &str, path: &Path, e: std::io::Error) -> String {
    format!("{action} {}: {e}", path.display())
}

fn write_file(
    dir: &Path,
    relative: &str,
    contents: &[u8],
    mode: Option<i32>,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if relative.split('/').any(|part| part == "..") || relative.starts_with('/') {
        return Err(format!("volume item path {relative:?} escapes its volume"));
    }
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err("creating", parent, e))?;
    }
    std::fs::write(&path, contents).map_err(|e| io_err("writing", &path, e))?;
    let mode = u32::try_from(mode.unwrap_or(0o644)).unwrap_or(0o644);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err("setting mode of", &path, e))
}

/// Writes `data` as files: every key, or only `items` (key → path).
fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    what: &str,
) -> Result<(), String> {
    match items {
        None => {
            for (key, value) in data {
                write_file(dir, key, value, default_mode)?;
            }
        }
        Some(items) => {
            for item in items {
                let value = data
                    .get(&item.key)
                    .ok_or_else(|| format!("{what} has no key {:?}", item.key))?;
                write_file(dir, &item.path, value, item.mode.or(default_mode))?;
            }
        }
    }
    Ok(())
}

fn config_map_bytes(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    data
}

fn secret_bytes(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

fn write_downward_api(
    dir: &Path,
    items: &[DownwardAPIVolumeFile],
    ctx: &PodContext<'_>,
    default_mode: Option<i32>,
) -> Result<(), String> {
    for item in items {
        let value = match &item.field_ref {
            Some(field) => field_ref(ctx, &field.field_path)?,
            None => {
                return Err(format!(
                    "downwardAPI item {:?}: only fieldRef is supported",
                    item.path
                ));
            }
        };
        write_file(
            dir,
            &item.path,
            value.as_bytes(),
            item.mode.or(default_mode),
        )?;
    }
    Ok(())
}

/// Resolves and writes every volume of the pod under `pod_dir/volumes`.
pub async fn prepare(
    client: &kube::Client,
    ctx: &PodContext<'_>,
    pod_dir: &Path,
) -> Result<PodVolumes, String> {
    let pod = ctx.pod;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let get_cm = |name: String| {
        let api = config_maps.clone();
        async move {
            api.get_opt(&name)
                .await
                .map_err(|e| format!("reading configmap {name}: {e}"))
        }
    };
    let get_secret = |name: String| {
        let api = secrets.clone();
        async move {
            api.get_opt(&name)
                .await
                .map_err(|e| format!("reading secret {name}: {e}"))
        }
    };

    let mut volumes = PodVolumes::default();
    for volume in spec.volumes.iter().flatten() {
        let dir = volume_dir(pod_dir, volume);
        if let Some(claim) = &volume.persistent_volume_claim {
            let dir = claim_dir(client, namespace, &claim.claim_name).await?;
            volumes.dirs.insert(volume.name.clone(), dir);
            continue;
        }
        if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            if matches!(host.type_.as_deref(), Some("DirectoryOrCreate")) {
                std::fs::create_dir_all(&path).map_err(|e| io_err("creating", &path, e))?;
            }
            volumes.dirs.insert(volume.name.clone(), path);
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(|e| io_err("creating", &dir, e))?;
        if volume.empty_dir.is_some() {
            // Nothing to write; the directory is the volume.
        } else if let Some(source) = &volume.config_map {
            match get_cm(source.name.clone()).await? {
                Some(cm) => write_keys(
                    &dir,
                    &config_map_bytes(&cm),
                    source.items.as_ref(),
                    source.default_mode,
                    &format!("configmap {}", source.name),
                )?,
                None if source.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", source.name)),
            }
        } else if let Some(source) = &volume.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            match get_secret(name.clone()).await? {
                Some(secret) => write_keys(
                    &dir,
                    &secret_bytes(&secret),
                    source.items.as_ref(),
                    source.default_mode,
                    &format!("secret {name}"),
                )?,
                None if source.optional == Some(true) => {}
                None => return Err(format!("secret {name:?} not found")),
            }
        } else if let Some(source) = &volume.downward_api {
            write_downward_api(
                &dir,
                source.items.as_deref().unwrap_or(&[]),
                ctx,
                source.default_mode,
            )?;
        } else if let Some(projected) = &volume.projected {
            for source in projected.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    match get_cm(cm.name.clone()).await? {
                        Some(found) => write_keys(
                            &dir,
                            &config_map_bytes(&found),
                            cm.items.as_ref(),
                            projected.default_mode,
                            &format!("configmap {}", cm.name),
                        )?,
                        None if cm.optional == Some(true) => {}
                        None => return Err(format!("configmap {:?} not found", cm.name)),
                    }
                } else if let Some(secret) = &source.secret {
                    match get_secret(secret.name.clone()).await? {
                        Some(found) => write_keys(
                            &dir,
                            &secret_bytes(&found),
                            secret.items.as_ref(),
                            projected.default_mode,
                            &format!("secret {}", secret.name),
                        )?,
                        None if secret.optional == Some(true) => {}
                        None => return Err(format!("secret {:?} not found", secret.name)),
                    }
                } else if let Some(downward) = &source.downward_api {
                    write_downward_api(
                        &dir,
                        downward.items.as_deref().unwrap_or(&[]),
                        ctx,
                        projected.default_mode,
                    )?;
                } else if let Some(token) = &source.service_account_token {
                    let jwt = service_account_token(
                        client,
                        pod,
                        token.audience.clone(),
                        token.expiration_seconds,
                    )
                    .await?;
                    write_file(&dir, &token.path, jwt.as_bytes(), projected.default_mode)?;
                }
            }
        } else {
            return Err(format!("volume {:?}: unsupported volume type", volume.name));
        }
        volumes.dirs.insert(volume.name.clone(), dir);
    }

    // ConfigMaps and Secrets the environment refers to.
    let (mut cm_names, mut secret_names) = (BTreeSet::new(), BTreeSet::new());
    for container in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        for from in container.env_from.iter().flatten() {
            if let Some(cm) = &from.config_map_ref {
                cm_names.insert(cm.name.clone());
            }
            if let Some(secret) = &from.secret_ref {
                secret_names.insert(secret.name.clone());
            }
        }
        for var in container.env.iter().flatten() {
            let Some(from) = &var.value_from else {
                continue;
            };
            if let Some(r) = &from.config_map_key_ref {
                cm_names.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_key_ref {
                secret_names.insert(r.name.clone());
            }
        }
    }
    for name in cm_names {
        if let Some(cm) = get_cm(name.clone()).await? {
            let data = config_map_bytes(&cm)
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect();
            volumes.env_sources.config_maps.insert(name, data);
        }
    }
    for name in secret_names {
        if let Some(secret) = get_secret(name.clone()).await? {
            let data = secret_bytes(&secret)
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect();
            volumes.env_sources.secrets.insert(name, data);
        }
    }
    Ok(volumes)
}

/// Where a pod-lifetime volume lives.
fn volume_dir(pod_dir: &Path, volume: &Volume) -> PathBuf {
    pod_dir.join("volumes").join(&volume.name)
}

/// The directory of the PersistentVolume bound to a claim.
async fn claim_dir(client: &kube::Client, namespace: &str, claim: &str) -> Result<PathBuf, String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(|e| format!("reading persistentvolumeclaim {claim}: {e}"))?
        .ok_or_else(|| format!("persistentvolumeclaim {claim:?} not found"))?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume = pvc.spec.as_ref().and_then(|s| s.volume_name.clone());
    let Some(volume) = volume.filter(|_| bound) else {
        return Err(format!("persistentvolumeclaim {claim:?} is not bound yet"));
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs
        .get(&volume)
        .await
        .map_err(|e| format!("reading persistentvolume {volume}: {e}"))?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec
        .host_path
        .map(|h| h.path)
        .or(spec.local.map(|l| l.path))
        .ok_or_else(|| format!("persistentvolume {volume} is neither hostPath nor local"))?;
    let path = PathBuf::from(path);
    std::fs::create_dir_all(&path).map_err(|e| io_err("creating", &path, e))?;
    Ok(path)
}

/// A token for the pod's service account, bound to the pod.
async fn service_account_token(
    client: &kube::Client,
    pod: &Pod,
    audience: Option<String>,
    expiration_seconds: Option<i64>,
) -> Result<String, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_owned());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.filter(|a| !a.is_empty()).into_iter().collect(),
            expiration_seconds: expiration_seconds.or(Some(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let response = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            format!("requesting a token for service account {namespace}/{account}: {e}")
        })?;
    response
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "token request returned no token".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_paths_cannot_escape_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_file(dir.path(), "../x", b"", None).is_err());
        assert!(write_file(dir.path(), "/etc/x", b"", None).is_err());
        write_file(dir.path(), "a/b.conf", b"k=v", Some(0o600)).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/b.conf")).unwrap(), b"k=v");
    }

    #[test]
    fn selected_items_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = BTreeMap::from([
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"2".to_vec()),
        ]);
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "renamed".into(),
            ..KeyToPath::default()
        }];
        write_keys(dir.path(), &data, Some(&items), None, "cm").unwrap();
        assert!(!dir.path().join("a").exists());
        assert_eq!(std::fs::read(dir.path().join("renamed")).unwrap(), b"2");
        let missing = vec![KeyToPath {
            key: "zzz".into(),
            path: "z".into(),
            ..KeyToPath::default()
        }];
        assert!(write_keys(dir.path(), &data, Some(&missing), None, "cm").is_err());
    }
}
