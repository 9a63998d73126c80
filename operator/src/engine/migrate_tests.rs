//! Migration from a serving Deployment (`spec.workloadRef`), decided step by step.

use serde_json::json;

use super::{
    prelude::*,
    tests::{World, canary_steps, spec},
};
use crate::api::{WorkloadPhase, WorkloadScaleDown};

fn migrating(scale_down: &str) -> World {
    let mut spec = spec(canary_steps(), "mcp-fixture:v1");
    spec.workload_ref =
        Some(serde_json::from_value(json!({"name": "docs-legacy", "scaleDown": scale_down})).unwrap());
    let mut w = World::new(spec);
    w.observed.workload = Some(WorkloadObserved { exists: true, replicas: 3, ready: 3, in_endpoints: 3 });
    w
}

fn phase(w: &World) -> Option<WorkloadPhase> {
    w.status.workload.as_ref().map(|s| s.phase)
}

#[test]
fn the_workload_serves_untouched_until_the_first_revision_is_ready_and_probed() {
    let mut w = migrating("OnSuccess");
    w.decide();
    assert_eq!(phase(&w), Some(WorkloadPhase::Serving));
    assert!(w.saw("MigrationStarted"));
    assert_eq!(w.plan().revisions[0].in_rotation, 0, "the first revision waits out of rotation");
    assert_eq!(w.plan().workload, WorkloadAction::Leave);
    // Probes fail for a while: the workload serves on, nothing is rolled back or scaled.
    w.pods_follow_plan();
    for _ in 0..5 {
        w.tick(10);
        w.run_probes(false);
        w.decide();
        assert_eq!(phase(&w), Some(WorkloadPhase::Serving));
        assert_eq!(w.plan().workload, WorkloadAction::Leave);
    }
    w.tick(10);
    w.run_probes(true);
    w.decide();
    assert!(w.status.stable_revision.is_some());
    assert_eq!(phase(&w), Some(WorkloadPhase::Draining));
    assert_eq!(w.plan().workload, WorkloadAction::Leave);
}

#[test]
fn the_drain_window_counts_from_leaving_the_endpoints_then_it_is_scaled_down() {
    let mut w = migrating("OnSuccess");
    for _ in 0..3 {
        w.round(1);
    }
    assert_eq!(phase(&w), Some(WorkloadPhase::Draining));
    // No session measurement: the window is drain.max (300 s).
    assert_eq!(w.status.workload.as_ref().unwrap().window_seconds, Some(300));
    // Still in the Service's endpoints (not taken over yet): the window has not started.
    w.tick(400);
    assert_eq!(phase(&w), Some(WorkloadPhase::Draining));
    assert_eq!(w.status.workload.as_ref().unwrap().left_traffic_at, None);
    // Out of the endpoints: the window starts now and the requeue names its end.
    w.observed.workload.as_mut().unwrap().in_endpoints = 0;
    let left = w.now + 1;
    w.tick(1);
    assert!(w.saw("WorkloadLeftTraffic"));
    assert_eq!(
        w.status.workload.as_ref().unwrap().left_traffic_at.as_ref().map(super::core::secs),
        Some(left)
    );
    assert!(w.plan().requeue_after.unwrap().as_secs() <= 300);
    w.tick(299);
    assert_eq!(phase(&w), Some(WorkloadPhase::Draining));
    assert_eq!(w.plan().workload, WorkloadAction::Leave);
    w.tick(1);
    assert_eq!(phase(&w), Some(WorkloadPhase::ScaledDown));
    assert!(w.saw("MigrationComplete"));
    assert_eq!(w.plan().workload, WorkloadAction::ScaleToZero);
    // Level-triggered: asked again until it is at 0, then nothing.
    w.tick(1);
    assert_eq!(w.plan().workload, WorkloadAction::ScaleToZero);
    w.observed.workload = Some(WorkloadObserved { exists: true, replicas: 0, ready: 0, in_endpoints: 0 });
    w.tick(1);
    assert_eq!(w.plan().workload, WorkloadAction::Leave);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
}

#[test]
fn never_keeps_the_drained_workload_running() {
    let mut w = migrating("Never");
    assert_eq!(w.spec.workload_ref.as_ref().unwrap().scale_down, WorkloadScaleDown::Never);
    for _ in 0..3 {
        w.round(1);
    }
    w.observed.workload.as_mut().unwrap().in_endpoints = 0;
    w.tick(1);
    w.tick(300);
    assert_eq!(phase(&w), Some(WorkloadPhase::Kept));
    assert_eq!(w.plan().workload, WorkloadAction::Leave);
}

#[test]
fn a_measured_session_duration_sets_the_window() {
    let mut w = migrating("OnSuccess");
    w.observed.session_duration = Some(SessionDuration { seconds: Some(90.5) });
    for _ in 0..3 {
        w.round(1);
    }
    assert_eq!(w.status.workload.as_ref().unwrap().window_seconds, Some(91));
}

#[test]
fn a_workload_that_is_not_there_stalls_the_first_deploy_until_it_is() {
    let mut w = migrating("OnSuccess");
    w.observed.workload = Some(WorkloadObserved::default());
    w.decide();
    w.pods_follow_plan();
    w.tick(1);
    w.run_probes(true);
    w.decide();
    assert_eq!(w.status.phase, Some(Phase::Degraded));
    assert!(w.status.message.as_deref().unwrap().contains("docs-legacy"), "{:?}", w.status.message);
    assert_eq!(w.status.stable_revision, None, "nothing becomes stable beside a workload that is not there");
    w.observed.workload = Some(WorkloadObserved { exists: true, replicas: 3, ready: 3, in_endpoints: 3 });
    w.tick(1);
    w.run_probes(true);
    w.decide();
    assert!(w.status.stable_revision.is_some());
    assert_eq!(phase(&w), Some(WorkloadPhase::Draining));
}

#[test]
fn a_workload_named_after_the_rollout_serves_drains_and_one_deleted_meanwhile_is_done() {
    let mut w = World::new(spec(canary_steps(), "mcp-fixture:v1"));
    for _ in 0..3 {
        w.round(1);
    }
    w.spec.workload_ref = Some(serde_json::from_value(json!({"name": "docs-legacy"})).unwrap());
    w.observed.workload = Some(WorkloadObserved { exists: true, replicas: 2, ready: 2, in_endpoints: 0 });
    w.tick(1);
    assert_eq!(phase(&w), Some(WorkloadPhase::Draining));
    assert!(!w.saw("MigrationStarted"));
    w.observed.workload = Some(WorkloadObserved::default());
    w.tick(1);
    assert_eq!(phase(&w), Some(WorkloadPhase::ScaledDown));
    assert_eq!(w.plan().workload, WorkloadAction::Leave, "nothing to scale");
    // workloadRef removed: nothing is followed any more.
    w.spec.workload_ref = None;
    w.tick(1);
    assert_eq!(w.status.workload, None);
}
