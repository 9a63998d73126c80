//! One evaluation of a rollout's analysis: the queries, run against Prometheus, judged by the
//! pure checks. Every failure to measure is an `Inconclusive` with its reason, never an error.

use std::{collections::BTreeMap, time::Duration};

use super::{
    checks::{self, ErrorRateInputs},
    prometheus::{Prometheus, QueryError, Series},
    queries::{Queries, promql_duration, render},
};
use crate::{
    api::{AnalysisSpec, Verdict},
    engine::CheckResult,
};

/// What is being compared, and the thresholds in force at this step.
#[derive(Clone, Debug)]
pub struct Subject {
    pub namespace: String,
    pub rollout: String,
    /// The `version` label value of the stable revision's metrics.
    pub stable: String,
    /// The `version` label value of the canary's metrics.
    pub canary: String,
    /// The step's error-ratio threshold (the first step's is tighter).
    pub max_error_rate_ratio: f64,
    pub min_request_count: i64,
}

/// Points per sustained window: enough to see a breach's shape, few enough to stay cheap.
const POINTS_PER_WINDOW: u32 = 30;

fn inconclusive(name: &str, error: &QueryError) -> CheckResult {
    CheckResult {
        name: name.to_owned(),
        verdict: Verdict::Inconclusive,
        value: None,
        threshold: None,
        message: Some(error.to_string()),
    }
}

struct Run<'a> {
    prometheus: &'a Prometheus,
    queries: &'a Queries,
    subject: &'a Subject,
    /// The analysis interval, `{{interval}}` (users' templates written before `rateWindow`).
    interval: String,
    /// The window of `rate()`, `{{rateWindow}}`.
    rate_window: String,
    now: i64,
}

