//! The Streamable HTTP transport, in both protocol eras: a handshake-era session
//! (`Mcp-Session-Id`, `MCP-Protocol-Version` after `initialize`) or stateless requests (the
//! 2026-07-28 `_meta` envelope and routing headers).

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    error::ProbeError,
    http::{HttpContext, content_type},
    jsonrpc,
};
use crate::api::protocol::Era;

const ACCEPT: &str = "application/json, text/event-stream";
/// How long to wait before resuming a stream whose server set no `retry:`.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// Who the probe says it is.
pub fn client_info() -> Value {
    json!({"name": "mcp-rollout-probe", "version": env!("CARGO_PKG_VERSION")})
}

/// A header value that survives HTTP: printable ASCII as is, anything else base64 in the
/// `=?base64?…?=` sentinel the 2026-07-28 revision defines for `Mcp-Name`.
fn routing_header_value(value: &str) -> String {
    let printable = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    if printable && value == value.trim() && !value.starts_with("=?base64?") {
        value.to_owned()
    } else {
        use base64::Engine as _;
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value))
    }
}

pub struct StreamableChannel<'a> {
    http: &'a HttpContext,
    era: Era,
    /// The version spoken: offered until `initialize` answers, then the negotiated one.
    version: String,
    session: Option<String>,
    initialized: bool,
    next_id: i64,
}

impl<'a> StreamableChannel<'a> {
    pub fn new(http: &'a HttpContext, era: Era, version: &str) -> Self {
        Self { http, era, version: version.to_owned(), session: None, initialized: false, next_id: 1 }
    }

    /// After `initialize` answered: from now on requests carry the negotiated version.
    pub fn initialized(&mut self, negotiated: &str) {
        self.version = negotiated.to_owned();
        self.initialized = true;
    }

    fn with_headers(
        &self,
        mut request: reqwest::RequestBuilder,
        method: Option<&str>,
        name: Option<&str>,
    ) -> reqwest::RequestBuilder {
        match self.era {
            Era::Stateless => {
                request = request.header("mcp-protocol-version", &self.version);
                if let Some(method) = method {
                    request = request.header("mcp-method", method);
                }
                if let Some(name) = name {
                    request = request.header("mcp-name", routing_header_value(name));
                }
            }
            Era::Handshake => {
                if let Some(session) = &self.session {
                    request = request.header("mcp-session-id", session);
                }
                if self.initialized {
                    request = request.header("mcp-protocol-version", &self.version);
                }
            }
        }
        request
    }

