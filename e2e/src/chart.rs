//! The operator installed the way users install it: `helm template` of
//! `charts/skiff-operator` with its CRDs, applied to the control plane. The
//! chart's default image (`skiff/operator`) is mapped by the node agent to a
//! freshly built `skiff-operator`, which runs in its pods with the chart's
//! ServiceAccount through in-cluster config, so it has exactly the chart's
//! RBAC. Used by `make up` and the chart e2e test.
//!
//! Owns no decisions about Skiff objects; it renders, applies and waits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};

use crate::broker_image::{self, BrokerBuildError, Profile};
use crate::manifest::{self, ManifestError};

/// The operator image the chart deploys by default (any tag maps).
pub const OPERATOR_IMAGE: &str = "skiff/operator";
/// A prebuilt operator binary to use instead of building one.
pub const OPERATOR_BIN_ENV: &str = "SKIFF_OPERATOR_BIN";
/// The release name: the chart's objects are then named `skiff-operator`.
pub const RELEASE: &str = "skiff-operator";
/// The namespace `make up` installs the operator into.
pub const NAMESPACE: &str = "skiff-system";
/// The operator's leader Lease (`operator/src/leader.rs`).
pub const LEASE: &str = "skiff-operator-leader";
/// The CRDs the chart installs.
pub const CRDS: [&str; 2] = ["clusters.skiff.dev", "topics.skiff.dev"];
/// The API group and version of the custom resources.
const GROUP: &str = "skiff.dev";
const VERSION: &str = "v1alpha1";

/// Why the operator could not be installed or did not come up.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// No operator binary.
    #[error(transparent)]
    Operator(#[from] BrokerBuildError),
    /// helm could not be found, built or run, or it failed.
    #[error("{action}: {reason}")]
    Helm {
        /// What was being done.
        action: String,
        /// What went wrong.
        reason: String,
    },
    /// Applying the rendered chart or an example failed.
    #[error("{what}: {source}")]
    Apply {
        /// What was applied.
        what: String,
        /// The underlying error.
        #[source]
        source: ManifestError,
    },
    /// Something did not become ready in time.
    #[error("{what} after {waited:?}:\n{detail}")]
    NotReady {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
        /// The last state seen.
        detail: String,
    },
}

/// The chart in this checkout.
pub fn chart_dir() -> PathBuf {
    broker_image::workspace_root().join("charts/skiff-operator")
}

/// The `skiff-operator` binary: `$SKIFF_OPERATOR_BIN`, or built in `profile`.
pub fn operator_binary(profile: Profile) -> Result<PathBuf, ChartError> {
    if let Some(path) = std::env::var_os(OPERATOR_BIN_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ChartError::Helm {
                action: format!("{OPERATOR_BIN_ENV}={}", path.display()),
                reason: "no such file".into(),
            })
        };
    }
    Ok(broker_image::build_binary("skiff-operator", profile)?)
}

