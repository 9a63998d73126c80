//! Scenario tests of the engine: each behaviour of the rollout, step by step, with no cluster,
//! no network and a clock the test moves.

use jiff::Timestamp;
use serde_json::json;

use super::{core::secs, prelude::*, *};
use crate::api::{McpRolloutSpec, RollbackReason, revision_of};

pub(super) const T0: i64 = 1_800_000_000;

/// A test harness: the engine's inputs, and the last decision.
pub(super) struct World {
    pub spec: McpRolloutSpec,
    pub status: McpRolloutStatus,
    pub observed: Observed,
    pub now: i64,
    pub last: Option<Decision>,
    pub events: Vec<Event>,
    /// What the canary's probes find of its tools against stable's.
    pub schema_change: Option<crate::api::SchemaChange>,
}

pub(super) fn spec(strategy: serde_json::Value, image: &str) -> McpRolloutSpec {
    serde_json::from_value(json!({
        "replicas": 4,
        "template": {"spec": {"containers": [{"name": "server", "image": image}]}},
        "strategy": strategy,
        "probe": {"interval": "10s", "timeout": "5s", "failureLimit": 3},
        "drain": {"min": "60s", "max": "300s"},
        "progressDeadline": "10m"
    }))
    .unwrap()
}

pub(super) fn canary_steps() -> serde_json::Value {
    json!({"canary": {"steps": [
        {"setWeight": 5}, {"pause": {"duration": "30s"}},
        {"setWeight": 25}, {"pause": {}},
        {"setWeight": 50}
    ]}})
}

impl World {
    pub fn new(spec: McpRolloutSpec) -> Self {
        Self {
            spec,
            status: McpRolloutStatus::default(),
            observed: Observed::default(),
            now: T0,
            last: None,
            events: vec![],
            schema_change: None,
        }
    }

    pub fn revision(&self) -> String {
        revision_of(&self.spec.template)
    }

    pub fn decide(&mut self) -> &Decision {
        let input = Input {
            spec: &self.spec,
            generation: Some(1),
            status: &self.status,
            observed: &self.observed,
            now: Timestamp::from_second(self.now).unwrap(),
        };
        let decision = decide(&input);
        self.status = decision.status.clone();
        self.events.extend(decision.plan.events.iter().cloned());
        self.last = Some(decision);
        self.last.as_ref().unwrap()
    }

    pub fn plan(&self) -> &Plan {
        &self.last.as_ref().unwrap().plan
    }

    pub fn tick(&mut self, secs: i64) -> &Decision {
        self.now += secs;
        self.decide()
    }

    /// The reconciler's part: every planned revision gets its pods ready, the planned number
    /// in rotation.
    pub fn pods_follow_plan(&mut self) {
        let plan = self.plan().clone();
        self.observed.revisions = plan
            .revisions
            .iter()
            .map(|r| RevisionObserved {
                revision: r.revision.clone(),
                pods: r.replicas,
                pod_names: (0..r.replicas).map(|i| format!("{}-{i}", r.revision)).collect(),
                in_endpoints: r.in_rotation,
                ready: r.replicas,
                ready_in_rotation: r.in_rotation,
                restarts: self.observed.revision(&r.revision).map_or(0, |o| o.restarts),
                crash_looping: false,
            })
            .collect();
    }

    /// The probes the plan asked for run now, all with the given outcome.
    pub fn run_probes(&mut self, passed: bool) {
        let requests = self.plan().probes.clone();
        for request in requests {
            let pods = self.observed.revision(&request.revision).map_or(0, |r| r.ready);
            self.set_probe(&request.revision, passed, pods, Some(true));
        }
    }

    pub fn set_probe(&mut self, revision: &str, passed: bool, pods: i32, schema_compatible: Option<bool>) {
        self.observed.probes.retain(|p| p.revision != revision);
        self.observed.probes.push(ProbeReport {
            revision: revision.to_owned(),
            at: Timestamp::from_second(self.now).unwrap(),
            passed,
            pods,
            schema_compatible,
            schema_change: schema_compatible.and(self.schema_change),
            protocol_versions: vec!["2025-06-18".into(), "2026-07-28".into()],
            tool_count: Some(3),
            message: (!passed).then(|| "initialize: HTTP 503".to_owned()),
        });
    }

    pub fn set_analysis(&mut self, revision: &str, verdict: Verdict) {
        self.observed.analysis = Some(AnalysisReport {
            revision: revision.to_owned(),
            at: Timestamp::from_second(self.now).unwrap(),
            checks: vec![CheckResult {
                name: "errorRate".into(),
                verdict,
                value: Some(if verdict == Verdict::Fail { 5.0 } else { 1.0 }),
                threshold: Some(2.0),
                message: None,
            }],
        });
    }

    /// One reconcile round: decide, pods follow, probes run and pass, decide again.
    pub fn round(&mut self, secs: i64) {
        self.tick(secs);
        self.pods_follow_plan();
        self.run_probes(true);
        self.decide();
        self.pods_follow_plan();
    }

    pub fn request(&mut self, action: &str) {
        self.observed.request = Some(format!("{action}@{}", self.now));
    }

    pub fn weight(&self) -> i32 {
        self.status.desired_weight
    }

    pub fn saw(&self, reason: &str) -> bool {
        self.events.iter().any(|e| e.reason == reason)
    }
}

/// A rollout whose first revision is stable, then a new template applied.
pub(super) fn with_stable_then(strategy: serde_json::Value, analysis: bool) -> (World, String, String) {
    let mut w = World::new(spec(strategy, "mcp-fixture:v1"));
    if analysis {
        w.spec.analysis = Some(
            serde_json::from_value(json!({"prometheus": {"address": "http://prom:9090"}, "interval": "10s"}))
                .unwrap(),
        );
    }
    for _ in 0..3 {
        w.round(1);
    }
    let stable = w.revision();
    assert_eq!(w.status.stable_revision.as_deref(), Some(stable.as_str()));
    w.spec.template.spec.as_mut().unwrap().containers[0].image = Some("mcp-fixture:v2".into());
    let canary = w.revision();
    w.decide();
    (w, stable, canary)
}

