//! The operator's Prometheus metrics and its `/metrics`, `/healthz` and
//! `/readyz` endpoint.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Metrics of the reconcilers.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry served at `/metrics`.
    pub registry: Registry,
    /// Reconcile passes by kind.
    pub reconciles: IntCounterVec,
    /// Failed passes by kind and error kind.
    pub errors: IntCounterVec,
    /// Pass durations by kind.
    pub duration: HistogramVec,
    /// Clusters seen.
    pub managed_clusters: IntGauge,
    /// Operations in flight by operation.
    pub operations: IntGaugeVec,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("skiff_operator".into()), None)?;
        let reconciles =
            IntCounterVec::new(Opts::new("reconciles_total", "Reconcile passes"), &["kind"])?;
        let errors = IntCounterVec::new(
            Opts::new("reconcile_errors_total", "Failed reconcile passes"),
            &["kind", "error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "Reconcile pass duration"),
            &["kind"],
        )?;
        let managed_clusters = IntGauge::new("managed_clusters", "Clusters reconciled")?;
        let operations = IntGaugeVec::new(
            Opts::new("operations_in_flight", "Clusters per operation under way"),
            &["operation"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(managed_clusters.clone()))?;
        registry.register(Box::new(operations.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            errors,
            duration,
            managed_clusters,
            operations,
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => ("200 OK", metrics.render()),
                "/healthz" | "/readyz" => ("200 OK", "ok\n".to_owned()),
                _ => ("404 Not Found", "not found\n".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
