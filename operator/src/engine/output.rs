//! What a decision ends with: phase and conditions, the plan (pods, rotation, weights per
//! revision), the probes and analysis due, and when to look again.

use super::prelude::*;

impl<'a> Engine<'a> {
    pub(super) fn finish(mut self) -> Decision {
        let stage = self.stage();
        self.set_stage(stage);
        let live = self.live_revisions();
        self.st.probes.retain(|p| live.contains(&p.revision));
        let mut plan_revisions = self.plan_revisions(stage);
        let drains = self.st.drains.len();
        self.drain_surplus_pods(&plan_revisions);
        if self.st.drains.len() != drains {
            plan_revisions = self.plan_revisions(stage);
        }
        let (phase, reason, message) = self.phase(stage);
        self.st.phase = Some(phase);
        self.st.message = Some(message.clone());
        self.st.observed_generation = self.generation;
        self.st.effective_weight = self.effective_weight();
        self.st.conditions = conditions::for_phase(
            phase,
            &reason,
            &message,
            self.generation,
            &self.st.conditions,
            &time(self.now),
        );
        let probes = self.due_probes(stage);
        let analysis = self.due_analysis(stage);
        let requeue_after = Some(self.requeue_after(stage));
        let workload = self.workload_action();
        Decision {
            status: self.st,
            plan: Plan {
                revisions: plan_revisions,
                probes,
                analysis,
                events: self.events,
                requeue_after,
                workload,
                gate_calls: self.gate_calls,
            },
        }
    }

    pub(super) fn plan_revisions(&self, stage: Stage) -> Vec<RevisionPlan> {
        let total = self.total();
        let mut plan = Vec::new();
        let canary = self.st.canary_revision.clone();
        let weight = self.st.desired_weight;
        match (stage, &self.st.stable_revision, &canary) {
            (Stage::FirstDeploy, _, Some(c)) => {
                // Out of rotation until it is stable (the same decision its gates pass), so a
                // candidate replaced before then never had traffic to drain.
                plan.push(revision_plan(c, Role::Canary, total, 0, 100));
            }
            (Stage::Canary, Some(s), Some(c)) => {
                let next = self.next_canary_target();
                let replicas = replicas_for(total, next.max(weight)).max(1);
                let canary_pods = replicas_for(total, weight).max(self.tool_routed_pods(c));
                // Pod ratios are the plain-Service router's weights; a route weights exactly,
                // with every pod of both revisions behind its own Service.
                let stable_pods = if self.exact_weights() {
                    total
                } else {
                    super::traffic::stable_pods_for(canary_pods, weight, total)
                };
                plan.push(revision_plan(s, Role::Stable, total, stable_pods, 100 - weight));
                plan.push(revision_plan(c, Role::Canary, replicas, canary_pods, weight));
            }
            (Stage::Preview, Some(s), Some(c)) => {
                plan.push(revision_plan(s, Role::Stable, total, total, 100));
                plan.push(revision_plan(c, Role::Canary, self.preview_replicas(), 0, 0));
            }
            (Stage::PostPromotion, Some(s), Some(c)) => {
                plan.push(revision_plan(c, Role::Canary, total, total, 100));
                plan.push(revision_plan(s, Role::Draining, total, 0, 0));
            }
            (_, Some(s), _) => plan.push(revision_plan(s, Role::Stable, total, total, 100)),
            // Stages never derived without a stable revision.
            _ => {}
        }
        for d in &self.st.drains {
            // Every pod it runs stays while it drains, also pods that came up since it began.
            let running = self.observed.revision(&d.revision).map_or(0, |o| o.pods);
            let d = &DrainStatus { replicas: d.replicas.max(running), ..d.clone() };
            match plan.iter_mut().find(|p| p.revision == d.revision) {
                // Restarted under a new role before its drain ended, or serving on while some
                // of its pods leave: keep the draining pods, out of rotation.
                Some(p) => {
                    // Some pods leaving: the revision runs them beside the pods it is planned
                    // to serve with (more started if `replicas` was raised meanwhile). Drained:
                    // down by exactly them; lowered further meanwhile, the rest leave through
                    // a drain of their own once these are gone.
                    let leaving = i32::try_from(d.pods.len()).unwrap_or(i32::MAX);
                    p.replicas = match (d.pods.is_empty(), d.drained_at.is_some()) {
                        (true, _) => p.replicas.max(d.replicas),
                        (false, false) => (p.replicas + leaving).max(d.replicas),
                        (false, true) => p.replicas.max(d.replicas - leaving),
                    };
                    p.leaving.clone_from(&d.pods);
                }
                None => plan.push(revision_plan(&d.revision, Role::Draining, d.replicas, 0, 0)),
            }
        }
        plan
    }

