//! RBAC proven on the real API server: the operator runs as the Helm chart's pods under the
//! chart's ServiceAccount with RBAC enforced (`--authorization-mode=Node,RBAC`). After a canary
//! (with a probe token Secret), a Gateway API rollout and its deletion, and a rollout through
//! the MCP session router, the API server's audit log must show no request of that
//! ServiceAccount denied, and every verb the installed roles grant must have been used, or be
//! listed here with the reason it was not. The router's own ServiceAccount is held to the same
//! bar with the Role the operator gives it.

#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use e2e::{Bed, fixture_rollout, revision_of, with_image};
use k8s_openapi::api::{
    core::v1::{Secret, Service},
    rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use mcp_fixture::agents::AgentEra;
use serde_json::{Value, json};

/// Rules the operator has a code path for that this scenario does not reach, and why.
const NOT_EXERCISED: &[(&str, &str)] = &[
    (
        "patch events.k8s.io/events",
        "kube-runtime's Recorder patches an event's series when the same event repeats; none repeats here",
    ),
    (
        "watch core/configmaps",
        "held only so the operator may grant it to each rollout's router (a Role grants no more than its creator holds)",
    ),
];

/// One request as the audit log records it.
#[derive(Debug)]
struct Audited {
    verb: String,
    group: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    code: i64,
    /// RBAC said no (the audit annotation), as opposed to other 403s such as a namespace
    /// being deleted.
    forbidden: bool,
    at: Option<jiff::Timestamp>,
}

impl Audited {
    fn describe(&self) -> String {
        let group = if self.group.is_empty() { "core" } else { &self.group };
        format!(
            "{} {group}/{} in {}",
            self.verb,
            self.resource,
            self.namespace.as_deref().unwrap_or("(cluster)")
        )
    }
}

/// The resource requests `user` made, from the audit log (one JSON event per line): each
/// request once, as it completed — or, for a watch still open, as its response started (a
/// watch is logged complete only when it ends).
fn audited(log: &str, user: &str) -> Vec<Audited> {
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for e in log.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()) {
        let stage = e["stage"].as_str().unwrap_or_default();
        if e["user"]["username"] != user || !matches!(stage, "ResponseStarted" | "ResponseComplete") {
            continue;
        }
        let id = e["auditID"].as_str().unwrap_or_default().to_owned();
        if stage == "ResponseComplete" || !by_id.contains_key(&id) {
            by_id.insert(id, e);
        }
    }
    by_id
        .into_values()
        .filter_map(|e| {
            let object = e["objectRef"].as_object()?;
            let resource = match object.get("subresource").and_then(Value::as_str) {
                Some(sub) => format!("{}/{sub}", object.get("resource")?.as_str()?),
                None => object.get("resource")?.as_str()?.to_owned(),
            };
            let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
            Some(Audited {
                verb: e["verb"].as_str()?.to_owned(),
                group: text("apiGroup").unwrap_or_default(),
                resource,
                namespace: text("namespace"),
                name: text("name"),
                code: e["responseStatus"]["code"].as_i64().unwrap_or(0),
                forbidden: e["annotations"]["authorization.k8s.io/decision"] == "forbid",
                at: e["requestReceivedTimestamp"].as_str().and_then(|t| t.parse().ok()),
            })
        })
        .collect()
}

/// One rule bound to the ServiceAccount, and the namespace it applies in (`None`: all).
#[derive(Debug)]
struct Grant {
    role: String,
    namespace: Option<String>,
    rule: PolicyRule,
}

