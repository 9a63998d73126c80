//! A response on its way to the client: forwarded frame by frame as it comes (never buffered
//! whole; the client's pace is the backend's), and read as it passes:
//! - the answers to the request's tool calls (a JSON body, or events of an SSE stream; legacy
//!   answers arrive on their session's stream) become the router's call metrics;
//! - a legacy stream's first `endpoint` event gets the sealed token, and the session it opens
//!   lasts as long as the stream;
//! - a session's GET stream, or a `subscriptions/listen` stream, whose revision is evacuated
//!   is ended between two events, once no call this router posted on it awaits its answer —
//!   never inside an event;
//! - what it holds (a request in flight, an open stream, a legacy session) is released when
//!   the body ends or is dropped (the client gone).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use http_body_util::BodyStream;
use hyper::body::{Frame, Incoming};
use tokio::sync::watch;

use super::{
    jsonrpc,
    metrics::UNKNOWN_TOOL,
    proxy::{BoxError, Router, Table},
    sessions::PendingCall,
    sse::{self, EventReader, MAX_EVENT},
    token::Pin,
};

/// A tool call of the request, awaiting its answer in the response.
#[derive(Clone, Debug)]
pub struct Call {
    pub id: String,
    pub tool: String,
    pub started: Instant,
}

impl Call {
    /// The same call, awaited on a legacy session's stream.
    pub fn pending(&self) -> PendingCall {
        PendingCall { id: self.id.clone(), tool: self.tool.clone(), started: self.started }
    }
}

/// How often an evacuated stream that still awaits answers looks again whether it may end (a
/// call it awaited may also end without an answer on it: refused, or its POST failed).
const EVACUATION_RECHECK: Duration = Duration::from_millis(250);

/// A request counted in flight until dropped.
pub struct InFlight {
    router: Arc<Router>,
    backend: String,
    revision: String,
}

impl InFlight {
    pub fn new(router: Arc<Router>, backend: &str, revision: &str) -> Self {
        router.sessions.request_started(backend, revision);
        Self { router, backend: backend.to_owned(), revision: revision.to_owned() }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.router.sessions.request_ended(&self.backend, &self.revision);
    }
}

/// What a relay is built from.
pub struct Setup {
    pub router: Arc<Router>,
    pub backend: String,
    pub revision: String,
    /// The response is an SSE stream.
    pub streaming: bool,
    /// The response is a JSON body.
    pub json: bool,
    /// The request's tool calls still to be answered in this response.
    pub calls: Vec<Call>,
    /// A new legacy session's stream: its endpoint event is rewritten.
    pub legacy_open: bool,
    /// A session's GET stream, ended if its revision is evacuated.
    pub evacuable_session: Option<Pin>,
    /// A `subscriptions/listen` stream: ended between two events if its revision is evacuated.
    pub listen: bool,
    pub flight: Option<InFlight>,
}

enum Reading {
    Nothing,
    /// A JSON body, kept up to [`MAX_EVENT`] bytes to be read at its end.
    Json {
        body: Vec<u8>,
        overflow: bool,
    },
    Events(EventReader),
}

/// The legacy preamble: bytes held until the endpoint event is rewritten.
struct Legacy {
    buffer: Vec<u8>,
    rewritten: bool,
}

pub struct Relay {
    router: Arc<Router>,
    backend: String,
    revision: String,
    streaming: bool,
    reading: Reading,
    calls: Vec<Call>,
    legacy: Option<Legacy>,
    /// The session whose stream this is (a legacy stream's, once opened; a GET stream's).
    session: Option<Pin>,
    /// The legacy session this stream opened: it ends with the stream.
    owns_session: bool,
    changes: Option<watch::Receiver<Arc<Table>>>,
    finished: bool,
    _flight: Option<InFlight>,
}

impl Relay {
    pub fn new(setup: Setup) -> Self {
        let Setup {
            router,
            backend,
            revision,
            streaming,
            json,
            calls,
            legacy_open,
            evacuable_session,
            listen,
            flight,
        } = setup;
        let reading = if streaming {
            Reading::Events(EventReader::default())
        } else if json && !calls.is_empty() {
            Reading::Json { body: Vec::new(), overflow: false }
        } else {
            Reading::Nothing
        };
        if streaming {
            router.sessions.stream_started(&backend, &revision);
        }
        let evacuable = streaming && (legacy_open || evacuable_session.is_some() || listen);
        let changes = evacuable.then(|| router.table_changes());
        Self {
            router,
            backend,
            revision,
            streaming,
            reading,
            calls,
            legacy: legacy_open.then(|| Legacy { buffer: Vec::new(), rewritten: false }),
            session: evacuable_session,
            owns_session: false,
            changes,
            finished: false,
            _flight: flight,
        }
    }

