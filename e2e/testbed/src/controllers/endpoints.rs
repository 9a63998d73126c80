//! The EndpointSlice controller: one slice per Service with a selector, listing the matching
//! pods that have an IP, with the `ready`, `serving` and `terminating` conditions kube-proxy and
//! clients read.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};

use crate::{
    resources::ResourceType,
    selectors::{FieldSelector, LabelSelector},
    store::Store,
};

const RESYNC: Duration = Duration::from_millis(500);

pub async fn run(store: Arc<Store>) {
    let (Some(services), Some(pods), Some(slices)) = (
        store.resolve("", "v1", "services"),
        store.resolve("", "v1", "pods"),
        store.resolve("discovery.k8s.io", "v1", "endpointslices"),
    ) else {
        return;
    };
    let Ok((_, mut events)) = store.watch_from(store.resource_version()) else { return };
    loop {
        reconcile(&store, &services, &pods, &slices);
        let _ = tokio::time::timeout(RESYNC, async {
            while let Ok(event) = events.recv().await {
                if event.resource == services.key() || event.resource == pods.key() {
                    return;
                }
            }
        })
        .await;
    }
}

fn pod_condition(pod: &Value, kind: &str) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// The container port a Service port's `targetPort` names in `pod` (a number is itself).
fn target_port(port: &Value, pod: &Value) -> Option<i64> {
    let target = port.get("targetPort").unwrap_or(&port["port"]);
    match target {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => pod["spec"]["containers"].as_array()?.iter().find_map(|c| {
            c["ports"].as_array()?.iter().find(|p| p["name"] == name.as_str())?["containerPort"].as_i64()
        }),
        _ => port["port"].as_i64(),
    }
}

fn reconcile(store: &Store, services: &ResourceType, pods: &ResourceType, slices: &ResourceType) {
    let all =
        |rt: &ResourceType| store.list(rt, None, &LabelSelector::default(), &FieldSelector::default()).0;
    let all_pods = all(pods);
    for service in all(services) {
        let Some(selector) = service["spec"]["selector"].as_object().filter(|s| !s.is_empty()) else {
            continue;
        };
        let namespace = service["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = service["metadata"]["name"].as_str().unwrap_or_default();
        let members: Vec<&Value> = all_pods
            .iter()
            .filter(|p| p["metadata"]["namespace"] == namespace && p["status"]["podIP"].is_string())
            .filter(|p| selector.iter().all(|(k, v)| &p["metadata"]["labels"][k] == v))
            .collect();
        let service_ports = service["spec"]["ports"].as_array().cloned().unwrap_or_default();
        let first = members.first();
        let ports: Vec<Value> = service_ports
            .iter()
            .map(|p| {
                json!({"name": p["name"].as_str().unwrap_or_default(), "protocol": p["protocol"].as_str().unwrap_or("TCP"),
                       "port": first.and_then(|pod| target_port(p, pod)).or_else(|| p["port"].as_i64())})
            })
            .collect();
        let endpoints: Vec<Value> = members
            .iter()
            .map(|pod| {
                let terminating = pod["metadata"].get("deletionTimestamp").is_some();
                let ready = pod_condition(pod, "Ready");
                json!({
                    "addresses": [pod["status"]["podIP"]],
                    "conditions": {"ready": ready && !terminating, "serving": ready, "terminating": terminating},
                    "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
                    "nodeName": "testbed",
                })
            })
            .collect();
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-testbed"), "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                                              "uid": service["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        });
        let slice_name = format!("{name}-testbed");
        match store.get(slices, namespace, &slice_name) {
            Ok(current) => {
                if current["endpoints"] != slice["endpoints"] || current["ports"] != slice["ports"] {
                    let _ = store.modify(slices, namespace, &slice_name, None, false, |current| {
                        let mut next = current.clone();
                        next["endpoints"] = slice["endpoints"].clone();
                        next["ports"] = slice["ports"].clone();
                        Ok(next)
                    });
                }
            }
            Err(_) => {
                let _ = store.create(slices, namespace, slice, false);
            }
        }
    }
}
