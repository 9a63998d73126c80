//! A small MCP client for the simulated agents, on reqwest.
//!
//! Written by hand rather than on rmcp because agents must *see* what rmcp's client hides: its
//! Streamable HTTP client re-initializes silently after a 404, which is exactly the session loss
//! we count, and it has no legacy HTTP+SSE client at all. Every failure is classified the way
//! an agent experiences it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const ACCEPT: &str = "application/json, text/event-stream";
const HANDSHAKE_VERSION: &str = "2025-11-25";
const STATELESS_VERSION: &str = "2026-07-28";

/// How a request failed, as an agent sees it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 404 on a live session id: the request reached a process that does not know the session.
    #[error("session lost (404)")]
    SessionLost,
    /// The response stream or connection ended before the final response.
    #[error("stream cut before the response")]
    StreamCut,
    #[error("HTTP {0}")]
    Http(u16),
    #[error("JSON-RPC error {code}: {message}")]
    Rpc { code: i64, message: String },
    #[error("transport: {0}")]
    Transport(String),
    #[error("bad response: {0}")]
    Malformed(String),
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        Self::Transport(e.to_string())
    }
}

/// Which protocol era a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    Handshake,
    Stateless,
}

/// What one request returned.
#[derive(Debug, Clone)]
pub struct Reply {
    pub result: Value,
    /// `X-Server-Version` of the process that answered.
    pub server_version: Option<String>,
    /// Progress notifications seen on the response stream.
    pub progress_events: usize,
}

/// Parses SSE `data:` payloads out of a growing buffer, returning complete events.
fn drain_events(buffer: &mut String) -> Vec<(Option<String>, String)> {
    let mut events = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let mut name = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if !data.is_empty() {
            events.push((name, data));
        }
    }
    events
}

/// `tools/call` params, with a progress token when the caller wants progress notifications.
fn tool_call_params(name: &str, arguments: Value, progress_token: Option<i64>) -> Value {
    let mut params = json!({"name": name, "arguments": arguments});
    if let Some(token) = progress_token {
        params["_meta"] = json!({"progressToken": format!("p{token}")});
    }
    params
}

/// What the agents say they are.
fn client_info() -> Value {
    json!({"name": "mcp-agents", "version": env!("CARGO_PKG_VERSION")})
}

fn rpc_result(message: &Value) -> Result<Value, ClientError> {
    if let Some(error) = message.get("error") {
        return Err(ClientError::Rpc {
            code: error["code"].as_i64().unwrap_or(0),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
        });
    }
    Ok(message.get("result").cloned().unwrap_or(Value::Null))
}

/// A Streamable HTTP client: a handshake-era session, or stateless requests.
pub struct StreamableClient {
    http: reqwest::Client,
    url: String,
    era: Era,
    session: Option<String>,
    next_id: i64,
    read_to_end: bool,
}

/// How long a client that reads streams to their end waits for the end after its answer (a
/// server should close the stream then; one that does not is left, with its connection).
const STREAM_END_WAIT: Duration = Duration::from_secs(1);

impl StreamableClient {
    pub fn new(http: reqwest::Client, url: String, era: Era) -> Self {
        Self { http, url, era, session: None, next_id: 1, read_to_end: false }
    }

    /// Reads a streamed answer's stream to its end (bounded by [`STREAM_END_WAIT`]), so that its
    /// connection can carry the next request. By default the stream is dropped once the answer
    /// has arrived, and the connection with it: the next request opens a new one.
    #[must_use]
    pub fn reading_streams_to_end(mut self, yes: bool) -> Self {
        self.read_to_end = yes;
        self
    }

    /// Handshake era: `initialize` + `notifications/initialized`. Stateless: nothing to do.
    pub async fn connect(&mut self) -> Result<Reply, ClientError> {
        self.session = None;
        if self.era == Era::Stateless {
            return self.request("server/discover", json!({}), None).await;
        }
        let params = json!({"protocolVersion": HANDSHAKE_VERSION, "capabilities": {},
                            "clientInfo": client_info()});
        let reply = self.request("initialize", params, None).await?;
        self.notify("notifications/initialized").await?;
        Ok(reply)
    }

    pub async fn call_tool(
        &mut self,
        name: &str,
        arguments: Value,
        progress: bool,
    ) -> Result<Reply, ClientError> {
        let params = tool_call_params(name, arguments, progress.then_some(self.next_id));
        self.request("tools/call", params, Some(name)).await
    }

