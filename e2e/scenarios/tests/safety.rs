//! The operator's promises under the changes that break them (issue 18's end-to-end proofs):
//! fewer pods leave through a drain (mid-canary and mid-drain, streams open), a lost status is
//! rebuilt without a pod leaving rotation, a name another controller holds is never taken, and
//! a route write the API server refuses holds the step until it goes through; a Prometheus
//! outside the cluster's networks is refused, and an https server's certificate is verified.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use e2e::{Bed, failed_calls, fixture_rollout, phase, revision_of, with_image};
use k8s_openapi::api::{
    core::v1::{ConfigMap, Pod, Secret, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use mcp_fixture::agents::AgentEra;
use mcp_rollout::api::{McpRollout, Phase, RollbackReason};
use serde_json::{Value, json};

const DRAINING_LABEL: &str = "mcprollout.dev/draining";
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn stalled(r: &McpRollout) -> Option<(String, String)> {
    let status = r.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == "Stalled" && c.status == "True")?;
    Some((c.reason.clone(), c.message.clone()))
}

/// The pods draining while their revision serves on (a drain of some of its pods still
/// running: one that ended keeps its entry, with `drainedAt`, until its pods are gone).
fn partial_drain(r: &McpRollout, revision: &str) -> Option<Vec<String>> {
    let drain = r
        .status
        .as_ref()?
        .drains
        .iter()
        .find(|d| d.revision == revision && !d.pods.is_empty() && d.drained_at.is_none())?;
    Some(drain.pods.clone())
}

/// Non-terminating pods of one revision.
async fn revision_pods(bed: &Bed, rollout: &str, revision: &str) -> BTreeSet<String> {
    bed.pods(rollout)
        .await
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.labels().get("mcprollout.dev/revision").is_some_and(|r| r == revision))
        .map(|p| p.name_any())
        .collect()
}

async fn budgets(bed: &Bed) -> Vec<String> {
    let api: Api<PodDisruptionBudget> = Api::namespaced(bed.client.clone(), &bed.namespace);
    api.list(&ListParams::default()).await.unwrap().items.iter().map(ResourceExt::name_any).collect()
}

/// Leaving pods are out of the Service's endpoints, marked (label, deletion cost) and guarded:
/// an eviction of one is refused (429) while it drains.
async fn check_leaving(bed: &Bed, rollout: &str, revision: &str, leaving: &[String]) {
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), &bed.namespace);
    e2e::eventually("the leaving pods marked", Duration::from_secs(20), || async {
        let mut all = true;
        for name in leaving {
            let Some(pod) = pods.get_opt(name).await.unwrap() else { continue };
            all &= pod.labels().get(DRAINING_LABEL).is_some_and(|v| v == "true")
                && pod.annotations().get(DELETION_COST).is_some_and(|v| v == "-1000");
        }
        all
    })
    .await;
    let budget = format!("{rollout}-{revision}-drain");
    e2e::eventually("the drain's PodDisruptionBudget", Duration::from_secs(20), || async {
        budgets(bed).await.contains(&budget)
    })
    .await;
    // At once, while the drain surely runs (its window is 20 s at least; the ReplicaSet may
    // remove the pod once it has ended), and with no client-side retry: kube's client retries
    // a 429 until the pod is gone, and a retry landing once it is terminating "succeeds" (the
    // API server evicts terminating pods without a look at any budget) — the 201 an earlier
    // version of this check saw. The audit log of that run shows every eviction refused.
    let pod = pods.get(&leaving[0]).await.unwrap();
    assert!(pod.metadata.deletion_timestamp.is_none(), "{} is already terminating", leaving[0]);
    let once: Api<Pod> = Api::namespaced(bed.real.client_without_retries().await, &bed.namespace);
    // Refused whether or not the disruption controller has computed the budget yet.
    match once.evict(&leaving[0], &EvictParams::default()).await {
        Err(kube::Error::Api(e)) if e.code == 429 => {}
        other => panic!("evicting draining pod {} was not refused: {other:?}", leaving[0]),
    }
    e2e::eventually("the leaving pods out of the endpoints", Duration::from_secs(30), || async {
        let endpoints = bed.ready_endpoints(rollout).await;
        leaving.iter().all(|p| !endpoints.contains(p))
    })
    .await;
}

