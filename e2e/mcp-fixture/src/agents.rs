//! Simulated autonomous agents: N concurrent agents, each working in sessions of random length,
//! calling tools at a rate with arguments valid for the v1 schema, sometimes starting a long
//! streamed `export_report`, retrying failed calls up to 5 times and re-initializing after a
//! lost session, as real agents do. What they experienced is counted in a [`Report`].
//! Bounded in count and time, and refuses any target that is not a loopback address.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::{ClientError, Era, LegacySseClient, Reply, StreamableClient};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentTransport {
    #[value(name = "streamable-http")]
    StreamableHttp,
    Sse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentEra {
    /// `initialize` sessions.
    Handshake,
    /// 2026-07-28 independent requests.
    Stateless,
}

/// What the agents do.
#[derive(Clone, Debug, Args, PartialEq)]
pub struct AgentsConfig {
    /// Base URL of the MCP server (loopback only, unless --allow-remote-target), e.g.
    /// http://127.0.0.1:8080.
    #[arg(long, env = "AGENTS_TARGET")]
    pub target: String,
    /// Allow a target off loopback: only for running inside a real cluster's pod network
    /// (the e2e scenarios with E2E_KUBECONFIG). Tests on one machine never set it.
    #[arg(long, default_value_t = false)]
    pub allow_remote_target: bool,
    /// MCP endpoint path (Streamable HTTP).
    #[arg(long, default_value = "/mcp")]
    pub path: String,
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// Total run time, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Session length is drawn uniformly from [min, max] seconds.
    #[arg(long, default_value_t = 2.0)]
    pub session_min: f64,
    #[arg(long, default_value_t = 5.0)]
    pub session_max: f64,
    /// Tool calls per second per agent.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Share of calls that are a streamed export_report.
    #[arg(long, default_value_t = 0.0)]
    pub stream_share: f64,
    /// Length of each export_report, seconds.
    #[arg(long, default_value_t = 2.0)]
    pub stream_seconds: f64,
    #[arg(long, value_enum, default_value = "streamable-http")]
    pub transport: AgentTransport,
    #[arg(long, value_enum, default_value = "handshake")]
    pub era: AgentEra,
    /// Retries after a failed call.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// Hard cap on calls across all agents.
    #[arg(long, default_value_t = 100_000)]
    pub max_calls: u64,
    /// Open a new connection for every request (no keep-alive), so a connection-balancing
    /// router picks a backend per request, as it does per new connection.
    #[arg(long, default_value_t = false)]
    pub no_keepalive: bool,
    /// Read each streamed answer's SSE stream to its end, so that its keep-alive connection
    /// carries the next request. By default an agent drops the stream once its answer has
    /// arrived, and the connection with it (the next request opens a new one).
    #[arg(long, default_value_t = false)]
    pub read_streams_to_end: bool,
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The command-line name of a value enum (its serde name is the same kebab-case).
fn value_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

impl AgentsConfig {
    /// The command line that gives this configuration (to run the agents elsewhere, e.g. in
    /// a pod of a real cluster).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--target={}", self.target),
            format!("--path={}", self.path),
            format!("--agents={}", self.agents),
            format!("--duration={}", self.duration),
            format!("--session-min={}", self.session_min),
            format!("--session-max={}", self.session_max),
            format!("--rate={}", self.rate),
            format!("--stream-share={}", self.stream_share),
            format!("--stream-seconds={}", self.stream_seconds),
            format!("--transport={}", value_name(&self.transport)),
            format!("--era={}", value_name(&self.era)),
            format!("--max-retries={}", self.max_retries),
            format!("--max-calls={}", self.max_calls),
        ];
        if self.allow_remote_target {
            args.push("--allow-remote-target".into());
        }
        if self.no_keepalive {
            args.push("--no-keepalive".into());
        }
        if self.read_streams_to_end {
            args.push("--read-streams-to-end".into());
        }
        if let Some(seed) = self.seed {
            args.push(format!("--seed={seed}"));
        }
        args
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    #[error("target `{0}` is not a loopback http URL; mcp-agents only sends traffic to this machine")]
    NotLoopback(String),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// What the agents experienced.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Final outcome of each logical call (after retries): ok, tool_error, rpc_error, failed.
    pub calls: BTreeMap<String, u64>,
    /// Answered attempts by the X-Server-Version that answered.
    pub by_server_version: BTreeMap<String, u64>,
    pub attempts: u64,
    pub retries: u64,
    pub sessions_opened: u64,
    pub sessions_completed: u64,
    /// 404 on a live session id.
    pub sessions_lost: u64,
    pub reinitializations: u64,
    pub connect_failures: u64,
    pub streams_started: u64,
    pub streams_completed: u64,
    /// The stream or connection ended, from the server side, before the final response.
    pub streams_cut: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
    #[serde(skip)]
    latencies_ms: Vec<f64>,
}

