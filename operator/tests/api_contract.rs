//! The McpRollout API contract, checked with no cluster: the committed CRD matches the types,
//! its schema is structural, its CEL rules accept what they should and reject what they
//! should (evaluated by kube's client-side CEL engine, which runs the same Kubernetes CEL
//! library functions as the API server), and the examples are valid.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::path::{Path, PathBuf};

use kube::{
    CustomResourceExt,
    core::cel::{self, ScopeContext, Validator},
};
use mcp_rollout::{
    api::{McpRollout, McpRolloutSpec, StrategyRef},
    crd,
};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The openAPIV3Schema of the committed CRD, as JSON.
fn committed_schema() -> Value {
    let text = std::fs::read_to_string(repo_root().join(crd::CRD_PATH)).unwrap();
    let doc: Value = serde_yaml::from_str(text.split("\n---\n").nth(1).unwrap()).unwrap();
    doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn minimal() -> Value {
    json!({
        "apiVersion": "mcprollout.dev/v1alpha1",
        "kind": "McpRollout",
        "metadata": {"name": "docs", "namespace": "mcp"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "docs"}},
                "spec": {"containers": [{"name": "server", "image": "mcp-fixture:v1"}]}
            },
            "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}
        }
    })
}

/// Applies `edit` to the minimal object and returns the messages of the CEL rules that fail.
fn cel_failures(edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut object = minimal();
    edit(&mut object);
    match Validator::new().validate(&committed_schema(), &object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| {
                assert_eq!(
                    e.kind,
                    cel::ErrorKind::ValidationFailure,
                    "rule `{}` could not be evaluated: {}",
                    e.rule,
                    e.message
                );
                e.message
            })
            .collect(),
    }
}

#[test]
fn committed_crd_matches_the_types() {
    let generated = crd::render_yaml().unwrap();
    let committed = std::fs::read_to_string(repo_root().join(crd::CRD_PATH)).unwrap_or_default();
    assert!(
        generated == committed,
        "{} is out of date with operator/api. Regenerate it with:\n  {}",
        crd::CRD_PATH,
        crd::REGENERATE_COMMAND
    );
}

#[test]
fn crd_identity_matches_the_documented_names() {
    let crd = McpRollout::crd();
    assert_eq!(crd.spec.group, "mcprollout.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["mcpro".to_string()][..]));
    assert_eq!(crd.spec.names.categories.as_deref(), Some(&["all".to_string()][..]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> =
        version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["Phase", "Stable", "Canary", "Weight", "Step", "Age"]);
}

/// The structural-schema rules the API server enforces on a CRD (see "Specifying a structural
/// schema" in the Kubernetes docs), checked on every node of the committed schema.
#[test]
fn schema_is_structural() {
    fn walk(node: &Value, path: &str, problems: &mut Vec<String>) {
        let obj = node.as_object().unwrap();
        let preserves = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
        if !obj.contains_key("type") && !preserves && !int_or_string {
            problems.push(format!("{path}: no type"));
        }
        if obj.contains_key("$ref") {
            problems.push(format!("{path}: $ref is not allowed"));
        }
        if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
            problems.push(format!("{path}: both properties and additionalProperties"));
        }
        for junction in ["allOf", "anyOf", "oneOf", "not"] {
            let branches: Vec<&Value> = match obj.get(junction) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(single) => vec![single],
                None => continue,
            };
            for branch in branches {
                for forbidden in ["type", "description", "default", "nullable", "additionalProperties"] {
                    if branch.get(forbidden).is_some() {
                        problems.push(format!("{path}.{junction}: sets {forbidden}"));
                    }
                }
            }
        }
        if obj.get("x-kubernetes-list-type") == Some(&json!("map")) {
            let keys = obj["x-kubernetes-list-map-keys"].as_array().unwrap();
            let items = &obj["items"];
            let required = items["required"].as_array().cloned().unwrap_or_default();
            for key in keys {
                let defaulted = items["properties"][key.as_str().unwrap()].get("default").is_some();
                if !required.contains(key) && !defaulted {
                    problems.push(format!("{path}: list-map key {key} is neither required nor defaulted"));
                }
            }
        }
        for (name, child) in obj.get("properties").and_then(Value::as_object).into_iter().flatten() {
            walk(child, &format!("{path}.{name}"), problems);
        }
        if let Some(items) = obj.get("items") {
            walk(items, &format!("{path}[]"), problems);
        }
        if let Some(ap @ Value::Object(_)) = obj.get("additionalProperties") {
            walk(ap, &format!("{path}{{}}"), problems);
        }
    }
    let mut problems = Vec::new();
    walk(&committed_schema(), "", &mut problems);
    assert!(problems.is_empty(), "schema is not structural:\n{}", problems.join("\n"));
}