#[test]
fn first_deploy_becomes_stable_once_ready_and_probed_with_no_canary() {
    let mut w = World::new(spec(canary_steps(), "mcp-fixture:v1"));
    let rev = w.revision();
    let d = w.decide().clone();
    assert_eq!(d.status.phase, Some(Phase::Progressing));
    assert_eq!(d.plan.revisions.len(), 1);
    assert_eq!(d.plan.revisions[0].replicas, 4);
    assert_eq!(d.plan.revisions[0].in_rotation, 0, "nothing in rotation before a probe passes");
    assert_eq!(d.plan.probes, vec![ProbeRequest { revision: rev.clone(), baseline: None }]);

    w.tick(1);
    w.pods_follow_plan();
    w.tick(1);
    w.run_probes(true);
    let d = w.decide().clone();
    assert_eq!(d.status.stable_revision.as_deref(), Some(rev.as_str()));
    assert_eq!(d.status.canary_revision, None);
    assert_eq!(d.plan.revisions[0].in_rotation, 4);
    assert_eq!(d.plan.revisions[0].weight, 100);
    assert!(w.saw("Promoted"));
    // Stable, but not Healthy until the Service routes to it: its pods are not in the
    // endpoints until the plan's rotation is applied.
    assert_eq!(d.status.phase, Some(Phase::Progressing));
    assert!(
        d.status.message.as_deref().unwrap_or_default().contains("waiting for the Service"),
        "{:?}",
        d.status.message
    );
    w.tick(1);
    w.pods_follow_plan();
    let d = w.decide().clone();
    assert_eq!(d.status.phase, Some(Phase::Healthy));
    let ready = d.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
}

#[test]
fn first_deploy_that_never_passes_is_stalled_not_rolled_back() {
    let mut w = World::new(spec(canary_steps(), "mcp-fixture:v1"));
    w.decide();
    w.pods_follow_plan();
    for _ in 0..70 {
        w.tick(10);
        w.run_probes(false);
    }
    w.decide();
    assert_eq!(w.status.phase, Some(Phase::Degraded));
    assert_eq!(w.status.rollback, None);
    let stalled = w.status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(stalled.status, "True");
    assert!(stalled.message.contains("cannot become stable"), "{}", stalled.message);
}

#[test]
fn canary_happy_path_walks_every_step_then_drains_the_old_stable() {
    let (mut w, stable, canary) = with_stable_then(canary_steps(), false);
    assert_eq!(w.status.canary_revision.as_deref(), Some(canary.as_str()));
    assert_eq!(w.weight(), 0);
    // Sized for 5% of 4 = 1 pod, kept out of rotation until probed.
    let c = w.plan().revision(&canary).unwrap().clone();
    assert_eq!((c.replicas, c.in_rotation, c.weight), (1, 0, 0));

    w.round(1);
    assert_eq!(w.weight(), 5);
    assert_eq!(w.status.current_step_index, Some(1));
    let c = w.plan().revision(&canary).unwrap().clone();
    let s = w.plan().revision(&stable).unwrap().clone();
    assert_eq!((c.in_rotation, c.weight, s.weight, s.replicas), (1, 5, 95, 4));

    w.round(10);
    assert_eq!(w.status.current_step_index, Some(1), "soaking for 30s");
    w.round(25);
    // Soak done → setWeight 25: the second canary pod comes up out of rotation, and the
    // probe that lets it in must be newer than the scale-up (the next second).
    assert_eq!((w.weight(), w.status.current_step_index), (5, Some(2)));
    assert_eq!(w.plan().revision(&canary).unwrap().in_rotation, 1, "new pod not in rotation yet");
    w.round(1);
    // → indefinite pause.
    assert_eq!(w.weight(), 25);
    assert_eq!(w.status.current_step_index, Some(3));
    assert_eq!(w.status.phase, Some(Phase::Paused));
    w.round(100);
    assert_eq!(w.status.current_step_index, Some(3), "an indefinite pause waits for a human");

    w.request("promote");
    w.round(1);
    w.round(1);
    assert_eq!(w.weight(), 50);
    w.round(1);
    assert_eq!(w.plan().revision(&canary).unwrap().replicas, 4, "sized for 100% before promotion");
    w.round(1);
    // End of steps: promotion to 100% = the canary becomes stable.
    assert_eq!(w.status.stable_revision.as_deref(), Some(canary.as_str()));
    assert_eq!(w.status.canary_revision, None);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    let old = w.plan().revision(&stable).unwrap().clone();
    assert_eq!((old.role, old.in_rotation, old.weight, old.replicas), (Role::Draining, 0, 0, 4));
    assert_eq!(w.status.drains[0].window_seconds, 300, "no measurement → drain.max");

    let drain_start = secs(&w.status.drains[0].started_at);
    w.round(drain_start + 299 - w.now);
    assert!(w.plan().revision(&stable).is_some(), "still draining at 299s");
    w.round(1);
    assert!(w.plan().revision(&stable).is_none(), "drained, then removed");
    for reason in
        ["RolloutStarted", "WeightIncreased", "StepAdvanced", "Promoted", "DrainStarted", "DrainFinished"]
    {
        assert!(w.saw(reason), "no {reason} event");
    }
}

#[test]
fn no_weight_increase_without_a_probe_newer_than_the_scale_up() {
    let (mut w, _, canary) = with_stable_then(canary_steps(), false);
    w.tick(1);
    w.pods_follow_plan();
    // A passing probe from before the step started does not count.
    w.observed.probes.push(ProbeReport {
        revision: canary.clone(),
        at: Timestamp::from_second(T0 - 100).unwrap(),
        passed: true,
        pods: 1,
        schema_compatible: Some(true),
        schema_change: None,
        protocol_versions: vec![],
        tool_count: Some(3),
        message: None,
    });
    w.decide();
    assert_eq!(w.weight(), 0);
    assert!(w.plan().probes.iter().any(|p| p.revision == canary), "a fresh probe is due");
    w.tick(1);
    w.set_probe(&canary, true, 1, Some(true));
    w.decide();
    assert_eq!(w.weight(), 5);
}

#[test]
fn crash_rolls_back_at_once_and_stable_keeps_all_traffic() {
    let (mut w, stable, canary) = with_stable_then(canary_steps(), false);
    w.round(1);
    assert_eq!(w.weight(), 5);
    w.observed.revisions.iter_mut().find(|r| r.revision == canary).unwrap().restarts = 1;
    w.tick(1);
    let rollback = w.status.rollback.clone().unwrap();
    assert_eq!(rollback.reason, RollbackReason::Crashed);
    assert_eq!(rollback.revision, canary);
    assert!(rollback.message.contains("1 container restart(s)"), "{}", rollback.message);
    assert_eq!(w.plan().revision(&stable).unwrap().weight, 100);
    let c = w.plan().revision(&canary).unwrap();
    assert_eq!((c.role, c.in_rotation), (Role::Draining, 0));
    assert_eq!(w.status.phase, Some(Phase::Degraded));
    assert!(w.saw("RolledBack"));
}

#[test]
fn crash_loop_rolls_back_even_with_no_restart_counted() {
    let (mut w, _, canary) = with_stable_then(canary_steps(), false);
    w.tick(1);
    w.pods_follow_plan();
    w.observed.revisions.iter_mut().find(|r| r.revision == canary).unwrap().crash_looping = true;
    w.decide();
    assert_eq!(w.status.rollback.unwrap().reason, RollbackReason::Crashed);
}

