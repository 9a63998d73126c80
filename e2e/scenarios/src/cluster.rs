#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]
//! The cluster the scenarios run on: a real Kubernetes API server named by `E2E_KUBECONFIG`
//! (`hack/test.sh` starts the local one, `hack/cluster.sh`; `hack/kind-e2e.sh` a kind cluster).
//!
//! The tests talk only to the API server. Everything that talks to pods runs in the cluster:
//! the operator (the Helm chart, installed by `hack/e2e-install.sh`), Prometheus
//! (`e2e/kind/prometheus.yaml`) and the agents (a pod per run, its report read from its log).
//! Settings:
//!
//! - `E2E_KUBECONFIG`: the cluster.
//! - `E2E_PROMETHEUS_URL`: Prometheus as the operator reaches it in the cluster.
//! - `E2E_PROMETHEUS_NAMESPACE` (default `mcp-e2e`): where its Deployment `prometheus` runs
//!   (a scenario scales it to 0 and back).
//! - `E2E_OPERATOR_NAMESPACE` (default `mcp-rollout-system`), `E2E_OPERATOR_DEPLOYMENT`
//!   (`mcp-rollout`): where the chart installed the operator.
//! - `E2E_AGENTS_IMAGE` (default `mcp-agents:e2e`): an image holding `mcp-agents`.
//! - `MCP_CLUSTER_DIR`: set when the cluster is the local one (`hack/cluster.sh`): scenarios
//!   that restart its components or read its audit log need it, and skip without it.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{Namespace, Pod},
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use mcp_fixture::agents::{AgentsConfig, Report};
use serde_json::json;

/// A real cluster's coordinates, from the environment.
#[derive(Clone, Debug)]
pub struct RealCluster {
    pub kubeconfig: PathBuf,
    pub prometheus_url: String,
    pub prometheus_namespace: String,
    pub operator_namespace: String,
    pub operator_deployment: String,
    pub agents_image: String,
    /// The local cluster's directory (`hack/cluster.sh`), when it is that cluster.
    pub local_dir: Option<PathBuf>,
}

const OPERATOR_PORT: u16 = 8080;
/// The operator's leader Lease, in its namespace (the chart's `leaderElection.leaseName`).
pub const LEASE: &str = "mcp-rollout-operator";

impl RealCluster {
    pub fn from_env() -> Self {
        let kubeconfig = PathBuf::from(std::env::var_os("E2E_KUBECONFIG").expect(
            "E2E_KUBECONFIG is not set: the scenarios run on a real cluster. `hack/test.sh` starts \
             the local one (hack/cluster.sh) and sets it; or point it at yours and run hack/e2e-install.sh",
        ));
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let prometheus_url = std::env::var("E2E_PROMETHEUS_URL").expect(
            "E2E_PROMETHEUS_URL: the in-cluster Prometheus the operator queries (hack/e2e-install.sh prints it)",
        );
        Self {
            kubeconfig,
            prometheus_url,
            prometheus_namespace: var("E2E_PROMETHEUS_NAMESPACE", "mcp-e2e"),
            operator_namespace: var("E2E_OPERATOR_NAMESPACE", "mcp-rollout-system"),
            operator_deployment: var("E2E_OPERATOR_DEPLOYMENT", "mcp-rollout"),
            agents_image: var("E2E_AGENTS_IMAGE", "mcp-agents:e2e"),
            local_dir: std::env::var_os("MCP_CLUSTER_DIR").map(PathBuf::from),
        }
    }

    pub async fn client(&self) -> Client {
        Client::try_from(self.config().await).unwrap()
    }

    /// A client that does not retry 429, 503 and 504 answers, as kube's does by default: to
    /// see the API server's own answer (an eviction a budget refuses is retried until the pod
    /// is gone otherwise — a retry that lands once it is terminating even "succeeds").
    pub async fn client_without_retries(&self) -> Client {
        let mut config = self.config().await;
        config.default_retry = false;
        Client::try_from(config).unwrap()
    }

