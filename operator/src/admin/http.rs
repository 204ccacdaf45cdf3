//! Client of the broker's HTTP admin endpoint: `GET /v1/status`,
//! `GET /v1/restart-safety`, `POST /v1/drain`, `DELETE /v1/drain`.
//!
//! A minimal HTTP/1.1 client (one request per connection, `Connection:
//! close`, body read to the end) is enough for a handful of small JSON
//! documents on the pod network and keeps an HTTP stack out of the operator.

use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::plan::roll::{DrainState, Safety};

/// Bound on one request, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Largest response read.
const MAX_RESPONSE: u64 = 1 << 20;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, writing or reading failed.
    #[error("{method} http://{addr}{path}: {source}")]
    Io {
        /// Method.
        method: &'static str,
        /// Broker admin address.
        addr: String,
        /// Path.
        path: &'static str,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// No answer within [`TIMEOUT`].
    #[error("{method} http://{addr}{path}: no answer within {TIMEOUT:?}")]
    Timeout {
        /// Method.
        method: &'static str,
        /// Broker admin address.
        addr: String,
        /// Path.
        path: &'static str,
    },
    /// The response is not HTTP or not the JSON expected.
    #[error("{method} http://{addr}{path}: {reason}")]
    Invalid {
        /// Method.
        method: &'static str,
        /// Broker admin address.
        addr: String,
        /// Path.
        path: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes as text.
    pub body: String,
}

/// Parses an HTTP/1.x response read to the end of the connection.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no end of headers".to_owned())?;
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status code in {status_line:?}"))?;
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Err("chunked responses are not supported".to_owned());
    }
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

/// Sends one request to the admin endpoint at `addr` (`host:port`).
pub async fn request(
    addr: &str,
    method: &'static str,
    path: &'static str,
) -> Result<Response, HttpError> {
    let io = |source| HttpError::Io {
        method,
        addr: addr.to_owned(),
        path,
        source,
    };
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\nAccept: application/json\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .await
            .map_err(io)?;
        parse_response(&raw).map_err(|reason| HttpError::Invalid {
            method,
            addr: addr.to_owned(),
            path,
            reason,
        })
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| HttpError::Timeout {
            method,
            addr: addr.to_owned(),
            path,
        })?
}

/// `GET /v1/status`: the broker's view of itself (the broker's JSON, see
/// `broker/src/admin/safety.rs` `BrokerStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(from = "StatusWire")]
pub struct BrokerState {
    /// The broker's id.
    pub node_id: Option<i32>,
    /// `starting`, `running`, `draining`, `drained`, `shutting-down`, …
    pub state: Option<String>,
    /// Whether this broker is the active metadata-quorum leader.
    pub is_active_controller: Option<bool>,
    /// Id of the active metadata-quorum leader, as this broker knows it.
    pub controller_id: Option<i32>,
    /// Replicas on this broker.
    pub partitions: Option<i32>,
    /// Partitions it leads.
    pub leaders: Option<i32>,
    /// Partitions it leads with fewer in-sync replicas than replicas.
    pub under_replicated: Option<i32>,
    /// Partitions without a leader in the whole cluster (from metadata).
    pub offline_partitions: Option<i32>,
}

/// The fields of the broker's `/v1/status` the operator reads, as named there.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StatusWire {
    node_id: Option<i32>,
    state: Option<String>,
    active_controller: Option<i32>,
    partitions: Option<i32>,
    leaders: Option<i32>,
    under_replicated: Option<i32>,
    offline: Option<i32>,
}

impl From<StatusWire> for BrokerState {
    fn from(w: StatusWire) -> Self {
        Self {
            is_active_controller: match (w.node_id, w.active_controller) {
                (Some(n), Some(c)) => Some(n == c),
                _ => None,
            },
            node_id: w.node_id,
            state: w.state,
            controller_id: w.active_controller,
            partitions: w.partitions,
            leaders: w.leaders,
            under_replicated: w.under_replicated,
            offline_partitions: w.offline,
        }
    }
}

impl BrokerState {
    /// Drain state from `state`.
    pub fn drain(&self) -> DrainState {
        match self.state.as_deref() {
            Some("draining") => DrainState::InProgress,
            Some("drained") => DrainState::Done,
            _ => DrainState::None,
        }
    }
}

/// `GET /v1/restart-safety` body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct RestartSafety {
    /// Whether restarting this broker now keeps every partition at or above
    /// min.insync.replicas and the quorum's majority.
    pub safe: bool,
    /// Partitions that would fall below min.insync.replicas.
    pub blocking: Vec<BlockingPartition>,
    /// Why the metadata quorum would lose its majority, if it would.
    pub quorum: Option<String>,
}

/// One partition the broker's restart would hurt.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct BlockingPartition {
    pub topic: String,
    pub partition: i32,
    pub reason: String,
}