/// The rules the cluster binds to the ServiceAccount `namespace/name`, as installed.
async fn grants(client: &Client, namespace: &str, name: &str) -> Vec<Grant> {
    let is_us = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
        subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount" && s.name == name && s.namespace.as_deref() == Some(namespace)
        })
    };
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut add = |role: String, scope: Option<String>, rules: Option<Vec<PolicyRule>>| {
        for rule in rules.unwrap_or_default() {
            out.push(Grant { role: role.clone(), namespace: scope.clone(), rule });
        }
    };
    for binding in Api::<ClusterRoleBinding>::all(client.clone()).list(&ListParams::default()).await.unwrap()
    {
        if is_us(&binding.subjects) {
            let role = cluster_roles.get(&binding.role_ref.name).await.unwrap();
            add(binding.role_ref.name.clone(), None, role.rules);
        }
    }
    for binding in Api::<RoleBinding>::all(client.clone()).list(&ListParams::default()).await.unwrap() {
        if !is_us(&binding.subjects) {
            continue;
        }
        let scope = binding.metadata.namespace.clone().unwrap();
        let rules = if binding.role_ref.kind == "ClusterRole" {
            cluster_roles.get(&binding.role_ref.name).await.unwrap().rules
        } else {
            Api::<Role>::namespaced(client.clone(), &scope).get(&binding.role_ref.name).await.unwrap().rules
        };
        add(binding.role_ref.name.clone(), Some(scope), rules);
    }
    out
}

fn listed(values: &[String], value: &str) -> bool {
    values.iter().any(|v| v == "*" || v == value)
}

