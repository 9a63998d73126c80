//! Migration from a Deployment that serves today (issue 22 item 5, `spec.workloadRef`): the
//! McpRollout takes over without restarting the Deployment's pods or cutting their streams,
//! keeps the Service its clients use (same object, same address), and scales the Deployment to
//! 0 once its drain window has passed.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, time::Duration};

use e2e::{Bed, failed_calls, fixture_rollout, phase, revision_of, versions};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Service},
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams},
};
use mcp_fixture::agents::AgentEra;
use mcp_rollout::api::{McpRollout, Phase, WorkloadPhase};
use serde_json::json;

/// The Deployment and Service a team runs before adopting mcp-rollout: `mcp-fixture`, labels
/// `app=<app>`, answering as version `legacy`.
async fn legacy(bed: &Bed, app: &str, replicas: i32, port: i32) -> (Deployment, Service) {
    let deployments: Api<Deployment> = Api::namespaced(bed.client.clone(), &bed.namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": format!("{app}-legacy"), "labels": {"app": app}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "server",
                        "image": "mcp-fixture:v1",
                        "env": [{"name": "SERVER_VERSION", "value": "legacy"}],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
                    }]
                }
            }
        }
    }))
    .unwrap();
    let deployment = deployments.create(&PostParams::default(), &deployment).await.unwrap();
    let services: Api<Service> = Api::namespaced(bed.client.clone(), &bed.namespace);
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": app},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": port, "targetPort": "http"}]}
    }))
    .unwrap();
    let service = services.create(&PostParams::default(), &service).await.unwrap();
    (deployment, service)
}

async fn legacy_pods(bed: &Bed, app: &str) -> BTreeMap<String, (String, i32)> {
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), &bed.namespace);
    pods.list(&ListParams::default().labels(&format!("app={app},!mcprollout.dev/rollout")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let restarts = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
            (p.name_any(), (p.uid().unwrap_or_default(), restarts))
        })
        .collect()
}

fn workload_phase(rollout: &McpRollout) -> Option<WorkloadPhase> {
    rollout.status.as_ref()?.workload.as_ref().map(|w| w.phase)
}

