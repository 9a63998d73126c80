//! mcp-fixture over real sockets on loopback: both transports, both protocol eras, the profiles,
//! the fault knobs within tolerance, the metrics, and a shutdown that does not cut open streams.
//! The client here is plain HTTP + JSON-RPC on purpose, so what is checked is the wire itself.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use futures::StreamExt;
use mcp_fixture::{Fixture, FixtureConfig, Profile, SchemaErrorStyle};
use serde_json::{Value, json};

const ACCEPT: &str = "application/json, text/event-stream";

async fn start(edit: impl FnOnce(&mut FixtureConfig)) -> Fixture {
    let mut config = FixtureConfig::for_tests();
    edit(&mut config);
    Fixture::start(config).await.unwrap()
}

/// The JSON-RPC message with `id` in a JSON or SSE response body.
fn response_with_id(body: &str, id: i64) -> Value {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return v;
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no response with id {id} in {body}"))
}

/// A handshake-era session over Streamable HTTP.
struct Session {
    http: reqwest::Client,
    url: String,
    id: String,
    version: String,
}

impl Session {
    async fn open(fixture: &Fixture, version: &str) -> Self {
        let http = reqwest::Client::new();
        let url = format!("{}/mcp", fixture.url());
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
        let response = http.post(&url).header("accept", ACCEPT).json(&init).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-server-version"));
        let id = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let body = response_with_id(&response.text().await.unwrap(), 1);
        let version = body["result"]["protocolVersion"].as_str().unwrap().to_owned();
        let session = Self { http, url, id, version };
        let ack = session.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        assert_eq!(ack.status(), 202);
        session
    }

    async fn send(&self, message: Value) -> reqwest::Response {
        self.http
            .post(&self.url)
            .header("accept", ACCEPT)
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", &self.version)
            .json(&message)
            .send()
            .await
            .unwrap()
    }

    async fn request(&self, id: i64, method: &str, params: Value) -> Value {
        let response =
            self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        response_with_id(&response.text().await.unwrap(), id)
    }

    async fn call(&self, id: i64, tool: &str, arguments: Value) -> Value {
        self.request(id, "tools/call", json!({"name": tool, "arguments": arguments})).await
    }
}

fn tool_names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A stateless (2026-07-28) request: `_meta` envelope and routing headers, no session.
async fn stateless(
    fixture: &Fixture,
    id: i64,
    method: &str,
    mut params: Value,
    version: &str,
) -> (u16, Value) {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}
    });
    let mut request = reqwest::Client::new()
        .post(format!("{}/mcp", fixture.url()))
        .header("accept", ACCEPT)
        .header("mcp-protocol-version", version)
        .header("mcp-method", method);
    if let Some(name) = params["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    let response = request
        .json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response_with_id(&response.text().await.unwrap(), id))
}

#[tokio::test]
async fn handshake_era_session_lists_the_profile_tools_and_calls_one() {
    for (profile, expected) in [
        (Profile::V1, vec!["get_document", "list_documents", "search_documents", "export_report"]),
        (Profile::V2Breaking, vec!["get_document", "search_documents", "export_report"]),
    ] {
        let fixture = start(|c| c.profile = Some(profile)).await;
        let session = Session::open(&fixture, "2025-06-18").await;
        assert_eq!(session.version, "2025-06-18");
        assert_eq!(tool_names(&session.request(2, "tools/list", json!({})).await), expected);
        let result = session.call(3, "search_documents", json!({"query": "runbook"})).await;
        assert_eq!(result["result"]["isError"], false);
        assert_eq!(result["result"]["structuredContent"]["servedBy"], "test");
    }
}

