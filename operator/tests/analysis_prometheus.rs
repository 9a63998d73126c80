#![allow(clippy::unwrap_used)]
//! The analysis against a real Prometheus (the Debian package, started here on a loopback port
//! with a 1 s scrape interval) scraping real mcp-fixture servers under load from mcp-agents.
//!
//! Deviation, on purpose: the fixtures and agents run in this test's process (each fixture is
//! its own HTTP server on its own port, as a pod would be) rather than as child processes, so
//! the test controls their lifetime without a build of the binaries first.

mod support;

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mcp_fixture::agents::{self, AgentEra, AgentTransport, AgentsConfig};
use mcp_rollout::{
    analysis::{self, Clamp, ClientOptions, Prometheus, Queries, QueryError, Scope, Subject},
    api::{AnalysisSpec, CustomMetric, DrainSpec, HumanDuration, PrometheusSpec, Verdict},
    engine::CheckResult,
};
use tokio::process::{Child, Command};

/// A Prometheus process and its data directory, both gone on drop.
struct PrometheusProcess {
    _child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scrape target: a fixture's address and the namespace its "pod" is in (labelled by the
/// scrape, as a Kubernetes scrape configuration does).
type Target = (String, &'static str);

async fn start_prometheus(targets: &[Target]) -> PrometheusProcess {
    start_prometheus_with(targets, &[]).await
}

async fn start_prometheus_with(targets: &[Target], flags: &[&str]) -> PrometheusProcess {
    start_prometheus_serving(targets, flags, None).await
}

/// How a Prometheus behind TLS is reached: its web configuration (`--web.config.file`) and a
/// client that passes it, to tell when it is ready.
struct Web {
    config: String,
    client: reqwest::Client,
}

async fn start_prometheus_serving(targets: &[Target], flags: &[&str], web: Option<Web>) -> PrometheusProcess {
    // A directory of its own per Prometheus, also when one test starts two.
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("mcp-rollout-prometheus-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let static_configs: String = targets
        .iter()
        .map(|(address, namespace)| {
            format!("      - targets: ['{address}']\n        labels: {{namespace: '{namespace}'}}\n")
        })
        .collect();
    let static_configs =
        if static_configs.is_empty() { "      - targets: []\n".into() } else { static_configs };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: fixtures\n    \
         static_configs:\n{static_configs}    \
         relabel_configs:\n      - source_labels: [__address__]\n        target_label: pod\n    \
         metric_relabel_configs:\n      - source_labels: [version]\n        regex: '(.+)'\n        \
         target_label: mcp_revision\n        replacement: 'rev-$1'\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    // Behind TLS by the name its certificate carries, else by address.
    let (origin, http, web_flags) = match web {
        Some(web) => {
            std::fs::write(dir.join("web.yml"), web.config).unwrap();
            (
                "https://localhost",
                web.client,
                vec![format!("--web.config.file={}", dir.join("web.yml").display())],
            )
        }
        None => ("http://127.0.0.1", reqwest::Client::new(), Vec::new()),
    };
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .args(&web_flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus is installed (hack/install-test-deps.sh installs the Debian package)");
        let url = format!("{origin}:{port}");
        for _ in 0..100 {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if http.get(format!("{url}/-/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
                return PrometheusProcess { _child: child, dir, url };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("prometheus did not start");
}

fn load(target: String, seconds: f64) -> AgentsConfig {
    AgentsConfig {
        target,
        allow_remote_target: false,
        path: "/mcp".into(),
        agents: 4,
        duration: seconds,
        session_min: 3.0,
        session_max: 5.0,
        rate: 25.0,
        stream_share: 0.0,
        stream_seconds: 1.0,
        transport: AgentTransport::StreamableHttp,
        era: AgentEra::Handshake,
        max_retries: 0,
        max_calls: 1_000_000,
        no_keepalive: false,
        read_streams_to_end: false,
        seed: Some(7),
    }
}

fn spec(prometheus: &str) -> AnalysisSpec {
    let mut spec: AnalysisSpec = serde_json::from_value(serde_json::json!({
        "prometheus": {"address": prometheus, "timeout": "5s"},
        "interval": "10s",
        "minRequestCount": 50,
    }))
    .unwrap();
    spec.checks.error_rate.sustain = HumanDuration::from_secs(10);
    spec.checks.latency.sustain = HumanDuration::from_secs(10);
    spec.metrics.push(CustomMetric {
        name: "canary-traffic".into(),
        query:
            r#"sum(rate(mcp_tool_call_duration_seconds_count{version="{{canaryRevision}}"}[{{interval}}]))"#
                .into(),
        min: Some(1.0),
        max: None,
        failure_limit: 1,
    });
    spec
}

fn subject(canary: &str) -> Subject {
    Subject {
        namespace: "default".into(),
        rollout: "docs".into(),
        stable: "stable".into(),
        canary: canary.into(),
        max_error_rate_ratio: 2.0,
        min_request_count: 50,
    }
}

fn verdict<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    results.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no {name} in {results:#?}"))
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_and_drain_window_against_a_real_prometheus() {
    let stable = support::fixture(|c| {
        c.server_version = "stable".into();
        c.server_rollout = "docs".into();
        c.error_rate = 0.01;
    })
    .await;
    let healthy = support::fixture(|c| {
        c.server_version = "canary-ok".into();
        c.server_rollout = "docs".into();
        c.error_rate = 0.01;
        c.seed = Some(2);
    })
    .await;
    let bad = support::fixture(|c| {
        c.server_version = "canary-bad".into();
        c.server_rollout = "docs".into();
        c.error_rate = 0.10;
        c.schema_error_rate = 0.05;
        c.seed = Some(3);
    })
    .await;
    // The healthy canary's template run elsewhere, failing 30% of its calls: the same
    // revision in another namespace (another tenant), and in another rollout of this one.
    // Neither may count towards the canary (issue 19: they did, selected by version alone).
    let other_tenant = support::fixture(|c| {
        c.server_version = "canary-ok".into();
        c.server_rollout = "docs".into();
        c.error_rate = 0.30;
        c.seed = Some(4);
    })
    .await;
    let other_rollout = support::fixture(|c| {
        c.server_version = "canary-ok".into();
        c.server_rollout = "docs-copy".into();
        c.error_rate = 0.30;
        c.seed = Some(5);
    })
    .await;
    let fixtures = [&stable, &healthy, &bad, &other_tenant, &other_rollout];
    let targets: Vec<Target> = fixtures
        .iter()
        .zip(["default", "default", "default", "staging", "default"])
        .map(|(f, namespace)| (f.addr.to_string(), namespace))
        .collect();
    let (stable_pod, healthy_pod) = (targets[0].0.clone(), targets[1].0.clone());
    let prometheus_process = start_prometheus(&targets).await;
    let spec = spec(&prometheus_process.url);
    let PrometheusSpec { address, timeout, .. } = &spec.prometheus;
    let prometheus = Prometheus::new(address, timeout.as_std(), &ClientOptions::default()).unwrap();
    let queries = Queries::new(&spec.queries);

    let load_seconds = 26.0;
    let runs: Vec<_> =
        fixtures.iter().map(|f| tokio::spawn(agents::run(load(f.url(), load_seconds)))).collect();
    tokio::time::sleep(Duration::from_secs(22)).await;

    // Under load: the healthy canary passes every gate (its failing copies elsewhere are not
    // its traffic); 10% errors against 1% fails.
    let ok = analysis::evaluate(&prometheus, &spec, &queries, &subject("canary-ok"), now()).await;
    for name in ["errorRate", "latency", "schemaValidationErrors", "canary-traffic"] {
        assert_eq!(verdict(&ok, name).verdict, Verdict::Pass, "{name}: {ok:#?}");
    }
    let failing = analysis::evaluate(&prometheus, &spec, &queries, &subject("canary-bad"), now()).await;
    let error_rate = verdict(&failing, "errorRate");
    assert_eq!(error_rate.verdict, Verdict::Fail, "{failing:#?}");
    assert!(error_rate.value.unwrap() > 4.0, "{error_rate:?}");
    assert_eq!(verdict(&failing, "schemaValidationErrors").verdict, Verdict::Fail, "{failing:#?}");

    // The revision under a label of the user's choosing (a server exporting its semver as
    // `version`): here the scrape copies it to `mcp_revision` as `rev-<revision>`.
    let relabelled = AnalysisSpec { revision_label: "mcp_revision".into(), ..spec.clone() };
    let by_label = Queries::for_spec(&relabelled);
    let mut renamed = subject("rev-canary-ok");
    renamed.stable = "rev-stable".into();
    let ok = analysis::evaluate(&prometheus, &relabelled, &by_label, &renamed, now()).await;
    for name in ["errorRate", "latency", "schemaValidationErrors"] {
        assert_eq!(verdict(&ok, name).verdict, Verdict::Pass, "{name}: {ok:#?}");
    }
    let unknown = analysis::evaluate(&prometheus, &spec, &queries, &renamed, now()).await;
    assert_eq!(verdict(&unknown, "errorRate").verdict, Verdict::Inconclusive, "`version` has no such value");

    // Too few calls never passes.
    let mut strict = subject("canary-ok");
    strict.min_request_count = 1_000_000_000;
    let few = analysis::evaluate(&prometheus, &spec, &queries, &strict, now()).await;
    assert_eq!(verdict(&few, "errorRate").verdict, Verdict::Inconclusive, "{few:#?}");
    // The default rate window (2m here: interval 10s) holds every scrape of the canary: an
    // unanswered check blames the traffic, not the window.
    let message = verdict(&few, "errorRate").message.clone().unwrap_or_default();
    assert!(!message.contains("rate window") && !message.contains("no sample"), "{message}");
    // A window of two 1 s scrapes (issue 22: `[{{interval}}]` with the interval as long as the
    // scrape interval): status says how many samples it holds and what window would do.
    let short = AnalysisSpec { rate_window: Some(HumanDuration::from_secs(2)), ..spec.clone() };
    let sparse = analysis::evaluate(&prometheus, &short, &queries, &strict, now()).await;
    let message = verdict(&sparse, "errorRate").message.clone().unwrap_or_default();
    assert!(message.contains("the rate window (2s) holds") && message.contains("rateWindow"), "{message}");
    // A canary nothing scrapes: said as such.
    let absent = analysis::evaluate(&prometheus, &spec, &queries, &subject("never-deployed"), now()).await;
    let message = verdict(&absent, "errorRate").message.clone().unwrap_or_default();
    assert!(message.contains("no sample of the canary's tool-call counter"), "{message}");
    println!("sampling notes: {message}");

    let scope = Scope { namespace: "default".into(), rollout: "docs".into() };
    let asked = jiff::Timestamp::now().as_second() as f64;
    let open = analysis::active_sessions(&prometheus, &queries, &scope, "canary-ok", &[]).await.unwrap();
    assert!(open.is_some_and(|s| s.count > 0), "{open:?}");
    // A drain of some pods counts only theirs (each fixture here is its own "pod": the
    // scrape address is relabelled to `pod`).
    let own = analysis::active_sessions(
        &prometheus,
        &queries,
        &scope,
        "canary-ok",
        std::slice::from_ref(&healthy_pod),
    )
    .await
    .unwrap();
    assert_eq!(own.map(|s| s.count), open.map(|s| s.count), "{own:?}");
    let other = analysis::active_sessions(
        &prometheus,
        &queries,
        &scope,
        "canary-ok",
        std::slice::from_ref(&stable_pod),
    )
    .await
    .unwrap();
    assert_eq!(other, None, "another pod's name matches none of the revision's series");
    // The sample time is the scrape's (1 s scrapes here), not the query's.
    let sampled = open.unwrap().sampled_at.expect("the default query knows its scrape time");
    assert!(sampled <= asked + 1.0 && sampled > asked - 10.0, "sampled at {sampled}, asked at {asked}");

    for run in runs {
        let report = run.await.unwrap().unwrap();
        assert!(report.sessions_completed > 10, "{report:?}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let left = analysis::active_sessions(&prometheus, &queries, &scope, "canary-ok", &[]).await.unwrap();
    assert_eq!(left.map(|s| s.count), Some(0), "{left:?}");

    // Sessions of 3–5 s: the P95 lands in the 1–5 s bucket; the drain window follows it, or
    // the configured minimum when that is longer.
    let mut drain: DrainSpec =
        serde_json::from_value(serde_json::json!({"lookback": "1m", "min": "1s", "max": "5m"})).unwrap();
    let revisions = vec!["stable".to_owned(), "canary-ok".to_owned()];
    let window =
        analysis::measure_drain_window(&prometheus, &drain, &queries, &scope, &revisions).await.unwrap();
    // At least the shortest session; at most the next bucket bound: a session outlives its
    // planned length by its last call, and on a loaded machine enough of them cross 5 s to put
    // the P95 into the 5-10 s bucket (seen in CI: 6.3 s). Either way it follows the sessions,
    // not the 1 m minimum or the 5 m default.
    let measured = window.measured_seconds.unwrap();
    assert!((3.0..=10.0).contains(&measured), "{window:?}");
    assert_eq!(window.clamp, Clamp::None);
    assert!(window.samples.unwrap() > 10.0, "{window:?}");
    drain.min = HumanDuration::from_secs(60);
    let window =
        analysis::measure_drain_window(&prometheus, &drain, &queries, &scope, &revisions).await.unwrap();
    assert_eq!((window.window, window.clamp), (Duration::from_secs(60), Clamp::RaisedToMin));
    let nothing = vec!["never-deployed".to_owned()];
    let window =
        analysis::measure_drain_window(&prometheus, &drain, &queries, &scope, &nothing).await.unwrap();
    assert_eq!((window.window, window.clamp), (Duration::from_secs(300), Clamp::NoData));
}

#[tokio::test]
async fn an_unreachable_prometheus_or_a_bad_query_is_inconclusive_not_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("http://127.0.0.1:{port}");
    let unreachable = spec(&address);
    let prometheus = Prometheus::new(&address, Duration::from_secs(2), &ClientOptions::default()).unwrap();
    let results =
        analysis::evaluate(&prometheus, &unreachable, &Queries::default(), &subject("c"), now()).await;
    assert_eq!(results.len(), 4);
    for result in &results {
        assert_eq!(result.verdict, Verdict::Inconclusive, "{result:?}");
        assert!(result.message.as_ref().unwrap().contains("unreachable"), "{result:?}");
    }

    let prometheus_process = start_prometheus(&[]).await;
    let mut spec = spec(&prometheus_process.url);
    spec.metrics[0].query = "sum(rate(broken[".into();
    let prometheus =
        Prometheus::new(&prometheus_process.url, Duration::from_secs(5), &ClientOptions::default()).unwrap();
    let results = analysis::evaluate(&prometheus, &spec, &Queries::default(), &subject("c"), now()).await;
    let custom = verdict(&results, "canary-traffic");
    assert_eq!(custom.verdict, Verdict::Inconclusive);
    assert!(custom.message.as_ref().unwrap().contains("refused"), "{custom:?}");
    // No data at all: too few calls, never a pass.
    assert!(results.iter().all(|r| r.verdict == Verdict::Inconclusive), "{results:#?}");
    drop(prometheus_process);

    // A Prometheus whose limits a good query exceeds answers errorType "execution" (HTTP 422):
    // its trouble, not the spec's — Inconclusive, never "refused" (no Stalled).
    let limited = start_prometheus_with(&[], &["--query.max-samples=100"]).await;
    let mut spec = self::spec(&limited.url);
    spec.metrics[0].query = "sum(count_over_time(vector(1)[10m:1s]))".into();
    let prometheus =
        Prometheus::new(&limited.url, Duration::from_secs(5), &ClientOptions::default()).unwrap();
    let results = analysis::evaluate(&prometheus, &spec, &Queries::default(), &subject("c"), now()).await;
    let custom = verdict(&results, "canary-traffic");
    assert_eq!(custom.verdict, Verdict::Inconclusive, "{custom:?}");
    let message = custom.message.as_deref().unwrap();
    assert!(message.contains("could not run the query") && message.contains("execution"), "{custom:?}");
    assert!(!mcp_rollout::analysis::is_rejected_query(message), "{custom:?}");
}

/// The operator pins its Prometheus client to the addresses its allow-list checked: a second
/// lookup of the name cannot send it elsewhere. Here `localhost` (resolved from /etc/hosts,
/// no DNS traffic) reaches Prometheus on 127.0.0.1 unpinned; pinned to 127.0.0.2, where
/// nothing listens, the same URL does not.
#[tokio::test]
async fn a_pinned_client_goes_only_to_the_checked_addresses() {
    let process = start_prometheus(&[]).await;
    let port: u16 = process.url.rsplit(':').next().unwrap().parse().unwrap();
    let url = format!("http://localhost:{port}");
    let spec = spec(&url);
    let unreachable = |results: &[CheckResult]| {
        results.iter().all(|r| r.message.as_deref().is_some_and(|m| m.contains("unreachable")))
    };

    let unpinned = Prometheus::new(&url, Duration::from_secs(5), &ClientOptions::default()).unwrap();
    let results = analysis::evaluate(&unpinned, &spec, &Queries::default(), &subject("c"), now()).await;
    assert!(!unreachable(&results), "{results:#?}");

    let elsewhere = [std::net::SocketAddr::from(([127, 0, 0, 2], port))];
    let pinned = Prometheus::new(
        &url,
        Duration::from_secs(5),
        &ClientOptions { pinned: Some(("localhost", &elsewhere)), ..ClientOptions::default() },
    )
    .unwrap();
    let results = analysis::evaluate(&pinned, &spec, &Queries::default(), &subject("c"), now()).await;
    assert!(unreachable(&results), "{results:#?}");
}

/// Prometheus behind mutual TLS (issue 22 item 7; its own `--web.config.file`, requiring and
/// verifying client certificates): the operator's client with the CA bundle and a client
/// certificate from `kubernetes.io/tls` material queries it; without the certificate, or
/// trusting only the system roots, it cannot; a bundle that is not PEM is refused up front.
#[tokio::test]
async fn prometheus_behind_mutual_tls_takes_the_bundle_and_the_client_certificate() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let issue = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = issue("localhost");
    let (client_cert, client_key) = issue("mcp-rollout-operator");
    let dir = std::env::temp_dir().join(format!("mcp-rollout-prometheus-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in [("server.crt", &server_cert), ("server.key", &server_key), ("ca.crt", &ca_pem)] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let config = format!(
        "tls_server_config:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {d}/ca.crt\n",
        d = dir.display()
    );
    let identity = format!("{client_cert}\n{client_key}");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let process = start_prometheus_serving(&[], &[], Some(Web { config, client })).await;
    let timeout = Duration::from_secs(5);

    let trusted = ClientOptions {
        ca_bundle_pem: Some(ca_pem.as_bytes()),
        identity_pem: Some(identity.as_bytes()),
        ..ClientOptions::default()
    };
    let prometheus = Prometheus::new(&process.url, timeout, &trusted).unwrap();
    assert_eq!(prometheus.instant("vector(1)").await.unwrap(), Some(1.0));

    let without_certificate = ClientOptions { identity_pem: None, ..trusted };
    let refused =
        Prometheus::new(&process.url, timeout, &without_certificate).unwrap().instant("vector(1)").await;
    assert!(matches!(refused, Err(QueryError::Unreachable(_))), "{refused:?}");
    let system_roots = ClientOptions { ca_bundle_pem: None, ..trusted };
    let untrusted = Prometheus::new(&process.url, timeout, &system_roots).unwrap().instant("vector(1)").await;
    assert!(matches!(untrusted, Err(QueryError::Unreachable(_))), "{untrusted:?}");
    let not_pem = ClientOptions { ca_bundle_pem: Some(b"not a certificate"), ..trusted };
    assert!(matches!(Prometheus::new(&process.url, timeout, &not_pem), Err(QueryError::Rejected(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}
