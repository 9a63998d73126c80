//! Following `spec.template`: a new revision starts a rollout, the stable one ends it, a
//! changed strategy restarts it.

use super::prelude::*;

impl<'a> Engine<'a> {
    /// Makes the desired revision the one being rolled out (or the stable one).
    pub(super) fn follow_template(&mut self) {
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
            self.set_stage(Stage::Steady);
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
        self.st.rollback = None;
        self.begin_rollout(&desired);
        let stable = self.st.stable_revision.clone().unwrap_or_default();
        self.events.push(Event::normal(
            "RolloutStarted",
            format!("rolling out revision {desired} (stable {stable})"),
        ));
    }
}
