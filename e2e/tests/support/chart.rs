//! The operator installed from its Helm chart into a test's harness
//! (`skiff_e2e::chart` renders and applies; this waits and inspects): its
//! pods, the leader Lease, their logs and their HTTP endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use skiff_e2e::chart;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Harness;

/// Renders the chart with its defaults (plus `values`) for `namespace`,
/// applies it, and waits until the operator Deployment's pods are Ready.
pub async fn install_operator(
    harness: &Harness,
    namespace: &str,
    values: &[(&str, &str)],
    limit: Duration,
) -> (String, Vec<Pod>) {
    let rendered = tokio::task::spawn_blocking({
        let namespace = namespace.to_owned();
        let values: Vec<(String, String)> = values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move || {
            let helm = chart::helm().expect("helm (build.sh helm)");
            let values: Vec<(&str, &str)> = values
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            chart::render(&helm, chart::RELEASE, &namespace, &values).expect("helm template")
        }
    })
    .await
    .expect("rendering the chart");
    chart::install(&harness.client, &rendered, namespace)
        .await
        .expect("the rendered chart applies");
    let pods = chart::wait_operator(&harness.client, namespace, limit)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(harness, namespace, &[])));
    (rendered, pods)
}

/// The identity holding the operator's leader Lease in `namespace`.
pub async fn lease_holder(client: &kube::Client, namespace: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), namespace)
        .get_opt(chart::LEASE)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

/// The log file of a pod's `operator` container.
pub fn operator_log(harness: &Harness, pod: &Pod) -> PathBuf {
    skiff_e2e::node::pod::pod_dir(
        &harness.node_root(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default(),
    )
    .join("logs")
    .join("operator.log")
}

/// Every operator log under the harness's node root for `namespace` (pods
/// deleted since included), with `extra` pods' logs, for a failure message.
pub fn logs(harness: &Harness, namespace: &str, extra: &[Pod]) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(harness.node_root().join("pods"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{namespace}_"))
                })
                .map(|e| e.path().join("logs").join("operator.log"))
                .collect()
        })
        .unwrap_or_default();
    files.extend(extra.iter().map(|p| operator_log(harness, p)));
    files.sort();
    files.dedup();
    files
        .iter()
        .map(|f| {
            format!(
                "--- {}\n{}",
                f.display(),
                std::fs::read_to_string(f).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `GET path` over HTTP/1.0 from `addr`: status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| std::io::Error::other(format!("GET {path} from {addr} timed out")))??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_owned()))
}
