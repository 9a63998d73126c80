//! What the engine is told: the spec, the status it wrote last time, and what was observed.
//! Nothing here is fetched by the engine; the reconciler gathers it.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::plan::GateCall;
use crate::api::{DrainStatus, McpRolloutSpec, McpRolloutStatus, SchemaChange, Verdict};

/// One call's input.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub spec: &'a McpRolloutSpec,
    /// `metadata.generation` of the McpRollout.
    pub generation: Option<i64>,
    pub status: &'a McpRolloutStatus,
    pub observed: &'a Observed,
    pub now: Timestamp,
}

/// The world as the reconciler saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Pods of each revision that has a Deployment.
    pub revisions: Vec<RevisionObserved>,
    /// Latest probe result of each revision.
    pub probes: Vec<ProbeReport>,
    /// Latest analysis of the current new revision against stable.
    pub analysis: Option<AnalysisReport>,
    /// Latest measurement of the rollout's session-duration quantile (for drain windows).
    pub session_duration: Option<SessionDuration>,
    /// Open sessions and in-flight streams per draining revision.
    pub active_sessions: Vec<ActiveSessions>,
    /// The value of the request annotation, if any.
    pub request: Option<String>,
    /// Problems only the reconciler can see (a Secret that is not there, a query Prometheus
    /// refuses, a route that cannot be weighted, a name another controller owns, a write the
    /// API server keeps refusing). The first holds the rollout Stalled with its reason.
    pub problems: Vec<Problem>,
    /// The canary's share of the route's weights when a Gateway API HTTPRoute weights the
    /// traffic: what the gateway does now. `None` with the plain-Service router.
    pub route_weight: Option<i32>,
    /// What the MCP session router's replicas report, when it routes the traffic.
    pub router: Option<RouterObserved>,
    /// The Deployment `spec.workloadRef` names, when it is set.
    pub workload: Option<WorkloadObserved>,
    /// The latest answer of each gate webhook called for this rollout.
    pub gate_answers: Vec<GateAnswer>,
}

/// What a gate's webhook answered, for one gate at one point of one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct GateAnswer {
    pub call: GateCall,
    /// When the call ended.
    pub at: Timestamp,
    pub outcome: GateOutcome,
    /// The answer in words: status code and the start of the body, or why the call failed.
    pub message: String,
}

/// How a webhook answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateOutcome {
    /// 2xx: the gate opens.
    Open,
    /// Anything else, or no answer in time: it stays closed.
    Closed,
    /// 2xx with `{"action": "rollback"}`: roll the revision back.
    Rollback,
}

/// The Deployment a migration takes over from, as the reconciler found it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadObserved {
    /// It exists (and is not one of this rollout's own).
    pub exists: bool,
    /// Its `spec.replicas`.
    pub replicas: i32,
    /// Its ready pods.
    pub ready: i32,
    /// Its pods the rollout Service's EndpointSlices list as ready: traffic it still gets.
    pub in_endpoints: i32,
}

/// What the MCP session router's replicas have in force and carry, as they reported it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouterObserved {
    /// Every ready router replica answered (and at least one is ready): the figures below
    /// cover all the traffic.
    pub complete: bool,
    /// Complete, and every replica has run for at least its idle timeout, so its session
    /// counts include every session still open (it has seen each one's latest request).
    pub sessions_known: bool,
    /// The smallest and largest weight of new work per revision over the replicas: a weight is
    /// in force when both agree, and a revision takes no new work when its largest is 0.
    pub min_weight: BTreeMap<String, i32>,
    pub max_weight: BTreeMap<String, i32>,
    /// Revisions every replica has evacuated.
    pub evacuated: BTreeSet<String>,
    /// Pods some replica still sends new work to.
    pub serving_pods: BTreeSet<String>,
    /// Drains every replica's configuration knows of: their figures were taken after the drain
    /// began.
    pub drains: BTreeSet<DrainId>,
    /// Load per revision and per pod, summed over the replicas.
    pub revisions: BTreeMap<String, RouterLoad>,
    pub pods: BTreeMap<String, RouterLoad>,
}

/// What tells one drain from another: its revision, when it began (unix seconds) and its pods.
/// The pods matter: two drains of one revision may begin within the same second (replicas cut
/// twice in a row), and a router that knows the first does not yet know the second.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DrainId {
    pub revision: String,
    pub started_at: i64,
    pub pods: Vec<String>,
}

impl DrainId {
    pub fn of(drain: &DrainStatus) -> Self {
        Self {
            revision: drain.revision.clone(),
            started_at: drain.started_at.0.as_second(),
            pods: drain.pods.clone(),
        }
    }
}

