//! Gateway API weights (issue 10 scenario 4): the HTTPRoute's stable/canary backend weights
//! follow the canary steps exactly, nothing else in the route changes, deleting the McpRollout
//! restores the route, and a missing route is `Stalled`. The HTTPRoute CRD is the upstream one
//! (`sigs.k8s.io/gateway-api`); no gateway controller runs here: these are object-level checks
//! (what a gateway controller would be told).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{Bed, fixture_rollout, revision_of, with_image};
use kube::{
    ResourceExt,
    api::{DeleteParams, DynamicObject, PostParams},
};
use serde_json::{Value, json};

fn route(namespace: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "mcp", "namespace": namespace, "labels": {"team": "docs"}},
        "spec": {
            "parentRefs": [{"name": "public-gateway", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["mcp.example.com"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/healthz"}}],
                 "backendRefs": [{"name": "health", "port": 8080}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/mcp"}}],
                 "filters": [{"type": "RequestHeaderModifier",
                              "requestHeaderModifier": {"add": [{"name": "X-Via", "value": "gateway"}]}}],
                 "timeouts": {"request": "300s"},
                 "backendRefs": [{"name": "docs-stable", "port": 8080, "weight": 100},
                                 {"name": "docs-canary", "port": 8080, "weight": 0}]}
            ]
        }
    })
}

/// The route without what the operator owns (our weights and session persistence).
fn foreign_part(route: &Value) -> Value {
    let mut r = route["spec"].clone();
    let rule = &mut r["rules"][1];
    rule.as_object_mut().unwrap().remove("sessionPersistence");
    for b in rule["backendRefs"].as_array_mut().unwrap() {
        b.as_object_mut().unwrap().remove("weight");
    }
    json!({"spec": r, "labels": route["metadata"]["labels"]})
}

fn canary_weight(route: &Value) -> i64 {
    route["spec"]["rules"][1]["backendRefs"][1]["weight"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_weights_follow_the_steps_and_the_route_is_restored_on_delete() {
    let bed = Bed::start().await;
    let routes = bed.http_routes().await;
    let created: DynamicObject = serde_json::from_value(route(&bed.namespace)).unwrap();
    routes.create(&PostParams::default(), &created).await.unwrap();
    let original = serde_json::to_value(routes.get("mcp").await.unwrap()).unwrap();

    let mut v1 = fixture_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    v1["spec"]["trafficRouting"] = json!({"gatewayAPI": {"httpRouteRef": {"name": "mcp"}, "sessionPersistence": {"headerName": "Mcp-Session-Id"}}});
    // No gateway moves traffic here, so there is nothing for the analysis to measure.
    v1["spec"].as_object_mut().unwrap().remove("analysis");
    bed.apply(&v1).await;
    bed.wait_healthy("docs").await;
    let get = || async { serde_json::to_value(routes.get("mcp").await.unwrap()).unwrap() };
    e2e::eventually("session persistence on the route", Duration::from_secs(20), || async {
        get().await["spec"]["rules"][1]["sessionPersistence"]
            == json!({"type": "Header", "sessionName": "Mcp-Session-Id"})
    })
    .await;
    assert!(bed.get("docs").await.finalizers().contains(&"mcprollout.dev/route".to_owned()));

    // A missing route is a Stalled rollout, not a crash.
    let mut lost = fixture_rollout("lost", "mcp-fixture:v1", &[], &bed.prometheus_url());
    lost["spec"]["replicas"] = json!(1);
    lost["spec"]["trafficRouting"] = json!({"gatewayAPI": {"httpRouteRef": {"name": "missing"}}});
    bed.apply(&lost).await;

    let v2 = with_image(&v1, "mcp-fixture:v2-compatible", &[]);
    bed.apply(&v2).await;
    let mut seen: Vec<(i64, i32, i32)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let w = canary_weight(&get().await);
        let status = bed.get("docs").await.status.unwrap();
        if seen.last().map(|s| s.0) != Some(w) {
            seen.push((w, status.desired_weight, status.effective_weight));
        }
        if status.stable_revision.as_deref() == Some(revision_of(&v2).as_str()) && w == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "rollout did not finish: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let weights: Vec<i64> = seen.iter().map(|s| s.0).collect();
    let mut steps: Vec<i64> = weights.iter().copied().filter(|w| *w != 0).collect();
    steps.retain(|w| *w != 100);
    assert_eq!(steps, vec![5, 25, 50], "the route followed the steps exactly: {seen:?}");
    let after = get().await;
    assert_eq!(foreign_part(&after), foreign_part(&original), "nothing else in the route changed");
    assert_eq!(after["spec"]["rules"][1]["backendRefs"][0]["weight"], 100);

    let (reason, message) = {
        let r = bed
            .wait("lost", "Stalled on the missing route", Duration::from_secs(30), |r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True"))
            })
            .await;
        let c = r.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Stalled").unwrap();
        (c.reason, c.message)
    };
    assert_eq!(reason, "RouteNotFound", "{message}");

    // Mid-rollout delete: the route goes back to all-stable.
    let v3 = with_image(&v1, "mcp-fixture:v2-compatible", &[("FIXTURE_LATENCY_MS", "1")]);
    bed.apply(&v3).await;
    e2e::eventually("the canary weighted", Duration::from_secs(60), || async {
        canary_weight(&get().await) > 0
    })
    .await;
    bed.rollouts().delete("docs", &DeleteParams::default()).await.unwrap();
    e2e::eventually("the McpRollout gone", Duration::from_secs(30), || async {
        bed.rollouts().get_opt("docs").await.unwrap().is_none()
    })
    .await;
    let restored = get().await;
    assert_eq!(canary_weight(&restored), 0);
    assert_eq!(restored["spec"]["rules"][1]["backendRefs"][0]["weight"], 100);
    assert_eq!(foreign_part(&restored), foreign_part(&original));
    println!(
        "gateway: route weights {weights:?} (with desired/effective {seen:?}); restored on delete; missing route: {message}"
    );
}