#[test]
fn every_cel_rule_compiles_fits_the_cost_budget_and_uses_only_self() {
    let schema = committed_schema();
    let compiled = cel::compile_schema(&schema);
    assert!(!compiled.has_errors(), "{:?}", compiled.compilation_errors());
    let mut rules = Vec::new();
    fn collect(node: &Value, rules: &mut Vec<String>) {
        for rule in node["x-kubernetes-validations"].as_array().into_iter().flatten() {
            rules.push(rule["rule"].as_str().unwrap().to_owned());
        }
        for child in node["properties"].as_object().into_iter().flat_map(|m| m.values()) {
            collect(child, rules);
        }
        if node.get("items").is_some() {
            collect(&node["items"], rules);
        }
    }
    collect(&schema, &mut rules);
    assert!(rules.len() >= 10, "expected the documented rules, found {}", rules.len());
    for rule in &rules {
        let warnings: Vec<_> = cel::analyze_rule(rule, &compiled, ScopeContext::CrdValidation)
            .into_iter()
            // The analyser does not know variables bound by the all()/exists()/map()/filter()
            // macros; a warning about one of those is a false positive.
            .filter(|w| !(w.kind == cel::WarningKind::WrongScope && names_macro_variable(rule, &w.message)))
            .collect();
        assert!(warnings.is_empty(), "rule `{rule}`: {warnings:?}");
    }
}

/// Whether the scope warning `message` is about a variable that a comprehension macro in
/// `rule` binds, as in `self.m.all(k, ...)`.
fn names_macro_variable(rule: &str, message: &str) -> bool {
    let Some(var) = message.split('\'').nth(1) else {
        return false;
    };
    ["all", "exists", "exists_one", "map", "filter"].iter().any(|m| rule.contains(&format!(".{m}({var},")))
}

#[test]
fn label_maps_iterated_by_cel_are_bounded() {
    let schema = committed_schema();
    let spec = &schema["properties"]["spec"]["properties"];
    let labels = &spec["template"]["properties"]["metadata"]["properties"]["labels"];
    assert_eq!(labels["maxProperties"], json!(128));
    assert_eq!(labels["additionalProperties"]["maxLength"], json!(63));
}

#[test]
fn minimal_manifest_is_valid_and_gets_documented_defaults() {
    assert_eq!(cel_failures(|_| {}), Vec::<String>::new());
    let rollout: McpRollout = serde_json::from_value(minimal()).unwrap();
    let spec = &rollout.spec;
    assert_eq!(spec.replicas, 1);
    assert_eq!(spec.service.path, "/mcp");
    assert_eq!(spec.service.port, 8080);
    assert_eq!(spec.probe.interval.as_secs(), 30);
    assert_eq!(spec.probe.protocol_versions.len(), 5);
    assert_eq!(spec.drain.min.as_secs(), 60);
    assert_eq!(spec.drain.max.as_secs(), 300);
    assert_eq!(spec.drain.quantile, 0.95);
    assert_eq!(spec.progress_deadline.as_secs(), 600);
    assert!(matches!(spec.strategy.kind(), StrategyRef::Canary(c) if c.steps.len() == 2));
}

