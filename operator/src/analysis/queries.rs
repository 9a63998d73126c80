//! The PromQL the analysis runs: the default metric contract (the servers' own metrics, or with
//! `source: Router` what the MCP session router measured from the traffic) and per-rollout
//! overrides, with `{{variable}}` templates.
//!
//! Every default query selects on the rollout's `namespace` (added by the scrape, as every
//! Kubernetes scrape configuration does) and `rollout` as well as the revision: a revision is a
//! hash of the template, so identical templates in two namespaces (staging and prod, one copy
//! per tenant) or two rollouts share it, and a canary must not pass on another's traffic.
//! `rollout=~"<name>|"` also matches series without the label — revisions created before the
//! operator passed `SERVER_ROLLOUT`, servers that do not label it yet — which the namespace
//! still keeps apart from other tenants. A rollout's name is a DNS-1035 label (admission
//! refuses others), nothing in it is special in a regex, so it goes in unescaped.

use std::collections::BTreeMap;

use crate::api::{AnalysisSpec, MetricsSource, QueryOverrides};

/// Tool calls per second of a revision (every outcome).
pub const REQUEST_RATE: &str = r#"sum(rate(mcp_tool_call_duration_seconds_count{namespace="{{namespace}}",rollout=~"{{rollout}}|",{{revisionLabel}}="{{revision}}"}[{{rateWindow}}]))"#;
/// Failed tool calls per second of a revision.
pub const ERROR_RATE: &str = r#"sum(rate(mcp_tool_call_errors_total{namespace="{{namespace}}",rollout=~"{{rollout}}|",{{revisionLabel}}="{{revision}}"}[{{rateWindow}}]))"#;
/// A tool-call latency quantile of a revision, in seconds.
pub const LATENCY: &str = r#"histogram_quantile({{quantile}}, sum by (le) (rate(mcp_tool_call_duration_seconds_bucket{namespace="{{namespace}}",rollout=~"{{rollout}}|",{{revisionLabel}}="{{revision}}"}[{{rateWindow}}])))"#;
/// Schema-validation failures per second of a revision.
pub const SCHEMA_ERRORS: &str = r#"sum(rate(mcp_tool_call_errors_total{namespace="{{namespace}}",rollout=~"{{rollout}}|",{{revisionLabel}}="{{revision}}",error_type="schema_validation"}[{{rateWindow}}]))"#;
/// Samples of a revision's tool-call counter in the rate window, in its best-scraped series:
/// fewer than two and `rate()` is empty, fewer than four and it is fragile.
pub const SAMPLES: &str = r#"max(count_over_time(mcp_tool_call_duration_seconds_count{namespace="{{namespace}}",rollout=~"{{rollout}}|",{{revisionLabel}}="{{revision}}"}[{{rateWindow}}]))"#;
/// A session-duration quantile over the lookback, in seconds. `{{revision}}` is a regex
/// alternation of the rollout's revisions.
pub const SESSION_DURATION: &str = r#"histogram_quantile({{quantile}}, sum by (le) (increase(mcp_session_duration_seconds_bucket{namespace="{{namespace}}",rollout=~"{{rollout}}|",{{revisionLabel}}=~"{{revision}}"}[{{lookback}}])))"#;
/// Sessions that ended within the lookback: the sample behind the session-duration quantile.
pub const SESSION_COUNT: &str = r#"sum(increase(mcp_session_duration_seconds_count{namespace="{{namespace}}",rollout=~"{{rollout}}|",{{revisionLabel}}=~"{{revision}}"}[{{lookback}}]))"#;
/// Open sessions (and in-flight streams) of a revision's draining pods. `{{pods}}` is a regex
/// alternation of the pod names when only some pods drain, `.*` when the whole revision does
/// (which also matches series without a `pod` label).
pub const ACTIVE_SESSIONS: &str = r#"sum(mcp_active_sessions{namespace="{{namespace}}",rollout=~"{{rollout}}|",{{revisionLabel}}="{{revision}}",pod=~"{{pods}}"})"#;
/// When the oldest of the samples behind `ACTIVE_SESSIONS` was scraped (unix seconds). An
/// instant query answers with a scrape up to one interval old; a drain trusts a count only
/// from scrapes made after the revision left traffic.
pub const ACTIVE_SESSIONS_SAMPLED_AT: &str = r#"min(timestamp(mcp_active_sessions{namespace="{{namespace}}",rollout=~"{{rollout}}|",{{revisionLabel}}="{{revision}}",pod=~"{{pods}}"}))"#;

