//! The router's admin port, in both modes: `/metrics` (Prometheus text), `/state` (what is in
//! force and the load per revision and per backend, as JSON: what the operator reads to end a
//! drain), `/healthz` and `/readyz` (ready once a routing table is in force).

use std::{collections::BTreeMap, sync::Arc};

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
    /// Pods that take new work now: serving, of a revision with weight (or the canary, when
    /// tools are routed to it).
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
}

impl AdminState {
    pub fn new(router: Arc<Router>) -> Arc<Self> {
        Arc::new(Self { router, started_at: sessions::unix_now() })
    }

    pub fn state(&self) -> RouterState {
        let table = self.router.table();
        let (revisions, backends) = self.router.sessions.loads();
        // The canary takes tool-routed calls even at weight 0.
        let tool_routed = table.canary.as_ref().filter(|_| table.tool_routes.values().any(|w| *w > 0));
        RouterState {
            version: table.version.clone(),
            started_at: self.started_at,
            idle_timeout_seconds: self.router.sessions.idle_timeout().as_secs(),
            weights: table.revisions.iter().map(|t| (t.revision.clone(), t.weight)).collect(),
            evacuated: table.evacuated.iter().cloned().collect(),
            serving: table
                .revisions
                .iter()
                .filter(|t| t.weight > 0 || tool_routed == Some(&t.revision))
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
                if s.router.is_ready() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "no routing table yet")
                }
            }),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::router::{
        balance::RevisionTarget,
        proxy::{Limits, Table},
        sessions::Sessions,
        token::Keys,
    };

    #[test]
    fn serving_pods_are_those_taking_new_work_tool_routes_included() {
        let target = |revision: &str, weight, pod: &str| RevisionTarget {
            revision: revision.into(),
            weight,
            backends: vec![pod.into()],
        };
        let table = Table {
            revisions: vec![target("s", 100, "s-0"), target("c", 0, "c-0")],
            canary: Some("c".into()),
            ..Table::default()
        };
        let router = Arc::new(Router::new(
            table.clone(),
            Keys::generate(),
            Sessions::new(Duration::from_secs(60), 10),
            Limits::default(),
        ));
        let admin = AdminState::new(router.clone());
        assert_eq!(admin.state().serving, vec!["s-0".to_owned()], "a canary at 0 takes nothing");
        router.set_table(Table { tool_routes: [("search".to_owned(), 100)].into(), ..table });
        assert_eq!(
            admin.state().serving,
            vec!["c-0".to_owned(), "s-0".to_owned()],
            "its tool's calls go to the canary"
        );
    }
}
