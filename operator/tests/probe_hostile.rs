#![allow(clippy::unwrap_used)]
//! The probe against broken and hostile servers, written here as tiny local servers: it must
//! fail with the right class, within its deadline, with bounded memory, and never panic.
//! Also: redirects, auth headers, session loss, -32022 negotiation and TLS trust.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use mcp_rollout::probe::{self, FailureKind, ProbeConfig, ProbeReport, ToolCallCheck};
use serde_json::{Value, json};

type Handler = Arc<dyn Fn(&Method, &HeaderMap, Value) -> Response + Send + Sync>;

/// Serves `handler` for every request on a loopback port; returns the base URL.
async fn serve(handler: impl Fn(&Method, &HeaderMap, Value) -> Response + Send + Sync + 'static) -> String {
    let handler: Handler = Arc::new(handler);
    let app = Router::new().fallback(move |method: Method, headers: HeaderMap, body: axum::body::Bytes| {
        let handler = handler.clone();
        async move { handler(&method, &headers, serde_json::from_slice(&body).unwrap_or(Value::Null)) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn json_response(value: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

fn result(request: &Value, result: Value) -> Response {
    json_response(json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
}

fn error(request: &Value, code: i64, message: &str) -> Response {
    json_response(json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": code, "message": message}}))
}

/// A minimal handshake-era server; `tools_list` answers tools/list.
fn handshake_server(
    version: &'static str,
    tools_list: impl Fn(&Value) -> Response + Send + Sync + 'static,
) -> impl Fn(&Method, &HeaderMap, Value) -> Response + Send + Sync + 'static {
    move |method, _headers, request| {
        if method != Method::POST {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        match request["method"].as_str() {
            Some("initialize") => result(
                &request,
                json!({"protocolVersion": version, "capabilities": {"tools": {}},
                       "serverInfo": {"name": "scripted", "version": "0"}}),
            ),
            Some("tools/list") => tools_list(&request),
            Some("server/discover") => error(&request, -32601, "Method not found"),
            Some(_) if request.get("id").is_none() => StatusCode::ACCEPTED.into_response(),
            _ => error(&request, -32601, "Method not found"),
        }
    }
}

fn quick(url: String) -> ProbeConfig {
    ProbeConfig::new(url).with_timeout(Duration::from_secs(2))
}

fn failure(report: &ProbeReport) -> FailureKind {
    assert!(!report.passed, "{report:#?}");
    report.failure.clone().unwrap().kind
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_the_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            keep.lock().unwrap().push(socket);
        }
    });
    let started = Instant::now();
    let report = probe::probe(&quick(format!("http://{addr}/mcp"))).await;
    assert_eq!(failure(&report), FailureKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_html_page_is_not_mcp() {
    let url = serve(|_, _, _| {
        ([(header::CONTENT_TYPE, "text/html")], "<html><body>Welcome to nginx!</body></html>").into_response()
    })
    .await;
    let report = probe::probe(&quick(format!("{url}/mcp"))).await;
    assert_eq!(failure(&report), FailureKind::NotMcp);
    assert!(report.failure.unwrap().message.contains("text/html"));
}

#[tokio::test]
async fn an_endless_sse_stream_is_cut_at_the_deadline_or_the_size_cap() {
    let endless = |_: &Method, _: &HeaderMap, _: Value| {
        let events = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let event = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n";
            Some((Ok::<_, std::io::Error>(event), ()))
        });
        ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(events)).into_response()
    };
    let url = serve(endless).await;
    let started = Instant::now();
    let report = probe::probe(&quick(format!("{url}/mcp"))).await;
    assert_eq!(failure(&report), FailureKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(3));

    let mut capped = quick(format!("{url}/mcp"));
    capped.limits.max_response_bytes = 4096;
    assert_eq!(failure(&probe::probe(&capped).await), FailureKind::NotMcp);
}

#[tokio::test]
async fn one_endless_sse_event_is_refused_at_the_event_cap() {
    let url = serve(|_, _, _| {
        let prefix = futures::stream::iter([Ok::<_, std::io::Error>(b"data: ".to_vec())]);
        let filler = futures::stream::repeat_with(|| Ok(vec![b'x'; 64 * 1024]));
        (
            [(header::CONTENT_TYPE, "text/event-stream")],
            Body::from_stream(futures::StreamExt::chain(prefix, filler)),
        )
            .into_response()
    })
    .await;
    let mut config = quick(format!("{url}/mcp"));
    config.limits.max_event_bytes = 1 << 20;
    let report = probe::probe(&config).await;
    assert_eq!(failure(&report), FailureKind::NotMcp);
    assert!(report.failure.unwrap().message.contains("SSE event exceeds"));
}

#[tokio::test]
async fn a_50_mb_body_is_refused_without_reading_it_all() {
    let url = serve(|_, _, _| {
        let chunks = futures::stream::iter((0..50).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1 << 20])));
        ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(chunks)).into_response()
    })
    .await;
    let mut config = quick(format!("{url}/mcp"));
    config.limits.max_response_bytes = 1 << 20;
    let report = probe::probe(&config).await;
    assert_eq!(failure(&report), FailureKind::NotMcp);
    assert!(report.failure.unwrap().message.contains("exceeds"));
}