#[test]
fn probe_failures_reaching_the_limit_roll_back() {
    let (mut w, _, canary) = with_stable_then(canary_steps(), false);
    w.round(1);
    assert_eq!(w.weight(), 5);
    for n in 1..=3 {
        w.tick(10);
        w.set_probe(&canary, false, 1, Some(true));
        w.decide();
        if n < 3 {
            assert_eq!(w.status.rollback, None, "{n} failures are below the limit of 3");
        }
    }
    let rollback = w.status.rollback.clone().unwrap();
    assert_eq!(rollback.reason, RollbackReason::ProbeFailed);
    assert!(rollback.message.contains("3 consecutive probe failures"), "{}", rollback.message);
}

#[test]
fn incompatible_schema_is_blocked_before_any_traffic() {
    let (mut w, _, canary) = with_stable_then(canary_steps(), false);
    w.tick(1);
    w.pods_follow_plan();
    w.observed.probes.clear();
    w.observed.probes.push(ProbeReport {
        revision: canary.clone(),
        at: Timestamp::from_second(w.now).unwrap(),
        passed: true,
        pods: 1,
        schema_compatible: Some(false),
        schema_change: None,
        protocol_versions: vec![],
        tool_count: Some(2),
        message: Some("tool removed: search_documents; required parameter added: get_document.tenant".into()),
    });
    w.decide();
    let rollback = w.status.rollback.clone().unwrap();
    assert_eq!(rollback.reason, RollbackReason::IncompatibleSchema);
    assert!(rollback.message.contains("search_documents"));
    assert_eq!(w.weight(), 0);
    assert!(w.plan().revision(&canary).is_none(), "never had traffic: nothing to drain");
}

#[test]
fn failing_analysis_rolls_back_with_the_numbers() {
    let (mut w, _, canary) = with_stable_then(canary_steps(), true);
    w.round(1);
    assert_eq!(w.weight(), 5);
    w.tick(10);
    w.set_analysis(&canary, Verdict::Fail);
    w.decide();
    let rollback = w.status.rollback.clone().unwrap();
    assert_eq!(rollback.reason, RollbackReason::AnalysisFailed);
    assert_eq!(rollback.check.as_deref(), Some("errorRate"));
    assert!(rollback.message.contains("value 5.0000 against threshold 2.0000"), "{}", rollback.message);
}

#[test]
fn after_a_rollback_status_says_no_canary_traffic_only_once_the_endpoints_show_it() {
    let (mut w, stable, canary) = with_stable_then(canary_steps(), true);
    w.round(1);
    assert_eq!(w.weight(), 5);
    w.pods_follow_plan();
    w.decide();
    let before = w.status.effective_weight;
    assert!(before > 0, "the canary serves before the breach: {before}");
    w.tick(10);
    w.set_analysis(&canary, Verdict::Fail);
    w.decide();
    assert!(w.status.rollback.is_some());
    assert_eq!(w.status.desired_weight, 0);
    // Decided, not done: the canary's pods are still the Service's endpoints.
    assert_eq!(w.status.effective_weight, before, "the rollback's own write must not claim 0 yet");
    // Out of rotation, and the EndpointSlices follow: now no traffic goes to it.
    w.pods_follow_plan();
    w.tick(1);
    assert_eq!(w.status.effective_weight, 0);
    assert_eq!(w.plan().revision(&stable).unwrap().weight, 100);
}

#[test]
fn the_weight_grows_only_on_a_pass_whose_whole_window_was_at_the_current_weight() {
    let (mut w, _, canary) = with_stable_then(canary_steps(), true);
    w.round(1);
    w.round(31); // soak done; next step needs analysis
    assert_eq!(w.weight(), 5);
    let increased = w.status.weight_increased_at.as_ref().map(|t| t.0.as_second()).unwrap();
    // Passes made less than the 300 s error window after the increase judge a window that
    // is partly before it: none lets the weight grow.
    while w.now < increased + 290 {
        w.tick(10);
        w.set_analysis(&canary, Verdict::Pass);
        w.run_probes(true);
        w.decide();
        assert_eq!(w.weight(), 5, "at {}s after the increase", w.now - increased);
    }
    assert!(w.status.message.as_deref().unwrap().contains("whole 300s window"), "{:?}", w.status.message);
    w.tick(20);
    w.set_analysis(&canary, Verdict::Pass);
    w.run_probes(true);
    w.decide();
    assert_eq!(w.weight(), 25);
}

#[test]
fn inconclusive_analysis_pauses_and_never_rolls_back_or_promotes() {
    let (mut w, _, canary) = with_stable_then(canary_steps(), true);
    w.round(1);
    w.round(31); // soak done; next step needs analysis
    assert_eq!(w.weight(), 5);
    // 30 rounds of 10 s: past the default 300 s error window, so the pass below is at weight.
    for _ in 0..30 {
        w.tick(10);
        w.set_analysis(&canary, Verdict::Inconclusive);
        w.run_probes(true);
        w.decide();
        assert_eq!(w.weight(), 5);
        assert_eq!(w.status.rollback, None);
    }
    assert_eq!(w.status.phase, Some(Phase::Paused));
    assert!(w.status.message.as_deref().unwrap().contains("Inconclusive"));
    w.tick(10);
    w.set_analysis(&canary, Verdict::Pass);
    w.run_probes(true);
    w.decide();
    assert_eq!(w.weight(), 25, "a conclusive pass resumes the rollout");
}

/// Low traffic (issue 22): an analysis that stays Inconclusive holds the rollout Paused for as
/// long as it lasts. The progress deadline is for pods and probes that never get there; a
/// pause for want of calls never reaches it and never rolls back.
#[test]
fn an_inconclusive_pause_outlasts_the_progress_deadline_without_a_rollback() {
    let (mut w, _, canary) = with_stable_then(canary_steps(), true);
    w.round(1);
    w.round(31);
    assert_eq!(w.weight(), 5);
    // 90 rounds of 10 s: 15 minutes, past the 10 m progressDeadline.
    for _ in 0..90 {
        w.tick(10);
        w.set_analysis(&canary, Verdict::Inconclusive);
        w.run_probes(true);
        w.decide();
    }
    assert_eq!((w.weight(), w.status.rollback.clone()), (5, None));
    assert_eq!(w.status.phase, Some(Phase::Paused));
}