/// Whether a grant allows a request, as the RBAC authorizer decides.
fn allows(grant: &Grant, request: &Audited, verb: &str) -> bool {
    let rule = &grant.rule;
    let names = rule.resource_names.as_deref().unwrap_or_default();
    grant.namespace.as_ref().is_none_or(|ns| request.namespace.as_ref() == Some(ns))
        && listed(rule.api_groups.as_deref().unwrap_or_default(), &request.group)
        && listed(rule.resources.as_deref().unwrap_or_default(), &request.resource)
        && listed(&rule.verbs, verb)
        && (names.is_empty() || request.name.as_ref().is_some_and(|n| names.iter().any(|v| v == n)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_the_operator_with_exactly_the_rbac_it_ships() {
    let bed = Bed::start().await;
    let Some(dir) = bed.real.local_dir.clone() else {
        println!("skipped: the audit log is read from the local cluster (MCP_CLUSTER_DIR); this is another");
        return;
    };
    let started = jiff::Timestamp::now();

    // A canary under traffic, its probe authenticated with a token from a Secret.
    let secrets: Api<Secret> = Api::namespaced(bed.client.clone(), &bed.namespace);
    let token =
        serde_json::from_value(json!({"metadata": {"name": "mcp-token"}, "stringData": {"token": "s3cret"}}));
    secrets.create(&PostParams::default(), &token.unwrap()).await.unwrap();
    let mut v1 = fixture_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    v1["spec"]["replicas"] = json!(2);
    v1["spec"]["probe"]["bearerTokenSecretRef"] = json!({"name": "mcp-token", "key": "token"});
    // One template of history: v2's promotion deletes v1's ControllerRevision.
    v1["spec"]["revisionHistoryLimit"] = json!(1);
    // Per-track Services until v2, which goes back to `Auto`: the operator deletes them.
    v1["spec"]["service"]["trackServices"] = json!("Always");
    bed.apply(&v1).await;

    // A Gateway API rollout, deleted at the end (finalizer, route restored).
    let routes = bed.http_routes().await;
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "mcp", "namespace": bed.namespace},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
            {"name": "routed-stable", "port": 8080, "weight": 100},
            {"name": "routed-canary", "port": 8080, "weight": 0}]}]}});
    routes.create(&PostParams::default(), &serde_json::from_value(route).unwrap()).await.unwrap();
    let mut routed = fixture_rollout("routed", "mcp-fixture:v1", &[], &bed.prometheus_url());
    routed["spec"]["replicas"] = json!(1);
    routed["spec"]["trafficRouting"] = json!({"gatewayAPI": {"httpRouteRef": {"name": "mcp"}}});
    routed["spec"].as_object_mut().unwrap().remove("analysis");
    bed.apply(&routed).await;

    // A Gateway API rollout naming a route in another namespace: the operator lists the
    // ReferenceGrants there (none: Stalled RouteNotGranted, the route never read).
    let elsewhere_bed = Bed::start().await;
    let mut elsewhere = fixture_rollout("elsewhere", "mcp-fixture:v1", &[], &bed.prometheus_url());
    elsewhere["spec"]["replicas"] = json!(1);
    elsewhere["spec"]["trafficRouting"] =
        json!({"gatewayAPI": {"httpRouteRef": {"name": "mcp", "namespace": elsewhere_bed.namespace}}});
    elsewhere["spec"].as_object_mut().unwrap().remove("analysis");
    bed.apply(&elsewhere).await;

    // A rollout through the MCP session router: its ConfigMap, key Secret, ServiceAccount, Role
    // and RoleBinding.
    let mut through_router = fixture_rollout("via-router", "mcp-fixture:v1", &[], &bed.prometheus_url());
    through_router["spec"]["replicas"] = json!(1);
    through_router["spec"]["trafficRouting"] = json!({"mcpRouter": {"replicas": 1}});
    through_router["spec"].as_object_mut().unwrap().remove("analysis");
    bed.apply(&through_router).await;

    bed.wait_healthy("docs").await;
    bed.wait_healthy("routed").await;
    bed.wait("elsewhere", "Stalled: RouteNotGranted", Duration::from_secs(60), |r| {
        r.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "RouteNotGranted")
        })
    })
    .await;
    bed.wait_healthy("via-router").await;
    bed.wait_router("via-router", 1).await;
    let traffic = bed
        .agents("docs", |c| {
            c.duration = 120.0;
            c.era = AgentEra::Stateless;
            c.no_keepalive = true;
        })
        .await;
    let mut v2 = with_image(&v1, "mcp-fixture:v2-compatible", &[]);
    v2["spec"]["service"]["trackServices"] = json!("Auto");
    bed.apply(&v2).await;
    bed.apply(&with_image(&routed, "mcp-fixture:v2-compatible", &[])).await;
    let v2_revision = revision_of(&v2);
    bed.wait("docs", "v2 promoted and v1 drained away", Duration::from_secs(180), |r| {
        r.status.as_ref().is_some_and(|s| {
            s.stable_revision.as_deref() == Some(v2_revision.as_str()) && s.drains.is_empty()
        })
    })
    .await;
    traffic.abort();
    let services: Api<Service> = Api::namespaced(bed.client.clone(), &bed.namespace);
    e2e::eventually(
        "docs' per-track Services deleted (trackServices: Auto)",
        Duration::from_secs(30),
        || async {
            let names: Vec<String> = services
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter_map(|s| s.metadata.name)
                .collect();
            names.contains(&"docs".to_owned())
                && !names.iter().any(|n| n == "docs-stable" || n == "docs-canary")
        },
    )
    .await;
    let history: Api<k8s_openapi::api::apps::v1::ControllerRevision> =
        Api::namespaced(bed.client.clone(), &bed.namespace);
    e2e::eventually("v2 alone in the history (revisionHistoryLimit 1)", Duration::from_secs(30), || async {
        let kept =
            history.list(&ListParams::default().labels("mcprollout.dev/rollout=docs")).await.unwrap().items;
        kept.len() == 1 && kept[0].metadata.name.as_deref() == Some(format!("docs-{v2_revision}").as_str())
    })
    .await;
    bed.wait("routed", "routed v2 promoted", Duration::from_secs(120), |r| {
        e2e::stable_is(r, &revision_of(&with_image(&routed, "mcp-fixture:v2-compatible", &[])))
    })
    .await;
    bed.rollouts().delete("routed", &DeleteParams::default()).await.unwrap();
    e2e::eventually("the routed rollout gone (finalizer removed)", Duration::from_secs(60), || async {
        bed.rollouts().get_opt("routed").await.unwrap().is_none()
    })
    .await;
    e2e::eventually("v1's Deployment deleted", Duration::from_secs(60), || async {
        bed.deployments("docs").await.len() == 1
    })
    .await;

    // A rollout without a finalizer goes at once; its state and series go when its next
    // scheduled reconcile finds it gone, asking the API server (get) to be sure.
    bed.rollouts().delete("docs", &DeleteParams::default()).await.unwrap();
    let series = format!("namespace=\"{}\",rollout=\"docs\"", bed.namespace);
    e2e::eventually("the deleted rollout's series dropped", Duration::from_secs(90), || async {
        !bed.operator_get("/metrics").await.contains(&series)
    })
    .await;

    let namespace = bed.real.operator_namespace.clone();
    let log = std::fs::read_to_string(dir.join("logs/audit.log")).expect("the local cluster's audit log");
    check_service_account(&bed, &log, &namespace, "mcp-rollout", started, NOT_EXERCISED, 50).await;
    // The router's: it lists and watches its rollout's pods and its one ConfigMap, nothing else.
    check_service_account(&bed, &log, &bed.namespace, "via-router-router", started, &[], 2).await;
}

