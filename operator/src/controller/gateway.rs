//! Gateway API routing: the weights of the `<rollout>-stable` and `<rollout>-canary`
//! backendRefs of one HTTPRoute, set by a precise JSON patch that touches nothing else in the
//! route (server-side apply cannot: `spec.rules` is an atomic list upstream, so applying the
//! weights would take ownership of every rule). The patch first tests the route's
//! resourceVersion and each backend's name, so a concurrent edit makes it fail, not corrupt.
//!
//! Whose route it is: a backendRef is ours only when it names our Service in the rollout's
//! namespace (a route elsewhere names other Services by the same names). A route in another
//! namespace is touched only when a Gateway API `ReferenceGrant` there allows McpRollouts of
//! the rollout's namespace to refer to it. One route is driven by one McpRollout: the first
//! to write it claims it (annotation `mcprollout.dev/route-owner`, written in the same
//! resourceVersion-tested patch); another naming it is `Stalled` (`RouteConflict`) until the
//! owner is deleted and releases it — not a tug of war over its rules.
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

/// The annotation that says which McpRollout (`<namespace>/<name>`) drives a route.
pub const OWNER_ANNOTATION: &str = "mcprollout.dev/route-owner";

/// `OWNER_ANNOTATION` as a JSON pointer segment (`/` is `~1`).
const OWNER_POINTER: &str = "/metadata/annotations/mcprollout.dev~1route-owner";

pub fn reference_grant_resource() -> ApiResource {
    // v1beta1: served by every Gateway API release with ReferenceGrant (v1 only from 1.5).
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1beta1", "ReferenceGrant"),
        "referencegrants",
    )
}

/// The McpRollout a route's backends belong to.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Owner<'_> {
    fn claim(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Who claimed the route, if anyone.
fn claimed_by(route: &Value) -> Option<&str> {
    route["metadata"]["annotations"][OWNER_ANNOTATION].as_str()
}

/// Whether another McpRollout drives the route.
fn claimed_by_another(route: &Value, owner: &Owner<'_>) -> bool {
    claimed_by(route).is_some_and(|c| c != owner.claim())
}

/// Whether one of `grants` (ReferenceGrants in the route's namespace, as JSON) lets McpRollouts
/// of `rollout_namespace` refer to the HTTPRoute `route`.
pub fn granted(grants: &[Value], rollout_namespace: &str, route: &str) -> bool {
    grants.iter().any(|grant| {
        let from = grant["spec"]["from"].as_array().into_iter().flatten().any(|f| {
            f["group"] == "mcprollout.dev" && f["kind"] == "McpRollout" && f["namespace"] == rollout_namespace
        });
        let to = grant["spec"]["to"].as_array().into_iter().flatten().any(|t| {
            t["group"] == "gateway.networking.k8s.io"
                && t["kind"] == "HTTPRoute"
                && t["name"].as_str().is_none_or(|n| n == route)
        });
        from && to
    })
}

/// The problem of a route in another namespace that no ReferenceGrant there opens to us.
pub fn not_granted(rollout_namespace: &str, route_namespace: &str, route: &str) -> RouteProblem {
    RouteProblem {
        reason: "RouteNotGranted",
        message: format!(
            "HTTPRoute {route_namespace}/{route} is in another namespace and no ReferenceGrant there lets \
             McpRollouts of namespace {rollout_namespace} refer to it: its owners can create one in \
             {route_namespace} (from: group mcprollout.dev, kind McpRollout, namespace {rollout_namespace}; \
             to: group gateway.networking.k8s.io, kind HTTPRoute, name {route}), or keep the route in \
             {rollout_namespace}"
        ),
    }
}

/// The operator's RBAC does not let it read a route (or a namespace's ReferenceGrants): an
/// operator installed without `rbac.gatewayAPI`. Named as such, not retried as an API error.
pub fn forbidden(what: &str) -> RouteProblem {
    RouteProblem {
        reason: "RouteForbidden",
        message: format!(
            "the operator may not read {what} (403 Forbidden): Gateway API routing needs the chart's \
             rbac.gatewayAPI=true (get and patch on httproutes, list on referencegrants)"
        ),
    }
}

/// Whether a Kubernetes error is the API server's 403.
pub fn is_forbidden(error: &Error) -> bool {
    matches!(error, Error::Kube(kube::Error::Api(e)) if e.code == 403)
}

/// Why a route cannot be weighted: a `Stalled` reason and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteProblem {
    pub reason: &'static str,
    pub message: String,
}

