//! The router's own metrics, from the traffic it carries — no instrumentation of the servers:
//! requests by revision and status; tool calls by revision, tool and outcome, with their
//! latency (to the response that answers them, streamed or not) and errors by type (JSON-RPC
//! errors, `isError` results, schema validation); sessions opened and how long they lasted; and
//! (sampled at scrape time from the session table) open sessions, streams and requests in
//! flight per revision — what the analysis (`source: router`) and the drain read.

use std::{borrow::Cow, collections::BTreeSet, sync::Mutex, time::Duration};

use hyper::{Response, header::HeaderName};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::{jsonrpc::Outcome, sessions::Sessions};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub revision: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevisionLabels {
    pub revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub revision: String,
    pub tool: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub revision: String,
    pub tool: String,
    pub error_type: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn response_histogram() -> Histogram {
    Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

fn call_histogram() -> Histogram {
    Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
}

fn session_histogram() -> Histogram {
    Histogram::new([1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0])
}

/// Distinct tool names given a label of their own; the rest are counted as `_other`, so a
/// client inventing names cannot grow the series without bound.
const MAX_TOOL_LABELS: usize = 64;
const MAX_TOOL_NAME: usize = 128;
/// The tool label of a call whose tool is not known here (a legacy answer to a call another
/// router replica posted).
pub const UNKNOWN_TOOL: &str = "_unknown";

pub struct RouterMetrics {
    pub requests: Family<RequestLabels, Counter>,
    /// Time to the response head (streams are not timed to their end).
    pub latency: Histograms<RevisionLabels>,
    pub sessions_opened: Family<RevisionLabels, Counter>,
    calls: Family<CallLabels, Counter>,
    call_latency: Histograms<CallLabels>,
    errors: Family<ErrorLabels, Counter>,
    sessions: Histograms<RevisionLabels>,
    sessions_open: Family<RevisionLabels, Gauge>,
    streams_open: Family<RevisionLabels, Gauge>,
    in_flight: Family<RevisionLabels, Gauge>,
    tools: Mutex<BTreeSet<String>>,
    registry: Mutex<Registry>,
}

impl Default for RouterMetrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl RouterMetrics {
    /// The router's metrics; with `rollout`, every series carries `rollout="<name>"` (the
    /// operator-run router serves one rollout; the analysis selects on it and on the scrape's
    /// `namespace`, so identical revisions of two rollouts never share series).
    pub fn new(rollout: Option<&str>) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Histograms::<RevisionLabels>::new_with_constructor(response_histogram);
        let sessions_opened = Family::<RevisionLabels, Counter>::default();
        let calls = Family::<CallLabels, Counter>::default();
        let call_latency = Histograms::<CallLabels>::new_with_constructor(call_histogram);
        let errors = Family::<ErrorLabels, Counter>::default();
        let sessions = Histograms::<RevisionLabels>::new_with_constructor(session_histogram);
        let sessions_open = Family::<RevisionLabels, Gauge>::default();
        let streams_open = Family::<RevisionLabels, Gauge>::default();
        let in_flight = Family::<RevisionLabels, Gauge>::default();
        let labels = rollout.map(|r| (Cow::Borrowed("rollout"), Cow::Owned(r.to_owned())));
        let mut registry = Registry::with_prefix_and_labels("mcp_router", labels.into_iter());
        registry.register(
            "requests",
            "Requests answered, by the revision that served and status",
            requests.clone(),
        );
        registry.register("response_seconds", "Time to the response head, by revision", latency.clone());
        registry.register(
            "tool_calls",
            "Tool calls answered (or failed without an answer), by revision, tool and outcome (ok, error)",
            calls.clone(),
        );
        registry.register(
            "tool_call_duration_seconds",
            "Tool calls, from the request to the response that answers it, by revision, tool and outcome",
            call_latency.clone(),
        );
        registry.register(
            "tool_call_errors",
            "Failed tool calls by revision, tool and error_type (jsonrpc, tool, schema_validation, http, backend)",
            errors.clone(),
        );
        registry.register(
            "sessions_opened",
            "Sessions opened through this router, by revision",
            sessions_opened.clone(),
        );
        registry.register(
            "session_duration_seconds",
            "Sessions that ended (deleted, gone, evacuated or idle), by revision",
            sessions.clone(),
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
        registry.register(
            "in_flight",
            "Requests in flight and legacy calls awaiting their answer, by revision",
            in_flight.clone(),
        );
        Self {
            requests,
            latency,
            sessions_opened,
            calls,
            call_latency,
            errors,
            sessions,
            sessions_open,
            streams_open,
            in_flight,
            tools: Mutex::default(),
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

    pub fn session_ended(&self, revision: &str, seconds: Option<f64>) {
        if let Some(seconds) = seconds {
            self.sessions.get_or_create(&RevisionLabels { revision: revision.to_owned() }).observe(seconds);
        }
    }

    /// The label a tool name is counted under.
    fn tool_label(&self, tool: &str) -> String {
        if tool == UNKNOWN_TOOL {
            return tool.to_owned();
        }
        let mut tools = self.tools.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if tool.len() <= MAX_TOOL_NAME && (tools.contains(tool) || tools.len() < MAX_TOOL_LABELS) {
            tools.insert(tool.to_owned());
            tool.to_owned()
        } else {
            "_other".to_owned()
        }
    }

    /// A tool call ended: `error_type` for a failure (an [`Outcome`]'s, or `http` / `backend`
    /// when no JSON-RPC answer came), its latency when known.
    pub fn call(&self, revision: &str, tool: &str, error_type: Option<&str>, latency: Option<Duration>) {
        let tool = self.tool_label(tool);
        let outcome = if error_type.is_some() { "error" } else { "ok" };
        let labels =
            CallLabels { revision: revision.to_owned(), tool: tool.clone(), outcome: outcome.into() };
        self.calls.get_or_create(&labels).inc();
        if let Some(latency) = latency {
            self.call_latency.get_or_create(&labels).observe(latency.as_secs_f64());
        }
        if let Some(error_type) = error_type {
            self.errors
                .get_or_create(&ErrorLabels {
                    revision: revision.to_owned(),
                    tool,
                    error_type: error_type.into(),
                })
                .inc();
        }
    }

    /// A tool call answered by a JSON-RPC response.
    pub fn answered(&self, revision: &str, tool: &str, outcome: Outcome, latency: Option<Duration>) {
        self.call(revision, tool, outcome.error_type(), latency);
    }

    /// The text exposition, with the open counts taken from the table now.
    pub fn render(&self, sessions: &Sessions) -> String {
        self.sessions_open.clear();
        self.streams_open.clear();
        self.in_flight.clear();
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (revision, load) in sessions.by_revision() {
            let labels = RevisionLabels { revision };
            self.sessions_open.get_or_create(&labels).set(gauge(load.sessions));
            self.streams_open.get_or_create(&labels).set(gauge(load.streams));
            self.in_flight.get_or_create(&labels).set(gauge(load.in_flight));
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_run_router_labels_every_series_with_its_rollout() {
        let m = RouterMetrics::new(Some("docs"));
        m.answered("r1", "search", Outcome::Ok, Some(Duration::from_millis(3)));
        let text = m.render(&Sessions::new(Duration::from_secs(1), 10));
        let samples: Vec<&str> = text.lines().filter(|l| l.starts_with("mcp_router_")).collect();
        assert!(!samples.is_empty(), "{text}");
        for sample in samples {
            assert!(sample.contains(r#"rollout="docs""#), "{sample}");
        }
    }

    #[test]
    fn calls_are_counted_by_outcome_with_bounded_tool_labels() {
        let m = RouterMetrics::default();
        m.answered("r1", "search", Outcome::Ok, Some(Duration::from_millis(3)));
        m.answered("r1", "search", Outcome::SchemaValidation, Some(Duration::from_millis(1)));
        m.call("r1", UNKNOWN_TOOL, Some("backend"), None);
        for i in 0..100 {
            m.answered("r1", &format!("t{i}"), Outcome::Ok, None);
        }
        let text = m.render(&Sessions::new(Duration::from_secs(1), 10));
        assert!(
            text.contains(r#"mcp_router_tool_calls_total{revision="r1",tool="search",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"mcp_router_tool_call_duration_seconds_count{revision="r1",tool="search",outcome="ok"} 1"#
        ));
        assert!(
            !text.contains(r#"mcp_router_tool_call_duration_seconds_count{revision="r1",tool="_unknown""#),
            "a call whose latency is not known counts, but is not timed"
        );
        assert!(text.contains(
            r#"mcp_router_tool_call_errors_total{revision="r1",tool="search",error_type="schema_validation"} 1"#
        ));
        assert!(text.contains(r#"error_type="backend""#));
        assert!(text.contains(r#"tool="_other""#), "past 64 tool names the rest share one label");
        assert!(!text.contains(r#"tool="t99""#));
    }
}
