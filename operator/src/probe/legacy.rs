//! The legacy HTTP+SSE transport (protocol 2024-11-05): a GET opens the event stream, whose
//! first `endpoint` event names where to POST; every answer comes back on the stream.
//!
//! The stream is read only while an answer is awaited: a probe makes one request at a time,
//! so no background reader (and no task to leak) is needed.

use reqwest::Url;
use serde_json::Value;

use super::{
    error::ProbeError,
    http::{HttpContext, SseStream, content_type},
    jsonrpc,
};

pub struct LegacyChannel<'a> {
    http: &'a HttpContext,
    stream: SseStream,
    endpoint: Url,
    next_id: i64,
}

impl<'a> LegacyChannel<'a> {
    /// Opens the stream and waits for the endpoint, which must stay on the probed origin.
    pub async fn open(http: &'a HttpContext) -> Result<Self, ProbeError> {
        let deadline = http.step_deadline();
        let response = http.send(http.get(&http.url).header("accept", "text/event-stream"), deadline).await?;
        let status = response.status();
        if !status.is_success() {
            let body = http.read_body(response, deadline).await.unwrap_or_default();
            return Err(ProbeError::Http {
                status: status.as_u16(),
                detail: jsonrpc::excerpt(&String::from_utf8_lossy(&body)),
            });
        }
        if content_type(&response) != "text/event-stream" {
            return Err(ProbeError::NotMcp(format!(
                "GET {} returned {:?}, not an SSE stream",
                http.url,
                content_type(&response)
            )));
        }
        let mut stream = http.sse(response);
        let endpoint = loop {
            match stream.next(http, deadline).await? {
                Some(event) if event.event.as_deref() == Some("endpoint") => break event.data,
                Some(_) => {}
                None => {
                    return Err(ProbeError::NotMcp("the SSE stream ended before its endpoint event".into()));
                }
            }
        };
        let endpoint = http
            .url
            .join(endpoint.trim())
            .map_err(|e| ProbeError::NotMcp(format!("endpoint event {endpoint:?} is not a URL: {e}")))?;
        if endpoint.origin() != http.url.origin() {
            return Err(ProbeError::NotMcp(format!(
                "endpoint {endpoint} is off the probed origin; not followed"
            )));
        }
        Ok(Self { http, stream, endpoint, next_id: 1 })
    }

    async fn post(&self, message: &Value) -> Result<(), ProbeError> {
        let deadline = self.http.step_deadline();
        let response = self.http.send(self.http.post(&self.endpoint).json(message), deadline).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = self.http.read_body(response, deadline).await.unwrap_or_default();
        Err(ProbeError::Http {
            status: status.as_u16(),
            detail: jsonrpc::excerpt(&String::from_utf8_lossy(&body)),
        })
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, ProbeError> {
        let id = self.next_id;
        self.next_id += 1;
        self.post(&jsonrpc::request(id, method, params)).await?;
        let deadline = self.http.step_deadline();
        while let Some(event) = self.stream.next(self.http, deadline).await? {
            if event.event.as_deref().is_some_and(|name| name != "message") {
                continue;
            }
            let message: Value = serde_json::from_str(&event.data).map_err(|e| {
                ProbeError::NotMcp(format!("SSE event is not JSON ({e}): {}", jsonrpc::excerpt(&event.data)))
            })?;
            if let Some(outcome) = jsonrpc::answer_to(&message, id)? {
                return outcome;
            }
        }
        Err(ProbeError::NotMcp("the SSE stream ended before the answer".into()))
    }

    pub async fn notify(&mut self, method: &str) -> Result<(), ProbeError> {
        self.post(&jsonrpc::notification(method)).await
    }
}
