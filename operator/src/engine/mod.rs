//! The rollout engine: a pure decision from (spec, last status, observations, now) to (next
//! status, plan). No I/O, no clock, no randomness: the reconciler observes and applies.
//!
//! ```text
//! stage          derived from status alone               leaves by
//! ─────────────  ──────────────────────────────────────  ───────────────────────────────────────
//! FirstDeploy    no stableRevision                       ready + probe pass → Steady
//! Steady         canary none, template == stable         template change → Canary | Preview
//! Canary         canary set, with a step index           weight 100 → Steady (old stable drains)
//!                                                        trigger/abort → RolledBack (canary drains)
//! Preview        canary set, no step index, not flipped  gates + (auto after delay | promote) → PostPromotion
//!                                                        trigger/abort → RolledBack
//! PostPromotion  canary set, no step index, promotedAt   window ends → Steady (old stable drained, removed)
//!                                                        trigger/abort → RolledBack (flip back)
//! RolledBack     rollback.revision == template revision  template change → Canary | Preview; retry
//! ```
//!
//! Triggers (checked while a new revision is live): crash or CrashLoopBackOff (immediately),
//! `probe.failureLimit` consecutive probe failures, an incompatible schema, an analysis check
//! failing `failureLimit` times in a row, the progress deadline while waiting for pods or a
//! probe. Inconclusive analysis holds the rollout (Paused) and never triggers anything.
//! A revision that leaves traffic drains: it stays up, out of rotation, until its window (the
//! measured session-duration quantile, clamped) elapses or its pods report no open sessions.

// One module per concern. They form layers: `core` (the state and the questions every stage
// asks) and `drain`; `transitions` (rollback, abandon, promotion); `gates`, `triggers`,
// `observations`, `requests`, `template`; the stages `canary` and `blue_green` (never calling
// each other); `progress` (dispatch by stage); `output`. Each calls only layers below it.
mod adopt;
mod blue_green;
mod canary;
mod change_gates;
mod conditions;
pub mod control;
mod core;
mod drain;
pub mod freeze;
mod gates;
#[cfg(test)]
mod gates_tests;
pub mod input;
mod migrate;
#[cfg(test)]
mod migrate_tests;
mod observations;
mod output;
pub mod plan;
mod prelude;
mod problems;
mod progress;
mod requests;
#[cfg(test)]
mod router_tests;
mod template;
#[cfg(test)]
mod tests;
mod traffic;
mod transitions;
mod triggers;

pub use control::{Action, Request, parse_request};
pub use core::replicas_for;
pub use input::*;
pub use plan::*;
pub use traffic::{pod_ratio_weight, stable_pods_for};

use jiff::Timestamp;

use crate::api::{McpRolloutStatus, Phase};
use core::{Engine, Hold, time};

/// Every stage change one decision can make, with what causes it. The README's state
/// diagram is rendered from this table, and the property tests fail on any change of stage
/// that is not listed here.
pub const TRANSITIONS: &[(Stage, Stage, &str)] = &[
    (Stage::FirstDeploy, Stage::Steady, "ready and probed"),
    (Stage::Steady, Stage::Canary, "new template (canary)"),
    (Stage::Steady, Stage::Preview, "new template (blue-green)"),
    (Stage::Steady, Stage::RolledBack, "new template that crashes at once"),
    (Stage::Canary, Stage::Steady, "weight 100 (promoted), or template back to stable"),
    (Stage::Canary, Stage::RolledBack, "trigger or abort"),
    (Stage::Canary, Stage::Preview, "strategy changed"),
    (Stage::Preview, Stage::PostPromotion, "gates, then delay or promote (flip)"),
    (Stage::Preview, Stage::RolledBack, "trigger or abort"),
    (Stage::Preview, Stage::Steady, "template back to stable"),
    (Stage::Preview, Stage::Canary, "strategy changed"),
    (Stage::PostPromotion, Stage::Steady, "window over, or template back to stable"),
    (Stage::PostPromotion, Stage::RolledBack, "trigger or abort (flip back)"),
    (Stage::PostPromotion, Stage::Preview, "newer template"),
    (Stage::PostPromotion, Stage::Canary, "newer template or strategy changed"),
    (Stage::RolledBack, Stage::Canary, "new template or retry"),
    (Stage::RolledBack, Stage::Preview, "new template or retry"),
    (Stage::RolledBack, Stage::Steady, "template back to stable"),
];

/// The transitions as a mermaid state diagram (for the README).
pub fn state_diagram() -> String {
    let mut out = String::from("stateDiagram-v2\n    [*] --> FirstDeploy\n");
    for (from, to, label) in TRANSITIONS {
        out.push_str(&format!("    {from:?} --> {to:?}: {label}\n"));
    }
    out
}

/// The stages of the table above, stored in `status.stage`.
pub use crate::api::Stage;

/// The stage a status written without `stage` (by an operator before it was stored) is in,
/// for a template whose revision is `desired`; every decision stores the stage it ends in.
pub fn stage_of(status: &McpRolloutStatus, desired: &str) -> Stage {
    match (&status.stable_revision, &status.canary_revision) {
        (None, _) => Stage::FirstDeploy,
        // The rollout keeps the kind it started with (a canary has a step index) until
        // `follow_template` restarts it under a changed strategy.
        (Some(_), Some(_)) => match (status.current_step_index, &status.promoted_at) {
            (Some(_), _) => Stage::Canary,
            (None, None) => Stage::Preview,
            (None, Some(_)) => Stage::PostPromotion,
        },
        (Some(_), None) if status.rollback.as_ref().is_some_and(|r| r.revision == desired) => {
            Stage::RolledBack
        }
        (Some(_), None) => Stage::Steady,
    }
}

/// Decides the next status and plan.
pub fn decide(input: &Input<'_>) -> Decision {
    let mut e = Engine::new(input);
    e.record_observations();
    e.adopt_serving_revisions();
    e.handle_request();
    e.follow_template();
    e.check_problems();
    e.check_workload();
    e.check_weights();
    e.check_triggers();
    // A transition (flip, promotion, rollback) lands in a new stage; let that stage speak too,
    // so the status describes where this decision ends, exactly as the next call would.
    for _ in 0..4 {
        let stage = e.stage();
        e.progress();
        if e.stage() == stage || matches!(e.hold, Some(Hold::Stalled { .. })) {
            break;
        }
        e.hold = None;
    }
    e.finish_drains();
    e.drain_workload();
    e.finish()
}

/// Marks a decided status Stalled for a problem only the reconciler can see (a Secret that is
/// not there, a query Prometheus refuses): phase Degraded with the reason, everything else the
/// engine decided kept. `previous` are the conditions stored before this decision, so a
/// repeated stall keeps its transition times and writes an identical status.
pub fn stall(
    status: &mut McpRolloutStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    now: Timestamp,
) {
    status.phase = Some(Phase::Degraded);
    status.message = Some(message.to_owned());
    status.conditions =
        conditions::for_phase(Phase::Degraded, reason, message, generation, previous, &time(now.as_second()));
}