/// What the API server stores after defaulting must deserialize to exactly what the operator
/// gets from serde defaults: the two default sources can never drift apart.
#[test]
fn schema_defaults_agree_with_serde_defaults() {
    let schema = committed_schema();
    let mut with_sections = minimal();
    // Nested defaults apply only where the parent object exists, as on a real API server.
    with_sections["spec"]["analysis"] = json!({"prometheus": {"address": "http://prom:9090"}});
    with_sections["spec"]["strategy"] = json!({"blueGreen": {}});
    let defaulted = cel::apply_defaults(&schema, &with_sections);
    let from_server: McpRolloutSpec = serde_json::from_value(defaulted["spec"].clone()).unwrap();
    let from_serde: McpRolloutSpec = serde_json::from_value(with_sections["spec"].clone()).unwrap();
    assert_eq!(from_server, from_serde);
    assert_eq!(defaulted["spec"]["analysis"]["checks"]["errorRate"]["maxRatio"], json!(2.0));
    assert_eq!(defaulted["spec"]["strategy"]["blueGreen"]["postPromotionWindow"], json!("5m"));
}

#[test]
fn exactly_one_strategy() {
    let msg = "exactly one of strategy.canary or strategy.blueGreen must be set";
    assert_eq!(cel_failures(|o| o["spec"]["strategy"] = json!({})), [msg]);
    assert_eq!(cel_failures(|o| o["spec"]["strategy"]["blueGreen"] = json!({"autoPromote": false})), [msg]);
    assert!(cel_failures(|o| o["spec"]["strategy"] = json!({"blueGreen": {}})).is_empty());
}

#[test]
fn steps_set_exactly_one_action_and_weights_never_decrease() {
    assert_eq!(
        cel_failures(
            |o| o["spec"]["strategy"]["canary"]["steps"] = json!([{"setWeight": 50}, {"setWeight": 25}])
        ),
        ["setWeight values must not decrease from one step to the next"]
    );
    assert!(
        cel_failures(|o| o["spec"]["strategy"]["canary"]["steps"] =
            json!([{"setWeight": 5}, {"pause": {"duration": "30m"}}, {"setWeight": 5}, {"setWeight": 100}]))
        .is_empty()
    );
    assert_eq!(
        cel_failures(|o| o["spec"]["strategy"]["canary"]["steps"] = json!([{"setWeight": 5, "pause": {}}])),
        ["each step sets exactly one of setWeight or pause"]
    );
    assert_eq!(
        cel_failures(|o| o["spec"]["strategy"]["canary"]["steps"] = json!([{}])),
        ["each step sets exactly one of setWeight or pause"]
    );
}

#[test]
fn drain_min_must_not_exceed_max_comparing_durations_not_strings() {
    assert_eq!(
        cel_failures(|o| o["spec"]["drain"] = json!({"min": "10m", "max": "5m"})),
        ["drain.min must not exceed drain.max"]
    );
    // As strings "90s" > "5m"; as durations 90s < 5m. The rule must compare durations.
    assert!(cel_failures(|o| o["spec"]["drain"] = json!({"min": "90s", "max": "5m"})).is_empty());
}

#[test]
fn probe_timeout_within_interval() {
    assert_eq!(
        cel_failures(|o| o["spec"]["probe"] = json!({"interval": "10s", "timeout": "1m"})),
        ["probe.timeout must not exceed probe.interval"]
    );
    assert!(cel_failures(|o| o["spec"]["probe"] = json!({"interval": "1m", "timeout": "10s"})).is_empty());
}

#[test]
fn probe_headers_and_expectations_are_well_formed() {
    assert_eq!(
        cel_failures(|o| o["spec"]["probe"] = json!({"headers": [{"name": "X-Tenant"}]})),
        ["a header sets exactly one of value or valueFrom"]
    );
    assert_eq!(
        cel_failures(|o| o["spec"]["probe"] = json!({"headers": [
            {"name": "X-Tenant", "value": "a", "valueFrom": {"name": "s", "key": "k"}}
        ]})),
        ["a header sets exactly one of value or valueFrom"]
    );
    assert_eq!(
        cel_failures(|o| o["spec"]["probe"] = json!({"toolCall": {"name": "search_documents", "expect": {}}})),
        ["expect needs at least one of contains, regex or json"]
    );
    assert!(
        cel_failures(|o| o["spec"]["probe"] = json!({
            "headers": [{"name": "X-Tenant", "valueFrom": {"name": "probe-auth", "key": "tenant"}}],
            "toolCall": {"name": "search_documents", "arguments": {"query": "x", "limit": 1},
                         "expect": {"json": {"results": []}}}
        }))
        .is_empty()
    );
}

