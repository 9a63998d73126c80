//! The end-to-end harness: whole rollouts on a real Kubernetes cluster (the local one
//! `hack/cluster.sh` builds from the upstream components, or any cluster `E2E_KUBECONFIG`
//! names), with the operator installed by `helm install` of `charts/mcp-rollout`, a real
//! Prometheus in the cluster, real `mcp-fixture` pods, and `mcp-agents` in a pod driving
//! traffic through the rollout's Service. Scenarios assert on what the agents experienced as
//! well as on objects, and every McpRollout status they see is read by Flux's kstatus library
//! too, which must agree with the phase the operator claims.
//!
//! Each scenario gets a namespace of its own (deleted when its [`Bed`] is dropped), so
//! scenarios share one cluster and run side by side.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod cluster;
pub mod kstatus;
pub mod router;

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use clap::Parser;
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Namespace, Pod, Secret, Service},
        discovery::v1::EndpointSlice,
        events::v1::Event,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use mcp_fixture::agents::{AgentEra, AgentsConfig, Report};
use mcp_rollout::api::{McpRollout, Phase, labels};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The directory of the workspace's built binaries. `kubectl-mcprollout` is built once per
/// test binary, so a scenario never runs a stale plugin (`cargo test -p e2e` does not rebuild
/// other packages' binaries by itself). The operator and the fixture run from their images.
pub fn bin_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
            let status = std::process::Command::new(env!("CARGO"))
                .current_dir(workspace())
                .args(["build", "--quiet", "-p", "mcp-rollout", "--bin", "kubectl-mcprollout"])
                .status()
                .unwrap();
            assert!(status.success(), "building kubectl-mcprollout failed");
            dir
        })
        .clone()
}

/// A scenario's place on the cluster: a namespace of its own, and the operator the chart runs.
pub struct Bed {
    pub real: cluster::RealCluster,
    pub client: Client,
    /// The scenario's namespace.
    pub namespace: String,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// Operator container restarts when the bed started.
    restarts_at_start: i32,
    /// Every distinct McpRollout object the scenario saw, for the kstatus check at the end.
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let client = self.client.clone();
        let real = self.real.clone();
        let namespace = self.namespace.clone();
        // Drop cannot await; the scenarios run on multi-threaded runtimes, where a worker may
        // block on the runtime for the last requests.
        let logs = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let logs = if panicking { real.operator_logs(&client, 80).await } else { String::new() };
                let namespaces: Api<Namespace> = Api::all(client);
                if std::env::var_os("E2E_KEEP").is_none() {
                    let _ = namespaces.delete(&namespace, &DeleteParams::background()).await;
                }
                logs
            })
        });
        // The scenario's files go whatever its outcome (a failed scenario left its directory
        // behind before), unless asked to keep them.
        let keep = std::env::var_os("E2E_KEEP").is_some();
        if !keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if panicking {
            eprintln!("{logs}");
            eprintln!("(scenario namespace {}; E2E_KEEP=1 keeps it and its files)", self.namespace);
            return;
        }
        let seen = self.seen.lock().unwrap().clone();
        if let Err(disagreement) = kstatus::check(&seen) {
            panic!("{disagreement}");
        }
        if keep {
            eprintln!("kept namespace {} and {}", self.namespace, self.dir.display());
        }
    }
}

