//! The HTTP admin listener: `/healthz` (alive), `/readyz` (serving),
//! `/metrics` (Prometheus), and what Kafka has no API for: `GET /v1/status`,
//! `GET /v1/restart-safety`, `POST|DELETE /v1/drain` (maintenance mode). A
//! deliberately small HTTP/1.1 server: one request per connection, no bodies,
//! bounded header size and time.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::broker::Broker;

const MAX_HEAD: usize = 8 * 1024;

/// Binds the admin listener.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr()?, "admin listener bound");
    Ok(listener)
}

/// Serves admin requests until `shutdown`.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => if let Ok((stream, _)) = accepted {
                let broker = broker.clone();
                tokio::spawn(async move {
                    if tokio::time::timeout(Duration::from_secs(10), handle(stream, &broker)).await.is_err() {
                        debug!("admin request timed out");
                    }
                });
            }
        }
    }
}

/// A response: status line, content type, body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    fn json(status: u16, value: &impl serde::Serialize) -> Self {
        match serde_json::to_string_pretty(value) {
            Ok(mut body) => {
                body.push('\n');
                Self {
                    status,
                    content_type: "application/json",
                    body,
                }
            }
            Err(e) => Self::text(500, format!("encoding failed: {e}\n")),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

async fn handle(mut stream: TcpStream, broker: &Arc<Broker>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            let _ = write(&mut stream, Response::text(400, "request head too large\n")).await;
            return;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    let response = route(broker, &method, path.split('?').next().unwrap_or_default()).await;
    let _ = write(&mut stream, response).await;
}

/// Routes one admin request.
pub async fn route(broker: &Arc<Broker>, method: &str, path: &str) -> Response {
    match (method, path) {
        ("GET", "/v1/status") => Response::json(200, &broker.status()),
        ("GET", "/v1/restart-safety") => {
            let verdict = broker.restart_safety();
            Response::json(if verdict.safe { 200 } else { 409 }, &verdict)
        }
        ("POST" | "DELETE", "/v1/drain") => match broker.set_draining(method == "POST").await {
            Ok(()) => Response::json(200, &broker.status()),
            Err(e) => Response::text(503, format!("{e}\n")),
        },
        ("GET", "/healthz" | "/readyz") if let Some(why) = broker.quorum.failure() => {
            Response::text(503, format!("metadata quorum down: {why}\n"))
        }
        ("GET", "/healthz") => Response::text(200, "ok\n"),
        ("GET", "/readyz") if broker.is_ready() => Response::text(200, "ready\n"),
        ("GET", "/readyz") => Response::text(503, "not ready\n"),
        ("GET", "/metrics") => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: broker.metrics.render(),
        },
        (
            _,
            "/healthz" | "/readyz" | "/metrics" | "/v1/status" | "/v1/restart-safety" | "/v1/drain",
        ) => Response::text(405, "method not allowed\n"),
        _ => Response::text(404, "not found\n"),
    }
}

async fn write(stream: &mut TcpStream, r: Response) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(r.body.as_bytes()).await?;
    stream.shutdown().await
}
