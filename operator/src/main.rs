//! skiff-operator: reconciles `skiff.dev/v1alpha1` `Cluster` and `Topic`
//! resources. Runs in the cluster (in-cluster config) or as a local process
//! (`--kubeconfig` / `KUBECONFIG`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use skiff_operator::build::labels;
use skiff_operator::crd::{Cluster, Topic};
use skiff_operator::leader;
use skiff_operator::metrics::{self, Metrics};
use skiff_operator::reconcile::{self, Context};
use tracing_subscriber::EnvFilter;

/// Kubernetes operator for Skiff clusters and topics.
#[derive(Debug, Parser)]
#[command(name = "skiff-operator", version, about)]
struct Args {
    /// Kubeconfig to use; in-cluster config when unset.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Only watch this namespace (all namespaces when unset).
    #[arg(long, env = "SKIFF_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Elect a leader through a Lease so only one replica reconciles.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (defaults to the host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

async fn client(args: &Args) -> Result<kube::Client, String> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => kube::Config::incluster().map_err(|e| format!("in-cluster config: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let client = client(&args).await?;
    let metrics = Metrics::new().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| format!("metrics listener {}: {e}", args.metrics_addr))?;
    // The bound address, so a port chosen by the system (`:0`) can be found.
    let bound = listener.local_addr().map_or(args.metrics_addr, |a| a);
    tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    tokio::spawn(metrics::serve(listener, metrics.clone()));
    let lease = args.leader_election.then(|| {
        let identity = args.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        (
            Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
            identity,
        )
    });
    if let Some((api, identity)) = &lease {
        tracing::info!(identity, lease = leader::LEASE_NAME, namespace = %args.lease_namespace, "waiting for leadership");
        leader::acquire(api, identity).await;
    }
    let ctx = Context::new(client.clone(), metrics);
    let ns = args.namespace.as_deref();
    let owned =
        watcher::Config::default().labels(&format!("{}={}", labels::NAME, labels::NAME_VALUE));

    let clusters = Controller::new(api::<Cluster>(&client, ns), watcher::Config::default())
        .owns(api::<StatefulSet>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned.clone())
        .owns(api::<ConfigMap>(&client, ns), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, ns), owned.clone())
        .watches(api::<Pod>(&client, ns), owned, |pod: Pod| {
            let cluster = pod.labels().get(labels::INSTANCE).cloned();
            let namespace = pod.namespace();
            cluster.map(|c| ObjectRef::<Cluster>::new(&c).within(&namespace.unwrap_or_default()))
        })
        .shutdown_on_signal()
        .run(
            reconcile::cluster::reconcile,
            reconcile::error_policy,
            Arc::clone(&ctx),
        )
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(cluster = %object, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "cluster reconcile failed"),
            }
        });
    let topics = Controller::new(api::<Topic>(&client, ns), watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile::topic::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(topic = %object, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "topic reconcile failed"),
            }
        });
    tracing::info!(namespace = ns.unwrap_or("<all>"), "skiff-operator started");
    match lease {
        Some((api, identity)) => {
            tokio::select! {
                // Both controllers end on SIGTERM/SIGINT: hand the Lease over.
                _ = async { futures::join!(clusters, topics) } => {
                    leader::release(&api, &identity).await;
                    Ok(())
                }
                () = leader::keep(&api, &identity) => Err("lost the leader Lease; exiting so a replica that holds it takes over".into()),
            }
        }
        None => {
            futures::join!(clusters, topics);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skiff-operator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skiff-operator: {e}");
            ExitCode::FAILURE
        }
    }
}
