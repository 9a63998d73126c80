//! The canary stage: setWeight and pause steps, one at a time.

use super::prelude::*;
use crate::api::GatePoint;

impl<'a> Engine<'a> {
    pub(super) fn progress_canary(&mut self) {
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
                // The weight asked so far must be the weight in force before it grows again.
                if !self.weight_in_force() {
                    return;
                }
                let analysis_step = if full { None } else { self.weighted_step(steps, index) };
                if !full && !self.analysis_allows_increase(analysis_step) {
                    return;
                }
                let points: &[GatePoint] = match (self.st.desired_weight == 0, target >= 100) {
                    (true, true) => &[GatePoint::Start, GatePoint::Promotion],
                    (true, false) => &[GatePoint::Start, GatePoint::WeightIncrease],
                    (false, true) => &[GatePoint::Promotion],
                    (false, false) => &[GatePoint::WeightIncrease],
                };
                if !self.change_gates_open(points, Some(target)) {
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

    /// The setWeight step whose weight is in force at step `index` (its overrides apply to the
    /// pauses after it too).
    pub(super) fn weighted_step<'s>(&self, steps: &'s [CanaryStep], index: usize) -> Option<&'s CanaryStep> {
        steps[..index.min(steps.len())].iter().rev().find(|s| s.set_weight.is_some())
    }

    pub(super) fn advance_step(&mut self, index: usize, why: String) {
        // A promote acts on the pause it was asked at, never on a later one.
        self.st.promotion_requested = false;
        let next = index + 1;
        self.st.current_step_index = Some(i32::try_from(next).unwrap_or(i32::MAX));
        self.st.step_started_at = Some(time(self.now));
        self.events
            .push(Event::normal("StepAdvanced", format!("step {index} done ({why}); now at step {next}")));
    }

    /// The weight the canary is being sized for: the next step's (or 100 at the end).
    pub(super) fn next_canary_target(&self) -> i32 {
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
}