    /// Sends a request and waits for its answer (JSON body or SSE stream, resumed if the server
    /// closes it early with an event id).
    pub async fn request(
        &mut self,
        method: &str,
        mut params: Value,
        name: Option<&str>,
    ) -> Result<Value, ProbeError> {
        let id = self.next_id;
        self.next_id += 1;
        if self.era == Era::Stateless {
            let meta = params.as_object_mut().map(|p| p.entry("_meta").or_insert_with(|| json!({})));
            if let Some(Value::Object(meta)) = meta {
                meta.insert("io.modelcontextprotocol/protocolVersion".into(), json!(self.version));
                meta.insert("io.modelcontextprotocol/clientInfo".into(), client_info());
                meta.insert("io.modelcontextprotocol/clientCapabilities".into(), json!({}));
            }
        }
        let deadline = self.http.step_deadline();
        let post = self
            .with_headers(self.http.post(&self.http.url), Some(method), name)
            .header("accept", ACCEPT)
            .json(&jsonrpc::request(id, method, params));
        let response = self.http.send(post, deadline).await?;
        let response = self.check_status(response, deadline).await?;
        if let Some(session) = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok())
            && self.era == Era::Handshake
            && method == "initialize"
        {
            self.session = Some(session.to_owned());
        }
        if response.status() == StatusCode::ACCEPTED {
            return Err(ProbeError::NotMcp(format!("{method} was answered 202 Accepted, with no response")));
        }
        match content_type(&response).as_str() {
            "application/json" => {
                let body = self.http.read_body(response, deadline).await?;
                jsonrpc::answer_in_body(&body, id)
            }
            "text/event-stream" => self.answer_from_stream(response, id, deadline).await,
            other => {
                let body = self.http.read_body(response, deadline).await.unwrap_or_default();
                Err(ProbeError::NotMcp(format!(
                    "content type {:?} is neither JSON nor SSE: {}",
                    other,
                    jsonrpc::excerpt(&String::from_utf8_lossy(&body))
                )))
            }
        }
    }

    /// Non-success statuses: a lost session, a JSON-RPC error carried with a 4xx (how -32022
    /// arrives), or a plain HTTP failure.
    async fn check_status(&self, response: Response, deadline: Instant) -> Result<Response, ProbeError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::NOT_FOUND && self.session.is_some() {
            return Err(ProbeError::Http {
                status: 404,
                detail: "session lost: the server no longer knows this session".into(),
            });
        }
        let body = self.http.read_body(response, deadline).await.unwrap_or_default();
        let error = serde_json::from_slice::<Value>(&body).ok().and_then(|m| m.get("error").cloned());
        if let Some(error) = error
            && let (Some(code), Some(message)) = (error["code"].as_i64(), error["message"].as_str())
        {
            let message = jsonrpc::excerpt(message);
            return Err(ProbeError::Rpc { code, message, data: error.get("data").cloned() });
        }
        Err(ProbeError::Http {
            status: status.as_u16(),
            detail: jsonrpc::excerpt(&String::from_utf8_lossy(&body)),
        })
    }

    async fn answer_from_stream(
        &self,
        response: Response,
        id: i64,
        deadline: Instant,
    ) -> Result<Value, ProbeError> {
        let mut stream = self.http.sse(response);
        let mut resumes = 0;
        loop {
            while let Some(event) = stream.next(self.http, deadline).await? {
                if event.event.as_deref().is_some_and(|name| name != "message") {
                    continue;
                }
                let message: Value = serde_json::from_str(&event.data).map_err(|e| {
                    ProbeError::NotMcp(format!(
                        "SSE event is not JSON ({e}): {}",
                        jsonrpc::excerpt(&event.data)
                    ))
                })?;
                if let Some(outcome) = jsonrpc::answer_to(&message, id)? {
                    return outcome;
                }
            }
            // The stream ended without the answer. A server that gave an event id expects the
            // client to resume with GET + Last-Event-ID after `retry` (SEP-1699).
            let Some(last_id) = stream.parser.last_event_id.clone() else {
                return Err(ProbeError::NotMcp("the response stream ended before the answer".into()));
            };
            if resumes >= self.http.limits.max_resumes {
                return Err(ProbeError::NotMcp(format!(
                    "the response stream ended {} times without the answer",
                    resumes + 1
                )));
            }
            resumes += 1;
            let wait = stream.parser.retry_ms.map_or(DEFAULT_RETRY, Duration::from_millis);
            if Instant::now() + wait >= deadline {
                return Err(self.http.stream_timeout());
            }
            tokio::time::sleep(wait).await;
            let get = self
                .with_headers(self.http.get(&self.http.url), None, None)
                .header("accept", "text/event-stream")
                .header("last-event-id", &last_id);
            let response = self.http.send(get, deadline).await?;
            let response = self.check_status(response, deadline).await?;
            if content_type(&response) != "text/event-stream" {
                return Err(ProbeError::NotMcp("resuming the stream did not return an SSE stream".into()));
            }
            let parser_state = (stream.parser.last_event_id.clone(), stream.parser.retry_ms);
            stream = self.http.sse(response);
            (stream.parser.last_event_id, stream.parser.retry_ms) = parser_state;
        }
    }

    /// Sends a notification (handshake era: `notifications/initialized`).
    pub async fn notify(&mut self, method: &str) -> Result<(), ProbeError> {
        let deadline = self.http.step_deadline();
        let post = self
            .with_headers(self.http.post(&self.http.url), Some(method), None)
            .header("accept", ACCEPT)
            .json(&jsonrpc::notification(method));
        let response = self.http.send(post, deadline).await?;
        self.check_status(response, deadline).await.map(drop)
    }

    /// Ends a handshake-era session with DELETE. A server may refuse (405): sessions then end
    /// by expiry, which is allowed.
    pub async fn close(&mut self) -> Option<u16> {
        let session = self.session.take()?;
        let request =
            self.with_headers(self.http.delete(&self.http.url), None, None).header("mcp-session-id", session);
        let deadline = self.http.step_deadline();
        self.http.send(request, deadline).await.ok().map(|r| r.status().as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_header_values_are_sent_plain_when_safe_and_base64_otherwise() {
        assert_eq!(routing_header_value("get_document"), "get_document");
        assert_eq!(routing_header_value("héllo"), "=?base64?aMOpbGxv?=");
        assert_eq!(routing_header_value(" padded"), "=?base64?IHBhZGRlZA==?=");
    }
}
