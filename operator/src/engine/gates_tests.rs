//! Change gates (`spec.gates`), decided step by step: where they hold, what opens them, what
//! they never do (roll back by themselves), and schema-aware and frozen gates.

use serde_json::json;

use super::{
    prelude::*,
    tests::{World, canary_steps, with_stable_then},
};
use crate::api::{GatePoint, GateState, SchemaChange};

fn gated(w: &mut World, gates: serde_json::Value) {
    w.spec.gates = serde_json::from_value(gates).unwrap();
}

/// Rounds until the rollout stops moving (or `n` rounds).
fn settle(w: &mut World, n: usize) {
    for _ in 0..n {
        w.round(1);
    }
}

fn entry<'w>(w: &'w World, name: &str, point: GatePoint) -> Option<&'w crate::api::GateStatus> {
    w.status.gates.iter().find(|g| g.name == name && g.point == point)
}

fn answer(w: &mut World, call: &GateCall, outcome: GateOutcome, message: &str) {
    w.observed.gate_answers.retain(|a| &a.call != call);
    w.observed.gate_answers.push(GateAnswer {
        call: call.clone(),
        at: jiff::Timestamp::from_second(w.now).unwrap(),
        outcome,
        message: message.into(),
    });
}

#[test]
fn an_approval_gate_holds_the_first_traffic_until_approved_and_only_that_point() {
    let (mut w, _stable, canary) = with_stable_then(canary_steps(), false);
    gated(&mut w, json!([{"name": "cab", "at": ["Start", "WeightIncrease"], "approval": {}}]));
    settle(&mut w, 5);
    assert_eq!(w.weight(), 0, "no traffic before the gate opens");
    assert_eq!(w.status.phase, Some(Phase::Paused));
    assert!(
        w.status.message.as_deref().unwrap().contains("gate cab at Start waits"),
        "{:?}",
        w.status.message
    );
    assert!(w.saw("GateWaiting"));
    assert_eq!(entry(&w, "cab", GatePoint::Start).unwrap().state, GateState::Waiting);
    // Canary pods were brought up and probed meanwhile: the gate knows what it gates.
    assert!(w.plan().revision(&canary).is_some_and(|r| r.replicas >= 1));

    w.request("approve=cab");
    settle(&mut w, 2);
    // Start opened, then WeightIncrease to 5% waits for an approval of its own.
    assert_eq!(entry(&w, "cab", GatePoint::Start).unwrap().state, GateState::Open);
    assert_eq!(w.weight(), 0);
    let increase = entry(&w, "cab", GatePoint::WeightIncrease).unwrap();
    assert_eq!((increase.weight, increase.state), (Some(5), GateState::Waiting));
    w.request("approve");
    settle(&mut w, 2);
    assert_eq!(w.weight(), 5);
    assert!(w.saw("GateOpened"));
    // The soak passes; at 25% the gate waits again.
    w.round(31);
    settle(&mut w, 2);
    assert_eq!(w.weight(), 5);
    assert_eq!(entry(&w, "cab", GatePoint::WeightIncrease).map(|g| g.weight), Some(Some(5)));
    assert!(w.status.gates.iter().any(|g| g.weight == Some(25) && g.state == GateState::Waiting));
    // An approval naming another gate opens nothing.
    w.request("approve=other");
    settle(&mut w, 2);
    assert_eq!(w.weight(), 5);
    assert!(w.saw("RequestIgnored"));
}

#[test]
fn a_waiting_gate_never_rolls_back_by_itself_but_a_failing_canary_still_does() {
    let (mut w, _stable, canary) = with_stable_then(canary_steps(), false);
    gated(&mut w, json!([{"name": "cab", "at": ["Start"], "approval": {}}]));
    settle(&mut w, 3);
    // Hours at the gate: no progress deadline, no rollback.
    for _ in 0..12 {
        w.round(600);
    }
    assert_eq!(w.status.phase, Some(Phase::Paused));
    assert!(w.status.rollback.is_none());
    // A canary that starts failing its probe is rolled back all the same.
    for _ in 0..4 {
        w.tick(10);
        w.pods_follow_plan();
        w.set_probe(&canary, false, 1, None);
        w.decide();
    }
    assert_eq!(w.status.rollback.as_ref().map(|r| r.reason), Some(RollbackReason::ProbeFailed));
    assert!(w.status.gates.is_empty(), "a rollback ends the rollout's gates");
}

#[test]
fn a_webhook_gate_is_called_again_after_its_interval_and_opens_on_2xx() {
    let (mut w, _stable, canary) = with_stable_then(canary_steps(), false);
    gated(
        &mut w,
        json!([{"name": "ticket", "at": ["Start"], "webhook": {"url": "http://cm.example/gate", "interval": "30s"}}]),
    );
    settle(&mut w, 3);
    let call =
        GateCall { gate: "ticket".into(), point: GatePoint::Start, weight: None, revision: canary.clone() };
    assert_eq!(w.plan().gate_calls, vec![call.clone()]);
    answer(&mut w, &call, GateOutcome::Closed, "HTTP 409: CHG-42 not approved");
    w.round(1);
    assert!(w.status.message.as_deref().unwrap().contains("CHG-42 not approved"));
    assert!(w.plan().gate_calls.is_empty(), "not asked again before the interval");
    assert!(w.plan().requeue_after.unwrap() <= std::time::Duration::from_secs(30));
    w.round(30);
    assert_eq!(w.plan().gate_calls, vec![call.clone()], "asked again after 30s");
    answer(&mut w, &call, GateOutcome::Open, "HTTP 200");
    settle(&mut w, 2);
    assert_eq!(w.weight(), 5);
    assert_eq!(entry(&w, "ticket", GatePoint::Start).unwrap().message.as_deref(), Some("webhook: HTTP 200"));
}

