//! `skiff-broker`: runs one Kafka-compatible broker.
//!
//! With no flags: a cluster of one — node 0, data in `./skiff-data`, Kafka on
//! 127.0.0.1:9092, the metadata quorum on 127.0.0.1:9093, the HTTP admin
//! endpoint on 127.0.0.1:9644. `--voters` makes it one broker of a cluster.
//! SIGTERM or Ctrl-C stops it cleanly (controlled shutdown).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use skiff_broker::broker::{self, BrokerOptions};
use skiff_broker::config::{BrokerConfig, ConfigError, parse_properties};
use tracing::error;
use tracing_subscriber::EnvFilter;

/// A Kafka-compatible broker.
#[derive(Debug, Parser)]
#[command(name = "skiff-broker", version, about)]
struct Args {
    /// This broker's id (Kafka's `node.id`).
    #[arg(long, default_value_t = 0)]
    node_id: i32,
    /// Directory holding the partition logs and metadata.
    #[arg(long, default_value = "./skiff-data")]
    data_dir: PathBuf,
    /// Address of the Kafka listener.
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: String,
    /// Address clients are told to connect to (defaults to the listener's).
    #[arg(long)]
    advertise: Option<String>,
    /// Address of the HTTP admin listener (/healthz, /readyz, /metrics).
    #[arg(long, default_value = "127.0.0.1:9644")]
    admin_listen: String,
    /// Address of the metadata-quorum (controller) listener.
    #[arg(long, default_value = "127.0.0.1:9093")]
    controller_listen: String,
    /// The metadata quorum's voters, `ID@HOST:PORT,...`; a broker not listed
    /// joins as a non-voting learner. Empty: this broker is a cluster of one.
    #[arg(long, value_delimiter = ',', value_name = "ID@HOST:PORT")]
    voters: Vec<String>,
    /// Cluster id; a data directory of another cluster is refused.
    #[arg(long)]
    cluster_id: Option<String>,
    /// A Java-properties file of Kafka broker settings.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A Kafka broker setting, `key=value`; repeatable, applied after --config.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn load_config(args: &Args) -> Result<BrokerConfig, String> {
    let mut pairs = Vec::new();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        pairs.extend(parse_properties(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    for s in &args.set {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            ConfigError::Syntax {
                line: 0,
                text: s.clone(),
            }
            .to_string()
            .replace("line 0: ", "--set: ")
        })?;
        pairs.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    BrokerConfig::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skiff-broker: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skiff")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skiff-broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let voters = match broker::parse_voters(&args.voters) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("skiff-broker: --voters: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = BrokerOptions {
        controller_listen: args.controller_listen,
        voters,
        node_id: args.node_id,
        data_dir: args.data_dir,
        listen: args.listen,
        advertise: args.advertise,
        admin_listen: args.admin_listen,
        cluster_id: args.cluster_id,
        config,
    };
    runtime.block_on(async move {
        let running = match broker::start(opts).await {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
