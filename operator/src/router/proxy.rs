//! The proxy: hyper (HTTP/1.1 and h2c, through hyper-util's auto builder) in front of the
//! backends. A request is read whole only when it is a POST (a JSON-RPC message, bounded by
//! `max_body`: the method decides where it goes); responses stream through frame by frame, so
//! an SSE stream is never buffered and a slow client slows its backend (backpressure).
//!
//! Where a request goes:
//! - it carries a session token (`Mcp-Session-Id`, or the legacy `sessionId` query): to the pod
//!   sealed in it, in rotation or not; a token that does not open, or names a backend this
//!   router does not know (a pod gone), gets 404 — the spec's signal to start a new session —
//!   and never another pod;
//! - an `initialize`, or a legacy `GET …/sse`: a new session, to a revision by weight and the pod
//!   of it with the fewest open sessions; the backend's session id goes back sealed;
//! - anything else (the stateless 2026-07-28 era): a revision by weight for this request (a
//!   tool with a route of its own by that route's weight), the pod with the fewest sessions.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{StreamExt, stream};
use http_body_util::{BodyExt, BodyStream, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::{Frame, Incoming},
    header::{self, HeaderMap, HeaderName, HeaderValue},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tracing::debug;

use super::{
    balance::{Balancer, RevisionTarget},
    jsonrpc,
    metrics::RouterMetrics,
    sessions::Sessions,
    sse,
    token::{Keys, MAX_SESSION_ID_LEN, Pin},
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = BoxBody<Bytes, BoxError>;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "x-server-version";

/// Where requests may go: the revisions new work is weighted over, and every backend a pinned
/// session may still be on (pods out of rotation included). Nothing else is ever dialled.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub revisions: Vec<RevisionTarget>,
    /// Backend name → its address (`host:port`) and revision.
    pub backends: BTreeMap<String, BackendAddr>,
    /// Tools whose stateless calls go to `canary` at a weight of their own.
    pub tool_routes: BTreeMap<String, u32>,
    pub canary: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendAddr {
    pub authority: String,
    pub revision: String,
}

impl Table {
    /// The targets for a stateless call of `tool`: the canary at the tool's own weight.
    fn for_tool(&self, tool: &str) -> Option<Vec<RevisionTarget>> {
        let weight = *self.tool_routes.get(tool)?;
        let canary = self.canary.as_deref()?;
        let mut out = Vec::new();
        for t in &self.revisions {
            let w = if t.revision == canary { weight } else { 100 - weight.min(100) };
            out.push(RevisionTarget { weight: w, ..t.clone() });
        }
        Some(out)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body read (a JSON-RPC message).
    pub max_body: usize,
    /// A backend that does not accept the connection within this is an error (502).
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_body: 4 * 1024 * 1024, connect_timeout: Duration::from_secs(5) }
    }
}

pub struct Router {
    table: RwLock<Arc<Table>>,
    keys: Keys,
    pub sessions: Sessions,
    new_sessions: Mutex<Balancer>,
    requests: Mutex<Balancer>,
    tools: Mutex<BTreeMap<String, Balancer>>,
    /// The pod choice within a revision (fewest sessions, then fewest picks).
    pods: Mutex<Balancer>,
    client: Client<HttpConnector, Full<Bytes>>,
    limits: Limits,
    pub metrics: RouterMetrics,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where one request goes.
struct Target {
    backend: String,
    authority: String,
    revision: String,
    /// The session it belongs to (a token opened), if any.
    pin: Option<Pin>,
    /// The token the client sent, given back unchanged.
    token: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A new Streamable HTTP session (`initialize`).
    Initialize,
    /// A new legacy HTTP+SSE session (`GET …/sse`).
    LegacyOpen,
    /// A request of a session, or a stateless one.
    Other,
}

impl Router {
    pub fn new(table: Table, keys: Keys, sessions: Sessions, limits: Limits) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Self {
            table: RwLock::new(Arc::new(table)),
            keys,
            sessions,
            new_sessions: Mutex::default(),
            requests: Mutex::default(),
            tools: Mutex::default(),
            pods: Mutex::default(),
            client,
            limits,
            metrics: RouterMetrics::default(),
        }
    }

    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn set_table(&self, table: Table) {
        *self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table);
    }

    /// hyper's service: never an error; every failure is an HTTP answer.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let response = match self.route(req).await {
            Ok(r) => r,
            Err(answer) => answer.into_response(),
        };
        self.metrics.observe(&response, started.elapsed());
        Ok(response)
    }

    async fn route(self: &Arc<Self>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Answer> {
        let (parts, body) = req.into_parts();
        let body = if parts.method == hyper::Method::POST {
            Limited::new(body, self.limits.max_body)
                .collect()
                .await
                .map_err(|_| Answer::TooLarge(self.limits.max_body))?
                .to_bytes()
        } else {
            Bytes::new()
        };
        let query_session =
            parts.uri.query().and_then(|q| sse::session_in_query(q).map(|(_, v)| v.to_owned()));
        let token = parts
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or(query_session);
        let sniffed = jsonrpc::sniff(&body);
        let kind = if token.is_some() {
            Kind::Other
        } else if parts.method == hyper::Method::GET && parts.uri.path().ends_with("/sse") {
            Kind::LegacyOpen
        } else if sniffed.is_initialize() {
            Kind::Initialize
        } else {
            Kind::Other
        };
        let table = self.table();
        let target = match &token {
            Some(token) => self.pinned(&table, token)?,
            None => self.choose(&table, kind, sniffed.tool.as_deref())?,
        };

        let uri = backend_uri(&target, &parts.uri)?;
        let mut request =
            Request::builder().method(parts.method.clone()).uri(uri).version(hyper::Version::HTTP_11);
        let headers = request.headers_mut().ok_or(Answer::BadRequest)?;
        copy_end_to_end(&parts.headers, headers);
        headers
            .insert(header::HOST, HeaderValue::from_str(&target.authority).map_err(|_| Answer::BadGateway)?);
        if let Some(pin) = &target.pin
            && parts.headers.contains_key(SESSION_HEADER)
        {
            headers
                .insert(SESSION_HEADER, HeaderValue::from_str(&pin.session).map_err(|_| Answer::BadRequest)?);
        }
        let request = request.body(Full::new(body)).map_err(|_| Answer::BadRequest)?;
        let response = self.client.request(request).await.map_err(|e| {
            debug!(backend = %target.backend, error = %e, "backend request failed");
            Answer::BadGateway
        })?;
        Ok(self.respond(&parts.method, kind, target, response))
    }

    fn pinned(&self, table: &Table, token: &str) -> Result<Target, Answer> {
        let pin = self.keys.open(token).ok_or(Answer::SessionNotFound("unknown session"))?;
        let addr = table.backends.get(&pin.backend).ok_or(Answer::SessionNotFound("its pod is gone"))?;
        Ok(Target {
            backend: pin.backend.clone(),
            authority: addr.authority.clone(),
            revision: pin.revision.clone(),
            pin: Some(pin),
            token: Some(token.to_owned()),
        })
    }

    fn choose(&self, table: &Table, kind: Kind, tool: Option<&str>) -> Result<Target, Answer> {
        let tool_targets = if kind == Kind::Other { tool.and_then(|t| table.for_tool(t)) } else { None };
        // Each lock is held for one choice only, never two at once.
        let revision = match (&tool_targets, tool) {
            (Some(targets), Some(name)) => {
                lock(&self.tools).entry(name.to_owned()).or_default().revision(targets).cloned()
            }
            _ => {
                let balancer = if kind == Kind::Other { &self.requests } else { &self.new_sessions };
                lock(balancer).revision(&table.revisions).cloned()
            }
        }
        .ok_or(Answer::NoBackend)?;
        let backend = lock(&self.pods)
            .backend(&revision, |b| self.sessions.open_on(b))
            .ok_or(Answer::NoBackend)?
            .to_owned();
        let addr = table.backends.get(&backend).ok_or(Answer::NoBackend)?;
        Ok(Target {
            backend,
            authority: addr.authority.clone(),
            revision: revision.revision,
            pin: None,
            token: None,
        })
    }

    fn respond(
        self: &Arc<Self>,
        method: &hyper::Method,
        kind: Kind,
        target: Target,
        response: Response<Incoming>,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = response.into_parts();
        let status = parts.status;
        strip_hop_by_hop(&mut parts.headers);
        if !parts.headers.contains_key(VERSION_HEADER)
            && let Ok(v) = HeaderValue::from_str(&target.revision)
        {
            parts.headers.insert(VERSION_HEADER, v);
        }
        let now = Instant::now();
        match (kind, &target.pin) {
            (Kind::Initialize, _) => {
                // The backend's session id goes back sealed with where it lives.
                let id = parts.headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                if let Some(id) = id.filter(|id| id.len() <= MAX_SESSION_ID_LEN) {
                    let pin = Pin {
                        backend: target.backend.clone(),
                        revision: target.revision.clone(),
                        session: id,
                    };
                    if let Ok(v) = HeaderValue::from_str(&self.keys.seal(&pin)) {
                        parts.headers.insert(SESSION_HEADER, v);
                    }
                    self.sessions.touch(&pin, now);
                    self.metrics.session_opened(&target.revision);
                } else {
                    parts.headers.remove(SESSION_HEADER);
                }
            }
            (Kind::Other, Some(pin)) => {
                let ended = status == StatusCode::NOT_FOUND
                    || (method == hyper::Method::DELETE && status.is_success());
                if ended {
                    self.sessions.close(pin);
                } else {
                    self.sessions.touch(pin, now);
                }
                if let Some(token) = &target.token
                    && parts.headers.contains_key(SESSION_HEADER)
                    && let Ok(v) = HeaderValue::from_str(token)
                {
                    parts.headers.insert(SESSION_HEADER, v);
                }
            }
            _ => {}
        }
        let streaming = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if streaming {
            self.sessions.stream_started(&target.backend, &target.revision);
        }
        let guard = Guard {
            router: self.clone(),
            backend: target.backend.clone(),
            revision: target.revision.clone(),
            stream: streaming,
            session: None,
        };
        let frames = BodyStream::new(body).map(|f| f.map_err(BoxError::from));
        let body: ProxyBody = if kind == Kind::LegacyOpen && status.is_success() {
            BoxBody::new(StreamBody::new(self.legacy_stream(frames, guard)))
        } else {
            BoxBody::new(StreamBody::new(frames.map(move |f| {
                let _ = &guard; // lives as long as the body
                f
            })))
        };
        Response::from_parts(parts, body)
    }

    /// A legacy SSE stream: its endpoint event rewritten to carry a sealed token, then every
    /// frame as it comes. The session it opens lasts as long as the stream (the guard ends it).
    fn legacy_stream(
        self: &Arc<Self>,
        frames: impl futures::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static,
        guard: Guard,
    ) -> impl futures::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static {
        let router = self.clone();
        let start = (Box::pin(frames), Vec::new(), false, guard);
        stream::unfold(Some(start), move |state| {
            let router = router.clone();
            async move {
                let (mut frames, mut buffer, rewritten, mut guard) = state?;
                if rewritten {
                    let next = frames.next().await?;
                    return Some((next, Some((frames, buffer, true, guard))));
                }
                loop {
                    let frame = match frames.next().await? {
                        Ok(frame) => frame,
                        Err(e) => return Some((Err(e), None)),
                    };
                    let Ok(data) = frame.into_data() else { continue };
                    buffer.extend_from_slice(&data);
                    let mut opened = None;
                    let rewrite = sse::rewrite_endpoint(&buffer, |session| {
                        if session.len() > MAX_SESSION_ID_LEN {
                            return None;
                        }
                        let pin = Pin {
                            backend: guard.backend.clone(),
                            revision: guard.revision.clone(),
                            session: session.to_owned(),
                        };
                        let token = router.keys.seal(&pin);
                        opened = Some(pin);
                        Some(token)
                    });
                    match rewrite {
                        sse::Rewrite::NeedMore => {}
                        sse::Rewrite::Invalid => {
                            return Some((Err(BoxError::from("not a legacy MCP event stream")), None));
                        }
                        sse::Rewrite::Done(out) => {
                            if let Some(pin) = opened {
                                router.sessions.touch(&pin, Instant::now());
                                router.metrics.session_opened(&pin.revision);
                                guard.session = Some(pin);
                            }
                            buffer.clear();
                            return Some((
                                Ok(Frame::data(Bytes::from(out))),
                                Some((frames, buffer, true, guard)),
                            ));
                        }
                    }
                }
            }
        })
    }
}

