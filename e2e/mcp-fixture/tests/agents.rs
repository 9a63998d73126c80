//! mcp-agents against real mcp-fixture processes' servers on loopback: what agents experience
//! when all is well, when calls fail, when a router breaks session affinity, when a stream is
//! cut, and when a server shuts down gracefully.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcp_fixture::{
    Fixture, FixtureConfig,
    agents::{self, AgentEra, AgentTransport, AgentsConfig, Report},
};
use tokio::{net::TcpListener, task::JoinHandle};

async fn fixture(edit: impl FnOnce(&mut FixtureConfig)) -> Fixture {
    let mut config = FixtureConfig::for_tests();
    edit(&mut config);
    Fixture::start(config).await.unwrap()
}

fn config(target: String) -> AgentsConfig {
    AgentsConfig {
        target,
        allow_remote_target: false,
        path: "/mcp".into(),
        agents: 3,
        duration: 3.0,
        session_min: 1.0,
        session_max: 2.0,
        rate: 20.0,
        stream_share: 0.0,
        stream_seconds: 1.0,
        transport: AgentTransport::StreamableHttp,
        era: AgentEra::Handshake,
        max_retries: 5,
        max_calls: 10_000,
        no_keepalive: false,
        read_streams_to_end: false,
        seed: Some(3),
    }
}

/// A TCP proxy that sends each new connection to the next backend in turn (as kube-proxy
/// balances connections), and can cut every open connection at once.
struct Proxy {
    addr: SocketAddr,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let next = AtomicUsize::new(0);
        let tracked = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let backend = backends[next.fetch_add(1, Ordering::SeqCst) % backends.len()];
                tracked.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self { addr, connections, accept }
    }

    fn cut_all(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

fn ok(report: &Report) -> u64 {
    report.calls.get("ok").copied().unwrap_or(0)
}

#[tokio::test]
async fn healthy_server_every_call_succeeds_in_every_mode() {
    let server = fixture(|c| c.server_version = "v1".into()).await;
    for (transport, era) in [
        (AgentTransport::StreamableHttp, AgentEra::Handshake),
        (AgentTransport::StreamableHttp, AgentEra::Stateless),
        (AgentTransport::Sse, AgentEra::Handshake),
    ] {
        let mut c = config(server.url());
        (c.transport, c.era, c.duration, c.stream_share) = (transport, era, 2.0, 0.2);
        let report = agents::run(c).await.unwrap();
        assert!(ok(&report) > 10, "{transport:?}/{era:?}: {}", report.summary());
        assert_eq!(ok(&report), report.calls_total(), "{}", report.summary());
        assert_eq!((report.sessions_lost, report.streams_cut, report.retries), (0, 0, 0));
        assert!(report.streams_started > 0 && report.streams_started == report.streams_completed);
        assert_eq!(report.by_server_version.keys().collect::<Vec<_>>(), ["v1"]);
        assert!(report.sessions_completed >= 3);
    }
}

#[tokio::test]
async fn failing_calls_are_retried_like_real_agents_do() {
    let server = fixture(|c| c.error_rate = 0.3).await;
    let report = agents::run(config(server.url())).await.unwrap();
    assert!(report.retries > 0, "{}", report.summary());
    assert!(report.attempts > report.calls_total());
    // Six tries at 30% failure each: almost every call ends well.
    assert!(ok(&report) as f64 >= 0.95 * report.calls_total() as f64, "{}", report.summary());
}

#[tokio::test]
async fn a_router_without_session_affinity_loses_handshake_sessions() {
    let (a, b) = (fixture(|_| {}).await, fixture(|_| {}).await);
    let proxy = Proxy::start(vec![a.addr, b.addr]).await;
    let mut c = config(format!("http://{}", proxy.addr));
    c.no_keepalive = true;
    let report = agents::run(c).await.unwrap();
    assert!(report.sessions_lost > 0, "{}", report.summary());
    assert!(report.reinitializations > 0, "{}", report.summary());

    // The stateless era has no session to lose.
    let mut c = config(format!("http://{}", proxy.addr));
    (c.no_keepalive, c.era) = (true, AgentEra::Stateless);
    let report = agents::run(c).await.unwrap();
    assert_eq!(report.sessions_lost, 0, "{}", report.summary());
    assert_eq!(ok(&report), report.calls_total());
}

#[tokio::test]
async fn a_stream_ended_by_the_server_side_counts_as_cut() {
    let server = fixture(|_| {}).await;
    let proxy = Proxy::start(vec![server.addr]).await;
    let mut c = config(format!("http://{}", proxy.addr));
    (c.stream_share, c.stream_seconds, c.duration, c.agents, c.max_retries) = (1.0, 3.0, 1.5, 2, 0);
    let run = tokio::spawn(agents::run(c));
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.cut_all();
    let report = run.await.unwrap().unwrap();
    assert!(report.streams_cut >= 1, "{}", report.summary());
}

#[tokio::test]
async fn a_graceful_shutdown_cuts_no_stream() {
    let server = fixture(|_| {}).await;
    let mut c = config(server.url());
    (c.stream_share, c.stream_seconds, c.duration, c.agents, c.max_retries) = (1.0, 2.0, 4.0, 3, 0);
    let run = tokio::spawn(agents::run(c));
    // Shut down once every agent holds a session (their streamed calls follow at once, and go
    // on through the shutdown), not after a fixed time: a busy machine once had no session
    // open after 800 ms, so every agent was refused and nothing was tested.
    let metrics = format!("{}/metrics", server.url());
    let mut open = 0.0;
    for _ in 0..600 {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        open = mcp_fixture::metrics::sample_sum(&text, "mcp_active_sessions", &[]);
        if open >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(open >= 3.0, "the agents opened {open} session(s) in 30 s");
    server.begin_shutdown();
    let report = run.await.unwrap().unwrap();
    assert!(report.streams_started >= 3, "{}", report.summary());
    assert_eq!(report.streams_cut, 0, "{}", report.summary());
    assert_eq!(
        report.streams_completed,
        report.streams_started - report.calls.get("failed").copied().unwrap_or(0)
    );
}