    /// The response body, relayed.
    pub fn into_stream(
        self,
        body: Incoming,
    ) -> impl Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static {
        let frames = BodyStream::new(body).boxed();
        stream::unfold((self, frames), |(mut relay, mut frames)| async move {
            let item = relay.next(&mut frames).await?;
            Some((item, (relay, frames)))
        })
    }

    async fn next(
        &mut self,
        frames: &mut (impl Stream<Item = Result<Frame<Bytes>, hyper::Error>> + Unpin),
    ) -> Option<Result<Frame<Bytes>, BoxError>> {
        loop {
            if self.finished {
                return None;
            }
            if self.evacuated_and_quiet() {
                self.finish(false);
                return None;
            }
            let evacuating = self.evacuating();
            let frame = match &mut self.changes {
                Some(changes) => tokio::select! {
                    frame = frames.next() => frame,
                    changed = changes.changed() => {
                        if changed.is_err() {
                            self.changes = None;
                        }
                        continue;
                    }
                    () = tokio::time::sleep(EVACUATION_RECHECK), if evacuating => continue,
                },
                None => frames.next().await,
            };
            let frame = match frame {
                None => {
                    self.finish(false);
                    return None;
                }
                Some(Err(e)) => {
                    self.finish(true);
                    return Some(Err(BoxError::from(e)));
                }
                Some(Ok(frame)) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(other) => return Some(Ok(other)), // trailers pass as they are
            };
            let data = match self.legacy_preamble(data) {
                Ok(Some(data)) => data,
                Ok(None) => continue, // the endpoint event is not whole yet
                Err(e) => {
                    self.finish(true);
                    return Some(Err(e));
                }
            };
            self.read(&data);
            return Some(Ok(Frame::data(data)));
        }
    }

    /// Holds a legacy stream's bytes until its endpoint event can be rewritten with a sealed
    /// token; then everything passes as it comes.
    fn legacy_preamble(&mut self, data: Bytes) -> Result<Option<Bytes>, BoxError> {
        let Some(legacy) = &mut self.legacy else { return Ok(Some(data)) };
        if legacy.rewritten {
            return Ok(Some(data));
        }
        legacy.buffer.extend_from_slice(&data);
        let mut opened = None;
        let keys = self.router.keys();
        let (backend, revision) = (&self.backend, &self.revision);
        let rewrite = sse::rewrite_endpoint(&legacy.buffer, |session| {
            let pin = Pin {
                backend: backend.clone(),
                revision: revision.clone(),
                session: session.to_owned(),
                opened: super::sessions::unix_now(),
            };
            let token = keys.seal(&pin)?;
            opened = Some(pin);
            Some(token)
        });
        match rewrite {
            sse::Rewrite::NeedMore => Ok(None),
            sse::Rewrite::Invalid => Err(BoxError::from("not a legacy MCP event stream")),
            sse::Rewrite::Done(out) => {
                if let Some(pin) = opened {
                    self.router.sessions.touch(&pin, Instant::now());
                    self.router.metrics.session_opened(&pin.revision);
                    self.session = Some(pin);
                    self.owns_session = true;
                }
                legacy.rewritten = true;
                legacy.buffer = Vec::new();
                Ok(Some(Bytes::from(out)))
            }
        }
    }

    /// Reads what passes: answers to tool calls.
    fn read(&mut self, data: &[u8]) {
        match &mut self.reading {
            Reading::Nothing => {}
            Reading::Json { body, overflow } => {
                if body.len() + data.len() > MAX_EVENT {
                    *overflow = true;
                    *body = Vec::new();
                } else if !*overflow {
                    body.extend_from_slice(data);
                }
            }
            Reading::Events(reader) => {
                let mut events = Vec::new();
                reader.feed(data, |e| events.push(e));
                for event in events.into_iter().filter(|e| e.name == "message") {
                    if let Ok(message) = serde_json::from_str::<serde_json::Value>(&event.data) {
                        self.answered(&message);
                    }
                }
            }
        }
    }

