//! Problems the reconciler saw and the engine must not act past: the first holds the rollout
//! Stalled (phase Degraded) with its reason; the engine emits its event once, when it first
//! appears. Drains still end, and nothing moves forward.

use super::prelude::*;

impl Engine<'_> {
    pub(super) fn check_problems(&mut self) {
        let Some(problem) = self.observed.problems.first() else {
            return;
        };
        if self.st.message.as_deref() != Some(problem.message.as_str()) {
            self.events.push(Event::warning(&problem.reason, problem.message.clone()));
        }
        self.hold(Hold::stalled(&problem.reason, problem.message.clone()));
    }
}