/// Low traffic (issue 22): `promote` ends a pause step and nothing more — the next weight still
/// waits for a conclusive analysis, and held at a weight step it does not apply — while
/// `promote --full` goes to 100% without it (the human takes the analysis's place).
#[test]
fn promote_does_not_pass_an_inconclusive_gate_and_promote_full_does() {
    let (mut w, _, canary) = with_stable_then(canary_steps(), true);
    w.round(1);
    w.round(31); // the 30 s soak is over: step 2 (25%) waits for the analysis
    for _ in 0..31 {
        w.tick(10);
        w.set_analysis(&canary, Verdict::Inconclusive);
        w.run_probes(true);
        w.decide();
    }
    assert_eq!((w.weight(), w.status.phase), (5, Some(Phase::Paused)));
    w.request("promote");
    w.tick(10);
    w.set_analysis(&canary, Verdict::Inconclusive);
    w.run_probes(true);
    w.decide();
    assert_eq!(w.weight(), 5, "promote is for pauses, not for gates");
    assert!(w.saw("RequestIgnored"), "and says so");
    w.request("promote-full");
    w.round(10);
    w.round(10);
    assert_eq!(w.status.stable_revision.as_deref(), Some(canary.as_str()), "promote --full skips the gate");
}

#[test]
fn first_step_analysis_uses_the_progression_threshold() {
    let (mut w, _, _) = with_stable_then(canary_steps(), true);
    w.round(1);
    assert_eq!(w.weight(), 5);
    w.tick(10);
    let request = w.plan().analysis.clone().unwrap();
    assert_eq!(request.max_error_rate_ratio, 1.5);
    assert_eq!(request.min_request_count, 50);
}

#[test]
fn progress_deadline_rolls_back_a_canary_that_never_gets_ready() {
    let (mut w, _, _) = with_stable_then(canary_steps(), false);
    for _ in 0..61 {
        w.tick(10);
    }
    assert_eq!(w.status.rollback.unwrap().reason, RollbackReason::ProgressDeadlineExceeded);
}

fn blue_green(auto: bool) -> serde_json::Value {
    json!({"blueGreen": {"autoPromote": auto, "autoPromoteAfter": "20s", "postPromotionWindow": "5m"}})
}

#[test]
fn blue_green_flips_after_the_delay_then_finishes_after_window_and_drain() {
    let (mut w, blue, green) = with_stable_then(blue_green(true), false);
    let g = w.plan().revision(&green).unwrap().clone();
    assert_eq!((g.replicas, g.in_rotation, g.weight), (4, 0, 0), "preview at full size, no traffic");
    w.round(1);
    assert!(w.saw("PreviewReady"));
    assert_eq!(w.status.promoted_at, None, "waits autoPromoteAfter");
    w.round(20);
    assert!(w.saw("Flipped"));
    let g = w.plan().revision(&green).unwrap().clone();
    let b = w.plan().revision(&blue).unwrap().clone();
    assert_eq!((g.weight, g.in_rotation), (100, 4));
    assert_eq!((b.weight, b.in_rotation, b.replicas, b.role), (0, 0, 4, Role::Draining));
    // Blue's drain (300s) ends with the window; blue is kept until then regardless.
    w.round(200);
    assert!(w.plan().revision(&blue).is_some());
    w.round(101);
    assert_eq!(w.status.stable_revision.as_deref(), Some(green.as_str()));
    assert!(w.plan().revision(&blue).is_none(), "window and drain over: blue removed");
    assert_eq!(w.status.phase, Some(Phase::Healthy));
}

#[test]
fn blue_green_waits_for_a_human_when_auto_promote_is_off() {
    let (mut w, _, _) = with_stable_then(blue_green(false), false);
    w.round(1);
    w.round(600);
    assert_eq!(w.status.promoted_at, None);
    assert_eq!(w.status.phase, Some(Phase::Paused));
    w.request("promote");
    w.round(1);
    assert!(w.status.promoted_at.is_some());
}

#[test]
fn blue_green_failure_after_the_flip_flips_straight_back() {
    let (mut w, blue, green) = with_stable_then(blue_green(true), true);
    w.round(1);
    w.round(20);
    assert!(w.status.promoted_at.is_some());
    w.tick(10);
    w.set_analysis(&green, Verdict::Fail);
    w.decide();
    assert_eq!(w.status.rollback.as_ref().unwrap().revision, green);
    let b = w.plan().revision(&blue).unwrap();
    assert_eq!((b.role, b.weight, b.in_rotation), (Role::Stable, 100, 4));
    let g = w.plan().revision(&green).unwrap();
    assert_eq!((g.role, g.weight, g.in_rotation), (Role::Draining, 0, 0));
    assert!(w.status.drains.iter().all(|d| d.revision != blue), "blue serves again: no drain");
}

#[test]
fn drain_window_comes_from_the_measured_session_duration() {
    let (mut w, stable, _) = with_stable_then(json!({"canary": {"steps": [{"setWeight": 50}]}}), false);
    w.observed.session_duration = Some(SessionDuration { seconds: Some(95.3) });
    for _ in 0..3 {
        w.round(1);
    }
    let drain = w.status.drains.iter().find(|d| d.revision == stable).unwrap();
    assert_eq!(
        (drain.window_seconds, drain.measured_seconds, drain.clamp),
        (96, Some(95.3), crate::api::DrainClamp::None)
    );
}

#[test]
fn drain_finishes_early_when_the_pods_report_no_open_sessions() {
    let (mut w, stable, _) = with_stable_then(json!({"canary": {"steps": [{"setWeight": 50}]}}), false);
    for _ in 0..3 {
        w.round(1);
    }
    assert!(w.plan().revision(&stable).is_some());
    w.observed.active_sessions = vec![ActiveSessions {
        revision: stable.clone(),
        at: Timestamp::from_second(w.now).unwrap(),
        count: 3,
    }];
    w.round(5);
    assert!(w.plan().revision(&stable).is_some(), "3 sessions still open");
    assert_eq!(w.status.drains[0].active_sessions, Some(3));
    w.observed.active_sessions = vec![ActiveSessions {
        revision: stable.clone(),
        at: Timestamp::from_second(w.now).unwrap(),
        count: 0,
    }];
    w.round(5);
    assert!(w.plan().revision(&stable).is_none(), "no sessions left: drained early");
    assert!(w.events.iter().any(|e| e.reason == "DrainFinished" && e.message.contains("no open sessions")));
}

#[test]
fn stale_session_counts_from_before_the_drain_do_not_end_it() {
    let (mut w, stable, _) = with_stable_then(json!({"canary": {"steps": [{"setWeight": 50}]}}), false);
    w.observed.active_sessions =
        vec![ActiveSessions { revision: stable.clone(), at: Timestamp::from_second(T0).unwrap(), count: 0 }];
    for _ in 0..3 {
        w.round(1);
    }
    assert!(w.plan().revision(&stable).is_some());
}

