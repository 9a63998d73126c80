//! Probes and analysis run beside the reconciler, never inside it: a slow probe of one rollout
//! must not hold any other. The reconciler starts a job when the engine asks for it (at most one
//! of each kind per rollout and revision at a time); the job stores its result here and wakes
//! the rollout's reconcile, which hands the result to the engine as an observation.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use futures::channel::mpsc::UnboundedSender;
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use super::gate_calls::{self, GateJob};
use super::metrics::{Metrics, TrackLabels, VerdictLabels};
use crate::{
    analysis::{self, Prometheus, Queries, Subject},
    api::{AnalysisSpec, DrainSpec, McpRollout, SchemaCompatibility, Verdict},
    engine::{ActiveSessions, AnalysisReport, GateAnswer, GateCall, ProbeReport, Problem, SessionDuration},
    probe::{self, PackedSnapshot, ProbeConfig, Snapshot},
};

/// Namespace and name of a rollout.
pub type RolloutKey = (String, String);

/// Pods probed at once, across all rollouts. A probe's timeout judges the server; with no
/// limit, a wave of hundreds of rollouts started hundreds of probes together, the operator's
/// own threads could not serve them within the timeout, and healthy canaries were read as
/// failing (hack/bench.sh scale at N = 1,000). A probe waits for a slot before its clock starts.
const PROBE_SLOTS: usize = 32;

#[derive(Default)]
struct RolloutState {
    probes: BTreeMap<String, ProbeReport>,
    /// Tools and protocol versions of each revision's latest passing probe: the baseline a
    /// canary is compared with.
    snapshots: BTreeMap<String, PackedSnapshot>,
    probing: BTreeSet<String>,
    analysis: Option<AnalysisReport>,
    analysing: bool,
    session_duration: Option<SessionDuration>,
    active_sessions: BTreeMap<String, ActiveSessions>,
    measuring: bool,
    measured_at: Option<Instant>,
    /// Reconciles in a row whose writes the API server refused, and the last refusal.
    failed_writes: u32,
    last_write_error: Option<String>,
    /// Reconciles in a row that ended in an error (the backoff before the next one).
    failed_reconciles: u32,
    /// Objects of our names that exist and are not ours, found by the last reconcile.
    conflicts: Vec<String>,
    /// The latest answer of each gate webhook call, and the calls under way.
    gate_answers: BTreeMap<GateCall, GateAnswer>,
    gate_calling: BTreeSet<GateCall>,
    /// The revision the template history (ControllerRevisions) was last brought up to date
    /// for: it is read again only when the stable revision changes (or the operator restarts).
    history_recorded: Option<String>,
}

/// What the jobs found, as the engine takes it.
#[derive(Debug, Default)]
pub struct Results {
    pub probes: Vec<ProbeReport>,
    pub analysis: Option<AnalysisReport>,
    pub session_duration: Option<SessionDuration>,
    pub active_sessions: Vec<ActiveSessions>,
    pub gate_answers: Vec<GateAnswer>,
}

/// A probe of one revision: every target pod, compared with a baseline revision.
pub struct ProbeJob {
    pub revision: String,
    /// `stable` or `canary`, for metrics.
    pub track: &'static str,
    /// (pod name, probe of that pod).
    pub targets: Vec<(String, ProbeConfig)>,
    pub baseline: Option<Baseline>,
    pub wake: ProbeWake,
}

/// When a finished probe wakes its rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeWake {
    /// Always: the engine is waiting on a probe newer than some moment (a canary's step, a
    /// first deploy, a drain), so the result must be decided on at once.
    Always,
    /// Only when the result is not a repeat of the revision's previous one: a steady rollout's
    /// periodic probe of stable that passes with the same finding changes no decision, and the
    /// next periodic reconcile reads it anyway. Waking on it doubled the reconciles at rest
    /// (hack/bench.sh scale, N = 300: one reconcile to start the probe, one 0.1 s later for a
    /// result nobody needed, every 30 s per rollout).
    OnChange,
}