/// Sessions, streams and requests in flight, as the router counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterLoad {
    pub sessions: i64,
    pub streams: i64,
    pub in_flight: i64,
}

impl RouterLoad {
    pub fn is_idle(&self) -> bool {
        self.sessions == 0 && self.streams == 0 && self.in_flight == 0
    }

    /// Nothing in flight (sessions aside): what an evacuated revision waits for.
    pub fn nothing_in_flight(&self) -> bool {
        self.streams == 0 && self.in_flight == 0
    }

    pub fn add(&mut self, other: &Self) {
        self.sessions += other.sessions;
        self.streams += other.streams;
        self.in_flight += other.in_flight;
    }
}

impl RouterObserved {
    /// Whether no replica sends `revision` new work any more.
    pub fn out_of_rotation(&self, revision: &str) -> bool {
        self.complete && self.max_weight.get(revision).copied().unwrap_or(0) == 0
    }

    /// Whether every replica has the configuration written after `drain` began: only then do
    /// its figures speak for it.
    pub fn knows_drain(&self, drain: &DrainStatus) -> bool {
        self.complete && self.drains.contains(&DrainId::of(drain))
    }

    /// Whether no replica sends any of `pods` new work any more.
    pub fn pods_out_of_rotation(&self, pods: &[String]) -> bool {
        self.complete && !pods.iter().any(|p| self.serving_pods.contains(p))
    }

    /// The load of a revision, or of some of its pods.
    pub fn load(&self, revision: &str, pods: &[String]) -> RouterLoad {
        if pods.is_empty() {
            return self.revisions.get(revision).copied().unwrap_or_default();
        }
        let mut sum = RouterLoad::default();
        for pod in pods {
            if let Some(l) = self.pods.get(pod) {
                sum.add(l);
            }
        }
        sum
    }
}

/// Why the rollout cannot go on until something outside it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason, for the condition and the event.
    pub reason: String,
    pub message: String,
}

impl Problem {
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        Self { reason: reason.to_owned(), message: message.into() }
    }
}

impl Observed {
    pub fn revision(&self, revision: &str) -> Option<&RevisionObserved> {
        self.revisions.iter().find(|r| r.revision == revision)
    }

    pub fn probe(&self, revision: &str) -> Option<&ProbeReport> {
        self.probes.iter().find(|p| p.revision == revision)
    }
}

/// Pods of one revision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevisionObserved {
    pub revision: String,
    /// Its pods that are not terminating, ready or not.
    pub pods: i32,
    /// Their names, in the order they should leave when the revision shrinks: not ready first,
    /// then out of rotation, then the newest (the fewest long sessions).
    pub pod_names: Vec<String>,
    /// Pods whose containers are ready (whatever the rotation gate says).
    pub ready: i32,
    /// Ready pods that are in rotation (the rotation gate is True).
    pub ready_in_rotation: i32,
    /// Its pods the rollout Service's EndpointSlices list as ready: what kube-proxy sends new
    /// connections to. The plain-Service router's effective weight is read from these.
    pub in_endpoints: i32,
    /// Container restarts summed over the revision's pods.
    pub restarts: i32,
    /// A container is in CrashLoopBackOff, or was OOM-killed.
    pub crash_looping: bool,
}

/// Result of an MCP probe of one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeReport {
    pub revision: String,
    /// When the probe finished.
    pub at: Timestamp,
    /// Every pod answered the protocol correctly (handshake or discover, tools, tool call).
    pub passed: bool,
    /// Pods probed.
    pub pods: i32,
    /// Compatibility with the stable revision's tools and protocol versions, already judged
    /// under the rollout's policy. `None` when there was nothing to compare with.
    pub schema_compatible: Option<bool>,
    /// How the tools differ from the stable revision's, whatever the policy allows.
    pub schema_change: Option<SchemaChange>,
    pub protocol_versions: Vec<String>,
    pub tool_count: Option<i32>,
    /// Failure detail or diff summary.
    pub message: Option<String>,
}

/// One evaluation of the analysis checks.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisReport {
    /// The new revision the checks measured.
    pub revision: String,
    pub at: Timestamp,
    pub checks: Vec<CheckResult>,
}

/// Verdict of one check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub verdict: Verdict,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: Option<String>,
}

/// The configured quantile of session durations over the drain lookback.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionDuration {
    /// `None` when Prometheus had no sessions to measure.
    pub seconds: Option<f64>,
}

/// Open sessions of a draining revision.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveSessions {
    pub revision: String,
    /// When the count was sampled: the scrape time of its oldest sample (the query time when
    /// that cannot be known), never later than what the count reflects.
    pub at: Timestamp,
    pub count: i64,
}
