//! The session router in standalone mode, in front of two real `mcp-fixture` servers (stable
//! and canary, each holding its sessions in process) on loopback, under `mcp-agents` load:
//! handshake-era sessions over Streamable HTTP and legacy SSE with streamed calls lose nothing
//! and are split exactly by weight; a live weight change moves new sessions only; a token that
//! does not open, or names a backend that is gone, is 404; a tool route sends only that tool's
//! stateless calls to the canary. The same traffic through a per-connection round-robin (what
//! kube-proxy does) is run beside it and its losses printed.

#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use mcp_fixture::{
    agents::{self, AgentEra, AgentTransport, AgentsConfig, Report},
    metrics::sample_sum,
    server::Fixture,
};
use mcp_rollout::router::{
    proxy::Router,
    server,
    standalone::{self, StandaloneArgs},
};
use serde_json::json;
use tokio::{net::TcpListener, sync::oneshot};

struct Running {
    addr: SocketAddr,
    router: Arc<Router>,
    args: StandaloneArgs,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn fixture(version: &str) -> Fixture {
    support::fixture(|c| c.server_version = version.into()).await
}

fn standalone_args(stable: &Fixture, canary: &Fixture, weight: u32, extra: &[&str]) -> StandaloneArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: StandaloneArgs,
    }
    let mut argv = vec![
        "router".to_owned(),
        format!("--stable=http://{}", stable.addr),
        format!("--canary=http://{}", canary.addr),
        format!("--canary-weight={weight}"),
    ];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    Cli::parse_from(argv).args
}

async fn start_router(stable: &Fixture, canary: &Fixture, weight: u32, extra: &[&str]) -> Running {
    let args = standalone_args(stable, canary, weight, extra);
    let router = standalone::router(&args).unwrap();
    serve(router, args).await
}

async fn serve(router: Arc<Router>, args: StandaloneArgs) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    let serving = router.clone();
    tokio::spawn(async move {
        server::serve(listener, serving, async { stopped.await.unwrap_or(()) }, Duration::from_secs(5)).await;
    });
    Running { addr, router, args, stop: Some(stop) }
}

fn load(target: String, transport: AgentTransport, era: AgentEra, seconds: f64) -> AgentsConfig {
    AgentsConfig {
        target,
        allow_remote_target: false,
        path: "/mcp".into(),
        agents: 6,
        duration: seconds,
        session_min: 0.5,
        session_max: 1.5,
        rate: 10.0,
        stream_share: 0.2,
        stream_seconds: 0.5,
        transport,
        era,
        max_retries: 5,
        max_calls: 20_000,
        no_keepalive: false,
        read_streams_to_end: false,
        seed: Some(7),
    }
}

/// Sessions opened through the router, per revision, from its own metrics.
fn opened(router: &Router) -> (f64, f64) {
    let text = router.metrics.render(&router.sessions);
    let get = |revision: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("mcp_router_sessions_opened_total{{revision=\"{revision}\"}} "))
            })
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (get("stable"), get("canary"))
}

