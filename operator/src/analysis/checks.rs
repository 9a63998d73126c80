//! The gates as pure functions: measured series and numbers in, a verdict with its numbers out.
//!
//! "Sustained for `for`" follows Prometheus alerting: a check fails only when every evaluated
//! point across the whole window breaches. A breach that has not lasted the window yet gives
//! `Inconclusive` — the rollout holds (no step forward on a degraded canary) without rolling
//! back on a blip. A check passes only when no point of the window breaches.

use std::time::Duration;

use super::prometheus::Series;
use crate::{api::Verdict, engine::CheckResult};

pub const ERROR_RATE: &str = "errorRate";
pub const LATENCY: &str = "latency";
pub const SCHEMA_VALIDATION_ERRORS: &str = "schemaValidationErrors";

fn result(name: &str, verdict: Verdict, value: Option<f64>, threshold: f64, message: String) -> CheckResult {
    CheckResult { name: name.to_owned(), verdict, value, threshold: Some(threshold), message: Some(message) }
}

/// The value of `series` at `t`, if it has a point there.
fn at(series: &Series, t: f64) -> Option<f64> {
    series.iter().find(|(ts, _)| (ts - t).abs() < 1e-6).map(|(_, v)| *v)
}

/// Ratios at each point of the window, or `None` where the point cannot be judged.
struct Sustained {
    points: Vec<(f64, Option<f64>)>,
}

impl Sustained {
    /// Judges the window [end − sustain, end] against `threshold`.
    fn verdict(
        &self,
        name: &str,
        threshold: f64,
        end: f64,
        sustain: Duration,
        step: Duration,
    ) -> CheckResult {
        let start = end - sustain.as_secs_f64();
        let window: Vec<(f64, Option<f64>)> =
            self.points.iter().copied().filter(|(t, _)| *t >= start - 1e-6).collect();
        let latest = window.iter().rev().find_map(|(_, r)| *r);
        let judged: Vec<(f64, f64)> = window.iter().filter_map(|(t, r)| r.map(|r| (*t, r))).collect();
        let Some(latest_value) = latest else {
            return result(name, Verdict::Inconclusive, None, threshold, "no data in the window".into());
        };
        let breaching_since = judged.iter().rev().take_while(|(_, r)| *r > threshold).last().map(|(t, _)| *t);
        let breaching = judged.iter().filter(|(_, r)| *r > threshold).count();
        let covers_window = judged.first().is_some_and(|(t, _)| *t <= start + step.as_secs_f64() + 1e-6);
        match breaching_since {
            Some(since) if since <= start + step.as_secs_f64() + 1e-6 && covers_window => result(
                name,
                Verdict::Fail,
                Some(latest_value),
                threshold,
                format!("{latest_value:.3} > {threshold} for the whole {}s window", sustain.as_secs()),
            ),
            Some(since) => result(
                name,
                Verdict::Inconclusive,
                Some(latest_value),
                threshold,
                format!(
                    "{latest_value:.3} > {threshold} for {:.0}s of the {}s it must last before failing",
                    end - since,
                    sustain.as_secs()
                ),
            ),
            // Below now, but not throughout the window: a canary that breached seconds ago
            // has not shown it is healthy, and a sparse signal (a few errors a second split
            // over short rate windows) reads below the threshold between its errors. Holding
            // until a whole window is clean is what keeps such a canary from stepping forward.
            None if breaching > 0 => result(
                name,
                Verdict::Inconclusive,
                Some(latest_value),
                threshold,
                format!(
                    "{latest_value:.3} ≤ {threshold} now, but above it at {breaching} of {} points of the last {}s",
                    judged.len(),
                    sustain.as_secs()
                ),
            ),
            None => result(
                name,
                Verdict::Pass,
                Some(latest_value),
                threshold,
                format!("{latest_value:.3} ≤ {threshold}"),
            ),
        }
    }
}

/// Inputs of the error-rate gate, each a per-second rate over the rate interval.
pub struct ErrorRateInputs<'a> {
    pub canary_errors: &'a Series,
    pub canary_requests: &'a Series,
    pub stable_errors: &'a Series,
    pub stable_requests: &'a Series,
}

