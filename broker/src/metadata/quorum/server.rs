//! The controller listener: accepts connections on the controller address and
//! serves each one's requests in order — openraft RPCs go to the local Raft
//! node, controller requests to the [`ControllerRpc`] hook.
//!
//! A bad frame (oversized or undecodable) closes its connection with a
//! warning; a connection cut mid-frame is closed with a debug line (peers do
//! that when a call times out). Nothing a peer sends can panic the listener.
//!
//! Owns: accepted connections and their ids. Must not: decide anything about
//! the requests it carries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frame::{self, FrameError};
use super::message::{Request, Response};
use super::rpc::{ConnId, ControllerRpc};
use super::types::{NodeId, Raft};

/// Everything a connection task needs.
#[derive(Clone)]
pub(crate) struct Server {
    pub node: NodeId,
    pub raft: Raft,
    pub controller: Arc<dyn ControllerRpc>,
    pub stop: CancellationToken,
    pub tasks: TaskTracker,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Accepts connections until stopped.
    pub(crate) async fn run(self, listener: TcpListener) {
        let next = AtomicU64::new(1);
        loop {
            let accepted = tokio::select! {
                _ = self.stop.cancelled() => break,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let conn = next.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_nodelay(true);
                    self.tasks.spawn(self.clone().serve(conn, stream, peer));
                }
                Err(e) => {
                    // E.g. out of file descriptors: don't spin.
                    tracing::warn!(node = self.node, error = %e, "controller listener accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        tracing::debug!(node = self.node, "controller listener stopped");
    }

    async fn serve(self, conn: ConnId, mut stream: TcpStream, peer: SocketAddr) {
        let mut controller_conn = false;
        loop {
            let frame = tokio::select! {
                _ = self.stop.cancelled() => return,
                f = frame::read_frame(&mut stream) => f,
            };
            let body = match frame {
                Ok(Some(body)) => body,
                Ok(None) => break,
                // A peer that gives up on a call (timeout) resets or cuts its
                // connection: routine, unlike a frame nobody should send.
                Err(e @ (FrameError::Io(_) | FrameError::Truncated { .. })) => {
                    tracing::debug!(node = self.node, conn, %peer, error = %e, "controller connection lost");
                    break;
                }
                Err(e @ FrameError::TooLarge { .. }) => {
                    tracing::warn!(node = self.node, conn, %peer, error = %e, "closing controller connection: bad frame");
                    break;
                }
            };
            let request: Request = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(node = self.node, conn, %peer, error = %e, "closing controller connection: undecodable request");
                    break;
                }
            };
            controller_conn |= matches!(request, Request::Controller(_));
            let response = tokio::select! {
                _ = self.stop.cancelled() => return,
                r = self.handle(conn, request) => r,
            };
            let bytes = match serde_json::to_vec(&response) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(node = self.node, conn, %peer, error = %e, "cannot encode response");
                    break;
                }
            };
            let written = tokio::select! {
                _ = self.stop.cancelled() => return,
                w = frame::write_frame(&mut stream, &bytes) => w,
            };
            if let Err(e) = written {
                tracing::debug!(node = self.node, conn, %peer, error = %e, "controller connection lost while answering");
                break;
            }
        }
        if controller_conn {
            self.controller.closed(conn);
        }
    }

    async fn handle(&self, conn: ConnId, request: Request) -> Response {
        match request {
            Request::AppendEntries(r) => Response::AppendEntries(self.raft.append_entries(r).await),
            Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
            Request::InstallSnapshot(r) => {
                Response::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            Request::Controller(v) => Response::Controller(self.controller.call(conn, v).await),
        }
    }
}
