//! Folding new probe and analysis results into status (only newer ones count).

use super::prelude::*;

/// How often, at rest, a passing probe of stable that finds nothing new is still written to
/// status (its `at`): at most one status write per rollout per this period when nothing moves.
pub(super) const PROBE_AT_REST_REFRESH: Duration = Duration::from_secs(600);

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
            // At rest (no rollout in flight), a passing probe of stable that finds what the
            // last one found is not written: a status write is a watch event for every client
            // and another reconcile, and at rest nothing a user would look at changed. The time
            // is still refreshed every `PROBE_AT_REST_REFRESH`, and `due_probes` reads the
            // workers' latest report, so probing keeps its interval.
            if let Some(i) = previous
                && self.st.canary_revision.is_none()
                && self.st.stable_revision.as_deref() == Some(report.revision.as_str())
                // ... and stays at rest: the spec's template is stable's (a changed one starts a
                // rollout in this very decision, which records every probe).
                && self.desired == report.revision
                && same_finding(&self.st.probes[i], report)
                && at - secs(&self.st.probes[i].at) < PROBE_AT_REST_REFRESH.as_secs() as i64
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
        if self.predates_current_rollout(&report.revision, at)
            || self.st.analysis.iter().any(|c| secs(&c.at) >= at)
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
    /// workers last reported (at rest a repeated finding is not written to status).
    pub(super) fn last_probe_at(&self, revision: &str) -> Option<i64> {
        let stored = self.st.probes.iter().find(|p| p.revision == revision).map(|p| secs(&p.at));
        let reported = self.observed.probe(revision).map(|r| r.at.as_second());
        stored.max(reported)
    }

    /// Whether a result for the new revision predates its current rollout (a replaced and
    /// re-applied template, or a retry): such a result must not count for or against it.
    pub(super) fn predates_current_rollout(&self, revision: &str, at: i64) -> bool {
        self.st.canary_revision.as_deref() == Some(revision)
            && self.st.rollout_started_at.as_ref().is_some_and(|started| at <= secs(started))
    }
}
