//! `skiff-e2e`: start, stop and inspect the e2e Kubernetes control plane.
//!
//! ```text
//! skiff-e2e up              # foreground; Ctrl-C stops everything
//! export KUBECONFIG=$(skiff-e2e up --detach)
//! skiff-e2e status
//! skiff-e2e down
//! skiff-e2e local-cluster   # what `make up` runs: the operator from its chart, a Cluster and a Topic, Ready
//! ```
//! Stdout carries only the kubeconfig path (for `up`) or the status table;
//! logs go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use skiff_e2e::broker_image::Profile;
use skiff_e2e::controlplane::{
    self, Binaries, ControlPlane, ControlPlaneConfig, ControlPlaneError,
};
use skiff_e2e::local_cluster::{self, KubeconfigEnv, LocalClusterConfig};
use skiff_e2e::node::{ImageMap, NodeAgent, NodeConfig};
use tokio::signal::unix::{SignalKind, signal};

/// kube's client logs every failed request at error level, which while
/// polling a starting apiserver is expected; our own errors say what failed.
const DEFAULT_LOG_FILTER: &str = "info,kube_client::client::builder=off";

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Run a real Kubernetes control plane on loopback for Skiff's e2e tests"
)]
struct Cli {
    /// Where PKI, kubeconfig, etcd data, logs and the state file live
    /// [default: e2e/.state of this checkout].
    #[arg(long, global = true, env = "SKIFF_E2E_STATE_DIR")]
    state_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the control plane and print the admin kubeconfig path.
    Up {
        /// Return once it is ready, leaving it running (stop it with `down`).
        #[arg(long)]
        detach: bool,
        /// Seconds to wait for every component to become healthy.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Fail instead of running build.sh when the binaries are not cached.
        #[arg(long)]
        no_build: bool,
        /// Also run a node agent (`skiff-e2e node`) that runs scheduled
        /// pods as local processes.
        #[arg(long)]
        node: bool,
        /// Image → binary map for the node agent, `image=path,…`.
        #[arg(long, env = "SKIFF_IMAGE_MAP", default_value = "")]
        image_map: String,
    },
    /// Run a node agent against a cluster until SIGINT/SIGTERM (what
    /// `up --node` starts as a component).
    Node {
        /// Kubeconfig with admin rights.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Root directory for pod directories and provisioned volumes.
        #[arg(long)]
        root: PathBuf,
        /// Node name.
        #[arg(long, default_value = skiff_e2e::node::DEFAULT_NODE_NAME)]
        name: String,
        /// Image → binary map, `image=path,…`.
        #[arg(long, env = "SKIFF_IMAGE_MAP", default_value = "")]
        image_map: String,
        /// The apiserver's port on 127.0.0.1, given to pods as
        /// KUBERNETES_SERVICE_HOST/PORT.
        #[arg(long)]
        apiserver_port: Option<u16>,
    },
    /// Stop what `up` started (SIGTERM, then SIGKILL after the grace period).
    Down {
        /// Seconds each component gets to exit after SIGTERM.
        #[arg(long, default_value_t = 10)]
        grace: u64,
    },
    /// Show whether each component runs and whether the apiserver is ready.
    Status,
    /// A local cluster for people (`make up`): build the broker and the
    /// operator, start the control plane and a node agent in the background
    /// (or reuse running ones), install the operator from its Helm chart,
    /// apply the example Cluster and Topic, wait until they are Ready and
    /// print how to use them. Refuses to run when KUBECONFIG names another
    /// cluster.
    LocalCluster {
        /// The manifests of Skiff resources to apply (repeatable)
        /// [default: examples/cluster.yaml and examples/topic.yaml].
        #[arg(long = "example")]
        examples: Vec<PathBuf>,
        /// The namespace to apply them into.
        #[arg(long, default_value = "skiff")]
        namespace: String,
        /// The namespace to install the operator into.
        #[arg(long, default_value = skiff_e2e::chart::NAMESPACE)]
        operator_namespace: String,
        /// Seconds to wait for the control plane, and again for each step
        /// after it (operator pods, Ready resources).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Build the broker and the operator without optimizations (faster
        /// to build).
        #[arg(long)]
        debug: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        // Components log to files; escape codes only help a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let state_dir = cli
        .state_dir
        .unwrap_or_else(controlplane::default_state_dir);
    let result = match cli.command {
        Command::Up {
            detach,
            timeout,
            no_build,
            node,
            image_map,
        } => {
            let node = node.then_some(image_map);
            up(state_dir, detach, timeout, no_build, node).await
        }
        Command::Node {
            kubeconfig,
            root,
            name,
            image_map,
            apiserver_port,
        } => node(kubeconfig, root, name, &image_map, apiserver_port).await,
        Command::Down { grace } => down(&state_dir, grace),
        Command::Status => status(&state_dir).await,
        Command::LocalCluster {
            examples,
            namespace,
            operator_namespace,
            timeout,
            debug,
        } => {
            let config = LocalClusterConfig {
                state_dir,
                examples: if examples.is_empty() {
                    local_cluster::default_examples()
                } else {
                    examples
                },
                namespace,
                operator_namespace,
                timeout: Duration::from_secs(timeout),
                profile: if debug {
                    Profile::Debug
                } else {
                    Profile::Release
                },
                exe: std::env::current_exe().unwrap_or_else(|_| "skiff-e2e".into()),
            };
            return local_cluster(config).await;
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("skiff-e2e: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn up(
    state_dir: PathBuf,
    detach: bool,
    timeout: u64,
    no_build: bool,
    node_image_map: Option<String>,
) -> Result<ExitCode, ControlPlaneError> {
    let mut binaries = Binaries::cached();
    if !binaries.present() {
        if no_build {
            binaries.verify()?;
        }
        tracing::info!(
            "control plane binaries not cached; running build.sh (a cold build takes a while)"
        );
        binaries = Binaries::build()?;
    }
    // Install the handlers before starting, so a Ctrl-C during startup also
    // stops what was started (startup is cancelled, the guard drops).
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| ControlPlaneError::io("handling", "SIGINT", e))?;
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| ControlPlaneError::io("handling", "SIGTERM", e))?;
    let mut config = ControlPlaneConfig::new(state_dir, binaries);
    config.startup_timeout = Duration::from_secs(timeout);
    let mut control_plane = tokio::select! {
        started = ControlPlane::start(config) => started?,
        _ = sigint.recv() => return Ok(ExitCode::from(130)),
        _ = sigterm.recv() => return Ok(ExitCode::from(143)),
    };
    if let Some(image_map) = node_image_map {
        ImageMap::parse(&image_map).map_err(|reason| ControlPlaneError::State {
            path: "--image-map".into(),
            reason,
        })?;
        let exe = std::env::current_exe()
            .map_err(|e| ControlPlaneError::io("locating", "the skiff-e2e binary", e))?;
        let started =
            control_plane.start_node_agent_process(&exe, &image_map, Duration::from_secs(timeout));
        tokio::select! {
            started = started => started?,
            _ = sigint.recv() => return Ok(ExitCode::from(130)),
            _ = sigterm.recv() => return Ok(ExitCode::from(143)),
        };
    }

    if detach {
        let state = control_plane.detach()?;
        println!("{}", state.kubeconfig.display());
        return Ok(ExitCode::SUCCESS);
    }

    control_plane.write_state()?;
    println!("{}", control_plane.kubeconfig().display());
    tracing::info!("running; press Ctrl-C to stop (or run `skiff-e2e down`)");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let outcome = loop {
        tokio::select! {
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            _ = tick.tick() => {
                if let Err(error) = control_plane.check_running() {
                    break Err(error);
                }
            }
        }
    };
    tracing::info!("stopping");
    let stopped = control_plane.stop().await;
    outcome?;
    stopped?;
    Ok(ExitCode::SUCCESS)
}

fn down(state_dir: &std::path::Path, grace: u64) -> Result<ExitCode, ControlPlaneError> {
    if controlplane::down(state_dir, Duration::from_secs(grace))? {
        eprintln!(
            "skiff-e2e: stopped the control plane in {}",
            state_dir.display()
        );
    } else {
        eprintln!(
            "skiff-e2e: no control plane recorded in {}",
            state_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(state_dir: &std::path::Path) -> Result<ExitCode, ControlPlaneError> {
    let Some(status) = controlplane::status(state_dir).await? else {
        println!("no control plane recorded in {}", state_dir.display());
        return Ok(ExitCode::FAILURE);
    };
    println!("apiserver   {}", status.state.apiserver_url);
    println!("kubeconfig  {}", status.state.kubeconfig.display());
    match &status.version {
        Ok(version) => println!("version     {version}"),
        Err(error) => println!("version     unknown ({error})"),
    }
    match &status.readyz {
        Ok(_) => println!("readyz      ok"),
        Err(error) => println!("readyz      FAILING: {error}"),
    }
    for c in &status.components {
        let state = if c.running { "running" } else { "NOT RUNNING" };
        println!(
            "{:<24} pid {:<8} {state:<12} {}",
            c.name,
            c.pid,
            c.log.display()
        );
    }
    Ok(if status.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn local_cluster(config: LocalClusterConfig) -> ExitCode {
    let harness_kubeconfig = config.state_dir.join("kubeconfig");
    let kubeconfig_env = std::env::var_os("KUBECONFIG");
    if let KubeconfigEnv::Other(paths) =
        local_cluster::classify_kubeconfig(kubeconfig_env.as_deref(), &harness_kubeconfig)
    {
        eprint!(
            "{}",
            local_cluster::foreign_cluster_message(&paths, &skiff_e2e::chart::chart_dir())
        );
        return ExitCode::from(2);
    }
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("skiff-e2e: cannot handle SIGINT/SIGTERM");
        return ExitCode::FAILURE;
    };
    // A signal drops `up` mid-way: a control plane not yet detached stops
    // with its guard; once detached, it keeps running until `down`.
    let outcome = tokio::select! {
        outcome = local_cluster::up(&config) => outcome,
        _ = sigint.recv() => return ExitCode::from(130),
        _ = sigterm.recv() => return ExitCode::from(143),
    };
    match outcome {
        Ok(summary) => {
            print!("{}", summary.instructions());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("skiff-e2e: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn node(
    kubeconfig: PathBuf,
    root: PathBuf,
    name: String,
    image_map: &str,
    apiserver_port: Option<u16>,
) -> Result<ExitCode, ControlPlaneError> {
    let images = ImageMap::parse(image_map).map_err(|reason| ControlPlaneError::State {
        path: "--image-map".into(),
        reason,
    })?;
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| ControlPlaneError::io("handling", "SIGINT", e))?;
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| ControlPlaneError::io("handling", "SIGTERM", e))?;
    let client = controlplane::client_for(&kubeconfig).await?;
    let mut config = NodeConfig::new(root, images);
    config.name = name;
    config.apiserver = apiserver_port.map(|port| ("127.0.0.1".to_owned(), port));
    let agent = match NodeAgent::start(client, config).await {
        Ok(agent) => agent,
        Err(error) => {
            eprintln!("skiff-e2e node: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    tracing::info!("stopping the node agent");
    agent.stop().await;
    Ok(ExitCode::SUCCESS)
}