#[tokio::test]
async fn a_json_rpc_error_on_tools_list_is_reported_with_its_code() {
    let url = serve(handshake_server("2025-11-25", |request| error(request, -32603, "database down"))).await;
    let report = probe::probe(&quick(format!("{url}/mcp"))).await;
    assert_eq!(failure(&report), FailureKind::JsonRpc { code: -32603 });
    let failure = report.failure.unwrap();
    assert_eq!(failure.step, "tools/list");
    assert!(failure.message.contains("database down"));
}

#[tokio::test]
async fn a_protocol_version_outside_the_accepted_list_is_rejected() {
    let url = serve(handshake_server("1999-01-01", |request| result(request, json!({"tools": []})))).await;
    let report = probe::probe(&quick(format!("{url}/mcp"))).await;
    assert_eq!(failure(&report), FailureKind::ProtocolVersionRejected);
    assert!(report.failure.unwrap().message.contains("1999-01-01"));
}

#[tokio::test]
async fn pagination_is_followed_and_bounded() {
    let url = serve(handshake_server("2025-11-25", |request| {
        let page = request["params"]["cursor"].as_str().map_or(0, |c| c.parse::<u32>().unwrap());
        let next = if page < 2 { json!((page + 1).to_string()) } else { Value::Null };
        result(
            request,
            json!({"tools": [{"name": format!("t{page}"), "inputSchema": {"type": "object"}}],
                                "nextCursor": next}),
        )
    }))
    .await;
    let report = probe::probe(&quick(format!("{url}/mcp"))).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["t0", "t1", "t2"]);

    let looping = serve(handshake_server("2025-11-25", |request| {
        result(request, json!({"tools": [], "nextCursor": "again"}))
    }))
    .await;
    let report = probe::probe(&quick(format!("{looping}/mcp"))).await;
    assert_eq!(failure(&report), FailureKind::NotMcp);

    let endless = serve(handshake_server("2025-11-25", |request| {
        let page = request["params"]["cursor"].as_str().map_or(0, |c| c.parse::<u32>().unwrap());
        result(request, json!({"tools": [], "nextCursor": (page + 1).to_string()}))
    }))
    .await;
    let mut config = quick(format!("{endless}/mcp"));
    config.limits.max_pages = 5;
    let report = probe::probe(&config).await;
    assert_eq!(failure(&report), FailureKind::NotMcp);
    assert!(report.failure.unwrap().message.contains("more than 5 pages"));
}

