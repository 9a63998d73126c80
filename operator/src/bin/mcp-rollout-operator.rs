//! The mcp-rollout controller.
//!
//! `mcp-rollout-operator` (or `run`) runs the controller against the cluster of the kubeconfig
//! (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`) or the in-cluster service account.
//! `crd` prints the CustomResourceDefinitions to install, `api-reference` the API reference,
//! and `update-readme README.md` rewrites the README's generated sections.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::{Parser, Subcommand};
use kube::Client;
use mcp_rollout::controller::{
    self, Scope,
    leader::{self, LeaseConfig},
    metrics::Metrics,
};
use tracing::{error, info};

// jemalloc, with its background thread returning freed pages: glibc's malloc kept what
// deleted rollouts had used as resident memory, and cannot say how much of it is live.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Bytes in live allocations: jemalloc's `stats.allocated`, refreshed by advancing its epoch.
fn heap_allocated() -> Option<i64> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    i64::try_from(tikv_jemalloc_ctl::stats::allocated::read().ok()?).ok()
}

#[derive(Parser)]
#[command(name = "mcp-rollout-operator", version, about = "Rolls out new versions of MCP servers safely")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run,
    /// Print the CustomResourceDefinitions (YAML).
    Crd,
    /// Print the API reference (Markdown).
    ApiReference,
    /// Rewrite README's generated sections.
    UpdateReadme { readme: PathBuf },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Kubeconfig to use; without it KUBECONFIG, ~/.kube/config or the in-cluster account.
    #[arg(long, env = "KUBECONFIG_PATH", global = true)]
    kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "WATCH_NAMESPACE", global = true)]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080", global = true)]
    metrics_addr: SocketAddr,
    /// Run only while holding the leader Lease (needed with more than one replica).
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE", global = true)]
    lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "mcp-rollout-operator", global = true)]
    lease_name: String,
    /// Lease holder identity (default: POD_NAME, else host name and process id).
    #[arg(long, env = "POD_NAME", global = true)]
    identity: Option<String>,
    /// Seconds a Lease holds without renewal.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15, global = true)]
    lease_duration: u64,
    /// Image of the MCP session router for rollouts that name none (the chart passes the
    /// operator's own image, which carries the router).
    #[arg(long, env = "ROUTER_IMAGE", default_value = concat!("ghcr.io/mcp-rollout/mcp-rollout-operator:", env!("CARGO_PKG_VERSION")), global = true)]
    router_image: String,
    /// Networks (CIDRs or addresses, comma-separated) that Prometheus addresses and probe
    /// targets of McpRollouts must be in. Empty: the cluster's own Service networks
    /// (ServiceCIDRs) and pod networks (nodes' podCIDRs, and any pod not on its node's network).
    #[arg(long, env = "ALLOWED_DESTINATIONS", default_value = "", value_parser = parse_destinations, global = true)]
    allowed_destinations: Destinations,
    /// Notification receivers (a JSON list of `spec.notifications.receivers` entries) told
    /// about every McpRollout that names none; their Secrets are read from the operator's
    /// namespace (POD_NAMESPACE). The chart's `notifications.defaultReceivers`.
    #[arg(long, env = "DEFAULT_NOTIFICATION_RECEIVERS", default_value = "[]", value_parser = parse_receivers, global = true)]
    default_notification_receivers: Receivers,
    /// Reconciles running at once, across all rollouts (one rollout never has two).
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = controller::RECONCILE_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..), global = true)]
    max_concurrent_reconciles: u16,
    /// Log as JSON lines.
    #[arg(long, env = "LOG_JSON", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", global = true)]
    log_json: bool,
}

/// The parsed `--allowed-destinations` (a newtype: clap takes a `Vec` for a repeated flag).
#[derive(Clone, Debug)]
struct Destinations(Option<Vec<ipnet::IpNet>>);

fn parse_destinations(text: &str) -> Result<Destinations, String> {
    let list = controller::destinations::parse_list(text)?;
    Ok(Destinations(if list.is_empty() { None } else { Some(list) }))
}

/// The parsed `--default-notification-receivers`.
#[derive(Clone, Debug)]
struct Receivers(Vec<mcp_rollout::api::Receiver>);