/// Where our backends sit in the route: (rule index, backendRef index, is canary). A
/// backendRef without a namespace names a Service in the route's namespace.
fn our_backends(route: &Value, owner: &Owner<'_>) -> Vec<(usize, usize, bool)> {
    let (stable, canary) = (names::stable_service(owner.name), names::canary_service(owner.name));
    let route_namespace = route["metadata"]["namespace"].as_str();
    let mut found = Vec::new();
    for (r, rule) in route["spec"]["rules"].as_array().into_iter().flatten().enumerate() {
        for (b, backend) in rule["backendRefs"].as_array().into_iter().flatten().enumerate() {
            let namespace = backend["namespace"].as_str().or(route_namespace);
            let is_service = backend["kind"].as_str().is_none_or(|k| k == "Service")
                && backend["group"].as_str().is_none_or(str::is_empty)
                && namespace == Some(owner.namespace);
            match backend["name"].as_str() {
                Some(n) if is_service && n == stable => found.push((r, b, false)),
                Some(n) if is_service && n == canary => found.push((r, b, true)),
                _ => {}
            }
        }
    }
    found
}

/// Checks the route can be weighted: it exists, no other McpRollout drives it, it has both our
/// backends in one rule, and keeps the session persistence we write (once we have written it:
/// the operator's field manager is in the route's managedFields, and the field still is not
/// there).
pub fn check(
    route: Option<&Value>,
    owner: &Owner<'_>,
    reference: &str,
    persistence: Option<&SessionPersistence>,
) -> Result<(), RouteProblem> {
    let Some(route) = route else {
        return Err(RouteProblem {
            reason: "RouteNotFound",
            message: format!("HTTPRoute {reference} does not exist"),
        });
    };
    if claimed_by_another(route, owner) {
        return Err(RouteProblem {
            reason: "RouteConflict",
            message: format!(
                "HTTPRoute {reference} is driven by McpRollout {} (annotation {OWNER_ANNOTATION}); one route \
                 has one McpRollout: name another route, or delete that McpRollout",
                claimed_by(route).unwrap_or_default()
            ),
        });
    }
    let backends = our_backends(route, owner);
    let rules: std::collections::BTreeSet<usize> = backends.iter().map(|(r, _, _)| *r).collect();
    let complete = rules.iter().any(|r| {
        backends.iter().any(|(x, _, c)| x == r && !c) && backends.iter().any(|(x, _, c)| x == r && *c)
    });
    let written_by_us = route["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|fields| fields.iter().any(|f| f["manager"] == FIELD_MANAGER));
    if complete && written_by_us && persistence_dropped(route, owner, persistence) {
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
                "HTTPRoute {reference} has no rule with both backendRefs {} and {} (Services in namespace {})",
                names::stable_service(owner.name),
                names::canary_service(owner.name),
                owner.namespace
            ),
        })
    }
}

/// The canary's share of our backends' weights in the route (what the gateway does now).
pub fn effective_weight(route: &Value, owner: &Owner<'_>) -> Option<i32> {
    let backends = our_backends(route, owner);
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

/// The JSON patch that claims the route for `owner` and sets our backends' weights (stable
/// `100 - canary`) and, when asked, header session persistence on the rules holding them;
/// empty when the route already says so, and when another McpRollout drives the route.
pub fn weight_patch(
    route: &Value,
    owner: &Owner<'_>,
    canary_weight: i32,
    persistence: Option<&SessionPersistence>,
) -> Vec<Value> {
    if claimed_by_another(route, owner) {
        return Vec::new();
    }
    let canary_weight = canary_weight.clamp(0, 100);
    let mut ops = Vec::new();
    let backends = our_backends(route, owner);
    if !backends.is_empty() && claimed_by(route).is_none() {
        if route["metadata"]["annotations"].is_object() {
            ops.push(json!({"op": "add", "path": OWNER_POINTER, "value": owner.claim()}));
        } else {
            ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {OWNER_ANNOTATION: owner.claim()}}));
        }
    }
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

