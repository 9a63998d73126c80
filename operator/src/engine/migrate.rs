//! Migration from a Deployment that serves today (`spec.workloadRef`). The Deployment is never
//! touched while it serves: the first revision comes up beside it, out of rotation, and must
//! pass its probe (a first deploy). Once it is stable the rollout's Service serves it (the
//! reconciler adopts a Service of the rollout's name), the Deployment's pods leave the
//! endpoints, and it is kept for a drain window counted from then, as a revision would be;
//! only then is it scaled to 0 (or kept, `scaleDown: Never`).

use super::{drain, prelude::*};
use crate::api::{WorkloadPhase, WorkloadScaleDown, WorkloadStatus};

impl Engine<'_> {
    /// Before the stages move: starts following the named workload, and holds a first deploy
    /// whose workload is not there (a wrong name would otherwise deploy beside nothing).
    pub(super) fn check_workload(&mut self) {
        let Some(reference) = self.spec.workload_ref.as_ref() else {
            self.st.workload = None;
            return;
        };
        if self.st.workload.as_ref().is_none_or(|w| w.name != reference.name) {
            // Named after the rollout already serves (added later): it drains from now on.
            let phase = if self.st.stable_revision.is_some() {
                WorkloadPhase::Draining
            } else {
                WorkloadPhase::Serving
            };
            self.st.workload = Some(WorkloadStatus {
                name: reference.name.clone(),
                phase,
                left_traffic_at: None,
                window_seconds: None,
            });
            if phase == WorkloadPhase::Serving {
                self.events.push(Event::normal(
                    "MigrationStarted",
                    format!(
                        "Deployment {} serves until revision {} is ready and probed; it is not touched until then",
                        reference.name, self.desired
                    ),
                ));
            }
        }
        let exists = self.observed.workload.as_ref().is_some_and(|w| w.exists);
        if !exists && self.st.workload.as_ref().is_some_and(|w| w.phase == WorkloadPhase::Serving) {
            self.hold(Hold::stalled(
                "WorkloadNotFound",
                format!(
                    "spec.workloadRef names Deployment {}, which is not in this namespace (or is one of this \
                     rollout's own): fix the name, or remove workloadRef to deploy without taking over",
                    reference.name
                ),
            ));
        }
    }

    /// After the stages moved: a workload whose rollout now serves leaves traffic and drains;
    /// once its window has passed out of the endpoints it is scaled down (or kept).
    pub(super) fn drain_workload(&mut self) {
        let Some(reference) = self.spec.workload_ref.as_ref() else { return };
        let observed = self.observed.workload.clone().unwrap_or_default();
        let serves = self.st.stable_revision.is_some();
        let (now, session_duration) = (self.now, self.observed.session_duration);
        let Some(w) = self.st.workload.as_mut() else { return };
        if w.phase == WorkloadPhase::Serving && serves {
            w.phase = WorkloadPhase::Draining;
        }
        if w.phase != WorkloadPhase::Draining {
            return;
        }
        let window =
            *w.window_seconds.get_or_insert_with(|| drain::window(&self.spec.drain, session_duration).0);
        if !observed.exists {
            // Deleted by its owner meanwhile: nothing left to drain or scale.
            w.phase = WorkloadPhase::ScaledDown;
            w.left_traffic_at = None;
            return;
        }
        if observed.in_endpoints > 0 {
            // Still routed (the Service not yet taken over, or its endpoints not yet updated):
            // the window has not started.
            w.left_traffic_at = None;
            return;
        }
        let left = secs(w.left_traffic_at.get_or_insert_with(|| time(now)));
        if left == now {
            let stable = self.st.stable_revision.clone().unwrap_or_default();
            self.events.push(Event::normal(
                "WorkloadLeftTraffic",
                format!(
                    "revision {stable} serves; Deployment {} is out of the Service and kept for {window}s for its open sessions",
                    reference.name
                ),
            ));
        }
        if now < left + window {
            return;
        }
        let (phase, message) = match reference.scale_down {
            WorkloadScaleDown::OnSuccess => (
                WorkloadPhase::ScaledDown,
                format!("Deployment {} drained ({window}s out of traffic): scaled to 0", reference.name),
            ),
            WorkloadScaleDown::Never => (
                WorkloadPhase::Kept,
                format!(
                    "Deployment {} drained ({window}s out of traffic): left running (scaleDown: Never)",
                    reference.name
                ),
            ),
        };
        w.phase = phase;
        self.events.push(Event::normal("MigrationComplete", message));
    }

    /// What the reconciler does with the workload now.
    pub(super) fn workload_action(&self) -> WorkloadAction {
        let scaled_down = self.st.workload.as_ref().is_some_and(|w| w.phase == WorkloadPhase::ScaledDown);
        let exists = self.observed.workload.as_ref().is_some_and(|w| w.exists && w.replicas > 0);
        if scaled_down && exists { WorkloadAction::ScaleToZero } else { WorkloadAction::Leave }
    }

    /// When the workload's drain window ends, if it is draining out of traffic.
    pub(super) fn workload_drain_ends_at(&self) -> Option<i64> {
        let w = self.st.workload.as_ref().filter(|w| w.phase == WorkloadPhase::Draining)?;
        Some(secs(w.left_traffic_at.as_ref()?) + w.window_seconds?)
    }
}