/// Canary error rate / stable error rate, per point. Missing error points are zero errors (an
/// error counter with no series yet has not counted any). A stable rate below `floor` — or no
/// stable traffic — counts as `floor`, so a canary error against a flawless stable is a finite
/// ratio.
pub fn error_rate(
    inputs: &ErrorRateInputs<'_>,
    max_ratio: f64,
    floor: f64,
    end: f64,
    sustain: Duration,
    step: Duration,
) -> CheckResult {
    let points = inputs
        .canary_requests
        .iter()
        .map(|&(t, requests)| {
            if requests <= 0.0 {
                return (t, None);
            }
            let canary = at(inputs.canary_errors, t).unwrap_or(0.0) / requests;
            let stable = match at(inputs.stable_requests, t) {
                Some(stable_requests) if stable_requests > 0.0 => {
                    at(inputs.stable_errors, t).unwrap_or(0.0) / stable_requests
                }
                _ => 0.0,
            };
            (t, Some(canary / stable.max(floor).max(f64::MIN_POSITIVE)))
        })
        .collect();
    Sustained { points }.verdict(ERROR_RATE, max_ratio, end, sustain, step)
}

/// Canary latency quantile / stable's, per point where both are known and stable's is > 0.
pub fn latency(
    canary: &Series,
    stable: &Series,
    max_ratio: f64,
    end: f64,
    sustain: Duration,
    step: Duration,
) -> CheckResult {
    let points =
        canary.iter().map(|&(t, c)| (t, at(stable, t).filter(|s| *s > 0.0).map(|s| c / s))).collect();
    Sustained { points }.verdict(LATENCY, max_ratio, end, sustain, step)
}

/// Share (percent) of canary tool calls rejected as schema-validation errors.
pub fn schema_errors(
    schema_error_rate: Option<f64>,
    request_rate: Option<f64>,
    max_percent: f64,
) -> CheckResult {
    let Some(requests) = request_rate.filter(|r| *r > 0.0) else {
        return result(
            SCHEMA_VALIDATION_ERRORS,
            Verdict::Inconclusive,
            None,
            max_percent,
            "no canary tool calls".into(),
        );
    };
    let percent = schema_error_rate.unwrap_or(0.0) / requests * 100.0;
    let verdict = if percent > max_percent { Verdict::Fail } else { Verdict::Pass };
    let relation = if verdict == Verdict::Fail { ">" } else { "≤" };
    result(
        SCHEMA_VALIDATION_ERRORS,
        verdict,
        Some(percent),
        max_percent,
        format!("{percent:.3}% of canary calls failed schema validation ({relation} {max_percent}%)"),
    )
}

/// A user metric within [min, max].
pub fn custom(name: &str, value: Option<f64>, min: Option<f64>, max: Option<f64>) -> CheckResult {
    let bounds = format!(
        "[{}, {}]",
        min.map_or("-∞".into(), |m| m.to_string()),
        max.map_or("+∞".into(), |m| m.to_string())
    );
    let threshold = max.or(min);
    let Some(value) = value else {
        return CheckResult {
            name: name.to_owned(),
            verdict: Verdict::Inconclusive,
            value: None,
            threshold,
            message: Some("the query returned no number".into()),
        };
    };
    let inside = min.is_none_or(|m| value >= m) && max.is_none_or(|m| value <= m);
    CheckResult {
        name: name.to_owned(),
        verdict: if inside { Verdict::Pass } else { Verdict::Fail },
        value: Some(value),
        threshold,
        message: Some(format!("{value} {} {bounds}", if inside { "in" } else { "outside" })),
    }
}

/// Every ratio check is inconclusive while the canary has served too few calls.
pub fn too_few_calls(name: &str, calls: Option<f64>, minimum: i64, threshold: f64) -> Option<CheckResult> {
    #[allow(clippy::cast_precision_loss)]
    let minimum_f = minimum as f64;
    let calls = calls.unwrap_or(0.0);
    (calls < minimum_f).then(|| {
        result(
            name,
            Verdict::Inconclusive,
            None,
            threshold,
            format!("only {calls:.0} canary tool calls in the window; {minimum} needed for a verdict"),
        )
    })
}