    async fn config(&self) -> Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap()
    }

    /// A namespace of the scenario's own, so scenarios share the cluster side by side.
    pub async fn create_namespace(&self, client: &Client) -> String {
        let name = format!("e2e-{:08x}", fastrand::u32(..));
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"mcprollout.dev/e2e": "true"}}}),
        )
        .unwrap();
        namespaces.create(&PostParams::default(), &namespace).await.unwrap();
        // Pods need the namespace's default ServiceAccount, which a controller creates.
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        crate::eventually("the namespace's default ServiceAccount", Duration::from_secs(60), || async {
            accounts.get_opt("default").await.ok().flatten().is_some()
        })
        .await;
        name
    }

    fn operator_pods(&self, client: &Client) -> Api<Pod> {
        Api::namespaced(client.clone(), &self.operator_namespace)
    }

    fn operator_selector() -> ListParams {
        ListParams::default().labels("app.kubernetes.io/name=mcp-rollout")
    }

    /// Waits for the chart's operator Deployment to have every replica available.
    pub async fn wait_operator(&self, client: &Client) {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &self.operator_namespace);
        crate::eventually("the operator Deployment available", Duration::from_secs(180), || async {
            deployments.get(&self.operator_deployment).await.ok().is_some_and(|d| {
                let want = d.spec.replicas.unwrap_or(1);
                d.status.and_then(|s| s.available_replicas).unwrap_or(0) >= want
            })
        })
        .await;
    }

    /// The pod holding the operator's Lease (its identity is the pod name).
    pub async fn leader(&self, client: &Client) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &self.operator_namespace);
        leases.get_opt(LEASE).await.ok().flatten()?.spec?.holder_identity
    }

    /// SIGKILLs the leading operator's container, as the kernel's OOM killer or a crash would:
    /// no shutdown, no Lease release; the kubelet restarts it. On the local cluster through
    /// containerd (`hack/cluster.sh kill-container`); elsewhere its pod is deleted with grace 0.
    pub async fn kill_operator(&self, client: &Client) -> String {
        let leader = self.leader(client).await.expect("an operator holds the Lease");
        self.kill_container(client, &self.operator_namespace, &leader, "operator").await;
        leader
    }

    /// SIGKILL of one container through containerd (`hack/cluster.sh kill-container`): no
    /// graceful shutdown; the kubelet restarts it in the same pod. Elsewhere the pod is
    /// deleted with grace 0.
    pub async fn kill_container(&self, client: &Client, namespace: &str, pod: &str, container: &str) {
        match &self.local_dir {
            Some(dir) => {
                let status = Command::new(crate::workspace().join("hack/cluster.sh"))
                    .env("MCP_CLUSTER_DIR", dir)
                    .args(["kill-container", namespace, pod, container])
                    .status()
                    .unwrap();
                assert!(status.success(), "hack/cluster.sh kill-container failed");
            }
            None => {
                let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
                let _ = pods.delete(pod, &DeleteParams::default().grace_period(0)).await;
            }
        }
    }

    /// Cuts one operator pod off from the API server: its packets to the `kubernetes`
    /// Service dropped in its own network namespace (`hack/cluster.sh partition`), so it
    /// neither reaches nor hears from it while the rest of the cluster does. Healed when the
    /// returned guard is dropped (or `heal`ed); `None` when the cluster is not the local one.
    pub async fn partition_operator(&self, client: &Client, pod: &str) -> Option<Partition> {
        let dir = self.local_dir.clone()?;
        let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
        let service = services.get("kubernetes").await.unwrap();
        let spec = service.spec.unwrap();
        let target = format!("{}:{}", spec.cluster_ip.unwrap(), spec.ports.unwrap()[0].port);
        let partition = Partition {
            dir,
            args: vec![self.operator_namespace.clone(), pod.to_owned(), "operator".into(), target],
        };
        assert!(partition.run("on"), "hack/cluster.sh partition on failed");
        Some(partition)
    }

    /// Deletes the leading operator's pod gracefully (SIGTERM): it releases its Lease.
    pub async fn terminate_leader(&self, client: &Client) -> String {
        let leader = self.leader(client).await.expect("an operator holds the Lease");
        self.operator_pods(client).delete(&leader, &DeleteParams::default()).await.unwrap();
        leader
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

    /// The operator pods' logs (for a failing test's output).
    pub async fn operator_logs(&self, client: &Client, tail: i64) -> String {
        let pods = self.operator_pods(client);
        let Ok(list) = pods.list(&Self::operator_selector()).await else { return String::new() };
        let mut out = String::new();
        for pod in list {
            let params = LogParams { tail_lines: Some(tail), ..LogParams::default() };
            let log = pods.logs(&pod.name_any(), &params).await.unwrap_or_default();
            out.push_str(&format!("--- operator pod {} ---\n{log}\n", pod.name_any()));
        }
        out
    }

    /// A GET on a ready operator pod's metrics port, through the API server's pod proxy.
    /// `leader`: the Lease holder's (the one with the rollouts' metrics).
    pub async fn operator_get(&self, client: &Client, path: &str) -> String {
        let leader = self.leader(client).await;
        let pods = self.operator_pods(client).list(&Self::operator_selector()).await.unwrap();
        let ready = |p: &&Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        let pod = pods
            .items
            .iter()
            .filter(ready)
            .find(|p| leader.as_deref().is_none_or(|l| p.name_any() == l))
            .expect("a ready operator pod");
        let uri = format!(
            "/api/v1/namespaces/{}/pods/{}:{OPERATOR_PORT}/proxy{path}",
            self.operator_namespace,
            pod.name_any()
        );
        let request = http::Request::get(uri).body(Vec::new()).unwrap();
        client.request_text(request).await.unwrap()
    }

    /// Scales the in-cluster Prometheus to `replicas` and waits until that many run.
    pub async fn scale_prometheus(&self, client: &Client, replicas: i32) {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &self.prometheus_namespace);
        let patch = json!({"spec": {"replicas": replicas}});
        deployments.patch_scale("prometheus", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.prometheus_namespace);
        crate::eventually("Prometheus scaled", Duration::from_secs(120), || async {
            let list = pods.list(&ListParams::default().labels("app=prometheus")).await.unwrap();
            let running = list
                .items
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            i32::try_from(list.items.len()).unwrap() == replicas
                && i32::try_from(running).unwrap() == replicas
        })
        .await;
    }

    /// Restarts one of the local cluster's components (`hack/cluster.sh restart`); `None` when
    /// the cluster is not the local one.
    pub fn restart_component(&self, component: &str) -> Option<Duration> {
        let dir = self.local_dir.as_ref()?;
        let started = Instant::now();
        let status = Command::new(crate::workspace().join("hack/cluster.sh"))
            .env("MCP_CLUSTER_DIR", dir)
            .args(["restart", component])
            .status()
            .unwrap();
        assert!(status.success(), "hack/cluster.sh restart {component} failed");
        Some(started.elapsed())
    }

    /// The endpoint addresses kube-proxy's rules send a Service's traffic to (its
    /// `iptables-save -t nat`, read in the local cluster's network namespace through
    /// `hack/cluster.sh exec`); `None` when the cluster is not the local one. An EndpointSlice
    /// that no longer lists a pod is not yet a data plane that stops sending to it: kube-proxy
    /// syncs its rules after it (a second or more on a busy machine).
    pub fn proxied_endpoints(&self, namespace: &str, service: &str) -> Option<BTreeSet<String>> {
        let dir = self.local_dir.as_ref()?;
        let output = Command::new(crate::workspace().join("hack/cluster.sh"))
            .env("MCP_CLUSTER_DIR", dir)
            .args(["exec", "--", "iptables-save", "-t", "nat"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "iptables-save in the cluster: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(service_endpoints_in_rules(&String::from_utf8_lossy(&output.stdout), namespace, service))
    }

    /// Runs the agents in a pod of `namespace` and returns their report.
    pub async fn run_agents(&self, client: Client, namespace: &str, mut config: AgentsConfig) -> Report {
        config.allow_remote_target = true;
        let name = format!("e2e-agents-{:08x}", fastrand::u32(..));
        let mut args = config.to_args();
        args.extend(["--json".to_owned(), "-".to_owned()]);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "e2e-agents"}},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "agents",
                    "image": self.agents_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/usr/local/bin/mcp-agents"],
                    "args": args,
                }]
            }
        }))
        .unwrap();
        let pods: Api<Pod> = Api::namespaced(client, namespace);
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

