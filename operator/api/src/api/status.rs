//! `McpRollout` status: what the operator observed and decided.
//!
//! Status is all the rollout engine remembers between reconciles: an operator restarted at any
//! point reads it back and continues without repeating or skipping a step. It also follows the
//! kstatus conventions (`observedGeneration`, `Ready` / `Reconciling` / `Stalled` conditions) so
//! Flux and Argo CD read health without plugins.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Observed state of an McpRollout.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct McpRolloutStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Pods of the stable revision (not terminating): the count the `scale` subresource
    /// reports to a HorizontalPodAutoscaler, which sets `spec.replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// Label selector of the rollout's pods (every revision), for the `scale` subresource: what
    /// a HorizontalPodAutoscaler reads resource metrics of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// One-word summary: Progressing, Paused, Healthy or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Human-readable explanation of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Where the rollout is in its state machine, as the operator last decided it. Stored, not
    /// inferred: the operator reads it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,

    /// Revision (hash of spec.template) that serves traffic when no rollout is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,

    /// Revision being rolled out: the canary, or the blue-green preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,

    /// When the current new revision's rollout began. Probe and analysis results older than
    /// this belong to an earlier attempt and are not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_started_at: Option<Time>,

    /// Index of the current canary step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,

    /// When the current step (or blue-green stage) began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,

    /// Percentage of traffic the operator wants on the canary revision.
    #[serde(default)]
    pub desired_weight: i32,

    /// Percentage of traffic the canary revision actually gets, from its share of the ready
    /// pods in rotation (replica-ratio routing) or the route's weights (Gateway API). After a
    /// rollback, the share the revision rolled back still gets while it drains: 0 once its
    /// pods are out of the Service's endpoints (or out of the route), not when it is decided.
    #[serde(default)]
    pub effective_weight: i32,

    /// When the canary weight last increased. A new increase needs a probe newer than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_increased_at: Option<Time>,

    /// Blue-green: when traffic flipped to the new revision (start of the post-promotion window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Time>,

    /// Blue-green: when the preview first passed its gates (start of `autoPromoteAfter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_ready_at: Option<Time>,

    /// Paused by `kubectl mcprollout pause` (as opposed to `spec.paused`, which Git owns).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused_by_request: bool,

    /// `kubectl mcprollout promote` was requested and has not acted yet (a blue-green flip or
    /// window end waits for the gates; a canary pause step ends at once unless paused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promotion_requested: bool,

    /// `kubectl mcprollout promote --full` was requested: skip the remaining steps (and the
    /// post-promotion window) once the new revision passes its probe at full size.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_promotion_requested: bool,

    /// Latest probe result per live revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["revision".into()]))]
    pub probes: Vec<ProbeStatus>,

    /// Latest verdict of each analysis check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub analysis: Vec<CheckStatus>,

    /// Revisions that have left traffic and are kept alive for their open sessions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["revision".into()]))]
    pub drains: Vec<DrainStatus>,

    /// What the operator does, but not quite as asked (e.g. weights the replica count cannot
    /// express with the plain-Service router).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,

    /// Since when the stable revision has had fewer ready pods than `replicas` while nothing
    /// rolls out (Stalled once that outlasts `progressDeadline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_since: Option<Time>,

    /// Set when the latest rollout was rolled back or aborted. Cleared by a new revision or a
    /// retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackStatus>,

    /// Id of the last manual request (promote, abort, retry, …) the operator acted on, so each
    /// request is acted on once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_request: Option<String>,

    /// The change gates met by the current rollout, at each point they stood at: waiting or
    /// open, since when, and what they last answered. Cleared when a new rollout begins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateStatus>,

    /// The workload `spec.workloadRef` names, as the migration from it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadStatus>,

    /// Conditions: Ready, Reconciling, Stalled (kstatus), and more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// One gate at one point of the current rollout.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GateStatus {
    /// The gate's name in `spec.gates`.
    pub name: String,

    /// Where it stands: `Start`, `WeightIncrease`, `Flip` or `Promotion`.
    pub point: crate::api::GatePoint,

    /// The weight the increase it holds leads to (WeightIncrease and Promotion of a canary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,

    pub state: GateState,

    /// Since when it has been in this state.
    pub since: Time,

    /// An approval was given for this point.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approved: bool,

    /// When its webhook last answered (or failed to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<Time>,

    /// What keeps it closed, or what opened it: the webhook's answer, the approval, the freeze.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// States of a gate at a point.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateState {
    /// Closed: the rollout waits here.
    Waiting,
    /// Opened; the rollout went past it.
    Open,
}

