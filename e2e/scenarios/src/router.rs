//! The MCP session router on the cluster, as the scenarios see it: each replica's `/state` and
//! `/metrics` (and any pod's HTTP port) through the API server's pod proxy, and a recorder of
//! how new sessions split between revisions while each weight was in force.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, ResourceExt, api::ListParams};
use mcp_fixture::metrics::sample_sum;
use mcp_rollout::{api::labels, router::admin::RouterState};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::Bed;

/// The router's admin port.
pub const ADMIN_PORT: u16 = 9090;

/// An McpRollout of `mcp-fixture` routed through the MCP session router (two replicas, a
/// short idle timeout so the router's counts may end drains within a scenario), three replicas
/// and soaks long enough to count the split of new sessions at each step.
pub fn routed_rollout(name: &str, image: &str, env: &[(&str, &str)], prometheus: &str) -> Value {
    let mut rollout = crate::fixture_rollout(name, image, env, prometheus);
    rollout["spec"]["replicas"] = json!(3);
    rollout["spec"]["trafficRouting"] = json!({"mcpRouter": {"replicas": 2, "idleTimeout": "15s"}});
    rollout["spec"]["strategy"]["canary"]["steps"] = json!([
        {"setWeight": 5}, {"pause": {"duration": "15s"}},
        {"setWeight": 25}, {"pause": {"duration": "15s"}},
        {"setWeight": 50}, {"pause": {"duration": "15s"}},
        {"setWeight": 100}
    ]);
    rollout["spec"]["drain"] = json!({"min": "3s", "max": "40s"});
    rollout
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// A GET on a pod's port through the API server's pod proxy; `None` when it fails.
pub async fn pod_get(client: &Client, namespace: &str, pod: &str, port: u16, path: &str) -> Option<String> {
    let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}");
    let request = http::Request::get(uri).body(Vec::new()).ok()?;
    client.request_text(request).await.ok()
}

impl Bed {
    /// The rollout's ready router pods.
    pub async fn router_pods(&self, rollout: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels(&format!("{}={rollout}", labels::ROUTER));
        api.list(&params).await.unwrap().items.into_iter().filter(ready).collect()
    }

    /// Each ready router replica's `/state`, by pod name.
    pub async fn router_states(&self, rollout: &str) -> BTreeMap<String, RouterState> {
        let mut out = BTreeMap::new();
        for pod in self.router_pods(rollout).await {
            let name = pod.name_any();
            if let Some(text) = pod_get(&self.client, &self.namespace, &name, ADMIN_PORT, "/state").await
                && let Ok(state) = serde_json::from_str(&text)
            {
                out.insert(name, state);
            }
        }
        out
    }

    /// Each ready router replica's `/metrics`, by pod name.
    pub async fn router_metrics(&self, rollout: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for pod in self.router_pods(rollout).await {
            let name = pod.name_any();
            if let Some(text) = pod_get(&self.client, &self.namespace, &name, ADMIN_PORT, "/metrics").await {
                out.insert(name, text);
            }
        }
        out
    }

    /// Applies a router-routed rollout and waits until it is Healthy and every router replica
    /// its spec asks for has a table in force.
    pub async fn deploy_routed(&self, rollout: &Value) {
        let name = rollout["metadata"]["name"].as_str().expect("a rollout with a name");
        let replicas = rollout["spec"]["trafficRouting"]["mcpRouter"]["replicas"].as_u64().unwrap_or(2);
        self.apply(rollout).await;
        self.wait_healthy(name).await;
        self.wait_router(name, usize::try_from(replicas).unwrap_or(2)).await;
    }

    /// Waits until the rollout's router has `replicas` ready replicas with a table in force.
    pub async fn wait_router(&self, rollout: &str, replicas: usize) {
        crate::eventually("the router's replicas ready", Duration::from_secs(120), || async {
            self.router_states(rollout).await.values().filter(|s| !s.version.is_empty()).count() >= replicas
        })
        .await;
    }
}

/// New sessions per revision opened while a canary weight was in force on a replica.
#[derive(Clone, Debug, Default)]
pub struct Split {
    /// Canary weight → (sessions on the canary, sessions in all).
    pub by_weight: BTreeMap<u32, (f64, f64)>,
}

impl Split {
    /// The canary's share of the new sessions opened at `weight`, in percent, and how many.
    pub fn share(&self, weight: u32) -> Option<(f64, f64)> {
        let (canary, all) = self.by_weight.get(&weight)?;
        (*all > 0.0).then(|| (100.0 * canary / all, *all))
    }
}

/// Samples every router replica's weights and sessions-opened counters every 300 ms; the
/// sessions opened between two samples that saw the same weights are counted at that weight.
/// `canary`: the canary revision.
pub fn record_split(bed: &Bed, rollout: &str, canary: &str) -> (JoinHandle<()>, Arc<Mutex<Split>>) {
    let (client, namespace) = (bed.client.clone(), bed.namespace.clone());
    let (rollout, canary) = (rollout.to_owned(), canary.to_owned());
    let split = Arc::new(Mutex::new(Split::default()));
    let out = split.clone();
    let handle = tokio::spawn(async move {
        // Per replica: (canary weight, opened on the canary, opened in all) at the last sample.
        let mut last: BTreeMap<String, (u32, f64, f64)> = BTreeMap::new();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let params = ListParams::default().labels(&format!("{}={rollout}", labels::ROUTER));
        loop {
            let list = pods.list(&params).await.map(|l| l.items).unwrap_or_default();
            for pod in list.iter().filter(|p| ready(p)) {
                let name = pod.name_any();
                // State before metrics: a weight read before the counters is the one they
                // were counted under, or an older one (then the interval is dropped).
                let Some(state) = pod_get(&client, &namespace, &name, ADMIN_PORT, "/state").await else {
                    continue;
                };
                let Ok(state) = serde_json::from_str::<RouterState>(&state) else { continue };
                let Some(metrics) = pod_get(&client, &namespace, &name, ADMIN_PORT, "/metrics").await else {
                    continue;
                };
                let weight = state.weights.get(&canary).copied().unwrap_or(0);
                let on_canary = sample_sum(
                    &metrics,
                    "mcp_router_sessions_opened_total",
                    &[("revision", canary.as_str())],
                );
                let all = sample_sum(&metrics, "mcp_router_sessions_opened_total", &[]);
                if let Some((w, c, a)) = last.get(&name)
                    && *w == weight
                    && all >= *a
                {
                    let mut split = out.lock().unwrap();
                    let entry = split.by_weight.entry(weight).or_default();
                    entry.0 += on_canary - c;
                    entry.1 += all - a;
                }
                last.insert(name, (weight, on_canary, all));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    (handle, split)
}