/// `replicas` lowered mid-canary (4 → 3) and again while the old revision drains (3 → 2), with
/// streamed calls open all along: the pods that leave are chosen, taken out of rotation, marked
/// and guarded, drained, and only then removed — exactly those pods; no call fails, no stream
/// is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_replicas_mid_canary_and_mid_drain_cuts_no_stream() {
    let bed = Bed::start().await;
    let mut v1 = fixture_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    // A soak long enough to lower replicas in, and drains that can outlast a stream.
    v1["spec"]["strategy"]["canary"]["steps"] = json!([
        {"setWeight": 25}, {"pause": {"duration": "20s"}},
        {"setWeight": 50}, {"pause": {"duration": "4s"}},
        {"setWeight": 100}
    ]);
    // Drains of at least 20 s (no early finish): long enough to check the leaving pods while
    // they drain, before the ReplicaSet removes them.
    v1["spec"]["drain"] = json!({"min": "20s", "max": "40s", "earlyFinish": false});
    let (r1, mut v2) = (revision_of(&v1), with_image(&v1, "mcp-fixture:v2-compatible", &[]));
    let r2 = revision_of(&v2);
    bed.apply(&v1).await;
    bed.wait_healthy("docs").await;
    let traffic = bed
        .agents("docs", |c| {
            c.duration = 110.0;
            c.rate = 8.0;
            c.stream_share = 0.3;
            c.stream_seconds = 3.0;
            c.era = AgentEra::Stateless;
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    bed.apply(&v2).await;
    bed.wait("docs", "the canary at 25%", Duration::from_secs(60), |r| {
        r.status.as_ref().is_some_and(|s| s.desired_weight == 25 && s.effective_weight > 0)
    })
    .await;

    // Mid-canary: one pod fewer. Whichever revision now runs more pods than planned drains
    // the surplus.
    v2["spec"]["replicas"] = json!(3);
    bed.apply(&v2).await;
    let surplus =
        |r: &McpRollout| [&r1, &r2].into_iter().find_map(|rev| Some((rev.clone(), partial_drain(r, rev)?)));
    let seen = bed
        .wait("docs", "a drain of some pods mid-canary", Duration::from_secs(30), |r| surplus(r).is_some())
        .await;
    let (revision, leaving) = surplus(&seen).unwrap();
    check_leaving(&bed, "docs", &revision, &leaving).await;

    // Promoted, and the old revision draining: lower again. The new stable's surplus drains
    // beside the old revision's drain.
    bed.wait("docs", "promoted, v1 draining", Duration::from_secs(120), |r| {
        e2e::stable_is(r, &r2) && r.status.as_ref().is_some_and(|s| s.drains.iter().any(|d| d.revision == r1))
    })
    .await;
    let before = revision_pods(&bed, "docs", &r2).await;
    v2["spec"]["replicas"] = json!(2);
    bed.apply(&v2).await;
    let during = bed
        .wait("docs", "a drain of some v2 pods", Duration::from_secs(60), |r| partial_drain(r, &r2).is_some())
        .await;
    let leaving = partial_drain(&during, &r2).unwrap();
    let old_still_draining = during.status.as_ref().unwrap().drains.iter().any(|d| d.revision == r1);
    check_leaving(&bed, "docs", &r2, &leaving).await;
    bed.wait("docs", "drained down to 2 pods", Duration::from_secs(120), |r| {
        r.status.as_ref().is_some_and(|s| s.drains.is_empty()) && phase(r) == Some(Phase::Healthy)
    })
    .await;
    e2e::eventually("2 pods of v2 left, and no budget", Duration::from_secs(60), || async {
        revision_pods(&bed, "docs", &r2).await.len() == 2 && budgets(&bed).await.is_empty()
    })
    .await;
    let after = revision_pods(&bed, "docs", &r2).await;
    let expected: BTreeSet<String> = before.iter().filter(|p| !leaving.contains(p)).cloned().collect();
    assert_eq!(after, expected, "the ReplicaSet removed exactly the drained pods ({leaving:?})");

    let report = traffic.await.unwrap();
    assert_eq!(failed_calls(&report), 0, "agents saw errors: {}", report.summary());
    assert_eq!(report.streams_cut, 0, "streamed calls were cut: {}", report.summary());
    let finished: Vec<String> = bed
        .events("docs")
        .await
        .into_iter()
        .filter(|(reason, _)| reason == "DrainFinished")
        .map(|(_, note)| note)
        .collect();
    let partial = |rev: &str| finished.iter().any(|n| n.contains(&format!("pod(s) of revision {rev} ")));
    assert!(partial(&r2), "the drain of some v2 pods finished: {finished:?}");
    // The mid-canary surplus drain ends on its own, or — when it is the old stable's and the
    // canary is promoted before its window ends (a busy machine) — the drain of the whole
    // revision takes its place (by design: one drain per revision leaving altogether) and ends.
    let absorbed = revision == r1
        && !partial(&r1)
        && finished.iter().any(|n| n.starts_with(&format!("revision {r1} drained")));
    assert!(
        partial(&revision) || absorbed,
        "the mid-canary drain of {revision}'s pods neither finished nor was taken over by the whole revision's: {finished:?}"
    );
    println!(
        "replicas lowered mid-canary (a drain of {revision}'s surplus: {}) and mid-drain (old revision \
         still draining: {old_still_draining}; {} of v2 drained, exactly those removed): {}",
        if absorbed { "taken over by the drain of the whole revision on promotion" } else { "finished" },
        leaving.len(),
        report.summary()
    );
}

/// The status of a Steady rollout is wiped (a restore from a backup without status, a
/// hand edit): the operator rebuilds it from the Deployment it controls; no pod leaves the
/// Service's endpoints and nothing is deleted or recreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_status_is_rebuilt_with_every_pod_serving_and_nothing_deleted() {
    let bed = Bed::start().await;
    let mut v1 = fixture_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    v1["spec"]["replicas"] = json!(3);
    let r1 = revision_of(&v1);
    bed.apply(&v1).await;
    bed.wait_healthy("docs").await;
    e2e::eventually("3 endpoints", Duration::from_secs(30), || async {
        bed.ready_endpoints("docs").await.len() == 3
    })
    .await;
    let pods_before = revision_pods(&bed, "docs", &r1).await;
    let deployments_before: Vec<String> =
        bed.deployments("docs").await.iter().filter_map(|d| d.metadata.uid.clone()).collect();

    // The endpoints, watched for as long as the operator rebuilds.
    let fewest = Arc::new(Mutex::new(usize::MAX));
    let watcher = {
        let (fewest, client, namespace) = (fewest.clone(), bed.client.clone(), bed.namespace.clone());
        tokio::spawn(async move {
            let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
                Api::namespaced(client, &namespace);
            let selector = ListParams::default().labels("kubernetes.io/service-name=docs");
            for _ in 0..600 {
                if let Ok(list) = slices.list(&selector).await {
                    let ready = list
                        .items
                        .iter()
                        .flat_map(|s| s.endpoints.iter().flatten())
                        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                        .count();
                    let mut f = fewest.lock().unwrap();
                    *f = (*f).min(ready);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    bed.rollouts()
        .patch_status("docs", &PatchParams::default(), &Patch::Merge(json!({"status": null})))
        .await
        .unwrap();
    let rebuilt = bed
        .wait("docs", "the status rebuilt", Duration::from_secs(60), |r| {
            e2e::stable_is(r, &r1) && phase(r) == Some(Phase::Healthy)
        })
        .await;
    // A while longer: a late mistake (a FirstDeploy taking pods out) would show here.
    tokio::time::sleep(Duration::from_secs(8)).await;
    watcher.abort();
    let fewest = *fewest.lock().unwrap();
    assert_eq!(fewest, 3, "a pod left the endpoints while the status was rebuilt");
    assert_eq!(revision_pods(&bed, "docs", &r1).await, pods_before, "no pod deleted or added");
    let deployments_after: Vec<String> =
        bed.deployments("docs").await.iter().filter_map(|d| d.metadata.uid.clone()).collect();
    assert_eq!(deployments_after, deployments_before, "the Deployment was kept, not recreated");
    let status = rebuilt.status.unwrap();
    assert!(status.canary_revision.is_none() && status.drains.is_empty(), "{status:?}");
    e2e::eventually("an Adopted event", Duration::from_secs(15), || async {
        bed.events("docs").await.iter().any(|(reason, _)| reason == "Adopted")
    })
    .await;
    println!(
        "status cleared on a Steady rollout: rebuilt (stable {r1}), endpoints never below {fewest} of 3, \
         the same {} pods and Deployment",
        pods_before.len()
    );
}

/// A Service of the rollout's name already exists and belongs to another controller: the
/// rollout is Stalled with `NameConflict` and the Service is left exactly as it was; once it
/// is removed the operator creates its own and the rollout becomes healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_owned_by_another_controller_is_never_taken_over() {
    let bed = Bed::start().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(bed.client.clone(), &bed.namespace);
    let owner = configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(bed.client.clone(), &bed.namespace);
    let theirs: Service = serde_json::from_value(json!({
        "metadata": {"name": "taken", "labels": {"mcprollout.dev/rollout": "taken"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                "uid": owner.metadata.uid.clone().unwrap(), "controller": true}]},
        "spec": {"selector": {"app": "someone-else"}, "ports": [{"port": 9090}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &theirs).await.unwrap();
    let before = services.get("taken").await.unwrap();

    let mut rollout = fixture_rollout("taken", "mcp-fixture:v1", &[], &bed.prometheus_url());
    rollout["spec"]["replicas"] = json!(1);
    bed.apply(&rollout).await;
    let (reason, message) = stalled(
        &bed.wait("taken", "Stalled on the name", Duration::from_secs(60), |r| stalled(r).is_some()).await,
    )
    .unwrap();
    assert_eq!(reason, "NameConflict", "{message}");
    assert!(message.contains("Service taken"), "{message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = services.get("taken").await.unwrap();
    assert_eq!(after.spec, before.spec, "the other controller's Service was changed");
    assert_eq!(after.metadata.owner_references, before.metadata.owner_references);
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version, "not written at all");

    services.delete("taken", &DeleteParams::default()).await.unwrap();
    bed.wait("taken", "healthy once the name is free", Duration::from_secs(90), |r| {
        phase(r) == Some(Phase::Healthy) && stalled(r).is_none()
    })
    .await;
    let ours = services.get("taken").await.unwrap();
    assert!(ours.owner_references().iter().any(|o| o.kind == "McpRollout" && o.controller == Some(true)));
    println!(
        "name conflict: Stalled NameConflict ({message}); the Service untouched; healthy once it was removed"
    );
}

/// Guards the cluster-scoped admission policy of one scenario: removed when the scenario
/// ends, passed or failed.
struct PolicyGuard {
    client: kube::Client,
    name: String,
}

fn admission_api(client: &kube::Client, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

impl PolicyGuard {
    async fn remove(&self) {
        for kind in ["ValidatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy"] {
            let _ = admission_api(&self.client, kind).delete(&self.name, &DeleteParams::default()).await;
        }
    }
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(self.remove()));
    }
}

fn canary_weight(route: &Value) -> i64 {
    route["spec"]["rules"][0]["backendRefs"][1]["weight"].as_i64().unwrap_or(-1)
}

/// The API server refuses the operator's writes to the HTTPRoute mid-canary (a
/// ValidatingAdmissionPolicy that denies the operator's updates of routes in this namespace):
/// the step does not advance past the weight in force, the rollout says why (`WritesRefused`),
/// and it goes on once the writes go through again.
///
/// Refused by admission rather than by editing the chart's ClusterRole: the role is shared
/// with the scenarios running beside this one, and the RBAC scenario checks that nothing the
/// operator asks is RBAC-denied. The operator sees the same thing either way: a write the API
/// server refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_route_write_holds_the_step_and_says_why() {
    let bed = Bed::start().await;
    let routes = bed.http_routes().await;
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "mcp", "namespace": bed.namespace},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
            {"name": "docs-stable", "port": 8080, "weight": 100},
            {"name": "docs-canary", "port": 8080, "weight": 0}]}]}});
    routes.create(&PostParams::default(), &serde_json::from_value(route).unwrap()).await.unwrap();
    let mut v1 = fixture_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    v1["spec"]["replicas"] = json!(2);
    v1["spec"]["trafficRouting"] = json!({"gatewayAPI": {"httpRouteRef": {"name": "mcp"}}});
    // No gateway moves traffic here: nothing for the analysis to measure.
    v1["spec"].as_object_mut().unwrap().remove("analysis");
    v1["spec"]["strategy"]["canary"]["steps"] = json!([
        {"setWeight": 5}, {"pause": {"duration": "10s"}},
        {"setWeight": 25}, {"pause": {"duration": "2s"}},
        {"setWeight": 100}
    ]);
    bed.apply(&v1).await;
    bed.wait_healthy("docs").await;
    let get = || async { serde_json::to_value(routes.get("mcp").await.unwrap()).unwrap() };

    let v2 = with_image(&v1, "mcp-fixture:v2-compatible", &[]);
    bed.apply(&v2).await;
    e2e::eventually("the route at 5%", Duration::from_secs(60), || async {
        canary_weight(&get().await) == 5
    })
    .await;
    let user = format!("system:serviceaccount:{}:mcp-rollout", bed.real.operator_namespace);
    let guard = PolicyGuard {
        client: bed.client.clone(),
        name: format!("e2e-refuse-route-writes-{}", bed.namespace),
    };
    let policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": guard.name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["gateway.networking.k8s.io"],
                "apiVersions": ["*"], "operations": ["UPDATE"], "resources": ["httproutes"]}]},
            "matchConditions": [{"name": "the-operator", "expression": format!("request.userInfo.username == '{user}'")}],
            "validations": [{"expression": "false", "message": "route writes refused for this test"}]
        }
    }))
    .unwrap();
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": guard.name},
        "spec": {"policyName": guard.name, "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": bed.namespace}}}}
    }))
    .unwrap();
    admission_api(&bed.client, "ValidatingAdmissionPolicy")
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    admission_api(&bed.client, "ValidatingAdmissionPolicyBinding")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    let (reason, message) = stalled(
        &bed.wait("docs", "Stalled on refused writes", Duration::from_secs(90), |r| stalled(r).is_some())
            .await,
    )
    .unwrap();
    assert_eq!(reason, "WritesRefused", "{message}");
    assert!(message.contains("route writes refused for this test"), "{message}");
    // Held: the route and the rollout stay at the weight in force.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let held = bed.get("docs").await.status.unwrap();
    assert_eq!(canary_weight(&get().await), 5, "the route was not written");
    // The next step may be asked for (desired 25%), but nothing goes past it while the weight
    // in force is 5%: not the soak after it, not 100%.
    assert!(held.effective_weight <= 5, "the rollout went past the weight in force: {held:?}");
    assert!(
        held.desired_weight <= 25 && held.current_step_index.unwrap_or(0) <= 3,
        "the step advanced: {held:?}"
    );
    e2e::eventually("a WritesRefused event", Duration::from_secs(15), || async {
        bed.events("docs").await.iter().any(|(reason, _)| reason == "WritesRefused")
    })
    .await;

    guard.remove().await;
    let r2 = revision_of(&v2);
    bed.wait("docs", "promoted once the writes go through", Duration::from_secs(120), |r| {
        e2e::stable_is(r, &r2) && stalled(r).is_none()
    })
    .await;
    e2e::eventually("the route all to stable", Duration::from_secs(30), || async {
        canary_weight(&get().await) == 0
    })
    .await;
    println!("route writes refused at 5%: {reason}, held at 5% ({message}); promoted once they went through");
}

