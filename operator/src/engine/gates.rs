//! What a weight increase or a flip waits for: ready pods, a fresh passing probe, an analysis
//! that passed since the weight last grew. The progress deadline rolls back a canary that
//! never gets there.

use super::prelude::*;

impl<'a> Engine<'a> {
    /// Whether `revision` has `pods` ready pods and a passing probe of at least that many pods
    /// newer than the current step's start. Holds (with the progress deadline) when not.
    pub(super) fn pods_and_probe_ready(&mut self, revision: &str, pods: i32) -> bool {
        let ready = self.observed.revision(revision).map_or(0, |r| r.ready);
        let since = self.st.step_started_at.as_ref().map_or(i64::MIN, secs);
        let waiting = if ready < pods {
            format!("waiting for {pods} ready pod(s) of revision {revision} ({ready} ready)")
        } else {
            if self.passing_probe(revision, pods, since) {
                return true;
            }
            format!("waiting for a passing MCP probe of {pods} pod(s) of revision {revision}")
        };
        let deadline = self.spec.progress_deadline.as_secs() as i64;
        if self.now - since > deadline {
            if self.stage() == Stage::FirstDeploy {
                self.hold(Hold::stalled(
                    "ProgressDeadlineExceeded",
                    format!("{waiting} for longer than {}", self.spec.progress_deadline),
                ));
            } else {
                let message = format!("{waiting} for longer than {}", self.spec.progress_deadline);
                self.roll_back(revision, RollbackReason::ProgressDeadlineExceeded, None, message);
            }
        } else {
            self.hold(Hold::Waiting(waiting));
        }
        false
    }

    /// Whether the analysis lets the weight grow: every check passed in an evaluation newer
    /// than the last weight increase. Inconclusive holds as Paused (never promote blind).
    pub(super) fn analysis_allows_increase(&mut self, step: Option<&CanaryStep>) -> bool {
        if self.spec.analysis.is_none() || self.st.desired_weight == 0 || step_skips_analysis(step) {
            return true;
        }
        let since = self.st.weight_increased_at.as_ref().map_or(i64::MIN, secs);
        let hold = match self.analysis_since(since) {
            AnalysisSince::AllPassed => return true,
            AnalysisSince::NoRun => Hold::Waiting("waiting for an analysis run at the current weight".into()),
            AnalysisSince::NotPassing(c) => Hold::Paused(format!(
                "analysis check {} is {:?}: {}",
                c.name,
                c.verdict,
                c.message.as_deref().unwrap_or("no detail")
            )),
        };
        self.hold(hold);
        false
    }
}
