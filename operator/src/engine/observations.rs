//! Folding new probe and analysis results into status (only newer ones count).

use super::prelude::*;

/// How often a result that finds what status already holds (a passing probe of the same pods
/// and tools, an analysis with the same verdicts) is still written to status (its `at`): at
/// most one status write per rollout per this period while nothing moves, at rest or held at
/// a step.
pub(super) const UNCHANGED_RESULT_REFRESH: Duration = Duration::from_secs(600);

/// A passing probe that found what the stored one found: same pods, tools, protocol versions,
/// schema verdict and message.
fn same_finding(stored: &ProbeStatus, report: &ProbeReport) -> bool {
    stored.passed
        && report.passed
        && stored.consecutive_failures == 0
        && stored.pods == report.pods
        && stored.tool_count == report.tool_count
        && stored.protocol_versions == report.protocol_versions
        && stored.schema_compatible == report.schema_compatible
        && stored.schema_change == report.schema_change
        && stored.message == report.message
}

/// An analysis run that judged every check as the stored one did: same checks, verdicts and
/// thresholds; a check not passing also with the same reason (its message says why it holds).
/// A failing check is never "the same": its streak grows.
fn same_verdicts(stored: &[CheckStatus], checks: &[CheckResult]) -> bool {
    stored.len() == checks.len()
        && checks.iter().all(|check| {
            stored.iter().any(|s| {
                s.name == check.name
                    && s.verdict == check.verdict
                    && s.threshold == check.threshold.filter(|v| v.is_finite())
                    && match check.verdict {
                        Verdict::Pass => true,
                        Verdict::Inconclusive => s.message == check.message,
                        Verdict::Fail => false,
                    }
            })
        })
}

impl<'a> Engine<'a> {
    /// Folds new probe and analysis results into status (only results newer than what status
    /// already holds count, so a repeated call changes nothing).
    pub(super) fn record_observations(&mut self) {
        let live: Vec<String> = self.live_revisions();
        self.st.probes.retain(|p| live.contains(&p.revision));
        for report in &self.observed.probes {
            if !live.contains(&report.revision) {
                continue;
            }
            let at = report.at.as_second();
            if self.predates_current_rollout(&report.revision, at) {
                continue;
            }
            let previous = self.st.probes.iter().position(|p| p.revision == report.revision);
            if previous.is_some_and(|i| secs(&self.st.probes[i].at) >= at) {
                continue;
            }
            // A passing probe that finds what the last one found is not written: a status
            // write is a watch event for every client and another reconcile, and nothing a
            // user would look at changed. With hundreds of rollouts held at a step, writing
            // every probe's time filled the reconcile slots (hack/bench.sh scale). The time is
            // still refreshed every `UNCHANGED_RESULT_REFRESH`, and `due_probes` reads the
            // workers' latest report, so probing keeps its interval.
            if let Some(i) = previous
                && same_finding(&self.st.probes[i], report)
                && self.repeat_needs_no_write(secs(&self.st.probes[i].at), at, &self.result_epochs())
            {
                continue;
            }
            let failures = match (report.passed, previous) {
                (true, _) => 0,
                (false, Some(i)) => self.st.probes[i].consecutive_failures.saturating_add(1),
                (false, None) => 1,
            };
            if !report.passed {
                self.events.push(Event::warning(
                    "ProbeFailed",
                    format!(
                        "MCP probe of revision {} failed ({} in a row): {}",
                        report.revision,
                        failures,
                        report.message.as_deref().unwrap_or("no detail")
                    ),
                ));
            }
            let status = ProbeStatus {
                revision: report.revision.clone(),
                passed: report.passed,
                at: time(at),
                consecutive_failures: failures,
                protocol_versions: report.protocol_versions.clone(),
                tool_count: report.tool_count,
                pods: report.pods,
                schema_compatible: report.schema_compatible,
                schema_change: report.schema_change,
                message: report.message.clone(),
            };
            match previous {
                Some(i) => self.st.probes[i] = status,
                None => self.st.probes.push(status),
            }
        }
        self.st.probes.sort_by(|a, b| a.revision.cmp(&b.revision));

        let Some(report) = &self.observed.analysis else {
            return;
        };
        if self.st.canary_revision.as_deref() != Some(report.revision.as_str()) {
            return;
        }
        let at = report.at.as_second();
        let stored_at = self.stored_analysis_at();
        if self.predates_current_rollout(&report.revision, at) || stored_at.is_some_and(|s| s >= at) {
            return;
        }
        // Same verdicts as status holds, and nothing the gates compare run times with (the
        // end of the window after the last weight increase, the step's start) lies between
        // the two runs: not written, as a probe's repeated finding is not. `last_analysis_at`
        // reads the report, so the next run keeps its interval.
        if let Some(stored_at) = stored_at
            && same_verdicts(&self.st.analysis, &report.checks)
            && self.repeat_needs_no_write(stored_at, at, &self.analysis_epochs())
        {
            return;
        }
        let checks = report
            .checks
            .iter()
            .map(|check| {
                let before = self.st.analysis.iter().find(|c| c.name == check.name);
                let failures = before.map_or(0, |c| c.consecutive_failures);
                CheckStatus {
                    name: check.name.clone(),
                    verdict: check.verdict,
                    value: check.value.filter(|v| v.is_finite()),
                    threshold: check.threshold.filter(|v| v.is_finite()),
                    consecutive_failures: match check.verdict {
                        Verdict::Fail => failures.saturating_add(1),
                        Verdict::Pass => 0,
                        // Missing data neither confirms nor clears a failure streak.
                        Verdict::Inconclusive => failures,
                    },
                    at: time(at),
                    message: check.message.clone(),
                }
            })
            .collect();
        self.st.analysis = checks;
    }

