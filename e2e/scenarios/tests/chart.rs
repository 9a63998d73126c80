//! The Helm chart installed on the test bed, the operator running as its pods under the
//! chart's ServiceAccount, and RBAC proven rather than guessed: every API request the operator
//! made during a canary (with a probe token Secret), a Gateway API rollout and a deletion is
//! checked against the rendered ClusterRole and Role, and rules it never used are listed.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, time::Duration};

use e2e::{Bed, NAMESPACE, fixture_rollout, revision_of, with_image, workspace};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Namespace, Secret},
};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
    core::GroupVersionKind,
    discovery::{Scope, pinned_kind},
};
use mcp_fixture::agents::AgentEra;
use serde_json::{Value, json};
use testbed::auth::{RequestRecord, service_account_user};

const RELEASE_NAMESPACE: &str = "mcp-rollout-system";

/// Rules the operator has a code path for that this scenario does not reach, and why.
const NOT_EXERCISED: &[(&str, &str)] = &[(
    "mcp-rollout patch events.k8s.io/events",
    "kube-runtime's Recorder patches an event's series when the same event repeats; none repeats here",
)];

/// The chart rendered by Helm's own engine (hack/chart.py, helm-python-sdk).
fn render_chart(values: &[std::path::PathBuf]) -> Vec<Value> {
    let mut command = std::process::Command::new(workspace().join(".venv/bin/python"));
    command
        .current_dir(workspace())
        .arg("hack/chart.py")
        .arg("render")
        .args(["--namespace", RELEASE_NAMESPACE]);
    for file in values {
        command.arg("-f").arg(file);
    }
    let output = command.output().expect("hack/install-test-deps.sh installs .venv with helm-python-sdk");
    assert!(
        output.status.success(),
        "rendering the chart failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

/// `kubectl apply --server-side` of any manifest.
async fn apply_manifest(client: &Client, manifest: &Value) {
    let (group, version) = match manifest["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), manifest["apiVersion"].as_str().unwrap().to_owned()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, manifest["kind"].as_str().unwrap());
    let (resource, capabilities) = pinned_kind(client, &gvk).await.unwrap();
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            manifest["metadata"]["namespace"].as_str().unwrap_or(NAMESPACE),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let name = manifest["metadata"]["name"].as_str().unwrap();
    api.patch(name, &PatchParams::apply("helm").force(), &Patch::Apply(manifest)).await.unwrap();
}

/// One RBAC rule and the namespace it applies in (`None`: every namespace, via a
/// ClusterRoleBinding).
#[derive(Debug)]
struct Grant {
    role: String,
    namespace: Option<String>,
    rule: Value,
}

/// The rules bound to `user` by the rendered bindings.
fn grants_of(manifests: &[Value], user: &str) -> Vec<Grant> {
    let role = |kind: &str, name: &str, namespace: Option<&str>| {
        manifests.iter().find(|m| {
            m["kind"] == kind
                && m["metadata"]["name"] == name
                && (kind == "ClusterRole" || m["metadata"]["namespace"].as_str() == namespace)
        })
    };
    let mut grants = Vec::new();
    for binding in
        manifests.iter().filter(|m| m["kind"] == "ClusterRoleBinding" || m["kind"] == "RoleBinding")
    {
        let bound = binding["subjects"].as_array().unwrap().iter().any(|s| {
            s["kind"] == "ServiceAccount"
                && service_account_user(s["namespace"].as_str().unwrap(), s["name"].as_str().unwrap()) == user
        });
        if !bound {
            continue;
        }
        let scope = (binding["kind"] == "RoleBinding")
            .then(|| binding["metadata"]["namespace"].as_str().unwrap().to_owned());
        let role_ref = &binding["roleRef"];
        let role_name = role_ref["name"].as_str().unwrap();
        let found =
            role(role_ref["kind"].as_str().unwrap(), role_name, scope.as_deref()).unwrap_or_else(|| {
                panic!("binding {} names a role the chart lacks", binding["metadata"]["name"])
            });
        for rule in found["rules"].as_array().unwrap() {
            grants.push(Grant { role: role_name.to_owned(), namespace: scope.clone(), rule: rule.clone() });
        }
    }
    grants
}

fn listed(rule: &Value, field: &str, value: &str) -> bool {
    rule[field].as_array().is_some_and(|l| l.iter().any(|v| v == "*" || v == value))
}

/// Whether a grant allows a request, as the RBAC authorizer decides.
fn allows(grant: &Grant, request: &RequestRecord) -> bool {
    let resource = match &request.subresource {
        Some(sub) => format!("{}/{sub}", request.resource),
        None => request.resource.clone(),
    };
    let names = grant.rule["resourceNames"].as_array();
    grant.namespace.as_ref().is_none_or(|ns| request.namespace.as_ref() == Some(ns))
        && listed(&grant.rule, "apiGroups", &request.group)
        && listed(&grant.rule, "resources", &resource)
        && listed(&grant.rule, "verbs", &request.verb)
        && names.is_none_or(|n| {
            n.is_empty() || request.name.as_ref().is_some_and(|name| n.iter().any(|v| v == name))
        })
}

fn describe(request: &RequestRecord) -> String {
    let resource = match &request.subresource {
        Some(sub) => format!("{}/{sub}", request.resource),
        None => request.resource.clone(),
    };
    let group = if request.group.is_empty() { "core" } else { &request.group };
    format!("{} {group}/{resource} in {}", request.verb, request.namespace.as_deref().unwrap_or("(cluster)"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_the_operator_with_exactly_the_rbac_it_ships() {
    if e2e::on_real_cluster(
        "the test bed's record of every API request (hack/kind-e2e.sh installs the chart on the cluster instead)",
    ) {
        return;
    }
    let bed = Bed::without_operator().await;
    // Two replicas: leader election on, so the Lease rules are exercised too.
    let ha = bed.dir.join("ha-values.yaml");
    std::fs::write(&ha, "replicas: 2\n").unwrap();
    let manifests = render_chart(&[workspace().join("charts/mcp-rollout/ci/testbed-values.yaml"), ha]);
    let namespaces: Api<Namespace> = Api::all(bed.client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": RELEASE_NAMESPACE}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    // The chart's CRDs are crds/ (a check keeps them identical); the bed applied those.
    for manifest in &manifests {
        apply_manifest(&bed.client, manifest).await;
    }
    let deployments: Api<Deployment> = Api::namespaced(bed.client.clone(), RELEASE_NAMESPACE);
    e2e::eventually("the operator Deployment available", Duration::from_secs(60), || async {
        deployments
            .get("mcp-rollout")
            .await
            .ok()
            .and_then(|d| d.status?.available_replicas)
            .is_some_and(|n| n == 2)
    })
    .await;

    // A canary under traffic, its probe authenticated with a token from a Secret.
    let secrets: Api<Secret> = Api::namespaced(bed.client.clone(), NAMESPACE);
    let token =
        serde_json::from_value(json!({"metadata": {"name": "mcp-token"}, "stringData": {"token": "s3cret"}}));
    secrets.create(&PostParams::default(), &token.unwrap()).await.unwrap();
    let mut v1 = fixture_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    v1["spec"]["replicas"] = json!(2);
    v1["spec"]["probe"]["bearerTokenSecretRef"] = json!({"name": "mcp-token", "key": "token"});
    bed.apply(&v1).await;

    // A Gateway API rollout, deleted at the end (finalizer, route restored).
    let routes = bed.http_routes().await;
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "mcp", "namespace": NAMESPACE},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
            {"name": "routed-stable", "port": 8080, "weight": 100},
            {"name": "routed-canary", "port": 8080, "weight": 0}]}]}});
    routes.create(&PostParams::default(), &serde_json::from_value(route).unwrap()).await.unwrap();
    let mut routed = fixture_rollout("routed", "mcp-fixture:v1", &[], &bed.prometheus_url());
    routed["spec"]["replicas"] = json!(1);
    routed["spec"]["trafficRouting"] = json!({"gatewayAPI": {"httpRouteRef": {"name": "mcp"}}});
    routed["spec"].as_object_mut().unwrap().remove("analysis");
    bed.apply(&routed).await;

    bed.wait_healthy("docs").await;
    bed.wait_healthy("routed").await;
    let traffic = bed
        .agents("docs", |c| {
            c.duration = 120.0;
            c.era = AgentEra::Stateless;
            c.no_keepalive = true;
        })
        .await;
    let v2 = with_image(&v1, "mcp-fixture:v2-compatible", &[]);
    bed.apply(&v2).await;
    bed.apply(&with_image(&routed, "mcp-fixture:v2-compatible", &[])).await;
    let v2_revision = revision_of(&v2);
    bed.wait("docs", "v2 promoted and v1 drained away", Duration::from_secs(120), |r| {
        r.status.as_ref().is_some_and(|s| {
            s.stable_revision.as_deref() == Some(v2_revision.as_str()) && s.drains.is_empty()
        })
    })
    .await;
    traffic.abort();
    bed.wait("routed", "routed v2 promoted", Duration::from_secs(90), |r| {
        e2e::stable_is(r, &revision_of(&with_image(&routed, "mcp-fixture:v2-compatible", &[])))
    })
    .await;
    bed.rollouts().delete("routed", &DeleteParams::default()).await.unwrap();
    e2e::eventually("the routed rollout gone (finalizer removed)", Duration::from_secs(30), || async {
        bed.rollouts().get_opt("routed").await.unwrap().is_none()
    })
    .await;
    // The old revision's Deployment goes once its drain ended.
    e2e::eventually("v1's Deployment deleted", Duration::from_secs(30), || async {
        bed.deployments("docs").await.len() == 1
    })
    .await;

    // Every request of the operator's ServiceAccount against the chart's roles.
    let user = service_account_user(RELEASE_NAMESPACE, "mcp-rollout");
    let requests: Vec<RequestRecord> =
        bed.plane().auth.requests().into_iter().filter(|r| r.user == user).collect();
    assert!(requests.len() > 50, "the operator pods made only {} requests as {user}", requests.len());
    let others: BTreeMap<String, usize> = bed
        .plane()
        .auth
        .requests()
        .into_iter()
        .filter(|r| r.user.starts_with("system:serviceaccount:") && r.user != user)
        .fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.user).or_default() += 1;
            m
        });
    assert!(others.is_empty(), "requests under other service accounts: {others:?}");
    let grants = grants_of(&manifests, &user);
    let mut denied: BTreeMap<String, usize> = BTreeMap::new();
    let mut used: BTreeMap<(usize, String), usize> = BTreeMap::new();
    let mut made: BTreeMap<String, usize> = BTreeMap::new();
    for request in &requests {
        *made.entry(describe(request)).or_default() += 1;
        match grants.iter().position(|g| allows(g, request)) {
            Some(i) => *used.entry((i, request.verb.clone())).or_default() += 1,
            None => *denied.entry(describe(request)).or_default() += 1,
        }
    }
    println!("requests by the operator ({} in all):", requests.len());
    for (what, count) in &made {
        println!("  {count:>6}  {what}");
    }
    assert!(denied.is_empty(), "requests the chart's RBAC does not allow: {denied:#?}");

    let mut unused = Vec::new();
    for (i, grant) in grants.iter().enumerate() {
        let rule = &grant.rule;
        for verb in rule["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()) {
            if !used.contains_key(&(i, verb.to_owned())) {
                let list = |field: &str| {
                    rule[field]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                unused.push(format!("{} {verb} {}/{}", grant.role, list("apiGroups"), list("resources")));
            }
        }
    }
    println!("rules never used ({}):", unused.len());
    for rule in &unused {
        let why =
            NOT_EXERCISED.iter().find(|(r, _)| r == rule).map_or("UNUSED: shrink the role", |(_, why)| why);
        println!("  {rule}  ({why})");
    }
    let unexplained: Vec<&String> =
        unused.iter().filter(|u| !NOT_EXERCISED.iter().any(|(r, _)| r == *u)).collect();
    assert!(
        unexplained.is_empty(),
        "the chart grants more than the operator used; shrink it: {unexplained:#?}"
    );
    let pods = bed.plane().store.resolve("", "v1", "pods").unwrap();
    let (all, _) =
        bed.plane().store.list(&pods, Some(RELEASE_NAMESPACE), &Default::default(), &Default::default());
    let restarts: i64 = all
        .iter()
        .flat_map(|p| p["status"]["containerStatuses"].as_array().cloned().unwrap_or_default())
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(restarts, 0, "the operator pods restarted");
    println!(
        "chart on the test bed: {} requests by {user}, all allowed by {} rules; {} verb(s) not exercised",
        requests.len(),
        grants.len(),
        unused.len()
    );
}
