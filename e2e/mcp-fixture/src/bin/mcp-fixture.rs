//! `mcp-fixture`: serve MCP with controllable behaviour. See `mcp-fixture --help`.

use clap::Parser;
use mcp_fixture::{Fixture, FixtureConfig};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "mcp-fixture",
    version,
    about = "An MCP server for tests: tool profiles, protocol versions and faults"
)]
struct Cli {
    #[command(flatten)]
    config: FixtureConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Logs to stderr; stdout carries only the `listening on ADDR` line scripts read.
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a pod's log is a file, where escape codes are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let fixture = Fixture::start(cli.config).await?;
    println!("listening on {}", fixture.addr);
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("SIGTERM: refusing new sessions, serving open ones until they end");
    fixture.begin_shutdown();
    fixture.finished().await?;
    tracing::info!("all sessions ended; exiting");
    Ok(())
}
