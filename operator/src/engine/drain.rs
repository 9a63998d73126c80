//! Drain windows (how long a revision that left traffic is expected to hold sessions) and
//! the session samples that may end a drain.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{DrainClamp, DrainSpec, DrainStatus};

use super::input::{ActiveSessions, SessionDuration};

/// Folds a session sample into a drain. Only samples scraped after the drain began count;
/// the first of them is remembered, and a count is trusted from a later one (`settled_count`).
/// A sample scraped as the pods left traffic can miss connections the Service still sent them.
pub fn record_sample(drain: &mut DrainStatus, sample: &ActiveSessions) {
    let sampled = sample.at.as_second();
    if sampled <= drain.started_at.0.as_second() {
        return;
    }
    if drain.sessions_sampled_at.as_ref().is_some_and(|t| t.0.as_second() >= sampled) {
        return; // not newer than what the drain holds
    }
    let at = Time(Timestamp::from_second(sampled).unwrap_or(Timestamp::UNIX_EPOCH));
    if drain.first_sample_at.is_none() {
        drain.first_sample_at = Some(at.clone());
    }
    drain.active_sessions = Some(sample.count);
    drain.sessions_sampled_at = Some(at);
}

/// The open-session count a drain may act on: one sampled after its first sample.
pub fn settled_count(drain: &DrainStatus) -> Option<i64> {
    let first = drain.first_sample_at.as_ref()?.0.as_second();
    let sampled = drain.sessions_sampled_at.as_ref()?.0.as_second();
    (sampled > first).then_some(drain.active_sessions).flatten()
}

/// The window (seconds) for a drain starting now, and how it relates to what was measured:
/// the measured session-duration quantile clamped to [min, max]; nothing measured → max.
pub fn window(spec: &DrainSpec, measured: Option<SessionDuration>) -> (i64, Option<f64>, DrainClamp) {
    let min = spec.min.as_secs() as i64;
    let max = (spec.max.as_secs() as i64).max(min);
    match measured.and_then(|m| m.seconds).filter(|s| s.is_finite() && *s >= 0.0) {
        None => (max, None, DrainClamp::NoData),
        Some(s) if s < min as f64 => (min, Some(s), DrainClamp::Min),
        Some(s) if s > max as f64 => (max, Some(s), DrainClamp::Max),
        Some(s) => (s.ceil() as i64, Some(s), DrainClamp::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DrainSpec {
        DrainSpec::default() // [60s, 300s]
    }

    #[test]
    fn clamps_the_measured_quantile() {
        let m = |s: f64| Some(SessionDuration { seconds: Some(s) });
        assert_eq!(window(&spec(), m(20.0)), (60, Some(20.0), DrainClamp::Min));
        assert_eq!(window(&spec(), m(119.2)), (120, Some(119.2), DrainClamp::None));
        assert_eq!(window(&spec(), m(900.0)), (300, Some(900.0), DrainClamp::Max));
    }

    #[test]
    fn no_data_or_garbage_means_the_maximum() {
        assert_eq!(window(&spec(), None), (300, None, DrainClamp::NoData));
        assert_eq!(window(&spec(), Some(SessionDuration { seconds: None })), (300, None, DrainClamp::NoData));
        assert_eq!(window(&spec(), Some(SessionDuration { seconds: Some(f64::NAN) })).2, DrainClamp::NoData);
        assert_eq!(window(&spec(), Some(SessionDuration { seconds: Some(-1.0) })).2, DrainClamp::NoData);
    }
}