    /// Ends a handshake-era session (DELETE).
    pub async fn close(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = self.http.delete(&self.url).header("mcp-session-id", session).send().await;
        }
    }

    fn builder(&self, method: &str, name: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = self.http.post(&self.url).header("accept", ACCEPT);
        match (self.era, &self.session) {
            (Era::Stateless, _) => {
                request =
                    request.header("mcp-protocol-version", STATELESS_VERSION).header("mcp-method", method);
                if let Some(name) = name {
                    request = request.header("mcp-name", name);
                }
            }
            (Era::Handshake, Some(session)) => {
                request = request
                    .header("mcp-session-id", session)
                    .header("mcp-protocol-version", HANDSHAKE_VERSION);
            }
            (Era::Handshake, None) => {}
        }
        request
    }

    async fn notify(&mut self, method: &str) -> Result<(), ClientError> {
        let response =
            self.builder(method, None).json(&json!({"jsonrpc": "2.0", "method": method})).send().await?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(ClientError::SessionLost),
            s => Err(ClientError::Http(s)),
        }
    }

    async fn request(
        &mut self,
        method: &str,
        mut params: Value,
        name: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        if self.era == Era::Stateless {
            let meta = params.get("_meta").cloned().unwrap_or_else(|| json!({}));
            let mut meta = meta.as_object().cloned().unwrap_or_default();
            meta.insert("io.modelcontextprotocol/protocolVersion".into(), json!(STATELESS_VERSION));
            meta.insert("io.modelcontextprotocol/clientCapabilities".into(), json!({}));
            meta.insert("io.modelcontextprotocol/clientInfo".into(), client_info());
            params["_meta"] = Value::Object(meta);
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let had_session = self.session.is_some();
        let response = self.builder(method, name).json(&body).send().await?;
        let status = response.status().as_u16();
        if status == 404 && had_session {
            return Err(ClientError::SessionLost);
        }
        let server_version =
            response.headers().get("x-server-version").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(session) = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            self.session = Some(session.to_owned());
        }
        let is_sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream"));
        if !is_sse {
            let text = response.text().await?;
            let message: Value = serde_json::from_str(&text).map_err(|_| {
                if (200..300).contains(&status) {
                    ClientError::Malformed(text)
                } else {
                    ClientError::Http(status)
                }
            })?;
            return rpc_result(&message).map(|result| Reply { result, server_version, progress_events: 0 });
        }
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        let mut progress_events = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| ClientError::StreamCut)?;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            for (_, data) in drain_events(&mut buffer) {
                let Ok(message) = serde_json::from_str::<Value>(&data) else { continue };
                if message["id"] == id {
                    if self.read_to_end {
                        let rest = async { while let Some(Ok(_)) = stream.next().await {} };
                        let _ = tokio::time::timeout(STREAM_END_WAIT, rest).await;
                    }
                    return rpc_result(&message).map(|result| Reply {
                        result,
                        server_version,
                        progress_events,
                    });
                }
                if message["method"] == "notifications/progress" {
                    progress_events += 1;
                }
            }
        }
        Err(ClientError::StreamCut)
    }
}

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>>;

/// A legacy HTTP+SSE (2024-11-05) session: one GET stream for every answer, POSTs for requests.
pub struct LegacySseClient {
    http: reqwest::Client,
    base: String,
    endpoint: String,
    pending: Pending,
    server_version: Option<String>,
    next_id: i64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for LegacySseClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl LegacySseClient {
    /// Opens the stream, waits for the endpoint, and initializes.
    pub async fn connect(http: reqwest::Client, base: &str) -> Result<(Self, Reply), ClientError> {
        let response = http.get(format!("{base}/sse")).header("accept", "text/event-stream").send().await?;
        if !response.status().is_success() {
            return Err(ClientError::Http(response.status().as_u16()));
        }
        let server_version =
            response.headers().get("x-server-version").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let pending: Pending = Arc::default();
        let (endpoint_tx, endpoint_rx) = oneshot::channel();
        let reader_pending = pending.clone();
        let reader = tokio::spawn(async move {
            let mut endpoint_tx = Some(endpoint_tx);
            let mut stream = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = stream.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                for (name, data) in drain_events(&mut buffer) {
                    if name.as_deref() == Some("endpoint") {
                        if let Some(tx) = endpoint_tx.take() {
                            let _ = tx.send(data);
                        }
                        continue;
                    }
                    let Ok(message) = serde_json::from_str::<Value>(&data) else { continue };
                    if let Some(id) = message["id"].as_i64() {
                        let waiter = reader_pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(message);
                        }
                    }
                }
            }
            // Stream over: every waiter sees its sender dropped, i.e. a cut stream.
            reader_pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
        });
        let endpoint = tokio::time::timeout(Duration::from_secs(10), endpoint_rx)
            .await
            .map_err(|_| ClientError::Malformed("no endpoint event".into()))?
            .map_err(|_| ClientError::StreamCut)?;
        let mut client = Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            endpoint,
            pending,
            server_version,
            next_id: 1,
            reader,
        };
        let params = json!({"protocolVersion": "2024-11-05", "capabilities": {},
                            "clientInfo": client_info()});
        let reply = client.request("initialize", params).await?;
        client.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        Ok((client, reply))
    }

    pub async fn call_tool(
        &mut self,
        name: &str,
        arguments: Value,
        progress: bool,
    ) -> Result<Reply, ClientError> {
        let params = tool_call_params(name, arguments, progress.then_some(self.next_id));
        self.request("tools/call", params).await
    }

    async fn post(&self, message: &Value) -> Result<(), ClientError> {
        let response = self.http.post(format!("{}{}", self.base, self.endpoint)).json(message).send().await?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(ClientError::SessionLost),
            s => Err(ClientError::Http(s)),
        }
    }

    async fn request(&mut self, method: &str, params: Value) -> Result<Reply, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        if let Err(e) =
            self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await
        {
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            return Err(e);
        }
        let message = rx.await.map_err(|_| ClientError::StreamCut)?;
        rpc_result(&message).map(|result| Reply {
            result,
            server_version: self.server_version.clone(),
            progress_events: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_and_named() {
        let mut buffer =
            "event: endpoint\ndata: /messages?sessionId=1\n\ndata: {\"id\":1}\n\ndata: part".to_owned();
        let events = drain_events(&mut buffer);
        assert_eq!(
            events,
            vec![(Some("endpoint".into()), "/messages?sessionId=1".into()), (None, "{\"id\":1}".into())]
        );
        assert_eq!(buffer, "data: part");
    }

    #[test]
    fn jsonrpc_errors_are_typed() {
        let e = rpc_result(&json!({"id": 1, "error": {"code": -32602, "message": "bad"}})).unwrap_err();
        assert!(matches!(e, ClientError::Rpc { code: -32602, .. }));
        assert_eq!(rpc_result(&json!({"id": 1, "result": {"ok": true}})).unwrap()["ok"], true);
    }
}
