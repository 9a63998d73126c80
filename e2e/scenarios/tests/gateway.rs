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

/// The Stalled condition's reason, when the rollout is Stalled.
fn stalled_reason(rollout: &mcp_rollout::api::McpRollout) -> Option<String> {
    rollout
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled" && c.status == "True")
        .map(|c| c.reason.clone())
}

/// Issue 19 item 2: a route in another namespace is touched only with a ReferenceGrant there;
/// a backendRef is ours only in our namespace (the route owners' own `docs-*` Services are
/// never weighted); one route is driven by one McpRollout, and passes to the next when the
/// first is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_elsewhere_needs_a_grant_and_one_route_has_one_rollout() {
    let app = Bed::start().await;
    let gateways = Bed::start().await;
    let routes = gateways.http_routes().await;
    let shared = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "shared", "namespace": gateways.namespace},
        "spec": {
            "parentRefs": [{"name": "public-gateway"}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/app"}}],
                 "backendRefs": [{"name": "docs-stable", "namespace": app.namespace, "port": 8080, "weight": 100},
                                 {"name": "docs-canary", "namespace": app.namespace, "port": 8080, "weight": 0}]},
                // The route owners' own Services, by the same names.
                {"matches": [{"path": {"type": "PathPrefix", "value": "/own"}}],
                 "backendRefs": [{"name": "docs-stable", "port": 8080, "weight": 100},
                                 {"name": "docs-canary", "port": 8080, "weight": 0}]}
            ]
        }
    });
    routes.create(&PostParams::default(), &serde_json::from_value(shared).unwrap()).await.unwrap();
    let get = || async { serde_json::to_value(routes.get("shared").await.unwrap()).unwrap() };
    let original = get().await;

    // No grant: Stalled, and the route is neither claimed nor weighted.
    let mut docs = fixture_rollout("docs", "mcp-fixture:v1", &[], &app.prometheus_url());
    docs["spec"]["replicas"] = json!(2);
    docs["spec"].as_object_mut().unwrap().remove("analysis");
    docs["spec"]["trafficRouting"] =
        json!({"gatewayAPI": {"httpRouteRef": {"name": "shared", "namespace": gateways.namespace}}});
    app.apply(&docs).await;
    let refused = app
        .wait("docs", "Stalled: RouteNotGranted", Duration::from_secs(60), |r| {
            stalled_reason(r).as_deref() == Some("RouteNotGranted")
        })
        .await;
    let message = refused.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("ReferenceGrant"), "{message}");
    assert_eq!(get().await["metadata"]["resourceVersion"], original["metadata"]["resourceVersion"]);

    // The route owners grant it: the rollout goes on, claims the route, weights only its rule.
    let grants: kube::Api<DynamicObject> = kube::Api::namespaced_with(
        gateways.client.clone(),
        &gateways.namespace,
        &mcp_rollout::controller::gateway::reference_grant_resource(),
    );
    let grant = json!({
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "mcp-rollouts-of-app"},
        "spec": {
            "from": [{"group": "mcprollout.dev", "kind": "McpRollout", "namespace": app.namespace}],
            "to": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "shared"}]
        }
    });
    grants.create(&PostParams::default(), &serde_json::from_value(grant).unwrap()).await.unwrap();
    app.wait_healthy("docs").await;
    let owner = format!("{}/docs", app.namespace);
    e2e::eventually("the route claimed by the rollout", Duration::from_secs(30), || async {
        get().await["metadata"]["annotations"]["mcprollout.dev/route-owner"] == json!(owner)
    })
    .await;
    app.apply(&with_image(&docs, "mcp-fixture:v2-compatible", &[])).await;
    let mut app_weights = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let route = get().await;
        let w = route["spec"]["rules"][0]["backendRefs"][1]["weight"].as_i64().unwrap_or(-1);
        if app_weights.last() != Some(&w) {
            app_weights.push(w);
        }
        assert_eq!(route["spec"]["rules"][1], original["spec"]["rules"][1], "the owners' rule untouched");
        let status = app.get("docs").await.status.unwrap();
        let promoted = status.canary_revision.is_none()
            && status.stable_revision.as_deref() != Some(revision_of(&docs).as_str());
        if promoted && w == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the canary did not finish: {app_weights:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app_weights.contains(&5) && app_weights.contains(&50), "{app_weights:?}");

    // A second McpRollout naming the route (the owners' own, in the route's namespace): a
    // conflict, and it writes nothing.
    let mut own = fixture_rollout("docs", "mcp-fixture:v1", &[], &gateways.prometheus_url());
    own["spec"]["replicas"] = json!(1);
    own["spec"].as_object_mut().unwrap().remove("analysis");
    own["spec"]["trafficRouting"] = json!({"gatewayAPI": {"httpRouteRef": {"name": "shared"}}});
    let before = get().await;
    gateways.apply(&own).await;
    let conflict = gateways
        .wait("docs", "Stalled: RouteConflict", Duration::from_secs(60), |r| {
            stalled_reason(r).as_deref() == Some("RouteConflict")
        })
        .await;
    let message = conflict.status.unwrap().message.unwrap_or_default();
    assert!(message.contains(&owner), "the conflict names the owner: {message}");
    // Nothing of the second rollout's in the route: still the first's claim, its own rule as
    // the owners wrote it, the first's rule as the first left it.
    let after = get().await;
    assert_eq!(after["metadata"]["annotations"], before["metadata"]["annotations"]);
    assert_eq!(after["spec"], before["spec"]);

    // The owner deleted: the route is released, back on stable, and the other rollout takes it.
    app.rollouts().delete("docs", &DeleteParams::default()).await.unwrap();
    gateways.wait_healthy("docs").await;
    let taken = get().await;
    assert_eq!(
        taken["metadata"]["annotations"]["mcprollout.dev/route-owner"],
        json!(format!("{}/docs", gateways.namespace))
    );
    assert_eq!(taken["spec"]["rules"][0]["backendRefs"][0]["weight"], 100);
    assert_eq!(taken["spec"]["rules"][0]["backendRefs"][1]["weight"], 0);
    println!(
        "gateway, route elsewhere: RouteNotGranted until a ReferenceGrant, then weights {app_weights:?} on its \
         rule only; a second rollout Stalled ({message}); took the route over once the first was deleted"
    );
}