/// Where a migration from `spec.workloadRef` stands.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// The Deployment.
    pub name: String,

    pub phase: WorkloadPhase,

    /// When its pods were last seen in the rollout Service's endpoints after the cut-over had
    /// begun: the drain window counts from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_traffic_at: Option<Time>,

    /// The drain window (seconds) it is kept for after leaving traffic: the measured session
    /// duration clamped to `drain.min`..`drain.max`, as for a revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
}

/// Phases of a migration from a workload.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadPhase {
    /// It serves; the McpRollout's first revision is brought up and probed beside it.
    Serving,
    /// The McpRollout serves; the workload waits out its drain window.
    Draining,
    /// Scaled to 0 (`scaleDown: OnSuccess`).
    ScaledDown,
    /// Drained and left running (`scaleDown: Never`).
    Kept,
}

/// The stages of a rollout (the state diagram in the README).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// No stable revision yet: the first one is brought up and probed.
    FirstDeploy,
    /// The stable revision serves all traffic.
    Steady,
    /// A new revision takes traffic step by step.
    Canary,
    /// Blue-green: the new revision runs beside stable, without traffic.
    Preview,
    /// Blue-green: all traffic flipped to the new revision; the old one waits to flip back.
    PostPromotion,
    /// The latest revision was rolled back; stable serves all traffic.
    RolledBack,
}

/// Summary phase, for people and for `kubectl get`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// A revision is being brought up, probed, or shifted into traffic.
    Progressing,
    /// Waiting for a human (pause step, `paused`, or an inconclusive gate).
    Paused,
    /// The stable revision serves all traffic (observed: its pods in the rollout Service's
    /// endpoints, or weighted by every router replica) and nothing is in progress.
    Healthy,
    /// The latest rollout was rolled back or aborted, or the rollout cannot proceed.
    Degraded,
}

/// Outcome of one check or probe.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Not enough data, or the data source was unreachable. Never promotes, never rolls back.
    Inconclusive,
}

/// Latest MCP probe of one revision.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProbeStatus {
    /// Revision probed.
    pub revision: String,

    /// Whether the probe (and the schema gate, for the canary) passed.
    pub passed: bool,

    /// When the probe that found this finished. A passing probe that finds the same again is
    /// not written (at rest, or held at a step) unless it is the first newer than a step's
    /// start or a weight increase, so this may be up to 10 minutes old while probes still run
    /// every `probe.interval`; any change of finding is written at once.
    pub at: Time,

    /// Consecutive failed probes.
    #[serde(default)]
    pub consecutive_failures: i32,

    /// Protocol versions the revision serves (discover's list plus the handshake versions
    /// initialize accepted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocol_versions: Vec<String>,

    /// Number of tools listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_count: Option<i32>,

    /// Pods of the revision the probe reached (all must pass).
    #[serde(default)]
    pub pods: i32,

    /// Whether the tool schemas and protocol versions are compatible with the stable
    /// revision's under `probe.schemaCompatibility` (canary only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_compatible: Option<bool>,

    /// How the tool schemas and protocol versions differ from the stable revision's, whatever
    /// the policy allows (canary only): what schema-aware gates read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_change: Option<SchemaChange>,

    /// Failure class and detail, or the schema-diff summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How a revision's tools differ from the stable revision's.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum SchemaChange {
    /// Same tools, schemas, descriptions and protocol versions.
    Unchanged,
    /// Different, nothing breaking (added tools or optional parameters, new descriptions, …).
    NonBreaking,
    /// A removed tool or parameter, a new required parameter, a narrowed type or enum, a
    /// protocol version dropped.
    Breaking,
}

