//! The Kafka listener: accepts connections and runs each one as a task that
//! reads frames, dispatches them in order and writes responses in request
//! order. Produce waits (acks=all) and fetch long-polls run as futures in an
//! ordered pipeline, so a connection keeps reading while they wait.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::codec::FrameCodec;
use super::dispatch::{Dispatched, dispatch};
use super::outgoing::Outgoing;
use crate::broker::Broker;

/// Requests one connection may have in the pipeline before reading pauses.
const MAX_IN_FLIGHT: usize = 32;

/// Accepts connections until `shutdown` fires, then closes the listener and
/// waits for open connections to finish their in-flight requests (they stop
/// reading at once).
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tracker.spawn(connection(stream, peer, broker.clone(), shutdown.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    // Refuse new connections now, rather than let the kernel complete their
    // handshakes into a backlog nobody accepts from while in-flight requests
    // finish: a client would wait there (measured: 500 ms in librdkafka's
    // ApiVersions) before trying another broker.
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    debug!(%peer, "connection opened");
    broker.metrics.connections.inc();
    let max = broker.config.long("socket.request.max.bytes") as usize;
    let (reader, mut writer) = stream.into_split();
    let mut frames = FramedRead::new(reader, FrameCodec::new(max));
    let mut pending: FuturesOrdered<futures::future::BoxFuture<'static, Option<Outgoing>>> =
        FuturesOrdered::new();
    let mut reading = true;
    loop {
        if !reading && pending.is_empty() {
            break;
        }
        tokio::select! {
            frame = frames.next(), if reading && pending.len() < MAX_IN_FLIGHT => match frame {
                Some(Ok(frame)) => match dispatch(&broker, frame.freeze(), peer).await {
                    Dispatched::Respond(fut) => pending.push_back(fut),
                    Dispatched::Nothing => {}
                    Dispatched::Close(reason) => {
                        warn!(%peer, %reason, "closing connection");
                        reading = false;
                    }
                },
                Some(Err(e)) => {
                    warn!(%peer, error = %e, "closing connection");
                    reading = false;
                }
                None => reading = false,
            },
            Some(response) = pending.next() => match response {
                Some(outgoing) => {
                    if let Err(e) = outgoing.write_frame(&mut writer).await {
                        debug!(%peer, error = %e, "write failed");
                        break;
                    }
                }
                None => {
                    reading = false;
                    pending = FuturesOrdered::new();
                }
            },
            () = shutdown.cancelled(), if reading => reading = false,
        }
    }
    broker.metrics.connections.dec();
    debug!(%peer, "connection closed");
}

/// Binds the Kafka listener.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr()?, "kafka listener bound");
    Ok(listener)
}
