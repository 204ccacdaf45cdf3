//! The client side of the controller listener, and the hook through which the
//! listener hands controller requests to the controller.
//!
//! [`RpcClient`] keeps one persistent connection per peer address and makes
//! one call at a time on it; a failed or timed-out call drops the connection
//! and the next call reconnects. Every call is bounded by its timeout,
//! including connecting and waiting for the previous call.
//!
//! Owns: connections and per-call timeouts. Must not: retry (callers know
//! whether a request is idempotent) or interpret controller payloads.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::frame::{self, FrameError};
use super::message::{Request, Response};

/// Identifies one accepted connection on the controller listener.
pub type ConnId = u64;

/// The controller's side of the listener; implemented outside the quorum.
pub trait ControllerRpc: Send + Sync + std::fmt::Debug + 'static {
    /// A controller request received on connection `conn`; the answer is sent back on it.
    fn call(
        &self,
        conn: ConnId,
        request: serde_json::Value,
    ) -> BoxFuture<'static, serde_json::Value>;
    /// Connection `conn`, which carried at least one controller request, closed
    /// (EOF or reset) — the active controller fences a broker at once when its
    /// heartbeat connection resets. Not called when this node shuts down.
    fn closed(&self, conn: ConnId);
}

/// A call to a controller listener failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("call to {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("connection to {addr}: {source}")]
    Frame {
        addr: String,
        #[source]
        source: FrameError,
    },
    #[error("connection to {addr} closed before the response")]
    Closed { addr: String },
    #[error("encoding request to {addr}: {source}")]
    Encode {
        addr: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("undecodable response from {addr}: {source}")]
    Decode {
        addr: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{addr} could not serve the request: {message}")]
    Remote { addr: String, message: String },
    #[error("{addr} answered a different kind of request")]
    Mismatch { addr: String },
}

impl RpcError {
    /// True if the peer could not be reached at all (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(self, RpcError::Connect { .. })
    }
}

/// A client of one controller listener over a persistent connection.
#[derive(Debug, Clone)]
pub struct RpcClient {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    addr: String,
    /// `None` until connected, and after a failed call.
    conn: Mutex<Option<TcpStream>>,
}

impl RpcClient {
    /// A client of `addr` (host:port); connects on the first call.
    pub fn new(addr: String) -> RpcClient {
        RpcClient {
            inner: Arc::new(ClientInner {
                addr,
                conn: Mutex::new(None),
            }),
        }
    }

    /// The address this client calls.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Sends a controller request and waits at most `timeout` for its answer.
    pub async fn call(
        &self,
        request: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, RpcError> {
        match self
            .exchange(&Request::Controller(request), timeout)
            .await?
        {
            Response::Controller(v) => Ok(v),
            other => Err(self.unexpected(other)),
        }
    }

    /// Drops the connection, so the next call reconnects (e.g. to fail over a
    /// heartbeat session deliberately).
    pub async fn disconnect(&self) {
        self.inner.conn.lock().await.take();
    }

    /// The error for a response of the wrong kind.
    pub(crate) fn unexpected(&self, response: Response) -> RpcError {
        let addr = self.inner.addr.clone();
        match response {
            Response::Error(message) => RpcError::Remote { addr, message },
            _ => RpcError::Mismatch { addr },
        }
    }

    /// One request/response exchange, bounded by `timeout`.
    pub(crate) async fn exchange(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let addr = &self.inner.addr;
        let body = serde_json::to_vec(request).map_err(|source| RpcError::Encode {
            addr: addr.clone(),
            source,
        })?;
        let call = async {
            let mut slot = self.inner.conn.lock().await;
            // Taken out for the call: if the call fails or is cancelled, the
            // connection is dropped instead of being reused mid-exchange.
            let mut stream = match slot.take() {
                Some(s) => s,
                None => {
                    let s = TcpStream::connect(addr.as_str()).await.map_err(|source| {
                        RpcError::Connect {
                            addr: addr.clone(),
                            source,
                        }
                    })?;
                    // Small frames must not wait for Nagle.
                    let _ = s.set_nodelay(true);
                    s
                }
            };
            let frame_err = |source| RpcError::Frame {
                addr: addr.clone(),
                source,
            };
            frame::write_frame(&mut stream, &body)
                .await
                .map_err(frame_err)?;
            let reply = frame::read_frame(&mut stream)
                .await
                .map_err(frame_err)?
                .ok_or_else(|| RpcError::Closed { addr: addr.clone() })?;
            let response = serde_json::from_slice(&reply).map_err(|source| RpcError::Decode {
                addr: addr.clone(),
                source,
            })?;
            *slot = Some(stream);
            Ok(response)
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| RpcError::Timeout {
                addr: addr.clone(),
                after: timeout,
            })?
    }
}
