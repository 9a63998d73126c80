//! Rollback triggers, checked while a new revision is live: crashes, probe failures, an
//! incompatible schema, failing analysis, an abort.

use super::prelude::*;

impl<'a> Engine<'a> {
    pub(super) fn check_triggers(&mut self) {
        let stage = self.stage();
        let Some(canary) = self.st.canary_revision.clone() else {
            return;
        };
        if !matches!(stage, Stage::FirstDeploy | Stage::Canary | Stage::Preview | Stage::PostPromotion) {
            return;
        }
        if let Some((reason, check, message)) = self.failed_trigger(&canary) {
            if stage == Stage::FirstDeploy {
                self.hold(Hold::stalled(
                    "FirstDeployFailing",
                    format!("revision {canary} cannot become stable: {message}"),
                ));
                return;
            }
            self.roll_back(&canary, reason, check, message);
        }
    }

    /// The first rollback trigger that fires for the new revision, with its numbers.
    pub(super) fn failed_trigger(&self, canary: &str) -> Option<(RollbackReason, Option<String>, String)> {
        if self.abort_now {
            return Some((RollbackReason::Aborted, None, "aborted by request".into()));
        }
        let crash = self.spec.analysis.as_ref().map(|a| a.checks.crash.clone()).unwrap_or_default();
        // A first deploy has nothing to roll back to, and restart counts never go down: only
        // an ongoing crash loop holds it. A canary is judged on any crash, as the seeds ask.
        let first_deploy = self.st.stable_revision.is_none();
        if let Some(pods) = self.observed.revision(canary).filter(|_| crash.enabled)
            && (pods.crash_looping || (!first_deploy && pods.restarts > crash.max_restarts))
        {
            return Some((
                RollbackReason::Crashed,
                Some("crash".into()),
                format!(
                    "revision {canary}: {} container restart(s) (tolerated {}){}",
                    pods.restarts,
                    crash.max_restarts,
                    if pods.crash_looping { ", crash-looping" } else { "" }
                ),
            ));
        }
        if let Some(probe) = self.st.probes.iter().find(|p| p.revision == canary) {
            if probe.schema_compatible == Some(false) {
                return Some((
                    RollbackReason::IncompatibleSchema,
                    Some("schema".into()),
                    probe.message.clone().unwrap_or_else(|| "tool schemas are incompatible".into()),
                ));
            }
            if probe.consecutive_failures >= self.spec.probe.failure_limit {
                return Some((
                    RollbackReason::ProbeFailed,
                    Some("probe".into()),
                    format!(
                        "{} consecutive probe failures (limit {}): {}",
                        probe.consecutive_failures,
                        self.spec.probe.failure_limit,
                        probe.message.as_deref().unwrap_or("no detail")
                    ),
                ));
            }
        }
        let analysis = self.spec.analysis.as_ref()?;
        self.st.analysis.iter().find_map(|check| {
            let limit = analysis
                .metrics
                .iter()
                .find(|m| m.name == check.name)
                .map_or(analysis.failure_limit, |m| m.failure_limit);
            (check.consecutive_failures >= limit).then(|| {
                (
                    RollbackReason::AnalysisFailed,
                    Some(check.name.clone()),
                    format!(
                        "check {} failed {} time(s) in a row: value {} against threshold {}{}",
                        check.name,
                        check.consecutive_failures,
                        check.value.map_or("n/a".into(), |v| format!("{v:.4}")),
                        check.threshold.map_or("n/a".into(), |v| format!("{v:.4}")),
                        check.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
                    ),
                )
            })
        })
    }
}
