//! The kubelet: every pod runs as local processes on its own loopback IP (127.1.x.y), with
//! readiness and liveness probes, readiness gates, restarts with back-off, and termination as
//! the real kubelet does it (preStop, SIGTERM, SIGKILL at the grace period, then removal).

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{process::Child, time::Instant};

use super::images::{ImageMap, expand, tag_of};
use crate::{
    auth::Auth,
    resources::ResourceType,
    selectors::{FieldSelector, LabelSelector},
    store::{Propagation, Store},
};

const TICK: Duration = Duration::from_millis(200);
/// First restart back-off. A real kubelet starts at 10 s; the test bed at 1 s, doubling to 30 s,
/// so crash loops show within a test's patience (listed in e2e/README.md).
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

fn now_text() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Pod IPs from 127.1.0.0/16, never reused within a process (several control planes in one
/// test binary must not hand out the same address), from a random start (nor may two test
/// beds running side by side on one machine).
static NEXT_POD_IP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn allocate_pod_ip() -> Ipv4Addr {
    let n = (crate::store::process_ip_offset()
        + NEXT_POD_IP.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
        % 65_000
        + 2;
    Ipv4Addr::new(127, 1, (n >> 8) as u8, (n & 0xff) as u8)
}

/// How pods reach the API server: each gets a kubeconfig with a token of its service account.
#[derive(Clone)]
pub struct ApiAccess {
    pub url: String,
    pub ca_pem: String,
    pub auth: Arc<Auth>,
}

impl ApiAccess {
    /// The pod's credentials as a kubeconfig file in `dir` (a real kubelet mounts a projected
    /// token at /var/run/secrets/kubernetes.io/serviceaccount; processes sharing one host cannot
    /// each have that path, so `KUBECONFIG` points here instead — a listed deviation). Also
    /// the pod's container logs live in `dir`.
    fn credentials(&self, pod: &Value, dir: &std::path::Path) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::new();
        let (host, port) = self.url.trim_start_matches("https://").rsplit_once(':').unwrap_or_default();
        vars.insert("KUBERNETES_SERVICE_HOST".to_owned(), host.to_owned());
        vars.insert("KUBERNETES_SERVICE_PORT".to_owned(), port.to_owned());
        if pod["spec"]["automountServiceAccountToken"] == false {
            return vars;
        }
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        let account = pod["spec"]["serviceAccountName"].as_str().unwrap_or("default");
        let token = self.auth.issue_service_account_token(namespace, account);
        let path = dir.join("kubeconfig");
        let text = crate::kubeconfig_text(&self.url, &self.ca_pem, &token, namespace);
        if std::fs::write(&path, text).is_ok() {
            vars.insert("KUBECONFIG".to_owned(), path.display().to_string());
        }
        vars
    }
}

/// Runs the kubelet until aborted; every process it started is killed when its task ends.
pub async fn run(store: Arc<Store>, images: Arc<ImageMap>, access: ApiAccess) {
    let Some(pods) = store.resolve("", "v1", "pods") else { return };
    let running: Arc<Mutex<HashMap<String, tokio::task::JoinHandle<()>>>> = Arc::default();
    let _guard = AbortOnDrop(running.clone());
    loop {
        {
            let all = store.list(&pods, None, &LabelSelector::default(), &FieldSelector::default()).0;
            let mut tracked = running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            tracked.retain(|_, task| !task.is_finished());
            for pod in all {
                let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
                if tracked.contains_key(&uid)
                    || pod["metadata"].get("deletionTimestamp").is_some() && pod["status"]["podIP"].is_null()
                {
                    continue;
                }
                if pod["status"]["podIP"].is_string() {
                    // Started by an earlier kubelet of this store and no longer running: nothing to do.
                    continue;
                }
                let ip = allocate_pod_ip();
                let task = tokio::spawn(run_pod(
                    store.clone(),
                    pods.clone(),
                    images.clone(),
                    access.clone(),
                    pod,
                    ip,
                ));
                tracked.insert(uid, task);
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

struct AbortOnDrop(Arc<Mutex<HashMap<String, tokio::task::JoinHandle<()>>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values() {
            task.abort();
        }
    }
}

/// One container's process and what the kubelet knows of it.
struct Container {
    spec: Value,
    child: Option<Child>,
    started_at: Option<(Instant, String)>,
    ready: bool,
    readiness: ProbeState,
    liveness: ProbeState,
    restarts: u32,
    last_terminated: Option<Value>,
    waiting: Option<(String, String)>,
    restart_at: Option<Instant>,
    backoff: Duration,
}

#[derive(Default)]
struct ProbeState {
    next: Option<Instant>,
    successes: u32,
    failures: u32,
}

/// Each container runs in its own process group (its stand-in for a container's cgroup), so
/// what it forked goes with it.
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            kill_group(child.id());
        }
    }
}

fn kill_signal(child: &Child, signal: nix::sys::signal::Signal) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
    }
}