/// helm: `$HELM`, else the one `build.sh helm` caches (built from the Go
/// module proxy the first time, as `charts/lint.sh` finds it).
pub fn helm() -> Result<PathBuf, ChartError> {
    if let Some(path) = std::env::var_os("HELM").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let script = crate::controlplane::binaries::build_script();
    let fail = |reason: String| ChartError::Helm {
        action: format!("finding helm with {} helm", script.display()),
        reason,
    };
    let output = Command::new("bash")
        .arg(&script)
        .arg("helm")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if !output.status.success() {
        return Err(fail(format!("it failed ({})", output.status)));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SKIFF_HELM_BIN_DIR="))
        .ok_or_else(|| fail(format!("it printed no SKIFF_HELM_BIN_DIR= line: {stdout}")))?;
    let helm = Path::new(dir).join("helm");
    if helm.is_file() {
        Ok(helm)
    } else {
        Err(fail(format!("{} does not exist", helm.display())))
    }
}

/// The command line that renders the chart, for people to read.
pub fn template_command(release: &str, namespace: &str, values: &[(&str, &str)]) -> String {
    let mut line = format!(
        "helm template {release} {} --namespace {namespace} --include-crds",
        chart_dir().display()
    );
    for (key, value) in values {
        line.push_str(&format!(" --set {key}={value}"));
    }
    line
}

/// `helm template` of the chart with its CRDs, for `release` in `namespace`,
/// with `--set key=value` for each of `values`.
pub fn render(
    helm: &Path,
    release: &str,
    namespace: &str,
    values: &[(&str, &str)],
) -> Result<String, ChartError> {
    let mut command = Command::new(helm);
    command.arg("template").arg(release).arg(chart_dir()).args([
        "--namespace",
        namespace,
        "--include-crds",
    ]);
    for (key, value) in values {
        command.arg("--set").arg(format!("{key}={value}"));
    }
    let fail = |reason: String| ChartError::Helm {
        action: template_command(release, namespace, values),
        reason,
    };
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run {}: {e}", helm.display())))?;
    if !output.status.success() {
        return Err(fail(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    String::from_utf8(output.stdout).map_err(|e| fail(e.to_string()))
}

/// Applies `rendered` (the chart's objects, CRDs included) into `namespace`,
/// creating it; returns `kind/name` of each object.
pub async fn install(
    client: &kube::Client,
    rendered: &str,
    namespace: &str,
) -> Result<Vec<String>, ChartError> {
    let fail = |source| ChartError::Apply {
        what: format!("the rendered chart {}", chart_dir().display()),
        source,
    };
    manifest::ensure_namespace(client, namespace)
        .await
        .map_err(fail)?;
    manifest::apply(client, rendered, namespace)
        .await
        .map_err(fail)
}

/// Waits until the chart's CRDs are established (served).
pub async fn wait_crds(client: &kube::Client, timeout: Duration) -> Result<(), ChartError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let started = Instant::now();
    let mut missing = Vec::new();
    while started.elapsed() < timeout {
        missing.clear();
        for name in CRDS {
            let established = api.get_opt(name).await.ok().flatten().is_some_and(|crd| {
                crd.status.and_then(|s| s.conditions).is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
            });
            if !established {
                missing.push(name);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(ChartError::NotReady {
        what: "the CRDs were not established".into(),
        waited: timeout,
        detail: format!("  not established: {}", missing.join(", ")),
    })
}

/// The operator's pods (the chart's selector labels) in `namespace`.
pub async fn operator_pods(client: &kube::Client, namespace: &str) -> Vec<Pod> {
    let selector =
        format!("app.kubernetes.io/name=skiff-operator,app.kubernetes.io/instance={RELEASE}");
    let mut pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the operator Deployment has every replica Ready (its
/// readiness probe is `/readyz`) and no pod of an older one is left;
/// returns its pods.
pub async fn wait_operator(
    client: &kube::Client,
    namespace: &str,
    timeout: Duration,
) -> Result<Vec<Pod>, ChartError> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    let mut detail = String::new();
    while started.elapsed() < timeout {
        let deployment = deployments.get_opt(RELEASE).await.ok().flatten();
        let pods = operator_pods(client, namespace).await;
        if let Some(deployment) = deployment {
            let want = deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1);
            let status = deployment.status.unwrap_or_default();
            let ready = pods.iter().filter(|p| pod_ready(p)).count();
            if status.ready_replicas == Some(want)
                && status.updated_replicas == Some(want)
                && pods.len() == usize::try_from(want).unwrap_or(0)
                && ready == pods.len()
            {
                return Ok(pods);
            }
            detail = format!(
                "  deployment {RELEASE}: {}/{want} ready\n{}",
                status.ready_replicas.unwrap_or(0),
                crate::local_cluster::describe_pods(&pods)
            );
        } else {
            detail = format!("  no deployment {RELEASE} in namespace {namespace}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(ChartError::NotReady {
        what: format!("the operator Deployment {namespace}/{RELEASE} was not Ready"),
        waited: timeout,
        detail,
    })
}

/// The custom resources of `kind` (`Cluster`, `Topic`) in `namespace`.
pub fn custom_resources(client: &kube::Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(GROUP, VERSION, kind);
    Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk))
}

/// The condition `type_` of a custom resource's status.
pub fn condition<'a>(object: &'a DynamicObject, type_: &str) -> Option<&'a serde_json::Value> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Whether a custom resource is Ready=True for its current generation.
pub fn resource_ready(object: &DynamicObject) -> bool {
    let current =
        object.data["status"]["observedGeneration"].as_i64() == object.metadata.generation;
    current && condition(object, "Ready").is_some_and(|c| c["status"] == "True")
}

/// `kind/name: Ready=False (reason: message)`, for an error.
pub fn describe_resource(kind: &str, object: Option<&DynamicObject>, name: &str) -> String {
    let Some(object) = object else {
        return format!("  {kind}/{name}: not found");
    };
    match condition(object, "Ready") {
        Some(c) => format!(
            "  {kind}/{name}: Ready={} ({}: {}) {}",
            c["status"].as_str().unwrap_or("?"),
            c["reason"].as_str().unwrap_or(""),
            c["message"].as_str().unwrap_or(""),
            object.data["status"]["progress"].as_str().unwrap_or("")
        ),
        None => format!("  {kind}/{name}: no Ready condition yet"),
    }
}

/// Waits until every `(kind, name)` in `namespace` is Ready; returns them in
/// the same order.
pub async fn wait_resources_ready(
    client: &kube::Client,
    namespace: &str,
    resources: &[(&str, &str)],
    timeout: Duration,
) -> Result<Vec<DynamicObject>, ChartError> {
    let started = Instant::now();
    let mut detail = Vec::new();
    while started.elapsed() < timeout {
        detail.clear();
        let mut ready = Vec::new();
        for (kind, name) in resources {
            let object = custom_resources(client, namespace, kind)
                .get_opt(name)
                .await
                .ok()
                .flatten();
            match object {
                Some(object) if resource_ready(&object) => ready.push(object),
                other => detail.push(describe_resource(kind, other.as_ref(), name)),
            }
        }
        if detail.is_empty() {
            return Ok(ready);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(ChartError::NotReady {
        what: format!("the Skiff resources in namespace {namespace} were not Ready"),
        waited: timeout,
        detail: detail.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_the_current_generation() {
        let object = |generation: i64, observed: i64, status: &str| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "skiff.dev/v1alpha1", "kind": "Topic",
                "metadata": {"name": "t", "generation": generation},
                "status": {"observedGeneration": observed,
                           "conditions": [{"type": "Ready", "status": status}]},
            }))
            .unwrap()
        };
        assert!(resource_ready(&object(2, 2, "True")));
        assert!(!resource_ready(&object(2, 1, "True")));
        assert!(!resource_ready(&object(1, 1, "False")));
        assert!(
            describe_resource("Topic", Some(&object(1, 1, "False")), "t").contains("Ready=False")
        );
        assert!(describe_resource("Topic", None, "t").contains("not found"));
    }

    #[test]
    fn the_template_command_names_the_chart_and_values() {
        let line = template_command("r", "ns", &[("replicaCount", "2")]);
        assert!(line.starts_with("helm template r "), "{line}");
        assert!(
            line.ends_with(
                "charts/skiff-operator --namespace ns --include-crds --set replicaCount=2"
            ),
            "{line}"
        );
    }
}