impl Run<'_> {
    fn variables(&self, revision: &str, rate_window: &str) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("namespace", self.subject.namespace.clone()),
            ("rollout", self.subject.rollout.clone()),
            ("stableRevision", self.subject.stable.clone()),
            ("canaryRevision", self.subject.canary.clone()),
            ("revision", revision.to_owned()),
            ("interval", self.interval.clone()),
            ("rateWindow", rate_window.to_owned()),
        ])
    }

    async fn range(
        &self,
        template: &str,
        revision: &str,
        sustain: Duration,
        extra: &[(&'static str, String)],
    ) -> Result<Series, QueryError> {
        let mut variables = self.variables(revision, &self.rate_window);
        variables.extend(extra.iter().cloned());
        let step = step_of(sustain);
        #[allow(clippy::cast_possible_wrap)]
        let start = self.now - sustain.as_secs() as i64;
        self.prometheus.range(&render(template, &variables), start, self.now, step).await
    }

    async fn instant(
        &self,
        template: &str,
        revision: &str,
        rate_window: &str,
    ) -> Result<Option<f64>, QueryError> {
        self.prometheus.instant(&render(template, &self.variables(revision, rate_window))).await
    }

    /// Canary calls over the window: mean rate × seconds.
    async fn canary_calls(&self, window: Duration) -> Result<Option<f64>, QueryError> {
        let rate =
            self.instant(&self.queries.request_rate, &self.subject.canary, &promql_duration(window)).await?;
        Ok(rate.map(|r| r * window.as_secs_f64()))
    }
}

fn step_of(sustain: Duration) -> Duration {
    (sustain / POINTS_PER_WINDOW).max(Duration::from_secs(1))
}

/// Evaluates every enabled Prometheus check of `spec` at `now` (unix seconds). The crash check
/// reads pod status and is the reconciler's.
pub async fn evaluate(
    prometheus: &Prometheus,
    spec: &AnalysisSpec,
    queries: &Queries,
    subject: &Subject,
    now: i64,
) -> Vec<CheckResult> {
    let run = Run {
        prometheus,
        queries,
        subject,
        interval: promql_duration(spec.interval.as_std()),
        rate_window: promql_duration(spec.rate_window()),
        now,
    };
    let mut results = Vec::new();
    let (canary, stable) = (subject.canary.as_str(), subject.stable.as_str());
    #[allow(clippy::cast_precision_loss)]
    let end = now as f64;

    let error = &spec.checks.error_rate;
    if error.enabled {
        let sustain = error.sustain.as_std();
        let threshold = subject.max_error_rate_ratio;
        let measured = async {
            let calls = run.canary_calls(sustain).await?;
            if let Some(few) =
                checks::too_few_calls(checks::ERROR_RATE, calls, subject.min_request_count, threshold)
            {
                return Ok(few);
            }
            let canary_errors = run.range(&queries.error_rate, canary, sustain, &[]).await?;
            let canary_requests = run.range(&queries.request_rate, canary, sustain, &[]).await?;
            let stable_errors = run.range(&queries.error_rate, stable, sustain, &[]).await?;
            let stable_requests = run.range(&queries.request_rate, stable, sustain, &[]).await?;
            let inputs = ErrorRateInputs {
                canary_errors: &canary_errors,
                canary_requests: &canary_requests,
                stable_errors: &stable_errors,
                stable_requests: &stable_requests,
            };
            Ok(checks::error_rate(
                &inputs,
                threshold,
                error.stable_error_rate_floor_percent / 100.0,
                end,
                sustain,
                step_of(sustain),
            ))
        };
        results.push(measured.await.unwrap_or_else(|e: QueryError| inconclusive(checks::ERROR_RATE, &e)));
    }

    let latency = &spec.checks.latency;
    if latency.enabled {
        let sustain = latency.sustain.as_std();
        let measured = async {
            let calls = run.canary_calls(sustain).await?;
            if let Some(few) =
                checks::too_few_calls(checks::LATENCY, calls, subject.min_request_count, latency.max_ratio)
            {
                return Ok(few);
            }
            let quantile = [("quantile", latency.quantile.to_string())];
            let canary_q = run.range(&queries.latency, canary, sustain, &quantile).await?;
            let stable_q = run.range(&queries.latency, stable, sustain, &quantile).await?;
            Ok(checks::latency(&canary_q, &stable_q, latency.max_ratio, end, sustain, step_of(sustain)))
        };
        results.push(measured.await.unwrap_or_else(|e: QueryError| inconclusive(checks::LATENCY, &e)));
    }

    let schema = &spec.checks.schema_validation_errors;
    if schema.enabled {
        let measured = async {
            let calls = run.canary_calls(spec.rate_window()).await?;
            let name = checks::SCHEMA_VALIDATION_ERRORS;
            if let Some(few) =
                checks::too_few_calls(name, calls, subject.min_request_count, schema.max_percent)
            {
                return Ok(few);
            }
            let errors = run.instant(&queries.schema_errors, canary, &run.rate_window).await?;
            let requests = run.instant(&queries.request_rate, canary, &run.rate_window).await?;
            Ok(checks::schema_errors(errors, requests, schema.max_percent))
        };
        results.push(
            measured.await.unwrap_or_else(|e: QueryError| inconclusive(checks::SCHEMA_VALIDATION_ERRORS, &e)),
        );
    }

    for metric in &spec.metrics {
        let value = run.instant(&metric.query, canary, &run.rate_window).await;
        results.push(match value {
            Ok(value) => checks::custom(&metric.name, value, metric.min, metric.max),
            Err(e) => inconclusive(&metric.name, &e),
        });
    }
    // A check without an answer may be a window too short for the scrapes: say so, with the
    // samples it held, where the user will look (the check's message in status).
    if results.iter().any(|r| r.verdict == Verdict::Inconclusive)
        && let Some(samples) = &queries.samples
        && let Ok(count) = run.instant(samples, canary, &run.rate_window).await
        && let Some(note) = checks::sampling_note(count, spec.rate_window())
    {
        for result in results.iter_mut().filter(|r| r.verdict == Verdict::Inconclusive) {
            let message = result.message.take().unwrap_or_default();
            result.message =
                Some(if message.is_empty() { note.clone() } else { format!("{message}; {note}") });
        }
    }
    results
}
