//! Gateway API routing: the weights of the `<rollout>-stable` and `<rollout>-canary`
//! backendRefs of one HTTPRoute, set by a precise JSON patch that touches nothing else in the
//! route (server-side apply cannot: `spec.rules` is an atomic list upstream, so applying the
//! weights would take ownership of every rule). The patch first tests the route's
//! resourceVersion and each backend's name, so a concurrent edit makes it fail, not corrupt.
//!
//! Pure functions over the route as JSON; the router in [`GatewayRouter`] does the I/O.

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{
    error::Error,
    names::{self, FIELD_MANAGER},
    traffic::{RouteOutcome, RouteRequest, TrafficRouter, apply_services, patch_rotation},
};
use crate::{
    api::{GatewayApiRouting, McpRollout, SessionPersistence},
    engine::{RevisionPlan, Role},
};

/// The finalizer that restores the route when a Gateway-routed McpRollout is deleted.
pub const FINALIZER: &str = "mcprollout.dev/route";

pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// Why a route cannot be weighted: a `Stalled` reason and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteProblem {
    pub reason: &'static str,
    pub message: String,
}

/// Where our backends sit in the route: (rule index, backendRef index, is canary).
fn our_backends(route: &Value, rollout: &str) -> Vec<(usize, usize, bool)> {
    let (stable, canary) = (names::stable_service(rollout), names::canary_service(rollout));
    let mut found = Vec::new();
    for (r, rule) in route["spec"]["rules"].as_array().into_iter().flatten().enumerate() {
        for (b, backend) in rule["backendRefs"].as_array().into_iter().flatten().enumerate() {
            let is_service = backend["kind"].as_str().is_none_or(|k| k == "Service")
                && backend["group"].as_str().is_none_or(str::is_empty);
            match backend["name"].as_str() {
                Some(n) if is_service && n == stable => found.push((r, b, false)),
                Some(n) if is_service && n == canary => found.push((r, b, true)),
                _ => {}
            }
        }
    }
    found
}

