//! Blue-green: the preview, the flip, and the post-promotion window.

use super::prelude::*;
use crate::api::GatePoint;

impl<'a> Engine<'a> {
    pub(super) fn preview_replicas(&self) -> i32 {
        let preview = self.blue_green().and_then(|b| b.preview_replicas).unwrap_or(self.total());
        if self.st.preview_ready_at.is_some() { self.total() } else { preview.clamp(1, self.total()) }
    }

    pub(super) fn progress_preview(&mut self) {
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
        // Gates are asked as soon as the preview is ready, so a ticket is approved while the
        // auto-promotion delay (or a person's `promote`) is still to come.
        if !self.change_gates_open(&[GatePoint::Start, GatePoint::Flip, GatePoint::Promotion], None) {
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
        self.start_drain(&stable, total, false);
        self.st.promoted_at = Some(time(self.now));
        self.set_stage(Stage::PostPromotion);
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

    pub(super) fn progress_post_promotion(&mut self) {
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
        if !self.weight_in_force() {
            return;
        }
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
}