/// A name that cannot name the rollout's Services (too long for `<name>-canary`, or not a
/// DNS-1035 label) is refused by the API server at admission, with the rule's message, and
/// nothing is created; the longest name that fits is accepted, with its per-track Services
/// (`trackServices: Always`). Set back to `Auto` (plain-Service routing uses none), those two
/// are deleted and the rollout's own Service stays, the same object, healthy throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_cannot_name_the_rollouts_services_are_refused_at_admission() {
    let bed = Bed::start().await;
    let params = PatchParams::apply("e2e-user").force();
    for bad in ["a".repeat(57), "docs.prod".to_owned()] {
        let mut rollout = fixture_rollout(&bad, "mcp-fixture:v1", &[], &bed.prometheus_url());
        rollout["metadata"]["namespace"] = json!(bed.namespace);
        let refused = bed.rollouts().patch(&bad, &params, &Patch::Apply(&rollout)).await;
        let Err(kube::Error::Api(status)) = refused else { panic!("{bad}: not refused: {refused:?}") };
        assert_eq!(status.code, 422, "{bad}: {status:?}");
        assert!(status.message.contains("metadata.name must be at most 56 characters"), "{bad}: {status:?}");
    }
    assert!(bed.rollouts().list(&ListParams::default()).await.unwrap().items.is_empty());
    let longest = "a".repeat(56);
    let mut rollout = fixture_rollout(&longest, "mcp-fixture:v1", &[], &bed.prometheus_url());
    rollout["spec"]["service"]["trackServices"] = json!("Always");
    bed.apply(&rollout).await;
    bed.wait_healthy(&longest).await;
    let services: Api<Service> = Api::namespaced(bed.client.clone(), &bed.namespace);
    let tracks = [format!("{longest}-stable"), format!("{longest}-canary")];
    for name in std::iter::once(&longest).chain(&tracks) {
        services.get(name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let front = services.get(&longest).await.unwrap().metadata.uid;

    bed.rollouts()
        .patch(
            &longest,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"service": {"trackServices": "Auto"}}})),
        )
        .await
        .unwrap();
    e2e::eventually("the per-track Services deleted", Duration::from_secs(60), || async {
        let names: Vec<String> =
            services.list(&ListParams::default()).await.unwrap().items.iter().map(|s| s.name_any()).collect();
        !tracks.iter().any(|t| names.contains(t))
    })
    .await;
    assert_eq!(
        services.get(&longest).await.unwrap().metadata.uid,
        front,
        "the rollout's Service was replaced"
    );
    let r = bed.get(&longest).await;
    assert_eq!(phase(&r), Some(Phase::Healthy), "{:?}", r.status);
    println!("longest name: its three Services made; trackServices Auto: the two per-track ones deleted");
}

