//! Applying YAML manifests, as `kubectl apply --server-side -n <ns> -f`
//! does: every document of the file, of any kind the apiserver serves,
//! server-side applied under the field manager `skiff-e2e`. Used by the
//! local cluster (`make up`) and by tests that run the files in `examples/`.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};

/// The field manager of everything applied here.
pub const FIELD_MANAGER: &str = "skiff-e2e";

/// Why a manifest could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A document is not a Kubernetes object.
    #[error("document {index}: {reason}")]
    Invalid {
        /// Its position in the file, from 1.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The apiserver refused something.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
}

/// The objects of a multi-document YAML file, empty documents skipped.
pub fn parse(yaml: &str) -> Result<Vec<DynamicObject>, ManifestError> {
    use serde::Deserialize;
    let mut objects = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let invalid = |reason: String| ManifestError::Invalid {
            index: i + 1,
            reason,
        };
        let value = serde_yaml::Value::deserialize(document).map_err(|e| invalid(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_yaml::from_value(value).map_err(|e| invalid(e.to_string()))?;
        if object.types.is_none() || object.metadata.name.is_none() {
            return Err(invalid("no apiVersion, kind or metadata.name".into()));
        }
        objects.push(object);
    }
    Ok(objects)
}

/// Creates `namespace` unless it exists.
pub async fn ensure_namespace(client: &kube::Client, namespace: &str) -> Result<(), ManifestError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": namespace}
    }))
    .map_err(|e| ManifestError::Invalid {
        index: 0,
        reason: e.to_string(),
    })?;
    match namespaces.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(source) => Err(ManifestError::Kube {
            action: format!("creating namespace {namespace}"),
            source,
        }),
    }
}

/// Applies every object of `yaml`; namespaced objects without a namespace
/// go to `namespace`, and one naming another namespace is refused (as
/// kubectl does). Returns `kind/name` of each object, in order.
pub async fn apply(
    client: &kube::Client,
    yaml: &str,
    namespace: &str,
) -> Result<Vec<String>, ManifestError> {
    let mut applied = Vec::new();
    for (i, mut object) in parse(yaml)?.into_iter().enumerate() {
        let types = object.types.clone().unwrap_or_default();
        let name = object.metadata.name.clone().unwrap_or_default();
        let what = format!("{}/{name}", types.kind);
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| ManifestError::Invalid {
            index: i + 1,
            reason: e.to_string(),
        })?;
        let (resource, capabilities) =
            discovery::pinned_kind(client, &gvk)
                .await
                .map_err(|source| ManifestError::Kube {
                    action: format!("looking up the API of {}", types.api_version),
                    source,
                })?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                match object.metadata.namespace.as_deref() {
                    Some(other) if other != namespace => {
                        return Err(ManifestError::Invalid {
                            index: i + 1,
                            reason: format!("{what} is in namespace {other}, not {namespace}"),
                        });
                    }
                    _ => object.metadata.namespace = Some(namespace.to_owned()),
                }
                Api::namespaced_with(client.clone(), namespace, &resource)
            }
        };
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|source| ManifestError::Kube {
            action: format!("applying {what}"),
            source,
        })?;
        applied.push(what);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_document_and_skips_empty_ones() {
        let yaml = "---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: b, namespace: x}\n";
        let objects = parse(yaml).unwrap();
        let kinds: Vec<_> = objects
            .iter()
            .map(|o| o.types.as_ref().unwrap().kind.as_str())
            .collect();
        assert_eq!(kinds, ["Service", "StatefulSet"]);
        assert_eq!(objects[1].metadata.namespace.as_deref(), Some("x"));
        assert!(parse("kind: Service\nmetadata: {name: a}\n").is_err());
        assert!(parse("apiVersion: v1\nkind: Service\n").is_err());
    }

    #[test]
    fn the_broker_example_parses() {
        let path = crate::broker_image::workspace_root().join("examples/broker-statefulset.yaml");
        let objects = parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let kinds: Vec<_> = objects
            .iter()
            .map(|o| o.types.as_ref().unwrap().kind.as_str())
            .collect();
        assert_eq!(kinds, ["Service", "StatefulSet"], "{}", path.display());
        assert!(
            objects.iter().all(|o| o.metadata.namespace.is_none()),
            "the example is applied into a namespace of the user's choosing"
        );
    }
}
