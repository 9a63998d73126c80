#![allow(clippy::unwrap_used)]
//! The kubelet: pods of real mcp-fixture processes on their own loopback IPs, readiness probes,
//! readiness gates, crash loops, and graceful termination with preStop.

mod support;

use support::{client_for, connect_with_kubelet as connect, eventually, images};

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use testbed::{ControlPlane, Options};

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind).map(|c| c.status.clone())
}

fn fixture_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "fixture"}},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "readinessGates": [{"conditionType": "mcprollout.dev/in-rotation"}],
            "containers": [{
                "name": "server", "image": "mcp-fixture:v2-compatible",
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [{"name": "SERVER_VERSION", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                "lifecycle": {"preStop": {"sleep": {"seconds": 1}}}
            }]
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn a_fixture_pod_runs_on_its_own_ip_and_is_ready_only_with_its_gate() {
    let (_plane, client) = connect().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &fixture_pod("fx")).await.unwrap();
    eventually("containers ready", || async {
        pods.get("fx").await.ok().and_then(|p| condition(&p, "ContainersReady")).as_deref() == Some("True")
    })
    .await;
    let pod = pods.get("fx").await.unwrap();
    let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert!(ip.starts_with("127.1."), "{ip}");
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("False"), "the readiness gate is not set yet");

    // The real process answers on the pod IP, with the downward-API env it was given.
    let health = reqwest::get(format!("http://{ip}:8080/healthz")).await.unwrap();
    assert!(health.status().is_success());
    assert_eq!(health.headers()["x-server-version"], "fx");

    let gate = json!({"status": {"conditions": [{"type": "mcprollout.dev/in-rotation", "status": "True"}]}});
    pods.patch_status("fx", &PatchParams::default(), &Patch::Strategic(gate)).await.unwrap();
    eventually("ready", || async {
        pods.get("fx").await.ok().and_then(|p| condition(&p, "Ready")).as_deref() == Some("True")
    })
    .await;
    let gate_off =
        json!({"status": {"conditions": [{"type": "mcprollout.dev/in-rotation", "status": "False"}]}});
    pods.patch_status("fx", &PatchParams::default(), &Patch::Strategic(gate_off)).await.unwrap();
    eventually("out of rotation", || async {
        pods.get("fx").await.ok().and_then(|p| condition(&p, "Ready")).as_deref() == Some("False")
    })
    .await;
    // Out of rotation is not killed: the process still serves.
    assert!(reqwest::get(format!("http://{ip}:8080/healthz")).await.unwrap().status().is_success());

    // Deletion: preStop (1 s), then SIGTERM; the pod is gone soon after, its process too.
    let started = std::time::Instant::now();
    pods.delete("fx", &DeleteParams::default()).await.unwrap();
    eventually("the pod to go", || async { pods.get("fx").await.is_err() }).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "preStop sleep was skipped");
    assert!(started.elapsed() < Duration::from_secs(5), "SIGTERM did not end it before the grace period");
    assert!(reqwest::get(format!("http://{ip}:8080/healthz")).await.is_err());
}

#[tokio::test]
async fn a_crashing_container_ends_in_crash_loop_back_off() {
    let (_plane, client) = connect().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "crasher"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1", "args": ["-c", "exit 3"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("two restarts in back-off", || async {
        let Ok(pod) = pods.get("crasher").await else { return false };
        let Some(status) = pod.status.and_then(|s| s.container_statuses).and_then(|s| s.into_iter().next())
        else {
            return false;
        };
        let waiting = status.state.and_then(|s| s.waiting).and_then(|w| w.reason);
        let exit = status.last_state.and_then(|s| s.terminated).map(|t| t.exit_code);
        status.restart_count >= 2 && waiting.as_deref() == Some("CrashLoopBackOff") && exit == Some(3)
    })
    .await;
    let _ = pods
        .delete("crasher", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() })
        .await;
    let _ = ResourceExt::name_any(&pods.get("crasher").await.unwrap_or_default());
}