fn failed(report: &Report) -> u64 {
    report.calls.iter().filter(|(k, _)| k.as_str() != "ok").map(|(_, v)| v).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_sessions_on_both_transports_are_pinned_and_split_exactly_by_weight() {
    let (stable, canary) = (fixture("v1").await, fixture("v2").await);
    for (transport, weight) in [(AgentTransport::StreamableHttp, 25), (AgentTransport::Sse, 50)] {
        let router = start_router(&stable, &canary, weight, &[]).await;
        let report =
            agents::run(load(format!("http://{}", router.addr), transport, AgentEra::Handshake, 6.0))
                .await
                .unwrap();
        let (s, c) = opened(&router.router);
        let share = 100.0 * c / (s + c);
        println!(
            "router, {transport:?} at {weight}%: {} sessions, {share:.1}% of them on the canary; {}",
            s + c,
            report.summary()
        );
        assert!(s + c >= 20.0, "too few sessions to judge a split: {s} + {c}");
        assert!((share - f64::from(weight)).abs() <= 2.0, "{share:.1}% on the canary at weight {weight}");
        assert_eq!(report.sessions_lost, 0, "{}", report.summary());
        assert_eq!(report.streams_cut, 0, "{}", report.summary());
        assert_eq!(failed(&report), 0, "{}", report.summary());
        assert!(report.streams_completed > 0, "streamed calls ran: {}", report.summary());
        assert!(report.by_server_version.contains_key("v1") && report.by_server_version.contains_key("v2"));
    }

    // The same handshake traffic through a per-connection round-robin over the two servers
    // (what a plain Service does), for comparison: sessions are lost there.
    let rr = support::round_robin_proxy(&[stable.addr, canary.addr]).await;
    let mut config = load(format!("http://{rr}"), AgentTransport::StreamableHttp, AgentEra::Handshake, 4.0);
    config.no_keepalive = true;
    let plain = agents::run(config).await.unwrap();
    println!("per-connection round-robin, same traffic: {}", plain.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_change_moves_new_sessions_and_leaves_open_ones_where_they_are() {
    let (stable, canary) = (fixture("v1").await, fixture("v2").await);
    let router = start_router(&stable, &canary, 0, &[]).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/mcp", router.addr);
    let mut old = mcp_fixture::client::StreamableClient::new(
        http.clone(),
        url.clone(),
        mcp_fixture::client::Era::Handshake,
    );
    assert_eq!(old.connect().await.unwrap().server_version.as_deref(), Some("v1"));
    // All new sessions to the canary now, as the admin endpoint would set it.
    router.router.set_table(standalone::table(&router.args, 100).unwrap());
    let mut new = mcp_fixture::client::StreamableClient::new(
        http.clone(),
        url.clone(),
        mcp_fixture::client::Era::Handshake,
    );
    assert_eq!(new.connect().await.unwrap().server_version.as_deref(), Some("v2"));
    for _ in 0..5 {
        let reply = old.call_tool("search_documents", json!({"query": "runbook"}), false).await.unwrap();
        assert_eq!(reply.server_version.as_deref(), Some("v1"), "the open session stays on its backend");
    }
    let loads = router.router.sessions.by_revision();
    assert_eq!((loads["stable"].sessions, loads["canary"].sessions), (1, 1), "{loads:?}");
    old.close().await;
    assert_eq!(
        router.router.sessions.by_revision().get("stable").map(|l| l.sessions),
        None,
        "DELETE ends it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_does_not_open_or_names_a_gone_backend_is_404_never_another_pod() {
    let (stable, canary) = (fixture("v1").await, fixture("v2").await);
    let router = start_router(&stable, &canary, 100, &[]).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/mcp", router.addr);
    let call = |session: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(&url)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25")
                .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
                .send()
                .await
                .unwrap()
        }
    };
    let mut client = mcp_fixture::client::StreamableClient::new(
        http.clone(),
        url.clone(),
        mcp_fixture::client::Era::Handshake,
    );
    client.connect().await.unwrap();
    // A session id the backend itself issued, not sealed by the router: refused, not guessed.
    let forged = call("0123456789abcdef".into()).await;
    assert_eq!(forged.status(), 404);
    let body: serde_json::Value = forged.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32001, "{body}");
    // The canary's backend leaves the table (its pod gone): its sessions are 404, the client's
    // signal to start a new one, which lands on what is there.
    let mut only_stable = standalone::table(&router.args, 0).unwrap();
    only_stable.backends.remove("canary");
    only_stable.revisions.retain(|r| r.revision == "stable");
    router.router.set_table(only_stable);
    let gone = client.call_tool("search_documents", json!({"query": "x"}), false).await;
    assert!(matches!(gone, Err(mcp_fixture::client::ClientError::SessionLost)), "{gone:?}");
    assert_eq!(client.connect().await.unwrap().server_version.as_deref(), Some("v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_route_sends_only_that_tools_stateless_calls_to_the_canary() {
    let (stable, canary) = (fixture("v1").await, fixture("v2").await);
    let router = start_router(&stable, &canary, 0, &["--tool-route=search_documents=100"]).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/mcp", router.addr);
    let mut client =
        mcp_fixture::client::StreamableClient::new(http, url, mcp_fixture::client::Era::Stateless);
    assert_eq!(client.connect().await.unwrap().server_version.as_deref(), Some("v1"));
    for _ in 0..10 {
        let routed = client.call_tool("search_documents", json!({"query": "a"}), false).await.unwrap();
        assert_eq!(routed.server_version.as_deref(), Some("v2"), "the routed tool goes to the canary");
        let other = client.call_tool("get_document", json!({"id": "doc-1"}), false).await.unwrap();
        assert_eq!(other.server_version.as_deref(), Some("v1"), "every other call stays on stable");
    }
    // A call whose `Mcp-Name` names the routed tool while its body calls another is refused
    // (HeaderMismatch), so a tool route cannot be used to reach the canary with another tool.
    let calls = |f: &Fixture| {
        let f = f.url();
        async move {
            let text = reqwest::get(format!("{f}/metrics")).await.unwrap().text().await.unwrap();
            sample_sum(&text, "mcp_tool_call_duration_seconds_count", &[])
        }
    };
    let before = (calls(&stable).await, calls(&canary).await);
    let smuggled = reqwest::Client::new()
        .post(format!("http://{}/mcp", router.addr))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "search_documents")
        .json(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": {"name": "get_document", "arguments": {"id": "doc-1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(smuggled.status(), 400);
    let body: serde_json::Value = smuggled.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32020, "{body}");
    assert_eq!((calls(&stable).await, calls(&canary).await), before, "the refused call reached no server");
}

async fn fixture_metrics(fixture: &Fixture) -> String {
    reqwest::get(format!("{}/metrics", fixture.url())).await.unwrap().text().await.unwrap()
}

/// The router counts every tool call and how it ended from the traffic alone, and its counts
/// are the servers' own: calls, failed calls (`isError` results) and schema-validation errors
/// (here reported as SEP-1303 results), per revision, over Streamable HTTP (handshake and
/// stateless) and legacy SSE with streamed calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routers_call_metrics_match_what_the_servers_count() {
    let stable = fixture("v1").await;
    let canary = support::fixture(|c| {
        c.server_version = "v2".into();
        c.error_rate = 0.2;
        c.schema_error_rate = 0.1;
        c.schema_error_style = mcp_fixture::config::SchemaErrorStyle::Result;
    })
    .await;
    let router = start_router(&stable, &canary, 50, &[]).await;
    let target = format!("http://{}", router.addr);
    for (transport, era) in [
        (AgentTransport::StreamableHttp, AgentEra::Handshake),
        (AgentTransport::Sse, AgentEra::Handshake),
        (AgentTransport::StreamableHttp, AgentEra::Stateless),
    ] {
        let report = agents::run(load(target.clone(), transport, era, 3.0)).await.unwrap();
        println!("{transport:?} {era:?}: {}", report.summary());
    }
    let routed = router.router.metrics.render(&router.router.sessions);
    for (revision, server) in [("stable", &stable), ("canary", &canary)] {
        let own = fixture_metrics(server).await;
        let calls = sample_sum(&own, "mcp_tool_call_duration_seconds_count", &[]);
        let failed = sample_sum(&own, "mcp_tool_call_errors_total", &[("error_type", "internal")]);
        let schema = sample_sum(&own, "mcp_tool_call_errors_total", &[("error_type", "schema_validation")]);
        let r = |m: &str, l: &[(&str, &str)]| {
            let mut labels = vec![("revision", revision)];
            labels.extend_from_slice(l);
            sample_sum(&routed, m, &labels)
        };
        let seen = (
            r("mcp_router_tool_calls_total", &[]),
            r("mcp_router_tool_call_errors_total", &[("error_type", "tool")]),
            r("mcp_router_tool_call_errors_total", &[("error_type", "schema_validation")]),
        );
        println!(
            "{revision}: server counted (calls, failed, schema) = {:?}, router {seen:?}",
            (calls, failed, schema)
        );
        assert!(calls > 50.0, "{revision}: too few calls to compare: {calls}");
        assert_eq!(seen, (calls, failed, schema), "{revision}: the router's counts are the server's");
        assert_eq!(
            r("mcp_router_tool_call_errors_total", &[]),
            failed + schema,
            "{revision}: no other error seen"
        );
        assert_eq!(
            r("mcp_router_tool_call_duration_seconds_count", &[]),
            calls,
            "{revision}: every call here went through one router replica, so every one was timed"
        );
    }
    assert!(sample_sum(&routed, "mcp_router_tool_call_errors_total", &[("revision", "canary")]) > 0.0);
    assert!(
        sample_sum(&routed, "mcp_router_session_duration_seconds_count", &[]) > 0.0,
        "sessions ended and were timed"
    );
}

/// A rollback with sessions open on the canary: new sessions go to stable at once; a streamed
/// call in flight on the canary finishes (on Streamable HTTP and on a legacy session's stream);
/// each canary session's next request is 404 and its client re-initializes on stable; the
/// router then carries nothing on the canary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_evacuates_the_canarys_sessions_at_their_next_request() {
    use mcp_fixture::client::{ClientError, Era, LegacySseClient, StreamableClient};
    let (stable, canary) = (fixture("v1").await, fixture("v2").await);
    let router = start_router(&stable, &canary, 100, &[]).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", router.addr);
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut c = StreamableClient::new(http.clone(), format!("{base}/mcp"), Era::Handshake);
        assert_eq!(c.connect().await.unwrap().server_version.as_deref(), Some("v2"));
        sessions.push(c);
    }
    let (mut legacy, reply) = LegacySseClient::connect(http.clone(), &base).await.unwrap();
    assert_eq!(reply.server_version.as_deref(), Some("v2"));
    let mut streaming = sessions.pop().unwrap();
    let streamed = tokio::spawn(async move {
        let reply = streaming.call_tool("export_report", json!({"seconds": 1.5}), true).await;
        (streaming, reply)
    });
    let legacy_streamed = tokio::spawn(async move {
        let reply = legacy.call_tool("export_report", json!({"seconds": 1.5}), true).await;
        (legacy, reply)
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let evacuated = ["canary".to_owned()].into();
    router.router.set_table(standalone::table_with(&router.args, 0, &evacuated).unwrap());
    // The operator lifts the evacuation as soon as the router carries no call or stream on the
    // canary, while its pods may still be terminating: sessions pinned there still move.
    router.router.set_table(standalone::table(&router.args, 0).unwrap());

    // Calls in flight finish on the revision that took them.
    let (streaming, reply) = streamed.await.unwrap();
    let reply = reply.expect("the streamed call in flight finished");
    assert_eq!(reply.server_version.as_deref(), Some("v2"));
    assert!(reply.progress_events > 0, "it streamed");
    let (mut legacy, reply) = legacy_streamed.await.unwrap();
    reply.expect("the legacy call in flight was answered on its stream before the stream ended");
    // Then every canary session's next request is 404, and it starts again on stable.
    sessions.push(streaming);
    for c in &mut sessions {
        let next = c.call_tool("search_documents", json!({"query": "x"}), false).await;
        assert!(matches!(next, Err(ClientError::SessionLost)), "{next:?}");
        assert_eq!(c.connect().await.unwrap().server_version.as_deref(), Some("v1"));
        let again = c.call_tool("search_documents", json!({"query": "x"}), false).await.unwrap();
        assert_eq!(again.server_version.as_deref(), Some("v1"));
    }
    let next = legacy.call_tool("search_documents", json!({"query": "x"}), false).await;
    assert!(matches!(next, Err(ClientError::SessionLost | ClientError::StreamCut)), "{next:?}");
    let (_, reply) = LegacySseClient::connect(http.clone(), &base).await.unwrap();
    assert_eq!(reply.server_version.as_deref(), Some("v1"));
    // Nothing is left on the canary: the legacy stream was ended between events.
    let mut idle = false;
    for _ in 0..50 {
        idle = router.router.sessions.by_revision().get("canary").is_none_or(|l| l.is_idle());
        if idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(idle, "canary load left: {:?}", router.router.sessions.by_revision());
    let routed = router.router.metrics.render(&router.router.sessions);
    assert!(
        sample_sum(&routed, "mcp_router_session_duration_seconds_count", &[("revision", "canary")]) >= 4.0,
        "the evacuated sessions ended, and were timed: {routed}"
    );
}

/// The same rollback under agent load, on both transports, with streamed calls: no call fails
/// and no stream is cut; sessions on the canary are re-initialized on stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evacuation_under_load_fails_no_call_and_cuts_no_stream() {
    let (stable, canary) = (fixture("v1").await, fixture("v2").await);
    for transport in [AgentTransport::StreamableHttp, AgentTransport::Sse] {
        let router = start_router(&stable, &canary, 50, &[]).await;
        let mut config = load(format!("http://{}", router.addr), transport, AgentEra::Handshake, 5.0);
        config.session_min = 3.0;
        config.session_max = 6.0;
        config.stream_share = 0.3;
        config.stream_seconds = 1.0;
        let traffic = tokio::spawn(agents::run(config));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let on_canary = router.router.sessions.by_revision().get("canary").map_or(0, |l| l.sessions);
        let evacuated = ["canary".to_owned()].into();
        router.router.set_table(standalone::table_with(&router.args, 0, &evacuated).unwrap());
        let report = traffic.await.unwrap().unwrap();
        println!("{transport:?}: {on_canary} sessions on the canary at the rollback; {}", report.summary());
        assert!(on_canary > 0, "sessions were open on the canary at the rollback");
        assert_eq!(failed(&report), 0, "{}", report.summary());
        assert_eq!(report.streams_cut, 0, "{}", report.summary());
        assert!(report.reinitializations >= 1, "canary sessions started again: {}", report.summary());
        let left = router.router.sessions.by_revision().get("canary").cloned().unwrap_or_default();
        assert!(left.is_idle(), "{left:?}");
    }
}

/// A router with no table yet (a Kubernetes-mode replica before its watches have synced)
/// cannot know where a session lives: it answers 503 with Retry-After, for pinned and new
/// sessions alike — never 404, which would end a live session — and routes once a table is in
/// force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_with_no_table_yet_answers_retry_never_session_not_found() {
    use mcp_rollout::router::{
        proxy::Limits,
        sessions::Sessions,
        token::{Keys, Pin},
    };
    let (stable, canary) = (fixture("v1").await, fixture("v2").await);
    let args = standalone_args(&stable, &canary, 0, &[]);
    let key = [5u8; 32];
    let router = Arc::new(Router::unsynced(
        Keys::new(&key, None).unwrap(),
        Sessions::new(Duration::from_secs(60), 100),
        Limits::default(),
    ));
    let running = serve(router.clone(), args.clone()).await;
    let url = format!("http://{}/mcp", running.addr);
    let http = reqwest::Client::new();
    let mut client = mcp_fixture::client::StreamableClient::new(
        http.clone(),
        url.clone(),
        mcp_fixture::client::Era::Handshake,
    );
    let pinned = Keys::new(&key, None)
        .unwrap()
        .seal(&Pin { backend: "stable".into(), revision: "stable".into(), session: "s-1".into(), opened: 0 })
        .unwrap();
    let call = || {
        http.post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", pinned.clone())
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .send()
    };
    let early = call().await.unwrap();
    assert_eq!(early.status(), 503, "a pinned session before any table");
    assert_eq!(early.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert!(client.connect().await.is_err(), "no new session before any table");
    router.set_table(standalone::table(&args, 0).unwrap());
    assert_ne!(call().await.unwrap().status(), 503, "routed to its backend once a table is in force");
    assert_eq!(client.connect().await.unwrap().server_version.as_deref(), Some("v1"));
}

/// A `subscriptions/listen` stream (2026-07-28) stays on the server it reached for its life,
/// whatever the weights do meanwhile, and is counted as an open stream there (not as a request
/// in flight, which would hold a drain to its maximum); when its revision is evacuated it is
/// ended between two events, and the client's next listen reaches where the weights say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_stream_stays_on_its_server_and_ends_when_its_revision_is_evacuated() {
    let (stable, canary) = (fixture("v1").await, fixture("v2").await);
    let router = start_router(&stable, &canary, 100, &[]).await;
    let listen = || {
        reqwest::Client::new()
            .post(format!("http://{}/mcp", router.addr))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "subscriptions/listen")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": {"name": "router-test", "version": "0"},
                    "io.modelcontextprotocol/clientCapabilities": {}
                },
                "notifications": {"toolsListChanged": true}
            }}))
            .send()
    };
    let version = |r: &reqwest::Response| {
        r.headers().get("x-server-version").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    let mut stream = listen().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(version(&stream), "v2");
    let mut seen = String::new();
    while !seen.contains("notifications/subscriptions/acknowledged") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("the stream is open")));
    }
    let load =
        |revision: &str| router.router.sessions.by_revision().get(revision).cloned().unwrap_or_default();
    assert_eq!((load("canary").streams, load("canary").in_flight), (1, 0), "{:?}", load("canary"));

    // All new work to stable: the open stream stays where it is.
    router.router.set_table(standalone::table(&router.args, 0).unwrap());
    let still = tokio::time::timeout(Duration::from_secs(1), stream.chunk()).await;
    assert!(still.is_err(), "the stream went on through a weight change: {still:?}");
    assert_eq!(load("canary").streams, 1);

    // The canary evacuated: the stream ends (it is between events), and listening again
    // reaches stable.
    let evacuated = ["canary".to_owned()].into();
    router.router.set_table(standalone::table_with(&router.args, 0, &evacuated).unwrap());
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => {}
                other => break other.map(|_| ()),
            }
        }
    })
    .await;
    assert!(matches!(ended, Ok(Ok(()))), "the listen stream ended cleanly: {ended:?}");
    let again = listen().await.unwrap();
    assert_eq!(version(&again), "v1");
    assert_eq!(load("canary").streams, 0);
}
