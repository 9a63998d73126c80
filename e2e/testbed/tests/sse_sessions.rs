#![allow(clippy::unwrap_used)]
//! Open SSE streams through the test bed are not cut where a real cluster would not cut them: a
//! pod taken out of rotation keeps serving its open stream through the Service, and a pod being
//! deleted serves it through preStop and SIGTERM, which the fixture handles by finishing its
//! open work.

mod support;

use support::{connect_with_kubelet, eventually};

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use mcp_fixture::client::{Era, StreamableClient};
use serde_json::json;
use testbed::ControlPlane;

fn pod(name: &str, pre_stop_seconds: u64) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "docs"}},
        "spec": {
            "terminationGracePeriodSeconds": 20,
            "readinessGates": [{"conditionType": "mcprollout.dev/in-rotation"}],
            "containers": [{
                "name": "server", "image": "mcp-fixture:v1",
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [{"name": "SERVER_VERSION", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                "lifecycle": {"preStop": {"sleep": {"seconds": pre_stop_seconds}}}
            }]
        }
    }))
    .unwrap()
}

fn gate(value: &str) -> Patch<serde_json::Value> {
    Patch::Strategic(
        json!({"status": {"conditions": [{"type": "mcprollout.dev/in-rotation", "status": value}]}}),
    )
}

struct Bed {
    _plane: ControlPlane,
    pods: Api<Pod>,
    url: String,
}

async fn bed_with_one_pod(pre_stop_seconds: u64) -> Bed {
    let (plane, client) = connect_with_kubelet().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client, "default");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "docs"},
        "spec": {"selector": {"app": "docs"}, "ports": [{"name": "mcp", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    let ip =
        services.create(&PostParams::default(), &service).await.unwrap().spec.unwrap().cluster_ip.unwrap();
    pods.create(&PostParams::default(), &pod("docs-0", pre_stop_seconds)).await.unwrap();
    pods.patch_status("docs-0", &PatchParams::default(), &gate("True")).await.unwrap();
    let url = format!("http://{ip}:80/mcp");
    eventually("the pod behind the service", || async {
        reqwest::get(url.replace("/mcp", "/healthz")).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    Bed { _plane: plane, pods, url }
}

/// A session over one kept-alive connection, and a long streamed call started on it.
async fn start_stream(
    url: &str,
    seconds: f64,
) -> tokio::task::JoinHandle<Result<mcp_fixture::client::Reply, String>> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(1).pool_idle_timeout(None).build().unwrap();
    let mut client = StreamableClient::new(http, url.to_owned(), Era::Handshake);
    client.connect().await.unwrap();
    let call = tokio::spawn(async move {
        client.call_tool("export_report", json!({"seconds": seconds}), true).await.map_err(|e| e.to_string())
    });
    // Let the stream begin before the pod's fate changes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_taken_out_of_rotation_keeps_serving_its_open_stream() {
    let bed = bed_with_one_pod(0).await;
    let stream = start_stream(&bed.url, 3.0).await;
    bed.pods.patch_status("docs-0", &PatchParams::default(), &gate("False")).await.unwrap();
    eventually("the pod out of rotation", || async {
        reqwest::get(bed.url.replace("/mcp", "/healthz")).await.is_err()
    })
    .await;
    let reply = tokio::time::timeout(Duration::from_secs(10), stream).await.unwrap().unwrap().unwrap();
    assert!(reply.progress_events > 0, "{reply:?}");
    assert_eq!(reply.server_version.as_deref(), Some("docs-0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_serves_its_open_stream_through_pre_stop_and_sigterm() {
    let bed = bed_with_one_pod(2).await;
    let stream = start_stream(&bed.url, 3.0).await;
    bed.pods.delete("docs-0", &kube::api::DeleteParams::default()).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(15), stream).await.unwrap().unwrap();
    let reply = reply.unwrap_or_else(|e| panic!("the stream was cut: {e}"));
    assert!(reply.progress_events > 0, "{reply:?}");
    assert_eq!(reply.server_version.as_deref(), Some("docs-0"));
    eventually("the pod to go after its stream ended", || async { bed.pods.get("docs-0").await.is_err() })
        .await;
}

/// The garbage collector deletes a pod whose owner went (a Deployment removed after its drain)
/// as any client does, with its grace period: the open stream completes. Before, the pod
/// vanished from the store at once and the kubelet SIGKILLed it mid-stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_collected_pod_serves_its_open_stream_through_sigterm() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let bed = bed_with_one_pod(0).await;
    let owners: Api<ConfigMap> = Api::namespaced(bed.pods.clone().into_client(), "default");
    let owner = owners
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap(),
        )
        .await
        .unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    let adopt = json!({"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
    ]}});
    bed.pods.patch("docs-0", &PatchParams::default(), &Patch::Merge(adopt)).await.unwrap();
    let stream = start_stream(&bed.url, 3.0).await;
    owners.delete("owner", &kube::api::DeleteParams::background()).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(15), stream).await.unwrap().unwrap();
    let reply = reply.unwrap_or_else(|e| panic!("the stream was cut: {e}"));
    assert!(reply.progress_events > 0, "{reply:?}");
    eventually("the collected pod to go after its stream ended", || async {
        bed.pods.get("docs-0").await.is_err()
    })
    .await;
}