impl Bed {
    /// A namespace of the scenario's own on the cluster, the CRDs, and the operator available.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("mcp-rollout-e2e-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let real = cluster::RealCluster::from_env();
        let client = real.client().await;
        let namespace = real.create_namespace(&client).await;
        let kubeconfig = real.kubeconfig.clone();
        let mut bed =
            Self { real, client, namespace, dir, kubeconfig, restarts_at_start: 0, seen: Arc::default() };
        bed.apply_crds().await;
        bed.real.wait_operator(&bed.client).await;
        bed.restarts_at_start = bed.real.operator_restarts(&bed.client).await;
        bed
    }

    async fn apply_crds(&self) {
        self.apply_crd_dir(&workspace().join("crds")).await;
        let rollouts = self.rollouts();
        eventually("the McpRollout API", Duration::from_secs(20), || async {
            rollouts.list(&ListParams::default()).await.is_ok()
        })
        .await;
    }

    /// Applies every CRD in a directory (server-side, as `kubectl apply --server-side`).
    pub async fn apply_crd_dir(&self, dir: &Path) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for document in serde_yaml::Deserializer::from_str(&text) {
                let crd: Value = serde::Deserialize::deserialize(document).unwrap();
                if crd.is_null() || crd["kind"] != "CustomResourceDefinition" {
                    continue;
                }
                let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
                let params = PatchParams::apply("e2e").force();
                crds.patch(&name, &params, &Patch::Apply(&crd)).await.unwrap();
            }
        }
    }

    /// The Gateway API HTTPRoute API in the scenario's namespace, once served. The CRDs are the
    /// upstream ones, read from the `sigs.k8s.io/gateway-api` Go module (`e2e/cluster/go.mod`)
    /// at test time and never committed.
    pub async fn http_routes(&self) -> Api<DynamicObject> {
        self.apply_crd_dir(&gateway_api_crds()).await;
        let routes = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &mcp_rollout::controller::gateway::http_route_resource(),
        );
        eventually("the HTTPRoute API", Duration::from_secs(30), || async {
            routes.list(&ListParams::default()).await.is_ok()
        })
        .await;
        routes
    }

    /// Prometheus as the operator reaches it.
    pub fn prometheus_url(&self) -> String {
        self.real.prometheus_url.clone()
    }

    /// Waits for the chart's operator Deployment to be available (again).
    pub async fn start_operator(&self) {
        self.real.wait_operator(&self.client).await;
    }

    /// Whether the operator never crashed while this scenario ran (no container restarts).
    pub async fn operator_running(&self) -> bool {
        self.real.operator_restarts(&self.client).await == self.restarts_at_start
    }

    /// SIGKILL of the leading operator's container: no graceful shutdown, no Lease release.
    pub async fn kill_operator(&mut self) -> String {
        let leader = self.real.kill_operator(&self.client).await;
        self.restarts_at_start = i32::MAX; // it restarted on purpose
        leader
    }

    /// A GET on the leading operator's metrics endpoint (`/metrics`, `/healthz`, `/readyz`).
    pub async fn operator_get(&self, path: &str) -> String {
        self.real.operator_get(&self.client, path).await
    }

    /// Runs `kubectl-mcprollout` against the cluster; returns (exit success, stdout).
    pub async fn cli(&self, args: &[&str]) -> (bool, String) {
        let output = tokio::process::Command::new(bin_dir().join("kubectl-mcprollout"))
            .args(args)
            .args(["--namespace", &self.namespace])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .output()
            .await
            .unwrap();
        // Standard output, then standard error (where a failing command says why).
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    }

    pub fn rollouts(&self) -> Api<McpRollout> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Applies an McpRollout in the scenario's namespace, as `kubectl apply --server-side`.
    pub async fn apply(&self, rollout: &Value) {
        let mut rollout = rollout.clone();
        rollout["metadata"]["namespace"] = json!(self.namespace);
        let name = rollout["metadata"]["name"].as_str().unwrap().to_owned();
        let params = PatchParams::apply("e2e-user").force();
        self.rollouts().patch(&name, &params, &Patch::Apply(&rollout)).await.unwrap();
    }

    pub async fn get(&self, name: &str) -> McpRollout {
        let rollout = self.rollouts().get(name).await.unwrap();
        self.saw(&rollout);
        rollout
    }

    /// Remembers a rollout as seen, for the kstatus check when the bed is dropped.
    pub fn saw(&self, rollout: &McpRollout) {
        record_seen(&self.seen, rollout);
    }

    /// Polls the rollout until `check` holds; on timeout fails with its status.
    pub async fn wait(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&McpRollout) -> bool,
    ) -> McpRollout {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(rollout) = self.rollouts().get(name).await {
                self.saw(&rollout);
                if check(&rollout) {
                    return rollout;
                }
            }
            if tokio::time::Instant::now() > deadline {
                let status = self.rollouts().get(name).await.ok().and_then(|r| r.status);
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nstatus: {}",
                    serde_yaml::to_string(&status).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (two minutes at most) for the rollout to be Healthy.
    pub async fn wait_healthy(&self, name: &str) -> McpRollout {
        self.wait(name, "healthy", Duration::from_secs(120), |r| phase(r) == Some(Phase::Healthy)).await
    }

    pub async fn cluster_ip(&self, service: &str) -> String {
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(ip) = services.get(service).await.ok().and_then(|s| s.spec?.cluster_ip) {
                return ip;
            }
            assert!(tokio::time::Instant::now() < deadline, "no Service {service}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn deployments(&self, rollout: &str) -> Vec<Deployment> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels(&format!("{}={rollout}", labels::ROLLOUT));
        api.list(&params).await.unwrap().items
    }

    pub async fn pods(&self, rollout: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels(&format!("{}={rollout}", labels::ROLLOUT));
        api.list(&params).await.unwrap().items
    }

    /// Pods behind a Service's EndpointSlices that are ready (what kube-proxy routes to).
    pub async fn ready_endpoints(&self, service: &str) -> Vec<String> {
        self.ready_endpoint_slices(service)
            .await
            .into_iter()
            .filter_map(|e| e.target_ref.and_then(|t| t.name))
            .collect()
    }

    async fn ready_endpoint_slices(&self, service: &str) -> Vec<k8s_openapi::api::discovery::v1::Endpoint> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        api.list(&params)
            .await
            .unwrap()
            .items
            .into_iter()
            .flat_map(|slice| slice.endpoints.unwrap_or_default())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .collect()
    }

    /// Waits until kube-proxy's rules send the Service's traffic to exactly the ready
    /// endpoints its EndpointSlices list (on the local cluster, where its rules can be read;
    /// elsewhere returns at once). Returns how long that took.
    pub async fn wait_proxy_follows(&self, service: &str) -> Duration {
        let started = Instant::now();
        if self.real.local_dir.is_none() {
            return started.elapsed();
        }
        eventually("kube-proxy's rules following the EndpointSlices", Duration::from_secs(30), || async {
            let ready: std::collections::BTreeSet<String> =
                self.ready_endpoint_slices(service).await.into_iter().flat_map(|e| e.addresses).collect();
            self.real.proxied_endpoints(&self.namespace, service).is_some_and(|proxied| proxied == ready)
        })
        .await;
        started.elapsed()
    }

    /// (reason, note) of the events about the rollout, oldest first.
    pub async fn events(&self, rollout: &str) -> Vec<(String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut events: Vec<Event> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(rollout))
            .collect();
        events.sort_by(|a, b| a.event_time.as_ref().map(|t| t.0).cmp(&b.event_time.as_ref().map(|t| t.0)));
        events.into_iter().map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default())).collect()
    }

    /// Creates a Secret in the scenario's namespace from string data.
    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let data: serde_json::Map<String, Value> =
            data.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
        secrets.create(&PostParams::default(), &secret).await.unwrap();
    }

    /// Starts `mcp-hooks` (the recording receiver of gate webhooks and notifications, from the
    /// agents image) in the scenario's namespace behind a Service `hooks`; its cluster IP once
    /// it answers.
    pub async fn hooks(&self) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "hooks", "labels": {"app": "hooks"}},
            "spec": {"containers": [{
                "name": "hooks", "image": self.real.agents_image, "imagePullPolicy": "IfNotPresent",
                "command": ["/usr/local/bin/mcp-hooks"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
            }]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "hooks"},
            "spec": {"selector": {"app": "hooks"}, "ports": [{"port": 8080, "targetPort": "http"}]}
        }))
        .unwrap();
        services.create(&PostParams::default(), &service).await.unwrap();
        eventually("mcp-hooks answering", Duration::from_secs(60), || async {
            self.service_request("hooks", http::Method::GET, "/healthz", None)
                .await
                .is_some_and(|t| t == "ok")
        })
        .await;
        self.cluster_ip("hooks").await
    }

    /// A request to a Service of the scenario's namespace through the API server's service
    /// proxy (port 8080); the answer's text, `None` when it failed.
    pub async fn service_request(
        &self,
        service: &str,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Option<String> {
        let uri = format!("/api/v1/namespaces/{}/services/{service}:8080/proxy{path}", self.namespace);
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
            .unwrap();
        self.client.request_text(request).await.ok()
    }

    /// Agents against the rollout's Service, in a pod, in the background.
    pub async fn agents(
        &self,
        rollout: &str,
        configure: impl FnOnce(&mut AgentsConfig),
    ) -> JoinHandle<Report> {
        let ip = self.cluster_ip(rollout).await;
        let mut config = agents_config(&format!("http://{ip}:8080"));
        configure(&mut config);
        let (real, client, namespace) = (self.real.clone(), self.client.clone(), self.namespace.clone());
        tokio::spawn(async move { real.run_agents(client, &namespace, config).await })
    }

    /// Stateless-era tool calls at `per_second` for `seconds`, each on a fresh connection so
    /// that kube-proxy splits them by the pods' ratio: pooled keep-alive connections land on a
    /// canary's one pod or do not, and its analysis then sees a few calls a minute.
    pub async fn calls(&self, rollout: &str, seconds: f64, per_second: f64) -> JoinHandle<Report> {
        self.agents(rollout, |c| {
            c.duration = seconds;
            c.rate = per_second;
            c.era = AgentEra::Stateless;
            c.no_keepalive = true;
        })
        .await
    }

    /// Ends every agents pod of this bed now (aborting the handle from `agents` leaves its pod
    /// calling until its duration is over).
    pub async fn stop_agents(&self) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let selected = ListParams::default().labels("app=e2e-agents");
        let _ = pods.delete_collection(&DeleteParams::default(), &selected).await;
    }
}