#[test]
fn custom_metrics_need_a_sane_range() {
    let with_metric = |metric: Value| {
        cel_failures(move |o| {
            o["spec"]["analysis"] = json!({
                "prometheus": {"address": "http://prom:9090"},
                "metrics": [metric]
            })
        })
    };
    assert_eq!(with_metric(json!({"name": "m", "query": "up"})), ["a metric needs min, max or both"]);
    assert_eq!(
        with_metric(json!({"name": "m", "query": "up", "min": 5.0, "max": 1.0})),
        ["min must not exceed max"]
    );
    assert!(with_metric(json!({"name": "m", "query": "up", "max": 0.5})).is_empty());
}

/// Every share is a percentage (issue 22): the floor that was a fraction is renamed, and the
/// values that blind a gate — most likely a share written in the wrong unit — are refused.
#[test]
fn shares_are_percentages_and_gate_blinding_values_are_refused() {
    let with_checks = |checks: Value| {
        cel_failures(move |o| {
            o["spec"]["analysis"] = json!({"prometheus": {"address": "http://prom:9090"}, "checks": checks})
        })
    };
    let floor = "stableErrorRateFloorPercent is a percentage (0.1 means 0.1%); a floor above 10% lets a canary failing maxRatio times that share of its calls pass";
    let schema = "schemaValidationErrors.maxPercent is a percentage (0.1 means 0.1%); above 10% the check would pass a breaking schema change: disable the check instead";
    assert!(with_checks(json!({"errorRate": {"stableErrorRateFloorPercent": 0.1}})).is_empty());
    assert!(with_checks(json!({"errorRate": {"stableErrorRateFloorPercent": 10.0}})).is_empty());
    assert_eq!(with_checks(json!({"errorRate": {"stableErrorRateFloorPercent": 19.0}})), [floor]);
    assert!(with_checks(json!({"schemaValidationErrors": {"maxPercent": 0.1}})).is_empty());
    assert_eq!(with_checks(json!({"schemaValidationErrors": {"maxPercent": 25.0}})), [schema]);

    let spec: mcp_rollout::api::AnalysisSpec = serde_json::from_value(json!({
        "prometheus": {"address": "http://prom:9090"},
        "checks": {"errorRate": {"stableErrorRateFloorPercent": 0.5}}
    }))
    .unwrap();
    assert!((spec.checks.error_rate.stable_error_rate_floor_percent - 0.5).abs() < f64::EPSILON);
    let defaults =
        &committed_schema()["properties"]["spec"]["properties"]["analysis"]["properties"]["checks"];
    let error_rate = &defaults["properties"]["errorRate"]["properties"];
    assert_eq!(error_rate["stableErrorRateFloorPercent"]["default"], json!(0.1));
    assert!(error_rate.get("stableErrorRateFloor").is_none(), "the fraction is gone");
}

#[test]
fn prometheus_tls_material_is_for_an_https_address() {
    let msg = "prometheus.caBundleSecretRef and clientCertificateSecretRef are for an https address";
    let with = |address: &str, tls: Value| {
        let mut prometheus = json!({"address": address});
        prometheus.as_object_mut().unwrap().extend(tls.as_object().unwrap().clone());
        cel_failures(move |o| o["spec"]["analysis"] = json!({"prometheus": prometheus}))
    };
    let ca = json!({"caBundleSecretRef": {"name": "prom-ca", "key": "ca.crt"}});
    let client = json!({"clientCertificateSecretRef": {"name": "prom-client"}});
    assert!(with("https://prometheus.monitoring:9090", ca.clone()).is_empty());
    assert!(with("https://prometheus.monitoring:9090", client.clone()).is_empty());
    assert_eq!(with("http://prometheus.monitoring:9090", ca), [msg]);
    assert_eq!(with("http://prometheus.monitoring:9090", client), [msg]);
    assert!(with("http://prometheus.monitoring:9090", json!({})).is_empty());
}

#[test]
fn https_servers_cannot_sit_behind_the_mcp_session_router() {
    let msg = "the MCP session router reaches its backends over plain HTTP: service.scheme https cannot be used with trafficRouting.mcpRouter";
    let with = |scheme: &str, router: bool| {
        let scheme = scheme.to_owned();
        cel_failures(move |o| {
            o["spec"]["service"] = json!({"scheme": scheme});
            if router {
                o["spec"]["trafficRouting"] = json!({"mcpRouter": {}});
            }
        })
    };
    assert_eq!(with("https", true), [msg]);
    assert!(with("http", true).is_empty());
    assert!(with("https", false).is_empty());
}