fn parse_receivers(text: &str) -> Result<Receivers, String> {
    serde_json::from_str(text).map(Receivers).map_err(|e| format!("not a JSON list of receivers: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Crd => match mcp_rollout::crd::render_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("cannot render the CRDs: {e}")),
        },
        Command::ApiReference => {
            println!("{}", mcp_rollout::reference::render_markdown());
            ExitCode::SUCCESS
        }
        Command::UpdateReadme { readme } => {
            let current = match std::fs::read_to_string(&readme) {
                Ok(text) => text,
                Err(e) => return fail(&format!("cannot read {}: {e}", readme.display())),
            };
            let Some(updated) = mcp_rollout::reference::update_readme(&current) else {
                return fail(&format!("{} lacks the markers of a generated section", readme.display()));
            };
            match std::fs::write(&readme, updated) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&format!("cannot write {}: {e}", readme.display())),
            }
        }
        Command::Run => {
            init_logging(cli.run.log_json);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
            };
            let result = runtime.block_on(run(cli.run));
            // Jobs still running (a probe's tool call, a query) end with the runtime; none is
            // waited for: after a lost Lease not one more request may leave.
            runtime.shutdown_timeout(Duration::from_millis(200));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,kube_lease_manager=warn"));
    // Colours only on a terminal: a pod's log is a file, where escape codes are noise.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(terminal);
    if json { builder.json().init() } else { builder.init() }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default().with_heap(heap_allocated));
    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await?;
    info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let server = axum::serve(listener, controller::metrics::router(metrics.clone()));
    tokio::spawn(async move {
        if let Err(e) = server.await {
            error!(error = %e, "metrics server stopped");
        }
    });

    let client = Client::try_from(controller::load_config(args.kubeconfig.as_deref()).await?)?;
    client.apiserver_version().await.map_err(|e| anyhow::anyhow!("cannot reach the API server: {e}"))?;
    metrics.set_ready(true);

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down: finishing in-flight reconciles");
        let _ = stop_tx.send(true);
    });
    let scope = args.namespace.clone().map_or(Scope::All, Scope::Namespace);
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let settings = controller::Settings {
        router_image: args.router_image.clone(),
        allowed_destinations: args.allowed_destinations.0.clone(),
        concurrency: args.max_concurrent_reconciles,
        default_receivers: controller::notify::Defaults {
            namespace: args.lease_namespace.clone().unwrap_or_else(|| "default".into()),
            receivers: args.default_notification_receivers.0.clone(),
        },
    };
    match &settings.allowed_destinations {
        Some(list) => info!(networks = ?list, "Prometheus and probe destinations: the configured networks"),
        None => info!("Prometheus and probe destinations: the cluster's Service and pod networks"),
    }
    if !args.leader_elect {
        info!("leader election off: this replica reconciles");
        controller::run(client, scope, identity, settings, metrics, leader::stopped(stop)).await?;
        return Ok(());
    }
    let config = LeaseConfig::for_duration(
        args.lease_namespace.clone().unwrap_or_else(|| "default".into()),
        args.lease_name.clone(),
        identity.clone(),
        Duration::from_secs(args.lease_duration),
    );
    leader::run_as_leader(client.clone(), config, metrics.clone(), stop, |until| {
        let running = controller::run(
            client.clone(),
            scope.clone(),
            identity.clone(),
            settings.clone(),
            metrics.clone(),
            until,
        );
        async move { running.await.map_err(leader::LeaderError::from) }
    })
    .await?;
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_at_once_default_to_the_controllers_own_and_never_to_none() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["mcp-rollout-operator", "run"], args].concat());
        let default = parse(&[]).unwrap().run.max_concurrent_reconciles;
        assert_eq!(default, controller::RECONCILE_CONCURRENCY);
        assert_eq!(parse(&["--max-concurrent-reconciles", "64"]).unwrap().run.max_concurrent_reconciles, 64);
        // Zero would run no reconcile at all: refused at start, not a silent stall.
        assert!(parse(&["--max-concurrent-reconciles", "0"]).is_err());
    }
}
