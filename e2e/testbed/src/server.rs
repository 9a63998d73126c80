//! The HTTP front: Kubernetes REST paths, verbs and content types over the store.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Query, State},
    http::{HeaderMap, Method, Uri},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    auth::{Auth, RequestRecord, request_info},
    discovery,
    error::ApiError,
    patch,
    resources::ResourceType,
    selectors::{FieldSelector, LabelSelector},
    store::{Propagation, Store},
};

/// The real API server's request-body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub auth: Arc<Auth>,
    pub addr: SocketAddr,
}

pub fn router(state: AppState) -> Router {
    Router::new().fallback(handle).layer(DefaultBodyLimit::max(MAX_BODY)).with_state(state)
}

fn json_response(value: &Value) -> Response {
    ([("content-type", "application/json")], value.to_string()).into_response()
}

fn created(value: &Value) -> Response {
    (axum::http::StatusCode::CREATED, [("content-type", "application/json")], value.to_string())
        .into_response()
}

/// A parsed resource path.
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_target(store: &Store, path: &str) -> Result<Target, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_such_resource(path)),
    };
    let resolve =
        |plural: &str| store.resolve(group, version, plural).ok_or_else(|| ApiError::no_such_resource(path));
    let owned = |s: &&str| (*s).to_owned();
    match rest {
        [plural] => Ok(Target { rt: resolve(plural)?, namespace: None, name: None, subresource: None }),
        ["namespaces", ns, plural] if !matches!(*plural, "status" | "finalize") => {
            Ok(Target { rt: resolve(plural)?, namespace: Some(owned(ns)), name: None, subresource: None })
        }
        ["namespaces", ns, plural, name] => Ok(Target {
            rt: resolve(plural)?,
            namespace: Some(owned(ns)),
            name: Some(owned(name)),
            subresource: None,
        }),
        ["namespaces", ns, plural, name, sub] => Ok(Target {
            rt: resolve(plural)?,
            namespace: Some(owned(ns)),
            name: Some(owned(name)),
            subresource: Some(owned(sub)),
        }),
        [plural, name] => {
            Ok(Target { rt: resolve(plural)?, namespace: None, name: Some(owned(name)), subresource: None })
        }
        [plural, name, sub] => Ok(Target {
            rt: resolve(plural)?,
            namespace: None,
            name: Some(owned(name)),
            subresource: Some(owned(sub)),
        }),
        _ => Err(ApiError::no_such_resource(path)),
    }
}

async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let user = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| state.auth.authenticate(token.trim()));
    let Some(user) = user else {
        return ApiError::unauthorized().into_response();
    };
    let path = uri.path();
    if let Some(request) = request_info(&user, method.as_str(), path, query.get("watch").map(String::as_str))
    {
        // An apply that creates is authorized as `create` as well, as on a real server.
        if let Some(creating) = apply_creating(&state.store, &request, &headers, path) {
            state.auth.record(request);
            state.auth.record(creating);
        } else {
            state.auth.record(request);
        }
    }
    if let Some(response) = discovery::serve(&state, path) {
        return response;
    }
    match route(&state, &method, path, &headers, &query, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The extra `create` authorization of a server-side apply to an object that does not exist.
fn apply_creating(
    store: &Store,
    request: &RequestRecord,
    headers: &HeaderMap,
    path: &str,
) -> Option<RequestRecord> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if request.verb != "patch"
        || request.subresource.is_some()
        || !content_type.starts_with("application/apply-patch")
    {
        return None;
    }
    let target = parse_target(store, path).ok()?;
    let name = target.name.as_deref()?;
    let exists = store.get(&target.rt, target.namespace.as_deref().unwrap_or_default(), name).is_ok();
    (!exists).then(|| RequestRecord { verb: "create".to_owned(), ..request.clone() })
}

/// A JSON (or YAML) body. Protobuf and CBOR get 415, on which client-go falls back to JSON.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let content_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON or YAML: {e}")))
}