fn sessions(w: &mut World, revision: &str, at: i64, count: i64) {
    w.observed.active_sessions = vec![ActiveSessions {
        revision: revision.to_owned(),
        at: Timestamp::from_second(at).unwrap(),
        count,
    }];
}

#[test]
fn the_first_sample_after_the_drain_began_never_ends_it_alone() {
    // Scraped as the pods left traffic, a zero can miss connections still being sent to them.
    let (mut w, stable, _) = with_stable_then(json!({"canary": {"steps": [{"setWeight": 50}]}}), false);
    for _ in 0..3 {
        w.round(1);
    }
    let started = secs(&w.status.drains[0].started_at);
    sessions(&mut w, &stable, started + 1, 0);
    w.round(5);
    assert!(w.plan().revision(&stable).is_some(), "one sample after the start is not enough");
    assert_eq!(w.status.drains[0].active_sessions, Some(0));
    sessions(&mut w, &stable, started + 1, 0);
    w.round(5);
    assert!(w.plan().revision(&stable).is_some(), "the same sample again is not a newer one");
    sessions(&mut w, &stable, started + 3, 0);
    w.round(1);
    assert!(w.plan().revision(&stable).is_none(), "a second, later sample says empty: drained");
}

#[test]
fn a_drain_outlives_its_window_while_sessions_are_open_until_drain_max() {
    let (mut w, stable, _) = with_stable_then(json!({"canary": {"steps": [{"setWeight": 50}]}}), false);
    w.spec.drain.early_finish = false;
    w.observed.session_duration = Some(SessionDuration { seconds: Some(95.3) });
    for _ in 0..3 {
        w.round(1);
    }
    let started = secs(&w.status.drains[0].started_at);
    assert_eq!(w.status.drains[0].window_seconds, 96);
    sessions(&mut w, &stable, started + 1, 0);
    w.round(10);
    sessions(&mut w, &stable, started + 11, 0);
    w.round(10);
    assert!(w.plan().revision(&stable).is_some(), "no early finish: empty, but the window is not over");
    sessions(&mut w, &stable, started + 50, 2);
    w.round(started + 120 - w.now);
    assert!(w.plan().revision(&stable).is_some(), "window over, 2 sessions open: still draining");
    w.round(started + 299 - w.now);
    assert!(w.plan().revision(&stable).is_some());
    w.round(1);
    assert!(w.plan().revision(&stable).is_none(), "drain.max ends it whatever is open");
    let finished = w.events.iter().find(|e| e.reason == "DrainFinished").unwrap();
    assert_eq!(finished.type_, EventType::Warning, "{finished:?}");
    assert!(finished.message.contains("2 session(s)"), "{}", finished.message);
}

#[test]
fn a_drain_with_no_session_observations_lasts_drain_max() {
    let (mut w, stable, _) = with_stable_then(json!({"canary": {"steps": [{"setWeight": 50}]}}), false);
    w.observed.session_duration = Some(SessionDuration { seconds: Some(95.3) });
    for _ in 0..3 {
        w.round(1);
    }
    let started = secs(&w.status.drains[0].started_at);
    w.round(started + 200 - w.now);
    assert!(w.plan().revision(&stable).is_some(), "a window alone never ends a drain");
    w.round(started + 300 - w.now);
    assert!(w.plan().revision(&stable).is_none());
    assert!(w.events.iter().any(|e| e.reason == "DrainFinished" && e.message.contains("not observed")));
}

#[test]
fn pause_and_resume_by_request_and_by_spec() {
    let (mut w, _, _) = with_stable_then(canary_steps(), false);
    w.request("pause");
    w.round(1);
    assert_eq!(w.weight(), 0);
    assert_eq!(w.status.phase, Some(Phase::Paused));
    assert!(w.status.paused_by_request);
    w.round(1000);
    assert_eq!(w.weight(), 0, "no progress while paused, and no deadline either");
    assert_eq!(w.status.rollback, None);
    w.request("resume");
    w.round(1);
    assert_eq!(w.weight(), 5);
    w.spec.paused = true;
    w.round(100);
    assert_eq!(w.status.current_step_index, Some(1), "spec.paused holds the soak too");
}

#[test]
fn abort_rolls_back_and_retry_starts_the_same_revision_again() {
    let (mut w, stable, canary) = with_stable_then(canary_steps(), false);
    w.round(1);
    w.request("abort");
    w.round(1);
    assert_eq!(w.status.rollback.as_ref().unwrap().reason, RollbackReason::Aborted);
    assert_eq!(w.plan().revision(&stable).unwrap().weight, 100);
    w.round(500);
    assert_eq!(w.status.canary_revision, None, "stays rolled back");
    w.request("retry");
    w.round(1);
    assert_eq!(w.status.canary_revision.as_deref(), Some(canary.as_str()));
    assert_eq!(w.status.rollback, None);
    assert_eq!(w.status.current_step_index, Some(0));
}

#[test]
fn promote_full_skips_the_remaining_steps() {
    let (mut w, _, canary) = with_stable_then(canary_steps(), false);
    w.round(1);
    w.request("promote-full");
    w.round(1);
    w.round(1);
    assert_eq!(w.status.stable_revision.as_deref(), Some(canary.as_str()));
}

#[test]
fn a_request_is_handled_once_and_a_bad_one_is_reported() {
    let (mut w, _, _) = with_stable_then(canary_steps(), false);
    w.request("promote");
    w.round(1);
    let handled = w.events.iter().filter(|e| e.reason == "RequestHandled").count();
    w.round(1);
    assert_eq!(w.events.iter().filter(|e| e.reason == "RequestHandled").count(), handled);
    w.observed.request = Some("deploy@now".into());
    w.round(1);
    assert!(w.saw("RequestRejected"));
    w.observed.request = Some("retry@x".into());
    w.round(1);
    assert!(w.saw("RequestIgnored"));
}

#[test]
fn a_new_template_mid_canary_replaces_the_canary_which_drains() {
    let (mut w, _, first) = with_stable_then(canary_steps(), false);
    w.round(1);
    assert_eq!(w.weight(), 5);
    w.spec.template.spec.as_mut().unwrap().containers[0].image = Some("mcp-fixture:v3".into());
    let second = w.revision();
    w.round(1);
    assert_eq!(w.status.canary_revision.as_deref(), Some(second.as_str()));
    assert_eq!(w.plan().revision(&first).unwrap().role, Role::Draining);
    assert!(w.saw("CanaryReplaced"));
}

#[test]
fn reverting_the_template_to_stable_abandons_the_canary_cleanly() {
    let (mut w, stable, canary) = with_stable_then(canary_steps(), false);
    w.round(1);
    w.spec.template.spec.as_mut().unwrap().containers[0].image = Some("mcp-fixture:v1".into());
    w.round(1);
    assert_eq!(w.status.canary_revision, None);
    assert_eq!(w.status.rollback, None);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.plan().revision(&stable).unwrap().weight, 100);
    assert_eq!(w.plan().revision(&canary).unwrap().role, Role::Draining);
}

