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
        // Time at a change gate is a person's (or a freeze's), not the revision's: no deadline
        // while one waits, and the clock restarts when the last one opened.
        let gate_waits = self.st.gates.iter().any(|g| g.state == crate::api::GateState::Waiting);
        let progress_since = self.st.gates.iter().map(|g| secs(&g.since)).fold(since, i64::max);
        let deadline = self.spec.progress_deadline.as_secs() as i64;
        if !gate_waits && self.now - progress_since > deadline {
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

    /// Whether the analysis lets the weight grow: every check passed in an evaluation whose
    /// whole window was measured at the current weight, i.e. made at least the longest check
    /// window after the last weight increase. An evaluation right after the increase sees a
    /// second or two of the canary at its new weight — a 10%-failing canary passes such a
    /// sample about half the time. Inconclusive holds as Paused (never promote blind).
    pub(super) fn analysis_allows_increase(&mut self, step: Option<&CanaryStep>) -> bool {
        let Some(analysis) = self.spec.analysis.as_ref() else { return true };
        if self.st.desired_weight == 0 || step_skips_analysis(step) {
            return true;
        }
        let window = analysis_window(analysis);
        let since = self.st.weight_increased_at.as_ref().map_or(i64::MIN, secs).saturating_add(window);
        let hold = match self.analysis_since(since) {
            AnalysisSince::AllPassed => return true,
            AnalysisSince::NoRun => Hold::Waiting(format!(
                "waiting for an analysis whose whole {window}s window is at the current weight"
            )),
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

/// The longest window an enabled check judges, in seconds: the sustained windows of the error
/// and latency checks, the evaluation interval of the others.
#[allow(clippy::cast_possible_wrap)]
pub(super) fn analysis_window(analysis: &crate::api::AnalysisSpec) -> i64 {
    let checks = &analysis.checks;
    let sustained = [
        checks.error_rate.enabled.then_some(checks.error_rate.sustain.as_secs()),
        checks.latency.enabled.then_some(checks.latency.sustain.as_secs()),
    ];
    sustained.into_iter().flatten().fold(analysis.interval.as_secs(), u64::max) as i64
}
