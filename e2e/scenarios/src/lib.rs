//! The end-to-end harness: a test bed with pods as real processes and a real Prometheus, the
//! CRDs from `crds/`, the real `mcp-rollout-operator` binary as a child process, and
//! `mcp-agents` driving traffic through the rollout's Service. Scenarios assert on what the
//! agents experienced as well as on objects.
//!
//! Everything started here dies with the [`Bed`] (kill on drop); every address is loopback.
//! With `E2E_KUBECONFIG` set, the same scenarios run against a real cluster instead
//! ([`cluster`]); scenarios that need the test bed itself say so and skip.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod cluster;

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use clap::Parser;
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Pod, Service},
        discovery::v1::EndpointSlice,
        events::v1::Event,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DynamicObject, ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use mcp_fixture::agents::{self, AgentsConfig, Report};
use mcp_rollout::api::{McpRollout, Phase, labels};
use serde_json::{Value, json};
use testbed::{ControlPlane, Options, controllers::images::ImageMap};
use tokio::{process::Child, task::JoinHandle};

pub const NAMESPACE: &str = "default";

pub fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The directory of the workspace's built binaries. The operator and the fixture are built
/// once per test binary, so a scenario never runs a stale operator (`cargo test -p e2e` does
/// not rebuild other packages' binaries by itself).
pub fn bin_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
            let status = std::process::Command::new(env!("CARGO"))
                .current_dir(workspace())
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "mcp-rollout",
                    "--bin",
                    "mcp-rollout-operator",
                    "--bin",
                    "kubectl-mcprollout",
                ])
                .args(["-p", "mcp-fixture", "--bin", "mcp-fixture", "--bin", "mcp-agents"])
                .status()
                .unwrap();
            assert!(status.success(), "building the operator and the fixture failed");
            dir
        })
        .clone()
}

