#![allow(clippy::unwrap_used)]
//! Whole-workload contract tests: a 3-replica mcp-fixture Deployment behind a Service, driven by
//! mcp-agents through the cluster IP, as the operator's rollouts will be.

mod support;

use support::{connect_with_kubelet, eventually};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use mcp_fixture::agents::{self, AgentEra, AgentTransport, AgentsConfig};
use serde_json::json;

fn fixture_deployment(tag: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "docs"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "docs"}},
            "template": {
                "metadata": {"labels": {"app": "docs"}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "server", "image": format!("mcp-fixture:{tag}"),
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "env": [{"name": "SERVER_VERSION", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
                    }]
                }
            }
        }
    }))
    .unwrap()
}

fn load(target: String, era: AgentEra) -> AgentsConfig {
    AgentsConfig {
        target,
        allow_remote_target: false,
        path: "/mcp".into(),
        agents: 6,
        duration: 4.0,
        session_min: 0.5,
        session_max: 1.0,
        rate: 10.0,
        stream_share: 0.0,
        stream_seconds: 1.0,
        transport: AgentTransport::StreamableHttp,
        era,
        max_retries: 0,
        max_calls: 100_000,
        // A new connection per request: kube-proxy balances connections, so this spreads calls.
        no_keepalive: true,
        seed: Some(3),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_through_the_service_reach_every_pod_and_a_rolling_update_replaces_them() {
    let (_plane, client) = connect_with_kubelet().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &fixture_deployment("v1")).await.unwrap();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "docs"},
        "spec": {"selector": {"app": "docs"}, "ports": [{"name": "mcp", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    let cluster_ip =
        services.create(&PostParams::default(), &service).await.unwrap().spec.unwrap().cluster_ip.unwrap();
    eventually("3 available replicas", || async {
        deployments.get("docs").await.unwrap().status.and_then(|s| s.available_replicas) == Some(3)
    })
    .await;

    // The stateless era needs no session affinity, so every call may land on another pod.
    let report = agents::run(load(format!("http://{cluster_ip}:80"), AgentEra::Stateless)).await.unwrap();
    let failed =
        report.calls.iter().filter(|(outcome, _)| outcome.as_str() != "ok").map(|(_, n)| n).sum::<u64>();
    assert_eq!(failed, 0, "{report:?}");
    assert_eq!(report.by_server_version.len(), 3, "calls reached {:?}", report.by_server_version.keys());

    let old_pods: Vec<String> = report.by_server_version.keys().cloned().collect();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "server", "image": "mcp-fixture:v2-compatible"}]}}}});
    deployments.patch("docs", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    eventually("the rollout to complete", || async {
        let status = deployments.get("docs").await.unwrap().status.unwrap_or_default();
        status.updated_replicas == Some(3)
            && status.available_replicas == Some(3)
            && status.replicas == Some(3)
    })
    .await;
    // The Deployment reports completion before the EndpointSlice controller has taken the
    // terminating pods out (on a real cluster too): a careful client waits for the endpoints.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let of_service = ListParams::default().labels("kubernetes.io/service-name=docs");
    eventually("the Service's ready endpoints to be the 3 new pods", || async {
        let ready: Vec<String> = slices
            .list(&of_service)
            .await
            .unwrap()
            .items
            .into_iter()
            .flat_map(|s| s.endpoints.unwrap_or_default())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .filter_map(|e| e.target_ref.and_then(|t| t.name))
            .collect();
        ready.len() == 3 && ready.iter().all(|pod| !old_pods.contains(pod))
    })
    .await;
    let report = agents::run(load(format!("http://{cluster_ip}:80"), AgentEra::Stateless)).await.unwrap();
    assert_eq!(report.by_server_version.len(), 3, "{report:?}");
    assert!(
        report.by_server_version.keys().all(|pod| !old_pods.contains(pod)),
        "old pods still serve: {report:?}"
    );
}