impl Report {
    fn count(&mut self, key: &str) {
        *self.calls.entry(key.to_owned()).or_default() += 1;
    }

    pub fn calls_total(&self) -> u64 {
        self.calls.values().sum()
    }

    fn finish(&mut self) {
        self.latencies_ms.sort_by(f64::total_cmp);
        let q = |p: f64| -> f64 {
            if self.latencies_ms.is_empty() {
                return 0.0;
            }
            let i = ((self.latencies_ms.len() as f64 - 1.0) * p).round() as usize;
            (self.latencies_ms[i] * 10.0).round() / 10.0
        };
        (self.latency_ms_p50, self.latency_ms_p90, self.latency_ms_p99) = (q(0.5), q(0.9), q(0.99));
    }

    /// A summary a person reads.
    pub fn summary(&self) -> String {
        format!(
            "calls: {:?} (attempts {}, retries {})\nby server version: {:?}\nsessions: opened {}, completed {}, lost {}, re-initialized {}, connect failures {}\nstreams: started {}, completed {}, cut {}\nlatency ms: p50 {} p90 {} p99 {}",
            self.calls,
            self.attempts,
            self.retries,
            self.by_server_version,
            self.sessions_opened,
            self.sessions_completed,
            self.sessions_lost,
            self.reinitializations,
            self.connect_failures,
            self.streams_started,
            self.streams_completed,
            self.streams_cut,
            self.latency_ms_p50,
            self.latency_ms_p90,
            self.latency_ms_p99
        )
    }
}

/// Refuses anything but http on a loopback address or `localhost`.
pub fn check_loopback(target: &str) -> Result<(), AgentsError> {
    let refuse = || AgentsError::NotLoopback(target.to_owned());
    let rest = target.strip_prefix("http://").ok_or_else(refuse)?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback { Ok(()) } else { Err(refuse()) }
}

enum Connection {
    Streamable(StreamableClient),
    Legacy(LegacySseClient),
}

impl Connection {
    async fn open(config: &AgentsConfig, http: &reqwest::Client) -> Result<(Self, Reply), ClientError> {
        let base = config.target.trim_end_matches('/');
        match config.transport {
            AgentTransport::Sse => {
                let (client, reply) = LegacySseClient::connect(http.clone(), base).await?;
                Ok((Self::Legacy(client), reply))
            }
            AgentTransport::StreamableHttp => {
                let era = match config.era {
                    AgentEra::Handshake => Era::Handshake,
                    AgentEra::Stateless => Era::Stateless,
                };
                let mut client = StreamableClient::new(http.clone(), format!("{base}{}", config.path), era)
                    .reading_streams_to_end(config.read_streams_to_end);
                let reply = client.connect().await?;
                Ok((Self::Streamable(client), reply))
            }
        }
    }

    async fn call(&mut self, tool: &str, args: Value, progress: bool) -> Result<Reply, ClientError> {
        match self {
            Self::Streamable(c) => c.call_tool(tool, args, progress).await,
            Self::Legacy(c) => c.call_tool(tool, args, progress).await,
        }
    }

    async fn close(self) {
        if let Self::Streamable(mut c) = self {
            c.close().await;
        }
    }
}

