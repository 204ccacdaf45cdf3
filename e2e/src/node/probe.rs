//! Readiness, liveness and startup probes: running one check ([`check`])
//! and the threshold bookkeeping between checks ([`ProbeState`], pure).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Kubernetes' probe defaults.
const DEFAULT_PERIOD: i32 = 10;
const DEFAULT_TIMEOUT: i32 = 1;
const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(value.unwrap_or(default).max(0)).unwrap_or(0))
}

/// A port number, or a named container port.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(number) => {
            u16::try_from(*number).map_err(|_| format!("invalid probe port {number}"))
        }
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("container has no port named {name:?}")),
    }
}

/// Runs one check of `probe` against the container at `pod_ip`.
/// `exec_env` is the container's environment for `exec` probes, which run
/// on this machine like the container itself.
pub async fn check(
    probe: &Probe,
    container: &Container,
    pod_ip: Ipv4Addr,
    exec_env: &[(String, String)],
) -> Result<(), String> {
    let timeout = seconds(probe.timeout_seconds, DEFAULT_TIMEOUT);
    let attempt = async {
        if let Some(http) = &probe.http_get {
            let port = resolve_port(&http.port, container)?;
            let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
            let path = http.path.as_deref().unwrap_or("/");
            if http.scheme.as_deref() == Some("HTTPS") {
                // No TLS client here; the port accepting connections is the
                // closest honest check.
                return tcp(&host, port).await.map(drop);
            }
            http_get(&host, port, path).await
        } else if let Some(socket) = &probe.tcp_socket {
            let port = resolve_port(&socket.port, container)?;
            let host = socket.host.clone().unwrap_or_else(|| pod_ip.to_string());
            tcp(&host, port).await.map(drop)
        } else if let Some(exec) = &probe.exec {
            let command = exec.command.as_deref().unwrap_or(&[]);
            let (program, args) = command.split_first().ok_or("exec probe without command")?;
            let status = tokio::process::Command::new(program)
                .args(args)
                .env_clear()
                .envs(exec_env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| format!("exec probe {program}: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("exec probe {program}: {status}"))
            }
        } else {
            Err("unsupported probe type (only httpGet, tcpSocket and exec)".to_owned())
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("probe timed out after {timeout:?}")))
}

async fn tcp(host: &str, port: u16) -> Result<TcpStream, String> {
    TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))
}

/// A minimal HTTP/1.1 GET; 200–399 is success, as for the kubelet.
async fn http_get(host: &str, port: u16, path: &str) -> Result<(), String> {
    let mut stream = tcp(host, port).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: skiff-e2e-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status_line = String::from_utf8_lossy(&head);
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "GET {path}: no HTTP status in {:?}",
                status_line.lines().next()
            )
        })?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("GET {path}: HTTP {code}"))
    }
}

/// Thresholds and timing of one probe of one container run. Pure.
#[derive(Debug, Clone)]
pub struct ProbeState {
    period: Duration,
    success_threshold: i32,
    failure_threshold: i32,
    next_due: Instant,
    successes: i32,
    failures: i32,
    /// The current verdict: ready / alive / started.
    pub passing: bool,
    /// The last failure, for status messages and logs.
    pub last_error: Option<String>,
}

impl ProbeState {
    /// A probe for a container started at `started`; `passing` is the
    /// verdict before the first check (false for readiness and startup,
    /// true for liveness).
    pub fn new(probe: &Probe, started: Instant, passing: bool) -> Self {
        Self {
            period: seconds(probe.period_seconds, DEFAULT_PERIOD).max(Duration::from_millis(100)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1),
            failure_threshold: probe
                .failure_threshold
                .unwrap_or(DEFAULT_FAILURE_THRESHOLD)
                .max(1),
            next_due: started + seconds(probe.initial_delay_seconds, 0),
            successes: 0,
            failures: 0,
            passing,
            last_error: None,
        }
    }

    /// Whether a check is due.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_due
    }

    /// Whether the last `failureThreshold` checks all failed.
    pub fn exhausted(&self) -> bool {
        self.failures >= self.failure_threshold
    }

    /// Records a check's outcome; returns the new verdict if it changed.
    pub fn record(&mut self, outcome: Result<(), String>, now: Instant) -> Option<bool> {
        self.next_due = now + self.period;
        let before = self.passing;
        match outcome {
            Ok(()) => {
                self.failures = 0;
                self.successes += 1;
                self.last_error = None;
                if self.successes >= self.success_threshold {
                    self.passing = true;
                }
            }
            Err(error) => {
                self.successes = 0;
                self.failures += 1;
                self.last_error = Some(error);
                if self.failures >= self.failure_threshold {
                    self.passing = false;
                }
            }
        }
        (self.passing != before).then_some(self.passing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Probe {
        Probe {
            period_seconds: Some(1),
            initial_delay_seconds: Some(2),
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Probe::default()
        }
    }

    #[test]
    fn waits_for_the_initial_delay() {
        let t0 = Instant::now();
        let state = ProbeState::new(&probe(1, 3), t0, false);
        assert!(!state.due(t0));
        assert!(state.due(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn thresholds_decide_the_verdict() {
        let t0 = Instant::now();
        let mut state = ProbeState::new(&probe(2, 2), t0, false);
        let fail = || Err("x".to_owned());
        // (outcome, expected change)
        let steps: [(Result<(), String>, Option<bool>); 6] = [
            (Ok(()), None),
            (Ok(()), Some(true)),
            (fail(), None),
            (Ok(()), None),
            (fail(), None),
            (fail(), Some(false)),
        ];
        for (i, (outcome, expected)) in steps.into_iter().enumerate() {
            assert_eq!(state.record(outcome, t0), expected, "step {i}");
        }
        assert_eq!(state.last_error.as_deref(), Some("x"));
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "admin", "containerPort": 8080}]
        }))
        .unwrap();
        assert_eq!(
            resolve_port(&IntOrString::String("admin".into()), &container),
            Ok(8080)
        );
        assert!(resolve_port(&IntOrString::String("nope".into()), &container).is_err());
        assert_eq!(resolve_port(&IntOrString::Int(9), &container), Ok(9));
    }

    #[tokio::test]
    async fn http_and_tcp_checks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await.unwrap();
                let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                socket.write_all(response.as_bytes()).await.unwrap();
            }
        });
        assert_eq!(http_get("127.0.0.1", port, "/ready").await, Ok(()));
        assert_eq!(
            http_get("127.0.0.1", port, "/ready").await,
            Err("GET /ready: HTTP 503".to_owned())
        );
        server.await.unwrap();
        assert!(tcp("127.0.0.1", port).await.is_err(), "listener is closed");
    }
}
