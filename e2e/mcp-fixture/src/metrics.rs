//! Prometheus metrics with the names and labels the canary gates query:
//! `mcp_tool_call_duration_seconds` {tool, outcome, version},
//! `mcp_tool_call_errors_total` {tool, error_type, version},
//! `mcp_session_duration_seconds` {transport, version} and `mcp_active_sessions` {transport, version}.
//! A "session" is a handshake-era session, or in the stateless era one request (with its stream).

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    tool: String,
    outcome: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    tool: String,
    error_type: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    transport: String,
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn call_histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0])
}

fn session_histogram() -> Histogram {
    Histogram::new([1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0])
}

/// How a tool call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// `error_type` label: internal, schema_validation, unknown_tool, …
    Error(&'static str),
}

/// The fixture's metrics.
#[derive(Clone)]
pub struct Metrics {
    version: String,
    registry: Arc<Mutex<Registry>>,
    calls: HistogramFamily<CallLabels>,
    errors: Family<ErrorLabels, Counter>,
    session_durations: HistogramFamily<SessionLabels>,
    active_sessions: Family<SessionLabels, Gauge>,
}

impl Metrics {
    /// Every series carries `version`; with a non-empty `rollout`, `rollout` too (the metric
    /// contract: the operator passes both, as `SERVER_VERSION` and `SERVER_ROLLOUT`).
    pub fn new(version: &str, rollout: &str) -> Self {
        let rollout_label = (!rollout.is_empty())
            .then(|| (std::borrow::Cow::Borrowed("rollout"), std::borrow::Cow::Owned(rollout.to_owned())));
        let mut registry = Registry::with_labels(rollout_label.into_iter());
        let calls: HistogramFamily<CallLabels> = Family::new_with_constructor(call_histogram);
        let errors = Family::<ErrorLabels, Counter>::default();
        let session_durations: HistogramFamily<SessionLabels> =
            Family::new_with_constructor(session_histogram);
        let active_sessions = Family::<SessionLabels, Gauge>::default();
        registry.register("mcp_tool_call_duration_seconds", "Tool call execution duration", calls.clone());
        registry.register("mcp_tool_call_errors", "Tool call errors by type", errors.clone());
        registry.register(
            "mcp_session_duration_seconds",
            "Duration of ended sessions",
            session_durations.clone(),
        );
        registry.register(
            "mcp_active_sessions",
            "Open sessions and in-flight requests",
            active_sessions.clone(),
        );
        Self {
            version: version.to_owned(),
            registry: Arc::new(Mutex::new(registry)),
            calls,
            errors,
            session_durations,
            active_sessions,
        }
    }

    pub fn record_call(&self, tool: &str, outcome: Outcome, seconds: f64) {
        let outcome_label = match outcome {
            Outcome::Success => "success",
            Outcome::Error(_) => "error",
        };
        self.calls
            .get_or_create(&CallLabels {
                tool: tool.to_owned(),
                outcome: outcome_label.to_owned(),
                version: self.version.clone(),
            })
            .observe(seconds);
        if let Outcome::Error(error_type) = outcome {
            self.errors
                .get_or_create(&ErrorLabels {
                    tool: tool.to_owned(),
                    error_type: error_type.to_owned(),
                    version: self.version.clone(),
                })
                .inc();
        }
    }

    /// Counts a session as open until the returned guard is dropped, then records its duration.
    pub fn session(&self, transport: &'static str) -> SessionGuard {
        let labels = SessionLabels { transport: transport.to_owned(), version: self.version.clone() };
        self.active_sessions.get_or_create(&labels).inc();
        SessionGuard { metrics: self.clone(), labels, started: Instant::now() }
    }

    /// Open sessions of a transport right now.
    pub fn active(&self, transport: &str) -> i64 {
        let labels = SessionLabels { transport: transport.to_owned(), version: self.version.clone() };
        self.active_sessions.get_or_create(&labels).get()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}

/// An open session; dropping it ends the session in the metrics.
pub struct SessionGuard {
    metrics: Metrics,
    labels: SessionLabels,
    started: Instant,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.metrics.active_sessions.get_or_create(&self.labels).dec();
        self.metrics
            .session_durations
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The sum of a metric's samples, in the Prometheus text format, whose labels include every
/// `(name, value)` given: how tests read a server's or a router's `/metrics`.
pub fn sample_sum(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, rest) = series.split_once('{').unwrap_or((series, ""));
            (name == metric && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_documented_names_and_labels() {
        let m = Metrics::new("v7", "docs");
        m.record_call("get_document", Outcome::Success, 0.02);
        m.record_call("get_document", Outcome::Error("schema_validation"), 0.01);
        {
            let _session = m.session("streamable-http");
            assert_eq!(m.active("streamable-http"), 1);
        }
        assert_eq!(m.active("streamable-http"), 0);
        let text = m.render();
        for needle in [
            r#"mcp_tool_call_duration_seconds_count{rollout="docs",tool="get_document",outcome="success",version="v7"} 1"#,
            r#"mcp_tool_call_errors_total{rollout="docs",tool="get_document",error_type="schema_validation",version="v7"} 1"#,
            r#"mcp_session_duration_seconds_count{rollout="docs",transport="streamable-http",version="v7"} 1"#,
            r#"mcp_active_sessions{rollout="docs",transport="streamable-http",version="v7"} 0"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        let unlabelled = Metrics::new("v7", "").render();
        assert!(!unlabelled.contains("rollout="), "no rollout given, no label: {unlabelled}");
    }

    #[test]
    fn samples_are_summed_by_name_and_labels() {
        let text = "# HELP x y\nx_total{a=\"1\",b=\"2\"} 3\nx_total{a=\"1\",b=\"3\"} 4\nx_total_other 9\nx_total 5\n";
        assert_eq!(sample_sum(text, "x_total", &[]), 12.0);
        assert_eq!(sample_sum(text, "x_total", &[("a", "1")]), 7.0);
        assert_eq!(sample_sum(text, "x_total", &[("b", "3")]), 4.0);
        assert_eq!(sample_sum(text, "missing", &[]), 0.0);
    }
}
