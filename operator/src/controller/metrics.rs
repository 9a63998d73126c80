//! The operator's own metrics, served on `/metrics` beside `/healthz` and `/readyz`.
//!
//! Probe metrics carry `track` (stable / canary): the two monitors an SRE watches side by side.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    api::{McpRolloutStatus, Phase},
    engine::RevisionObserved,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub namespace: String,
    pub rollout: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub rollout: String,
    pub phase: String,
}

/// A revision and its track (`stable` / `canary`): what dashboards and alert rules join the
/// servers' own `version` label against.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrackLabels {
    pub namespace: String,
    pub rollout: String,
    pub revision: String,
    pub track: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub namespace: String,
    pub rollout: String,
    pub check: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub namespace: String,
    pub rollout: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrainLabels {
    pub namespace: String,
    pub rollout: String,
    pub revision: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn drain_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

pub struct Metrics {
    registry: Registry,
    pub phase: Family<PhaseLabels, Gauge>,
    pub desired_weight: Family<RolloutLabels, Gauge>,
    pub effective_weight: Family<RolloutLabels, Gauge>,
    pub step_index: Family<RolloutLabels, Gauge>,
    pub probe_duration: HistogramFamily<TrackLabels>,
    pub probe_success: Family<TrackLabels, Gauge>,
    pub analysis_verdicts: Family<VerdictLabels, Counter>,
    pub rollbacks: Family<ReasonLabels, Counter>,
    pub drain_window: Family<DrainLabels, Gauge>,
    pub drain_deadline: Family<DrainLabels, Gauge>,
    pub revision_info: Family<TrackLabels, Gauge>,
    pub revision_restarts: Family<TrackLabels, Gauge>,
    pub drain_duration: HistogramFamily<RolloutLabels>,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<ReasonLabels, Counter>,
    pub leader: Gauge,
    /// Rollouts the operator keeps state for (their jobs' results).
    pub tracked_rollouts: Gauge,
    /// Notifications by result: sent, failed (after every attempt), dropped (queue full).
    pub notifications: Family<ResultLabels, Counter>,
    /// Reconciles by where they read the rollout's objects: `cache`, or why they listed.
    pub reads: Family<SourceLabels, Counter>,
    /// The process's resident memory, read at each scrape.
    resident_memory: Gauge,
    /// Bytes in live allocations and how to read them, when the binary's allocator counts
    /// them (see [`Metrics::with_heap`]).
    heap: Option<(Gauge, HeapReader)>,
    ready: AtomicBool,
    /// Per-revision series published for each rollout, so a revision that left is removed
    /// without touching other rollouts' series.
    published: Mutex<HashMap<RolloutLabels, Published>>,
    /// The series each rollout's jobs and reconciles created in the families whose labels go
    /// beyond the rollout (a family cannot be searched by label), so that a deleted rollout's
    /// and a dead revision's are removed.
    created: Mutex<HashMap<RolloutLabels, Created>>,
}

#[derive(Default)]
struct Created {
    probes: HashSet<TrackLabels>,
    verdicts: HashSet<VerdictLabels>,
    rollbacks: HashSet<ReasonLabels>,
    errors: HashSet<ReasonLabels>,
}

#[derive(Clone, Default)]
struct Published {
    drains: Vec<DrainLabels>,
    tracks: Vec<TrackLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mcprollout");
        let phase = Family::<PhaseLabels, Gauge>::default();
        registry.register("phase", "1 for the rollout's current phase, 0 for the others", phase.clone());
        let desired_weight = Family::<RolloutLabels, Gauge>::default();
        registry.register(
            "desired_weight",
            "Percent of traffic the canary should get",
            desired_weight.clone(),
        );
        let effective_weight = Family::<RolloutLabels, Gauge>::default();
        registry.register(
            "effective_weight",
            "Percent of traffic the canary gets now (in-rotation ready pods)",
            effective_weight.clone(),
        );
        let step_index = Family::<RolloutLabels, Gauge>::default();
        registry.register("step_index", "Current canary step (-1 when none)", step_index.clone());
        let probe_duration: HistogramFamily<TrackLabels> = Family::new_with_constructor(seconds_histogram);
        registry.register(
            "probe_duration_seconds",
            "MCP probe duration per revision and track",
            probe_duration.clone(),
        );
        let probe_success = Family::<TrackLabels, Gauge>::default();
        registry.register("probe_success", "1 if the latest MCP probe passed", probe_success.clone());
        let analysis_verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register("analysis_verdicts", "Analysis check verdicts", analysis_verdicts.clone());
        let rollbacks = Family::<ReasonLabels, Counter>::default();
        registry.register("rollbacks", "Automatic and requested rollbacks", rollbacks.clone());
        let drain_window = Family::<DrainLabels, Gauge>::default();
        registry.register(
            "drain_window_seconds",
            "Drain window of a draining revision",
            drain_window.clone(),
        );
        let drain_deadline = Family::<DrainLabels, Gauge>::default();
        registry.register(
            "drain_deadline_timestamp_seconds",
            "When a draining revision's window ends (Unix time); minus time() is the countdown",
            drain_deadline.clone(),
        );
        let revision_info = Family::<TrackLabels, Gauge>::default();
        registry.register(
            "revision_info",
            "1 for each revision a rollout runs, labelled with its track (stable or canary)",
            revision_info.clone(),
        );
        let revision_restarts = Family::<TrackLabels, Gauge>::default();
        registry.register(
            "revision_container_restarts",
            "Container restarts summed over a revision's current pods",
            revision_restarts.clone(),
        );
        let drain_duration: HistogramFamily<RolloutLabels> = Family::new_with_constructor(drain_histogram);
        registry.register("drain_duration_seconds", "How long finished drains took", drain_duration.clone());
        let reconcile_duration = seconds_histogram();
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        registry.register("reconcile_errors", "Reconciles that failed", reconcile_errors.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader Lease", leader.clone());
        let tracked_rollouts = Gauge::default();
        registry.register(
            "tracked_rollouts",
            "Rollouts whose probe, analysis and drain results the operator keeps",
            tracked_rollouts.clone(),
        );
        let notifications = Family::<ResultLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications by result: sent, failed (every attempt), dropped (queue full)",
            notifications.clone(),
        );
        let reads = Family::<SourceLabels, Counter>::default();
        registry.register(
            "object_reads",
            "Reconciles by where they read the rollout's objects: cache, or why they listed \
             (not_synced, behind, incomparable, undecodable, migration)",
            reads.clone(),
        );
        let resident_memory = Gauge::default();
        registry.register(
            "resident_memory_bytes",
            "Resident memory of the operator process (VmRSS)",
            resident_memory.clone(),
        );
        Self {
            registry,
            phase,
            desired_weight,
            effective_weight,
            step_index,
            probe_duration,
            probe_success,
            analysis_verdicts,
            rollbacks,
            drain_window,
            drain_deadline,
            revision_info,
            revision_restarts,
            drain_duration,
            reconcile_duration,
            reconcile_errors,
            leader,
            tracked_rollouts,
            notifications,
            reads,
            resident_memory,
            heap: None,
            ready: AtomicBool::new(false),
            published: Mutex::default(),
            created: Mutex::default(),
        }
    }
}

