//! Standalone mode, for a topology without Kubernetes: two backends (stable and canary, each
//! the base URL of one MCP server), changed live on the admin port — `PUT /weight` with the
//! canary's percentage as body, `PUT /evacuate` with `canary` (a rollback: its sessions end at
//! their next request and start again on stable) or nothing — or by SIGHUP, which re-reads
//! `--weight-file`. `/metrics`, `/state`, `/healthz` and `/readyz` are there too.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router as Admin, extract::State, http::StatusCode, routing::put};
use clap::Args;
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::{
    admin::{self, AdminState},
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
    /// The admin port: `/metrics`, `/state`, `PUT /weight`, `PUT /evacuate`.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// A file holding the canary weight, re-read on SIGHUP (written by whatever runs the
    /// rollout, for setups without an admin port).
    #[arg(long)]
    pub weight_file: Option<PathBuf>,
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

pub fn humantime_secs(s: &str) -> Result<Duration, String> {
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
    table_with(args, canary_weight, &BTreeSet::new())
}

/// The routing table of two backends at a canary weight, with revisions evacuated.
pub fn table_with(
    args: &StandaloneArgs,
    canary_weight: u32,
    evacuated: &BTreeSet<String>,
) -> Result<Table, StandaloneError> {
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
    table.evacuated = evacuated.clone();
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

/// What the admin port may change: the canary's weight and the evacuated revisions.
struct Live {
    router: Arc<Router>,
    args: StandaloneArgs,
    now: Mutex<(u32, BTreeSet<String>)>,
}

impl Live {
    fn apply(&self, weight: Option<u32>, evacuated: Option<BTreeSet<String>>) -> Result<String, String> {
        let mut now = self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let weight = weight.unwrap_or(now.0);
        if weight > 100 || (weight > 0 && self.args.canary.is_none()) {
            return Err("a percentage 0-100, with a canary backend".into());
        }
        let evacuated = evacuated.unwrap_or_else(|| now.1.clone());
        if let Some(unknown) = evacuated.iter().find(|r| *r != "stable" && *r != "canary") {
            return Err(format!("{unknown}: only stable or canary can be evacuated"));
        }
        let table = table_with(&self.args, weight, &evacuated).map_err(|e| e.to_string())?;
        self.router.set_table(table);
        *now = (weight, evacuated.clone());
        Ok(format!("canary weight {weight}, evacuated {evacuated:?}"))
    }
}

/// The admin port: the common routes, `PUT /weight` and `PUT /evacuate`.
pub fn admin(router: Arc<Router>, args: StandaloneArgs) -> Admin {
    let common = admin::routes(AdminState::new(router.clone()));
    let live = Arc::new(Live { router, now: Mutex::new((args.canary_weight, BTreeSet::new())), args });
    let answer = |r: Result<String, String>| match r {
        Ok(m) => (StatusCode::OK, m),
        Err(m) => (StatusCode::BAD_REQUEST, m),
    };
    let changes = Admin::new()
        .route(
            "/weight",
            put(move |State(l): State<Arc<Live>>, body: String| async move {
                match body.trim().parse::<u32>() {
                    Ok(weight) => answer(l.apply(Some(weight), None)),
                    Err(_) => answer(Err("a percentage 0-100".into())),
                }
            }),
        )
        .route(
            "/evacuate",
            put(move |State(l): State<Arc<Live>>, body: String| async move {
                let revisions =
                    body.split([',', ' ', '\n']).filter(|s| !s.is_empty()).map(str::to_owned).collect();
                answer(l.apply(None, Some(revisions)))
            }),
        )
        .with_state(live.clone());
    spawn_sighup(live);
    common.merge(changes)
}

/// SIGHUP re-reads `--weight-file`.
fn spawn_sighup(live: Arc<Live>) {
    let Some(path) = live.args.weight_file.clone() else { return };
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            warn!("no SIGHUP handler: the weight file is not watched");
            return;
        };
        while hup.recv().await.is_some() {
            let read = std::fs::read_to_string(&path).map_err(|e| e.to_string());
            let result = read.and_then(|text| {
                let weight = text
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{}: not a percentage", path.display()))?;
                live.apply(Some(weight), None)
            });
            match result {
                Ok(m) => info!("SIGHUP: {m}"),
                Err(e) => warn!("SIGHUP: {e}"),
            }
        }
    });
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
            expiring.expire_sessions();
        }
    });
    super::server::serve(listener, router, shutdown, args.grace).await;
    Ok(())
}