#[test]
fn replica_ratio_rounds_up_and_never_leaves_traffic_without_pods() {
    assert_eq!(replicas_for(4, 5), 1);
    assert_eq!(replicas_for(4, 25), 1);
    assert_eq!(replicas_for(4, 26), 2);
    assert_eq!(replicas_for(4, 100), 4);
    assert_eq!(replicas_for(10, 1), 1);
    assert_eq!(replicas_for(4, 0), 0);
}

#[test]
fn effective_weight_reports_what_the_pods_give() {
    let (mut w, _, _) = with_stable_then(canary_steps(), false);
    w.round(1);
    assert_eq!(w.weight(), 5);
    w.decide();
    // 1 canary pod of 5 in rotation.
    assert_eq!(w.status.effective_weight, 20);
}

#[test]
fn repeating_a_decision_changes_nothing_and_emits_nothing() {
    let (mut w, _, _) = with_stable_then(canary_steps(), true);
    w.round(1);
    let before = w.decide().clone();
    let again = w.decide().clone();
    assert_eq!(again.status, before.status);
    assert_eq!(again.plan.revisions, before.plan.revisions);
    assert!(again.plan.events.is_empty(), "{:?}", again.plan.events);
}

#[test]
fn a_custom_metric_rolls_back_only_at_its_own_failure_limit() {
    let (mut w, _, canary) = with_stable_then(canary_steps(), true);
    w.spec.analysis.as_mut().unwrap().metrics = vec![
        serde_json::from_value(
            json!({"name": "p99-latency-ratio", "query": "q", "max": 3.0, "failureLimit": 2}),
        )
        .unwrap(),
    ];
    w.round(1);
    assert_eq!(w.weight(), 5);
    let failing = |w: &mut World| {
        w.tick(10);
        w.observed.analysis = Some(AnalysisReport {
            revision: canary.clone(),
            at: Timestamp::from_second(w.now).unwrap(),
            checks: vec![CheckResult {
                name: "p99-latency-ratio".into(),
                verdict: Verdict::Fail,
                value: Some(4.2),
                threshold: Some(3.0),
                message: Some("canary P99 1.26s vs stable 0.30s".into()),
            }],
        });
        w.decide();
    };
    failing(&mut w);
    assert_eq!(w.status.rollback, None, "one failure is below the metric's limit of 2");
    assert_eq!(w.status.analysis[0].consecutive_failures, 1);
    failing(&mut w);
    let rollback = w.status.rollback.clone().unwrap();
    assert_eq!(rollback.check.as_deref(), Some("p99-latency-ratio"));
    assert!(rollback.message.contains("4.2000") && rollback.message.contains("canary P99 1.26s"));
}

#[test]
fn a_stall_the_reconciler_sees_is_degraded_and_stable_on_repeat() {
    let mut status = McpRolloutStatus::default();
    let now = jiff::Timestamp::from_second(1_000).unwrap();
    super::stall(&mut status, "SecretNotFound", "no Secret probe-token", Some(3), &[], now);
    assert_eq!(status.phase, Some(crate::api::Phase::Degraded));
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "SecretNotFound"));
    let previous = status.conditions.clone();
    let mut again = status.clone();
    super::stall(
        &mut again,
        "SecretNotFound",
        "no Secret probe-token",
        Some(3),
        &previous,
        now + jiff::SignedDuration::from_secs(60),
    );
    assert_eq!(again, status, "a repeated stall writes an identical status");
}

#[test]
fn every_decision_stores_its_stage_and_an_older_status_without_one_is_read_by_its_fields() {
    let (mut w, _, _) = with_stable_then(canary_steps(), false);
    w.round(1);
    assert_eq!(w.status.stage, Some(Stage::Canary));
    // What an operator before the stage was stored wrote: the same fields, no stage.
    w.status.stage = None;
    w.round(1);
    assert_eq!(w.status.stage, Some(Stage::Canary), "read from the fields, then stored");
    w.request("abort");
    w.round(1);
    assert_eq!(w.status.stage, Some(Stage::RolledBack));
    w.request("retry");
    w.round(1);
    assert_eq!(w.status.stage, Some(Stage::Canary), "a retry starts the same revision again");
}

#[test]
fn a_problem_the_reconciler_saw_holds_the_rollout_stalled_until_it_is_gone() {
    let (mut w, _, _) = with_stable_then(canary_steps(), false);
    w.observed.problems = vec![Problem::new("SecretNotFound", "Secret agents/mcp-token has no key token")];
    w.round(1);
    w.round(1);
    assert_eq!(w.weight(), 0, "nothing moves while the problem lasts");
    assert_eq!(w.status.phase, Some(Phase::Degraded));
    let stalled = w.status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "SecretNotFound"));
    assert_eq!(
        w.events.iter().filter(|e| e.reason == "SecretNotFound").count(),
        1,
        "one event, not one per call"
    );
    w.observed.problems.clear();
    w.round(1);
    assert_eq!(w.weight(), 5, "goes on once the problem is gone");
    assert_eq!(w.status.phase, Some(Phase::Progressing));
}

#[test]
fn a_step_goes_on_only_once_its_weight_is_observed_in_force() {
    let (mut w, _, canary) =
        with_stable_then(json!({"canary": {"steps": [{"setWeight": 25}, {"setWeight": 50}]}}), false);
    w.round(1);
    assert_eq!(w.weight(), 25);
    // The rotation change has not reached the Service's endpoints: the canary has none there.
    for _ in 0..3 {
        w.tick(1);
        w.pods_follow_plan();
        w.observed.revisions.iter_mut().filter(|r| r.revision == canary).for_each(|r| r.in_endpoints = 0);
        w.run_probes(true);
        w.decide();
    }
    assert_eq!(w.weight(), 25, "no increase on the plan alone");
    assert!(
        w.status.message.as_deref().unwrap().contains("waiting for traffic to reach 25%"),
        "{:?}",
        w.status.message
    );
    assert_eq!(w.status.effective_weight, 0);
    w.round(1);
    assert_eq!(w.weight(), 50, "observed in force: the next step");
}