/// Reads the bytes in live allocations from the allocator.
pub type HeapReader = fn() -> Option<i64>;

impl Metrics {
    /// Exports the live heap, read by `read` at each scrape. RSS alone cannot tell state kept
    /// from memory the allocator holds on to: after 200 rollouts were created and deleted
    /// five times, glibc's malloc held 37 MiB with 5 MiB in use.
    #[must_use]
    pub fn with_heap(mut self, read: HeapReader) -> Self {
        let gauge = Gauge::default();
        self.registry.register(
            "heap_allocated_bytes",
            "Bytes in the operator's live allocations (its allocator's count): what its state \
             takes, without the memory the allocator keeps for reuse",
            gauge.clone(),
        );
        self.heap = Some((gauge, read));
        self
    }

    pub fn encode(&self) -> String {
        if let Some(bytes) = resident_bytes() {
            self.resident_memory.set(bytes);
        }
        if let Some((gauge, read)) = &self.heap
            && let Some(bytes) = read()
        {
            gauge.set(bytes);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    fn created(&self, namespace: &str, rollout: &str, note: impl FnOnce(&mut Created)) {
        let key = RolloutLabels { namespace: namespace.into(), rollout: rollout.into() };
        note(self.created.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_default());
    }

    /// One probe of a revision: how long it took and whether it passed.
    pub fn observe_probe(&self, labels: &TrackLabels, seconds: f64, passed: bool) {
        self.created(&labels.namespace, &labels.rollout, |c| {
            c.probes.insert(labels.clone());
        });
        self.probe_duration.get_or_create(labels).observe(seconds);
        self.probe_success.get_or_create(labels).set(i64::from(passed));
    }

    pub fn count_verdict(&self, labels: &VerdictLabels) {
        self.created(&labels.namespace, &labels.rollout, |c| {
            c.verdicts.insert(labels.clone());
        });
        self.analysis_verdicts.get_or_create(labels).inc();
    }

    pub fn count_rollback(&self, labels: &ReasonLabels) {
        self.created(&labels.namespace, &labels.rollout, |c| {
            c.rollbacks.insert(labels.clone());
        });
        self.rollbacks.get_or_create(labels).inc();
    }

    pub fn count_reconcile_error(&self, labels: &ReasonLabels) {
        self.created(&labels.namespace, &labels.rollout, |c| {
            c.errors.insert(labels.clone());
        });
        self.reconcile_errors.get_or_create(labels).inc();
    }

    /// Series of one rollout, the families with per-rollout labels only included: what a test
    /// compares with a baseline.
    pub fn series_of(&self, namespace: &str, rollout: &str) -> usize {
        let needle = [format!("namespace=\"{namespace}\""), format!("rollout=\"{rollout}\"")];
        self.encode()
            .lines()
            .filter(|l| !l.starts_with('#') && needle.iter().all(|n| l.contains(n.as_str())))
            .count()
    }

    /// Gauges that mirror one rollout's status and its revisions' pods.
    /// One reconcile read its rollout's objects from `source` (`cache`, or why it listed).
    pub fn count_read(&self, source: &str) {
        self.reads.get_or_create(&SourceLabels { source: source.to_owned() }).inc();
    }

    pub fn observe_status(
        &self,
        namespace: &str,
        rollout: &str,
        status: &McpRolloutStatus,
        revisions: &[RevisionObserved],
    ) {
        let labels = RolloutLabels { namespace: namespace.into(), rollout: rollout.into() };
        self.desired_weight.get_or_create(&labels).set(i64::from(status.desired_weight));
        self.effective_weight.get_or_create(&labels).set(i64::from(status.effective_weight));
        self.step_index.get_or_create(&labels).set(status.current_step_index.map_or(-1, i64::from));
        for phase in [Phase::Healthy, Phase::Progressing, Phase::Paused, Phase::Degraded] {
            let labels = PhaseLabels {
                namespace: namespace.into(),
                rollout: rollout.into(),
                phase: format!("{phase:?}"),
            };
            self.phase.get_or_create(&labels).set(i64::from(status.phase == Some(phase)));
        }
        let mut now = Published::default();
        for drain in &status.drains {
            let labels = DrainLabels {
                namespace: namespace.into(),
                rollout: rollout.into(),
                revision: drain.revision.clone(),
            };
            self.drain_window.get_or_create(&labels).set(drain.window_seconds);
            let deadline = drain.started_at.0.as_second().saturating_add(drain.window_seconds);
            self.drain_deadline.get_or_create(&labels).set(deadline);
            now.drains.push(labels);
        }
        let tracks = [("stable", &status.stable_revision), ("canary", &status.canary_revision)];
        for (track, revision) in tracks {
            let Some(revision) = revision else { continue };
            let labels = TrackLabels {
                namespace: namespace.into(),
                rollout: rollout.into(),
                revision: revision.clone(),
                track: track.into(),
            };
            self.revision_info.get_or_create(&labels).set(1);
            let restarts = revisions.iter().find(|r| &r.revision == revision).map_or(0, |r| r.restarts);
            self.revision_restarts.get_or_create(&labels).set(i64::from(restarts));
            now.tracks.push(labels);
        }
        // Probe series of a revision that is no longer stable or canary (or not in that
        // track any more) are dead: removed.
        if let Some(created) = self.created.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&labels) {
            created.probes.retain(|probe| {
                let live = now.tracks.contains(probe);
                if !live {
                    self.probe_duration.remove(probe);
                    self.probe_success.remove(probe);
                }
                live
            });
        }
        let before = self.published.lock().unwrap_or_else(|p| p.into_inner()).insert(labels, now.clone());
        if let Some(before) = before {
            self.remove_gone(&before, &now);
        }
    }

    fn remove_gone(&self, before: &Published, after: &Published) {
        for gone in before.drains.iter().filter(|l| !after.drains.contains(l)) {
            self.drain_window.remove(gone);
            self.drain_deadline.remove(gone);
        }
        for gone in before.tracks.iter().filter(|l| !after.tracks.contains(l)) {
            self.revision_info.remove(gone);
            self.revision_restarts.remove(gone);
        }
    }

    /// A deleted rollout's gauges go with it.
    pub fn forget(&self, namespace: &str, rollout: &str) {
        let labels = RolloutLabels { namespace: namespace.into(), rollout: rollout.into() };
        self.desired_weight.remove(&labels);
        self.effective_weight.remove(&labels);
        self.step_index.remove(&labels);
        for phase in [Phase::Healthy, Phase::Progressing, Phase::Paused, Phase::Degraded] {
            self.phase.remove(&PhaseLabels {
                namespace: namespace.into(),
                rollout: rollout.into(),
                phase: format!("{phase:?}"),
            });
        }
        self.drain_duration.remove(&labels);
        let published = self.published.lock().unwrap_or_else(|p| p.into_inner()).remove(&labels);
        if let Some(published) = published {
            self.remove_gone(&published, &Published::default());
        }
        let created = self.created.lock().unwrap_or_else(|p| p.into_inner()).remove(&labels);
        if let Some(created) = created {
            for probe in &created.probes {
                self.probe_duration.remove(probe);
                self.probe_success.remove(probe);
            }
            for verdict in &created.verdicts {
                self.analysis_verdicts.remove(verdict);
            }
            for rollback in &created.rollbacks {
                self.rollbacks.remove(rollback);
            }
            for error in &created.errors {
                self.reconcile_errors.remove(error);
            }
        }
    }
}

/// VmRSS of this process, from /proc (Linux; `None` elsewhere).
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

async fn serve_metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// `/metrics`, `/healthz` (the process answers) and `/readyz` (connected to the API server).
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DrainClamp, DrainStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn drain(revision: &str, started: i64, window: i64) -> DrainStatus {
        DrainStatus {
            revision: revision.into(),
            pods: vec![],
            started_at: Time(jiff::Timestamp::from_second(started).unwrap()),
            window_seconds: window,
            replicas: 2,
            measured_seconds: None,
            clamp: DrainClamp::Max,
            active_sessions: None,
            sessions_sampled_at: None,
            first_sample_at: None,
            drained_at: None,
            evacuate: false,
        }
    }

