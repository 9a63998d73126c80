//! Scenario tests of the engine with the MCP session router routing the traffic: weights in
//! force only once every router replica has them, drains that end on the router's live counts,
//! and rollbacks that evacuate (with the router or without it).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::{
    DrainId,
    prelude::*,
    tests::{World, with_stable_then},
};

fn routed(w: &mut World) {
    w.spec.traffic_routing = Some(serde_json::from_value(json!({"mcpRouter": {}})).unwrap());
}

/// What the router replicas report: every replica with `weights` in force.
/// The drains in force are the ones in status (the configuration written after the last
/// decision).
fn router_reports(w: &mut World, weights: &[(&str, i32)], evacuated: &[&str], sessions_known: bool) {
    let weights: BTreeMap<String, i32> = weights.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect();
    let loads = w.observed.router.take().map(|r| r.revisions).unwrap_or_default();
    let drains = w.status.drains.iter().map(DrainId::of).collect();
    w.observed.router = Some(RouterObserved {
        complete: true,
        sessions_known,
        min_weight: weights.clone(),
        max_weight: weights,
        evacuated: evacuated.iter().map(|r| (*r).to_owned()).collect::<BTreeSet<_>>(),
        revisions: loads,
        pods: BTreeMap::new(),
        serving_pods: BTreeSet::new(),
        drains,
    });
}

fn load(w: &mut World, revision: &str, sessions: i64, in_flight: i64) {
    let router = w.observed.router.get_or_insert_with(RouterObserved::default);
    router.revisions.insert(revision.to_owned(), RouterLoad { sessions, streams: 0, in_flight });
}

fn drained(w: &World, revision: &str) -> bool {
    w.plan().revision(revision).is_none() && !w.status.drains.iter().any(|d| d.revision == revision)
}

#[test]
fn with_the_router_weights_are_exact_and_in_force_only_once_every_replica_has_them() {
    let (mut w, stable, canary) =
        with_stable_then(json!({"canary": {"steps": [{"setWeight": 5}, {"setWeight": 50}]}}), false);
    routed(&mut w);
    router_reports(&mut w, &[(&stable, 100)], &[], true);
    w.round(1);
    w.round(1);
    assert_eq!(w.weight(), 5);
    assert_eq!(w.status.effective_weight, 0, "no replica has the canary's weight yet");
    let c = w.plan().revision(&canary).unwrap();
    assert_eq!(c.weight, 5, "exact: the router is told 5, not a pod ratio");
    // One replica on the new weights, one not: the smaller is what is in force.
    w.observed.router.as_mut().unwrap().max_weight.insert(canary.clone(), 5);
    w.round(1);
    assert_eq!(w.weight(), 5, "not every replica has 5% in force: the step holds");
    router_reports(&mut w, &[(&stable, 95), (&canary, 5)], &[], true);
    w.round(1);
    assert_eq!(w.weight(), 50);
    assert!(w.status.warnings.is_empty(), "exact weights: nothing to warn about");
}