fn record_seen(seen: &Mutex<Vec<Value>>, rollout: &McpRollout) {
    if rollout.status.is_none() {
        return;
    }
    let value = serde_json::to_value(rollout).unwrap();
    let mut seen = seen.lock().unwrap();
    let same = |v: &Value| {
        v["status"] == value["status"] && v["metadata"]["generation"] == value["metadata"]["generation"]
    };
    if !seen.iter().any(same) {
        seen.push(value);
    }
}

/// The upstream Gateway API CRDs from the Go module the cluster's `go.mod` pins (`go mod
/// download` puts the module's files in the module cache). The experimental channel: HTTPRoute
/// `sessionPersistence`, which the operator writes, exists only there; the standard channel's
/// CRD prunes it, which the operator reports as `SessionPersistenceUnsupported`.
pub fn gateway_api_crds() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let output = std::process::Command::new("go")
            .current_dir(workspace().join("e2e/cluster"))
            .args(["mod", "download", "-json", "sigs.k8s.io/gateway-api"])
            .output()
            .expect("go is not installed");
        assert!(output.status.success(), "go mod download sigs.k8s.io/gateway-api failed");
        let info: Value = serde_json::from_slice(&output.stdout).unwrap();
        PathBuf::from(info["Dir"].as_str().unwrap()).join("config/crd/experimental")
    })
    .clone()
}