#[tokio::test]
async fn endpoint_slices_follow_pod_readiness_and_termination() {
    let (_plane, client) = connect().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(client.clone(), "default");
    let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "fixture"},
        "spec": {"selector": {"app": "fixture"}, "ports": [{"name": "mcp", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &service).await.unwrap();
    pods.create(&PostParams::default(), &fixture_pod("fx")).await.unwrap();
    let endpoint = |ready: bool| {
        let slices = slices.clone();
        async move {
            let list = slices
                .list(&kube::api::ListParams::default().labels("kubernetes.io/service-name=fixture"))
                .await
                .unwrap();
            let Some(slice) = list.items.first() else { return false };
            let port_ok = slice.ports.as_ref().is_some_and(|p| p.first().and_then(|p| p.port) == Some(8080));
            port_ok
                && slice
                    .endpoints
                    .as_ref()
                    .and_then(|e| e.first())
                    .is_some_and(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(ready))
        }
    };
    eventually("a not-ready endpoint (gate unset)", || endpoint(false)).await;
    let gate = json!({"status": {"conditions": [{"type": "mcprollout.dev/in-rotation", "status": "True"}]}});
    pods.patch_status("fx", &PatchParams::default(), &Patch::Strategic(gate)).await.unwrap();
    eventually("a ready endpoint", || endpoint(true)).await;
    pods.delete("fx", &DeleteParams::default()).await.unwrap();
    eventually("a terminating endpoint", || async {
        let list = slices.list(&kube::api::ListParams::default()).await.unwrap();
        list.items
            .first()
            .and_then(|s| s.endpoints.as_ref().and_then(|e| e.first()))
            .and_then(|e| e.conditions.clone())
            .is_some_and(|c| c.terminating == Some(true) && c.ready == Some(false) && c.serving == Some(true))
    })
    .await;
}

async fn serving_pod(client: &reqwest::Client, url: &str) -> String {
    try_serving_pod(client, url).await.unwrap()
}

/// The pod that answered, or `None` when no endpoint was ready to take the connection.
async fn try_serving_pod(client: &reqwest::Client, url: &str) -> Option<String> {
    let response = client.get(url).send().await.ok()?;
    Some(response.headers()["x-server-version"].to_str().ok()?.to_owned())
}

#[tokio::test]
async fn the_cluster_ip_spreads_new_connections_over_ready_pods_and_keeps_established_ones() {
    let (_plane, client) = connect().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "fixture"},
        "spec": {"selector": {"app": "fixture"}, "ports": [{"name": "mcp", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    let service = services.create(&PostParams::default(), &service).await.unwrap();
    let cluster_ip = service.spec.unwrap().cluster_ip.unwrap();
    assert!(cluster_ip.starts_with("127.2."), "{cluster_ip}");
    let gate = json!({"status": {"conditions": [{"type": "mcprollout.dev/in-rotation", "status": "True"}]}});
    for name in ["fx-a", "fx-b"] {
        pods.create(&PostParams::default(), &fixture_pod(name)).await.unwrap();
        pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(gate.clone())).await.unwrap();
    }
    let url = format!("http://{cluster_ip}:80/healthz");
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    eventually("both pods behind the cluster IP", || {
        let (fresh, url, seen) = (fresh.clone(), url.clone(), &seen);
        async move {
            if let Ok(response) = fresh.get(&url).send().await {
                let pod = response.headers()["x-server-version"].to_str().unwrap().to_owned();
                seen.lock().unwrap().insert(pod);
            }
            seen.lock().unwrap().len() == 2
        }
    })
    .await;

    // An established (kept-alive) connection stays on its pod when that pod leaves rotation.
    let kept = reqwest::Client::builder().pool_max_idle_per_host(1).pool_idle_timeout(None).build().unwrap();
    let pinned = serving_pod(&kept, &url).await;
    let other = if pinned == "fx-a" { "fx-b" } else { "fx-a" };
    let gate_off =
        json!({"status": {"conditions": [{"type": "mcprollout.dev/in-rotation", "status": "False"}]}});
    pods.patch_status(&pinned, &PatchParams::default(), &Patch::Strategic(gate_off)).await.unwrap();
    // New connections avoid it once its endpoint is not ready...
    eventually("new connections only reach the pod in rotation", || {
        let (fresh, url) = (fresh.clone(), url.clone());
        async move {
            let mut answers = Vec::new();
            for _ in 0..8 {
                answers.push(try_serving_pod(&fresh, &url).await);
            }
            answers.iter().all(|a| a.as_deref() == Some(other))
        }
    })
    .await;
    // ...while the established connection still reaches it.
    assert_eq!(serving_pod(&kept, &url).await, pinned);
}

#[tokio::test]
async fn prometheus_scrapes_annotated_pods_with_their_labels() {
    let dir = std::env::temp_dir().join(format!("testbed-prometheus-{}", std::process::id()));
    let options = Options { images: Some(images()), prometheus_dir: Some(dir.clone()) };
    let plane = ControlPlane::start_with("127.0.0.1:0".parse().unwrap(), options).await.unwrap();
    let prometheus = plane.prometheus.as_ref().unwrap().url.clone();
    let pods: Api<Pod> = Api::namespaced(client_for(&plane).await, "default");
    let mut pod = fixture_pod("scraped");
    pod.metadata.annotations = Some(
        [
            ("prometheus.io/scrape", "true"),
            ("prometheus.io/port", "8080"),
            ("prometheus.io/path", "/metrics"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into(),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let query = format!("{prometheus}/api/v1/query?query=up%7Bpod%3D%22scraped%22%7D");
    eventually("Prometheus to scrape the pod", || {
        let query = query.clone();
        async move {
            let Ok(response) = reqwest::get(&query).await else { return false };
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let result = &body["data"]["result"][0];
            result["value"][1] == "1"
                && result["metric"]["namespace"] == "default"
                && result["metric"]["app"] == "fixture"
        }
    })
    .await;
    drop(plane);
    assert!(!dir.exists(), "the Prometheus data directory is removed with it");
}
