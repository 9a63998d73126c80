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
        /// Run pods as local processes with these image rules (e.g. e2e/images.yaml); `{bin}`
        /// in them is this binary's directory.
        #[arg(long)]
        images: Option<PathBuf>,
        /// Start a real Prometheus scraping annotated pods; its URL is printed and written to
        /// `prometheus-url` beside the kubeconfig.
        #[arg(long)]
        prometheus: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let Command::Up { kubeconfig, listen, images, prometheus } = Cli::parse().command;
    let images = match images {
        Some(path) => {
            let exe = std::env::current_exe()?;
            let bin_dir =
                exe.parent().ok_or_else(|| anyhow::anyhow!("no directory for {}", exe.display()))?;
            Some(testbed::controllers::images::ImageMap::load(&path, bin_dir)?)
        }
        None => None,
    };
    let beside = kubeconfig.parent().map(PathBuf::from).unwrap_or_default();
    let prometheus_dir = prometheus.then(|| beside.join("testbed-prometheus"));
    let plane =
        testbed::ControlPlane::start_with(listen, testbed::Options { images, prometheus_dir }).await?;
    plane.write_kubeconfig(&kubeconfig)?;
    println!("listening on {}", plane.addr);
    println!("kubeconfig {}", kubeconfig.display());
    if let Some(prometheus) = &plane.prometheus {
        std::fs::write(beside.join("prometheus-url"), &prometheus.url)?;
        println!("prometheus {}", prometheus.url);
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
