//! `skiff-e2e-fake-broker`: a stand-in for `skiff-broker` that speaks only
//! its HTTP admin API, so the operator's rolling restart can be proven on
//! the control plane before the replicated broker exists.
//!
//! Takes the broker's command line (the operator's StatefulSet runs it
//! unchanged) and serves on `--admin-listen`: `/healthz` and `/readyz`
//! (200), `GET /v1/status` (broker 0 the active controller, no
//! under-replicated partitions, `state` `running` or `drained`),
//! `GET /v1/restart-safety` (`{"safe":true}`) and `POST /v1/drain` (the
//! state becomes `drained` until the process restarts). Nothing else: no
//! Kafka listener.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[allow(dead_code)] // the broker's flags are accepted, most are unused
struct Args {
    #[arg(long)]
    node_id: i32,
    #[arg(long)]
    data_dir: String,
    #[arg(long)]
    listen: String,
    #[arg(long)]
    advertise: Option<String>,
    #[arg(long)]
    admin_listen: String,
    #[arg(long)]
    controller_listen: Option<String>,
    #[arg(long)]
    voters: Option<String>,
    #[arg(long)]
    cluster_id: Option<String>,
    #[arg(long)]
    config: Option<String>,
    #[arg(long = "set")]
    set: Vec<String>,
}

async fn respond(
    mut socket: tokio::net::TcpStream,
    node_id: i32,
    drained: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let mut buf = [0u8; 2048];
    let n = socket.read(&mut buf).await?;
    let request = String::from_utf8_lossy(&buf[..n]);
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    let (status, body) = match (method, path) {
        ("GET", "/healthz" | "/readyz") => ("200 OK", "ok\n".to_owned()),
        ("GET", "/v1/status") => {
            let state = if drained.load(Ordering::SeqCst) {
                "drained"
            } else {
                "running"
            };
            (
                "200 OK",
                format!(
                    r#"{{"node_id":{node_id},"cluster_id":"fake","state":"{state}","active_controller":0,"partitions":0,"leaders":0,"under_replicated":0,"under_min_isr":0,"offline":0,"caught_up_percent":100.0}}"#
                ),
            )
        }
        ("GET", "/v1/restart-safety") => (
            "200 OK",
            r#"{"node_id":0,"safe":true,"blocking":[],"quorum":null,"single_replica":0}"#
                .to_owned(),
        ),
        ("POST", "/v1/drain") => {
            drained.store(true, Ordering::SeqCst);
            ("202 Accepted", "{}".to_owned())
        }
        _ => ("404 Not Found", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.admin_listen).await?;
    let drained = Arc::new(AtomicBool::new(false));
    eprintln!(
        "fake broker {} serving on {}",
        args.node_id, args.admin_listen
    );
    let mut sigterm = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, _) = accepted?;
                tokio::spawn(respond(socket, args.node_id, Arc::clone(&drained)));
            }
            _ = sigterm.recv() => return Ok(()),
        }
    }
}
