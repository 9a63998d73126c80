#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]
//! The same scenarios on a real cluster (kind, k3d, ...) when `E2E_KUBECONFIG` points at one.
//!
//! There, unlike on the test bed, pod and cluster IPs are not reachable from the machine running
//! the tests, so everything that talks to pods runs inside the cluster: the operator (the Helm
//! chart, installed by `hack/kind-e2e.sh`), Prometheus (`e2e/kind/prometheus.yaml`) and the
//! agents (a pod per run, its report read from its log). The tests themselves only talk to the
//! API server. Settings:
//!
//! - `E2E_KUBECONFIG`: the cluster.
//! - `E2E_PROMETHEUS_URL`: Prometheus as the operator reaches it in the cluster
//!   (`hack/kind-e2e.sh`: `http://prometheus.mcp-e2e.svc:9090`).
//! - `E2E_OPERATOR_NAMESPACE` (default `mcp-rollout-system`), `E2E_OPERATOR_DEPLOYMENT`
//!   (`mcp-rollout`): where the chart installed the operator.
//! - `E2E_AGENTS_IMAGE` (default `mcp-fixture:v1`): an image holding `mcp-agents`.
//!
//! Never run on this project's CI machines (no cluster there): `hack/kind-e2e.sh` and
//! `.github/workflows/kind-e2e.yaml` run it.

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, ListParams, LogParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use mcp_fixture::agents::{AgentsConfig, Report};
use mcp_rollout::api::{McpRollout, labels};
use serde_json::json;

use crate::NAMESPACE;

/// A real cluster's coordinates, from the environment.
#[derive(Clone, Debug)]
pub struct RealCluster {
    pub kubeconfig: PathBuf,
    pub prometheus_url: String,
    pub operator_namespace: String,
    pub operator_deployment: String,
    pub agents_image: String,
}

const OPERATOR_PORT: u16 = 8080;

impl RealCluster {
    /// `Some` when `E2E_KUBECONFIG` is set.
    pub fn from_env() -> Option<Self> {
        let kubeconfig = PathBuf::from(std::env::var_os("E2E_KUBECONFIG")?);
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let prometheus_url = std::env::var("E2E_PROMETHEUS_URL").expect(
            "E2E_PROMETHEUS_URL: the in-cluster Prometheus the operator queries (hack/kind-e2e.sh sets it)",
        );
        Some(Self {
            kubeconfig,
            prometheus_url,
            operator_namespace: var("E2E_OPERATOR_NAMESPACE", "mcp-rollout-system"),
            operator_deployment: var("E2E_OPERATOR_DEPLOYMENT", "mcp-rollout"),
            agents_image: var("E2E_AGENTS_IMAGE", "mcp-fixture:v1"),
        })
    }

    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
        Client::try_from(config).unwrap()
    }

    /// Removes what an earlier scenario left in the test namespace: rollouts (and with them,
    /// by owner references, their Deployments and Services) and agent pods.
    pub async fn clean(&self, client: &Client) {
        let rollouts: Api<McpRollout> = Api::namespaced(client.clone(), NAMESPACE);
        let _ = rollouts.delete_collection(&DeleteParams::default(), &ListParams::default()).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        let _ = pods
            .delete_collection(&DeleteParams::default(), &ListParams::default().labels("app=e2e-agents"))
            .await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
        let owned = ListParams::default().labels(labels::ROLLOUT);
        crate::eventually("the previous scenario's rollouts gone", Duration::from_secs(180), || async {
            rollouts.list(&ListParams::default()).await.is_ok_and(|l| l.items.is_empty())
                && deployments.list(&owned).await.is_ok_and(|l| l.items.is_empty())
        })
        .await;
    }

    fn operator_pods(&self, client: &Client) -> Api<Pod> {
        Api::namespaced(client.clone(), &self.operator_namespace)
    }

    fn operator_selector() -> ListParams {
        ListParams::default().labels("app.kubernetes.io/name=mcp-rollout")
    }

    /// Waits for the chart's operator Deployment to be available.
    pub async fn wait_operator(&self, client: &Client) {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &self.operator_namespace);
        crate::eventually("the operator Deployment available", Duration::from_secs(120), || async {
            deployments
                .get(&self.operator_deployment)
                .await
                .ok()
                .and_then(|d| Some(d.status?.available_replicas? >= 1))
                .unwrap_or(false)
        })
        .await;
    }

    /// Deletes the operator's pods at once (grace 0): a node dying under it.
    pub async fn kill_operator(&self, client: &Client) {
        let pods = self.operator_pods(client);
        for pod in pods.list(&Self::operator_selector()).await.unwrap() {
            let _ = pods.delete(&pod.name_any(), &DeleteParams::default().grace_period(0)).await;
        }
    }

    /// Container restarts of the operator's pods.
    pub async fn operator_restarts(&self, client: &Client) -> i32 {
        let pods = self.operator_pods(client).list(&Self::operator_selector()).await.unwrap();
        pods.items
            .iter()
            .flat_map(|p| p.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default())
            .map(|c| c.restart_count)
            .sum()
    }

    /// A GET on a ready operator pod's metrics port, through the API server's pod proxy.
    pub async fn operator_get(&self, client: &Client, path: &str) -> String {
        let pods = self.operator_pods(client).list(&Self::operator_selector()).await.unwrap();
        let ready = pods
            .items
            .iter()
            .find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .expect("a ready operator pod");
        let uri = format!(
            "/api/v1/namespaces/{}/pods/{}:{OPERATOR_PORT}/proxy{path}",
            self.operator_namespace,
            ready.name_any()
        );
        let request = http::Request::get(uri).body(Vec::new()).unwrap();
        client.request_text(request).await.unwrap()
    }

    /// Runs the agents in a pod of the test namespace and returns their report.
    pub async fn run_agents(&self, client: Client, mut config: AgentsConfig) -> Report {
        config.allow_remote_target = true;
        let name = format!("e2e-agents-{:08x}", fastrand::u32(..));
        let mut args = config.to_args();
        args.extend(["--json".to_owned(), "-".to_owned()]);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "e2e-agents"}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "agents",
                    "image": self.agents_image,
                    "command": ["/usr/local/bin/mcp-agents"],
                    "args": args,
                }]
            }
        }))
        .unwrap();
        let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let limit = Duration::from_secs_f64(config.duration) + Duration::from_secs(180);
        crate::eventually("the agents pod to finish", limit, || async {
            let phase = pods.get(&name).await.ok().and_then(|p| p.status?.phase).unwrap_or_default();
            phase == "Succeeded" || phase == "Failed"
        })
        .await;
        let log = pods.logs(&name, &LogParams::default()).await.unwrap();
        let _ = pods.delete(&name, &DeleteParams::default()).await;
        let report = log
            .split("--- report ---")
            .nth(1)
            .unwrap_or_else(|| panic!("the agents pod printed no report:\n{log}"));
        serde_json::from_str(report.trim()).unwrap()
    }
}