    /// Records the calls a JSON-RPC message answers.
    fn answered(&mut self, message: &serde_json::Value) {
        for (id, outcome) in jsonrpc::responses(message) {
            if let Some(at) = self.calls.iter().position(|c| c.id == id) {
                let call = self.calls.swap_remove(at);
                self.router.metrics.answered(
                    &self.revision,
                    &call.tool,
                    outcome,
                    Some(call.started.elapsed()),
                );
            } else if let Some(pin) = &self.session {
                // A legacy answer on its session's stream.
                match self.router.sessions.call_answered(pin, &id) {
                    Some(call) => self.router.metrics.answered(
                        &self.revision,
                        &call.tool,
                        outcome,
                        Some(call.started.elapsed()),
                    ),
                    // Posted through another replica: counted when it is a tool result, untimed.
                    None if looks_like_tool_result(message, &id) => {
                        self.router.metrics.answered(&self.revision, UNKNOWN_TOOL, outcome, None);
                    }
                    None => {}
                }
            }
        }
    }

    /// Whether this is a GET or listen stream of an evacuated revision.
    fn evacuating(&self) -> bool {
        self.changes.as_ref().is_some_and(|c| c.borrow().evacuated.contains(&self.revision))
    }

    /// A GET or listen stream of an evacuated revision, between two events, with nothing it
    /// carries still awaited.
    fn evacuated_and_quiet(&self) -> bool {
        if !self.evacuating() {
            return false;
        }
        let between_events = match &self.reading {
            Reading::Events(reader) => reader.at_boundary(),
            _ => true,
        };
        let preamble_done = self.legacy.as_ref().is_none_or(|l| l.rewritten);
        let awaited = self.session.as_ref().map_or(0, |pin| self.router.sessions.pending_on(pin));
        between_events && preamble_done && awaited == 0
    }

    /// The body ended (`failed`: the backend broke it off): calls never answered are counted.
    fn finish(&mut self, failed: bool) {
        self.finished = true;
        if let Reading::Json { body, overflow } = std::mem::replace(&mut self.reading, Reading::Nothing) {
            if overflow {
                // Too large to read: it came whole, so the calls ended, as far as can be told, well.
                for call in self.calls.drain(..) {
                    self.router.metrics.call(&self.revision, &call.tool, None, Some(call.started.elapsed()));
                }
            } else if let Ok(message) = serde_json::from_slice::<serde_json::Value>(&body) {
                self.answered(&message);
            }
        }
        let error = if failed { "backend" } else { "unanswered" };
        for call in self.calls.drain(..) {
            self.router.metrics.call(&self.revision, &call.tool, Some(error), Some(call.started.elapsed()));
        }
    }
}

/// Whether an answer looks like a tool call's (`content` or `isError` in its result): how a
/// legacy answer is recognised when the call was posted through another replica.
fn looks_like_tool_result(message: &serde_json::Value, id: &str) -> bool {
    let candidates: Vec<&serde_json::Value> = match message {
        serde_json::Value::Array(batch) => batch.iter().collect(),
        other => vec![other],
    };
    candidates.into_iter().any(|m| {
        m.get("id").and_then(jsonrpc::id_key).as_deref() == Some(id)
            && m.get("result").is_some_and(|r| r.get("content").is_some() || r.get("isError").is_some())
    })
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Dropped before its end: the client went away. Its unanswered calls are not the
        // backend's failures and are not counted.
        if self.streaming {
            self.router.sessions.stream_ended(&self.backend, &self.revision);
        }
        if self.owns_session
            && let Some(pin) = &self.session
        {
            self.router.end_session(pin);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::jsonrpc::Outcome;

    #[test]
    fn tool_results_are_told_from_other_answers() {
        let result = serde_json::json!({"jsonrpc": "2.0", "id": 3, "result": {"content": []}});
        assert!(looks_like_tool_result(&result, "3"));
        assert!(!looks_like_tool_result(&result, "4"));
        let tools = serde_json::json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": []}});
        assert!(!looks_like_tool_result(&tools, "3"));
        let batch = serde_json::json!([tools, {"id": "a", "result": {"isError": true}}]);
        assert!(looks_like_tool_result(&batch, "\"a\""));
    }

    #[test]
    fn an_outcome_names_its_error_type() {
        assert_eq!(Outcome::Ok.error_type(), None);
        assert_eq!(Outcome::SchemaValidation.error_type(), Some("schema_validation"));
    }
}
