//! One step forward in the stage the rollout is in.

use super::prelude::*;

impl<'a> Engine<'a> {
    pub(super) fn progress(&mut self) {
        if matches!(self.hold, Some(Hold::Stalled { .. })) {
            return;
        }
        match self.stage() {
            Stage::FirstDeploy => self.progress_first_deploy(),
            Stage::Steady => self.check_steady(),
            Stage::RolledBack => {
                let message = self.st.rollback.as_ref().map(|r| r.message.clone()).unwrap_or_default();
                self.hold(Hold::stalled("RolledBack", message));
            }
            Stage::Canary => self.progress_canary(),
            Stage::Preview => self.progress_preview(),
            Stage::PostPromotion => self.progress_post_promotion(),
        }
    }

    /// Steady is watched too: a crash-looping stable revision is Stalled, one short of ready
    /// pods is Progressing, and Stalled once that lasts longer than the progress deadline.
    pub(super) fn check_steady(&mut self) {
        let Some(stable) = self.st.stable_revision.clone() else { return };
        let total = self.total();
        let (ready, crash_looping, restarts) =
            self.observed.revision(&stable).map_or((0, false, 0), |o| (o.ready, o.crash_looping, o.restarts));
        if ready >= total && !crash_looping {
            self.st.unavailable_since = None;
            if !self.stable_routed(&stable) {
                // "Serves all traffic" only once it does: a first deploy is promoted before its
                // pods enter rotation, and the Service sends them nothing until its endpoints
                // list them (seen: agents started on Healthy found no endpoint).
                self.hold(Hold::Waiting(format!(
                    "revision {stable} is ready; waiting for the Service to route traffic to it"
                )));
            }
            return;
        }
        let now = self.now;
        let since = secs(self.st.unavailable_since.get_or_insert_with(|| time(now)));
        if crash_looping {
            self.hold(Hold::stalled(
                "StableCrashLooping",
                format!("stable revision {stable} is crash-looping ({restarts} container restarts); {ready} of {total} pods ready"),
            ));
        } else if self.now - since > self.spec.progress_deadline.as_secs() as i64 {
            self.hold(Hold::stalled(
                "StableUnavailable",
                format!(
                    "only {ready} of {total} pods of stable revision {stable} ready for longer than {}",
                    self.spec.progress_deadline
                ),
            ));
        } else {
            self.hold(Hold::Waiting(format!("{ready} of {total} pods of stable revision {stable} ready")));
        }
    }

    /// Whether traffic reaches `stable`: a router replica weights it (with the MCP session
    /// router; all of them answered), or the rollout Service's endpoints list one of its pods
    /// (that Service is over every in-rotation pod, with a Gateway API route too).
    fn stable_routed(&self, stable: &str) -> bool {
        if self.mcp_router() {
            let router = self.observed.router.as_ref().filter(|r| r.complete);
            return router.and_then(|r| r.min_weight.get(stable)).is_some_and(|w| *w > 0);
        }
        self.observed.revision(stable).is_some_and(|o| o.in_endpoints > 0)
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
        self.set_stage(Stage::Steady);
        self.events.push(Event::normal("Promoted", format!("revision {revision} is stable (first deploy)")));
    }
}
