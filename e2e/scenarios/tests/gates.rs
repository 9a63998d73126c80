//! Change gates and notifications on the real cluster: a revision whose tools changed waits at
//! its schema gate while an image-only revision of another rollout goes through; `kubectl
//! mcprollout approve` opens the gate; a change-management webhook (a real HTTP server in the
//! cluster, `mcp-hooks`) opens the promotion gate with the rollout's context and a bearer token
//! from a Secret; and the rollback of a failing canary is posted to a receiver whose URL is in a
//! Secret, carrying the error ratio that caused it.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::{Bed, fixture_rollout, phase, revision_of, with_image};
use mcp_rollout::api::{GateState, McpRollout, Phase, RollbackReason};
use serde_json::{Value, json};

fn gated(name: &str, hooks: &str, prometheus: &str) -> Value {
    let mut rollout = fixture_rollout(name, "mcp-fixture:v1", &[], prometheus);
    rollout["spec"]["gates"] = json!([
        {"name": "schema-review", "at": ["Start"], "when": "SchemaChanged", "approval": {}},
        {"name": "ticket", "at": ["Promotion"],
         "webhook": {"url": format!("http://{hooks}:8080/gate/ticket"),
                     "tokenSecretRef": {"name": "change-system", "key": "token"},
                     "timeout": "3s", "interval": "2s"}}
    ]);
    rollout["spec"]["notifications"] = json!({"receivers": [
        {"name": "ops", "format": "Webhook", "urlSecretRef": {"name": "ops-hook", "key": "url"}}
    ]});
    rollout["spec"]["analysis"]["failureLimit"] = json!(1);
    rollout
}

/// What `mcp-hooks` recorded.
async fn received(bed: &Bed) -> Vec<Value> {
    let text = bed.service_request("hooks", http::Method::GET, "/received", None).await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

fn notified<'a>(all: &'a [Value], rollout: &str, kind: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|r| {
            r["path"] == "/notify/ops" && r["body"]["rollout"]["name"] == rollout && r["body"]["kind"] == kind
        })
        .collect()
}