    /// Canary pods in rotation for the router's tool routes alone (a step at weight 0 with
    /// tools routed to the canary): one, once a probe of it passed in this rollout.
    fn tool_routed_pods(&self, canary: &str) -> i32 {
        let routes = self.spec.traffic_routing.as_ref().and_then(|t| t.mcp_router.as_ref());
        let started = self.st.rollout_started_at.as_ref().map_or(i64::MIN, secs);
        let routed = routes.is_some_and(|r| r.tool_routes.iter().any(|t| t.weight > 0));
        i32::from(routed && self.passing_probe(canary, 1, started))
    }

    pub(super) fn phase(&self, stage: Stage) -> (Phase, String, String) {
        match (&self.hold, stage) {
            (Some(Hold::Stalled { reason, message }), _) => {
                (Phase::Degraded, reason.clone(), message.clone())
            }
            (Some(Hold::Paused(m)), _) => (Phase::Paused, "Paused".into(), m.clone()),
            (Some(Hold::Waiting(m)), _) => (Phase::Progressing, "Progressing".into(), m.clone()),
            (None, Stage::Steady) => {
                let stable = self.st.stable_revision.clone().unwrap_or_default();
                let mut message = format!("revision {stable} serves all traffic");
                if let Some(w) =
                    self.st.workload.as_ref().filter(|w| w.phase == crate::api::WorkloadPhase::Draining)
                {
                    message.push_str(&format!("; Deployment {} drains before it is let go", w.name));
                }
                (Phase::Healthy, "RolloutComplete".into(), message)
            }
            (None, _) => (Phase::Progressing, "Progressing".into(), "rolling out".into()),
        }
    }

    pub(super) fn due_probes(&self, stage: Stage) -> Vec<ProbeRequest> {
        let interval = self.spec.probe.interval.as_secs() as i64;
        let step_start = self.st.step_started_at.as_ref().map_or(i64::MIN, secs);
        let stale = |revision: &str, needs_newer_than: i64| {
            self.last_probe_at(revision).is_none_or(|at| at + interval <= self.now || at <= needs_newer_than)
        };
        let mut due = Vec::new();
        if let Some(stable) = &self.st.stable_revision
            && stale(stable, i64::MIN)
        {
            due.push(ProbeRequest { revision: stable.clone(), baseline: None });
        }
        if let Some(canary) = &self.st.canary_revision {
            let needs_fresh = !matches!(stage, Stage::PostPromotion);
            if stale(canary, if needs_fresh { step_start } else { i64::MIN }) {
                due.push(ProbeRequest {
                    revision: canary.clone(),
                    baseline: self.st.stable_revision.clone(),
                });
            }
        }
        due
    }

