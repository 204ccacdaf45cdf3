//! `skiff-e2e-workload`: a tiny program the node agent's own tests run as a
//! pod, standing in for a real image.
//!
//! It serves `GET /healthz` (always 200), `GET /ready` (200 unless
//! `<data dir>/unready` exists) and `GET /starts` (its start log) on
//! `--listen`, appends one line per start to `<data dir>/starts.log`, and on
//! SIGTERM appends `sigterm` to `<data dir>/terminations.log` and exits 0.
//! `--exit-after-ms N --exit-code C` makes it exit by itself, for restart
//! tests.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
struct Args {
    /// Address to serve HTTP on, e.g. 127.0.1.4:8080.
    #[arg(long)]
    listen: String,
    /// Directory for the start and termination logs.
    #[arg(long)]
    data_dir: PathBuf,
    /// Exit by itself after this many milliseconds.
    #[arg(long)]
    exit_after_ms: Option<u64>,
    /// Exit code when exiting by itself.
    #[arg(long, default_value_t = 0)]
    exit_code: u8,
}

fn append(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")
}

async fn respond(mut socket: tokio::net::TcpStream, data_dir: PathBuf) -> std::io::Result<()> {
    let mut buf = [0u8; 2048];
    let n = socket.read(&mut buf).await?;
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/healthz" => ("200 OK", "ok".to_owned()),
        "/ready" if data_dir.join("unready").exists() => {
            ("503 Service Unavailable", "unready".to_owned())
        }
        "/ready" => ("200 OK", "ready".to_owned()),
        "/starts" => (
            "200 OK",
            std::fs::read_to_string(data_dir.join("starts.log")).unwrap_or_default(),
        ),
        _ => ("404 Not Found", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.data_dir)?;
    let listener = TcpListener::bind(&args.listen).await?;
    let pod = std::env::var("POD_NAME").unwrap_or_default();
    append(
        &args.data_dir.join("starts.log"),
        &format!(
            "start pid={} pod={pod} listen={}",
            std::process::id(),
            args.listen
        ),
    )?;
    eprintln!("serving on {}", args.listen);
    let mut sigterm = signal(SignalKind::terminate())?;
    let exit_after = async {
        match args.exit_after_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(exit_after);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, _) = accepted?;
                tokio::spawn(respond(socket, args.data_dir.clone()));
            }
            _ = sigterm.recv() => {
                append(&args.data_dir.join("terminations.log"), "sigterm")?;
                eprintln!("SIGTERM: exiting");
                return Ok(());
            }
            () = &mut exit_after => {
                eprintln!("exiting with code {}", args.exit_code);
                std::process::exit(i32::from(args.exit_code));
            }
        }
    }
}