fn waiting_gate(r: &McpRollout, gate: &str) -> bool {
    r.status.as_ref().is_some_and(|s| s.gates.iter().any(|g| g.name == gate && g.state == GateState::Waiting))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_waits_for_approval_while_an_image_only_change_flows_and_rollbacks_are_notified() {
    let bed = Bed::start().await;
    let _ = e2e::bin_dir();
    let hooks = bed.hooks().await;
    bed.secret("change-system", &[("token", "s3cret")]).await;
    bed.secret("ops-hook", &[("url", &format!("http://{hooks}:8080/notify/ops"))]).await;
    // The change system approves ticket gates (the schema gate is a person's).
    let open = json!({"status": 200, "body": "CHG-1042 approved"});
    bed.service_request("hooks", http::Method::PUT, "/answer/ticket", Some(&open)).await.unwrap();

    let docs = gated("docs", &hooks, &bed.prometheus_url());
    let tools = gated("tools", &hooks, &bed.prometheus_url());
    bed.apply(&docs).await;
    bed.apply(&tools).await;
    bed.wait_healthy("docs").await;
    bed.wait_healthy("tools").await;

    // docs: new tools (v2-compatible adds one); tools: the same server, another setting.
    let docs_v2 = with_image(&docs, "mcp-fixture:v2-compatible", &[]);
    let tools_v2 = with_image(&tools, "mcp-fixture:v1", &[("FIXTURE_LATENCY_MS", "1")]);
    let (docs_rev, tools_rev) = (revision_of(&docs_v2), revision_of(&tools_v2));
    // Calls for the analysis of tools' canary to judge (it holds at an inconclusive verdict).
    let tools_traffic = bed.calls("tools", 100.0, 10.0).await;
    let started = Instant::now();
    bed.apply(&docs_v2).await;
    bed.apply(&tools_v2).await;
    let waiting = bed
        .wait("docs", "docs waiting at its schema gate", Duration::from_secs(90), |r| {
            waiting_gate(r, "schema-review") && phase(r) == Some(Phase::Paused)
        })
        .await;
    let waited_after = started.elapsed().as_secs_f64();
    let status = waiting.status.clone().unwrap();
    assert_eq!(status.desired_weight, 0, "no traffic before the gate opens");
    assert!(status.message.as_deref().unwrap().contains("gate schema-review at Start waits"), "{status:?}");
    let canary_probe = status.probes.iter().find(|p| p.revision == docs_rev).unwrap();
    assert_eq!(canary_probe.schema_change, Some(mcp_rollout::api::SchemaChange::NonBreaking));
    if let Some(dir) = std::env::var_os("E2E_CAPTURE_DIR") {
        std::fs::write(
            std::path::Path::new(&dir).join("gate-waiting.json"),
            serde_json::to_string_pretty(&waiting).unwrap(),
        )
        .unwrap();
    }

    // Meanwhile the image-only change goes all the way, through the ticket gate.
    let promoted = bed
        .wait("tools", "the image-only revision promoted", Duration::from_secs(120), |r| {
            e2e::stable_is(r, &tools_rev)
        })
        .await;
    let tools_secs = started.elapsed().as_secs_f64();
    tools_traffic.abort();
    bed.stop_agents().await;
    let tools_gates = promoted.status.unwrap().gates;
    assert!(
        tools_gates.iter().all(|g| g.name == "ticket"),
        "no schema gate for an unchanged schema: {tools_gates:?}"
    );
    let docs_now = bed.get("docs").await;
    assert!(waiting_gate(&docs_now, "schema-review"), "docs still waits");
    let calls = received(&bed).await;
    let tools_call = calls
        .iter()
        .find(|r| r["path"] == "/gate/ticket" && r["body"]["rollout"]["name"] == "tools")
        .expect("the ticket gate asked the change system");
    assert_eq!(tools_call["authorization"], "Bearer s3cret");
    assert_eq!(tools_call["body"]["schemaChange"], "Unchanged");
    assert_eq!(tools_call["body"]["point"], "Promotion");
    assert_eq!(tools_call["body"]["revision"], tools_rev.as_str());

    // What a person sees, then the approval.
    let (ok, view) = bed.cli(&["status", "docs"]).await;
    assert!(ok && view.contains("Gates") && view.contains("WAITING"), "{view}");
    // Calls for the analysis of docs' canary once it takes traffic (without them it holds at an
    // inconclusive verdict: too few canary calls at 5%).
    let docs_traffic = bed.calls("docs", 110.0, 20.0).await;
    let (ok, out) = bed.cli(&["approve", "docs", "--gate", "schema-review"]).await;
    assert!(ok, "{out}");
    let approved_at = Instant::now();
    let done = bed
        .wait("docs", "docs promoted after approval", Duration::from_secs(120), |r| {
            e2e::stable_is(r, &docs_rev)
        })
        .await;
    let docs_secs = approved_at.elapsed().as_secs_f64();
    docs_traffic.abort();
    bed.stop_agents().await;
    let gates = done.status.unwrap().gates;
    assert!(gates.iter().all(|g| g.state == GateState::Open), "{gates:?}");
    let docs_call = received(&bed)
        .await
        .into_iter()
        .find(|r| r["path"] == "/gate/ticket" && r["body"]["rollout"]["name"] == "docs")
        .expect("docs asked the change system at promotion");
    assert_eq!(docs_call["body"]["schemaChange"], "NonBreaking");
    let events: Vec<String> = bed.events("docs").await.into_iter().map(|(reason, _)| reason).collect();
    for reason in ["GateWaiting", "GateOpened", "RequestHandled", "Promoted"] {
        assert!(events.iter().any(|e| e == reason), "event {reason} in {events:?}");
    }

    // A failing canary of docs: rolled back by the analysis, and told with its numbers.
    let traffic = bed.calls("docs", 45.0, 20.0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut bad = with_image(&docs_v2, "mcp-fixture:v2-compatible", &[("FIXTURE_ERROR_RATE", "0.3")]);
    bad["spec"]["probe"].as_object_mut().unwrap().remove("toolCall");
    bed.apply(&bad).await;
    let rolled_back = bed
        .wait("docs", "the failing canary rolled back", Duration::from_secs(120), |r| {
            r.status.as_ref().is_some_and(|s| s.rollback.is_some() && s.canary_revision.is_none())
        })
        .await;
    let rollback = rolled_back.status.unwrap().rollback.unwrap();
    assert_eq!(rollback.reason, RollbackReason::AnalysisFailed, "{rollback:?}");
    traffic.abort();
    let mut told = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(30);
    while told.is_null() {
        assert!(Instant::now() < deadline, "no rollback notification within 30 s");
        let all = received(&bed).await;
        if let Some(n) = notified(&all, "docs", "RolledBack").first() {
            told = (*n).clone();
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let error_rate = told["body"]["details"]["analysis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "errorRate")
        .cloned()
        .expect("the error-rate check in the notification");
    let (value, threshold) =
        (error_rate["value"].as_f64().unwrap(), error_rate["threshold"].as_f64().unwrap());
    assert!(value > threshold, "{error_rate}");
    assert_eq!(told["body"]["details"]["rollback"]["reason"], "AnalysisFailed");

    let all = received(&bed).await;
    for kind in ["RolloutStarted", "GateWaiting", "StepReached", "Promoted", "RolledBack"] {
        assert!(!notified(&all, "docs", kind).is_empty(), "docs: {kind} told");
    }
    assert!(
        notified(&all, "tools", "GateWaiting").is_empty() || !notified(&all, "tools", "Promoted").is_empty()
    );
    let notifications = all.iter().filter(|r| r["path"] == "/notify/ops").count();
    assert!(bed.operator_running().await, "the operator never restarted");
    println!(
        "gates: docs (tools changed, NonBreaking) waited at its schema gate {waited_after:.1} s after the change \
         while tools (image-only) was promoted through the ticket webhook in {tools_secs:.1} s; approved, docs was \
         promoted {docs_secs:.1} s later; its failing canary was rolled back ({}) and the notification carried \
         errorRate {value:.4} against {threshold}; {notifications} notifications received in all",
        rollback.message
    );
}