#[test]
fn a_rollback_evacuates_and_with_the_router_ends_once_nothing_is_in_flight() {
    let (mut w, stable, canary) =
        with_stable_then(json!({"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}), false);
    routed(&mut w);
    router_reports(&mut w, &[(&stable, 100)], &[], true);
    w.round(1);
    router_reports(&mut w, &[(&stable, 75), (&canary, 25)], &[], true);
    w.round(1);
    assert_eq!(w.weight(), 25);
    w.request("abort");
    w.round(1);
    assert_eq!(w.status.rollback.as_ref().map(|r| r.revision.as_str()), Some(canary.as_str()));
    let drain = w.status.drains.iter().find(|d| d.revision == canary).unwrap();
    assert!(drain.evacuate, "drain.onRollback defaults to Evacuate");
    assert!(w.events.iter().any(|e| e.reason == "DrainStarted" && e.message.contains("evacuating")));
    // Still weighted by a replica: kept.
    w.round(1);
    assert!(w.plan().revision(&canary).is_some(), "a replica still sends it new work");
    // Evacuated everywhere, a call still in flight: kept.
    router_reports(&mut w, &[(&stable, 100), (&canary, 0)], &[&canary], true);
    load(&mut w, &canary, 4, 1);
    w.round(1);
    assert!(w.plan().revision(&canary).is_some(), "a call is still in flight on it");
    // Nothing in flight: gone, whatever sessions the router still counts.
    load(&mut w, &canary, 4, 0);
    w.round(1);
    assert!(drained(&w, &canary), "{:?}", w.status.drains);
    assert!(w.events.iter().any(|e| e.reason == "DrainFinished" && e.message.contains("evacuated")));
}

#[test]
fn without_the_router_an_evacuated_revision_leaves_as_soon_as_it_is_out_of_rotation() {
    let (mut w, _, canary) =
        with_stable_then(json!({"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}), false);
    w.round(1);
    w.round(1);
    assert_eq!(w.weight(), 25);
    w.request("abort");
    w.tick(1);
    w.pods_follow_plan();
    w.observed.revisions.iter_mut().filter(|r| r.revision == canary).for_each(|r| r.in_endpoints = 1);
    w.decide();
    assert!(w.plan().revision(&canary).is_some(), "still in the Service's endpoints");
    w.round(1);
    assert!(
        drained(&w, &canary),
        "out of rotation: its pods go, finishing in-flight calls as they terminate"
    );

    // The same rollback with drain.onRollback: Drain lets the sessions run out.
    let (mut w, _, canary) =
        with_stable_then(json!({"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}), false);
    w.spec.drain.on_rollback = crate::api::OnRollback::Drain;
    w.round(1);
    w.round(1);
    w.request("abort");
    w.round(1);
    w.round(5);
    assert!(!w.status.drains[0].evacuate);
    assert!(w.plan().revision(&canary).is_some(), "draining for its window");
}

#[test]
fn with_the_router_a_drain_ends_on_its_live_counts_once_it_has_seen_every_session() {
    let (mut w, stable, canary) = with_stable_then(json!({"canary": {"steps": [{"setWeight": 50}]}}), false);
    routed(&mut w);
    router_reports(&mut w, &[(&stable, 100)], &[], false);
    w.round(1);
    router_reports(&mut w, &[(&stable, 50), (&canary, 50)], &[], false);
    w.round(1);
    w.round(1);
    assert_eq!(w.status.stable_revision.as_deref(), Some(canary.as_str()), "promoted");
    assert!(w.status.drains.iter().any(|d| d.revision == stable && !d.evacuate));
    router_reports(&mut w, &[(&canary, 100), (&stable, 0)], &[], false);
    load(&mut w, &stable, 0, 0);
    w.round(1);
    assert!(w.plan().revision(&stable).is_some(), "a replica too young to have seen every session");
    router_reports(&mut w, &[(&canary, 100), (&stable, 0)], &[], true);
    load(&mut w, &stable, 2, 0);
    w.round(1);
    assert!(w.plan().revision(&stable).is_some(), "two sessions still open on it");
    load(&mut w, &stable, 0, 0);
    w.round(1);
    assert!(drained(&w, &stable), "{:?}", w.status.drains);
    assert!(
        w.events
            .iter()
            .any(|e| e.reason == "DrainFinished" && e.message.contains("the router carries no session"))
    );
}

#[test]
fn a_tool_route_puts_a_probed_canary_in_rotation_at_weight_zero() {
    let (mut w, stable, canary) =
        with_stable_then(json!({"canary": {"steps": [{"setWeight": 0}, {"pause": {}}]}}), false);
    w.spec.traffic_routing = Some(
        serde_json::from_value(json!({"mcpRouter": {"toolRoutes": [{"tool": "search", "weight": 100}]}}))
            .unwrap(),
    );
    router_reports(&mut w, &[(&stable, 100)], &[], true);
    w.tick(1);
    w.pods_follow_plan();
    let c = w.plan().revision(&canary).unwrap();
    assert_eq!((c.weight, c.in_rotation), (0, 0), "not probed yet: out of rotation");
    w.round(1);
    let c = w.plan().revision(&canary).unwrap();
    assert_eq!((c.weight, c.in_rotation), (0, 1), "probed: its tool's calls may reach it");
    // Without tool routes a canary at weight 0 stays out of rotation.
    w.spec.traffic_routing = Some(serde_json::from_value(json!({"mcpRouter": {}})).unwrap());
    w.round(1);
    assert_eq!(w.plan().revision(&canary).unwrap().in_rotation, 0);
}

#[test]
fn with_the_router_a_stable_revision_is_healthy_once_every_replica_weights_it() {
    let mut w =
        World::new(super::tests::spec(json!({"canary": {"steps": [{"setWeight": 50}]}}), "mcp-fixture:v1"));
    routed(&mut w);
    let stable = w.revision();
    for _ in 0..3 {
        w.round(1);
    }
    assert_eq!(w.status.stable_revision.as_deref(), Some(stable.as_str()));
    assert_eq!(
        w.status.phase,
        Some(Phase::Progressing),
        "no router replica has answered: {:?}",
        w.status.message
    );
    router_reports(&mut w, &[(&stable, 100)], &[], false);
    w.observed.router.as_mut().unwrap().complete = false;
    w.round(1);
    assert_eq!(w.status.phase, Some(Phase::Progressing), "one replica has not answered");
    router_reports(&mut w, &[(&stable, 100)], &[], false);
    w.round(1);
    assert_eq!(w.status.phase, Some(Phase::Healthy), "{:?}", w.status.message);
}
