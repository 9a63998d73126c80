//! `mcp-rollout-router`: the MCP session router. `standalone` runs it in front of two
//! backends without Kubernetes.

use clap::{Parser, Subcommand};
use mcp_rollout::router::standalone::{self, StandaloneArgs};

#[derive(Parser)]
#[command(version, about = "MCP session router: weighted new sessions, pinned old ones")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// In front of a stable and a canary backend, without Kubernetes.
    Standalone(StandaloneArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let Cli { command: Command::Standalone(args) } = Cli::parse();
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    standalone::run(args, shutdown).await
}