#[test]
fn a_route_weight_is_the_effective_weight_and_must_match_before_the_next_step() {
    let (mut w, _, _) =
        with_stable_then(json!({"canary": {"steps": [{"setWeight": 5}, {"setWeight": 50}]}}), false);
    w.spec.traffic_routing =
        Some(serde_json::from_value(json!({"gatewayAPI": {"httpRouteRef": {"name": "mcp"}}})).unwrap());
    w.observed.route_weight = Some(0);
    w.round(1);
    w.round(1);
    assert_eq!(w.weight(), 5);
    assert_eq!(w.status.effective_weight, 0, "what the route says, not the pods");
    w.observed.route_weight = Some(5);
    w.round(1);
    assert_eq!(w.weight(), 50);
    assert!(w.status.warnings.is_empty(), "exact weights: nothing to warn about");
}

#[test]
fn a_drained_revision_stays_while_the_service_still_routes_to_it() {
    let (mut w, stable, _) = with_stable_then(json!({"canary": {"steps": [{"setWeight": 50}]}}), false);
    for _ in 0..3 {
        w.round(1);
    }
    let started = secs(&w.status.drains[0].started_at);
    let stuck = |w: &mut World| {
        w.observed.revisions.iter_mut().filter(|r| r.revision == stable).for_each(|r| r.in_endpoints = 2);
    };
    w.now = started + 400;
    w.pods_follow_plan();
    stuck(&mut w);
    w.decide();
    assert!(w.plan().revision(&stable).is_some(), "past drain.max, but still in the Service's endpoints");
    w.round(1);
    assert!(
        w.plan().revision(&stable).is_none(),
        "out of the endpoints: removed: {:?} {:?}",
        w.plan().revisions,
        w.status.drains
    );
}

#[test]
fn steady_is_watched_a_crash_looping_or_short_stable_is_not_healthy() {
    let (mut w, stable, _) = with_stable_then(canary_steps(), false);
    w.spec.template.spec.as_mut().unwrap().containers[0].image = Some("mcp-fixture:v1".into());
    w.round(1);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    let set = |w: &mut World, ready: i32, crash: bool| {
        w.tick(1);
        w.pods_follow_plan();
        for r in w.observed.revisions.iter_mut().filter(|r| r.revision == stable) {
            r.ready = ready;
            r.crash_looping = crash;
        }
        w.decide();
    };
    set(&mut w, 3, false);
    assert_eq!(w.status.phase, Some(Phase::Progressing), "3 of 4 ready");
    assert!(w.status.message.as_deref().unwrap().contains("3 of 4"));
    w.now += 700;
    set(&mut w, 3, false);
    assert_eq!(w.status.phase, Some(Phase::Degraded), "short for longer than the progress deadline");
    assert!(w.status.conditions.iter().any(|c| c.reason == "StableUnavailable" && c.status == "True"));
    set(&mut w, 4, true);
    assert_eq!(w.status.phase, Some(Phase::Degraded));
    assert!(w.status.conditions.iter().any(|c| c.reason == "StableCrashLooping"));
    set(&mut w, 4, false);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.status.unavailable_since, None);
}

#[test]
fn weights_the_replicas_cannot_express_are_warned_about_or_refused() {
    let (mut w, _, _) = with_stable_then(canary_steps(), false);
    w.round(1);
    assert_eq!(w.status.warnings.len(), 1, "{:?}", w.status.warnings);
    let warning = &w.status.warnings[0];
    assert!(warning.contains("5% gives 20%") && warning.contains("gatewayAPI"), "{warning}");
    assert_eq!(w.events.iter().filter(|e| e.reason == "WeightNotExpressible").count(), 1);
    assert_eq!(w.weight(), 5, "a warning only: it goes on");

    let (mut w, _, _) = with_stable_then(
        json!({"canary": {"maxWeightError": 5, "steps": [{"setWeight": 5}, {"setWeight": 50}]}}),
        false,
    );
    w.round(1);
    w.round(1);
    assert_eq!(w.weight(), 0, "refused: the 5% step would be 20%");
    assert!(w.status.conditions.iter().any(|c| c.reason == "WeightNotExpressible" && c.status == "True"));
    w.spec.replicas = 20;
    w.round(1);
    w.round(1);
    assert!(w.status.warnings.is_empty());
    assert!(w.weight() > 0, "20 replicas give 5% exactly");
}

#[test]
fn a_lost_status_adopts_the_serving_revision_and_takes_nothing_out_of_rotation() {
    let (mut w, stable, _) = with_stable_then(canary_steps(), false);
    w.spec.template.spec.as_mut().unwrap().containers[0].image = Some("mcp-fixture:v1".into());
    w.round(1);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    let serving = w.observed.revisions.clone();
    // Restored from a backup without status, or re-created after --cascade=orphan.
    w.status = McpRolloutStatus::default();
    w.events.clear();
    let d = w.tick(1).clone();
    assert_eq!(d.status.stable_revision.as_deref(), Some(stable.as_str()));
    assert_eq!(d.status.stage, Some(Stage::Steady));
    let plan = d.plan.revision(&stable).unwrap();
    assert_eq!(
        (plan.role, plan.replicas, plan.in_rotation),
        (Role::Stable, 4, 4),
        "every pod stays in rotation"
    );
    assert_eq!(d.plan.revisions.len(), 1);
    assert!(w.saw("Adopted"));
    assert_eq!(w.observed.revisions, serving);

    // Two revisions serving (status lost mid-canary): the bigger one is stable, the other drains.
    let (mut w, stable, canary) = with_stable_then(canary_steps(), false);
    for _ in 0..4 {
        w.round(1);
    }
    assert!(w.weight() > 0);
    w.status = McpRolloutStatus::default();
    let d = w.tick(1).clone();
    assert_eq!(d.status.stable_revision.as_deref(), Some(stable.as_str()));
    assert!(d.status.drains.iter().any(|dr| dr.revision == canary), "{:?}", d.status.drains);
    assert!(d.plan.revision(&canary).is_some(), "the canary's pods stay for their drain");
}

