//! The PromQL the analysis runs: the default metric contract and per-rollout overrides, with
//! `{{variable}}` templates.

use std::collections::BTreeMap;

use crate::api::QueryOverrides;

/// Tool calls per second of a revision (every outcome).
pub const REQUEST_RATE: &str =
    r#"sum(rate(mcp_tool_call_duration_seconds_count{version="{{revision}}"}[{{interval}}]))"#;
/// Failed tool calls per second of a revision.
pub const ERROR_RATE: &str = r#"sum(rate(mcp_tool_call_errors_total{version="{{revision}}"}[{{interval}}]))"#;
/// A tool-call latency quantile of a revision, in seconds.
pub const LATENCY: &str = r#"histogram_quantile({{quantile}}, sum by (le) (rate(mcp_tool_call_duration_seconds_bucket{version="{{revision}}"}[{{interval}}])))"#;
/// Schema-validation failures per second of a revision.
pub const SCHEMA_ERRORS: &str = r#"sum(rate(mcp_tool_call_errors_total{version="{{revision}}",error_type="schema_validation"}[{{interval}}]))"#;
/// A session-duration quantile over the lookback, in seconds. `{{revision}}` is a regex
/// alternation of the rollout's revisions.
pub const SESSION_DURATION: &str = r#"histogram_quantile({{quantile}}, sum by (le) (increase(mcp_session_duration_seconds_bucket{version=~"{{revision}}"}[{{lookback}}])))"#;
/// Sessions that ended within the lookback: the sample behind the session-duration quantile.
pub const SESSION_COUNT: &str =
    r#"sum(increase(mcp_session_duration_seconds_count{version=~"{{revision}}"}[{{lookback}}]))"#;
/// Open sessions (and in-flight streams) of a revision's draining pods. `{{pods}}` is a regex
/// alternation of the pod names when only some pods drain, `.*` when the whole revision does
/// (which also matches series without a `pod` label).
pub const ACTIVE_SESSIONS: &str = r#"sum(mcp_active_sessions{version="{{revision}}",pod=~"{{pods}}"})"#;
/// When the oldest of the samples behind `ACTIVE_SESSIONS` was scraped (unix seconds). An
/// instant query answers with a scrape up to one interval old; a drain trusts a count only
/// from scrapes made after the revision left traffic.
pub const ACTIVE_SESSIONS_SAMPLED_AT: &str =
    r#"min(timestamp(mcp_active_sessions{version="{{revision}}",pod=~"{{pods}}"}))"#;

/// The queries in force for one rollout: the defaults, with its overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct Queries {
    pub request_rate: String,
    pub error_rate: String,
    pub latency: String,
    pub schema_errors: String,
    pub session_duration: String,
    pub session_count: String,
    pub active_sessions: String,
    /// `None` when `active_sessions` is overridden: the scrape time of an arbitrary
    /// expression cannot be derived, so the query time stands for it.
    pub active_sessions_sampled_at: Option<String>,
}

impl Queries {
    pub fn new(overrides: &QueryOverrides) -> Self {
        let pick = |o: &Option<String>, default: &str| o.clone().unwrap_or_else(|| default.to_owned());
        Self {
            request_rate: pick(&overrides.request_rate, REQUEST_RATE),
            error_rate: pick(&overrides.error_rate, ERROR_RATE),
            latency: pick(&overrides.latency, LATENCY),
            schema_errors: pick(&overrides.schema_errors, SCHEMA_ERRORS),
            session_duration: pick(&overrides.session_duration, SESSION_DURATION),
            // No override of its own: an overridden duration query has no count to pair with.
            session_count: SESSION_COUNT.to_owned(),
            active_sessions: pick(&overrides.active_sessions, ACTIVE_SESSIONS),
            active_sessions_sampled_at: overrides
                .active_sessions
                .is_none()
                .then(|| ACTIVE_SESSIONS_SAMPLED_AT.to_owned()),
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
        let vars = BTreeMap::from([("revision", "abc".to_owned()), ("interval", "60s".to_owned())]);
        assert_eq!(
            render(REQUEST_RATE, &vars),
            r#"sum(rate(mcp_tool_call_duration_seconds_count{version="abc"}[60s]))"#
        );
        assert_eq!(render("x{{ revision }}y{{other}}z{{", &vars), "xabcy{{other}}z{{");
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let overrides = QueryOverrides { error_rate: Some("my_errors".into()), ..QueryOverrides::default() };
        let queries = Queries::new(&overrides);
        assert_eq!(queries.error_rate, "my_errors");
        assert_eq!(queries.request_rate, REQUEST_RATE);
    }
}