#[derive(Parser)]
struct AgentsCli {
    #[command(flatten)]
    config: AgentsConfig,
}

/// `mcp-agents` defaults against `target`.
pub fn agents_config(target: &str) -> AgentsConfig {
    AgentsCli::parse_from(["mcp-agents", "--target", target]).config
}

/// The phase a rollout's status reports.
pub fn phase(rollout: &McpRollout) -> Option<Phase> {
    rollout.status.as_ref().and_then(|s| s.phase)
}

/// Whether `revision` is the rollout's stable revision.
pub fn stable_is(rollout: &McpRollout, revision: &str) -> bool {
    rollout.status.as_ref().is_some_and(|s| s.stable_revision.as_deref() == Some(revision))
}

/// Calls whose final outcome (after retries) was anything but ok.
pub fn failed_calls(report: &Report) -> u64 {
    report.calls.iter().filter(|(k, _)| k.as_str() != "ok").map(|(_, v)| v).sum()
}

/// Polls `check` until it holds; fails the test after `timeout`.
pub async fn eventually<F: Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An McpRollout of `mcp-fixture` with short durations: 4 replicas, canary 5→25→50→100 with
/// short soaks, probes every 3 s, analysis every 3 s against the bed's Prometheus.
pub fn fixture_rollout(name: &str, image: &str, env: &[(&str, &str)], prometheus: &str) -> Value {
    let env: Vec<Value> = env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    json!({
        "apiVersion": "mcprollout.dev/v1alpha1",
        "kind": "McpRollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 4,
            "template": {
                "metadata": {"annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"
                }},
                "spec": {"containers": [{
                    "name": "server",
                    "image": image,
                    "env": env,
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
                }]}
            },
            "service": {"port": 8080, "targetPort": "http"},
            "strategy": {"canary": {"steps": [
                {"setWeight": 5}, {"pause": {"duration": "4s"}},
                {"setWeight": 25}, {"pause": {"duration": "4s"}},
                {"setWeight": 50}, {"pause": {"duration": "4s"}},
                {"setWeight": 100}
            ]}},
            "probe": {
                "interval": "3s", "timeout": "3s",
                "toolCall": {"name": "search_documents", "arguments": {"query": "runbook"}}
            },
            "analysis": {
                "prometheus": {"address": prometheus},
                "interval": "3s",
                // Four of the scenarios' 1 s scrapes (the default, 2m, suits 30 s scrapes).
                "rateWindow": "4s",
                "minRequestCount": 5,
                "checks": {
                    "errorRate": {"for": "6s"},
                    // Millisecond latencies of a local fixture vary by more than 3x from run to
                    // run; the latency gate has its own test against Prometheus.
                    "latency": {"enabled": false}
                }
            },
            "drain": {"min": "3s", "max": "10s"},
            "progressDeadline": "60s"
        }
    })
}

