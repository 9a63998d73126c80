//! Standalone mode, for a topology without Kubernetes: two backends (stable and canary, each
//! the base URL of one MCP server), a canary weight changed live on the admin port
//! (`PUT /weight` with the percentage as body), `/metrics` and `/sessions` there too.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Router as Admin,
    extract::State,
    http::StatusCode,
    routing::{get, put},
};
use clap::Args;
use tokio::net::TcpListener;

use super::{
    balance::RevisionTarget,
    proxy::{BackendAddr, Limits, Router, Table},
    sessions::Sessions,
    token::Keys,
};

#[derive(Debug, Clone, Args)]
pub struct StandaloneArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Base URL of the stable backend (`http://host:port`; the request's path is kept).
    #[arg(long)]
    pub stable: String,
    /// Base URL of the canary backend.
    #[arg(long)]
    pub canary: Option<String>,
    /// Share of new sessions (and stateless requests) the canary gets, 0-100.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub canary_weight: u32,
    /// `/metrics`, `/sessions` and `PUT /weight`.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// File holding the 32-byte session key (raw); without it a random key lives as long as
    /// the process, and sessions do not survive a restart.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// The previous key, still accepted while it is rotated out.
    #[arg(long)]
    pub previous_key_file: Option<PathBuf>,
    /// A session with no request for this long is no longer counted as open.
    #[arg(long, default_value = "10m", value_parser = humantime_secs)]
    pub idle_timeout: Duration,
    /// Stateless calls of this tool go to the canary at their own weight: `TOOL=PCT`.
    #[arg(long = "tool-route", value_parser = tool_route)]
    pub tool_routes: Vec<(String, u32)>,
    /// How long open streams may finish after SIGTERM.
    #[arg(long, default_value = "30s", value_parser = humantime_secs)]
    pub grace: Duration,
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body: usize,
}

fn humantime_secs(s: &str) -> Result<Duration, String> {
    let d: crate::api::HumanDuration =
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| format!("{s}: {e}"))?;
    Ok(d.as_std())
}

fn tool_route(s: &str) -> Result<(String, u32), String> {
    let (tool, pct) = s.split_once('=').ok_or("TOOL=PCT")?;
    let pct: u32 = pct.parse().map_err(|_| format!("{pct}: not a percentage"))?;
    if pct > 100 || tool.is_empty() {
        return Err(format!("{s}: TOOL=PCT with PCT in 0-100"));
    }
    Ok((tool.to_owned(), pct))
}

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("backend URL {0}: expected http://host:port")]
    Url(String),
    #[error("session key {0}: {1}")]
    Key(PathBuf, String),
}

fn authority(url: &str) -> Result<String, StandaloneError> {
    let uri: hyper::Uri = url.parse().map_err(|_| StandaloneError::Url(url.to_owned()))?;
    if uri.scheme_str() != Some("http") {
        return Err(StandaloneError::Url(url.to_owned()));
    }
    uri.authority().map(|a| a.to_string()).ok_or_else(|| StandaloneError::Url(url.to_owned()))
}

/// The routing table of two backends at a canary weight.
pub fn table(args: &StandaloneArgs, canary_weight: u32) -> Result<Table, StandaloneError> {
    let mut table = Table::default();
    let mut add = |name: &str, url: &str, weight: u32| -> Result<(), StandaloneError> {
        table.backends.insert(name.into(), BackendAddr { authority: authority(url)?, revision: name.into() });
        table.revisions.push(RevisionTarget { revision: name.into(), weight, backends: vec![name.into()] });
        Ok(())
    };
    match &args.canary {
        Some(canary) => {
            add("stable", &args.stable, 100 - canary_weight)?;
            add("canary", canary, canary_weight)?;
            table.canary = Some("canary".into());
        }
        None => add("stable", &args.stable, 100)?,
    }
    table.tool_routes = args.tool_routes.iter().cloned().collect();
    Ok(table)
}

fn read_key(path: &PathBuf) -> Result<Vec<u8>, StandaloneError> {
    std::fs::read(path).map_err(|e| StandaloneError::Key(path.clone(), e.to_string()))
}

pub fn router(args: &StandaloneArgs) -> Result<Arc<Router>, StandaloneError> {
    let keys = match &args.key_file {
        Some(path) => {
            let current = read_key(path)?;
            let previous = args.previous_key_file.as_ref().map(read_key).transpose()?;
            Keys::new(&current, previous.as_deref())
                .map_err(|e| StandaloneError::Key(path.clone(), e.to_string()))?
        }
        None => Keys::generate(),
    };
    let limits = Limits { max_body: args.max_body, ..Limits::default() };
    Ok(Arc::new(Router::new(
        table(args, args.canary_weight)?,
        keys,
        Sessions::new(args.idle_timeout, 1_000_000),
        limits,
    )))
}

struct AdminState {
    router: Arc<Router>,
    args: StandaloneArgs,
}

/// The admin port: `/metrics`, `/sessions` (open sessions and streams per revision, JSON) and
/// `PUT /weight`.
pub fn admin(router: Arc<Router>, args: StandaloneArgs) -> Admin {
    let state = Arc::new(AdminState { router, args });
    Admin::new()
        .route(
            "/metrics",
            get(
                |State(s): State<Arc<AdminState>>| async move { s.router.metrics.render(&s.router.sessions) },
            ),
        )
        .route(
            "/sessions",
            get(
                |State(s): State<Arc<AdminState>>| async move { axum::Json(s.router.sessions.by_revision()) },
            ),
        )
        .route(
            "/weight",
            put(|State(s): State<Arc<AdminState>>, body: String| async move {
                let Ok(weight) = body.trim().parse::<u32>() else {
                    return (StatusCode::BAD_REQUEST, "a percentage 0-100".to_owned());
                };
                if weight > 100 || s.args.canary.is_none() {
                    return (StatusCode::BAD_REQUEST, "a percentage 0-100, with a canary backend".to_owned());
                }
                match table(&s.args, weight) {
                    Ok(t) => {
                        s.router.set_table(t);
                        (StatusCode::OK, format!("canary weight {weight}"))
                    }
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }),
        )
        .with_state(state)
}

/// Runs the router (and its admin port) until `shutdown`; prints `listening on ADDR` (and
/// `admin on ADDR`) once bound.
pub async fn run(
    args: StandaloneArgs,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let router = router(&args)?;
    let listener = TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    if let Some(addr) = args.metrics_listen {
        let admin_listener = TcpListener::bind(addr).await?;
        println!("admin on {}", admin_listener.local_addr()?);
        let app = admin(router.clone(), args.clone());
        tokio::spawn(async move { axum::serve(admin_listener, app).await });
    }
    let expiring = router.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            expiring.sessions.expire(std::time::Instant::now());
        }
    });
    super::server::serve(listener, router, shutdown, args.grace).await;
    Ok(())
}