fn selectors(query: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

async fn route(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let store = &state.store;
    let target = parse_target(store, path)?;
    let rt = &target.rt;
    if rt.namespaced != target.namespace.is_some() && target.name.is_some() {
        return Err(ApiError::no_such_resource(path));
    }
    let namespace = target.namespace.clone().unwrap_or_default();
    let dry_run = query.get("dryRun").is_some_and(|d| d == "All");
    if let Some(sub) = &target.subresource
        && !rt.subresources.contains(sub)
    {
        return Err(ApiError::no_such_resource(path));
    }
    match (method.as_str(), &target.name) {
        ("GET", None) => {
            let (labels, fields) = selectors(query)?;
            let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
            if watching {
                return crate::watch::stream(state, rt, target.namespace.as_deref(), labels, fields, query);
            }
            let (items, rv) = store.list(rt, target.namespace.as_deref(), &labels, &fields);
            Ok(json_response(&list_page(rt, items, rv, query)?))
        }
        ("GET", Some(name)) => {
            let object = store.get(rt, &namespace, name)?;
            match target.subresource.as_deref() {
                Some("scale") => Ok(json_response(&patch::scale_of(&object))),
                _ => Ok(json_response(&object)),
            }
        }
        ("POST", None) => {
            let object = store.create(rt, &namespace, parse_body(headers, body)?, dry_run)?;
            Ok(created(&object))
        }
        ("PUT", Some(name)) => {
            let object = parse_body(headers, body)?;
            if target.subresource.as_deref() == Some("scale") {
                let replicas = object["spec"]["replicas"].clone();
                let updated = store.modify(rt, &namespace, name, None, dry_run, |current| {
                    let mut next = current.clone();
                    next["spec"]["replicas"] = replicas.clone();
                    Ok(next)
                })?;
                return Ok(json_response(&patch::scale_of(&updated)));
            }
            let updated =
                store.update(rt, &namespace, name, object, target.subresource.as_deref(), dry_run)?;
            Ok(json_response(&updated))
        }
        ("PATCH", Some(name)) => {
            let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let content_type = content_type.split(';').next().unwrap_or_default().trim().to_owned();
            let manager = query.get("fieldManager").cloned();
            let force = query.get("force").is_some_and(|f| f == "true");
            let object = patch::apply_patch(
                store,
                rt,
                &namespace,
                name,
                target.subresource.as_deref(),
                &content_type,
                body,
                manager.as_deref(),
                force,
                dry_run,
            )?;
            if target.subresource.as_deref() == Some("scale") {
                return Ok(json_response(&patch::scale_of(&object)));
            }
            Ok(json_response(&object))
        }
        ("DELETE", Some(name)) => {
            let options: Value = if body.is_empty() { json!({}) } else { parse_body(headers, body)? };
            let policy = query
                .get("propagationPolicy")
                .map(String::as_str)
                .or_else(|| options["propagationPolicy"].as_str())
                .unwrap_or("Background");
            let propagation = match policy {
                "Foreground" => Propagation::Foreground,
                "Orphan" => Propagation::Orphan,
                _ => Propagation::Background,
            };
            let grace = query
                .get("gracePeriodSeconds")
                .and_then(|g| g.parse::<u64>().ok())
                .or_else(|| options["gracePeriodSeconds"].as_u64());
            if rt.key() == "/v1/pods" && grace != Some(0) {
                // A pod is killed gracefully: it stays, terminating, for its grace period.
                // Without an explicit grace period, the pod's own (30 s when unset), as a real
                // API server does.
                let seconds = grace.unwrap_or_else(|| {
                    store
                        .get(rt, &namespace, name)
                        .ok()
                        .and_then(|p| p["spec"]["terminationGracePeriodSeconds"].as_u64())
                        .unwrap_or(30)
                });
                let object = crate::pods::begin_termination(&state.store, rt, &namespace, name, seconds)?;
                return Ok(json_response(&object));
            }
            let object = store.delete(rt, &namespace, name, propagation, dry_run)?;
            Ok(json_response(&object))
        }
        ("DELETE", None) => {
            let (labels, fields) = selectors(query)?;
            let (items, _) = store.list(rt, target.namespace.as_deref(), &labels, &fields);
            for item in &items {
                let ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
                let name = item["metadata"]["name"].as_str().unwrap_or_default();
                let _ = store.delete(rt, ns, name, Propagation::Background, dry_run);
            }
            let (_, rv) = store.list(
                rt,
                target.namespace.as_deref(),
                &LabelSelector::default(),
                &FieldSelector::default(),
            );
            Ok(json_response(&json!({"apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind),
                                      "metadata": {"resourceVersion": rv.to_string()}, "items": items})))
        }
        _ => Err(ApiError::method_not_allowed(format!("{method} is not allowed on {path}"))),
    }
}

/// A list answer, paged by `limit` / `continue` (the continue token is the last name served).
fn list_page(
    rt: &ResourceType,
    items: Vec<Value>,
    rv: u64,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let start_after = query.get("continue").filter(|c| !c.is_empty()).cloned();
    let mut items: Vec<Value> = match &start_after {
        Some(token) => {
            let position = |o: &Value| {
                format!(
                    "{}/{}",
                    o["metadata"]["namespace"].as_str().unwrap_or_default(),
                    o["metadata"]["name"].as_str().unwrap_or_default()
                )
            };
            items.into_iter().filter(|o| position(o).as_str() > token.as_str()).collect()
        }
        None => items,
    };
    let limit = query.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = limit
        && items.len() > limit
    {
        items.truncate(limit);
        if let Some(last) = items.last() {
            metadata["continue"] = json!(format!(
                "{}/{}",
                last["metadata"]["namespace"].as_str().unwrap_or_default(),
                last["metadata"]["name"].as_str().unwrap_or_default()
            ));
        }
    }
    Ok(
        json!({"apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind), "metadata": metadata, "items": items}),
    )
}