/// An McpRollout cannot make the operator fetch what it likes: a Prometheus address outside
/// the cluster's own Service and pod networks (here `localhost`, which in the operator's pod
/// is the operator itself) holds the rollout Stalled with `DestinationNotAllowed`, naming the
/// address and the networks read from the cluster; the in-cluster Prometheus (a ClusterIP)
/// passes the same check, and the rollout goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_outside_the_cluster_networks_is_refused() {
    let bed = Bed::start().await;
    let mut rollout = fixture_rollout("outside", "mcp-fixture:v1", &[], "http://localhost:8080");
    rollout["spec"]["replicas"] = json!(1);
    bed.apply(&rollout).await;
    let (reason, message) = stalled(
        &bed.wait("outside", "Stalled on the destination", Duration::from_secs(60), |r| stalled(r).is_some())
            .await,
    )
    .unwrap();
    assert_eq!(reason, "DestinationNotAllowed", "{message}");
    assert!(message.contains("http://localhost:8080"), "{message}");
    assert!(message.contains("127.0.0.1") || message.contains("::1"), "{message}");
    assert!(message.contains("outside the cluster's Service and pod networks"), "{message}");
    let events = bed.events("outside").await;
    assert!(events.iter().any(|(reason, _)| reason == "DestinationNotAllowed"), "{events:?}");

    let address = bed.prometheus_url();
    bed.rollouts()
        .patch(
            "outside",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"analysis": {"prometheus": {"address": address}}}})),
        )
        .await
        .unwrap();
    bed.wait("outside", "healthy with the in-cluster Prometheus", Duration::from_secs(120), |r| {
        phase(r) == Some(Phase::Healthy) && stalled(r).is_none()
    })
    .await;
    println!("destinations: localhost refused ({message}); {address} allowed, healthy");
}

