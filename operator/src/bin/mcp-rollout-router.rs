//! `mcp-rollout-router`: the MCP session router. `kubernetes` serves one McpRollout's pods
//! (the operator runs it so); `standalone` runs it in front of two backends without Kubernetes.

use clap::{Parser, Subcommand};
use mcp_rollout::router::{
    kubernetes::{self, KubernetesArgs},
    standalone::{self, StandaloneArgs},
};

#[derive(Parser)]
#[command(version, about = "MCP session router: weighted new sessions, pinned old ones")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Logs as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// In front of one McpRollout's pods, configured by the operator.
    Kubernetes(KubernetesArgs),
    /// In front of a stable and a canary backend, without Kubernetes.
    Standalone(StandaloneArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match cli.command {
        Command::Kubernetes(args) => kubernetes::run(args, shutdown).await,
        Command::Standalone(args) => standalone::run(args, shutdown).await,
    }
}