#[tokio::test]
async fn redirects_are_followed_only_on_the_same_origin() {
    let target = serve(handshake_server("2025-11-25", |request| result(request, json!({"tools": []})))).await;
    let off_origin = format!("{target}/mcp");
    let url = serve(move |_, _, _| {
        (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, off_origin.clone())]).into_response()
    })
    .await;
    let report = probe::probe(&quick(format!("{url}/mcp"))).await;
    assert_eq!(failure(&report), FailureKind::HttpStatus { status: 307 });
    assert!(report.failure.unwrap().message.contains("not followed"));

    // Moved within the same origin (/old → /mcp): followed, POST body kept (307/308).
    let inner = Arc::new(handshake_server("2025-11-25", |request| result(request, json!({"tools": []}))));
    let app = Router::new()
        .route(
            "/old",
            axum::routing::any(|| async { (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, "/mcp")]) }),
        )
        .route(
            "/mcp",
            axum::routing::any(move |method: Method, headers: HeaderMap, body: axum::body::Bytes| {
                let response = inner(&method, &headers, serde_json::from_slice(&body).unwrap_or(Value::Null));
                async move { response }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let report = probe::probe(&quick(format!("http://{addr}/old"))).await;
    assert!(report.passed, "{report:#?}");
}

#[tokio::test]
async fn bearer_token_and_extra_headers_are_sent_on_every_request() {
    let inner = handshake_server("2025-11-25", |request| result(request, json!({"tools": []})));
    let url = serve(move |method, headers, body| {
        let authorized = headers.get("authorization").is_some_and(|v| v == "Bearer s3cret")
            && headers.get("x-tenant").is_some_and(|v| v == "blue");
        if !authorized {
            return (StatusCode::UNAUTHORIZED, "missing credentials").into_response();
        }
        inner(method, headers, body)
    })
    .await;
    let mut config = quick(format!("{url}/mcp"));
    config.transport = probe::TransportChoice::StreamableHttp;
    assert_eq!(failure(&probe::probe(&config).await), FailureKind::HttpStatus { status: 401 });
    config.bearer_token = Some(probe::SecretText("s3cret".into()));
    config.headers = vec![("X-Tenant".into(), probe::HeaderText::Secret(probe::SecretText("blue".into())))];
    let report = probe::probe(&config).await;
    assert!(report.passed, "{report:#?}");
}

#[tokio::test]
async fn a_lost_session_is_reported_not_papered_over() {
    let url = serve(|method, headers, request| {
        if method != Method::POST {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        match request["method"].as_str() {
            Some("initialize") => {
                let mut response = result(
                    &request,
                    json!({"protocolVersion": "2025-11-25", "capabilities": {},
                           "serverInfo": {"name": "forgetful", "version": "0"}}),
                );
                response.headers_mut().insert("mcp-session-id", "abc".parse().unwrap());
                response
            }
            Some("notifications/initialized") => StatusCode::ACCEPTED.into_response(),
            _ if headers.get("mcp-session-id").is_some() => StatusCode::NOT_FOUND.into_response(),
            _ => error(&request, -32601, "Method not found"),
        }
    })
    .await;
    let report = probe::probe(&quick(format!("{url}/mcp"))).await;
    assert_eq!(failure(&report), FailureKind::HttpStatus { status: 404 });
    let failure = report.failure.unwrap();
    assert_eq!(failure.step, "tools/list");
    assert!(failure.message.contains("session lost"));
}

#[tokio::test]
async fn stateless_requests_carry_the_envelope_and_negotiate_after_32022() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let url = serve(move |_, headers, request| {
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        let version = request["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"].clone();
        log.lock().unwrap().push((
            header("mcp-method"),
            header("mcp-name"),
            header("mcp-protocol-version"),
            version,
        ));
        if header("mcp-protocol-version").as_deref() != Some("2026-07-28") {
            let body = json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32022,
                "message": "Unsupported protocol version",
                "data": {"supported": ["2026-07-28"], "requested": header("mcp-protocol-version")}}});
            return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], body.to_string())
                .into_response();
        }
        match request["method"].as_str() {
            Some("server/discover") => result(
                &request,
                json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}},
                       "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "modern", "version": "9"}}}),
            ),
            Some("tools/list") => {
                result(&request, json!({"tools": [{"name": "weather", "inputSchema": {"type": "object"}}]}))
            }
            Some("tools/call") => result(&request, json!({"content": [{"type": "text", "text": "sunny"}]})),
            _ => error(&request, -32601, "Method not found"),
        }
    })
    .await;
    let mut config = quick(format!("{url}/mcp"));
    config.accepted_versions = vec!["2026-07-28".into(), "2027-01-01".into()];
    config.tool_call =
        Some(ToolCallCheck { name: "weather".into(), arguments: Default::default(), expect: None });
    let report = probe::probe(&config).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.protocol_version.as_deref(), Some("2026-07-28"));
    assert_eq!(report.protocol_versions, ["2026-07-28"]);
    assert_eq!(report.server_info.unwrap()["name"], "modern");
    let seen = seen.lock().unwrap();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(seen[0], (s("server/discover"), None, s("2027-01-01"), json!("2027-01-01")));
    assert_eq!(seen[1], (s("server/discover"), None, s("2026-07-28"), json!("2026-07-28")));
    assert_eq!(seen[2], (s("tools/list"), None, s("2026-07-28"), json!("2026-07-28")));
    assert_eq!(seen[3], (s("tools/call"), s("weather"), s("2026-07-28"), json!("2026-07-28")));
}