/// Fewer samples than make a rate reliable.
const SAFE_SAMPLES: f64 = 4.0;

/// What the samples of the canary's tool-call counter in the rate window say about an
/// unanswered check: none at all (nothing scrapes the canary, or not under the metric
/// contract's labels), or fewer than four (the window is short for the scrape interval: the
/// rate is empty under two), with the window that would hold four. `None` when they are enough.
pub fn sampling_note(samples: Option<f64>, window: Duration) -> Option<String> {
    let shown = format!("{}s", window.as_secs());
    match samples {
        None => Some(format!(
            "Prometheus has no sample of the canary's tool-call counter in the last {shown}: is it \
             scraping the canary's pods, with the metric contract's labels?"
        )),
        Some(n) if (1.0..SAFE_SAMPLES).contains(&n) => {
            let scrape = window.as_secs_f64() / n;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let needed = (scrape * SAFE_SAMPLES).ceil() as u64;
            Some(format!(
                "the rate window ({shown}) holds {n:.0} sample(s) per series (a scrape every ~{scrape:.0}s): \
                 rate() needs 2 and 4 are safe; set spec.analysis.rateWindow to at least {needed}s"
            ))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_samples_in_the_rate_window_are_named_with_the_window_that_would_do() {
        let minute = Duration::from_secs(60);
        let one = sampling_note(Some(1.0), Duration::from_secs(30)).unwrap();
        assert!(one.contains("holds 1 sample(s)") && one.contains("at least 120s"), "{one}");
        let two = sampling_note(Some(2.0), minute).unwrap();
        assert!(two.contains("every ~30s") && two.contains("at least 120s"), "{two}");
        assert_eq!(sampling_note(Some(4.0), minute), None);
        assert_eq!(sampling_note(Some(60.0), minute), None);
        let none = sampling_note(None, minute).unwrap();
        assert!(none.contains("no sample") && none.contains("60s"), "{none}");
    }

    const STEP: Duration = Duration::from_secs(10);
    const SUSTAIN: Duration = Duration::from_secs(60);

    /// Points every 10 s over [0, 60].
    fn flat(value: f64) -> Series {
        (0..=6).map(|i| (f64::from(i) * 10.0, value)).collect()
    }

    fn with(values: &[f64]) -> Series {
        values.iter().enumerate().map(|(i, v)| ((i as f64) * 10.0, *v)).collect()
    }

    fn errors(canary_errors: &Series, stable_errors: &Series) -> CheckResult {
        let requests = flat(10.0);
        let inputs = ErrorRateInputs {
            canary_errors,
            canary_requests: &requests,
            stable_errors,
            stable_requests: &requests,
        };
        error_rate(&inputs, 2.0, 0.001, 60.0, SUSTAIN, STEP)
    }

    #[test]
    fn a_healthy_canary_passes_and_a_sustained_breach_fails() {
        let healthy = errors(&flat(0.1), &flat(0.1));
        assert_eq!(healthy.verdict, Verdict::Pass);
        assert_eq!(healthy.value, Some(1.0));
        let bad = errors(&flat(1.0), &flat(0.1));
        assert_eq!(bad.verdict, Verdict::Fail, "{bad:?}");
        assert_eq!(bad.value, Some(10.0));
    }

    #[test]
    fn a_breach_shorter_than_the_window_holds_without_failing() {
        let recent = errors(&with(&[0.1, 0.1, 0.1, 0.1, 1.0, 1.0, 1.0]), &flat(0.1));
        assert_eq!(recent.verdict, Verdict::Inconclusive);
        assert!(recent.message.unwrap().contains("for 20s of the 60s"));
    }

    #[test]
    fn a_window_with_any_breach_never_passes() {
        // Just recovered: one clean point after a long breach.
        let recovered = errors(&with(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1]), &flat(0.1));
        assert_eq!(recovered.verdict, Verdict::Inconclusive, "{recovered:?}");
        assert!(recovered.message.unwrap().contains("above it at 6 of 7 points"));
        // A sparse signal: errors in some rate windows, none in others, the latest clean.
        let sparse = errors(&with(&[0.1, 1.0, 0.1, 0.1, 1.0, 0.1, 0.1]), &flat(0.1));
        assert_eq!(sparse.verdict, Verdict::Inconclusive, "{sparse:?}");
        // Points before the window do not count.
        let requests: Series = (-1..=6).map(|i| (f64::from(i) * 10.0, 10.0)).collect();
        let mut canary_errors = flat(0.1);
        canary_errors.insert(0, (-10.0, 1.0));
        let inputs = ErrorRateInputs {
            canary_errors: &canary_errors,
            canary_requests: &requests,
            stable_errors: &requests.iter().map(|(t, _)| (*t, 0.1)).collect(),
            stable_requests: &requests,
        };
        assert_eq!(error_rate(&inputs, 2.0, 0.001, 60.0, SUSTAIN, STEP).verdict, Verdict::Pass);
    }

    #[test]
    fn a_window_not_yet_covered_by_data_cannot_fail() {
        let requests: Series = vec![(40.0, 10.0), (50.0, 10.0), (60.0, 10.0)];
        let canary_errors = vec![(40.0, 5.0), (50.0, 5.0), (60.0, 5.0)];
        let inputs = ErrorRateInputs {
            canary_errors: &canary_errors,
            canary_requests: &requests,
            stable_errors: &vec![],
            stable_requests: &requests,
        };
        assert_eq!(error_rate(&inputs, 2.0, 0.001, 60.0, SUSTAIN, STEP).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn stable_at_zero_errors_uses_the_floor() {
        // Stable flawless, canary 0.05% errors: 0.0005 / 0.001 floor = 0.5 → pass.
        let low = errors(&flat(0.005), &vec![]);
        assert_eq!(low.verdict, Verdict::Pass);
        assert_eq!(low.value, Some(0.5));
        // Canary 1% against the 0.1% floor: ratio 10 → fail.
        assert_eq!(errors(&flat(0.1), &vec![]).verdict, Verdict::Fail);
    }

    #[test]
    fn no_canary_traffic_is_inconclusive() {
        let inputs = ErrorRateInputs {
            canary_errors: &vec![],
            canary_requests: &flat(0.0),
            stable_errors: &vec![],
            stable_requests: &flat(10.0),
        };
        assert_eq!(error_rate(&inputs, 2.0, 0.001, 60.0, SUSTAIN, STEP).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn latency_ratio_is_sustained_and_ignores_points_without_a_stable_value() {
        assert_eq!(latency(&flat(0.3), &flat(0.1), 3.0, 60.0, SUSTAIN, STEP).verdict, Verdict::Pass);
        assert_eq!(latency(&flat(0.5), &flat(0.1), 3.0, 60.0, SUSTAIN, STEP).verdict, Verdict::Fail);
        assert_eq!(latency(&flat(0.5), &vec![], 3.0, 60.0, SUSTAIN, STEP).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn schema_errors_compare_a_share_of_calls() {
        assert_eq!(schema_errors(None, Some(100.0), 0.1).verdict, Verdict::Pass);
        assert_eq!(schema_errors(Some(0.05), Some(100.0), 0.1).verdict, Verdict::Pass);
        let failing = schema_errors(Some(1.0), Some(100.0), 0.1);
        assert_eq!((failing.verdict, failing.value), (Verdict::Fail, Some(1.0)));
        assert_eq!(schema_errors(Some(1.0), None, 0.1).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn custom_metrics_check_their_range() {
        assert_eq!(custom("m", Some(5.0), Some(1.0), Some(10.0)).verdict, Verdict::Pass);
        assert_eq!(custom("m", Some(11.0), None, Some(10.0)).verdict, Verdict::Fail);
        assert_eq!(custom("m", Some(0.5), Some(1.0), None).verdict, Verdict::Fail);
        assert_eq!(custom("m", None, Some(1.0), None).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn too_few_calls_is_never_a_pass() {
        assert!(
            too_few_calls(ERROR_RATE, Some(49.0), 50, 2.0)
                .is_some_and(|r| r.verdict == Verdict::Inconclusive)
        );
        assert!(too_few_calls(ERROR_RATE, None, 50, 2.0).is_some());
        assert!(too_few_calls(ERROR_RATE, Some(50.0), 50, 2.0).is_none());
    }
}
