//! `mcp-agents`: simulated MCP agents against a loopback target; prints a readable summary and,
//! with `--json FILE`, the report as JSON. See `mcp-agents --help`.

use std::path::PathBuf;

use clap::Parser;
use mcp_fixture::agents::{self, AgentsConfig};

#[derive(Parser)]
#[command(name = "mcp-agents", version, about = "Simulated MCP agents that count what they experience")]
struct Cli {
    #[command(flatten)]
    config: AgentsConfig,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = agents::run(cli.config).await?;
    println!("{}", report.summary());
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