impl RestartSafety {
    /// What blocks the restart, one line each (for the condition message).
    pub fn reasons(&self) -> Vec<String> {
        self.blocking
            .iter()
            .map(|b| format!("{}-{}: {}", b.topic, b.partition, b.reason))
            .chain(self.quorum.iter().map(|q| format!("metadata quorum: {q}")))
            .collect()
    }
}

fn json<T: serde::de::DeserializeOwned>(
    addr: &str,
    path: &'static str,
    r: &Response,
) -> Result<T, HttpError> {
    serde_json::from_str(&r.body).map_err(|e| HttpError::Invalid {
        method: "GET",
        addr: addr.to_owned(),
        path,
        reason: format!("status {}: {e}", r.status),
    })
}

/// The broker's status; `Ok(None)` when it has no `/v1/status`.
pub async fn status(addr: &str) -> Result<Option<BrokerState>, HttpError> {
    const PATH: &str = "/v1/status";
    let r = request(addr, "GET", PATH).await?;
    match r.status {
        404 => Ok(None),
        200 => json(addr, PATH, &r).map(Some),
        other => Err(HttpError::Invalid {
            method: "GET",
            addr: addr.to_owned(),
            path: PATH,
            reason: format!("status {other}: {}", r.body.trim()),
        }),
    }
}

/// The restart-safety probe as the roll planner reads it. 200 and 409 both
/// carry the JSON answer; anything else (404 included) is unknown.
pub async fn restart_safety(addr: &str) -> Safety {
    const PATH: &str = "/v1/restart-safety";
    match request(addr, "GET", PATH).await {
        Ok(r) if r.status == 200 || r.status == 409 => {
            match json::<RestartSafety>(addr, PATH, &r) {
                Ok(s) if s.safe && r.status == 200 => Safety::Safe,
                Ok(s) => Safety::Unsafe(s.reasons()),
                Err(e) => Safety::Unknown(e.to_string()),
            }
        }
        Ok(r) if r.status == 404 => {
            Safety::Unknown(format!("the broker at {addr} has no {PATH} endpoint"))
        }
        Ok(r) => Safety::Unknown(format!("{PATH}: status {}: {}", r.status, r.body.trim())),
        Err(e) => Safety::Unknown(e.to_string()),
    }
}

/// Asks the broker to drain (move leadership away, then report `drained`).
/// `Ok(false)` when the broker has no drain endpoint.
pub async fn drain(addr: &str) -> Result<bool, HttpError> {
    const PATH: &str = "/v1/drain";
    let r = request(addr, "POST", PATH).await?;
    match r.status {
        200..=299 => Ok(true),
        404 | 405 => Ok(false),
        other => Err(HttpError::Invalid {
            method: "POST",
            addr: addr.to_owned(),
            path: PATH,
            reason: format!("status {other}: {}", r.body.trim()),
        }),
    }
}

/// Ends the broker's maintenance mode (`DELETE /v1/drain`), so it may lead
/// again. `Ok(false)` when the broker has no drain endpoint.
pub async fn undrain(addr: &str) -> Result<bool, HttpError> {
    const PATH: &str = "/v1/drain";
    let r = request(addr, "DELETE", PATH).await?;
    match r.status {
        200..=299 => Ok(true),
        404 | 405 => Ok(false),
        other => Err(HttpError::Invalid {
            method: "DELETE",
            addr: addr.to_owned(),
            path: PATH,
            reason: format!("status {other}: {}", r.body.trim()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\n").unwrap();
        assert_eq!(r.status, 404);
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc")
                .is_err()
        );
    }

    #[test]
    fn status_json_tolerates_missing_and_extra_fields() {
        let s: BrokerState = serde_json::from_str(
            r#"{"node_id":1,"state":"draining","active_controller":0,"under_replicated":2,"future":1}"#,
        )
        .unwrap();
        assert_eq!(s.node_id, Some(1));
        assert_eq!(s.is_active_controller, Some(false));
        assert_eq!(s.drain(), DrainState::InProgress);
        assert_eq!(s.under_replicated, Some(2));
        assert_eq!(s.partitions, None);
    }

    #[tokio::test]
    async fn talks_to_a_local_endpoint() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            for body in [
                "HTTP/1.1 409 Conflict\r\n\r\n{\"safe\":false,\"blocking\":[{\"topic\":\"orders\",\"partition\":0,\"reason\":\"below min.insync.replicas\"}],\"quorum\":null}",
                "HTTP/1.1 404 Not Found\r\n\r\nno",
                "HTTP/1.1 202 Accepted\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(body.as_bytes()).await.unwrap();
            }
        });
        assert_eq!(
            restart_safety(&addr).await,
            Safety::Unsafe(vec!["orders-0: below min.insync.replicas".into()])
        );
        assert_eq!(status(&addr).await.unwrap(), None);
        assert!(drain(&addr).await.unwrap());
        server.await.unwrap();
    }
}
