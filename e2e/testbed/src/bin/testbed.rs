//! `testbed up --kubeconfig PATH`: runs the local control plane until interrupted or until
//! `testbed down --kubeconfig PATH`; every process it started stops with it.

use std::path::{Path, PathBuf};

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
    /// Stop the test bed that `up` started with this kubeconfig, and everything it runs.
    Down {
        #[arg(long)]
        kubeconfig: PathBuf,
    },
}

fn beside(kubeconfig: &Path) -> PathBuf {
    kubeconfig.parent().map(PathBuf::from).unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    match Cli::parse().command {
        Command::Up { kubeconfig, listen, images, prometheus } => {
            up(kubeconfig, listen, images, prometheus).await
        }
        Command::Down { kubeconfig } => down(&kubeconfig),
    }
}

async fn up(
    kubeconfig: PathBuf,
    listen: std::net::SocketAddr,
    images: Option<PathBuf>,
    prometheus: bool,
) -> anyhow::Result<()> {
    let images = match images {
        Some(path) => {
            let exe = std::env::current_exe()?;
            let bin_dir =
                exe.parent().ok_or_else(|| anyhow::anyhow!("no directory for {}", exe.display()))?;
            Some(testbed::controllers::images::ImageMap::load(&path, bin_dir)?)
        }
        None => None,
    };
    let dir = beside(&kubeconfig);
    let prometheus_dir = prometheus.then(|| dir.join("testbed-prometheus"));
    let plane =
        testbed::ControlPlane::start_with(listen, testbed::Options { images, prometheus_dir }).await?;
    plane.write_kubeconfig(&kubeconfig)?;
    std::fs::write(dir.join("testbed.pid"), std::process::id().to_string())?;
    println!("listening on {}", plane.addr);
    println!("kubeconfig {}", kubeconfig.display());
    if let Some(prometheus) = &plane.prometheus {
        std::fs::write(dir.join("prometheus-url"), &prometheus.url)?;
        println!("prometheus {}", prometheus.url);
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    // Dropping the control plane stops its tasks; their pod processes and Prometheus are
    // killed with them (kill on drop).
    drop(plane);
    let _ = std::fs::remove_file(dir.join("testbed.pid"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Ok(())
}

fn down(kubeconfig: &Path) -> anyhow::Result<()> {
    let pid_file = beside(kubeconfig).join("testbed.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .map_err(|e| anyhow::anyhow!("no test bed is up for {} ({e})", kubeconfig.display()))?
        .trim()
        .parse()?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)?;
    for _ in 0..100 {
        if !pid_file.exists() {
            println!("test bed {pid} stopped");
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!("test bed {pid} did not stop within 10 s")
}
