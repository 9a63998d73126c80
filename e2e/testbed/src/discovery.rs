//! API discovery in its legacy (non-aggregated) form: what kube's dynamic API and kubectl read
//! to map kinds to resources.

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::server::AppState;

fn respond(value: &Value) -> Response {
    ([("content-type", "application/json")], value.to_string()).into_response()
}

/// Answers discovery paths; `None` for everything else.
pub fn serve(state: &AppState, path: &str) -> Option<Response> {
    let path = path.trim_end_matches('/');
    let types = state.store.types();
    let resources_of = |group: &str, version: &str| -> Option<Value> {
        let resources: Vec<Value> = types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .flat_map(|t| t.discovery())
            .collect();
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        )
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Some(respond(&json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-mcp-rollout-testbed",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-11-01T00:00:00Z",
            "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
        }))),
        ["healthz"] | ["readyz"] | ["livez"] => Some("ok".into_response()),
        // No published schemas: clients that validate against OpenAPI find no schema for a kind
        // and leave validation to the server (which the test bed does for custom resources).
        ["openapi", "v2"] => {
            Some(respond(&json!({"swagger": "2.0", "info": {"title": "testbed", "version": "v1.33.0"},
                                                  "paths": {}, "definitions": {}})))
        }
        ["openapi", "v3"] => {
            let mut paths = serde_json::Map::new();
            for t in &types {
                let gv = if t.group.is_empty() {
                    format!("api/{}", t.version)
                } else {
                    format!("apis/{}/{}", t.group, t.version)
                };
                paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}")}));
            }
            Some(respond(&json!({"paths": paths})))
        }
        // Per group-version documents that declare, for each kind, a PATCH taking
        // `fieldValidation`: kubectl then leaves validation to the server instead of needing
        // the kinds' schemas client-side.
        ["openapi", "v3", rest @ ..] => {
            let (group, version) = match rest {
                ["api", version] => ("", *version),
                ["apis", group, version] => (*group, *version),
                _ => return None,
            };
            let mut paths = serde_json::Map::new();
            for t in types.iter().filter(|t| t.group == group && t.version == version) {
                let prefix = if group.is_empty() {
                    format!("/api/{version}")
                } else {
                    format!("/apis/{group}/{version}")
                };
                let path = if t.namespaced {
                    format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
                } else {
                    format!("{prefix}/{}/{{name}}", t.plural)
                };
                let parameters = json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                                        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}}]);
                paths.insert(path, json!({
                    "parameters": parameters,
                    "patch": {"x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
                              "x-kubernetes-action": "patch",
                              "parameters": parameters,
                              "responses": {"200": {"description": "OK"}}}
                }));
            }
            if paths.is_empty() {
                return None;
            }
            Some(respond(
                &json!({"openapi": "3.0.0", "info": {"title": "testbed", "version": "v1.33.0"}, "paths": paths}),
            ))
        }
        ["api"] => Some(respond(&json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": state.addr.to_string()}]
        }))),
        ["api", "v1"] => resources_of("", "v1").map(|v| respond(&v)),
        ["apis"] => {
            let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for t in types.iter().filter(|t| !t.group.is_empty()) {
                let versions = groups.entry(t.group.as_str()).or_default();
                if !versions.contains(&t.version.as_str()) {
                    versions.push(t.version.as_str());
                }
            }
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(group, versions)| {
                    let versions: Vec<Value> = versions
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                        .collect();
                    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            Some(respond(&json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})))
        }
        ["apis", group] => {
            let versions: Vec<Value> = types
                .iter()
                .filter(|t| t.group == *group)
                .map(|t| json!({"groupVersion": format!("{group}/{}", t.version), "version": t.version}))
                .collect();
            let first = versions.first()?.clone();
            Some(respond(
                &json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
                                 "preferredVersion": first}),
            ))
        }
        ["apis", group, version] => resources_of(group, version).map(|v| respond(&v)),
        _ => None,
    }
}
