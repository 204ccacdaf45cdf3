//! Health checks over HTTP(S), all through kube's client so there is one TLS
//! stack: etcd's `/health`, the apiserver's `/readyz` and the controller-
//! manager's and scheduler's `/healthz`. Waiting is bounded and watches the
//! process, so a crashed component fails fast with its log tail.

use std::future::Future;
use std::time::{Duration, Instant};

use super::error::LogTail;
use super::error::{ControlPlaneError, Result};
use super::process::Supervised;

/// Pause between two checks.
const RETRY: Duration = Duration::from_millis(250);
/// Bound on one check, so a hung endpoint cannot stall the wait.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for an unauthenticated endpoint (health checks are allowed
/// anonymously), trusting `ca_der` for HTTPS.
pub fn anonymous_client(url: &str, ca_der: Option<&[u8]>) -> Result<kube::Client> {
    let uri = url.parse().map_err(|e| ControlPlaneError::Kubeconfig {
        path: url.into(),
        reason: format!("invalid URL: {e}"),
    })?;
    let mut config = kube::Config::new(uri);
    config.root_cert = ca_der.map(|der| vec![der.to_vec()]);
    config.connect_timeout = Some(CHECK_TIMEOUT);
    config.read_timeout = Some(CHECK_TIMEOUT);
    kube::Client::try_from(config).map_err(|source| ControlPlaneError::Kube {
        action: format!("building a client for {url}"),
        source,
    })
}

/// GET `path`; the body on 2xx, else a description of the failure.
pub async fn get(client: &kube::Client, path: &str) -> Result<String, String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(CHECK_TIMEOUT, client.request_text(request)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(error)) => Err(format!("GET {path}: {error}")),
        Err(_) => Err(format!("GET {path}: no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// Retries `check` (described by `what`, e.g. `GET /readyz`) until it
/// succeeds, `process` exits, or `timeout` passes.
pub async fn wait_healthy<F, Fut>(
    process: &mut Supervised,
    what: &'static str,
    timeout: Duration,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        process.check_running()?;
        let last_error = match check().await {
            Ok(()) => {
                tracing::info!(component = process.name(), check = what, took = ?started.elapsed(), "ready");
                return Ok(());
            }
            Err(error) => error,
        };
        if started.elapsed() >= timeout {
            // One last look: a process that died while we slept explains more.
            process.check_running()?;
            return Err(ControlPlaneError::Unhealthy {
                component: process.name().to_owned(),
                what,
                timeout,
                last_error,
                log: LogTail::read(&process.record().log),
            });
        }
        tokio::time::sleep(RETRY).await;
    }
}