/// Ends what a response holds (an open stream, a legacy session) when its body is dropped:
/// finished, failed or the client gone.
struct Guard {
    router: Arc<Router>,
    backend: String,
    revision: String,
    stream: bool,
    session: Option<Pin>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.stream {
            self.router.sessions.stream_ended(&self.backend, &self.revision);
        }
        if let Some(pin) = &self.session {
            self.router.sessions.close(pin);
        }
    }
}

/// Why a request is answered by the router itself.
#[derive(Debug)]
enum Answer {
    SessionNotFound(&'static str),
    NoBackend,
    BadGateway,
    BadRequest,
    TooLarge(usize),
}

impl Answer {
    fn into_response(self) -> Response<ProxyBody> {
        let (status, code, message) = match self {
            // -32001 as the SDKs use for an unknown session; 404 is what makes clients start a
            // new one.
            Self::SessionNotFound(why) => {
                (StatusCode::NOT_FOUND, -32001, format!("Session not found ({why})"))
            }
            Self::NoBackend => (StatusCode::SERVICE_UNAVAILABLE, -32603, "no backend in rotation".to_owned()),
            Self::BadGateway => (StatusCode::BAD_GATEWAY, -32603, "the backend did not answer".to_owned()),
            Self::BadRequest => (StatusCode::BAD_REQUEST, -32600, "bad request".to_owned()),
            Self::TooLarge(max) => {
                (StatusCode::PAYLOAD_TOO_LARGE, -32600, format!("request body over {max} bytes"))
            }
        };
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
        let mut response =
            Response::new(BoxBody::new(Full::new(Bytes::from(body.to_string())).map_err(|e| match e {})));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

fn backend_uri(target: &Target, uri: &hyper::Uri) -> Result<hyper::Uri, Answer> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    // A legacy POST carries the session in its query: the backend's own id goes there.
    let path = match (&target.pin, uri.query()) {
        (Some(pin), Some(q)) if sse::session_in_query(q).is_some() => sse::with_session(path, &pin.session),
        _ => path.to_owned(),
    };
    format!("http://{}{path}", target.authority).parse().map_err(|_| Answer::BadRequest)
}

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
];

fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for (name, value) in from {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || n == "host" || named.iter().any(|c| c == n) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(HeaderName::from_static(name));
    }
}