#[test]
fn lowering_replicas_drains_the_pods_that_leave_before_the_deployment_shrinks() {
    let (mut w, stable, _) = with_stable_then(canary_steps(), false);
    w.spec.template.spec.as_mut().unwrap().containers[0].image = Some("mcp-fixture:v1".into());
    w.round(1);
    w.spec.replicas = 2;
    w.tick(1);
    let p = w.plan().revision(&stable).unwrap().clone();
    assert_eq!((p.replicas, p.in_rotation), (4, 2), "still 4 pods, 2 in rotation");
    assert_eq!(p.leaving.len(), 2, "{p:?}");
    let drain = w.status.drains.iter().find(|d| d.revision == stable).unwrap().clone();
    assert_eq!(drain.pods, p.leaving);
    assert!(w.saw("DrainStarted"));
    // Pods as the plan says (4 running, 2 in the endpoints); sessions still open on the leaving.
    let started = secs(&drain.started_at);
    w.pods_follow_plan();
    sessions(&mut w, &stable, started + 1, 3);
    w.tick(10);
    assert_eq!(w.plan().revision(&stable).unwrap().replicas, 4, "3 sessions open: not yet");
    w.pods_follow_plan();
    // Past the drain window (drain.max, 300 s, with no session duration measured), the
    // leaving pods empty.
    sessions(&mut w, &stable, started + 305, 0);
    w.tick(295);
    let p = w.plan().revision(&stable).unwrap();
    assert_eq!((p.replicas, p.leaving.len()), (2, 2), "drained: the Deployment shrinks now");
    assert!(w.saw("DrainFinished"));
    // Until the ReplicaSet has removed them, the drained pods stay marked (first to go) and no
    // new drain starts for the surplus still observed.
    let drains = w.status.drains.clone();
    w.tick(1);
    assert_eq!(w.status.drains, drains, "no second drain of the same pods");
    w.pods_follow_plan();
    w.tick(1);
    let p = w.plan().revision(&stable).unwrap();
    assert_eq!((p.replicas, p.in_rotation, p.leaving.len()), (2, 2, 0), "gone: the entry too");
    assert!(w.status.drains.is_empty(), "{:?}", w.status.drains);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
}

#[test]
fn at_rest_a_passing_probe_that_finds_nothing_new_writes_no_status() {
    let mut w = World::new(spec(canary_steps(), "mcp-fixture:v1"));
    for _ in 0..3 {
        w.round(1);
    }
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    // 30 minutes at rest, probed every 10 s as the plan asks: the status changes only when
    // its probe time is refreshed (every 10 minutes).
    let (mut writes, mut probes) = (0, 0);
    for _ in 0..180 {
        let before = w.status.clone();
        w.tick(10);
        if !w.plan().probes.is_empty() {
            probes += 1;
            w.run_probes(true);
            w.decide();
        }
        if w.status != before {
            writes += 1;
        }
    }
    assert_eq!(probes, 180, "probing keeps its interval");
    assert_eq!(writes, 3, "one write per 10 minutes");
    // A finding that changes is written at once: a tool more.
    let before = w.status.clone();
    w.tick(10);
    let stable = w.revision();
    w.set_probe(&stable, true, 4, Some(true));
    w.observed.probes[0].tool_count = Some(4);
    w.decide();
    assert_ne!(w.status, before);
    assert_eq!(w.status.probes[0].tool_count, Some(4));
    // And so is a failure.
    w.tick(10);
    w.set_probe(&stable, false, 4, Some(true));
    w.decide();
    assert_eq!(w.status.probes[0].consecutive_failures, 1);
}

/// Held at a step (here the indefinite pause at 25%), probes of both revisions every 10 s and
/// an analysis every 10 s that find what the last ones found write nothing but a refresh of
/// their time every 10 minutes: hundreds of held rollouts rewriting status at every result
/// filled the reconcile slots (hack/bench.sh scale). What does change is written at once.
#[test]
fn held_at_a_step_repeated_results_write_no_status() {
    let (mut w, stable, canary) = with_stable_then(canary_steps(), true);
    w.round(1);
    w.round(31); // soak done; 25% needs an analysis whose window is at 5%
    for _ in 0..31 {
        w.tick(10);
        w.set_analysis(&canary, Verdict::Pass);
        w.run_probes(true);
        w.decide();
        w.pods_follow_plan();
    }
    assert_eq!(w.weight(), 25);
    w.round(1);
    assert_eq!(w.status.phase, Some(Phase::Paused), "{:?}", w.status.message);
    let increased = w.status.weight_increased_at.as_ref().map(|t| t.0.as_second()).unwrap();
    // 30 minutes held, every result repeated. The first analysis newer than the window after
    // the increase (300 s) is written: it is what a promote would need.
    let (mut writes, mut probes, mut runs) = (0, 0, 0);
    let mut window_passed_written = false;
    for _ in 0..180 {
        let before = w.status.clone();
        w.tick(10);
        let plan = w.plan().clone();
        if !plan.probes.is_empty() {
            probes += plan.probes.len();
            w.run_probes(true);
        }
        if plan.analysis.is_some() {
            runs += 1;
            w.set_analysis(&canary, Verdict::Pass);
        }
        w.decide();
        if w.status != before {
            writes += 1;
            let latest = w.status.analysis.iter().map(|c| secs(&c.at)).max().unwrap();
            window_passed_written |= latest > increased + 300;
        }
        assert_eq!(w.status.phase, Some(Phase::Paused));
    }
    assert_eq!(probes, 360, "both revisions probed every 10 s");
    assert_eq!(runs, 180, "the analysis keeps its interval");
    assert!(window_passed_written, "the first run past the window is written");
    // The first run past the window, and at most one refresh of each of the three results
    // (two probes, the analysis) per 10 minutes (6 seen).
    assert!(writes <= 1 + 3 * 3, "{writes} status writes in 30 minutes held");
    // A changed verdict is written at once, and so is a failure.
    let before = w.status.clone();
    w.tick(10);
    w.set_analysis(&canary, Verdict::Inconclusive);
    w.decide();
    assert_ne!(w.status, before);
    assert_eq!(w.status.analysis[0].verdict, Verdict::Inconclusive);
    w.tick(10);
    w.set_probe(&stable, false, 2, Some(true));
    w.decide();
    assert_eq!(w.status.probes.iter().find(|p| p.revision == stable).unwrap().consecutive_failures, 1);
    // Promoted, the weight grows on the results already held.
    w.tick(10);
    w.set_probe(&stable, true, 2, Some(true));
    w.set_analysis(&canary, Verdict::Pass);
    w.request("promote");
    w.round(1);
    w.round(1);
    assert_eq!(w.weight(), 50, "{:?}", w.status.message);
}

#[test]
fn a_stable_revision_the_service_does_not_route_to_is_not_healthy() {
    let (mut w, stable, _) = with_stable_then(canary_steps(), false);
    w.spec.template.spec.as_mut().unwrap().containers[0].image = Some("mcp-fixture:v1".into());
    w.round(1);
    assert_eq!(w.status.phase, Some(Phase::Healthy), "{:?}", w.status.message);
    // Ready pods, but the Service's endpoints list none of them (the readiness gate lost, the
    // Service's selector changed by hand): no traffic reaches the rollout.
    w.observed.revisions.iter_mut().filter(|r| r.revision == stable).for_each(|r| r.in_endpoints = 0);
    let d = w.decide().clone();
    assert_eq!(d.status.phase, Some(Phase::Progressing));
    assert!(d.status.message.as_deref().unwrap_or_default().contains(&stable));
    w.observed.revisions.iter_mut().filter(|r| r.revision == stable).for_each(|r| r.in_endpoints = 4);
    assert_eq!(w.decide().status.phase, Some(Phase::Healthy));
}
