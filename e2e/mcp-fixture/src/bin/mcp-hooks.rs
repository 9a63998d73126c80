//! `mcp-hooks`: a recording receiver for gate webhooks and notifications (see
//! `mcp_fixture::hooks`).

use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "mcp-hooks",
    version,
    about = "Records gate webhook calls and notifications; answers gates as told"
)]
struct Cli {
    #[arg(long, env = "HOOKS_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    mcp_fixture::hooks::serve(cli.listen).await
}