    /// When a probe was last run for `revision`: the latest of what status holds and what the
    /// workers last reported (a repeated finding is not written to status).
    pub(super) fn last_probe_at(&self, revision: &str) -> Option<i64> {
        let stored = self.st.probes.iter().find(|p| p.revision == revision).map(|p| secs(&p.at));
        let reported = self.observed.probe(revision).map(|r| r.at.as_second());
        stored.max(reported)
    }

    /// When the latest analysis run of the canary completed: the latest of what status holds
    /// and what the workers last reported (repeated verdicts are not written to status).
    pub(super) fn last_analysis_at(&self) -> Option<i64> {
        let reported = self
            .observed
            .analysis
            .as_ref()
            .filter(|r| self.st.canary_revision.as_deref() == Some(r.revision.as_str()))
            .map(|r| (r, r.at.as_second()))
            .filter(|(r, at)| !self.predates_current_rollout(&r.revision, *at))
            .map(|(_, at)| at);
        self.stored_analysis_at().max(reported)
    }

    /// When the analysis run status holds completed.
    fn stored_analysis_at(&self) -> Option<i64> {
        self.st.analysis.iter().map(|c| secs(&c.at)).max()
    }

    /// The moments the engine compares a result's time with: the rollout's start, the step's,
    /// the weight's last increase, the flip, the preview's readiness.
    fn result_epochs(&self) -> Vec<i64> {
        [
            &self.st.rollout_started_at,
            &self.st.step_started_at,
            &self.st.weight_increased_at,
            &self.st.promoted_at,
            &self.st.preview_ready_at,
        ]
        .into_iter()
        .flatten()
        .map(secs)
        .collect()
    }

    /// As `result_epochs`, and the end of the window after the last weight increase: the
    /// analysis gate asks for a run whose whole window is at the current weight.
    fn analysis_epochs(&self) -> Vec<i64> {
        let mut epochs = self.result_epochs();
        if let (Some(analysis), Some(increased)) = (&self.spec.analysis, &self.st.weight_increased_at) {
            epochs.push(secs(increased).saturating_add(super::gates::analysis_window(analysis)));
        }
        epochs
    }

    /// Whether a repeated result (completed at `at`) need not be written over the stored one
    /// (completed at `stored_at`): the stored one is younger than `UNCHANGED_RESULT_REFRESH`
    /// and answers everything the engine asks as the new one would — no moment it is
    /// compared with lies between them, and the spec's template is one status already knows
    /// (stable, the canary or the one rolled back: a changed one starts a rollout in this very
    /// decision, which records every result).
    fn repeat_needs_no_write(&self, stored_at: i64, at: i64, epochs: &[i64]) -> bool {
        let desired = Some(self.desired.as_str());
        let tracked = self.st.stable_revision.as_deref() == desired
            || self.st.canary_revision.as_deref() == desired
            || self.st.rollback.as_ref().map(|r| r.revision.as_str()) == desired;
        at - stored_at < UNCHANGED_RESULT_REFRESH.as_secs() as i64
            && tracked
            && epochs.iter().all(|&epoch| (stored_at > epoch) == (at > epoch))
    }

    /// Whether a result for the new revision predates its current rollout (a replaced and
    /// re-applied template, or a retry): such a result must not count for or against it.
    pub(super) fn predates_current_rollout(&self, revision: &str, at: i64) -> bool {
        self.st.canary_revision.as_deref() == Some(revision)
            && self.st.rollout_started_at.as_ref().is_some_and(|started| at <= secs(started))
    }
}