/// The McpRollout takes over a Deployment serving long streamed calls: its pods are neither
/// restarted nor cut while the first revision comes up, the Service keeps its object and
/// address and is pointed at the rollout's pods, new requests then reach only the rollout, and
/// the Deployment is scaled to 0 after its window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_deployment_is_taken_over_without_a_restart_or_a_cut_stream() {
    let bed = Bed::start().await;
    let (_, service_before) = legacy(&bed, "docs", 2, 8080).await;
    let deployments: Api<Deployment> = Api::namespaced(bed.client.clone(), &bed.namespace);
    e2e::eventually("the legacy pods serving", Duration::from_secs(90), || async {
        bed.ready_endpoints("docs").await.len() == 2
    })
    .await;
    let pods_before = legacy_pods(&bed, "docs").await;
    assert_eq!(pods_before.len(), 2);

    // Agents on the Service's address all along: streams of 6 s, one new connection each.
    let streams = bed
        .agents("docs", |c| {
            c.duration = 24.0;
            c.rate = 2.0;
            c.stream_share = 1.0;
            c.stream_seconds = 6.0;
            c.era = AgentEra::Stateless;
            c.no_keepalive = true;
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The same server, now under an McpRollout; its template keeps the `app` label, so the
    // old Deployment's selector matches the new pods too (they must not be counted as its).
    let mut rollout = fixture_rollout("docs", "mcp-fixture:v1", &[], &bed.prometheus_url());
    rollout["spec"]["replicas"] = json!(2);
    rollout["spec"]["template"]["metadata"]["labels"] = json!({"app": "docs"});
    rollout["spec"]["workloadRef"] = json!({"name": "docs-legacy"});
    rollout["spec"]["drain"] = json!({"min": "3s", "max": "10s"});
    let r1 = revision_of(&rollout);
    bed.apply(&rollout).await;

    let serving = bed
        .wait("docs", "the rollout serving, the Deployment draining", Duration::from_secs(120), |r| {
            workload_phase(r) == Some(WorkloadPhase::Draining)
        })
        .await;
    assert_eq!(serving.status.as_ref().unwrap().stable_revision.as_deref(), Some(r1.as_str()));
    // Until the drain ends the old pods are the very same, never restarted.
    assert_eq!(legacy_pods(&bed, "docs").await, pods_before, "the Deployment's pods were not touched");

    // The Service: the same object and address, now the rollout's, selecting its pods.
    let services: Api<Service> = Api::namespaced(bed.client.clone(), &bed.namespace);
    e2e::eventually("the Service taken over", Duration::from_secs(30), || async {
        let s = services.get("docs").await.unwrap();
        s.owner_references().iter().any(|o| o.kind == "McpRollout" && o.controller == Some(true))
    })
    .await;
    let service = services.get("docs").await.unwrap();
    assert_eq!(service.uid(), service_before.uid(), "the Service object is kept");
    let (ip_before, ip_after) = (
        service_before.spec.as_ref().unwrap().cluster_ip.clone(),
        service.spec.as_ref().unwrap().cluster_ip.clone(),
    );
    assert_eq!(ip_after, ip_before, "the Service keeps its address");
    let selector = service.spec.as_ref().unwrap().selector.clone().unwrap();
    assert_eq!(selector, BTreeMap::from([("mcprollout.dev/rollout".to_owned(), "docs".to_owned())]));
    let old_prefix = "docs-legacy-";
    e2e::eventually("the Deployment's pods out of the endpoints", Duration::from_secs(30), || async {
        let ready = bed.ready_endpoints("docs").await;
        !ready.is_empty() && ready.iter().all(|p| !p.starts_with(old_prefix))
    })
    .await;
    bed.wait_proxy_follows("docs").await;
    let after = bed
        .agents("docs", |c| {
            c.duration = 3.0;
            c.era = AgentEra::Stateless;
            c.no_keepalive = true;
        })
        .await
        .await
        .unwrap();
    assert_eq!(versions(&after), vec![r1.clone()], "after the take-over only the rollout answers");

    let done = bed
        .wait("docs", "the Deployment scaled down", Duration::from_secs(60), |r| {
            workload_phase(r) == Some(WorkloadPhase::ScaledDown)
        })
        .await;
    let window = done.status.as_ref().unwrap().workload.as_ref().unwrap().window_seconds;
    e2e::eventually("the Deployment at 0", Duration::from_secs(30), || async {
        deployments.get("docs-legacy").await.unwrap().spec.replicas == Some(0)
    })
    .await;
    assert_eq!(phase(&done), Some(Phase::Healthy));

    let report = streams.await.unwrap();
    assert_eq!(report.streams_cut, 0, "{}", report.summary());
    assert_eq!(failed_calls(&report), 0, "{}", report.summary());
    let seen = versions(&report);
    assert!(seen.contains(&"legacy".to_owned()) && seen.contains(&r1), "both served over the run: {seen:?}");
    let reasons: Vec<String> = bed.events("docs").await.into_iter().map(|(r, _)| r).collect();
    for reason in ["MigrationStarted", "WorkloadLeftTraffic", "MigrationComplete"] {
        assert!(reasons.iter().any(|r| r == reason), "no {reason} event in {reasons:?}");
    }
    println!(
        "migration: Deployment docs-legacy (2 pods) taken over by revision {r1}: its pods untouched until scaled \
         down after a {window:?} s window; Service docs kept (uid and {ip_after:?}); {} calls by {:?}, {} streams, \
         {} cut, {} failed; after the take-over only {r1} answered",
        report.calls_total(),
        report.by_server_version,
        report.streams_started,
        report.streams_cut,
        failed_calls(&report),
    );
}

/// A Service whose port is not the rollout's is not taken over (its clients would lose their
/// port): the rollout is Stalled with the reason, and neither the Service nor the Deployment
/// changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_another_port_is_refused_and_left_as_it_is() {
    let bed = Bed::start().await;
    let (deployment, before) = legacy(&bed, "web", 1, 80).await;
    let mut rollout = fixture_rollout("web", "mcp-fixture:v1", &[], &bed.prometheus_url());
    rollout["spec"]["replicas"] = json!(1);
    rollout["spec"]["workloadRef"] = json!({"name": "web-legacy"});
    bed.apply(&rollout).await;
    let stalled = bed
        .wait("web", "Stalled: ServiceNotAdoptable", Duration::from_secs(60), |r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "ServiceNotAdoptable")
            })
        })
        .await;
    let message = stalled.status.as_ref().unwrap().message.clone().unwrap_or_default();
    assert!(message.contains("serves ports [80/TCP]") && message.contains("8080"), "{message}");
    let services: Api<Service> = Api::namespaced(bed.client.clone(), &bed.namespace);
    let after = services.get("web").await.unwrap();
    assert_eq!(after.spec.as_ref().unwrap().selector, before.spec.as_ref().unwrap().selector);
    assert!(after.owner_references().is_empty());
    let deployments: Api<Deployment> = Api::namespaced(bed.client.clone(), &bed.namespace);
    let now = deployments.get("web-legacy").await.unwrap();
    assert_eq!(now.spec.replicas, deployment.spec.replicas);
    assert_eq!(stalled.status.as_ref().unwrap().stable_revision, None);
    println!("migration refused: {message}");
}
