//! The changes of stage every other part may cause: a rollback, a canary abandoned without a
//! verdict, a promotion. Each starts the drain of the revision that leaves traffic.

use super::prelude::*;

impl<'a> Engine<'a> {
    /// Sends all traffic back to stable at once; the new revision drains.
    pub(super) fn roll_back(
        &mut self,
        canary: &str,
        reason: RollbackReason,
        check: Option<String>,
        message: String,
    ) {
        let had_traffic = self.st.desired_weight > 0;
        let replicas = self.canary_replicas_now();
        if self.stage() == Stage::PostPromotion {
            self.flip_back();
        }
        if had_traffic {
            // The runbook's forced reconnect, unless the spec asks to let sessions run out.
            let evacuate = self.spec.drain.on_rollback == OnRollback::Evacuate;
            self.start_drain(canary, replicas, evacuate);
        }
        // The analysis that judged it stays in status (and goes into the notification) until
        // the next rollout begins: the numbers behind a rollback are what people ask first.
        let analysis = std::mem::take(&mut self.st.analysis);
        self.reset_rollout_fields();
        self.st.analysis = analysis;
        self.events.push(Event::warning(
            "RolledBack",
            format!("revision {canary} rolled back ({reason:?}): {message}"),
        ));
        // What the RolledBack stage reports on every later call, so this one says the same.
        self.hold = Some(Hold::stalled("RolledBack", message.clone()));
        self.st.rollback =
            Some(RollbackStatus { revision: canary.to_owned(), reason, check, message, at: time(self.now) });
        self.set_stage(Stage::RolledBack);
    }

    /// The new revision leaves without a verdict: it drains if it had traffic, else it just goes.
    pub(super) fn abandon_canary(&mut self, canary: &str) {
        if self.stage() == Stage::PostPromotion {
            self.flip_back();
        }
        if self.st.desired_weight > 0 {
            let replicas = self.canary_replicas_now();
            self.start_drain(canary, replicas, false);
        }
        self.reset_rollout_fields();
        self.set_stage(Stage::Steady);
    }

    /// The new revision becomes stable; the old stable drains (it may already be draining).
    pub(super) fn finalize_promotion(&mut self, why: &str) {
        let Some(revision) = self.st.canary_revision.clone() else {
            return;
        };
        if let Some(old) = self.st.stable_revision.clone() {
            let total = self.total();
            self.start_drain(&old, total, false);
        }
        self.st.stable_revision = Some(revision.clone());
        self.reset_rollout_fields();
        self.set_stage(Stage::Steady);
        self.events.push(Event::normal("Promoted", format!("revision {revision} is stable ({why})")));
    }
}
