//! The HTTP+SSE transport of protocol 2024-11-05, written by hand because rmcp does not ship it:
//! `GET /sse` opens the stream and announces, in an `endpoint` event, where to POST; each POST to
//! `/messages?sessionId=…` carries one JSON-RPC message and is answered 202; every server
//! message travels back as an SSE `message` event. The MCP logic is the same rmcp handler as on
//! Streamable HTTP, served over a channel pair. The session lives as long as the SSE stream.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{SinkExt, StreamExt, channel::mpsc};
use rmcp::{
    ServiceExt,
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
};
use serde::Deserialize;

use crate::handler::{FixtureHandler, Shared};

/// Open legacy sessions: where to deliver each session's client messages.
#[derive(Clone, Default)]
pub struct LegacySessions {
    inbox: Arc<Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>>,
}

impl LegacySessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes the session when its SSE stream is dropped (the client went away, or the server
/// is shutting down).
struct SessionCleanup {
    sessions: LegacySessions,
    id: String,
}

impl Drop for SessionCleanup {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.id);
    }
}

/// `GET /sse`.
pub async fn open(shared: Arc<Shared>, sessions: LegacySessions, endpoint_path: &str) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (to_server, from_client) = mpsc::channel::<ClientJsonRpcMessage>(64);
    let (to_client, from_server) = mpsc::channel::<ServerJsonRpcMessage>(64);
    sessions.lock().insert(id.clone(), to_server);

    let handler = FixtureHandler::new(shared, "sse");
    tokio::spawn(async move {
        let sink = to_client.sink_map_err(std::io::Error::other);
        match handler.serve((sink, from_client)).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(e) => tracing::debug!(error = %e, "legacy SSE session ended before initialization"),
        }
    });

    let cleanup = SessionCleanup { sessions, id: id.clone() };
    let endpoint = Event::default().event("endpoint").data(format!("{endpoint_path}?sessionId={id}"));
    let messages = from_server.map(move |message| {
        let _keep_session_while_streaming = &cleanup;
        let data = serde_json::to_string(&message).unwrap_or_default();
        Ok::<_, Infallible>(Event::default().event("message").data(data))
    });
    let stream = futures::stream::once(async move { Ok(endpoint) }).chain(messages);
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

#[derive(Deserialize)]
pub struct SessionQuery {
    #[serde(rename = "sessionId")]
    session_id: String,
}

/// `POST /messages?sessionId=…`.
pub async fn post(
    State(sessions): State<LegacySessions>,
    Query(query): Query<SessionQuery>,
    Json(message): Json<ClientJsonRpcMessage>,
) -> Response {
    let sender = sessions.lock().get(&query.session_id).cloned();
    let Some(mut sender) = sender else {
        return (StatusCode::NOT_FOUND, "unknown session").into_response();
    };
    match sender.send(message).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "session ended").into_response(),
    }
}