/// The router's measurements (`mcp_router_*`, by `revision`), for servers with no metrics of
/// their own: the same questions asked of what the router saw pass.
pub mod router {
    pub const REQUEST_RATE: &str = r#"sum(rate(mcp_router_tool_calls_total{namespace="{{namespace}}",rollout=~"{{rollout}}|",revision="{{revision}}"}[{{rateWindow}}]))"#;
    pub const ERROR_RATE: &str = r#"sum(rate(mcp_router_tool_call_errors_total{namespace="{{namespace}}",rollout=~"{{rollout}}|",revision="{{revision}}"}[{{rateWindow}}]))"#;
    pub const LATENCY: &str = r#"histogram_quantile({{quantile}}, sum by (le) (rate(mcp_router_tool_call_duration_seconds_bucket{namespace="{{namespace}}",rollout=~"{{rollout}}|",revision="{{revision}}"}[{{rateWindow}}])))"#;
    pub const SCHEMA_ERRORS: &str = r#"sum(rate(mcp_router_tool_call_errors_total{namespace="{{namespace}}",rollout=~"{{rollout}}|",revision="{{revision}}",error_type="schema_validation"}[{{rateWindow}}]))"#;
    pub const SAMPLES: &str = r#"max(count_over_time(mcp_router_tool_calls_total{namespace="{{namespace}}",rollout=~"{{rollout}}|",revision="{{revision}}"}[{{rateWindow}}]))"#;
    pub const SESSION_DURATION: &str = r#"histogram_quantile({{quantile}}, sum by (le) (increase(mcp_router_session_duration_seconds_bucket{namespace="{{namespace}}",rollout=~"{{rollout}}|",revision=~"{{revision}}"}[{{lookback}}])))"#;
    pub const SESSION_COUNT: &str = r#"sum(increase(mcp_router_session_duration_seconds_count{namespace="{{namespace}}",rollout=~"{{rollout}}|",revision=~"{{revision}}"}[{{lookback}}]))"#;
    /// The router counts by revision, not by pod: a drain of some pods reads the router's
    /// live per-pod counts instead (its `/state`).
    pub const ACTIVE_SESSIONS: &str = r#"sum(mcp_router_open_sessions{namespace="{{namespace}}",rollout=~"{{rollout}}|",revision="{{revision}}"})"#;
    pub const ACTIVE_SESSIONS_SAMPLED_AT: &str = r#"min(timestamp(mcp_router_open_sessions{namespace="{{namespace}}",rollout=~"{{rollout}}|",revision="{{revision}}"}))"#;
}

/// The queries in force for one rollout: the defaults, with its overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct Queries {
    pub request_rate: String,
    pub error_rate: String,
    pub latency: String,
    pub schema_errors: String,
    /// Samples in the rate window (why a check has no data); `None` when `requestRate` is
    /// overridden: which series an arbitrary expression reads cannot be derived.
    pub samples: Option<String>,
    pub session_duration: String,
    pub session_count: String,
    pub active_sessions: String,
    /// `None` when `active_sessions` is overridden: the scrape time of an arbitrary
    /// expression cannot be derived, so the query time stands for it.
    pub active_sessions_sampled_at: Option<String>,
}

/// The label of the servers' series that carries the revision, unless a rollout names another.
pub const DEFAULT_REVISION_LABEL: &str = "version";

impl Queries {
    /// The servers' metric contract, with overrides.
    pub fn new(overrides: &QueryOverrides) -> Self {
        Self::from_source(MetricsSource::Server, overrides, DEFAULT_REVISION_LABEL)
    }

    /// The queries of an analysis spec: its source's defaults, with its overrides, selecting
    /// the revision by its `revisionLabel`.
    pub fn for_spec(spec: &AnalysisSpec) -> Self {
        Self::from_source(spec.source, &spec.queries, &spec.revision_label)
    }