struct PodRun {
    store: Arc<Store>,
    pods: ResourceType,
    images: Arc<ImageMap>,
    namespace: String,
    name: String,
    uid: String,
    ip: Ipv4Addr,
    containers: Vec<Container>,
    http: reqwest::Client,
    started: String,
    /// Credentials and container logs; removed with the pod.
    dir: PodDir,
    /// Variables every container gets from the pod's credentials.
    credentials: BTreeMap<String, String>,
}

/// The pod's own directory, removed when the pod's run ends.
struct PodDir(std::path::PathBuf);

impl Drop for PodDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a pod's files live while it runs: its credentials and `<container>.log`.
pub fn pod_dir(uid: &str) -> std::path::PathBuf {
    std::env::temp_dir().join("testbed-pods").join(uid)
}

async fn run_pod(
    store: Arc<Store>,
    pods: ResourceType,
    images: Arc<ImageMap>,
    access: ApiAccess,
    pod: Value,
    ip: Ipv4Addr,
) {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let dir = PodDir(pod_dir(&uid));
    let _ = std::fs::create_dir_all(&dir.0);
    let credentials = access.credentials(&pod, &dir.0);
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|spec| Container {
            spec,
            child: None,
            started_at: None,
            ready: false,
            readiness: ProbeState::default(),
            liveness: ProbeState::default(),
            restarts: 0,
            last_terminated: None,
            waiting: None,
            restart_at: Some(Instant::now()),
            backoff: BACKOFF_START,
        })
        .collect();
    let mut run = PodRun {
        store,
        pods,
        images,
        namespace: pod["metadata"]["namespace"].as_str().unwrap_or_default().to_owned(),
        name: pod["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
        uid,
        ip,
        containers,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap_or_default(),
        started: now_text(),
        dir,
        credentials,
    };
    while let Ok(current) = run.store.get(&run.pods, &run.namespace, &run.name) {
        if current["metadata"]["uid"].as_str() != Some(run.uid.as_str()) {
            break;
        }
        if current["metadata"].get("deletionTimestamp").is_some() {
            run.terminate(&current).await;
            break;
        }
        run.tick(&current).await;
        run.write_status(&current);
        tokio::time::sleep(TICK).await;
    }
    for container in &mut run.containers {
        if let Some(child) = &mut container.child {
            kill_group(child.id());
            let _ = child.start_kill();
        }
    }
}