/// Checks the route can be weighted: it exists, has both our backends in one rule, and keeps
/// the session persistence we write (once we have written it: the operator's field manager is
/// in the route's managedFields, and the field still is not there).
pub fn check(
    route: Option<&Value>,
    rollout: &str,
    reference: &str,
    persistence: Option<&SessionPersistence>,
) -> Result<(), RouteProblem> {
    let Some(route) = route else {
        return Err(RouteProblem {
            reason: "RouteNotFound",
            message: format!("HTTPRoute {reference} does not exist"),
        });
    };
    let backends = our_backends(route, rollout);
    let rules: std::collections::BTreeSet<usize> = backends.iter().map(|(r, _, _)| *r).collect();
    let complete = rules.iter().any(|r| {
        backends.iter().any(|(x, _, c)| x == r && !c) && backends.iter().any(|(x, _, c)| x == r && *c)
    });
    let written_by_us = route["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|fields| fields.iter().any(|f| f["manager"] == FIELD_MANAGER));
    if complete && written_by_us && persistence_dropped(route, rollout, persistence) {
        return Err(RouteProblem {
            reason: "SessionPersistenceUnsupported",
            message: format!(
                "HTTPRoute {reference} does not keep the sessionPersistence written on it: its CRD has no such \
                 field (in Gateway API it is in the experimental channel); install those CRDs or remove \
                 spec.trafficRouting.gatewayAPI.sessionPersistence"
            ),
        });
    }
    if complete {
        Ok(())
    } else {
        Err(RouteProblem {
            reason: "BackendNotFound",
            message: format!(
                "HTTPRoute {reference} has no rule with both backendRefs {} and {}",
                names::stable_service(rollout),
                names::canary_service(rollout)
            ),
        })
    }
}

/// The canary's share of our backends' weights in the route (what the gateway does now).
pub fn effective_weight(route: &Value, rollout: &str) -> Option<i32> {
    let backends = our_backends(route, rollout);
    let weight =
        |r: usize, b: usize| route["spec"]["rules"][r]["backendRefs"][b]["weight"].as_i64().unwrap_or(1);
    let (mut stable, mut canary) = (0, 0);
    for (r, b, is_canary) in backends {
        if is_canary { canary += weight(r, b) } else { stable += weight(r, b) }
    }
    let total = stable + canary;
    #[allow(clippy::cast_possible_truncation)]
    (total > 0).then(|| ((canary * 100) as f64 / total as f64).round() as i32)
}

/// The JSON patch that sets our backends' weights (stable `100 - canary`) and, when asked,
/// header session persistence on the rules holding them; empty when the route already says so.
pub fn weight_patch(
    route: &Value,
    rollout: &str,
    canary_weight: i32,
    persistence: Option<&SessionPersistence>,
) -> Vec<Value> {
    let canary_weight = canary_weight.clamp(0, 100);
    let mut ops = Vec::new();
    let backends = our_backends(route, rollout);
    for (r, b, is_canary) in &backends {
        let want = if *is_canary { canary_weight } else { 100 - canary_weight };
        let backend = &route["spec"]["rules"][*r]["backendRefs"][*b];
        if backend["weight"].as_i64() != Some(i64::from(want)) {
            ops.push(json!({"op": "test", "path": format!("/spec/rules/{r}/backendRefs/{b}/name"), "value": backend["name"]}));
            let op = if backend.get("weight").is_some() { "replace" } else { "add" };
            ops.push(
                json!({"op": op, "path": format!("/spec/rules/{r}/backendRefs/{b}/weight"), "value": want}),
            );
        }
    }
    if let Some(p) = persistence {
        let mut wanted = json!({"type": "Header", "sessionName": p.header_name});
        if let Some(timeout) = p.absolute_timeout {
            wanted["absoluteTimeout"] = json!(format!("{}s", timeout.as_secs()));
        }
        let rules: std::collections::BTreeSet<usize> = backends.iter().map(|(r, _, _)| *r).collect();
        for r in rules {
            let current = &route["spec"]["rules"][r]["sessionPersistence"];
            if *current != wanted {
                let op = if current.is_null() { "add" } else { "replace" };
                ops.push(
                    json!({"op": op, "path": format!("/spec/rules/{r}/sessionPersistence"), "value": wanted}),
                );
            }
        }
    }
    if !ops.is_empty()
        && let Some(rv) = route["metadata"]["resourceVersion"].as_str()
    {
        ops.insert(0, json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
    }
    ops
}

/// Whether a route as stored lacks the session persistence a patch wrote on our rules: the
/// API server pruned it (the field exists only in the Gateway API experimental channel's CRD).
pub fn persistence_dropped(stored: &Value, rollout: &str, persistence: Option<&SessionPersistence>) -> bool {
    persistence.is_some()
        && our_backends(stored, rollout)
            .iter()
            .any(|(r, _, _)| stored["spec"]["rules"][*r].get("sessionPersistence").is_none_or(Value::is_null))
}

/// The canary weight a plan asks of the route.
pub fn canary_weight(plan: &[RevisionPlan]) -> i32 {
    plan.iter().find(|r| r.role == Role::Canary).map_or(0, |r| r.weight)
}

/// Weights through an HTTPRoute; pods of every weighted revision are in rotation behind their
/// own Service.
pub struct GatewayRouter {
    client: Client,
}

impl GatewayRouter {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn routes(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &http_route_resource())
    }

    /// Reads the route a rollout refers to (`None` when it does not exist).
    pub async fn get(
        &self,
        rollout: &McpRollout,
        routing: &GatewayApiRouting,
    ) -> Result<Option<Value>, Error> {
        let namespace = route_namespace(rollout, routing);
        let route = self.routes(&namespace).get_opt(&routing.http_route_ref.name).await?;
        route
            .map(|r| serde_json::to_value(r).map_err(|source| Error::Serialize { what: "HTTPRoute", source }))
            .transpose()
    }

    /// Sets the route's weights (all to stable when `canary_weight` is 0), on the route as
    /// `observed` in this reconcile or else read now. The patch tests the route's
    /// resourceVersion, so a route changed since it was read is not overwritten (the patch
    /// fails and the reconcile is retried).
    pub async fn set_weights(
        &self,
        rollout: &McpRollout,
        routing: &GatewayApiRouting,
        canary_weight: i32,
        observed: Option<&Value>,
    ) -> Result<bool, Error> {
        let route = match observed {
            Some(route) => route.clone(),
            None => match self.get(rollout, routing).await? {
                Some(route) => route,
                None => return Ok(false),
            },
        };
        let name = rollout.metadata.name.clone().unwrap_or_default();
        let ops = weight_patch(&route, &name, canary_weight, routing.session_persistence.as_ref());
        if ops.is_empty() {
            return Ok(false);
        }
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
            .map_err(|source| Error::Serialize { what: "route patch", source })?;
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
        self.routes(&route_namespace(rollout, routing))
            .patch(&routing.http_route_ref.name, &params, &Patch::<()>::Json(patch))
            .await?;
        Ok(true)
    }
}

pub fn route_namespace(rollout: &McpRollout, routing: &GatewayApiRouting) -> String {
    routing
        .http_route_ref
        .namespace
        .clone()
        .or_else(|| rollout.metadata.namespace.clone())
        .unwrap_or_default()
}

impl TrafficRouter for GatewayRouter {
    async fn route(&self, request: &RouteRequest<'_>) -> Result<RouteOutcome, Error> {
        let (pods, conflicts) = apply_services(&self.client, request).await?;
        // The route weights revisions; every pod of a weighted revision serves its Service.
        let plan: Vec<RevisionPlan> = request
            .plan
            .iter()
            .map(|r| RevisionPlan { in_rotation: if r.weight > 0 { r.replicas } else { 0 }, ..r.clone() })
            .collect();
        let mut outcome = patch_rotation(&pods, &plan, request.pods).await?;
        outcome.conflicts = conflicts;
        if let Some(routing) =
            request.rollout.spec.traffic_routing.as_ref().and_then(|t| t.gateway_api.as_ref())
        {
            self.set_weights(request.rollout, routing, canary_weight(request.plan), request.route).await?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Value {
        json!({
            "metadata": {"name": "mcp", "resourceVersion": "41"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": ["mcp.example.com"],
                "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/other"}}],
                     "backendRefs": [{"name": "other", "port": 80}]},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/mcp"}}],
                     "timeouts": {"request": "300s"},
                     "backendRefs": [{"name": "docs-stable", "port": 8080, "weight": 100},
                                     {"name": "docs-canary", "port": 8080}]}
                ]
            }
        })
    }

    fn apply(route: &Value, ops: Vec<Value>) -> Value {
        let mut out = route.clone();
        json_patch::patch(&mut out, &serde_json::from_value::<json_patch::Patch>(Value::Array(ops)).unwrap())
            .unwrap();
        out
    }

    #[test]
    fn the_patch_sets_only_our_weights_and_is_empty_when_they_hold() {
        let r = route();
        let patched = apply(&r, weight_patch(&r, "docs", 25, None));
        assert_eq!(patched["spec"]["rules"][1]["backendRefs"][0]["weight"], 75);
        assert_eq!(patched["spec"]["rules"][1]["backendRefs"][1]["weight"], 25);
        let mut untouched = patched.clone();
        untouched["spec"]["rules"][1]["backendRefs"][0]["weight"] = json!(100);
        untouched["spec"]["rules"][1]["backendRefs"][1].as_object_mut().unwrap().remove("weight");
        assert_eq!(untouched, r, "nothing else in the route changed");
        assert!(weight_patch(&patched, "docs", 25, None).is_empty());
        assert_eq!(effective_weight(&patched, "docs"), Some(25));
        assert_eq!(effective_weight(&r, "docs"), Some(1), "an unset weight counts 1, as gateways do");
    }

    #[test]
    fn the_patch_tests_the_resource_version_and_the_backend_names() {
        let ops = weight_patch(&route(), "docs", 50, None);
        assert_eq!(ops[0], json!({"op": "test", "path": "/metadata/resourceVersion", "value": "41"}));
        assert!(ops.iter().any(|o| o["op"] == "test" && o["path"] == "/spec/rules/1/backendRefs/1/name"));
        let mut moved = route();
        moved["metadata"]["resourceVersion"] = json!("42");
        let mut target = moved.clone();
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        assert!(json_patch::patch(&mut target, &patch).is_err(), "a concurrent edit makes the patch fail");
    }

    #[test]
    fn session_persistence_is_set_on_our_rule_only() {
        let r = route();
        let p = SessionPersistence { header_name: "Mcp-Session-Id".into(), absolute_timeout: None };
        let patched = apply(&r, weight_patch(&r, "docs", 0, Some(&p)));
        assert_eq!(
            patched["spec"]["rules"][1]["sessionPersistence"],
            json!({"type": "Header", "sessionName": "Mcp-Session-Id"})
        );
        assert!(patched["spec"]["rules"][0].get("sessionPersistence").is_none());
        assert!(weight_patch(&patched, "docs", 0, Some(&p)).is_empty());
    }

    #[test]
    fn session_persistence_pruned_by_the_crd_is_noticed() {
        let p = SessionPersistence { header_name: "Mcp-Session-Id".into(), absolute_timeout: None };
        let r = route();
        let kept = apply(&r, weight_patch(&r, "docs", 5, Some(&p)));
        assert!(!persistence_dropped(&kept, "docs", Some(&p)));
        // What the standard channel's CRD stores: the weights, and no sessionPersistence.
        let pruned = apply(&r, weight_patch(&r, "docs", 5, None));
        assert!(persistence_dropped(&pruned, "docs", Some(&p)));
        assert!(!persistence_dropped(&pruned, "docs", None), "nothing asked, nothing dropped");
        // As a route problem: only once we wrote the route (our manager in managedFields).
        assert!(check(Some(&pruned), "docs", "ns/mcp", Some(&p)).is_ok(), "not written yet");
        let mut written = pruned.clone();
        written["metadata"]["managedFields"] = json!([{"manager": FIELD_MANAGER, "operation": "Update"}]);
        assert_eq!(
            check(Some(&written), "docs", "ns/mcp", Some(&p)).unwrap_err().reason,
            "SessionPersistenceUnsupported"
        );
        let mut kept = kept;
        kept["metadata"]["managedFields"] = written["metadata"]["managedFields"].clone();
        assert!(check(Some(&kept), "docs", "ns/mcp", Some(&p)).is_ok());
    }

    #[test]
    fn a_missing_route_or_backend_is_a_named_problem() {
        assert_eq!(check(None, "docs", "ns/mcp", None).unwrap_err().reason, "RouteNotFound");
        let mut r = route();
        r["spec"]["rules"][1]["backendRefs"].as_array_mut().unwrap().pop();
        let problem = check(Some(&r), "docs", "ns/mcp", None).unwrap_err();
        assert_eq!(problem.reason, "BackendNotFound");
        assert!(problem.message.contains("docs-canary"));
        assert!(check(Some(&route()), "docs", "ns/mcp", None).is_ok());
    }
}
