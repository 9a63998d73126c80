//! The measured SSE drain window, and the open-session count behind the drain's early finish.

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;

use super::{
    prometheus::{Prometheus, QueryError},
    queries::{Queries, promql_duration, render},
};
use crate::api::DrainSpec;

/// How the measured quantile became the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Clamp {
    /// The measured value was within [min, max].
    None,
    /// Raised to `min`.
    RaisedToMin,
    /// Lowered to `max`.
    LoweredToMax,
    /// Nothing was measured: `max`.
    NoData,
}

/// The drain window and how it was reached.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainWindow {
    pub window: Duration,
    /// The measured quantile of session durations, in seconds.
    pub measured_seconds: Option<f64>,
    pub clamp: Clamp,
    /// Sessions that ended within the lookback (the quantile's sample).
    pub samples: Option<f64>,
}

/// Clamps a measured quantile into [min, max]; no measurement (or no sessions) gives max.
pub fn clamp_window(
    measured: Option<f64>,
    samples: Option<f64>,
    min: Duration,
    max: Duration,
) -> DrainWindow {
    let measured = measured.filter(|m| m.is_finite() && *m >= 0.0);
    let no_sessions = samples.is_some_and(|s| s <= 0.0);
    let (window, clamp) = match measured {
        None => (max, Clamp::NoData),
        Some(_) if no_sessions => (max, Clamp::NoData),
        Some(m) if m < min.as_secs_f64() => (min, Clamp::RaisedToMin),
        Some(m) if m > max.as_secs_f64() => (max, Clamp::LoweredToMax),
        Some(m) => (Duration::from_secs_f64(m), Clamp::None),
    };
    DrainWindow { window, measured_seconds: measured, clamp, samples }
}

/// A PromQL regex matching exactly these strings: regex-escaped, then escaped again for the
/// PromQL string literal it sits in.
fn alternation(values: &[String]) -> String {
    values.iter().map(|r| regex_lite::escape(r).replace('\\', "\\\\")).collect::<Vec<_>>().join("|")
}

/// Whose series a drain reads: the rollout's namespace and name (a revision alone may be
/// shared by identical templates elsewhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub namespace: String,
    pub rollout: String,
}

fn variables(scope: &Scope, revisions: &[String], spec: &DrainSpec) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("namespace", scope.namespace.clone()),
        ("rollout", scope.rollout.clone()),
        ("revision", alternation(revisions)),
        ("quantile", spec.quantile.to_string()),
        ("lookback", promql_duration(spec.lookback.as_std())),
        ("interval", promql_duration(spec.lookback.as_std())),
    ])
}

/// The configured quantile of session durations of `revisions` over the lookback, clamped.
pub async fn measure_drain_window(
    prometheus: &Prometheus,
    spec: &DrainSpec,
    queries: &Queries,
    scope: &Scope,
    revisions: &[String],
) -> Result<DrainWindow, QueryError> {
    let variables = variables(scope, revisions, spec);
    let measured = prometheus.instant(&render(&queries.session_duration, &variables)).await?;
    let samples = prometheus.instant(&render(&queries.session_count, &variables)).await?;
    Ok(clamp_window(measured, samples, spec.min.as_std(), spec.max.as_std()))
}

/// Open sessions on a revision's pods, and when they were sampled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionCount {
    pub count: i64,
    /// Scrape time (unix seconds) of the oldest sample behind the count; `None` when the
    /// query cannot tell (an overridden query), and the query time must stand for it.
    pub sampled_at: Option<f64>,
}

/// Open sessions on a revision's pods (`pods` empty) or on the named ones only (a drain of
/// some of its pods); `None` when the metric has no series for them.
pub async fn active_sessions(
    prometheus: &Prometheus,
    queries: &Queries,
    scope: &Scope,
    revision: &str,
    pods: &[String],
) -> Result<Option<SessionCount>, QueryError> {
    let pods = if pods.is_empty() { ".*".to_owned() } else { alternation(pods) };
    let variables = BTreeMap::from([
        ("namespace", scope.namespace.clone()),
        ("rollout", scope.rollout.clone()),
        ("revision", revision.to_owned()),
        ("pods", pods),
    ]);
    // The time first: a count read after it can only be as new or newer.
    let sampled_at = match &queries.active_sessions_sampled_at {
        Some(query) => prometheus.instant(&render(query, &variables)).await?,
        None => None,
    };
    let value = prometheus.instant(&render(&queries.active_sessions, &variables)).await?;
    #[allow(clippy::cast_possible_truncation)]
    Ok(value.map(|v| SessionCount { count: v.max(0.0).round() as i64, sampled_at }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(300);

    #[test]
    fn the_window_is_the_measured_quantile_clamped() {
        let w = clamp_window(Some(120.0), Some(40.0), MIN, MAX);
        assert_eq!((w.window, w.clamp), (Duration::from_secs(120), Clamp::None));
        let w = clamp_window(Some(20.0), Some(40.0), MIN, MAX);
        assert_eq!((w.window, w.clamp, w.measured_seconds), (MIN, Clamp::RaisedToMin, Some(20.0)));
        let w = clamp_window(Some(900.0), Some(40.0), MIN, MAX);
        assert_eq!((w.window, w.clamp), (MAX, Clamp::LoweredToMax));
    }

    #[test]
    fn revisions_become_a_promql_safe_regex() {
        let spec = DrainSpec::default();
        let scope = Scope { namespace: "prod".into(), rollout: "docs".into() };
        let vars = variables(&scope, &["canary-ok".into(), "a.b".into()], &spec);
        assert_eq!(vars["revision"], r"canary\\-ok|a\\.b");
        assert_eq!((vars["namespace"].as_str(), vars["rollout"].as_str()), ("prod", "docs"));
    }

    #[test]
    fn no_data_gives_the_maximum() {
        assert_eq!(clamp_window(None, None, MIN, MAX).clamp, Clamp::NoData);
        assert_eq!(clamp_window(Some(f64::NAN), None, MIN, MAX).window, MAX);
        assert_eq!(clamp_window(Some(30.0), Some(0.0), MIN, MAX).clamp, Clamp::NoData);
    }
}