/// A test bed (or, with `E2E_KUBECONFIG`, a real cluster) with the operator running on it.
pub struct Bed {
    plane: Option<ControlPlane>,
    real: Option<cluster::RealCluster>,
    pub client: Client,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    operator: Option<Child>,
    operator_runs: u32,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- operator log (last 60 lines) ---\n{}", self.operator_log_tail(60));
        }
        // E2E_KEEP=1 keeps the directory (operator logs, kubeconfig) for a look afterwards.
        if std::env::var_os("E2E_KEEP").is_some() {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Bed {
    /// Test bed + Prometheus + CRDs + operator.
    pub async fn start() -> Self {
        let mut bed = Self::without_operator().await;
        bed.start_operator().await;
        bed
    }

    pub async fn without_operator() -> Self {
        let dir = std::env::temp_dir().join(format!("mcp-rollout-e2e-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let (plane, real, client, kubeconfig) = match cluster::RealCluster::from_env() {
            Some(real) => {
                let client = real.client().await;
                real.clean(&client).await;
                let kubeconfig = real.kubeconfig.clone();
                (None, Some(real), client, kubeconfig)
            }
            None => {
                let images = ImageMap::load(&workspace().join("e2e/images.yaml"), &bin_dir()).unwrap();
                let options = Options { images: Some(images), prometheus_dir: Some(dir.join("prometheus")) };
                let plane = ControlPlane::start_with("127.0.0.1:0".parse().unwrap(), options).await.unwrap();
                let kubeconfig = dir.join("kubeconfig");
                plane.write_kubeconfig(&kubeconfig).unwrap();
                let config = Config::from_custom_kubeconfig(
                    Kubeconfig::from_yaml(&plane.kubeconfig()).unwrap(),
                    &KubeConfigOptions::default(),
                )
                .await
                .unwrap();
                (Some(plane), None, Client::try_from(config).unwrap(), kubeconfig)
            }
        };
        let bed = Self { plane, real, client, dir, kubeconfig, operator: None, operator_runs: 0 };
        bed.apply_crds().await;
        bed
    }

    /// The test bed's control plane (its store, request record, Prometheus process).
    /// Scenarios that need it skip on a real cluster ([`on_real_cluster`]).
    pub fn plane(&self) -> &ControlPlane {
        self.plane.as_ref().expect("this scenario needs the test bed (skip it on a real cluster)")
    }

    pub fn plane_mut(&mut self) -> &mut ControlPlane {
        self.plane.as_mut().expect("this scenario needs the test bed (skip it on a real cluster)")
    }

    async fn apply_crds(&self) {
        self.apply_crd_dir(&workspace().join("crds")).await;
        let rollouts: Api<McpRollout> = Api::namespaced(self.client.clone(), NAMESPACE);
        eventually("the McpRollout API", Duration::from_secs(20), || async {
            rollouts.list(&ListParams::default()).await.is_ok()
        })
        .await;
    }

    /// Applies every CRD in a directory (e.g. `e2e/gateway-api`). On a real cluster a CRD that
    /// is already there (e.g. the real Gateway API's) is left alone.
    pub async fn apply_crd_dir(&self, dir: &Path) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let ours = dir == workspace().join("crds");
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for document in serde_yaml::Deserializer::from_str(&text) {
                let crd: CustomResourceDefinition = serde::Deserialize::deserialize(document).unwrap();
                if self.real.is_some() && !ours && crds.get_opt(&crd.name_any()).await.unwrap().is_some() {
                    continue;
                }
                let params = PatchParams::apply("e2e").force();
                crds.patch(&crd.name_any(), &params, &Patch::Apply(&crd)).await.unwrap();
            }
        }
    }

    /// The Gateway API HTTPRoute API in the test namespace, once served (its CRD applied from
    /// `e2e/gateway-api`, or the cluster's own).
    pub async fn http_routes(&self) -> Api<DynamicObject> {
        self.apply_crd_dir(&workspace().join("e2e/gateway-api")).await;
        let routes = Api::namespaced_with(
            self.client.clone(),
            NAMESPACE,
            &mcp_rollout::controller::gateway::http_route_resource(),
        );
        eventually("the HTTPRoute API", Duration::from_secs(20), || async {
            routes.list(&ListParams::default()).await.is_ok()
        })
        .await;
        routes
    }

    /// Prometheus as the operator reaches it.
    pub fn prometheus_url(&self) -> String {
        match &self.real {
            Some(real) => real.prometheus_url.clone(),
            None => self.plane().prometheus.as_ref().unwrap().url.clone(),
        }
    }

    /// Starts the operator binary (again), logging to `operator-N.log` in the bed's directory.
    /// On a real cluster: waits for the chart's operator Deployment (back) to be available.
    pub async fn start_operator(&mut self) {
        if let Some(real) = &self.real {
            real.wait_operator(&self.client).await;
            return;
        }
        self.operator_runs += 1;
        let log = format!("operator-{}.log", self.operator_runs);
        self.operator = Some(self.spawn_operator("e2e-operator", &log));
    }

    /// An operator replica with its own identity, logging to `log` in the bed's directory.
    pub fn spawn_operator(&self, identity: &str, log: &str) -> Child {
        assert!(self.real.is_none(), "spawn_operator needs the test bed");
        let log = std::fs::File::create(self.dir.join(log)).unwrap();
        tokio::process::Command::new(bin_dir().join("mcp-rollout-operator"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--metrics-addr", "127.0.0.1:0", "--identity", identity, "--lease-namespace", NAMESPACE])
            .env("RUST_LOG", std::env::var("E2E_OPERATOR_LOG").unwrap_or_else(|_| "info,kube=warn".into()))
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Whether the operator is still running and never crashed (on a real cluster: its pods
    /// never restarted).
    pub async fn operator_running(&mut self) -> bool {
        if let Some(real) = &self.real {
            return real.operator_restarts(&self.client).await == 0;
        }
        self.operator.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: no graceful shutdown, no Lease release, as when a node dies. On a real
    /// cluster: its pods deleted with grace 0.
    pub async fn kill_operator(&mut self) {
        if let Some(real) = &self.real {
            real.kill_operator(&self.client).await;
            return;
        }
        if let Some(mut child) = self.operator.take() {
            child.start_kill().unwrap();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM, and how the operator ended (test bed only).
    pub async fn terminate_operator(&mut self) -> Option<std::process::ExitStatus> {
        assert!(self.real.is_none(), "terminate_operator needs the test bed");
        let mut child = self.operator.take()?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()?).ok()?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).ok()?;
        tokio::time::timeout(Duration::from_secs(20), child.wait()).await.ok()?.ok()
    }

    /// A GET on the operator's metrics endpoint (`/metrics`, `/healthz`, `/readyz`).
    pub async fn operator_get(&self, path: &str) -> String {
        match &self.real {
            Some(real) => real.operator_get(&self.client, path).await,
            None => http_get(&format!("{}{path}", self.operator_http().await)).await,
        }
    }

    /// Where the running operator serves /metrics, /healthz and /readyz (from its log).
    pub async fn operator_http(&self) -> String {
        assert!(self.real.is_none(), "on a real cluster use operator_get");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(self.dir.join(format!("operator-{}.log", self.operator_runs)))
                .unwrap_or_default();
            if let Some(address) = log
                .lines()
                .find(|l| l.contains("serving /metrics"))
                .and_then(|l| l.split("address=").nth(1))
                .and_then(|a| a.split_whitespace().next())
            {
                return format!("http://{address}");
            }
            assert!(tokio::time::Instant::now() < deadline, "the operator never said where /metrics is");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `kubectl-mcprollout` against the bed; returns (exit success, stdout).
    pub async fn cli(&self, args: &[&str]) -> (bool, String) {
        let output = tokio::process::Command::new(bin_dir().join("kubectl-mcprollout"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .output()
            .await
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn operator_log(&self) -> String {
        if let Some(real) = &self.real {
            return format!(
                "(on the cluster: kubectl -n {} logs deployment/{})",
                real.operator_namespace, real.operator_deployment
            );
        }
        if self.operator_runs == 0 {
            return self.operator_pod_logs();
        }
        (1..=self.operator_runs)
            .map(|n| std::fs::read_to_string(self.dir.join(format!("operator-{n}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n--- operator restarted ---\n")
    }

    /// Logs of operator containers running as pods (the Helm chart's Deployment).
    pub fn operator_pod_logs(&self) -> String {
        use testbed::selectors::{FieldSelector, LabelSelector};
        let store = &self.plane().store;
        let Some(pods) = store.resolve("", "v1", "pods") else { return String::new() };
        let (all, _) = store.list(&pods, None, &LabelSelector::default(), &FieldSelector::default());
        all.iter()
            .filter_map(|pod| {
                let uid = pod["metadata"]["uid"].as_str()?;
                let log = testbed::controllers::kubelet::pod_dir(uid).join("operator.log");
                let text = std::fs::read_to_string(log).ok()?;
                Some(format!("--- pod {} ---\n{text}", pod["metadata"]["name"].as_str().unwrap_or_default()))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn operator_log_tail(&self, lines: usize) -> String {
        let log = self.operator_log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn rollouts(&self) -> Api<McpRollout> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// Applies an McpRollout as `kubectl apply --server-side` would.
    pub async fn apply(&self, rollout: &Value) {
        let name = rollout["metadata"]["name"].as_str().unwrap().to_owned();
        let params = PatchParams::apply("e2e-user").force();
        self.rollouts().patch(&name, &params, &Patch::Apply(rollout)).await.unwrap();
    }

    pub async fn get(&self, name: &str) -> McpRollout {
        self.rollouts().get(name).await.unwrap()
    }

    /// Polls the rollout until `check` holds; on timeout fails with its status and the
    /// operator's log.
    pub async fn wait(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&McpRollout) -> bool,
    ) -> McpRollout {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(rollout) = self.rollouts().get(name).await
                && check(&rollout)
            {
                return rollout;
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

    /// Waits (a minute at most) for the rollout to be Healthy.
    pub async fn wait_healthy(&self, name: &str) -> McpRollout {
        self.wait(name, "healthy", Duration::from_secs(60), |r| phase(r) == Some(Phase::Healthy)).await
    }

    pub async fn cluster_ip(&self, service: &str) -> String {
        let services: Api<Service> = Api::namespaced(self.client.clone(), NAMESPACE);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(ip) = services.get(service).await.ok().and_then(|s| s.spec?.cluster_ip) {
                return ip;
            }
            assert!(tokio::time::Instant::now() < deadline, "no Service {service}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn deployments(&self, rollout: &str) -> Vec<Deployment> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), NAMESPACE);
        let params = ListParams::default().labels(&format!("{}={rollout}", labels::ROLLOUT));
        api.list(&params).await.unwrap().items
    }

    pub async fn pods(&self, rollout: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let params = ListParams::default().labels(&format!("{}={rollout}", labels::ROLLOUT));
        api.list(&params).await.unwrap().items
    }

    /// Pods behind a Service's EndpointSlices that are ready (what kube-proxy routes to).
    pub async fn ready_endpoints(&self, service: &str) -> Vec<String> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), NAMESPACE);
        let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        api.list(&params)
            .await
            .unwrap()
            .items
            .into_iter()
            .flat_map(|slice| slice.endpoints.unwrap_or_default())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .filter_map(|e| e.target_ref.and_then(|t| t.name))
            .collect()
    }

    /// (reason, note) of the events about the rollout, oldest first.
    pub async fn events(&self, rollout: &str) -> Vec<(String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), NAMESPACE);
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

    /// Agents against the rollout's Service, in the background.
    pub async fn agents(
        &self,
        rollout: &str,
        configure: impl FnOnce(&mut AgentsConfig),
    ) -> JoinHandle<Report> {
        let ip = self.cluster_ip(rollout).await;
        let mut config = agents_config(&format!("http://{ip}:8080"));
        configure(&mut config);
        if let Some(real) = self.real.clone() {
            let client = self.client.clone();
            return tokio::spawn(async move { real.run_agents(client, config).await });
        }
        tokio::spawn(async move { agents::run(config).await.unwrap() })
    }
}

#[derive(Parser)]
struct AgentsCli {
    #[command(flatten)]
    config: AgentsConfig,
}

/// Whether the scenarios run against a real cluster (`E2E_KUBECONFIG`). A scenario that needs
/// the test bed itself calls this first and returns when it says so.
pub fn on_real_cluster(scenario_needs: &str) -> bool {
    let real = std::env::var_os("E2E_KUBECONFIG").is_some();
    if real {
        println!("skipped on a real cluster: this scenario needs {scenario_needs}");
    }
    real
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

/// A GET on loopback (no proxy), as text.
pub async fn http_get(url: &str) -> String {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    client.get(url).send().await.unwrap().text().await.unwrap()
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
        "metadata": {"name": name, "namespace": NAMESPACE},
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

/// Writes `text` under the bed's directory (for reports a failing test leaves behind).
pub fn write(dir: &Path, name: &str, text: &str) {
    let _ = std::fs::write(dir.join(name), text);
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

/// Records the rollout's status every 100 ms until the handle is aborted or `stop` is read.
pub fn watch_status(bed: &Bed, name: &str) -> (JoinHandle<()>, std::sync::Arc<std::sync::Mutex<Timeline>>) {
    let api = bed.rollouts();
    let name = name.to_owned();
    let timeline = std::sync::Arc::new(std::sync::Mutex::new(Timeline::default()));
    let out = timeline.clone();
    let started = std::time::Instant::now();
    let handle = tokio::spawn(async move {
        loop {
            if let Ok(r) = api.get(&name).await
                && let Some(s) = r.status
            {
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
