//! Manual requests (`kubectl mcprollout promote|pause|resume|abort|retry`), read from the
//! request annotation and acted on once.

use super::prelude::*;

impl<'a> Engine<'a> {
    pub(super) fn handle_request(&mut self) {
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
            Action::Approve => self.approve_gates(request.gate.as_deref()),
            Action::Retry => {
                let retry = stage == Stage::RolledBack;
                if retry {
                    self.st.rollback = None;
                    self.set_stage(Stage::Steady);
                }
                retry
            }
        };
        let what = match &request.gate {
            Some(gate) => format!("{} of gate {gate}", request.action.as_str()),
            None => request.action.as_str().to_owned(),
        };
        if accepted {
            self.events.push(Event::normal("RequestHandled", format!("{what} requested")));
        } else {
            self.events.push(Event::warning(
                "RequestIgnored",
                format!("{what} does not apply now (stage {stage:?})"),
            ));
        }
    }
}