/// Checks one ServiceAccount's requests in the audit log: none denied by RBAC over the whole
/// run, and every verb its roles grant used (over its whole life in the log), or listed in
/// `not_exercised` with why.
async fn check_service_account(
    bed: &Bed,
    log: &str,
    namespace: &str,
    account: &str,
    started: jiff::Timestamp,
    not_exercised: &[(&str, &str)],
    min_requests: usize,
) {
    let user = format!("system:serviceaccount:{namespace}:{account}");
    let all = audited(log, &user);
    let denied: BTreeMap<String, usize> =
        all.iter().filter(|r| r.forbidden).fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.describe()).or_default() += 1;
            m
        });
    assert!(denied.is_empty(), "requests of {user} RBAC denied: {denied:#?}");
    let requests: Vec<&Audited> = all.iter().filter(|r| r.at.is_some_and(|at| at >= started)).collect();
    assert!(requests.len() > min_requests, "only {} requests as {user} in the audit log", requests.len());

    let grants = grants(&bed.client, namespace, account).await;
    assert!(!grants.is_empty(), "no RBAC bound to {user}");
    let mut made: BTreeMap<String, usize> = BTreeMap::new();
    let mut used: BTreeSet<(usize, String)> = BTreeSet::new();
    // Usage over the account's whole life in the log: the operator's watches and its Lease
    // were opened when it started, before this scenario.
    for request in &all {
        if request.at.is_some_and(|at| at >= started) {
            *made.entry(request.describe()).or_default() += 1;
        }
        // A server-side apply that creates its object (201) is authorized as patch and create.
        let mut verbs = vec![request.verb.clone()];
        if request.verb == "patch" && request.code == 201 {
            verbs.push("create".into());
        }
        for verb in verbs {
            if let Some(i) = grants.iter().position(|g| allows(g, request, &verb)) {
                used.insert((i, verb));
            }
        }
    }
    println!("requests by {user} since the scenario began ({} in all):", requests.len());
    for (what, count) in &made {
        println!("  {count:>6}  {what}");
    }
    let mut unused = Vec::new();
    for (i, grant) in grants.iter().enumerate() {
        let rule = &grant.rule;
        for verb in &rule.verbs {
            if !used.contains(&(i, verb.clone())) {
                let groups = rule.api_groups.clone().unwrap_or_default().join(",");
                let resources = rule.resources.clone().unwrap_or_default().join(",");
                let group = if groups.is_empty() { "core".to_owned() } else { groups };
                unused.push((grant.role.clone(), format!("{verb} {group}/{resources}")));
            }
        }
    }
    println!("granted verbs never used ({}):", unused.len());
    for (role, rule) in &unused {
        let why =
            not_exercised.iter().find(|(r, _)| r == rule).map_or("UNUSED: shrink the role", |(_, why)| why);
        println!("  {role}: {rule}  ({why})");
    }
    let unexplained: Vec<&(String, String)> =
        unused.iter().filter(|(_, u)| !not_exercised.iter().any(|(r, _)| r == u)).collect();
    assert!(unexplained.is_empty(), "{user} is granted more than it used; shrink its role: {unexplained:#?}");
    println!(
        "RBAC enforced on the local cluster: {} requests by {user} in this scenario, none denied \
         over the whole run ({} audited); {} rules; {} verb(s) not exercised",
        requests.len(),
        all.len(),
        grants.len(),
        unused.len()
    );
}