#[test]
fn a_webhook_answering_rollback_rolls_the_revision_back_with_its_reason() {
    let (mut w, _stable, canary) = with_stable_then(canary_steps(), false);
    gated(
        &mut w,
        json!([{"name": "ticket", "at": ["WeightIncrease"], "webhook": {"url": "http://cm.example/gate"}}]),
    );
    settle(&mut w, 3);
    assert_eq!(w.weight(), 0, "WeightIncrease gates the first traffic too");
    let call = GateCall {
        gate: "ticket".into(),
        point: GatePoint::WeightIncrease,
        weight: Some(5),
        revision: canary,
    };
    answer(&mut w, &call, GateOutcome::Rollback, "CHG-42 rejected by CAB");
    w.round(1);
    let rollback = w.status.rollback.clone().unwrap();
    assert_eq!(rollback.reason, RollbackReason::GateRejected);
    assert_eq!(rollback.check.as_deref(), Some("ticket"));
    assert!(rollback.message.contains("CHG-42 rejected by CAB"));
}

#[test]
fn schema_aware_gates_let_unchanged_tools_flow_and_hold_changed_ones() {
    let gates = json!([
        {"name": "schema-review", "at": ["Start"], "when": "SchemaChanged", "approval": {}},
        {"name": "breaking-review", "at": ["Promotion"], "when": "SchemaBreaking", "approval": {}}
    ]);
    // Image-only: the diff against stable is empty; no gate applies.
    let (mut w, _, _) = with_stable_then(json!({"canary": {"steps": [{"setWeight": 50}]}}), false);
    gated(&mut w, gates.clone());
    w.schema_change = Some(SchemaChange::Unchanged);
    settle(&mut w, 8);
    assert_eq!(w.status.stage, Some(Stage::Steady), "promoted without waiting: {:?}", w.status.message);
    assert!(w.status.gates.is_empty());

    // A new optional parameter: the SchemaChanged gate waits; the breaking one would not.
    let (mut w, _, _) = with_stable_then(json!({"canary": {"steps": [{"setWeight": 50}]}}), false);
    gated(&mut w, gates.clone());
    w.schema_change = Some(SchemaChange::NonBreaking);
    settle(&mut w, 5);
    assert_eq!(w.status.phase, Some(Phase::Paused));
    assert!(entry(&w, "schema-review", GatePoint::Start).is_some());
    w.request("approve=schema-review");
    settle(&mut w, 8);
    assert_eq!(w.status.stage, Some(Stage::Steady), "{:?}", w.status.message);

    // Unknown diff (stable could not be probed): gated, as the field's doc says.
    let (mut w, _, _) = with_stable_then(json!({"canary": {"steps": [{"setWeight": 50}]}}), false);
    gated(&mut w, gates);
    w.schema_change = None;
    settle(&mut w, 5);
    assert!(entry(&w, "schema-review", GatePoint::Start).is_some_and(|g| g.state == GateState::Waiting));
}

#[test]
fn a_freeze_window_closes_a_gate_and_lifts_by_itself_at_its_end() {
    // T0 is 2027-01-15T08:00:00Z, a Friday.
    assert_eq!(jiff::Timestamp::from_second(super::tests::T0).unwrap().to_string(), "2027-01-15T08:00:00Z");
    let (mut w, _, _) = with_stable_then(canary_steps(), false);
    gated(
        &mut w,
        json!([{"name": "friday-freeze", "at": ["Start", "WeightIncrease"],
                "freeze": {"timeZone": "Europe/Berlin", "windows": [{"days": ["Fri"], "from": "08:00", "to": "10:00"}]}}]),
    );
    settle(&mut w, 3);
    assert_eq!(w.weight(), 0);
    assert!(
        w.status.message.as_deref().unwrap().contains("change freeze until 2027-01-15 10:00 CET"),
        "{:?}",
        w.status.message
    );
    // 09:00 Berlin is 08:00 UTC: the window ends at 09:00 UTC; the engine asks to be woken then.
    assert!(w.plan().requeue_after.is_some());
    w.now = super::tests::T0 + 3600;
    settle(&mut w, 3);
    assert_eq!(w.weight(), 5, "the freeze ended: {:?}", w.status.message);

    // An unknown time zone stalls with the reason, never lets the change through.
    let (mut w, _, _) = with_stable_then(canary_steps(), false);
    gated(
        &mut w,
        json!([{"name": "f", "at": ["Start"], "freeze": {"timeZone": "Mars/Base", "windows": [{"from": "00:00", "to": "24:00"}]}}]),
    );
    settle(&mut w, 3);
    assert_eq!(w.weight(), 0);
    assert_eq!(w.status.phase, Some(Phase::Degraded));
    assert!(w.status.message.as_deref().unwrap().contains("Mars/Base"));
}

#[test]
fn blue_green_flips_only_after_its_gates() {
    let (mut w, stable, canary) = with_stable_then(json!({"blueGreen": {"autoPromote": true}}), false);
    gated(&mut w, json!([{"name": "cab", "at": ["Flip"], "approval": {}}]));
    settle(&mut w, 5);
    assert_eq!(w.status.stage, Some(Stage::Preview));
    assert_eq!(w.status.phase, Some(Phase::Paused));
    assert_eq!(w.plan().revision(&stable).unwrap().weight, 100);
    w.request("approve");
    settle(&mut w, 2);
    assert_eq!(w.status.stage, Some(Stage::PostPromotion));
    assert_eq!(w.plan().revision(&canary).unwrap().weight, 100);
}