#[tokio::test]
async fn a_session_unknown_to_the_process_gets_404() {
    let fixture = start(|_| {}).await;
    let mut session = Session::open(&fixture, "2025-11-25").await;
    session.id = "not-a-session-of-this-pod".into();
    let response = session.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn stateless_era_discovers_and_calls_without_a_session() {
    let fixture = start(|_| {}).await;
    let (status, discover) = stateless(&fixture, 1, "server/discover", json!({}), "2026-07-28").await;
    assert_eq!(status, 200);
    let versions = &discover["result"]["supportedVersions"];
    assert!(versions.as_array().unwrap().contains(&json!("2026-07-28")), "{discover}");
    let (_, call) = stateless(
        &fixture,
        2,
        "tools/call",
        json!({"name": "get_document", "arguments": {"id": "a"}}),
        "2026-07-28",
    )
    .await;
    assert_eq!(call["result"]["structuredContent"]["id"], "a");
    let (status, unsupported) = stateless(&fixture, 3, "tools/list", json!({}), "2027-01-01").await;
    assert_eq!(status, 400);
    assert_eq!(unsupported["error"]["code"], -32022);
    assert!(unsupported["error"]["data"]["supported"].as_array().unwrap().contains(&json!("2025-11-25")));
}

#[tokio::test]
async fn a_fixture_limited_to_the_handshake_era_refuses_the_stateless_one() {
    let fixture = start(|c| c.protocol_versions = vec!["2025-06-18".into(), "2025-11-25".into()]).await;
    let (_, discover) = stateless(&fixture, 1, "server/discover", json!({}), "2025-11-25").await;
    assert_eq!(discover["result"]["supportedVersions"], json!(["2025-06-18", "2025-11-25"]));
    let (_, refused) = stateless(&fixture, 2, "tools/list", json!({}), "2026-07-28").await;
    assert_eq!(refused["error"]["code"], -32022, "{refused}");
    let session = Session::open(&fixture, "2025-06-18").await;
    assert_eq!(session.version, "2025-06-18");
}

#[tokio::test]
async fn legacy_sse_transport_announces_its_endpoint_and_answers_on_the_stream() {
    let fixture = start(|_| {}).await;
    let http = reqwest::Client::new();
    let response = http.get(format!("{}/sse", fixture.url())).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = response.bytes_stream();
    let mut buffer = String::new();
    let mut next_data = async |event: &str| -> String {
        loop {
            if let Some(start) = buffer.find(&format!("event: {event}\ndata: ")) {
                let rest = &buffer[start..];
                if let Some(end) = rest.find("\n\n") {
                    let data = rest[rest.find("data: ").unwrap() + 6..end].to_owned();
                    buffer = buffer[start + end + 2..].to_owned();
                    return data;
                }
            }
            let chunk =
                tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap().unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let endpoint = next_data("endpoint").await;
    assert!(endpoint.starts_with("/messages?sessionId="), "{endpoint}");
    let post = |message: Value| http.post(format!("{}{endpoint}", fixture.url())).json(&message).send();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    assert_eq!(post(init).await.unwrap().status(), 202);
    let answer: Value = serde_json::from_str(&next_data("message").await).unwrap();
    assert_eq!(answer["result"]["protocolVersion"], "2024-11-05");
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await.unwrap();
    post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await.unwrap();
    let tools: Value = serde_json::from_str(&next_data("message").await).unwrap();
    assert_eq!(tool_names(&tools).len(), 4);
    assert_eq!(fixture.shared.metrics.active("sse"), 1);
    let unknown = http
        .post(format!("{}/messages?sessionId=nope", fixture.url()))
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn fault_rates_are_what_was_configured_and_metrics_count_them() {
    let fixture = start(|c| {
        c.error_rate = 0.3;
        c.schema_error_rate = 0.1;
        c.seed = Some(7);
    })
    .await;
    let session = Session::open(&fixture, "2025-11-25").await;
    let (mut errors, mut schema_errors) = (0, 0);
    let calls = 400;
    for id in 0..calls {
        let r = session.call(100 + id, "get_document", json!({"id": "x"})).await;
        if r["error"]["code"] == -32602 {
            schema_errors += 1;
        } else if r["result"]["isError"] == true {
            errors += 1;
        }
    }
    let schema_share = f64::from(schema_errors) / f64::from(calls as i32);
    // Errors are rolled only on calls that passed the schema dice: 0.9 × 0.3 = 0.27.
    let error_share = f64::from(errors) / f64::from(calls as i32);
    assert!((0.05..=0.15).contains(&schema_share), "schema errors {schema_share}");
    assert!((0.20..=0.34).contains(&error_share), "errors {error_share}");
    let metrics = reqwest::get(format!("{}/metrics", fixture.url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!(
        r#"mcp_tool_call_errors_total{{tool="get_document",error_type="schema_validation",version="test"}} {schema_errors}"#
    )));
    assert!(metrics.contains(&format!(
        r#"mcp_tool_call_errors_total{{tool="get_document",error_type="internal",version="test"}} {errors}"#
    )));
}

#[tokio::test]
async fn a_server_that_degrades_after_a_while_fails_only_then() {
    let healthy_for = std::time::Duration::from_secs(3);
    let before_start = std::time::Instant::now();
    let fixture = start(|c| {
        c.error_rate = 1.0;
        c.errors_after_seconds = healthy_for.as_secs();
    })
    .await;
    let after_start = std::time::Instant::now();
    let session = Session::open(&fixture, "2025-11-25").await;
    let r = session.call(2, "get_document", json!({"id": "x"})).await;
    // Judged only if answered within the healthy time (always, unless the machine stalled
    // for seconds): the test holds on a busy machine either way.
    if before_start.elapsed() < healthy_for {
        assert_ne!(r["result"]["isError"], true, "healthy at first: {r}");
    }
    tokio::time::sleep(
        healthy_for.saturating_sub(after_start.elapsed()) + std::time::Duration::from_millis(100),
    )
    .await;
    let r = session.call(3, "get_document", json!({"id": "x"})).await;
    assert_eq!(r["result"]["isError"], true, "failing once the time has passed: {r}");
}

#[tokio::test]
async fn schema_errors_come_either_as_jsonrpc_or_as_an_error_result() {
    for (style, jsonrpc) in [(SchemaErrorStyle::Jsonrpc, true), (SchemaErrorStyle::Result, false)] {
        let fixture = start(|c| {
            c.profile = Some(Profile::V2Breaking);
            c.schema_error_style = style;
        })
        .await;
        let session = Session::open(&fixture, "2025-06-18").await;
        // A v1 call (no tenant) against v2-breaking: a real schema error.
        let r = session.call(2, "get_document", json!({"id": "a"})).await;
        if jsonrpc {
            assert_eq!(r["error"]["code"], -32602, "{r}");
        } else {
            assert_eq!(r["result"]["isError"], true, "{r}");
            assert!(r["result"]["content"][0]["text"].as_str().unwrap().contains("tenant"));
        }
    }
}

#[tokio::test]
async fn latency_is_added_to_tool_calls() {
    let fixture = start(|c| c.latency_ms = 150).await;
    let session = Session::open(&fixture, "2025-06-18").await;
    let started = std::time::Instant::now();
    session.call(2, "get_document", json!({"id": "a"})).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn failing_initialize_is_an_error_not_a_session() {
    let fixture = start(|c| c.fail_initialize = true).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let response = reqwest::Client::new()
        .post(format!("{}/mcp", fixture.url()))
        .header("accept", ACCEPT)
        .json(&init)
        .send()
        .await
        .unwrap();
    let body = response_with_id(&response.text().await.unwrap(), 1);
    assert_eq!(body["error"]["code"], -32603, "{body}");
    let (_, discover) = stateless(&fixture, 2, "server/discover", json!({}), "2026-07-28").await;
    assert_eq!(discover["error"]["code"], -32603, "{discover}");
}

#[tokio::test]
async fn slow_start_is_not_ready_then_ready() {
    let fixture = start(|c| c.slow_start_seconds = 1).await;
    let health =
        || async { reqwest::get(format!("{}/healthz", fixture.url())).await.unwrap().status().as_u16() };
    assert_eq!(health().await, 503);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(health().await, 200);
}

#[tokio::test]
async fn shutdown_refuses_new_sessions_and_finishes_the_open_stream() {
    let fixture = start(|_| {}).await;
    let session = Session::open(&fixture, "2025-11-25").await;
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "export_report", "arguments": {"seconds": 2}, "_meta": {"progressToken": "p1"}}});
    let stream = session.send(call).await;
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    assert_eq!(fixture.shared.metrics.active("streamable-http"), 1);

    fixture.begin_shutdown();
    // A new session is refused while the open stream keeps flowing.
    let fresh = reqwest::Client::new()
        .post(format!("{}/mcp", fixture.url()))
        .header("accept", ACCEPT)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await;
    assert!(fresh.is_err() || fresh.unwrap().status() == 503, "a new session was accepted during shutdown");
    let body = stream.text().await.unwrap();
    assert!(body.contains("notifications/progress"), "{body}");
    let done = response_with_id(&body, 9);
    assert!(done["result"]["content"][0]["text"].as_str().unwrap().contains("report of 2s ready"), "{done}");
}

#[tokio::test]
async fn a_fixture_without_metrics_serves_mcp_and_no_metrics() {
    let fixture = start(|c| c.metrics = false).await;
    let response = reqwest::get(format!("{}/metrics", fixture.url())).await.unwrap();
    assert_eq!(response.status(), 404, "no instrumentation at all");
    let session = Session::open(&fixture, "2025-11-25").await;
    let r = session.call(7, "get_document", json!({"id": "doc-1"})).await;
    assert!(r["result"]["content"].is_array(), "{r}");
}

/// With `--tls-cert`/`--tls-key` the fixture serves HTTPS only: a client trusting its CA
/// reaches it under the certificate's name; plain HTTP gets no answer.
#[tokio::test]
async fn with_a_certificate_it_serves_https_only() {
    let dir = std::env::temp_dir().join(format!("mcp-fixture-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["docs.team.svc".to_owned()]).unwrap();
    std::fs::write(dir.join("tls.crt"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), certified.signing_key.serialize_pem()).unwrap();
    let fixture = start(|c| {
        c.tls_cert = Some(dir.join("tls.crt"));
        c.tls_key = Some(dir.join("tls.key"));
    })
    .await;
    let port = fixture.addr.port();
    let ca = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("docs.team.svc", fixture.addr)
        .no_proxy()
        .build()
        .unwrap();
    let health = client.get(format!("https://docs.team.svc:{port}/healthz")).send().await.unwrap();
    assert!(health.status().is_success(), "{health:?}");

    let plain = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    assert!(plain.get(format!("http://{}/healthz", fixture.addr)).send().await.is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