#[tokio::test]
async fn a_legacy_endpoint_off_the_probed_origin_is_not_followed() {
    let url = serve(|method, _, _| {
        if method == Method::GET {
            let body = "event: endpoint\ndata: http://127.0.0.1:9/messages?s=1\n\n";
            ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
        } else {
            StatusCode::METHOD_NOT_ALLOWED.into_response()
        }
    })
    .await;
    let report = probe::probe(&quick(format!("{url}/sse"))).await;
    assert_eq!(failure(&report), FailureKind::HttpStatus { status: 405 });
    assert!(report.failure.unwrap().message.contains("off the probed origin"));
}

/// A TLS terminator in front of a plain server, with a fresh self-signed certificate for
/// 127.0.0.1 and localhost.
async fn tls_proxy(backend: std::net::SocketAddr) -> (String, String) {
    tls_proxy_named(backend, &["127.0.0.1", "localhost"]).await
}

/// A TLS terminator in front of a plain server, with a fresh self-signed certificate for
/// `names` only; its URL is on 127.0.0.1.
async fn tls_proxy_named(backend: std::net::SocketAddr, names: &[&str]) -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let cert_pem = certified.cert.pem();
    let key =
        tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (format!("https://127.0.0.1:{}", addr.port()), cert_pem)
}

#[tokio::test]
async fn tls_needs_the_ca_bundle_and_a_bad_bundle_is_a_tls_failure() {
    let fixture = support::fixture(|_| {}).await;
    let (url, ca) = tls_proxy(fixture.addr).await;
    let mut config = quick(format!("{url}/mcp"));
    let report = probe::probe(&config).await;
    assert_eq!(failure(&report), FailureKind::Tls, "{report:#?}");

    config.ca_bundle_pem = Some(ca.into_bytes());
    let report = probe::probe(&config).await;
    assert!(report.passed, "{report:#?}");

    config.ca_bundle_pem = Some(b"not a certificate".to_vec());
    assert_eq!(failure(&probe::probe(&config).await), FailureKind::Tls);
}

/// What the operator does for `service.scheme: https`: the URL names the Service (the name on
/// the certificate), the connection goes to the pod's address, and the CA bundle is the only
/// trust root.
#[tokio::test]
async fn https_to_a_pod_address_checks_the_certificate_for_the_service_name() {
    let fixture = support::fixture(|_| {}).await;
    let (url, ca) = tls_proxy_named(fixture.addr, &["docs.team.svc"]).await;
    let pod: std::net::SocketAddr = url.trim_start_matches("https://").parse().unwrap();
    let port = pod.port();
    let mut config = quick(format!("https://docs.team.svc:{port}/mcp"));
    config.connect_to = Some(pod);
    config.ca_bundle_pem = Some(ca.clone().into_bytes());
    let report = probe::probe(&config).await;
    assert!(report.passed, "{report:#?}");

    // The pod's IP is not on the certificate: connecting by it fails verification.
    let mut by_ip = quick(format!("{url}/mcp"));
    by_ip.ca_bundle_pem = Some(ca.clone().into_bytes());
    assert_eq!(failure(&probe::probe(&by_ip).await), FailureKind::Tls);

    // Another name than the certificate's fails.
    let mut other = quick(format!("https://other.team.svc:{port}/mcp"));
    other.connect_to = Some(pod);
    other.ca_bundle_pem = Some(ca.into_bytes());
    assert_eq!(failure(&probe::probe(&other).await), FailureKind::Tls);

    // Another authority's bundle fails: the bundle replaces, not extends, the trust roots.
    let (_, stranger) = tls_proxy_named(fixture.addr, &["docs.team.svc"]).await;
    config.ca_bundle_pem = Some(stranger.into_bytes());
    assert_eq!(failure(&probe::probe(&config).await), FailureKind::Tls);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let report = probe::probe(&quick(format!("http://127.0.0.1:{port}/mcp"))).await;
    assert_eq!(failure(&report), FailureKind::Connect);
}
