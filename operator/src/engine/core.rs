//! The engine's state for one decision, and the small questions every stage asks of it
//! (which stage, how many pods, is a probe passing, what did the analysis say since). Every
//! other part of the engine sits on this one; nothing here calls into them.

use jiff::Timestamp;

use super::prelude::*;
use crate::api::revision_of;

/// The analysis runs completed after some moment.
pub(super) enum AnalysisSince<'s> {
    NoRun,
    /// The first check that did not pass.
    NotPassing(&'s CheckStatus),
    AllPassed,
}

impl Hold {
    pub(super) fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Self::Stalled { reason: reason.to_owned(), message: message.into() }
    }
}

/// Why the rollout is not moving, for phase and message.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Hold {
    /// Waiting on something that should come by itself (pods, a probe, an analysis run).
    Waiting(String),
    /// Waiting for a human or for data: phase Paused.
    Paused(String),
    /// Cannot proceed without a change: phase Degraded.
    Stalled { reason: String, message: String },
}

pub(super) struct Engine<'a> {
    pub(super) spec: &'a McpRolloutSpec,
    pub(super) observed: &'a Observed,
    pub(super) generation: Option<i64>,
    /// Now, truncated to whole seconds: status times are stored at that precision, and a
    /// decision must not change when status is read back after an operator restart.
    pub(super) now: i64,
    pub(super) desired: String,
    pub(super) st: McpRolloutStatus,
    pub(super) events: Vec<Event>,
    pub(super) hold: Option<Hold>,
    /// An abort request arrived in this call.
    pub(super) abort_now: bool,
    /// Gate webhooks to call now.
    pub(super) gate_calls: Vec<GateCall>,
    /// The soonest moment a gate may open by itself (a freeze ends, a webhook is asked again).
    pub(super) gates_wake_at: Option<i64>,
}

pub(super) fn secs(t: &Time) -> i64 {
    t.0.as_second()
}

