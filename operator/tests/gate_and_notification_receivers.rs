//! Gate webhooks and notification receivers against real HTTP servers on loopback: each answer a
//! change-management system or a chat webhook can give — open, closed, slow, failing, hostile
//! (a redirect, a gigabyte, bytes that are not HTTP) — and what the operator makes of it. The
//! URL check runs for real (`Destinations` with loopback allowed); the Secret that holds a
//! receiver's URL is read from the API server in the e2e scenario (`tests/gates.rs`), here the
//! URL is given directly.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use mcp_rollout::{
    api::{GatePoint, NotificationKind, ReceiverFormat},
    controller::{
        destinations::{Destinations, parse_list},
        gate_calls::{self, GateJob},
        notify::{self, ATTEMPTS, Notice},
    },
    engine::{GateCall, GateOutcome},
};
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, net::TcpListener};

#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<(String, Value, Option<String>)>>,
    flaky_calls: AtomicU32,
}

async fn record(State(seen): State<Arc<Seen>>, path: String, headers: &HeaderMap, body: &Bytes) {
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap().to_owned());
    let value = serde_json::from_slice(body).unwrap_or(Value::Null);
    seen.bodies.lock().unwrap().push((path, value, auth));
}

/// The receivers, each on its own path.
async fn receiver() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route(
            "/open",
            post(|s: State<Arc<Seen>>, h: HeaderMap, b: Bytes| async move {
                record(s, "/open".into(), &h, &b).await;
                StatusCode::OK
            }),
        )
        .route(
            "/closed",
            post(|| async { (StatusCode::CONFLICT, "CHG-42 is not approved yet\n\tCAB meets Tuesday") }),
        )
        .route(
            "/rollback",
            post(|| async {
                (StatusCode::OK, r#"{"action": "rollback", "message": "CHG-42 rejected by the CAB"}"#)
            }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK
            }),
        )
        .route("/redirect", post(|| async { (StatusCode::FOUND, [(header::LOCATION, "/open")], "") }))
        .route(
            "/auth",
            post(|h: HeaderMap| async move {
                match h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
                    Some("Bearer s3cret") => StatusCode::NO_CONTENT,
                    _ => StatusCode::UNAUTHORIZED,
                }
            }),
        )
        .route(
            "/huge",
            post(|| async {
                // 1 GiB announced, sent in 64 KiB chunks as fast as it is read.
                let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
                let stream =
                    futures::stream::iter((0..16_384).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
                Response::builder().status(200).body(Body::from_stream(stream)).unwrap()
            }),
        )
        .route(
            "/flaky",
            post(|s: State<Arc<Seen>>, h: HeaderMap, b: Bytes| async move {
                // Fails twice, then takes it.
                if s.flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                record(s, "/flaky".into(), &h, &b).await;
                StatusCode::OK.into_response()
            }),
        )
        .route("/down", post(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .with_state(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// A server that answers every connection with bytes that are not HTTP.
async fn garbage() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let _ = socket.write_all(b"\x00\xffSSH-2.0-not-http\r\n\r\n").await;
        }
    });
    addr
}

fn job(url: String, token: Option<&str>, timeout: Duration) -> GateJob {
    GateJob {
        call: GateCall { gate: "cab".into(), point: GatePoint::Start, weight: None, revision: "v2".into() },
        url,
        pinned: vec![],
        token: token.map(str::to_owned),
        timeout,
        context: json!({"kind": "GateRequest", "gate": "cab", "revision": "v2", "schemaChange": "Breaking"}),
    }
}

