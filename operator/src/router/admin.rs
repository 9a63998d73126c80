//! The router's admin port, in both modes: `/metrics` (Prometheus text), `/state` (what is in
//! force and the load per revision and per backend, as JSON: what the operator reads to end a
//! drain), `/healthz` and `/readyz` (ready once a routing table is in force).

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router as Admin, extract::State, http::StatusCode, routing::get};
use serde::{Deserialize, Serialize};

use super::{
    proxy::Router,
    sessions::{self, Load},
};

/// What one router replica reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterState {
    /// The configuration in force (the operator's `version`; empty in standalone mode).
    pub version: String,
    /// When this replica started (unix seconds): it knows only the sessions that made a request
    /// through it since.
    pub started_at: u64,
    pub idle_timeout_seconds: u64,
    /// Weight of new work per revision.
    pub weights: BTreeMap<String, u32>,
    pub evacuated: Vec<String>,
    /// Pods that take new work now (serving, of a revision with weight).
    #[serde(default)]
    pub serving: Vec<String>,
    /// The operator's drains the configuration in force knows of.
    #[serde(default)]
    pub drains: Vec<super::config::DrainKey>,
    pub revisions: BTreeMap<String, Load>,
    pub backends: BTreeMap<String, Load>,
}

pub struct AdminState {
    pub router: Arc<Router>,
    pub started_at: u64,
    pub ready: AtomicBool,
}

impl AdminState {
    pub fn new(router: Arc<Router>, ready: bool) -> Arc<Self> {
        Arc::new(Self { router, started_at: sessions::unix_now(), ready: AtomicBool::new(ready) })
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn state(&self) -> RouterState {
        let table = self.router.table();
        let (revisions, backends) = self.router.sessions.loads();
        RouterState {
            version: table.version.clone(),
            started_at: self.started_at,
            idle_timeout_seconds: self.router.sessions.idle_timeout().as_secs(),
            weights: table.revisions.iter().map(|t| (t.revision.clone(), t.weight)).collect(),
            evacuated: table.evacuated.iter().cloned().collect(),
            serving: table
                .revisions
                .iter()
                .filter(|t| t.weight > 0)
                .flat_map(|t| t.backends.iter().cloned())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            drains: table.drains.iter().cloned().collect(),
            revisions,
            backends,
        }
    }
}

/// The routes every mode serves.
pub fn routes(state: Arc<AdminState>) -> Admin {
    Admin::new()
        .route(
            "/metrics",
            get(
                |State(s): State<Arc<AdminState>>| async move { s.router.metrics.render(&s.router.sessions) },
            ),
        )
        .route("/state", get(|State(s): State<Arc<AdminState>>| async move { axum::Json(s.state()) }))
        .route(
            "/sessions",
            get(
                |State(s): State<Arc<AdminState>>| async move { axum::Json(s.router.sessions.by_revision()) },
            ),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<Arc<AdminState>>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "no routing table yet")
                }
            }),
        )
        .with_state(state)
}