    fn from_source(source: MetricsSource, overrides: &QueryOverrides, revision_label: &str) -> Self {
        let samples = match source {
            MetricsSource::Server => SAMPLES,
            MetricsSource::Router => router::SAMPLES,
        };
        let defaults = match source {
            MetricsSource::Server => [
                REQUEST_RATE,
                ERROR_RATE,
                LATENCY,
                SCHEMA_ERRORS,
                SESSION_DURATION,
                SESSION_COUNT,
                ACTIVE_SESSIONS,
                ACTIVE_SESSIONS_SAMPLED_AT,
            ],
            MetricsSource::Router => [
                router::REQUEST_RATE,
                router::ERROR_RATE,
                router::LATENCY,
                router::SCHEMA_ERRORS,
                router::SESSION_DURATION,
                router::SESSION_COUNT,
                router::ACTIVE_SESSIONS,
                router::ACTIVE_SESSIONS_SAMPLED_AT,
            ],
        };
        let [
            request_rate,
            error_rate,
            latency,
            schema_errors,
            session_duration,
            session_count,
            active,
            sampled_at,
        ] = defaults;
        // Filled in once here (overrides may use it too); admission keeps it a label name.
        let label = |query: &str| query.replace("{{revisionLabel}}", revision_label);
        let pick = |o: &Option<String>, default: &str| label(o.as_deref().unwrap_or(default));
        Self {
            request_rate: pick(&overrides.request_rate, request_rate),
            error_rate: pick(&overrides.error_rate, error_rate),
            latency: pick(&overrides.latency, latency),
            schema_errors: pick(&overrides.schema_errors, schema_errors),
            samples: overrides.request_rate.is_none().then(|| label(samples)),
            session_duration: pick(&overrides.session_duration, session_duration),
            // No override of its own: an overridden duration query has no count to pair with.
            session_count: label(session_count),
            active_sessions: pick(&overrides.active_sessions, active),
            active_sessions_sampled_at: overrides.active_sessions.is_none().then(|| label(sampled_at)),
        }
    }
}

impl Default for Queries {
    fn default() -> Self {
        Self::new(&QueryOverrides::default())
    }
}

