//! `mcp-hooks`: what a change-management system and a chat webhook look like to the operator,
//! for the scenarios. It records every POST it gets (path, JSON body, Authorization header) and
//! answers `/gate/<name>` with the answer set for that gate (409 "not approved" until set);
//! `PUT /answer/<name>` with `{"status": 200, "body": "…"}` sets it; `GET /received` lists what
//! was recorded, oldest first.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    routing::{get, post, put},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One recorded POST.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Received {
    pub path: String,
    pub body: Value,
    pub authorization: Option<String>,
}

/// What a gate's endpoint answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    #[serde(default)]
    pub body: String,
}

#[derive(Default)]
struct Hooks {
    received: Mutex<Vec<Received>>,
    answers: Mutex<BTreeMap<String, Answer>>,
}

fn record(hooks: &Hooks, path: String, headers: &HeaderMap, body: &Bytes) {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body =
        serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()));
    // Bounded: a scenario needs hundreds at most.
    let mut received = hooks.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if received.len() < 10_000 {
        received.push(Received { path, body, authorization });
    }
}

/// The receiver's routes.
pub fn router() -> Router {
    let hooks = Arc::new(Hooks::default());
    Router::new()
        .route(
            "/gate/{name}",
            post(|State(h): State<Arc<Hooks>>, Path(name): Path<String>, headers: HeaderMap, body: Bytes| async move {
                record(&h, format!("/gate/{name}"), &headers, &body);
                let answers = h.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let answer = answers
                    .get(&name)
                    .cloned()
                    .unwrap_or(Answer { status: 409, body: format!("change for gate {name} not approved yet") });
                (StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), answer.body)
            }),
        )
        .route(
            "/answer/{name}",
            put(|State(h): State<Arc<Hooks>>, Path(name): Path<String>, Json(answer): Json<Answer>| async move {
                h.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name, answer);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/notify/{receiver}",
            post(|State(h): State<Arc<Hooks>>, Path(r): Path<String>, headers: HeaderMap, body: Bytes| async move {
                record(&h, format!("/notify/{r}"), &headers, &body);
                StatusCode::OK
            }),
        )
        .route(
            "/received",
            get(|State(h): State<Arc<Hooks>>| async move {
                Json(h.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(hooks)
}

/// Serves until the process ends.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, router()).await?;
    Ok(())
}