#[tokio::test]
async fn gate_webhooks_open_close_roll_back_and_survive_hostile_answers() {
    let (addr, seen) = receiver().await;
    let url = |path: &str| format!("http://{addr}{path}");
    let second = Duration::from_secs(2);

    let open = gate_calls::call(job(url("/open"), Some("s3cret"), second)).await;
    assert_eq!((open.outcome, open.message.as_str()), (GateOutcome::Open, "HTTP 200"));
    let (path, body, auth) = seen.bodies.lock().unwrap()[0].clone();
    assert_eq!(path, "/open");
    assert_eq!(body["schemaChange"], "Breaking", "the context reaches the endpoint");
    assert_eq!(auth.as_deref(), Some("Bearer s3cret"));

    let closed = gate_calls::call(job(url("/closed"), None, second)).await;
    assert_eq!(closed.outcome, GateOutcome::Closed);
    assert_eq!(closed.message, "HTTP 409: CHG-42 is not approved yet CAB meets Tuesday");

    let rollback = gate_calls::call(job(url("/rollback"), None, second)).await;
    assert_eq!(
        (rollback.outcome, rollback.message.as_str()),
        (GateOutcome::Rollback, "CHG-42 rejected by the CAB")
    );

    assert_eq!(gate_calls::call(job(url("/auth"), Some("s3cret"), second)).await.outcome, GateOutcome::Open);
    let refused = gate_calls::call(job(url("/auth"), Some("wrong"), second)).await;
    assert_eq!((refused.outcome, refused.message.as_str()), (GateOutcome::Closed, "HTTP 401"));

    // Slow: cut at the timeout, closed with the reason (the 30 s answer is never waited for).
    let started = Instant::now();
    let slow = gate_calls::call(job(url("/slow"), None, Duration::from_millis(500))).await;
    assert_eq!(slow.outcome, GateOutcome::Closed);
    assert_eq!(slow.message, "no answer within 500ms");
    println!("slow endpoint: closed after {:?}", started.elapsed());

    // A redirect is not followed: its target (which would open) is never asked.
    let before = seen.bodies.lock().unwrap().len();
    let redirect = gate_calls::call(job(url("/redirect"), None, second)).await;
    assert_eq!((redirect.outcome, redirect.message.as_str()), (GateOutcome::Closed, "HTTP 302"));
    assert_eq!(seen.bodies.lock().unwrap().len(), before);

    // A gigabyte: only the first 64 KiB are read; a 2xx still opens, and the message is short.
    let huge = gate_calls::call(job(url("/huge"), None, Duration::from_secs(10))).await;
    assert_eq!(huge.outcome, GateOutcome::Open);
    assert!(huge.message.len() < 300, "{}", huge.message.len());

    // Not HTTP at all; nobody listening.
    let junk = gate_calls::call(job(format!("http://{}/gate", garbage().await), None, second)).await;
    assert_eq!(junk.outcome, GateOutcome::Closed);
    assert!(junk.message.starts_with("request failed"), "{}", junk.message);
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let refused = gate_calls::call(job(format!("http://{gone}/gate"), None, second)).await;
    assert_eq!(refused.outcome, GateOutcome::Closed);
    assert!(refused.message.contains("request failed"), "{}", refused.message);
}

fn loopback_only() -> Destinations {
    // No API server is asked: the list is configured. The client is never used.
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    Destinations::new(client, Some(parse_list("127.0.0.0/8").unwrap()))
}

fn rolled_back() -> Notice {
    Notice {
        kind: NotificationKind::RolledBack,
        revision: Some("v2".into()),
        message: "revision v2 rolled back (AnalysisFailed): check errorRate failed 2 time(s) in a row".into(),
        details: json!({"analysis": [{"name": "errorRate", "verdict": "Fail", "value": 0.31, "threshold": 0.05}]}),
    }
}

#[tokio::test]
async fn notifications_reach_webhook_and_slack_receivers_and_retries_are_bounded() {
    let (addr, seen) = receiver().await;
    let destinations = loopback_only();
    let at = jiff::Timestamp::now();
    let second = Duration::from_secs(2);
    let notice = rolled_back();

    let hook = notify::payload(ReceiverFormat::Webhook, "docs", "docs", &notice, at);
    let url = format!("http://{addr}/open");
    let attempts =
        notify::send_with_retries(|| async { Ok(url.clone()) }, &destinations, "ops", &hook, second)
            .await
            .unwrap();
    assert_eq!(attempts, 1);
    let slack = notify::payload(ReceiverFormat::Slack, "docs", "docs", &notice, at);
    notify::send_with_retries(|| async { Ok(url.clone()) }, &destinations, "chat", &slack, second)
        .await
        .unwrap();
    {
        let bodies = seen.bodies.lock().unwrap();
        assert_eq!(bodies[0].1["kind"], "RolledBack");
        assert_eq!(bodies[0].1["details"]["analysis"][0]["value"], 0.31, "the error ratio is carried");
        let text = bodies[1].1["text"].as_str().unwrap();
        assert!(text.contains("errorRate: Fail (value 0.31, threshold 0.05)"), "{text}");
    }

    // Fails twice, delivered on the third attempt.
    let flaky = format!("http://{addr}/flaky");
    let attempts =
        notify::send_with_retries(|| async { Ok(flaky.clone()) }, &destinations, "ops", &hook, second)
            .await
            .unwrap();
    assert_eq!(attempts, 3);

    // Always failing, slow, or a URL the Secret does not give: given up after ATTEMPTS.
    let down = format!("http://{addr}/down");
    let err = notify::send_with_retries(|| async { Ok(down.clone()) }, &destinations, "ops", &hook, second)
        .await
        .unwrap_err();
    assert!(err.starts_with(&format!("{ATTEMPTS} attempts, the last: HTTP 500")), "{err}");
    let slow = format!("http://{addr}/slow");
    let err = notify::send_with_retries(
        || async { Ok(slow.clone()) },
        &destinations,
        "ops",
        &hook,
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert!(err.ends_with("no answer within 300ms"), "{err}");
    let err = notify::send_with_retries(
        || async { Err::<String, _>("Secret docs/slack has no key url".to_owned()) },
        &destinations,
        "chat",
        &slack,
        second,
    )
    .await
    .unwrap_err();
    assert!(err.ends_with("Secret docs/slack has no key url"), "{err}");

    // A receiver outside the allowed destinations is never sent anything.
    let err = notify::send_with_retries(
        || async { Ok("http://192.0.2.1/hook".to_owned()) },
        &destinations,
        "elsewhere",
        &hook,
        second,
    )
    .await
    .unwrap_err();
    assert!(err.contains("192.0.2.1") && err.contains("outside"), "{err}");
}
