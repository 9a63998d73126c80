//! One step forward in the stage the rollout is in.

use super::prelude::*;

impl<'a> Engine<'a> {
    pub(super) fn progress(&mut self) {
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

    pub(super) fn progress_first_deploy(&mut self) {
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
}