/// A pod cut off from the API server (`RealCluster::partition_operator`); dropping it heals.
pub struct Partition {
    dir: PathBuf,
    args: Vec<String>,
}

impl Partition {
    fn run(&self, mode: &str) -> bool {
        Command::new(crate::workspace().join("hack/cluster.sh"))
            .env("MCP_CLUSTER_DIR", &self.dir)
            .arg("partition")
            .args(&self.args)
            .arg(mode)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Lets the pod's packets through again.
    pub fn heal(self) {}
}

impl Drop for Partition {
    // No panic here: this runs while a failing test unwinds too.
    fn drop(&mut self) {
        if !self.run("off") {
            eprintln!("hack/cluster.sh partition off failed: {:?} may still be cut off", self.args);
        }
    }
}

/// The endpoint addresses in kube-proxy's iptables rules for one Service: its service chains
/// jump to each endpoint under a comment `"<namespace>/<service>[:<port name>] -> <ip>:<port>"`.
fn service_endpoints_in_rules(rules: &str, namespace: &str, service: &str) -> BTreeSet<String> {
    let name = format!("--comment \"{namespace}/{service}");
    rules
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(&name)? + name.len()..];
            // The next character ends the Service's name: a port name or the arrow.
            let rest = rest.strip_prefix(':').map_or(Some(rest), |r| r.find(' ').map(|i| &r[i..]))?;
            let target = rest.strip_prefix(" -> ")?;
            let end = target.find('"')?;
            let address = &target[..end];
            Some(address.rsplit_once(':').map_or(address, |(ip, _)| ip).to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::service_endpoints_in_rules;

    #[test]
    fn a_services_endpoints_are_read_from_its_chains_and_no_other() {
        let rules = r#"
-A KUBE-SEP-AAA -s 10.244.0.7/32 -m comment --comment "e2e-1/docs:http" -j KUBE-MARK-MASQ
-A KUBE-SVC-X -m comment --comment "e2e-1/docs:http -> 10.244.0.7:8080" -m statistic --mode random --probability 0.5 -j KUBE-SEP-AAA
-A KUBE-SVC-X -m comment --comment "e2e-1/docs:http -> 10.244.0.8:8080" -j KUBE-SEP-BBB
-A KUBE-SVC-Y -m comment --comment "e2e-1/docs-preview:http -> 10.244.0.9:8080" -j KUBE-SEP-CCC
-A KUBE-SVC-Z -m comment --comment "e2e-1/docs -> 10.244.0.10:8080" -j KUBE-SEP-DDD
-A KUBE-SVC-W -m comment --comment "e2e-2/docs:http -> 10.244.0.11:8080" -j KUBE-SEP-EEE
"#;
        let found: Vec<String> = service_endpoints_in_rules(rules, "e2e-1", "docs").into_iter().collect();
        assert_eq!(found, ["10.244.0.10", "10.244.0.7", "10.244.0.8"]);
    }
}