impl ProbeWake {
    /// Whether `report` wakes the rollout, given the revision's previous report.
    pub fn wakes(self, previous: Option<&ProbeReport>, report: &ProbeReport) -> bool {
        self == Self::Always || !previous.is_some_and(|p| repeats(p, report))
    }
}

/// A passing report with the same finding as the previous passing one; a failing report
/// never repeats (its streak is what the engine counts).
fn repeats(previous: &ProbeReport, report: &ProbeReport) -> bool {
    previous.passed
        && report.passed
        && previous.revision == report.revision
        && previous.pods == report.pods
        && previous.schema_compatible == report.schema_compatible
        && previous.schema_change == report.schema_change
        && previous.protocol_versions == report.protocol_versions
        && previous.tool_count == report.tool_count
        && previous.message == report.message
}

/// The revision a canary is compared with, and how to probe it when its tools are not known yet
/// (after an operator restart, say).
pub struct Baseline {
    pub revision: String,
    pub policy: SchemaCompatibility,
    pub probe: Option<ProbeConfig>,
}

pub struct AnalysisJob {
    pub prometheus: Prometheus,
    pub spec: AnalysisSpec,
    pub queries: Queries,
    pub subject: Subject,
}

/// The drain inputs: session durations of the rollout's revisions, open sessions of the draining.
pub struct MeasureJob {
    pub prometheus: Prometheus,
    pub drain: DrainSpec,
    pub queries: Queries,
    /// The rollout whose series are read.
    pub scope: analysis::Scope,
    pub revisions: Vec<String>,
    /// Draining revisions, each with the pods that drain (empty: all of them).
    pub draining: Vec<(String, Vec<String>)>,
    /// Run at most this often.
    pub every: Duration,
}

pub struct Workers {
    state: Mutex<HashMap<RolloutKey, RolloutState>>,
    wake: UnboundedSender<ObjectRef<McpRollout>>,
    metrics: Arc<Metrics>,
    probe_slots: tokio::sync::Semaphore,
}

impl Workers {
    pub fn new(wake: UnboundedSender<ObjectRef<McpRollout>>, metrics: Arc<Metrics>) -> Self {
        Self { state: Mutex::default(), wake, metrics, probe_slots: tokio::sync::Semaphore::new(PROBE_SLOTS) }
    }

    /// Probes one pod once a slot is free (see `PROBE_SLOTS`).
    async fn probe_pod(&self, config: &ProbeConfig) -> probe::ProbeReport {
        // The semaphore is never closed: `acquire` cannot fail; if it ever did, probing
        // without a slot beats not probing.
        let _slot = self.probe_slots.acquire().await.ok();
        probe::probe(config).await
    }

