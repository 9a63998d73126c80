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

mod conditions;
pub mod control;
mod drain;
pub mod input;
pub mod plan;
#[cfg(test)]
mod tests;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use control::{Action, Request, parse_request};
pub use input::*;
pub use plan::*;

use crate::api::{
    BlueGreenStrategy, CanaryStep, CheckStatus, DrainStatus, McpRolloutSpec, McpRolloutStatus, Phase,
    ProbeStatus, RollbackReason, RollbackStatus, StrategyRef, Verdict, revision_of,
};

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

/// The stages of the table above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    FirstDeploy,
    Steady,
    Canary,
    Preview,
    PostPromotion,
    RolledBack,
}

/// The stage a status is in, for a template whose revision is `desired`.
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
    e.handle_request();
    e.follow_template();
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

/// The analysis runs completed after some moment.
enum AnalysisSince<'s> {
    NoRun,
    /// The first check that did not pass.
    NotPassing(&'s CheckStatus),
    AllPassed,
}

/// Why the rollout is not moving, for phase and message.
#[derive(Clone, Debug, PartialEq)]
enum Hold {
    /// Waiting on something that should come by itself (pods, a probe, an analysis run).
    Waiting(String),
    /// Waiting for a human or for data: phase Paused.
    Paused(String),
    /// Cannot proceed without a change: phase Degraded.
    Stalled { reason: &'static str, message: String },
}

struct Engine<'a> {
    spec: &'a McpRolloutSpec,
    observed: &'a Observed,
    generation: Option<i64>,
    /// Now, truncated to whole seconds: status times are stored at that precision, and a
    /// decision must not change when status is read back after an operator restart.
    now: i64,
    desired: String,
    st: McpRolloutStatus,
    events: Vec<Event>,
    hold: Option<Hold>,
    /// An abort request arrived in this call.
    abort_now: bool,
}

fn secs(t: &Time) -> i64 {
    t.0.as_second()
}