/// The same rollout with another image and env: a new revision.
pub fn with_image(rollout: &Value, image: &str, env: &[(&str, &str)]) -> Value {
    let mut next = rollout.clone();
    let container = &mut next["spec"]["template"]["spec"]["containers"][0];
    container["image"] = json!(image);
    container["env"] = Value::Array(env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect());
    next
}

/// The revision a rollout manifest's template gives.
pub fn revision_of(rollout: &Value) -> String {
    let template = serde_json::from_value(rollout["spec"]["template"].clone()).unwrap();
    mcp_rollout::api::revision_of(&template)
}

/// What a poller saw of a rollout's status over time: (seconds since start, desired weight,
/// effective weight, step index, phase).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub samples: Vec<(f64, i32, i32, Option<i32>, String)>,
}

impl Timeline {
    /// Distinct desired weights in the order they appeared.
    pub fn desired_weights(&self) -> Vec<i32> {
        let mut out: Vec<i32> = Vec::new();
        for (_, w, ..) in &self.samples {
            if out.last() != Some(w) {
                out.push(*w);
            }
        }
        out
    }

    pub fn max_effective_weight(&self) -> i32 {
        self.samples.iter().map(|s| s.2).max().unwrap_or(0)
    }
}

/// Records the rollout's status every 100 ms until the handle is aborted.
pub fn watch_status(bed: &Bed, name: &str) -> (JoinHandle<()>, std::sync::Arc<std::sync::Mutex<Timeline>>) {
    let api = bed.rollouts();
    let name = name.to_owned();
    let seen = bed.seen.clone();
    let timeline = std::sync::Arc::new(std::sync::Mutex::new(Timeline::default()));
    let out = timeline.clone();
    let started = std::time::Instant::now();
    let handle = tokio::spawn(async move {
        loop {
            if let Ok(r) = api.get(&name).await
                && let Some(s) = r.status.clone()
            {
                record_seen(&seen, &r);
                let phase = s.phase.map(|p| format!("{p:?}")).unwrap_or_default();
                out.lock().unwrap().samples.push((
                    started.elapsed().as_secs_f64(),
                    s.desired_weight,
                    s.effective_weight,
                    s.current_step_index,
                    phase,
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (handle, timeline)
}

/// The fixture rollout as blue-green: auto-promote `after` the preview passes its gates, then a
/// post-promotion window.
pub fn blue_green(rollout: &Value, after: &str, window: &str) -> Value {
    let mut next = rollout.clone();
    next["spec"]["strategy"] =
        json!({"blueGreen": {"autoPromote": true, "autoPromoteAfter": after, "postPromotionWindow": window}});
    next
}

/// Answered calls by server version, straight from a report.
pub fn versions(report: &Report) -> Vec<String> {
    report.by_server_version.keys().cloned().collect()
}