/// Runs the agents to the end of `config.duration` and returns what they experienced.
pub async fn run(config: AgentsConfig) -> Result<Report, AgentsError> {
    if !config.allow_remote_target {
        check_loopback(&config.target)?;
    }
    let mut builder =
        reqwest::Client::builder().timeout(Duration::from_secs_f64(config.stream_seconds + 30.0));
    if config.no_keepalive {
        builder = builder.pool_max_idle_per_host(0);
    }
    let http = builder.build()?;
    let report = Arc::new(Mutex::new(Report::default()));
    let deadline = Instant::now() + Duration::from_secs_f64(config.duration);
    let calls_budget = Arc::new(std::sync::atomic::AtomicU64::new(config.max_calls));
    let mut tasks = Vec::new();
    for n in 0..config.agents {
        let (config, http, report, budget) =
            (config.clone(), http.clone(), report.clone(), calls_budget.clone());
        let seed = config.seed.map_or_else(|| fastrand::u64(..), |s| s.wrapping_add(n as u64));
        tasks.push(tokio::spawn(async move {
            agent(config, http, report, budget, fastrand::Rng::with_seed(seed), deadline).await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut report = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report.finish();
    Ok(report)
}

fn v1_call(rng: &mut fastrand::Rng) -> (&'static str, Value) {
    match rng.u8(0..3) {
        0 => ("get_document", json!({"id": format!("doc-{}", rng.u8(1..50))})),
        1 => ("list_documents", json!({"limit": rng.u8(1..20)})),
        _ => {
            let query = ["runbook", "incident", "deploy"][rng.usize(0..3)];
            ("search_documents", json!({"query": query}))
        }
    }
}

async fn agent(
    config: AgentsConfig,
    http: reqwest::Client,
    report: Arc<Mutex<Report>>,
    budget: Arc<std::sync::atomic::AtomicU64>,
    mut rng: fastrand::Rng,
    deadline: Instant,
) {
    let record = |f: &mut dyn FnMut(&mut Report)| f(&mut report.lock().unwrap_or_else(|p| p.into_inner()));
    let pause = Duration::from_secs_f64(1.0 / config.rate.max(0.01));
    while Instant::now() < deadline {
        let mut connection = match Connection::open(&config, &http).await {
            Ok((c, _)) => c,
            Err(_) => {
                record(&mut |r| r.connect_failures += 1);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        record(&mut |r| r.sessions_opened += 1);
        let length = config.session_min + rng.f64() * (config.session_max - config.session_min).max(0.0);
        let session_end = (Instant::now() + Duration::from_secs_f64(length)).min(deadline);
        while Instant::now() < session_end {
            if budget
                .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |b| {
                    b.checked_sub(1)
                })
                .is_err()
            {
                break;
            }
            let streamed = rng.f64() < config.stream_share;
            let (tool, args) = if streamed {
                ("export_report", json!({"seconds": config.stream_seconds}))
            } else {
                v1_call(&mut rng)
            };
            if streamed {
                record(&mut |r| r.streams_started += 1);
            }
            let mut outcome = "failed";
            for attempt in 0..=config.max_retries {
                if attempt > 0 {
                    record(&mut |r| r.retries += 1);
                }
                let started = Instant::now();
                let result = connection.call(tool, args.clone(), streamed).await;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                record(&mut |r| r.attempts += 1);
                match result {
                    Ok(reply) => {
                        record(&mut |r| {
                            r.latencies_ms.push(ms);
                            let version = reply.server_version.clone().unwrap_or_else(|| "unknown".into());
                            *r.by_server_version.entry(version).or_default() += 1;
                        });
                        if reply.result["isError"] == true {
                            outcome = "tool_error";
                            continue;
                        }
                        outcome = "ok";
                        if streamed {
                            record(&mut |r| r.streams_completed += 1);
                        }
                        break;
                    }
                    Err(ClientError::SessionLost) => {
                        record(&mut |r| r.sessions_lost += 1);
                        match Connection::open(&config, &http).await {
                            Ok((c, _)) => {
                                connection = c;
                                record(&mut |r| r.reinitializations += 1);
                            }
                            Err(_) => record(&mut |r| r.connect_failures += 1),
                        }
                    }
                    Err(ClientError::StreamCut) => {
                        if streamed {
                            record(&mut |r| r.streams_cut += 1);
                        }
                        outcome = "failed";
                    }
                    Err(ClientError::Rpc { .. }) => outcome = "rpc_error",
                    Err(_) => outcome = "failed",
                }
            }
            record(&mut |r| r.count(outcome));
            tokio::time::sleep(pause.mul_f64(0.5 + rng.f64())).await;
        }
        connection.close().await;
        record(&mut |r| r.sessions_completed += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        for ok in
            ["http://127.0.0.1:8080", "http://127.1.0.7:80/x", "http://localhost:9", "http://[::1]:8080"]
        {
            assert!(check_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:80",
            "http://example.com",
            "https://127.0.0.1",
            "127.0.0.1:80",
            "http://192.168.1.1",
        ] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantiles_come_from_the_recorded_latencies() {
        let mut r = Report { latencies_ms: (1..=100).map(f64::from).collect(), ..Report::default() };
        r.finish();
        assert_eq!((r.latency_ms_p50, r.latency_ms_p90, r.latency_ms_p99), (51.0, 90.0, 99.0));
    }
}

#[cfg(test)]
mod command_line_tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: AgentsConfig,
    }

    #[test]
    fn a_configuration_survives_its_command_line() {
        let mut config = Cli::parse_from(["mcp-agents", "--target", "http://10.96.0.7:8080"]).config;
        config.duration = 75.5;
        config.era = AgentEra::Stateless;
        config.transport = AgentTransport::Sse;
        config.no_keepalive = true;
        config.allow_remote_target = true;
        config.seed = Some(7);
        let args = std::iter::once("mcp-agents".to_owned()).chain(config.to_args());
        assert_eq!(Cli::parse_from(args).config, config);
    }

    #[test]
    fn remote_targets_need_the_explicit_opt_in() {
        assert!(check_loopback("http://10.96.0.7:8080").is_err());
        assert!(check_loopback("http://127.0.0.1:8080").is_ok());
    }
}