pub(super) fn time(s: i64) -> Time {
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

pub(super) fn step_skips_analysis(step: Option<&CanaryStep>) -> bool {
    step.and_then(|s| s.analysis.as_ref()).is_some_and(|a| a.skip)
}

pub(super) fn revision_plan(
    revision: &str,
    role: Role,
    replicas: i32,
    in_rotation: i32,
    weight: i32,
) -> RevisionPlan {
    RevisionPlan {
        revision: revision.to_owned(),
        role,
        replicas,
        in_rotation: in_rotation.min(replicas),
        weight,
        leaving: Vec::new(),
    }
}

impl<'a> Engine<'a> {
    pub(super) fn new(input: &Input<'a>) -> Self {
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
            gate_calls: Vec::new(),
            gates_wake_at: None,
        }
    }

    /// Asks for a decision again at `at` at the latest.
    pub(super) fn wake_at(&mut self, at: i64) {
        self.gates_wake_at = Some(self.gates_wake_at.map_or(at, |w| w.min(at)));
    }

    /// The stage the rollout is in: the one stored in status (set by every change of
    /// stage), or for a status written before the stage was stored, the one its fields imply.
    pub(super) fn stage(&self) -> Stage {
        self.st.stage.unwrap_or_else(|| stage_of(&self.st, &self.desired))
    }

    pub(super) fn set_stage(&mut self, stage: Stage) {
        self.st.stage = Some(stage);
    }

    pub(super) fn total(&self) -> i32 {
        self.spec.replicas.max(1)
    }

    /// Whether the MCP session router carries the rollout's traffic.
    pub(super) fn mcp_router(&self) -> bool {
        self.spec.traffic_routing.as_ref().is_some_and(|t| t.mcp_router.is_some())
    }

    /// Whether a drained revision may still get new connections or requests: its pods in the
    /// rollout Service's endpoints, or (with the router) a router replica that weights it, has
    /// not yet the configuration of its drain, or was not heard from.
    pub(super) fn still_routed(&self, drain: &DrainStatus) -> bool {
        if self.mcp_router() {
            return !self
                .observed
                .router
                .as_ref()
                .is_some_and(|r| r.knows_drain(drain) && r.out_of_rotation(&drain.revision));
        }
        self.observed.revision(&drain.revision).is_some_and(|o| o.in_endpoints > 0)
    }

    /// The canary step the rollout is at (0 when it has none).
    pub(super) fn step_index(&self) -> usize {
        self.st.current_step_index.unwrap_or(0).max(0) as usize
    }

    pub(super) fn paused(&self) -> bool {
        self.spec.paused || self.st.paused_by_request
    }

    pub(super) fn hold(&mut self, hold: Hold) {
        if self.hold.is_none() {
            self.hold = Some(hold);
        }
    }

    /// Revisions whose probes matter: stable (also the blue-green flip-back target) and the
    /// new one. Used when recording and when pruning, so both agree.
    pub(super) fn live_revisions(&self) -> Vec<String> {
        [&self.st.stable_revision, &self.st.canary_revision].into_iter().flatten().cloned().collect()
    }

    /// Makes `revision` the new revision, from a clean slate.
    pub(super) fn begin_rollout(&mut self, revision: &str) {
        self.reset_rollout_fields();
        self.st.canary_revision = Some(revision.to_owned());
        self.st.rollout_started_at = Some(time(self.now));
        self.st.step_started_at = Some(time(self.now));
        let stage = match (&self.st.stable_revision, self.spec.strategy.kind()) {
            (None, _) => Stage::FirstDeploy,
            (Some(_), StrategyRef::Canary(_)) => {
                self.st.current_step_index = Some(0);
                Stage::Canary
            }
            (Some(_), StrategyRef::BlueGreen(_)) => Stage::Preview,
        };
        self.set_stage(stage);
    }

    pub(super) fn reset_rollout_fields(&mut self) {
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
        self.st.gates.clear();
    }

    /// Blue-green: the old revision takes traffic again; its drain is cancelled.
    pub(super) fn flip_back(&mut self) {
        if let Some(stable) = self.st.stable_revision.clone() {
            self.st.drains.retain(|d| d.revision != stable);
        }
        self.st.promoted_at = None;
    }

    pub(super) fn canary_replicas_now(&self) -> i32 {
        match self.stage() {
            Stage::Preview | Stage::PostPromotion => self.total(),
            _ => replicas_for(self.total(), self.st.desired_weight),
        }
    }

    /// Whether the latest probe of `revision` passed on at least `pods` pods, after `newer_than`.
    pub(super) fn passing_probe(&self, revision: &str, pods: i32, newer_than: i64) -> bool {
        self.st
            .probes
            .iter()
            .any(|p| p.revision == revision && p.passed && p.pods >= pods && secs(&p.at) > newer_than)
    }

    pub(super) fn blue_green(&self) -> Option<&'a BlueGreenStrategy> {
        match self.spec.strategy.kind() {
            StrategyRef::BlueGreen(b) => Some(b),
            StrategyRef::Canary(_) => None,
        }
    }

    /// How the analysis runs completed after `since` went.
    pub(super) fn analysis_since(&self, since: i64) -> AnalysisSince<'_> {
        let mut fresh = self.st.analysis.iter().filter(|c| secs(&c.at) > since).peekable();
        if fresh.peek().is_none() {
            return AnalysisSince::NoRun;
        }
        fresh.find(|c| c.verdict != Verdict::Pass).map_or(AnalysisSince::AllPassed, AnalysisSince::NotPassing)
    }

    /// Whether the canary is at a pause step.
    pub(super) fn at_pause_step(&self) -> bool {
        let StrategyRef::Canary(c) = self.spec.strategy.kind() else { return false };
        let index = self.step_index();
        c.steps.get(index).is_some_and(|s| s.pause.is_some()) && !self.st.full_promotion_requested
    }
}