impl PodRun {
    fn variables(&self, container: &Value) -> BTreeMap<String, String> {
        let image = container["image"].as_str().unwrap_or_default();
        let mut vars = self.credentials.clone();
        vars.extend([
            ("POD_IP".to_owned(), self.ip.to_string()),
            ("POD_NAME".to_owned(), self.name.clone()),
            ("POD_NAMESPACE".to_owned(), self.namespace.clone()),
            ("IMAGE_TAG".to_owned(), tag_of(image).to_owned()),
        ]);
        if let Some(rule) = self.images.rule_for(image) {
            for (k, v) in &rule.env {
                let value = expand(v, &vars);
                vars.insert(k.clone(), value);
            }
        }
        for env in container["env"].as_array().into_iter().flatten() {
            let Some(name) = env["name"].as_str() else { continue };
            let value = if let Some(value) = env["value"].as_str() {
                expand(value, &vars)
            } else if let Some(path) = env["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "metadata.name" => self.name.clone(),
                    "metadata.namespace" => self.namespace.clone(),
                    "metadata.uid" => self.uid.clone(),
                    "status.podIP" | "status.podIPs" => self.ip.to_string(),
                    _ => String::new(),
                }
            } else {
                String::new()
            };
            vars.insert(name.to_owned(), value);
        }
        vars
    }

    fn spawn(&self, container: &Value) -> Result<Child, String> {
        let image = container["image"].as_str().unwrap_or_default();
        let rule = self
            .images
            .rule_for(image)
            .ok_or_else(|| format!("no local command for image {image} (e2e/images.yaml)"))?;
        let vars = self.variables(container);
        let mut argv: Vec<String> = match container["command"].as_array() {
            Some(command) => command.iter().filter_map(|c| c.as_str()).map(|c| expand(c, &vars)).collect(),
            None => rule.command.clone(),
        };
        argv.extend(
            container["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|a| expand(a, &vars)),
        );
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let name = container["name"].as_str().unwrap_or("container");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join(format!("{name}.log")))
            .map_err(|e| format!("cannot open the log of {name}: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("cannot open the log of {name}: {e}"))?;
        tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&vars)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))
    }

    async fn tick(&mut self, pod: &Value) {
        let restart_policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always").to_owned();
        for i in 0..self.containers.len() {
            // Exited?
            let (exited, pid) = match &mut self.containers[i].child {
                Some(child) => (child.try_wait().ok().flatten(), child.id()),
                None => (None, None),
            };
            if let Some(status) = exited {
                // The container's main process ended: whatever it left behind goes too.
                kill_group(pid);
                let c = &mut self.containers[i];
                let code = status.code().unwrap_or(137);
                c.child = None;
                c.ready = false;
                c.last_terminated = Some(
                    json!({"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                                                 "startedAt": c.started_at.as_ref().map(|s| s.1.clone()), "finishedAt": now_text()}),
                );
                let restart = restart_policy == "Always" || restart_policy == "OnFailure" && code != 0;
                if restart {
                    c.restart_at = Some(Instant::now() + c.backoff);
                    c.waiting = Some((
                        "CrashLoopBackOff".into(),
                        format!("back-off {}s restarting failed container", c.backoff.as_secs()),
                    ));
                    c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
                }
            }
            // Due to (re)start?
            if self.containers[i].child.is_none()
                && self.containers[i].restart_at.is_some_and(|at| Instant::now() >= at)
            {
                let spec = self.containers[i].spec.clone();
                let spawned = self.spawn(&spec);
                let c = &mut self.containers[i];
                c.restart_at = None;
                match spawned {
                    Ok(child) => {
                        if c.last_terminated.is_some() {
                            c.restarts += 1;
                        }
                        c.child = Some(child);
                        c.started_at = Some((Instant::now(), now_text()));
                        c.waiting = None;
                        c.readiness = ProbeState::default();
                        c.liveness = ProbeState::default();
                    }
                    Err(message) => {
                        c.waiting = Some(("CreateContainerError".into(), message));
                        c.restart_at = Some(Instant::now() + c.backoff);
                        c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            self.probe(i).await;
        }
    }

    /// Runs the container's readiness and liveness probes when due.
    async fn probe(&mut self, i: usize) {
        let Some((started, _)) = self.containers[i].started_at.clone() else { return };
        if self.containers[i].child.is_none() {
            return;
        }
        for kind in ["readinessProbe", "livenessProbe"] {
            let spec = self.containers[i].spec[kind].clone();
            if spec.is_null() {
                if kind == "readinessProbe" {
                    self.containers[i].ready = true;
                }
                continue;
            }
            let period = Duration::from_secs(spec["periodSeconds"].as_u64().unwrap_or(10));
            let initial = Duration::from_secs(spec["initialDelaySeconds"].as_u64().unwrap_or(0));
            let state = if kind == "readinessProbe" {
                &self.containers[i].readiness
            } else {
                &self.containers[i].liveness
            };
            let due = state.next.unwrap_or(started + initial);
            if Instant::now() < due {
                continue;
            }
            let ok = self.check(&spec).await;
            let c = &mut self.containers[i];
            let state = if kind == "readinessProbe" { &mut c.readiness } else { &mut c.liveness };
            state.next = Some(Instant::now() + period);
            if ok {
                state.successes += 1;
                state.failures = 0;
            } else {
                state.failures += 1;
                state.successes = 0;
            }
            let success_threshold = spec["successThreshold"].as_u64().unwrap_or(1) as u32;
            let failure_threshold = spec["failureThreshold"].as_u64().unwrap_or(3) as u32;
            let (successes, failures) = (state.successes, state.failures);
            if kind == "readinessProbe" {
                if successes >= success_threshold {
                    c.ready = true;
                } else if failures >= failure_threshold {
                    c.ready = false;
                }
            } else if failures >= failure_threshold {
                // Liveness failed: the container is killed and restarted by the policy.
                if let Some(child) = &mut c.child {
                    kill_group(child.id());
                    let _ = child.start_kill();
                }
            }
        }
    }

    async fn check(&self, probe: &Value) -> bool {
        let port = |v: &Value| -> Option<u16> {
            match v {
                Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
                Value::String(named) => self.containers.iter().find_map(|c| {
                    c.spec["ports"].as_array()?.iter().find(|p| p["name"] == named.as_str())?["containerPort"]
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                }),
                _ => None,
            }
        };
        if let Some(http) = probe.get("httpGet") {
            let Some(port) = port(&http["port"]) else { return false };
            let path = http["path"].as_str().unwrap_or("/");
            let url = format!("http://{}:{port}{path}", self.ip);
            return self.http.get(url).send().await.is_ok_and(|r| (200..400).contains(&r.status().as_u16()));
        }
        if let Some(tcp) = probe.get("tcpSocket") {
            let Some(port) = port(&tcp["port"]) else { return false };
            return tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect((self.ip, port)),
            )
            .await
            .is_ok_and(|r| r.is_ok());
        }
        // exec and grpc probes are not run by the test bed: they pass.
        true
    }

    /// Status as the kubelet owns it; conditions others own (readiness gates) are kept.
    fn write_status(&self, pod: &Value) {
        let containers_ready = self.containers.iter().all(|c| c.ready && c.child.is_some());
        let gates_ok = pod["spec"]["readinessGates"].as_array().into_iter().flatten().all(|gate| {
            let kind = &gate["conditionType"];
            pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| &c["type"] == kind && c["status"] == "True")
        });
        let ready = containers_ready && gates_ok;
        let mine = ["Ready", "ContainersReady", "Initialized", "PodScheduled"];
        let previous = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let condition = |type_: &str, value: bool| {
            let status = if value { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c["type"] == type_ && c["status"] == status)
                .and_then(|c| c["lastTransitionTime"].as_str())
                .map_or_else(now_text, str::to_owned);
            json!({"type": type_, "status": status, "lastTransitionTime": since})
        };
        let mut conditions: Vec<Value> = previous
            .iter()
            .filter(|c| !mine.contains(&c["type"].as_str().unwrap_or_default()))
            .cloned()
            .collect();
        conditions.extend([
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", containers_ready),
            condition("Ready", ready),
        ]);
        let statuses: Vec<Value> = self
            .containers
            .iter()
            .map(|c| {
                let state = match (&c.child, &c.waiting) {
                    (Some(_), _) => json!({"running": {"startedAt": c.started_at.as_ref().map(|s| s.1.clone())}}),
                    (None, Some((reason, message))) => json!({"waiting": {"reason": reason, "message": message}}),
                    (None, None) => match &c.last_terminated {
                        Some(t) => json!({"terminated": t}),
                        None => json!({"waiting": {"reason": "ContainerCreating"}}),
                    },
                };
                let mut status = json!({"name": c.spec["name"], "image": c.spec["image"], "ready": c.ready && c.child.is_some(),
                                        "started": c.child.is_some(), "restartCount": c.restarts, "state": state});
                if let Some(t) = &c.last_terminated {
                    status["lastState"] = json!({"terminated": t});
                }
                status
            })
            .collect();
        let status = json!({
            "phase": "Running",
            "podIP": self.ip.to_string(),
            "podIPs": [{"ip": self.ip.to_string()}],
            "hostIP": "127.0.0.1",
            "startTime": self.started,
            "conditions": conditions,
            "containerStatuses": statuses,
        });
        if pod["status"] == status {
            return;
        }
        let _ =
            self.store.modify(&self.pods, &self.namespace, &self.name, Some("status"), false, |current| {
                let mut next = current.clone();
                next["status"] = status.clone();
                Ok(next)
            });
    }

    /// preStop, SIGTERM, SIGKILL at the grace deadline, then the pod object goes.
    async fn terminate(&mut self, pod: &Value) {
        let grace = Duration::from_secs(
            pod["metadata"]["deletionGracePeriodSeconds"]
                .as_u64()
                .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_u64())
                .unwrap_or(30),
        );
        let deadline = Instant::now() + grace;
        for c in &self.containers {
            let pre_stop = &c.spec["lifecycle"]["preStop"];
            if let Some(seconds) = pre_stop["sleep"]["seconds"].as_u64() {
                tokio::time::sleep_until((Instant::now() + Duration::from_secs(seconds)).min(deadline)).await;
            } else if let Some(command) = pre_stop["exec"]["command"].as_array() {
                let argv: Vec<&str> = command.iter().filter_map(Value::as_str).collect();
                if let Some((program, args)) = argv.split_first() {
                    let run = tokio::process::Command::new(program).args(args).kill_on_drop(true).status();
                    let _ = tokio::time::timeout_at(deadline, run).await;
                }
            }
        }
        for c in &self.containers {
            if let Some(child) = &c.child {
                kill_signal(child, nix::sys::signal::Signal::SIGTERM);
            }
        }
        for c in &mut self.containers {
            if let Some(child) = &mut c.child {
                let pid = child.id();
                // SIGKILL at the grace deadline, to everything in the container.
                let _ = tokio::time::timeout_at(deadline, child.wait()).await;
                kill_group(pid);
            }
        }
        let current = self.store.get(&self.pods, &self.namespace, &self.name);
        if current.is_ok_and(|p| p["metadata"]["uid"].as_str() == Some(self.uid.as_str())) {
            let _ =
                self.store.delete(&self.pods, &self.namespace, &self.name, Propagation::Background, false);
        }
    }
}
