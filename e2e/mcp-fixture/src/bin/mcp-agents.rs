//! `mcp-agents`: simulated MCP agents against a loopback target (or, with
//! `--allow-remote-target`, a Service inside a real cluster); prints a readable summary and,
//! with `--json FILE`, the report as JSON. See `mcp-agents --help`.

use std::path::PathBuf;

use clap::Parser;
use mcp_fixture::agents::{self, AgentsConfig};

#[derive(Parser)]
#[command(name = "mcp-agents", version, about = "Simulated MCP agents that count what they experience")]
struct Cli {
    #[command(flatten)]
    config: AgentsConfig,
    /// Write the report as JSON here; `-` prints it on stdout after a `--- report ---` line.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = agents::run(cli.config).await?;
    println!("{}", report.summary());
    match cli.json {
        Some(path) if path.as_os_str() == "-" => {
            println!("--- report ---\n{}", serde_json::to_string(&report)?);
        }
        Some(path) => std::fs::write(&path, serde_json::to_string_pretty(&report)?)?,
        None => {}
    }
    Ok(())
}