    fn observed(revision: &str, restarts: i32) -> RevisionObserved {
        RevisionObserved {
            revision: revision.into(),
            pods: 1,
            pod_names: vec![],
            in_endpoints: 1,
            ready: 1,
            ready_in_rotation: 1,
            restarts,
            crash_looping: false,
        }
    }

    #[test]
    fn the_live_heap_is_exported_only_when_the_allocator_counts_it() {
        assert!(!Metrics::default().encode().contains("heap_allocated"));
        let text = Metrics::default().with_heap(|| Some(5_150_464)).encode();
        assert!(text.contains("mcprollout_heap_allocated_bytes 5150464"), "{text}");
    }

    #[test]
    fn revision_series_follow_each_rollout_without_touching_others() {
        let metrics = Metrics::default();
        let mut a = McpRolloutStatus {
            stable_revision: Some("a1".into()),
            canary_revision: Some("a2".into()),
            ..Default::default()
        };
        let b = McpRolloutStatus {
            stable_revision: Some("b1".into()),
            drains: vec![drain("b0", 1_000, 120)],
            ..Default::default()
        };
        metrics.observe_status("ns", "a", &a, &[observed("a1", 0), observed("a2", 3)]);
        metrics.observe_status("ns", "b", &b, &[observed("b1", 0)]);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"mcprollout_revision_info{namespace="ns",rollout="a",revision="a2",track="canary"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"mcprollout_revision_container_restarts{namespace="ns",rollout="a",revision="a2",track="canary"} 3"#), "{text}");
        assert!(text.contains(r#"mcprollout_drain_deadline_timestamp_seconds{namespace="ns",rollout="b",revision="b0"} 1120"#), "{text}");

        // a's canary is promoted: its canary series goes, b's drain stays.
        a.stable_revision = Some("a2".into());
        a.canary_revision = None;
        metrics.observe_status("ns", "a", &a, &[observed("a2", 3)]);
        let text = metrics.encode();
        assert!(!text.contains(r#"track="canary""#), "{text}");
        assert!(text.contains(r#"revision="a2",track="stable""#), "{text}");
        assert!(text.contains(r#"rollout="b",revision="b0""#), "{text}");

        metrics.forget("ns", "b");
        let text = metrics.encode();
        assert!(!text.contains(r#"rollout="b""#), "{text}");
    }

    #[test]
    fn a_deleted_rollout_and_a_dead_revision_leave_no_series() {
        let metrics = Metrics::default();
        let track = |revision: &str, track: &str| TrackLabels {
            namespace: "ns".into(),
            rollout: "a".into(),
            revision: revision.into(),
            track: track.into(),
        };
        let reason = |reason: &str| ReasonLabels {
            namespace: "ns".into(),
            rollout: "a".into(),
            reason: reason.into(),
        };
        let mut status = McpRolloutStatus {
            stable_revision: Some("a1".into()),
            canary_revision: Some("a2".into()),
            ..Default::default()
        };
        metrics.observe_status("ns", "a", &status, &[observed("a1", 0), observed("a2", 0)]);
        metrics.observe_probe(&track("a1", "stable"), 0.1, true);
        metrics.observe_probe(&track("a2", "canary"), 0.1, false);
        metrics.count_verdict(&VerdictLabels {
            namespace: "ns".into(),
            rollout: "a".into(),
            check: "errorRate".into(),
            verdict: "fail".into(),
        });
        metrics.count_rollback(&reason("AnalysisFailed"));
        metrics.count_reconcile_error(&reason("KubernetesApi"));
        metrics
            .drain_duration
            .get_or_create(&RolloutLabels { namespace: "ns".into(), rollout: "a".into() })
            .observe(3.0);
        // Another rollout's series are never touched.
        metrics.observe_probe(&TrackLabels { rollout: "b".into(), ..track("b1", "stable") }, 0.1, true);
        assert!(metrics.encode().contains(
            r#"mcprollout_probe_success{namespace="ns",rollout="a",revision="a2",track="canary"} 0"#
        ));

        // The canary rolled back: its probe series are dead.
        status.canary_revision = None;
        metrics.observe_status("ns", "a", &status, &[observed("a1", 0)]);
        let text = metrics.encode();
        assert!(!text.contains(r#"revision="a2""#), "{text}");
        assert!(
            text.contains(
                r#"mcprollout_probe_success{namespace="ns",rollout="a",revision="a1",track="stable"} 1"#
            ),
            "{text}"
        );

        metrics.forget("ns", "a");
        assert_eq!(metrics.series_of("ns", "a"), 0, "{}", metrics.encode());
        // b's probe gauge, and its histogram: 14 buckets, +Inf, sum and count.
        assert_eq!(metrics.series_of("ns", "b"), 1 + 14 + 1 + 2);
    }
}