    fn state(&self) -> MutexGuard<'_, HashMap<RolloutKey, RolloutState>> {
        // A job that panicked while holding the lock left plain data behind: still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with<T>(&self, key: &RolloutKey, f: impl FnOnce(&mut RolloutState) -> T) -> T {
        let mut state = self.state();
        let result = f(state.entry(key.clone()).or_default());
        self.metrics.tracked_rollouts.set(i64::try_from(state.len()).unwrap_or(i64::MAX));
        result
    }

    /// For a job's result: a rollout forgotten (deleted) while the job ran is not brought back.
    fn with_known<T>(&self, key: &RolloutKey, f: impl FnOnce(&mut RolloutState) -> T) -> Option<T> {
        self.state().get_mut(key).map(f)
    }

    fn knows(&self, key: &RolloutKey) -> bool {
        self.state().contains_key(key)
    }

    /// How many rollouts have state here (a test's view of what deletes leave behind).
    pub fn rollouts(&self) -> usize {
        self.state().len()
    }

    /// Drops what is known of revisions the rollout no longer runs or drains: their probe
    /// results, tool snapshots and session counts.
    pub fn retain_revisions(&self, key: &RolloutKey, live: &BTreeSet<String>) {
        self.with_known(key, |s| {
            s.probes.retain(|revision, _| live.contains(revision));
            s.snapshots.retain(|revision, _| live.contains(revision));
            s.active_sessions.retain(|revision, _| live.contains(revision));
            s.gate_answers.retain(|call, _| live.contains(&call.revision));
        });
    }

    fn wake(&self, key: &RolloutKey) {
        let _ = self.wake.unbounded_send(ObjectRef::new(&key.1).within(&key.0));
    }

    /// The latest results for a rollout.
    pub fn results(&self, key: &RolloutKey) -> Results {
        self.with(key, |s| Results {
            probes: s.probes.values().cloned().collect(),
            analysis: s.analysis.clone(),
            session_duration: s.session_duration,
            active_sessions: s.active_sessions.values().cloned().collect(),
            gate_answers: s.gate_answers.values().cloned().collect(),
        })
    }

    /// Records how a reconcile's writes went: `None` when all went through.
    pub fn record_writes(&self, key: &RolloutKey, error: Option<String>) {
        self.with(key, |s| match error {
            None => {
                s.failed_writes = 0;
                s.last_write_error = None;
            }
            Some(e) => {
                s.failed_writes = s.failed_writes.saturating_add(1);
                s.last_write_error = Some(e);
            }
        });
    }

    /// A reconcile ended in an error: how many have, in a row (1 for the first).
    pub fn record_failed_reconcile(&self, key: &RolloutKey) -> u32 {
        self.with(key, |s| {
            s.failed_reconciles = s.failed_reconciles.saturating_add(1);
            s.failed_reconciles
        })
    }

    /// A reconcile succeeded: the next failure backs off from the start again.
    pub fn record_reconciled(&self, key: &RolloutKey) {
        // A rollout deleted during the reconcile is not brought back.
        self.with_known(key, |s| s.failed_reconciles = 0);
    }

    /// Whether the template history was brought up to date for `revision` as stable.
    pub fn history_recorded(&self, key: &RolloutKey, revision: &str) -> bool {
        self.with(key, |s| s.history_recorded.as_deref() == Some(revision))
    }

    pub fn set_history_recorded(&self, key: &RolloutKey, revision: &str) {
        self.with(key, |s| s.history_recorded = Some(revision.to_owned()));
    }

    pub fn record_conflicts(&self, key: &RolloutKey, conflicts: &[String]) {
        self.with(key, |s| s.conflicts = conflicts.to_vec());
    }

    /// Problems the rollout's writes met: names held by others, and writes refused `threshold`
    /// reconciles in a row (a transient refusal is retried quietly).
    pub fn write_problems(&self, key: &RolloutKey, threshold: u32) -> Vec<Problem> {
        self.with(key, |s| {
            let mut problems = Vec::new();
            if !s.conflicts.is_empty() {
                problems.push(Problem::new(
                    "NameConflict",
                    format!(
                        "{} already exist(s) and belong(s) to another controller; the \
                         McpRollout leaves them alone: rename it or remove them",
                        s.conflicts.join(", ")
                    ),
                ));
            }
            if s.failed_writes >= threshold
                && let Some(e) = &s.last_write_error
            {
                problems.push(Problem::new(
                    "WritesRefused",
                    // No count in the message: a message that changes on every refusal would be a
                    // status write, and a watch event, on every retry.
                    format!("the API server refuses the operator's writes ({threshold} or more reconciles in a row): {e}"),
                ));
            }
            problems
        })
    }

    /// Drops everything known about a deleted rollout.
    pub fn forget(&self, key: &RolloutKey) {
        let mut state = self.state();
        state.remove(key);
        self.metrics.tracked_rollouts.set(i64::try_from(state.len()).unwrap_or(i64::MAX));
    }

    /// Starts a probe unless one of the same revision is running.
    pub fn spawn_probe(self: &Arc<Self>, key: RolloutKey, job: ProbeJob) {
        if !self.with(&key, |s| s.probing.insert(job.revision.clone())) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let (revision, wake) = (job.revision.clone(), job.wake);
            let report = this.run_probe(&key, job).await;
            let wakes = this.with_known(&key, |s| {
                s.probing.remove(&revision);
                let wakes = wake.wakes(s.probes.get(&revision), &report);
                s.probes.insert(revision, report);
                wakes
            });
            if wakes.unwrap_or(true) {
                this.wake(&key);
            }
        });
    }

    async fn run_probe(&self, key: &RolloutKey, job: ProbeJob) -> ProbeReport {
        let started = Instant::now();
        let reports = futures::future::join_all(
            job.targets
                .iter()
                .map(|(pod, config)| async move { (pod.clone(), self.probe_pod(config).await) }),
        )
        .await;
        let labels = TrackLabels {
            namespace: key.0.clone(),
            rollout: key.1.clone(),
            revision: job.revision.clone(),
            track: job.track.to_owned(),
        };
        let failed: Vec<String> = reports
            .iter()
            .filter(|(_, r)| !r.passed)
            .map(|(pod, r)| match &r.failure {
                Some(f) => format!("pod {pod}: {f}"),
                None => format!("pod {pod}: failed"),
            })
            .collect();
        let passed = !reports.is_empty() && failed.is_empty();
        // A rollout deleted while its probe ran gets no series back.
        if self.knows(key) {
            self.metrics.observe_probe(&labels, started.elapsed().as_secs_f64(), passed);
        }
        let sample = reports.iter().find(|(_, r)| r.passed).or(reports.first()).map(|(_, r)| r);
        let snapshot = sample.filter(|r| r.passed).map(probe::ProbeReport::snapshot);
        if let Some(snapshot) = &snapshot {
            self.keep_snapshot(key, &job.revision, snapshot);
        }
        let mut messages = Vec::new();
        if !failed.is_empty() {
            messages.push(format!(
                "{} of {} pod(s) failed: {}",
                failed.len(),
                reports.len(),
                failed.join("; ")
            ));
        }
        let mut schema_compatible = None;
        let mut schema_change = None;
        if let (Some(baseline), Some(candidate)) = (&job.baseline, &snapshot) {
            match self.baseline_snapshot(key, baseline).await {
                Ok(base) => {
                    let diff = probe::diff::diff(&base, candidate);
                    let blocking = diff.blocking(baseline.policy);
                    schema_compatible = Some(blocking.is_empty());
                    schema_change = Some(diff.change());
                    if !blocking.is_empty() {
                        let changes: Vec<String> =
                            blocking.iter().map(|c| format!("{} ({})", c.detail, c.path)).collect();
                        messages.push(format!(
                            "incompatible with stable revision {}: {}",
                            baseline.revision,
                            changes.join("; ")
                        ));
                    }
                }
                // Availability first: when the stable revision cannot be probed (it may be
                // the broken thing this canary fixes) the canary is not held on the diff.
                Err(why) => messages.push(format!("not compared with revision {}: {why}", baseline.revision)),
            }
        }
        if reports.is_empty() {
            messages.push("no ready pod to probe".into());
        }
        ProbeReport {
            revision: job.revision,
            at: Timestamp::now(),
            passed,
            pods: i32::try_from(reports.len()).unwrap_or(i32::MAX),
            schema_compatible,
            schema_change,
            protocol_versions: sample.map(|r| r.protocol_versions.clone()).unwrap_or_default(),
            tool_count: sample.filter(|r| r.passed).and_then(|r| i32::try_from(r.tools.len()).ok()),
            message: (!messages.is_empty()).then(|| messages.join(". ")),
        }
    }

    async fn baseline_snapshot(&self, key: &RolloutKey, baseline: &Baseline) -> Result<Snapshot, String> {
        // A kept snapshot that does not decode (not expected: it was encoded from the same
        // type) is replaced by a fresh probe.
        if let Some(known) = self.with(key, |s| s.snapshots.get(&baseline.revision).cloned())
            && let Ok(known) = known.unpack()
        {
            return Ok(known);
        }
        let Some(config) = &baseline.probe else {
            return Err("it has no ready pod to probe".into());
        };
        let report = self.probe_pod(config).await;
        if !report.passed {
            let why = report.failure.map_or_else(|| "failed".to_owned(), |f| f.to_string());
            return Err(format!("its probe failed: {why}"));
        }
        let snapshot = report.snapshot();
        self.keep_snapshot(key, &baseline.revision, &snapshot);
        Ok(snapshot)
    }

    /// Keeps a revision's snapshot, packed; one that cannot be encoded is not kept (the next
    /// comparison probes that revision again).
    fn keep_snapshot(&self, key: &RolloutKey, revision: &str, snapshot: &Snapshot) {
        match snapshot.pack() {
            Ok(packed) => self.with_known(key, |s| s.snapshots.insert(revision.to_owned(), packed)),
            Err(_) => self.with_known(key, |s| s.snapshots.remove(revision)),
        };
    }

    /// Calls a gate's webhook unless a call for the same gate, point and revision is under way.
    pub fn spawn_gate_call(self: &Arc<Self>, key: RolloutKey, job: GateJob) {
        if !self.with(&key, |s| s.gate_calling.insert(job.call.clone())) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let call = job.call.clone();
            let answer = gate_calls::call(job).await;
            this.with_known(&key, |s| {
                s.gate_calling.remove(&call);
                s.gate_answers.insert(call, answer);
            });
            this.wake(&key);
        });
    }

    /// Starts an analysis run unless one is running.
    pub fn spawn_analysis(self: &Arc<Self>, key: RolloutKey, job: AnalysisJob) {
        if self.with(&key, |s| std::mem::replace(&mut s.analysing, true)) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let now = Timestamp::now();
            let checks =
                analysis::evaluate(&job.prometheus, &job.spec, &job.queries, &job.subject, now.as_second())
                    .await;
            for check in &checks {
                let labels = VerdictLabels {
                    namespace: key.0.clone(),
                    rollout: key.1.clone(),
                    check: check.name.clone(),
                    verdict: match check.verdict {
                        Verdict::Pass => "pass",
                        Verdict::Fail => "fail",
                        Verdict::Inconclusive => "inconclusive",
                    }
                    .into(),
                };
                if this.knows(&key) {
                    this.metrics.count_verdict(&labels);
                }
            }
            let report = AnalysisReport { revision: job.subject.canary.clone(), at: now, checks };
            this.with_known(&key, |s| {
                s.analysing = false;
                s.analysis = Some(report);
            });
            this.wake(&key);
        });
    }

    /// Measures the drain inputs, at most once per `job.every`.
    pub fn spawn_measure(self: &Arc<Self>, key: RolloutKey, job: MeasureJob) {
        let start = self.with(&key, |s| {
            let due = s.measured_at.is_none_or(|at| at.elapsed() >= job.every);
            if s.measuring || !due {
                return false;
            }
            s.measuring = true;
            true
        });
        if !start {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let window = analysis::measure_drain_window(
                &job.prometheus,
                &job.drain,
                &job.queries,
                &job.scope,
                &job.revisions,
            )
            .await;
            let mut active = BTreeMap::new();
            for (revision, pods) in &job.draining {
                let queried_at = Timestamp::now();
                if let Ok(Some(sessions)) =
                    analysis::active_sessions(&job.prometheus, &job.queries, &job.scope, revision, pods).await
                {
                    let at = sessions
                        .sampled_at
                        .and_then(|s| Timestamp::from_second(s.floor() as i64).ok())
                        .unwrap_or(queried_at);
                    active.insert(
                        revision.clone(),
                        ActiveSessions { revision: revision.clone(), at, count: sessions.count },
                    );
                }
            }
            this.with_known(&key, |s| {
                s.measuring = false;
                s.measured_at = Some(Instant::now());
                if let Ok(w) = window {
                    s.session_duration = Some(SessionDuration {
                        seconds: if w.clamp == analysis::Clamp::NoData { None } else { w.measured_seconds },
                    });
                }
                // Unmeasured revisions keep no stale count: no data never ends a drain early.
                s.active_sessions = active;
            });
            this.wake(&key);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn report(at: i64, passed: bool, tools: i32) -> ProbeReport {
        ProbeReport {
            revision: "r1".into(),
            at: Timestamp::from_second(at).unwrap(),
            passed,
            pods: 1,
            schema_compatible: None,
            schema_change: None,
            protocol_versions: vec!["2025-06-18".into()],
            tool_count: Some(tools),
            message: (!passed).then(|| "initialize: HTTP 503".into()),
        }
    }

    /// A steady rollout's periodic probe wakes it only when the finding changed; a canary's
    /// always; a failure always (the engine counts the streak).
    #[test]
    fn a_steady_probe_wakes_its_rollout_only_when_the_finding_changed() {
        let first = report(100, true, 3);
        let same_later = report(130, true, 3);
        assert!(ProbeWake::OnChange.wakes(None, &first), "the first result is news");
        assert!(!ProbeWake::OnChange.wakes(Some(&first), &same_later));
        assert!(ProbeWake::Always.wakes(Some(&first), &same_later));
        assert!(ProbeWake::OnChange.wakes(Some(&first), &report(130, true, 4)), "a tool more");
        let failed = report(130, false, 3);
        assert!(ProbeWake::OnChange.wakes(Some(&first), &failed));
        assert!(ProbeWake::OnChange.wakes(Some(&failed), &report(160, false, 3)), "failures never repeat");
        assert!(ProbeWake::OnChange.wakes(Some(&failed), &report(160, true, 3)), "recovered");
    }

    /// Through the worker itself: a steady probe of a server that fails wakes the rollout each
    /// time (a failing result never repeats), so a stable revision going bad is decided on
    /// at once.
    #[tokio::test]
    async fn a_failing_steady_probe_wakes_its_rollout_every_time() {
        use futures::StreamExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts and closes at once: every probe fails.
        let server = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let (wake, mut woken) = futures::channel::mpsc::unbounded();
        let workers = Arc::new(Workers::new(wake, Arc::new(Metrics::default())));
        let key = ("ns".to_owned(), "rollout".to_owned());
        for _ in 0..2 {
            let mut config = ProbeConfig::new(format!("http://{address}/mcp"));
            config.timeout = Duration::from_secs(5);
            let job = ProbeJob {
                revision: "r1".into(),
                track: "stable",
                targets: vec![("pod-0".into(), config)],
                baseline: None,
                wake: ProbeWake::OnChange,
            };
            workers.spawn_probe(key.clone(), job);
            let woke = tokio::time::timeout(Duration::from_secs(30), woken.next()).await;
            assert!(matches!(woke, Ok(Some(_))), "no wake after a failing probe");
        }
        server.abort();
    }

    /// A wave's worth of pods probed at once: no more than `PROBE_SLOTS` connections are open
    /// together, and every pod is still probed. The server is a loopback listener that holds
    /// each connection briefly and answers nothing (the probes fail; only their overlap is
    /// measured).
    #[tokio::test]
    async fn probes_wait_for_a_slot_before_they_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (open, most, accepted) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let server = {
            let (open, most, accepted) = (open.clone(), most.clone(), accepted.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else { return };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let open = open.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        open.fetch_sub(1, Ordering::SeqCst);
                        drop(socket);
                    });
                }
            })
        };
        let (wake, _woken) = futures::channel::mpsc::unbounded();
        let workers = Workers::new(wake, Arc::new(Metrics::default()));
        let pods = PROBE_SLOTS + 16;
        let targets = (0..pods)
            .map(|i| {
                let mut config = ProbeConfig::new(format!("http://{address}/mcp"));
                config.timeout = Duration::from_secs(5);
                config.step_timeout = Duration::from_secs(2);
                (format!("pod-{i}"), config)
            })
            .collect();
        let key = ("ns".to_owned(), "rollout".to_owned());
        let job = ProbeJob {
            revision: "r1".into(),
            track: "canary",
            targets,
            baseline: None,
            wake: ProbeWake::Always,
        };
        let report = workers.run_probe(&key, job).await;
        server.abort();
        assert!(!report.passed);
        assert_eq!(report.pods, i32::try_from(pods).unwrap());
        assert!(accepted.load(Ordering::SeqCst) >= pods, "every pod was probed");
        let most = most.load(Ordering::SeqCst);
        assert!(most <= PROBE_SLOTS, "{most} connections open at once");
        assert!(most > 1, "probes still run side by side");
    }
}