/// Replaces each `{{name}}` with its value; unknown names are left as they are, so PromQL
/// errors name them.
pub fn render(template: &str, variables: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) if variables.contains_key(after[..end].trim()) => {
                out.push_str(&variables[after[..end].trim()]);
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A duration as PromQL spells it: whole seconds, e.g. `90s`.
pub fn promql_duration(duration: std::time::Duration) -> String {
    format!("{}s", duration.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_known_variables_and_keep_the_rest() {
        let vars = BTreeMap::from([
            ("namespace", "prod".to_owned()),
            ("rollout", "docs".to_owned()),
            ("revision", "abc".to_owned()),
            ("rateWindow", "60s".to_owned()),
        ]);
        assert_eq!(
            render(&Queries::default().request_rate, &vars),
            r#"sum(rate(mcp_tool_call_duration_seconds_count{namespace="prod",rollout=~"docs|",version="abc"}[60s]))"#
        );
        assert_eq!(render("x{{ revision }}y{{other}}z{{", &vars), "xabcy{{other}}z{{");
    }

    /// Every rate of the built-in checks is taken over the rate window, never the evaluation
    /// interval: a 30 s interval over 30 s scrapes left `rate()` one sample, and no answer.
    #[test]
    fn every_rate_is_taken_over_the_rate_window() {
        for source in [MetricsSource::Server, MetricsSource::Router] {
            let spec: AnalysisSpec =
                serde_json::from_value(serde_json::json!({"prometheus": {"address": "http://p:9090"}}))
                    .unwrap();
            let q = Queries::for_spec(&AnalysisSpec { source, ..spec });
            for query in [&q.request_rate, &q.error_rate, &q.latency, &q.schema_errors] {
                assert!(query.contains("[{{rateWindow}}]") && !query.contains("{{interval}}"), "{query}");
            }
            assert!(q.samples.as_deref().is_some_and(|s| s.contains("count_over_time")));
        }
        let overridden: AnalysisSpec = serde_json::from_value(serde_json::json!({
            "prometheus": {"address": "http://p:9090"}, "queries": {"requestRate": "my_rate"}
        }))
        .unwrap();
        assert_eq!(Queries::for_spec(&overridden).samples, None, "no samples query for a rate of the user's");
    }

    #[test]
    fn the_default_rate_window_is_never_shorter_than_two_minutes() {
        let spec = |extra: serde_json::Value| -> AnalysisSpec {
            let mut value = serde_json::json!({"prometheus": {"address": "http://p:9090"}});
            value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value(value).unwrap()
        };
        let secs = |s: AnalysisSpec| s.rate_window().as_secs();
        assert_eq!(secs(spec(serde_json::json!({}))), 120, "interval 1m: 2m");
        assert_eq!(secs(spec(serde_json::json!({"interval": "30s"}))), 120);
        assert_eq!(secs(spec(serde_json::json!({"interval": "5m"}))), 300);
        assert_eq!(secs(spec(serde_json::json!({"interval": "30s", "rateWindow": "4s"}))), 4, "as written");
    }

    #[test]
    fn the_router_source_reads_the_routers_measurements() {
        let spec: AnalysisSpec = serde_json::from_value(serde_json::json!({
            "prometheus": {"address": "http://p:9090"}, "source": "Router",
            "queries": {"latency": "my_latency"}
        }))
        .unwrap();
        let queries = Queries::for_spec(&spec);
        assert_eq!(queries.error_rate, router::ERROR_RATE);
        assert!(queries.session_duration.contains("mcp_router_session_duration_seconds_bucket"));
        assert_eq!(queries.latency, "my_latency", "overrides still win");
        let server = AnalysisSpec { source: MetricsSource::Server, ..spec };
        assert_eq!(Queries::for_spec(&server).error_rate, ERROR_RATE.replace("{{revisionLabel}}", "version"));
    }

    /// A revision is a hash of the template: every default query must also name the rollout's
    /// namespace and the rollout, or identical templates elsewhere would share its series.
    #[test]
    fn every_default_query_selects_the_rollouts_namespace_and_the_rollout() {
        for source in [MetricsSource::Server, MetricsSource::Router] {
            let spec: AnalysisSpec =
                serde_json::from_value(serde_json::json!({"prometheus": {"address": "http://p:9090"}}))
                    .unwrap();
            let q = Queries::for_spec(&AnalysisSpec { source, ..spec });
            let all = [
                &q.request_rate,
                &q.error_rate,
                &q.latency,
                &q.schema_errors,
                &q.session_duration,
                &q.session_count,
                &q.active_sessions,
            ];
            let optional = q.active_sessions_sampled_at.iter().chain(q.samples.iter());
            for query in all.into_iter().chain(optional) {
                assert!(
                    query.contains(r#"namespace="{{namespace}}",rollout=~"{{rollout}}|","#),
                    "{source:?}: {query}"
                );
            }
        }
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let overrides = QueryOverrides { error_rate: Some("my_errors".into()), ..QueryOverrides::default() };
        let queries = Queries::new(&overrides);
        assert_eq!(queries.error_rate, "my_errors");
        assert_eq!(queries.request_rate, REQUEST_RATE.replace("{{revisionLabel}}", "version"));
    }

    /// The revision is selected by the rollout's `revisionLabel` in every query of the servers'
    /// contract (a server exporting its semver as `version` labels the revision otherwise); the
    /// router's own series keep `revision`.
    #[test]
    fn the_revision_is_selected_by_the_configured_label() {
        let spec: AnalysisSpec = serde_json::from_value(serde_json::json!({
            "prometheus": {"address": "http://p:9090"}, "revisionLabel": "mcp_revision",
            "queries": {"errorRate": "sum(rate(my_errors{ {{revisionLabel}}=\"{{revision}}\" }[1m]))"}
        }))
        .unwrap();
        let q = Queries::for_spec(&spec);
        let all = [
            &q.request_rate,
            &q.latency,
            &q.schema_errors,
            &q.session_duration,
            &q.session_count,
            &q.active_sessions,
        ];
        for query in all.into_iter().chain(q.active_sessions_sampled_at.iter()).chain(q.samples.iter()) {
            assert!(
                query.contains(r#"mcp_revision=~"{{revision}}""#)
                    || query.contains(r#"mcp_revision="{{revision}}""#),
                "{query}"
            );
            assert!(!query.contains("version="), "{query}");
        }
        assert!(
            q.error_rate.contains(r#"mcp_revision="{{revision}}""#),
            "overrides get it too: {}",
            q.error_rate
        );
        let default: AnalysisSpec =
            serde_json::from_value(serde_json::json!({"prometheus": {"address": "http://p:9090"}})).unwrap();
        assert_eq!(default.revision_label, "version");
        let router = Queries::for_spec(&AnalysisSpec { source: MetricsSource::Router, ..spec });
        assert!(router.request_rate.contains(r#"revision="{{revision}}""#), "{}", router.request_rate);
    }
}