/// A certificate authority made for one scenario.
struct Authority {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl Authority {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self { params, key, pem }
    }

    /// A server certificate for `name` and its key, both PEM.
    fn issue(&self, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert =
            rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// `service.scheme: https` on the real cluster: the fixture terminates TLS with a certificate
/// for the rollout's Service name only (`<name>.<namespace>.svc`, not its pod IP), the probe
/// connects to each pod and verifies that name against `caBundleSecretRef`, and the rollout
/// becomes healthy. A new revision serving a certificate of another authority, for the same
/// name, fails its probe as a TLS failure and is rolled back: the bundle is the only trust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_server_is_probed_with_its_certificate_verified() {
    let bed = Bed::start().await;
    let name = format!("tls.{}.svc", bed.namespace);
    let ours = Authority::new();
    let stranger = Authority::new();
    let secrets: Api<Secret> = Api::namespaced(bed.client.clone(), &bed.namespace);
    let secret = |secret: &str, data: &[(&str, &str)]| -> Secret {
        let data: serde_json::Map<String, Value> =
            data.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        serde_json::from_value(json!({"metadata": {"name": secret}, "stringData": data})).unwrap()
    };
    let (cert, key) = ours.issue(&name);
    secrets
        .create(&PostParams::default(), &secret("tls-ours", &[("tls.crt", &cert), ("tls.key", &key)]))
        .await
        .unwrap();
    let (cert, key) = stranger.issue(&name);
    secrets
        .create(&PostParams::default(), &secret("tls-stranger", &[("tls.crt", &cert), ("tls.key", &key)]))
        .await
        .unwrap();
    secrets.create(&PostParams::default(), &secret("tls-ca", &[("ca.crt", &ours.pem)])).await.unwrap();

    let serving = |certificate: &str| {
        let mut rollout = fixture_rollout(
            "tls",
            "mcp-fixture:v1",
            &[("FIXTURE_TLS_CERT", "/tls/tls.crt"), ("FIXTURE_TLS_KEY", "/tls/tls.key")],
            &bed.prometheus_url(),
        );
        let spec = rollout["spec"].as_object_mut().unwrap();
        // Prometheus scrapes plain HTTP: without analysis the probe alone gates the steps.
        spec.remove("analysis");
        spec["replicas"] = json!(1);
        spec["service"]["scheme"] = json!("https");
        spec["probe"]["caBundleSecretRef"] = json!({"name": "tls-ca", "key": "ca.crt"});
        spec["probe"]["failureLimit"] = json!(2);
        let pod = &mut spec["template"]["spec"];
        pod["volumes"] = json!([{"name": "tls", "secret": {"secretName": certificate}}]);
        let container = &mut pod["containers"][0];
        container["volumeMounts"] = json!([{"name": "tls", "mountPath": "/tls", "readOnly": true}]);
        container["readinessProbe"]["httpGet"]["scheme"] = json!("HTTPS");
        rollout
    };
    bed.apply(&serving("tls-ours")).await;
    let healthy = bed
        .wait("tls", "healthy over https", Duration::from_secs(120), |r| {
            phase(r) == Some(Phase::Healthy)
                && r.status.as_ref().is_some_and(|s| s.probes.iter().any(|p| p.passed))
        })
        .await;
    let stable = healthy.status.as_ref().and_then(|s| s.stable_revision.clone()).unwrap();

    bed.apply(&serving("tls-stranger")).await;
    let rolled_back = bed
        .wait("tls", "the stranger's certificate rolled back", Duration::from_secs(120), |r| {
            r.status.as_ref().and_then(|s| s.rollback.as_ref()).is_some()
        })
        .await;
    let status = rolled_back.status.unwrap();
    let rollback = status.rollback.unwrap();
    assert_eq!(rollback.reason, RollbackReason::ProbeFailed, "{rollback:?}");
    let message = rollback.message.to_lowercase();
    assert!(message.contains("tls") || message.contains("certificate"), "{rollback:?}");
    assert_eq!(status.stable_revision.as_deref(), Some(stable.as_str()), "stable kept");
    println!(
        "https: healthy with the CA's certificate for {name}; another authority's: {}",
        rollback.message
    );
}

/// A HorizontalPodAutoscaler drives `replicas` through the McpRollout's `scale` subresource
/// (issue 22): the real kube-controller-manager's HPA controller (no metrics server runs here,
/// so it acts on its bounds alone) raises the count to its minimum (2 → 3), then, its bounds
/// lowered under the count, to its maximum (3 → 2). The operator follows each count: a third
/// pod comes up, then one leaves through a drain; the scale subresource reports the stable
/// revision's pods and the rollout's selector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_horizontal_pod_autoscaler_sets_the_replicas_through_the_scale_subresource() {
    let bed = Bed::start().await;
    let mut rollout = fixture_rollout("scaled", "mcp-fixture:v1", &[], &bed.prometheus_url());
    rollout["spec"]["replicas"] = json!(2);
    rollout["spec"].as_object_mut().unwrap().remove("analysis");
    bed.apply(&rollout).await;
    bed.wait_healthy("scaled").await;
    let scale = bed.rollouts().get_scale("scaled").await.unwrap();
    let status = scale.status.unwrap();
    assert_eq!((scale.spec.unwrap().replicas, status.replicas), (Some(2), 2));
    assert_eq!(status.selector.as_deref(), Some("mcprollout.dev/rollout=scaled"));

