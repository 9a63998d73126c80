//! The router's own metrics, from the traffic it carries: requests by revision and status,
//! sessions opened, and (sampled at scrape time from the session table) open sessions and
//! streams per revision — what the drain reads when the router carries the traffic.

use std::{sync::Mutex, time::Duration};

use hyper::{Response, header::HeaderName};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::sessions::Sessions;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub revision: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevisionLabels {
    pub revision: String,
}

pub struct RouterMetrics {
    pub requests: Family<RequestLabels, Counter>,
    /// Time to the response head (streams are not timed to their end).
    pub latency: Family<RevisionLabels, Histogram>,
    pub sessions_opened: Family<RevisionLabels, Counter>,
    sessions_open: Family<RevisionLabels, Gauge>,
    streams_open: Family<RevisionLabels, Gauge>,
    registry: Mutex<Registry>,
}

impl Default for RouterMetrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RevisionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let sessions_opened = Family::<RevisionLabels, Counter>::default();
        let sessions_open = Family::<RevisionLabels, Gauge>::default();
        let streams_open = Family::<RevisionLabels, Gauge>::default();
        let mut registry = Registry::with_prefix("mcp_router");
        registry.register(
            "requests",
            "Requests answered, by the revision that served and status",
            requests.clone(),
        );
        registry.register("response_seconds", "Time to the response head, by revision", latency.clone());
        registry.register(
            "sessions_opened",
            "Sessions opened through this router, by revision",
            sessions_opened.clone(),
        );
        registry.register(
            "open_sessions",
            "Sessions open through this router, by revision",
            sessions_open.clone(),
        );
        registry.register(
            "open_streams",
            "SSE streams open through this router, by revision",
            streams_open.clone(),
        );
        Self {
            requests,
            latency,
            sessions_opened,
            sessions_open,
            streams_open,
            registry: Mutex::new(registry),
        }
    }
}

const VERSION: HeaderName = HeaderName::from_static("x-server-version");

impl RouterMetrics {
    pub fn observe<B>(&self, response: &Response<B>, elapsed: Duration) {
        let revision =
            response.headers().get(&VERSION).and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned();
        let code = response.status().as_u16().to_string();
        self.requests.get_or_create(&RequestLabels { revision: revision.clone(), code }).inc();
        self.latency.get_or_create(&RevisionLabels { revision }).observe(elapsed.as_secs_f64());
    }

    pub fn session_opened(&self, revision: &str) {
        self.sessions_opened.get_or_create(&RevisionLabels { revision: revision.to_owned() }).inc();
    }

    /// The text exposition, with the open counts taken from the table now.
    pub fn render(&self, sessions: &Sessions) -> String {
        self.sessions_open.clear();
        self.streams_open.clear();
        for (revision, load) in sessions.by_revision() {
            let labels = RevisionLabels { revision };
            self.sessions_open.get_or_create(&labels).set(i64::try_from(load.sessions).unwrap_or(i64::MAX));
            self.streams_open.get_or_create(&labels).set(i64::try_from(load.streams).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = encode(&mut out, &registry);
        out
    }
}
