//! Drains: a revision that left traffic stays up, out of rotation, until its pods report no
//! open sessions (or `drain.max`). The window (how long sessions are expected to last), the
//! session samples that may end a drain, and starting and ending drains.

use jiff::Timestamp;

use super::prelude::*;
use crate::api::{DrainClamp, DrainSpec, DrainStatus};

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

impl Engine<'_> {
    /// `evacuate`: a rollback moves its sessions away rather than letting them run out.
    pub(super) fn start_drain(&mut self, revision: &str, replicas: i32, evacuate: bool) {
        // Every pod the revision runs stays for the drain: sized down now, the ReplicaSet
        // would pick by its own ranking which of them to cut, sessions or not.
        let running = self.observed.revision(revision).map_or(0, |o| o.pods);
        let replicas = replicas.max(running);
        // A revision leaving traffic altogether takes the place of a drain of some of its pods.
        self.st.drains.retain(|d| d.revision != revision || d.pods.is_empty());
        if self.st.drains.iter().any(|d| d.revision == revision) || replicas <= 0 {
            return;
        }
        let (window, measured, clamp) = window(&self.spec.drain, self.observed.session_duration);
        let message = if evacuate {
            let how = if self.mcp_router() {
                "each session's next request starts it again on stable"
            } else {
                "its pods end once out of rotation, finishing their in-flight calls as they terminate"
            };
            format!("revision {revision} left traffic; evacuating its sessions ({how})")
        } else {
            format!(
                "revision {revision} left traffic; draining for up to {window}s (measured {}, clamp {clamp:?})",
                measured.map_or("nothing".into(), |m| format!("{m:.1}s"))
            )
        };
        self.events.push(Event::normal("DrainStarted", message));
        self.push_drain(revision, Vec::new(), replicas, (window, measured, clamp));
        if evacuate && let Some(d) = self.st.drains.iter_mut().find(|d| d.revision == revision) {
            d.evacuate = true;
        }
    }

    /// Records a drain starting now (of the whole revision when `pods` is empty), in the
    /// window computed for it; drains stay sorted by revision.
    fn push_drain(
        &mut self,
        revision: &str,
        pods: Vec<String>,
        replicas: i32,
        window: (i64, Option<f64>, DrainClamp),
    ) {
        let (window_seconds, measured_seconds, clamp) = window;
        self.st.drains.push(DrainStatus {
            revision: revision.to_owned(),
            pods,
            started_at: time(self.now),
            window_seconds,
            measured_seconds,
            clamp,
            replicas,
            active_sessions: None,
            sessions_sampled_at: None,
            first_sample_at: None,
            drained_at: None,
            evacuate: false,
        });
        self.st.drains.sort_by(|a, b| a.revision.cmp(&b.revision));
    }

    /// A serving revision runs more pods than it is planned for (`replicas` lowered, a canary
    /// sized for a smaller step): the extra pods leave through a drain of their own, out of
    /// rotation, while the rest serve on; only when it ends is the Deployment shrunk, and the
    /// ReplicaSet then removes exactly them (they are first by pod-deletion-cost). Never lowered
    /// at once: the ReplicaSet would pick by its own ranking, not-ready pods first — which are
    /// exactly the out-of-rotation ones still holding sessions.
    pub(super) fn drain_surplus_pods(&mut self, plan: &[RevisionPlan]) {
        // Revisions planned to serve; a first deploy's candidate (never in rotation) just shrinks.
        for p in plan.iter().filter(|p| p.role != Role::Draining && p.weight > 0 && p.in_rotation > 0) {
            let Some(observed) = self.observed.revision(&p.revision) else { continue };
            let surplus = usize::try_from(observed.pods - p.replicas).unwrap_or(0);
            if surplus == 0 || self.st.drains.iter().any(|d| d.revision == p.revision) {
                continue;
            }
            let pods: Vec<String> = observed.pod_names.iter().take(surplus).cloned().collect();
            if pods.is_empty() {
                continue;
            }
            let (window, measured, clamp) = window(&self.spec.drain, self.observed.session_duration);
            self.events.push(Event::normal(
                "DrainStarted",
                format!(
                    "revision {} shrinks from {} to {} pods: {} leave(s) through a drain of up to {window}s",
                    p.revision,
                    observed.pods,
                    p.replicas,
                    pods.join(", ")
                ),
            ));
            let running = observed.pods;
            self.push_drain(&p.revision, pods, running, (window, measured, clamp));
        }
    }

    /// Ends drains on what was observed: a drain ends when its pods report no open sessions
    /// and no in-flight streams (at once with `earlyFinish`, else once its window has
    /// elapsed), or at `drain.max` whatever they report. A window alone never ends a drain:
    /// the sessions it was measured from are a quantile, and the rest would be cut.
    /// A revision that is serving again (rolled back to, or the blue-green flip-back target
    /// during the window) is never ended here.
    pub(super) fn finish_drains(&mut self) {
        // Serving with traffic again (stable, or a canary with weight) ends a drain; a
        // restarted revision with no traffic yet keeps draining its old sessions.
        let serving: Vec<String> = std::iter::once(&self.st.stable_revision)
            .chain((self.st.desired_weight > 0).then_some(&self.st.canary_revision))
            .flatten()
            .cloned()
            .collect();
        let hold_flip_back = self.stage() == Stage::PostPromotion;
        let stable = self.st.stable_revision.clone();
        let early_finish = self.spec.drain.early_finish;
        let max = self.spec.drain.max.as_secs() as i64;
        let now = self.now;
        let mcp_router = self.mcp_router();
        let routed: Vec<String> =
            self.st.drains.iter().filter(|d| self.still_routed(d)).map(|d| d.revision.clone()).collect();
        let all_routers = self.observed.router.as_ref().filter(|_| mcp_router);
        let mut finished = Vec::new();
        self.st.drains.retain_mut(|d| {
            let is_flip_back = hold_flip_back && stable.as_deref() == Some(d.revision.as_str());
            if d.pods.is_empty() && serving.contains(&d.revision) && !is_flip_back {
                return false; // serving again: no longer draining
            }
            if d.drained_at.is_some() {
                // Some pods drained and the Deployment shrunk: kept until they have gone (the
                // ReplicaSet takes them first), so that no new drain picks them again.
                return self.observed.revision(&d.revision).is_some_and(|o| {
                    o.pods > d.replicas - d.pods.len() as i32
                        && o.pod_names.iter().any(|n| d.pods.contains(n))
                });
            }
            if let Some(sample) = self.observed.active_sessions.iter().find(|s| s.revision == d.revision) {
                record_sample(d, sample);
            }
            if is_flip_back {
                return true;
            }
            // Never removed while it may still get new work (a rotation change the API server
            // refused, a router replica not yet on the new weights): deleting it then would
            // cut that work.
            if d.pods.is_empty() && routed.contains(&d.revision) {
                return true;
            }
            let started = secs(&d.started_at);
            // The router's figures, once every replica has this drain's configuration.
            let router = all_routers.filter(|r| r.knows_drain(d));
            let settled = settled_count(d);
            let window_over = now >= started + d.window_seconds;
            let max_over = now >= started + max.max(d.window_seconds);
            // (why it ended, whether drain.max cut it short)
            let (why, forced) = if d.evacuate && d.pods.is_empty() {
                match router {
                    // Observed out of rotation after the decision that took it out (the
                    // observation of the same decision predates the change).
                    None if !mcp_router && now > started => (
                        "evacuated: out of rotation; its pods finish their in-flight calls as they terminate"
                            .to_owned(),
                        false,
                    ),
                    Some(r)
                        if r.complete
                            && r.evacuated.contains(&d.revision)
                            && r.load(&d.revision, &[]).nothing_in_flight() =>
                    {
                        ("evacuated: the router carries no call or stream on it".to_owned(), false)
                    }
                    _ if max_over => (format!("drain.max of {max}s reached while evacuating"), true),
                    _ => return true,
                }
            } else {
                // The router's live counts, once it has seen every session still open.
                let router_idle = router.is_some_and(|r| {
                    r.sessions_known
                        && (d.pods.is_empty() || r.pods_out_of_rotation(&d.pods))
                        && r.load(&d.revision, &d.pods).is_idle()
                });
                match settled {
                    _ if router_idle && (early_finish || window_over) => {
                        ("the router carries no session, stream or request on it".to_owned(), false)
                    }
                    Some(0) if early_finish || window_over => {
                        ("no open sessions or streams".to_owned(), false)
                    }
                    _ if max_over => match settled.or(d.active_sessions) {
                        Some(n) => (
                            format!("drain.max of {max}s reached with {n} session(s) or stream(s) open"),
                            true,
                        ),
                        None => {
                            (format!("drain.max of {max}s reached; open sessions were not observed"), true)
                        }
                    },
                    _ => return true,
                }
            };
            let what = if d.pods.is_empty() {
                format!("revision {}", d.revision)
            } else {
                format!("{} pod(s) of revision {} ({})", d.pods.len(), d.revision, d.pods.join(", "))
            };
            finished.push((what, forced, why));
            if d.pods.is_empty() {
                return false;
            }
            d.drained_at = Some(time(now));
            true
        });
        for (revision, forced, why) in finished {
            let message = format!("{revision} drained ({why})");
            if forced {
                self.events.push(Event::warning("DrainFinished", message));
            } else {
                self.events.push(Event::normal("DrainFinished", message));
            }
        }
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
