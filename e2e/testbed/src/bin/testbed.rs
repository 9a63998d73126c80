//! `testbed up --kubeconfig PATH`: runs the local control plane until interrupted.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "testbed", about = "Local Kubernetes-API control plane for mcp-rollout's end-to-end tests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve on a loopback port and write a kubeconfig for it.
    Up {
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let Command::Up { kubeconfig, listen } = Cli::parse().command;
    let plane = testbed::ControlPlane::start(listen).await?;
    plane.write_kubeconfig(&kubeconfig)?;
    println!("listening on {}", plane.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