    pub(super) fn due_analysis(&self, stage: Stage) -> Option<AnalysisRequest> {
        let analysis = self.spec.analysis.as_ref()?;
        let canary = self.st.canary_revision.clone()?;
        let stable = self.st.stable_revision.clone()?;
        let step = match self.spec.strategy.kind() {
            StrategyRef::Canary(c) => {
                let index = self.step_index();
                self.weighted_step(&c.steps, index.saturating_add(1))
            }
            StrategyRef::BlueGreen(_) => None,
        };
        let measuring = match stage {
            Stage::Canary => self.st.desired_weight > 0 && !step_skips_analysis(step),
            Stage::Preview | Stage::PostPromotion => true,
            _ => false,
        };
        let due =
            self.last_analysis_at().is_none_or(|at| at + analysis.interval.as_secs() as i64 <= self.now);
        if !(measuring && due) {
            return None;
        }
        let first_weighted = match self.spec.strategy.kind() {
            StrategyRef::Canary(c) => c.steps.iter().find(|s| s.set_weight.is_some_and(|w| w > 0)),
            StrategyRef::BlueGreen(_) => None,
        };
        let at_first_step = stage == Stage::Canary
            && first_weighted.and_then(|s| s.set_weight) == Some(self.st.desired_weight);
        let max_error_rate_ratio = step
            .and_then(|s| s.analysis.as_ref())
            .and_then(|a| a.max_error_rate_ratio)
            .unwrap_or(if at_first_step {
                analysis.checks.error_rate.first_step_max_ratio
            } else {
                analysis.checks.error_rate.max_ratio
            });
        let min_request_count = step
            .and_then(|s| s.analysis.as_ref())
            .and_then(|a| a.min_request_count)
            .unwrap_or(analysis.min_request_count);
        Some(AnalysisRequest { canary, stable, max_error_rate_ratio, min_request_count })
    }

    /// The soonest moment something time-based can change, clamped to [1s, probe interval].
    pub(super) fn requeue_after(&self, stage: Stage) -> Duration {
        let probe_interval = self.spec.probe.interval.as_secs().max(1) as i64;
        let mut next = self.now + probe_interval;
        let mut consider = |at: i64| next = next.min(at.max(self.now + 1));
        let max = self.spec.drain.max.as_secs() as i64;
        for d in &self.st.drains {
            consider(secs(&d.started_at) + d.window_seconds);
            consider(secs(&d.started_at) + max.max(d.window_seconds));
        }
        if let Some(end) = self.workload_drain_ends_at() {
            consider(end);
        }
        if let Some(at) = self.gates_wake_at {
            consider(at);
        }
        if let Some(a) = &self.spec.analysis {
            let last = self.last_analysis_at().unwrap_or(self.now);
            if matches!(stage, Stage::Canary | Stage::Preview | Stage::PostPromotion) {
                consider(last + a.interval.as_secs() as i64);
            }
        }
        let step_start = self.st.step_started_at.as_ref().map(secs);
        match (stage, self.spec.strategy.kind()) {
            (Stage::Canary, StrategyRef::Canary(c)) => {
                let index = self.step_index();
                if let (Some(d), Some(start)) =
                    (c.steps.get(index).and_then(|s| s.pause.as_ref()).and_then(|p| p.duration), step_start)
                {
                    consider(start + d.as_secs() as i64);
                }
            }
            (Stage::Preview, StrategyRef::BlueGreen(b)) => {
                if let Some(ready) = self.st.preview_ready_at.as_ref().map(secs) {
                    consider(ready + b.auto_promote_after.map_or(0, |d| d.as_secs() as i64));
                }
            }
            (Stage::PostPromotion, StrategyRef::BlueGreen(b)) => {
                if let Some(p) = self.st.promoted_at.as_ref().map(secs) {
                    consider(p + b.post_promotion_window.as_secs() as i64);
                }
            }
            _ => {}
        }
        if matches!(stage, Stage::FirstDeploy | Stage::Canary | Stage::Preview)
            && let Some(start) = step_start
        {
            consider(start + self.spec.progress_deadline.as_secs() as i64 + 1);
        }
        Duration::from_secs((next - self.now).clamp(1, probe_interval) as u64)
    }
}