/// The JSON patch that gives the route up (the owner's McpRollout is deleted, its weights
/// already back on stable): the claim removed, tested to still be ours.
pub fn release_patch(route: &Value, owner: &Owner<'_>) -> Vec<Value> {
    if claimed_by(route) != Some(owner.claim().as_str()) {
        return Vec::new();
    }
    let mut ops = vec![
        json!({"op": "test", "path": OWNER_POINTER, "value": owner.claim()}),
        json!({"op": "remove", "path": OWNER_POINTER}),
    ];
    if let Some(rv) = route["metadata"]["resourceVersion"].as_str() {
        ops.insert(0, json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
    }
    ops
}

/// Whether a route as stored lacks the session persistence a patch wrote on our rules: the
/// API server pruned it (the field exists only in the Gateway API experimental channel's CRD).
pub fn persistence_dropped(
    stored: &Value,
    owner: &Owner<'_>,
    persistence: Option<&SessionPersistence>,
) -> bool {
    persistence.is_some()
        && our_backends(stored, owner)
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

    /// Why the rollout may not touch its route at all, if so: the route is in another
    /// namespace and no ReferenceGrant there allows it. A cluster without the ReferenceGrant
    /// API has no grants; an operator not allowed to list them (its chart's
    /// `rbac.gatewayAPI` off, or a namespaced install) is told so (`RouteForbidden`).
    pub async fn refusal(
        &self,
        rollout: &McpRollout,
        routing: &GatewayApiRouting,
    ) -> Result<Option<RouteProblem>, Error> {
        let own = rollout.metadata.namespace.clone().unwrap_or_default();
        let namespace = route_namespace(rollout, routing);
        if namespace == own {
            return Ok(None);
        }
        let grants: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &namespace, &reference_grant_resource());
        let listed = match grants.list(&kube::api::ListParams::default()).await {
            Ok(list) => list.items,
            Err(kube::Error::Api(e)) if e.code == 404 => Vec::new(),
            Err(kube::Error::Api(e)) if e.code == 403 => {
                return Ok(Some(forbidden(&format!("the ReferenceGrants of namespace {namespace}"))));
            }
            Err(e) => return Err(e.into()),
        };
        let listed: Vec<Value> = listed.into_iter().filter_map(|g| serde_json::to_value(g).ok()).collect();
        let route = &routing.http_route_ref.name;
        Ok((!granted(&listed, &own, route)).then(|| not_granted(&own, &namespace, route)))
    }

    /// Reads the route a rollout refers to (`None` when it does not exist). Callers ask
    /// [`GatewayRouter::refusal`] first.
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
    /// fails and the reconcile is retried). A route the rollout may not touch (another
    /// namespace's without a grant, or another McpRollout's) is left as it is: a reconcile
    /// observes a route only after [`GatewayRouter::refusal`] found none, so only a route
    /// read here is asked again.
    pub async fn set_weights(
        &self,
        rollout: &McpRollout,
        routing: &GatewayApiRouting,
        canary_weight: i32,
        observed: Option<&Value>,
    ) -> Result<bool, Error> {
        let route = match observed {
            Some(route) => route.clone(),
            None => {
                if self.refusal(rollout, routing).await?.is_some() {
                    return Ok(false);
                }
                match self.get(rollout, routing).await {
                    Ok(Some(route)) => route,
                    Ok(None) => return Ok(false),
                    // Never readable, so never written: nothing to restore.
                    Err(e) if is_forbidden(&e) => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
        };
        let ops = weight_patch(&route, &owner(rollout), canary_weight, routing.session_persistence.as_ref());
        self.patch(rollout, routing, ops).await
    }

    /// Gives the route up when its McpRollout is deleted (after its weights went back to
    /// stable), so another McpRollout may drive it.
    pub async fn release(&self, rollout: &McpRollout, routing: &GatewayApiRouting) -> Result<bool, Error> {
        if self.refusal(rollout, routing).await?.is_some() {
            return Ok(false);
        }
        let route = match self.get(rollout, routing).await {
            Ok(Some(route)) => route,
            Ok(None) => return Ok(false),
            Err(e) if is_forbidden(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        let ops = release_patch(&route, &owner(rollout));
        self.patch(rollout, routing, ops).await
    }

    async fn patch(
        &self,
        rollout: &McpRollout,
        routing: &GatewayApiRouting,
        ops: Vec<Value>,
    ) -> Result<bool, Error> {
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

/// The McpRollout as the owner of its backends in a route.
pub fn owner(rollout: &McpRollout) -> Owner<'_> {
    Owner {
        namespace: rollout.metadata.namespace.as_deref().unwrap_or_default(),
        name: rollout.metadata.name.as_deref().unwrap_or_default(),
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
        let mut outcome = patch_rotation(&pods, &plan, request.pods, request.writes).await?;
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

    const DOCS: Owner<'static> = Owner { namespace: "ns", name: "docs" };

    #[test]
    fn a_403_is_a_missing_grant_named_as_such_and_nothing_else_is() {
        let status = |code| {
            Error::Kube(kube::Error::Api(
                kube::core::Status::failure("no", "Forbidden").with_code(code).boxed(),
            ))
        };
        assert!(is_forbidden(&status(403)));
        assert!(!is_forbidden(&status(404)) && !is_forbidden(&status(500)));
        assert!(!is_forbidden(&Error::MissingField("spec")));
        let p = forbidden("HTTPRoute ns/docs");
        assert_eq!(p.reason, "RouteForbidden");
        assert!(
            p.message.contains("HTTPRoute ns/docs") && p.message.contains("rbac.gatewayAPI=true"),
            "{p:?}"
        );
    }

    fn route() -> Value {
        json!({
            "metadata": {"name": "mcp", "namespace": "ns", "resourceVersion": "41"},
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
        let patched = apply(&r, weight_patch(&r, &DOCS, 25, None));
        assert_eq!(patched["spec"]["rules"][1]["backendRefs"][0]["weight"], 75);
        assert_eq!(patched["spec"]["rules"][1]["backendRefs"][1]["weight"], 25);
        assert_eq!(patched["metadata"]["annotations"][OWNER_ANNOTATION], "ns/docs", "the route claimed");
        let mut untouched = patched.clone();
        untouched["metadata"].as_object_mut().unwrap().remove("annotations");
        untouched["spec"]["rules"][1]["backendRefs"][0]["weight"] = json!(100);
        untouched["spec"]["rules"][1]["backendRefs"][1].as_object_mut().unwrap().remove("weight");
        assert_eq!(untouched, r, "nothing else in the route changed");
        assert!(weight_patch(&patched, &DOCS, 25, None).is_empty());
        assert_eq!(effective_weight(&patched, &DOCS), Some(25));
        assert_eq!(effective_weight(&r, &DOCS), Some(1), "an unset weight counts 1, as gateways do");
    }

    #[test]
    fn the_patch_tests_the_resource_version_and_the_backend_names() {
        let ops = weight_patch(&route(), &DOCS, 50, None);
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
        let patched = apply(&r, weight_patch(&r, &DOCS, 0, Some(&p)));
        assert_eq!(
            patched["spec"]["rules"][1]["sessionPersistence"],
            json!({"type": "Header", "sessionName": "Mcp-Session-Id"})
        );
        assert!(patched["spec"]["rules"][0].get("sessionPersistence").is_none());
        assert!(weight_patch(&patched, &DOCS, 0, Some(&p)).is_empty());
    }

    #[test]
    fn session_persistence_pruned_by_the_crd_is_noticed() {
        let p = SessionPersistence { header_name: "Mcp-Session-Id".into(), absolute_timeout: None };
        let r = route();
        let kept = apply(&r, weight_patch(&r, &DOCS, 5, Some(&p)));
        assert!(!persistence_dropped(&kept, &DOCS, Some(&p)));
        // What the standard channel's CRD stores: the weights, and no sessionPersistence.
        let pruned = apply(&r, weight_patch(&r, &DOCS, 5, None));
        assert!(persistence_dropped(&pruned, &DOCS, Some(&p)));
        assert!(!persistence_dropped(&pruned, &DOCS, None), "nothing asked, nothing dropped");
        // As a route problem: only once we wrote the route (our manager in managedFields).
        assert!(check(Some(&pruned), &DOCS, "ns/mcp", Some(&p)).is_ok(), "not written yet");
        let mut written = pruned.clone();
        written["metadata"]["managedFields"] = json!([{"manager": FIELD_MANAGER, "operation": "Update"}]);
        assert_eq!(
            check(Some(&written), &DOCS, "ns/mcp", Some(&p)).unwrap_err().reason,
            "SessionPersistenceUnsupported"
        );
        let mut kept = kept;
        kept["metadata"]["managedFields"] = written["metadata"]["managedFields"].clone();
        assert!(check(Some(&kept), &DOCS, "ns/mcp", Some(&p)).is_ok());
    }

    #[test]
    fn a_missing_route_or_backend_is_a_named_problem() {
        assert_eq!(check(None, &DOCS, "ns/mcp", None).unwrap_err().reason, "RouteNotFound");
        let mut r = route();
        r["spec"]["rules"][1]["backendRefs"].as_array_mut().unwrap().pop();
        let problem = check(Some(&r), &DOCS, "ns/mcp", None).unwrap_err();
        assert_eq!(problem.reason, "BackendNotFound");
        assert!(problem.message.contains("docs-canary"));
        assert!(check(Some(&route()), &DOCS, "ns/mcp", None).is_ok());
    }

    #[test]
    fn only_our_services_in_the_rollouts_namespace_are_our_backends() {
        // The same Service names in another namespace are another team's.
        let mut elsewhere = route();
        for b in elsewhere["spec"]["rules"][1]["backendRefs"].as_array_mut().unwrap() {
            b["namespace"] = json!("other-team");
        }
        assert_eq!(check(Some(&elsewhere), &DOCS, "ns/mcp", None).unwrap_err().reason, "BackendNotFound");
        assert!(weight_patch(&elsewhere, &DOCS, 50, None).is_empty());
        // A route in another namespace naming our Services by namespace: ours.
        let mut shared = route();
        shared["metadata"]["namespace"] = json!("gateways");
        assert!(
            check(Some(&shared), &DOCS, "gateways/mcp", None).is_err(),
            "names alone are the route's own"
        );
        for b in shared["spec"]["rules"][1]["backendRefs"].as_array_mut().unwrap() {
            b["namespace"] = json!("ns");
        }
        assert!(check(Some(&shared), &DOCS, "gateways/mcp", None).is_ok());
        let patched = apply(&shared, weight_patch(&shared, &DOCS, 25, None));
        assert_eq!(effective_weight(&patched, &DOCS), Some(25));
    }

    #[test]
    fn one_route_is_driven_by_one_rollout() {
        let r = route();
        let mine = apply(&r, weight_patch(&r, &DOCS, 5, None));
        let other = Owner { namespace: "ns2", name: "docs" };
        let problem = check(Some(&mine), &other, "ns/mcp", None).unwrap_err();
        assert_eq!(problem.reason, "RouteConflict");
        assert!(problem.message.contains("ns/docs"), "{}", problem.message);
        assert!(weight_patch(&mine, &other, 50, None).is_empty(), "another's route is never written");
        assert!(release_patch(&mine, &other).is_empty(), "nor released by another");
        assert!(check(Some(&mine), &DOCS, "ns/mcp", None).is_ok());
        // Released when its McpRollout goes: the next one may claim it.
        let released = apply(&mine, release_patch(&mine, &DOCS));
        assert!(released["metadata"]["annotations"].get(OWNER_ANNOTATION).is_none());
        assert!(check(Some(&released), &other, "ns/mcp", None).is_err(), "its backends are not ns2's");
        assert!(release_patch(&released, &DOCS).is_empty());
        // A route with annotations of its own keeps them.
        let mut annotated = route();
        annotated["metadata"]["annotations"] = json!({"team": "docs"});
        let claimed = apply(&annotated, weight_patch(&annotated, &DOCS, 0, None));
        assert_eq!(claimed["metadata"]["annotations"], json!({"team": "docs", OWNER_ANNOTATION: "ns/docs"}));
    }

    #[test]
    fn a_reference_grant_must_name_mcprollouts_of_the_namespace_and_the_route() {
        let grant = |from_ns: &str, kind: &str, to: Value| {
            json!({"spec": {
                "from": [{"group": "mcprollout.dev", "kind": kind, "namespace": from_ns}],
                "to": [to]
            }})
        };
        let route_to = json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "mcp"});
        let any_route = json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"});
        assert!(granted(&[grant("ns", "McpRollout", route_to.clone())], "ns", "mcp"));
        assert!(granted(&[grant("ns", "McpRollout", any_route)], "ns", "mcp"));
        assert!(!granted(&[grant("ns", "McpRollout", route_to.clone())], "ns", "other-route"));
        assert!(!granted(&[grant("ns2", "McpRollout", route_to.clone())], "ns", "mcp"));
        assert!(!granted(&[grant("ns", "HTTPRoute", route_to)], "ns", "mcp"));
        let services = json!({"group": "", "kind": "Service"});
        assert!(!granted(&[grant("ns", "McpRollout", services)], "ns", "mcp"));
        assert!(!granted(&[], "ns", "mcp"));
        let problem = not_granted("ns", "gateways", "mcp");
        assert_eq!(problem.reason, "RouteNotGranted");
        assert!(problem.message.contains("ReferenceGrant") && problem.message.contains("gateways/mcp"));
    }
}
