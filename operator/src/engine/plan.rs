//! What the engine decides: the status to write and the plan the reconciler applies.

use std::time::Duration;

use crate::api::McpRolloutStatus;

/// One call's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: McpRolloutStatus,
    pub plan: Plan,
}

/// Everything the reconciler must make true.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Plan {
    /// Every revision that must exist. A revision not listed has no reason to run any more and
    /// is removed.
    pub revisions: Vec<RevisionPlan>,
    /// Probes to start now.
    pub probes: Vec<ProbeRequest>,
    /// Analysis to run now.
    pub analysis: Option<AnalysisRequest>,
    /// Kubernetes events to emit (only on transitions, so a repeated call emits none).
    pub events: Vec<Event>,
    /// When to call the engine again at the latest.
    pub requeue_after: Option<Duration>,
    /// What to do with the workload `spec.workloadRef` names.
    pub workload: WorkloadAction,
    /// Gate webhooks to call now.
    pub gate_calls: Vec<GateCall>,
}

/// A call of a gate's webhook: which gate, at which point of which revision.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GateCall {
    pub gate: String,
    pub point: crate::api::GatePoint,
    /// The weight the increase leads to (canary WeightIncrease and Promotion).
    pub weight: Option<i32>,
    pub revision: String,
}

/// What the reconciler does with the Deployment a migration takes over from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WorkloadAction {
    /// Nothing: it serves, drains, or is kept (or there is none).
    #[default]
    Leave,
    /// Scale it to 0 (it drained).
    ScaleToZero,
}

impl WorkloadAction {
    /// Whether the rollout's Service may be taken over from it: once the rollout serves.
    pub fn is_leave(self) -> bool {
        self == Self::Leave
    }
}

impl Plan {
    pub fn revision(&self, revision: &str) -> Option<&RevisionPlan> {
        self.revisions.iter().find(|r| r.revision == revision)
    }
}

/// What a revision is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Stable,
    /// The revision being rolled out (canary, or blue-green preview).
    Canary,
    /// Left traffic; kept alive for open sessions.
    Draining,
}

/// Desired state of one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionPlan {
    pub revision: String,
    pub role: Role,
    /// Pods to run.
    pub replicas: i32,
    /// How many of its ready pods may be in rotation (the rest are kept out by the gate).
    pub in_rotation: i32,
    /// Share of traffic (0-100). Over the revisions in rotation the weights sum to 100.
    pub weight: i32,
    /// Pods that are leaving through a drain while the revision serves on: out of rotation,
    /// first in line when the Deployment shrinks (pod-deletion-cost), safe from evictions.
    pub leaving: Vec<String>,
}

/// A probe to run against a revision's pods.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeRequest {
    pub revision: String,
    /// Compare the tools and protocol versions with this revision's.
    pub baseline: Option<String>,
}

/// Analysis of the new revision against the stable one.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisRequest {
    pub canary: String,
    pub stable: String,
    /// Error-rate ratio threshold in force at this step.
    pub max_error_rate_ratio: f64,
    /// Minimum canary calls before a verdict, at this step.
    pub min_request_count: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// A Kubernetes event on the McpRollout.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub type_: EventType,
    /// CamelCase reason, e.g. `StepAdvanced`, `RolledBack`.
    pub reason: String,
    pub message: String,
}

impl Event {
    pub fn normal(reason: &str, message: impl Into<String>) -> Self {
        Self { type_: EventType::Normal, reason: reason.into(), message: message.into() }
    }

    pub fn warning(reason: &str, message: impl Into<String>) -> Self {
        Self { type_: EventType::Warning, reason: reason.into(), message: message.into() }
    }
}