    let hpa = |min: i32, max: i32| {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "scaled", "namespace": bed.namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "mcprollout.dev/v1alpha1", "kind": "McpRollout", "name": "scaled"},
                "minReplicas": min, "maxReplicas": max,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
            }
        })
    };
    let hpas: Api<DynamicObject> = Api::namespaced_with(
        bed.client.clone(),
        &bed.namespace,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("autoscaling", "v2", "HorizontalPodAutoscaler")),
    );
    let apply = PatchParams::apply("e2e-hpa").force();
    hpas.patch("scaled", &apply, &Patch::Apply(&hpa(3, 4))).await.unwrap();
    let serving = |count: i32| {
        move |r: &McpRollout| {
            r.spec.replicas == count
                && phase(r) == Some(Phase::Healthy)
                && r.status.as_ref().is_some_and(|s| s.replicas == Some(count) && s.drains.is_empty())
        }
    };
    bed.wait("scaled", "3 replicas, the HPA's minimum", Duration::from_secs(120), serving(3)).await;
    hpas.patch("scaled", &apply, &Patch::Apply(&hpa(1, 2))).await.unwrap();
    bed.wait(
        "scaled",
        "2 replicas, the HPA's maximum, one pod drained",
        Duration::from_secs(120),
        serving(2),
    )
    .await;
    let events = bed.events("scaled").await;
    assert!(
        events.iter().any(|(reason, _)| reason == "DrainStarted"),
        "the pod left through a drain: {events:?}"
    );
    println!("hpa: replicas 2 → 3 (minReplicas) → 2 (maxReplicas, through a drain), by the HPA controller");
}