#[test]
fn names_that_cannot_name_the_rollouts_services_are_refused() {
    let msg = "metadata.name must be at most 56 characters of a-z, 0-9 and '-', starting with a letter and ending with a letter or digit: it names the rollout's Services (<name>-stable, <name>-canary, <name>-router) and labels its pods";
    let longest = "a".repeat(56);
    assert!(cel_failures(|o| o["metadata"]["name"] = json!(longest)).is_empty());
    assert!(cel_failures(|o| o["metadata"]["name"] = json!("docs-v2")).is_empty());
    for bad in ["a".repeat(57), "docs.prod".into(), "9docs".into(), "docs-".into(), "Docs".into()] {
        assert_eq!(cel_failures(|o| o["metadata"]["name"] = json!(bad)), [msg], "{bad}");
    }
}

/// Independent of CEL: the schema's own ranges and patterns, checked by the same JSON-schema
/// keywords the API server applies, on the values people get wrong.
#[test]
fn schema_bounds_cover_weights_replicas_and_durations() {
    let schema = committed_schema();
    let spec = &schema["properties"]["spec"]["properties"];
    let weight =
        &spec["strategy"]["properties"]["canary"]["properties"]["steps"]["items"]["properties"]["setWeight"];
    assert_eq!((weight["minimum"].as_f64(), weight["maximum"].as_f64()), (Some(0.0), Some(100.0)));
    assert_eq!(spec["replicas"]["minimum"].as_f64(), Some(1.0));
    let pattern = spec["progressDeadline"]["pattern"].as_str().unwrap();
    assert_eq!(pattern, mcp_rollout::api::DURATION_PATTERN);
    let steps = &spec["strategy"]["properties"]["canary"]["properties"]["steps"];
    assert_eq!((steps["minItems"].as_u64(), steps["maxItems"].as_u64()), (Some(1), Some(32)));
}

#[test]
fn examples_parse_and_pass_every_rule() {
    let dir = repo_root().join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value = serde_yaml::from_str(&text).unwrap();
        let rollout: McpRollout =
            serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(errors) = Validator::new().validate(&committed_schema(), &value, None) {
            panic!("{}: {:?}", path.display(), errors.into_vec());
        }
        assert!(rollout.metadata.name.is_some());
        seen += 1;
    }
    assert!(seen >= 2, "expected the canary and blue-green examples in {}", dir.display());
}

#[test]
fn canary_example_is_the_documented_progression() {
    let text = std::fs::read_to_string(repo_root().join("examples/canary.yaml")).unwrap();
    let rollout: McpRollout = serde_yaml::from_str(&text).unwrap();
    let StrategyRef::Canary(canary) = rollout.spec.strategy.kind() else {
        panic!("canary example is not a canary");
    };
    let weights: Vec<i32> = canary.steps.iter().filter_map(|s| s.set_weight).collect();
    assert_eq!(weights, [5, 25, 50, 100]);
    let soaks: Vec<u64> =
        canary.steps.iter().filter_map(|s| s.pause.as_ref()?.duration.map(|d| d.as_secs())).collect();
    assert_eq!(soaks, [1800, 3600, 3600]);
}

#[test]
fn blue_green_example_keeps_a_five_minute_window() {
    let text = std::fs::read_to_string(repo_root().join("examples/blue-green.yaml")).unwrap();
    let rollout: McpRollout = serde_yaml::from_str(&text).unwrap();
    let StrategyRef::BlueGreen(bg) = rollout.spec.strategy.kind() else {
        panic!("blue-green example is not blue-green");
    };
    assert_eq!(bg.post_promotion_window.as_secs(), 300);
    assert!(!bg.auto_promote);
}

#[test]
fn readme_generated_sections_match_the_code() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let updated =
        mcp_rollout::reference::update_readme(&readme).expect("README has the generated-section markers");
    assert!(
        updated == readme,
        "README.md's API reference or state diagram is out of date. Regenerate with:\n  hack/update-crds.sh"
    );
}