/// Latest verdict of one analysis check.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatus {
    /// Check name: errorRate, latency, schemaValidationErrors, crash, or a custom metric.
    pub name: String,

    /// Verdict of the latest evaluation.
    pub verdict: Verdict,

    /// Measured value (a ratio, a percentage, a count, or the custom query's value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,

    /// Threshold the value was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,

    /// Consecutive failed evaluations.
    #[serde(default)]
    pub consecutive_failures: i32,

    /// When the latest evaluation written here ran. An evaluation with the same verdicts (a
    /// passing check whatever its value, a check not passing with the same message) is not
    /// written unless it is the first newer than a step's start or the end of the window after
    /// a weight increase, so `at` and `value` may be up to 10 minutes old while evaluations
    /// still run every `analysis.interval`; a changed verdict is written at once.
    pub at: Time,

    /// What was measured, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Drain of one revision that has left traffic.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrainStatus {
    /// Revision draining.
    pub revision: String,

    /// The pods draining, when only some of the revision's pods leave (it serves on with the
    /// others, e.g. `replicas` lowered). Empty: the whole revision left traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,

    /// When it left traffic.
    pub started_at: Time,

    /// The window in force, after clamping.
    pub window_seconds: i64,

    /// Pods kept alive for the drain.
    pub replicas: i32,

    /// The session-duration quantile measured, before clamping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_seconds: Option<f64>,

    /// Which clamp applied to the measurement.
    pub clamp: DrainClamp,

    /// Open sessions and in-flight streams on the revision's pods, from the newest sample
    /// scraped after the drain began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_sessions: Option<i64>,

    /// When the sample behind `activeSessions` was scraped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_sampled_at: Option<Time>,

    /// The first session sample scraped after the drain began. A count ends the drain only
    /// from a later sample: at least one scrape interval after the pods left traffic, when
    /// connections still arriving as they left are counted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_sample_at: Option<Time>,

    /// When a drain of some of the revision's pods ended: the Deployment is shrunk, and the
    /// entry stays (blocking another drain of the same pods) until they are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained_at: Option<Time>,

    /// The revision was rolled back and its sessions are evacuated (`drain.onRollback`), not
    /// left to run out: the drain ends once nothing is in flight on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evacuate: bool,
}

/// How the drain window relates to what was measured.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainClamp {
    /// The measured quantile was within [min, max].
    None,
    /// Raised to drain.min.
    Min,
    /// Lowered to drain.max.
    Max,
    /// Nothing measured: drain.max.
    NoData,
}

/// Why the latest rollout was undone.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackStatus {
    /// Revision that was rolled back. It is not rolled out again until the template changes or
    /// a retry is requested.
    pub revision: String,

    /// What triggered it.
    pub reason: RollbackReason,

    /// The check, probe step, or pod behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,

    /// Details, with the numbers.
    pub message: String,

    /// When it happened.
    pub at: Time,
}

/// Rollback triggers.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackReason {
    /// An analysis check failed.
    AnalysisFailed,
    /// The MCP probe failed `probe.failureLimit` times in a row.
    ProbeFailed,
    /// The new revision's tools or protocol versions break agents of the stable one.
    IncompatibleSchema,
    /// A canary container crashed or crash-looped.
    Crashed,
    /// No progress within `progressDeadline`.
    ProgressDeadlineExceeded,
    /// A human aborted it.
    Aborted,
    /// A gate's webhook answered `rollback`.
    GateRejected,
}

/// Condition types this operator sets.
pub mod condition {
    /// kstatus: the rollout is done and healthy.
    pub const READY: &str = "Ready";
    /// kstatus: the operator is working towards the spec.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: the operator cannot make progress without a change.
    pub const STALLED: &str = "Stalled";
}