fn time(s: i64) -> Time {
    Time(Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Pods needed for `weight` percent of `total`: ceil, and at least one for any traffic.
pub fn replicas_for(total: i32, weight: i32) -> i32 {
    if weight <= 0 {
        return 0;
    }
    let exact = (i64::from(total) * i64::from(weight.min(100)) + 99) / 100;
    i32::try_from(exact).unwrap_or(total).clamp(1, total.max(1))
}

impl<'a> Engine<'a> {
    fn new(input: &Input<'a>) -> Self {
        Self {
            spec: input.spec,
            observed: input.observed,
            generation: input.generation,
            now: input.now.as_second(),
            desired: revision_of(&input.spec.template),
            st: input.status.clone(),
            events: Vec::new(),
            hold: None,
            abort_now: false,
        }
    }

    fn stage(&self) -> Stage {
        stage_of(&self.st, &self.desired)
    }

    fn total(&self) -> i32 {
        self.spec.replicas.max(1)
    }

    /// The canary step the rollout is at (0 when it has none).
    fn step_index(&self) -> usize {
        self.st.current_step_index.unwrap_or(0).max(0) as usize
    }

    fn paused(&self) -> bool {
        self.spec.paused || self.st.paused_by_request
    }

    fn hold(&mut self, hold: Hold) {
        if self.hold.is_none() {
            self.hold = Some(hold);
        }
    }

    // ── observations ────────────────────────────────────────────────────────────────────

    /// Folds new probe and analysis results into status (only results newer than what status
    /// already holds count, so a repeated call changes nothing).
    fn record_observations(&mut self) {
        let live: Vec<String> = self.live_revisions();
        self.st.probes.retain(|p| live.contains(&p.revision));
        for report in &self.observed.probes {
            if !live.contains(&report.revision) {
                continue;
            }
            let at = report.at.as_second();
            if self.predates_current_rollout(&report.revision, at) {
                continue;
            }
            let previous = self.st.probes.iter().position(|p| p.revision == report.revision);
            if previous.is_some_and(|i| secs(&self.st.probes[i].at) >= at) {
                continue;
            }
            let failures = match (report.passed, previous) {
                (true, _) => 0,
                (false, Some(i)) => self.st.probes[i].consecutive_failures.saturating_add(1),
                (false, None) => 1,
            };
            if !report.passed {
                self.events.push(Event::warning(
                    "ProbeFailed",
                    format!(
                        "MCP probe of revision {} failed ({} in a row): {}",
                        report.revision,
                        failures,
                        report.message.as_deref().unwrap_or("no detail")
                    ),
                ));
            }
            let status = ProbeStatus {
                revision: report.revision.clone(),
                passed: report.passed,
                at: time(at),
                consecutive_failures: failures,
                protocol_versions: report.protocol_versions.clone(),
                tool_count: report.tool_count,
                pods: report.pods,
                schema_compatible: report.schema_compatible,
                message: report.message.clone(),
            };
            match previous {
                Some(i) => self.st.probes[i] = status,
                None => self.st.probes.push(status),
            }
        }
        self.st.probes.sort_by(|a, b| a.revision.cmp(&b.revision));

        let Some(report) = &self.observed.analysis else {
            return;
        };
        if self.st.canary_revision.as_deref() != Some(report.revision.as_str()) {
            return;
        }
        let at = report.at.as_second();
        if self.predates_current_rollout(&report.revision, at)
            || self.st.analysis.iter().any(|c| secs(&c.at) >= at)
        {
            return;
        }
        let checks = report
            .checks
            .iter()
            .map(|check| {
                let before = self.st.analysis.iter().find(|c| c.name == check.name);
                let failures = before.map_or(0, |c| c.consecutive_failures);
                CheckStatus {
                    name: check.name.clone(),
                    verdict: check.verdict,
                    value: check.value.filter(|v| v.is_finite()),
                    threshold: check.threshold.filter(|v| v.is_finite()),
                    consecutive_failures: match check.verdict {
                        Verdict::Fail => failures.saturating_add(1),
                        Verdict::Pass => 0,
                        // Missing data neither confirms nor clears a failure streak.
                        Verdict::Inconclusive => failures,
                    },
                    at: time(at),
                    message: check.message.clone(),
                }
            })
            .collect();
        self.st.analysis = checks;
    }

    /// Whether a result for the new revision predates its current rollout (a replaced and
    /// re-applied template, or a retry): such a result must not count for or against it.
    fn predates_current_rollout(&self, revision: &str, at: i64) -> bool {
        self.st.canary_revision.as_deref() == Some(revision)
            && self.st.rollout_started_at.as_ref().is_some_and(|started| at <= secs(started))
    }

    /// Revisions whose probes matter: stable (also the blue-green flip-back target) and the
    /// new one. Used when recording and when pruning, so both agree.
    fn live_revisions(&self) -> Vec<String> {
        [&self.st.stable_revision, &self.st.canary_revision].into_iter().flatten().cloned().collect()
    }

    // ── manual requests ─────────────────────────────────────────────────────────────────

    fn handle_request(&mut self) {
        let Some(value) = self.observed.request.as_deref() else {
            return;
        };
        if self.st.last_handled_request.as_deref() == Some(value) {
            return;
        }
        self.st.last_handled_request = Some(value.to_owned());
        let request = match parse_request(value) {
            Ok(r) => r,
            Err(e) => {
                self.events.push(Event::warning("RequestRejected", format!("ignored request: {e}")));
                return;
            }
        };
        let stage = self.stage();
        let in_rollout = matches!(stage, Stage::Canary | Stage::Preview | Stage::PostPromotion);
        let accepted = match request.action {
            Action::Pause => {
                self.st.paused_by_request = true;
                true
            }
            Action::Resume => {
                let was = self.st.paused_by_request;
                self.st.paused_by_request = false;
                was
            }
            Action::Promote => {
                let applies = match stage {
                    Stage::Canary => self.at_pause_step(),
                    Stage::Preview | Stage::PostPromotion => true,
                    _ => false,
                };
                self.st.promotion_requested |= applies;
                applies
            }
            Action::PromoteFull => {
                self.st.full_promotion_requested = in_rollout;
                in_rollout
            }
            Action::Abort => {
                self.abort_now = in_rollout;
                in_rollout
            }
            Action::Retry => {
                let retry = stage == Stage::RolledBack;
                if retry {
                    self.st.rollback = None;
                }
                retry
            }
        };
        if accepted {
            self.events
                .push(Event::normal("RequestHandled", format!("{} requested", request.action.as_str())));
        } else {
            self.events.push(Event::warning(
                "RequestIgnored",
                format!("{} does not apply now (stage {stage:?})", request.action.as_str()),
            ));
        }
    }

    // ── template changes ────────────────────────────────────────────────────────────────

    /// Makes the desired revision the one being rolled out (or the stable one).
    fn follow_template(&mut self) {
        let desired = self.desired.clone();
        let Some(stable) = self.st.stable_revision.clone() else {
            // First deploy: nothing has had traffic, so a replaced candidate just goes.
            if self.st.canary_revision.as_deref() != Some(desired.as_str()) {
                self.begin_rollout(&desired);
                self.events.push(Event::normal("FirstDeploy", format!("deploying revision {desired}")));
            }
            return;
        };
        let canary = self.st.canary_revision.clone();
        if desired == stable {
            if let Some(canary) = canary {
                self.abandon_canary(&canary);
                self.events.push(Event::normal(
                    "RolloutAbandoned",
                    format!("template is back to stable revision {stable}; revision {canary} leaves"),
                ));
            }
            self.st.rollback = None;
            return;
        }
        let spec_is_canary = matches!(self.spec.strategy.kind(), StrategyRef::Canary(_));
        let strategy_changed = canary.is_some() && self.st.current_step_index.is_some() != spec_is_canary;
        if canary.as_deref() == Some(desired.as_str()) && !strategy_changed {
            return;
        }
        if canary.is_none() && self.st.rollback.as_ref().is_some_and(|r| r.revision == desired) {
            return; // stays rolled back until the template changes or a retry
        }
        if let Some(canary) = canary {
            let flipped_is_healthy = self.passing_probe(&canary, self.total(), i64::MIN);
            if self.stage() == Stage::PostPromotion && flipped_is_healthy {
                // The flipped revision already serves everything and passes its probe: a newer
                // template ends its window early rather than sending agents back.
                self.finalize_promotion("a newer revision arrived during the post-promotion window");
                if self.st.stable_revision.as_deref() == Some(desired.as_str()) {
                    return; // only the strategy changed, and the flipped revision is now stable
                }
            } else {
                self.abandon_canary(&canary);
                let why = if strategy_changed {
                    format!("the strategy changed; revision {canary} starts over")
                } else {
                    format!("revision {canary} is replaced by {desired}")
                };
                self.events.push(Event::normal("CanaryReplaced", why));
            }
        }
        self.begin_rollout(&desired);
        self.st.rollback = None;
        if let StrategyRef::Canary(_) = self.spec.strategy.kind() {
            self.st.current_step_index = Some(0);
        }
        let stable = self.st.stable_revision.clone().unwrap_or_default();
        self.events.push(Event::normal(
            "RolloutStarted",
            format!("rolling out revision {desired} (stable {stable})"),
        ));
    }

    /// Makes `revision` the new revision, from a clean slate.
    fn begin_rollout(&mut self, revision: &str) {
        self.reset_rollout_fields();
        self.st.canary_revision = Some(revision.to_owned());
        self.st.rollout_started_at = Some(time(self.now));
        self.st.step_started_at = Some(time(self.now));
    }

    fn reset_rollout_fields(&mut self) {
        self.st.canary_revision = None;
        self.st.rollout_started_at = None;
        self.st.current_step_index = None;
        self.st.step_started_at = None;
        self.st.desired_weight = 0;
        self.st.weight_increased_at = None;
        self.st.promoted_at = None;
        self.st.preview_ready_at = None;
        self.st.full_promotion_requested = false;
        self.st.promotion_requested = false;
        self.st.analysis.clear();
    }

    /// The new revision leaves without a verdict: it drains if it had traffic, else it just goes.
    fn abandon_canary(&mut self, canary: &str) {
        if self.stage() == Stage::PostPromotion {
            self.flip_back();
        }
        if self.st.desired_weight > 0 {
            let replicas = self.canary_replicas_now();
            self.start_drain(canary, replicas);
        }
        self.reset_rollout_fields();
    }

    // ── triggers ────────────────────────────────────────────────────────────────────────

    fn check_triggers(&mut self) {
        let stage = self.stage();
        let Some(canary) = self.st.canary_revision.clone() else {
            return;
        };
        if !matches!(stage, Stage::FirstDeploy | Stage::Canary | Stage::Preview | Stage::PostPromotion) {
            return;
        }
        if let Some((reason, check, message)) = self.failed_trigger(&canary) {
            if stage == Stage::FirstDeploy {
                self.hold(Hold::Stalled {
                    reason: "FirstDeployFailing",
                    message: format!("revision {canary} cannot become stable: {message}"),
                });
                return;
            }
            self.roll_back(&canary, reason, check, message);
        }
    }

    /// The first rollback trigger that fires for the new revision, with its numbers.
    fn failed_trigger(&self, canary: &str) -> Option<(RollbackReason, Option<String>, String)> {
        if self.abort_now {
            return Some((RollbackReason::Aborted, None, "aborted by request".into()));
        }
        let crash = self.spec.analysis.as_ref().map(|a| a.checks.crash.clone()).unwrap_or_default();
        // A first deploy has nothing to roll back to, and restart counts never go down: only
        // an ongoing crash loop holds it. A canary is judged on any crash, as the seeds ask.
        let first_deploy = self.st.stable_revision.is_none();
        if let Some(pods) = self.observed.revision(canary).filter(|_| crash.enabled)
            && (pods.crash_looping || (!first_deploy && pods.restarts > crash.max_restarts))
        {
            return Some((
                RollbackReason::Crashed,
                Some("crash".into()),
                format!(
                    "revision {canary}: {} container restart(s) (tolerated {}){}",
                    pods.restarts,
                    crash.max_restarts,
                    if pods.crash_looping { ", crash-looping" } else { "" }
                ),
            ));
        }
        if let Some(probe) = self.st.probes.iter().find(|p| p.revision == canary) {
            if probe.schema_compatible == Some(false) {
                return Some((
                    RollbackReason::IncompatibleSchema,
                    Some("schema".into()),
                    probe.message.clone().unwrap_or_else(|| "tool schemas are incompatible".into()),
                ));
            }
            if probe.consecutive_failures >= self.spec.probe.failure_limit {
                return Some((
                    RollbackReason::ProbeFailed,
                    Some("probe".into()),
                    format!(
                        "{} consecutive probe failures (limit {}): {}",
                        probe.consecutive_failures,
                        self.spec.probe.failure_limit,
                        probe.message.as_deref().unwrap_or("no detail")
                    ),
                ));
            }
        }
        let analysis = self.spec.analysis.as_ref()?;
        self.st.analysis.iter().find_map(|check| {
            let limit = analysis
                .metrics
                .iter()
                .find(|m| m.name == check.name)
                .map_or(analysis.failure_limit, |m| m.failure_limit);
            (check.consecutive_failures >= limit).then(|| {
                (
                    RollbackReason::AnalysisFailed,
                    Some(check.name.clone()),
                    format!(
                        "check {} failed {} time(s) in a row: value {} against threshold {}{}",
                        check.name,
                        check.consecutive_failures,
                        check.value.map_or("n/a".into(), |v| format!("{v:.4}")),
                        check.threshold.map_or("n/a".into(), |v| format!("{v:.4}")),
                        check.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
                    ),
                )
            })
        })
    }

    /// Sends all traffic back to stable at once; the new revision drains.
    fn roll_back(&mut self, canary: &str, reason: RollbackReason, check: Option<String>, message: String) {
        let had_traffic = self.st.desired_weight > 0;
        let replicas = self.canary_replicas_now();
        if self.stage() == Stage::PostPromotion {
            self.flip_back();
        }
        if had_traffic {
            self.start_drain(canary, replicas);
        }
        self.reset_rollout_fields();
        self.events.push(Event::warning(
            "RolledBack",
            format!("revision {canary} rolled back ({reason:?}): {message}"),
        ));
        // What the RolledBack stage reports on every later call, so this one says the same.
        self.hold = Some(Hold::Stalled { reason: "RolledBack", message: message.clone() });
        self.st.rollback =
            Some(RollbackStatus { revision: canary.to_owned(), reason, check, message, at: time(self.now) });
    }

    /// Blue-green: the old revision takes traffic again; its drain is cancelled.
    fn flip_back(&mut self) {
        if let Some(stable) = self.st.stable_revision.clone() {
            self.st.drains.retain(|d| d.revision != stable);
        }
        self.st.promoted_at = None;
    }

    // ── progress ────────────────────────────────────────────────────────────────────────

    fn progress(&mut self) {
        if matches!(self.hold, Some(Hold::Stalled { .. })) {
            return;
        }
        match self.stage() {
            Stage::FirstDeploy => self.progress_first_deploy(),
            Stage::Steady => {}
            Stage::RolledBack => {
                let message = self.st.rollback.as_ref().map(|r| r.message.clone()).unwrap_or_default();
                self.hold(Hold::Stalled { reason: "RolledBack", message });
            }
            Stage::Canary => self.progress_canary(),
            Stage::Preview => self.progress_preview(),
            Stage::PostPromotion => self.progress_post_promotion(),
        }
    }

    fn progress_first_deploy(&mut self) {
        let Some(revision) = self.st.canary_revision.clone() else {
            return;
        };
        if !self.pods_and_probe_ready(&revision, self.total()) {
            return;
        }
        self.st.stable_revision = Some(revision.clone());
        self.reset_rollout_fields();
        self.events.push(Event::normal("Promoted", format!("revision {revision} is stable (first deploy)")));
    }

    /// Whether the latest probe of `revision` passed on at least `pods` pods, after `newer_than`.
    fn passing_probe(&self, revision: &str, pods: i32, newer_than: i64) -> bool {
        self.st
            .probes
            .iter()
            .any(|p| p.revision == revision && p.passed && p.pods >= pods && secs(&p.at) > newer_than)
    }

    /// Whether `revision` has `pods` ready pods and a passing probe of at least that many pods
    /// newer than the current step's start. Holds (with the progress deadline) when not.
    fn pods_and_probe_ready(&mut self, revision: &str, pods: i32) -> bool {
        let ready = self.observed.revision(revision).map_or(0, |r| r.ready);
        let since = self.st.step_started_at.as_ref().map_or(i64::MIN, secs);
        let waiting = if ready < pods {
            format!("waiting for {pods} ready pod(s) of revision {revision} ({ready} ready)")
        } else {
            if self.passing_probe(revision, pods, since) {
                return true;
            }
            format!("waiting for a passing MCP probe of {pods} pod(s) of revision {revision}")
        };
        let deadline = self.spec.progress_deadline.as_secs() as i64;
        if self.now - since > deadline {
            if self.stage() == Stage::FirstDeploy {
                self.hold(Hold::Stalled {
                    reason: "ProgressDeadlineExceeded",
                    message: format!("{waiting} for longer than {}", self.spec.progress_deadline),
                });
            } else {
                let message = format!("{waiting} for longer than {}", self.spec.progress_deadline);
                self.roll_back(revision, RollbackReason::ProgressDeadlineExceeded, None, message);
            }
        } else {
            self.hold(Hold::Waiting(waiting));
        }
        false
    }

    /// Whether the analysis lets the weight grow: every check passed in an evaluation newer
    /// than the last weight increase. Inconclusive holds as Paused (never promote blind).
    fn analysis_allows_increase(&mut self, step: Option<&CanaryStep>) -> bool {
        if self.spec.analysis.is_none() || self.st.desired_weight == 0 || step_skips_analysis(step) {
            return true;
        }
        let since = self.st.weight_increased_at.as_ref().map_or(i64::MIN, secs);
        let hold = match self.analysis_since(since) {
            AnalysisSince::AllPassed => return true,
            AnalysisSince::NoRun => Hold::Waiting("waiting for an analysis run at the current weight".into()),
            AnalysisSince::NotPassing(c) => Hold::Paused(format!(
                "analysis check {} is {:?}: {}",
                c.name,
                c.verdict,
                c.message.as_deref().unwrap_or("no detail")
            )),
        };
        self.hold(hold);
        false
    }

    /// How the analysis runs completed after `since` went.
    fn analysis_since(&self, since: i64) -> AnalysisSince<'_> {
        let mut fresh = self.st.analysis.iter().filter(|c| secs(&c.at) > since).peekable();
        if fresh.peek().is_none() {
            return AnalysisSince::NoRun;
        }
        fresh.find(|c| c.verdict != Verdict::Pass).map_or(AnalysisSince::AllPassed, AnalysisSince::NotPassing)
    }

    /// When the latest analysis run completed.
    fn last_analysis_at(&self) -> Option<i64> {
        self.st.analysis.iter().map(|c| secs(&c.at)).max()
    }

    fn progress_canary(&mut self) {
        let StrategyRef::Canary(canary) = self.spec.strategy.kind() else {
            return;
        };
        let Some(revision) = self.st.canary_revision.clone() else {
            return;
        };
        let steps = &canary.steps;
        // Bounded: each pass either advances a step or stops.
        for _ in 0..=steps.len() + 1 {
            let index = self.step_index();
            let step = steps.get(index);
            let full = self.st.full_promotion_requested;
            let target = match step {
                _ if full => Some(100),
                None => Some(100),
                Some(s) => s.set_weight.map(|w| w.clamp(0, 100)),
            };
            if let Some(target) = target {
                if target <= self.st.desired_weight {
                    self.st.desired_weight = target;
                    self.advance_step(index, format!("weight stays at {target}%"));
                    continue;
                }
                if self.paused() {
                    self.hold(Hold::Paused("paused".into()));
                    return;
                }
                let pods = replicas_for(self.total(), target);
                if !self.pods_and_probe_ready(&revision, pods) {
                    return;
                }
                let analysis_step = if full { None } else { self.weighted_step(steps, index) };
                if !full && !self.analysis_allows_increase(analysis_step) {
                    return;
                }
                let from = self.st.desired_weight;
                self.st.desired_weight = target;
                self.st.weight_increased_at = Some(time(self.now));
                if target >= 100 {
                    self.finalize_promotion(&format!("weight raised from {from}% to 100%"));
                    return;
                }
                self.events.push(Event::normal(
                    "WeightIncreased",
                    format!("revision {revision}: {from}% → {target}% of traffic"),
                ));
                self.advance_step(index, format!("weight {target}%"));
                continue;
            }
            // A pause step.
            let duration = step.and_then(|s| s.pause.as_ref()).and_then(|p| p.duration);
            if self.paused() {
                self.hold(Hold::Paused("paused".into()));
                return;
            }
            let started = self.st.step_started_at.as_ref().map_or(self.now, secs);
            let soaked = duration.is_some_and(|d| self.now >= started + d.as_secs() as i64);
            if self.st.promotion_requested || soaked {
                let why = if soaked { "soak done" } else { "promoted by request" };
                self.advance_step(index, why.to_owned());
                continue;
            }
            match duration {
                Some(d) => {
                    self.hold(Hold::Waiting(format!("soaking at {}% for {d}", self.st.desired_weight)))
                }
                None => self.hold(Hold::Paused(format!(
                    "paused at {}% until `kubectl mcprollout promote`",
                    self.st.desired_weight
                ))),
            }
            return;
        }
    }

    /// Whether the canary is at a pause step.
    fn at_pause_step(&self) -> bool {
        let StrategyRef::Canary(c) = self.spec.strategy.kind() else { return false };
        let index = self.step_index();
        c.steps.get(index).is_some_and(|s| s.pause.is_some()) && !self.st.full_promotion_requested
    }

    /// The setWeight step whose weight is in force at step `index` (its overrides apply to the
    /// pauses after it too).
    fn weighted_step<'s>(&self, steps: &'s [CanaryStep], index: usize) -> Option<&'s CanaryStep> {
        steps[..index.min(steps.len())].iter().rev().find(|s| s.set_weight.is_some())
    }

    fn advance_step(&mut self, index: usize, why: String) {
        // A promote acts on the pause it was asked at, never on a later one.
        self.st.promotion_requested = false;
        let next = index + 1;
        self.st.current_step_index = Some(i32::try_from(next).unwrap_or(i32::MAX));
        self.st.step_started_at = Some(time(self.now));
        self.events
            .push(Event::normal("StepAdvanced", format!("step {index} done ({why}); now at step {next}")));
    }

    fn blue_green(&self) -> Option<&'a BlueGreenStrategy> {
        match self.spec.strategy.kind() {
            StrategyRef::BlueGreen(b) => Some(b),
            StrategyRef::Canary(_) => None,
        }
    }

    fn preview_replicas(&self) -> i32 {
        let preview = self.blue_green().and_then(|b| b.preview_replicas).unwrap_or(self.total());
        if self.st.preview_ready_at.is_some() { self.total() } else { preview.clamp(1, self.total()) }
    }

    fn progress_preview(&mut self) {
        let Some(bg) = self.blue_green() else { return };
        let Some(revision) = self.st.canary_revision.clone() else {
            return;
        };
        if !self.pods_and_probe_ready(&revision, self.preview_replicas()) {
            return;
        }
        if self.st.preview_ready_at.is_none() {
            self.st.preview_ready_at = Some(time(self.now));
            self.events.push(Event::normal("PreviewReady", format!("revision {revision} passed its gates")));
            if self.preview_replicas() > bg.preview_replicas.unwrap_or(self.total()) {
                // Scaled to full size for the flip; the new pods need their own probe.
                self.st.step_started_at = Some(time(self.now));
                if !self.pods_and_probe_ready(&revision, self.total()) {
                    return;
                }
            }
        }
        if self.paused() {
            self.hold(Hold::Paused("paused".into()));
            return;
        }
        let ready_at = self.st.preview_ready_at.as_ref().map_or(self.now, secs);
        let delay = bg.auto_promote_after.map_or(0, |d| d.as_secs() as i64);
        let auto = bg.auto_promote && self.now >= ready_at + delay;
        if !(auto || self.st.promotion_requested || self.st.full_promotion_requested) {
            self.hold(if bg.auto_promote {
                Hold::Waiting(format!(
                    "flipping to revision {revision} after {}",
                    bg.auto_promote_after.unwrap_or_default()
                ))
            } else {
                Hold::Paused(format!(
                    "revision {revision} is ready; waiting for `kubectl mcprollout promote`"
                ))
            });
            return;
        }
        self.st.promotion_requested = false;
        let stable = self.st.stable_revision.clone().unwrap_or_default();
        let total = self.total();
        self.start_drain(&stable, total);
        self.st.promoted_at = Some(time(self.now));
        self.st.desired_weight = 100;
        self.st.weight_increased_at = Some(time(self.now));
        self.st.step_started_at = Some(time(self.now));
        self.events.push(Event::normal(
            "Flipped",
            format!(
                "all traffic to revision {revision}; revision {stable} kept out of rotation for {}",
                bg.post_promotion_window
            ),
        ));
    }

    fn progress_post_promotion(&mut self) {
        let Some(bg) = self.blue_green() else { return };
        let promoted = self.st.promoted_at.as_ref().map_or(self.now, secs);
        let window_over = self.now >= promoted + bg.post_promotion_window.as_secs() as i64;
        let requested = self.st.promotion_requested || self.st.full_promotion_requested;
        if !(window_over || requested) {
            self.hold(Hold::Waiting(format!("post-promotion window of {}", bg.post_promotion_window)));
            return;
        }
        if self.spec.analysis.is_some() && !requested {
            let message = match self.analysis_since(promoted) {
                AnalysisSince::AllPassed => None,
                AnalysisSince::NoRun => {
                    Some("no analysis run completed during the post-promotion window".into())
                }
                AnalysisSince::NotPassing(c) => {
                    Some(format!("analysis check {} is {:?} at the end of the window", c.name, c.verdict))
                }
            };
            if let Some(message) = message {
                self.hold(Hold::Paused(message));
                return;
            }
        }
        let Some(revision) = self.st.canary_revision.clone() else { return };
        if !self.passing_probe(&revision, self.total(), i64::MIN) {
            // Below the failure limit a failed probe does not flip back, but it does not make
            // the revision stable either: wait for the next probe (or the limit).
            self.hold(Hold::Waiting(format!("waiting for a passing MCP probe of revision {revision}")));
            return;
        }
        self.finalize_promotion(if requested {
            "promoted by request"
        } else {
            "post-promotion window passed"
        });
    }

    /// The new revision becomes stable; the old stable drains (it may already be draining).
    fn finalize_promotion(&mut self, why: &str) {
        let Some(revision) = self.st.canary_revision.clone() else {
            return;
        };
        if let Some(old) = self.st.stable_revision.clone() {
            let total = self.total();
            self.start_drain(&old, total);
        }
        self.st.stable_revision = Some(revision.clone());
        self.reset_rollout_fields();
        self.events.push(Event::normal("Promoted", format!("revision {revision} is stable ({why})")));
    }

    // ── drains ──────────────────────────────────────────────────────────────────────────

    fn start_drain(&mut self, revision: &str, replicas: i32) {
        // Every pod the revision runs stays for the drain: sized down now, the ReplicaSet
        // would pick by its own ranking which of them to cut, sessions or not.
        let running = self.observed.revision(revision).map_or(0, |o| o.pods);
        let replicas = replicas.max(running);
        if self.st.drains.iter().any(|d| d.revision == revision) || replicas <= 0 {
            return;
        }
        let (window, measured, clamp) = drain::window(&self.spec.drain, self.observed.session_duration);
        self.events.push(Event::normal(
            "DrainStarted",
            format!(
                "revision {revision} left traffic; draining for up to {window}s (measured {}, clamp {clamp:?})",
                measured.map_or("nothing".into(), |m| format!("{m:.1}s"))
            ),
        ));
        self.st.drains.push(DrainStatus {
            revision: revision.to_owned(),
            started_at: time(self.now),
            window_seconds: window,
            measured_seconds: measured,
            clamp,
            replicas,
            active_sessions: None,
            sessions_sampled_at: None,
            first_sample_at: None,
        });
        self.st.drains.sort_by(|a, b| a.revision.cmp(&b.revision));
    }

    /// Ends drains on what was observed: a drain ends when its pods report no open sessions
    /// and no in-flight streams (at once with `earlyFinish`, else once its window has
    /// elapsed), or at `drain.max` whatever they report. A window alone never ends a drain:
    /// the sessions it was measured from are a quantile, and the rest would be cut.
    /// A revision that is serving again (rolled back to, or the blue-green flip-back target
    /// during the window) is never ended here.
    fn finish_drains(&mut self) {
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
        let mut finished = Vec::new();
        self.st.drains.retain_mut(|d| {
            let is_flip_back = hold_flip_back && stable.as_deref() == Some(d.revision.as_str());
            if serving.contains(&d.revision) && !is_flip_back {
                return false; // serving again: no longer draining
            }
            if let Some(sample) = self.observed.active_sessions.iter().find(|s| s.revision == d.revision) {
                drain::record_sample(d, sample);
            }
            if is_flip_back {
                return true;
            }
            let started = secs(&d.started_at);
            let settled = drain::settled_count(d);
            let window_over = now >= started + d.window_seconds;
            let max_over = now >= started + max.max(d.window_seconds);
            let why = match settled {
                Some(0) if early_finish || window_over => "no open sessions or streams".to_owned(),
                _ if max_over => match settled.or(d.active_sessions) {
                    Some(n) => format!("drain.max of {max}s reached with {n} session(s) or stream(s) open"),
                    None => format!("drain.max of {max}s reached; open sessions were not observed"),
                },
                _ => return true,
            };
            finished.push((d.revision.clone(), why, max_over && settled != Some(0)));
            false
        });
        for (revision, why, forced) in finished {
            let message = format!("revision {revision} drained ({why})");
            if forced {
                self.events.push(Event::warning("DrainFinished", message));
            } else {
                self.events.push(Event::normal("DrainFinished", message));
            }
        }
    }

    // ── output ──────────────────────────────────────────────────────────────────────────

    fn canary_replicas_now(&self) -> i32 {
        match self.stage() {
            Stage::Preview | Stage::PostPromotion => self.total(),
            _ => replicas_for(self.total(), self.st.desired_weight),
        }
    }

    fn finish(mut self) -> Decision {
        let stage = self.stage();
        let live = self.live_revisions();
        self.st.probes.retain(|p| live.contains(&p.revision));
        let plan_revisions = self.plan_revisions(stage);
        let (phase, reason, message) = self.phase(stage);
        self.st.phase = Some(phase);
        self.st.message = Some(message.clone());
        self.st.observed_generation = self.generation;
        self.st.effective_weight = self.effective_weight();
        self.st.conditions = conditions::for_phase(
            phase,
            reason,
            &message,
            self.generation,
            &self.st.conditions,
            &time(self.now),
        );
        let probes = self.due_probes(stage);
        let analysis = self.due_analysis(stage);
        let requeue_after = Some(self.requeue_after(stage));
        Decision {
            status: self.st,
            plan: Plan { revisions: plan_revisions, probes, analysis, events: self.events, requeue_after },
        }
    }

    fn plan_revisions(&self, stage: Stage) -> Vec<RevisionPlan> {
        let total = self.total();
        let mut plan = Vec::new();
        let canary = self.st.canary_revision.clone();
        let weight = self.st.desired_weight;
        match (stage, &self.st.stable_revision, &canary) {
            (Stage::FirstDeploy, _, Some(c)) => {
                // Out of rotation until it is stable (the same decision its gates pass), so a
                // candidate replaced before then never had traffic to drain.
                plan.push(revision_plan(c, Role::Canary, total, 0, 100));
            }
            (Stage::Canary, Some(s), Some(c)) => {
                let next = self.next_canary_target();
                let replicas = replicas_for(total, next.max(weight)).max(1);
                plan.push(revision_plan(s, Role::Stable, total, total, 100 - weight));
                plan.push(revision_plan(c, Role::Canary, replicas, replicas_for(total, weight), weight));
            }
            (Stage::Preview, Some(s), Some(c)) => {
                plan.push(revision_plan(s, Role::Stable, total, total, 100));
                plan.push(revision_plan(c, Role::Canary, self.preview_replicas(), 0, 0));
            }
            (Stage::PostPromotion, Some(s), Some(c)) => {
                plan.push(revision_plan(c, Role::Canary, total, total, 100));
                plan.push(revision_plan(s, Role::Draining, total, 0, 0));
            }
            (_, Some(s), _) => plan.push(revision_plan(s, Role::Stable, total, total, 100)),
            // Stages never derived without a stable revision.
            _ => {}
        }
        for d in &self.st.drains {
            match plan.iter_mut().find(|p| p.revision == d.revision) {
                // Restarted under a new role before its drain ended: keep the draining pods.
                Some(p) => p.replicas = p.replicas.max(d.replicas),
                None => plan.push(revision_plan(&d.revision, Role::Draining, d.replicas, 0, 0)),
            }
        }
        plan
    }

    /// The weight the canary is being sized for: the next step's (or 100 at the end).
    fn next_canary_target(&self) -> i32 {
        if self.st.full_promotion_requested {
            return 100;
        }
        let StrategyRef::Canary(c) = self.spec.strategy.kind() else {
            return 100;
        };
        let index = self.step_index();
        c.steps[index.min(c.steps.len())..]
            .iter()
            .find_map(|s| s.set_weight)
            .or(if index >= c.steps.len() { Some(100) } else { None })
            .unwrap_or(self.st.desired_weight)
    }

    fn effective_weight(&self) -> i32 {
        let Some(canary) = &self.st.canary_revision else {
            return 0;
        };
        let in_rotation =
            |r: Option<&str>| r.and_then(|r| self.observed.revision(r)).map_or(0, |o| o.ready_in_rotation);
        let c = in_rotation(Some(canary));
        let s = in_rotation(self.st.stable_revision.as_deref());
        if c + s == 0 { 0 } else { ((f64::from(c) * 100.0) / f64::from(c + s)).round() as i32 }
    }

    fn phase(&self, stage: Stage) -> (Phase, &'static str, String) {
        match (&self.hold, stage) {
            (Some(Hold::Stalled { reason, message }), _) => (Phase::Degraded, reason, message.clone()),
            (Some(Hold::Paused(m)), _) => (Phase::Paused, "Paused", m.clone()),
            (Some(Hold::Waiting(m)), _) => (Phase::Progressing, "Progressing", m.clone()),
            (None, Stage::Steady) => {
                let stable = self.st.stable_revision.clone().unwrap_or_default();
                (Phase::Healthy, "RolloutComplete", format!("revision {stable} serves all traffic"))
            }
            (None, _) => (Phase::Progressing, "Progressing", "rolling out".into()),
        }
    }

    fn due_probes(&self, stage: Stage) -> Vec<ProbeRequest> {
        let interval = self.spec.probe.interval.as_secs() as i64;
        let step_start = self.st.step_started_at.as_ref().map_or(i64::MIN, secs);
        let stale = |revision: &str, needs_newer_than: i64| {
            self.st.probes.iter().find(|p| p.revision == revision).is_none_or(|p| {
                let at = secs(&p.at);
                at + interval <= self.now || at <= needs_newer_than
            })
        };
        let mut due = Vec::new();
        if let Some(stable) = &self.st.stable_revision
            && stale(stable, i64::MIN)
        {
            due.push(ProbeRequest { revision: stable.clone(), baseline: None });
        }
        if let Some(canary) = &self.st.canary_revision {
            let needs_fresh = !matches!(stage, Stage::PostPromotion);
            if stale(canary, if needs_fresh { step_start } else { i64::MIN }) {
                due.push(ProbeRequest {
                    revision: canary.clone(),
                    baseline: self.st.stable_revision.clone(),
                });
            }
        }
        due
    }

    fn due_analysis(&self, stage: Stage) -> Option<AnalysisRequest> {
        let analysis = self.spec.analysis.as_ref()?;
        let canary = self.st.canary_revision.clone()?;
        let stable = self.st.stable_revision.clone()?;
        let step = match self.spec.strategy.kind() {
            StrategyRef::Canary(c) => {
                let index = self.step_index();
                self.weighted_step(&c.steps, index.saturating_add(1))
            }
            StrategyRef::BlueGreen(_) => None,
        };
        let measuring = match stage {
            Stage::Canary => self.st.desired_weight > 0 && !step_skips_analysis(step),
            Stage::Preview | Stage::PostPromotion => true,
            _ => false,
        };
        let due =
            self.last_analysis_at().is_none_or(|at| at + analysis.interval.as_secs() as i64 <= self.now);
        if !(measuring && due) {
            return None;
        }
        let first_weighted = match self.spec.strategy.kind() {
            StrategyRef::Canary(c) => c.steps.iter().find(|s| s.set_weight.is_some_and(|w| w > 0)),
            StrategyRef::BlueGreen(_) => None,
        };
        let at_first_step = stage == Stage::Canary
            && first_weighted.and_then(|s| s.set_weight) == Some(self.st.desired_weight);
        let max_error_rate_ratio = step
            .and_then(|s| s.analysis.as_ref())
            .and_then(|a| a.max_error_rate_ratio)
            .unwrap_or(if at_first_step {
                analysis.checks.error_rate.first_step_max_ratio
            } else {
                analysis.checks.error_rate.max_ratio
            });
        let min_request_count = step
            .and_then(|s| s.analysis.as_ref())
            .and_then(|a| a.min_request_count)
            .unwrap_or(analysis.min_request_count);
        Some(AnalysisRequest { canary, stable, max_error_rate_ratio, min_request_count })
    }

    /// The soonest moment something time-based can change, clamped to [1s, probe interval].
    fn requeue_after(&self, stage: Stage) -> Duration {
        let probe_interval = self.spec.probe.interval.as_secs().max(1) as i64;
        let mut next = self.now + probe_interval;
        let mut consider = |at: i64| next = next.min(at.max(self.now + 1));
        let max = self.spec.drain.max.as_secs() as i64;
        for d in &self.st.drains {
            consider(secs(&d.started_at) + d.window_seconds);
            consider(secs(&d.started_at) + max.max(d.window_seconds));
        }
        if let Some(a) = &self.spec.analysis {
            let last = self.last_analysis_at().unwrap_or(self.now);
            if matches!(stage, Stage::Canary | Stage::Preview | Stage::PostPromotion) {
                consider(last + a.interval.as_secs() as i64);
            }
        }
        let step_start = self.st.step_started_at.as_ref().map(secs);
        match (stage, self.spec.strategy.kind()) {
            (Stage::Canary, StrategyRef::Canary(c)) => {
                let index = self.step_index();
                if let (Some(d), Some(start)) =
                    (c.steps.get(index).and_then(|s| s.pause.as_ref()).and_then(|p| p.duration), step_start)
                {
                    consider(start + d.as_secs() as i64);
                }
            }
            (Stage::Preview, StrategyRef::BlueGreen(b)) => {
                if let Some(ready) = self.st.preview_ready_at.as_ref().map(secs) {
                    consider(ready + b.auto_promote_after.map_or(0, |d| d.as_secs() as i64));
                }
            }
            (Stage::PostPromotion, StrategyRef::BlueGreen(b)) => {
                if let Some(p) = self.st.promoted_at.as_ref().map(secs) {
                    consider(p + b.post_promotion_window.as_secs() as i64);
                }
            }
            _ => {}
        }
        if matches!(stage, Stage::FirstDeploy | Stage::Canary | Stage::Preview)
            && let Some(start) = step_start
        {
            consider(start + self.spec.progress_deadline.as_secs() as i64 + 1);
        }
        Duration::from_secs((next - self.now).clamp(1, probe_interval) as u64)
    }
}

fn step_skips_analysis(step: Option<&CanaryStep>) -> bool {
    step.and_then(|s| s.analysis.as_ref()).is_some_and(|a| a.skip)
}

fn revision_plan(revision: &str, role: Role, replicas: i32, in_rotation: i32, weight: i32) -> RevisionPlan {
    RevisionPlan {
        revision: revision.to_owned(),
        role,
        replicas,
        in_rotation: in_rotation.min(replicas),
        weight,
    }
}
