//! The proxy: hyper (HTTP/1.1 and h2c, through hyper-util's auto builder) in front of the
//! backends. A request is read whole only when it is a POST (a JSON-RPC message, bounded by
//! `max_body`: the method decides where it goes); responses stream through frame by frame
//! ([`relay`]), so an SSE stream is never buffered and a slow client slows its backend
//! (backpressure).
//!
//! Where a request goes:
//! - it carries a session token (`Mcp-Session-Id`, or the legacy `sessionId` query): to the pod
//!   sealed in it, in rotation or not; a token that does not open, names a backend this router
//!   does not know (a pod gone) or one that refuses the connection, or belongs to an evacuated
//!   revision, gets 404 — the spec's signal to start a new session — and never another pod;
//! - an `initialize`, or a legacy `GET …/sse`: a new session, to a revision by weight and the pod
//!   of it with the fewest open sessions; the backend's session id goes back sealed;
//! - anything else (the stateless 2026-07-28 era): a revision by weight for this request (a
//!   tool with a route of its own by that route's weight, the tool as `Mcp-Name` names it), the
//!   pod with the fewest sessions; a `subscriptions/listen` stream stays there for its life.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderMap, HeaderName, HeaderValue},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::sync::watch;
use tracing::debug;

use super::{
    balance::{Balancer, RevisionTarget},
    declared::Declared,
    jsonrpc,
    metrics::RouterMetrics,
    relay::{self, Call, Relay},
    sessions::{self, Sessions},
    sse,
    token::{Keys, Pin},
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Send, not Sync: a relayed body holds the stream it reads from, which hyper needs only to
/// send between threads.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

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
    /// Revisions rolled back: their sessions end at their next request (404, and the client
    /// starts a new one where the weights say), their GET streams between two events once no
    /// call awaits an answer on them; calls in flight finish.
    pub evacuated: BTreeSet<String>,
    /// Which configuration this table was built from (the operator's, in Kubernetes), reported
    /// back so the operator knows what is in force.
    pub version: String,
    /// The operator's drains this table was built knowing of (reported back).
    pub drains: BTreeSet<super::config::DrainKey>,
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

    /// The weight new work of `revision` gets (0 when it takes none).
    pub fn weight_of(&self, revision: &str) -> u32 {
        self.revisions.iter().find(|t| t.revision == revision).map_or(0, |t| t.weight)
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
    table: watch::Sender<Arc<Table>>,
    /// Swapped when the key Secret changes (a rotation), never locked across a request.
    keys: std::sync::RwLock<Arc<Keys>>,
    pub sessions: Sessions,
    new_sessions: Mutex<Balancer>,
    requests: Mutex<Balancer>,
    tools: Mutex<BTreeMap<String, Balancer>>,
    /// The pod choice within a revision (fewest sessions, then fewest picks).
    pods: Mutex<Balancer>,
    client: Client<HttpConnector, Full<Bytes>>,
    limits: Limits,
    pub metrics: RouterMetrics,
    /// A table is in force. Until then every request is answered 503 (retry): a router that
    /// has not yet listed its rollout's pods cannot say a session's pod is gone (seen on the
    /// cluster: a restarted router, still in the endpoints for a moment, answered 404).
    ready: std::sync::atomic::AtomicBool,
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
pub(super) enum Kind {
    /// A new Streamable HTTP session (`initialize`).
    Initialize,
    /// A new legacy HTTP+SSE session (`GET …/sse`).
    LegacyOpen,
    /// A `subscriptions/listen` (2026-07-28): a stateless request whose response is a stream
    /// for as long as the client listens. It stays on the pod it reached; it is ended between
    /// two events when that revision is evacuated (the client listens again, where the weights
    /// now say).
    Listen,
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
            table: watch::Sender::new(Arc::new(table)),
            keys: std::sync::RwLock::new(Arc::new(keys)),
            sessions,
            new_sessions: Mutex::default(),
            requests: Mutex::default(),
            tools: Mutex::default(),
            pods: Mutex::default(),
            client,
            limits,
            metrics: RouterMetrics::default(),
            ready: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Labels every metric series with the rollout this router serves.
    #[must_use]
    pub fn for_rollout(mut self, rollout: &str) -> Self {
        self.metrics = RouterMetrics::new(Some(rollout));
        self
    }

    /// A router with no table yet (Kubernetes mode, before its watches have synced): it
    /// answers 503 until [`Router::set_table`] puts the first one in force.
    pub fn unsynced(keys: Keys, sessions: Sessions, limits: Limits) -> Self {
        let router = Self::new(Table::default(), keys, sessions, limits);
        router.ready.store(false, std::sync::atomic::Ordering::SeqCst);
        router
    }

    /// Whether a table is in force.
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// New keys (a rotation): tokens are sealed with the new current key from now on.
    pub fn set_keys(&self, keys: Keys) {
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
    }

    pub fn table(&self) -> Arc<Table> {
        self.table.borrow().clone()
    }

    /// Notified on every table change (evacuated streams end on it).
    pub(super) fn table_changes(&self) -> watch::Receiver<Arc<Table>> {
        self.table.subscribe()
    }

    /// Puts a new table in force. Sessions of a revision evacuated by it end now (their next
    /// request is answered 404).
    pub fn set_table(&self, mut table: Table) {
        // A revision stays evacuated until a table gives it traffic again. The operator lists it
        // only until its drain ends, which is as soon as the router carries no call or stream
        // on it — sessions still pinned to it would then reach its pods, still terminating, and
        // be served by the rolled-back revision (seen on the cluster: 4 sessions open on the
        // canary, none moved). A re-applied revision takes traffic again and leaves the set.
        let weighted: BTreeSet<&str> =
            table.revisions.iter().filter(|t| t.weight > 0).map(|t| t.revision.as_str()).collect();
        let still: Vec<String> = self
            .table
            .borrow()
            .evacuated
            .iter()
            .filter(|r| !weighted.contains(r.as_str()))
            .cloned()
            .collect();
        table.evacuated.extend(still);
        let newly: BTreeSet<String> =
            table.evacuated.difference(&self.table.borrow().evacuated).cloned().collect();
        if !newly.is_empty() {
            for ended in self.sessions.close_revisions(&newly) {
                self.metrics.session_ended(&ended.revision, ended.seconds);
            }
        }
        self.table.send_replace(Arc::new(table));
        self.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Forgets sessions idle past the timeout (called periodically).
    pub fn expire_sessions(&self) {
        for ended in self.sessions.expire(Instant::now()) {
            self.metrics.session_ended(&ended.revision, ended.seconds);
        }
    }

    pub(super) fn end_session(&self, pin: &Pin) {
        if let Some(ended) = self.sessions.close(pin) {
            self.metrics.session_ended(&ended.revision, ended.seconds);
        }
    }

    /// hyper's service: never an error; every failure is an HTTP answer.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let response = match self.route(req, started).await {
            Ok(r) => r,
            Err(answer) => answer.into_response(),
        };
        self.metrics.observe(&response, started.elapsed());
        Ok(response)
    }

    async fn route(
        self: &Arc<Self>,
        req: Request<Incoming>,
        started: Instant,
    ) -> Result<Response<ProxyBody>, Answer> {
        if !self.is_ready() {
            return Err(Answer::Starting);
        }
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
        let legacy_post = parts.method == hyper::Method::POST && query_session.is_some();
        let token = parts
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or(query_session);
        let sniffed = jsonrpc::sniff(&body);
        let declared = Declared::read(&parts.headers).map_err(Answer::HeaderMismatch)?;
        declared.check(&sniffed).map_err(Answer::HeaderMismatch)?;
        // The tool a route applies to: as the headers name it (the body agrees, checked above),
        // else as the body does (clients of the handshake era send no such header).
        let tool = declared.tool().map(str::to_owned).or_else(|| sniffed.tool.clone());
        let kind = if token.is_some() {
            Kind::Other
        } else if parts.method == hyper::Method::GET && parts.uri.path().ends_with("/sse") {
            Kind::LegacyOpen
        } else if sniffed.is_initialize() {
            Kind::Initialize
        } else if sniffed.method.as_deref() == Some("subscriptions/listen") {
            Kind::Listen
        } else {
            Kind::Other
        };
        let calls: Vec<Call> =
            sniffed.tool_calls.into_iter().map(|(id, tool)| Call { id, tool, started }).collect();
        let target = match &token {
            Some(token) => {
                let pin = self.keys().open(token).ok_or(Answer::SessionNotFound("unknown session"))?;
                // Legacy calls are answered on their session's stream: awaited there from
                // before the evacuation check, so a stream ended by an evacuation never
                // leaves behind a call it was still to answer.
                if legacy_post {
                    self.sessions.calls_posted(&pin, calls.iter().map(Call::pending), Instant::now());
                }
                let pinned = self.pinned(&self.table(), pin.clone(), token);
                if pinned.is_err() && legacy_post {
                    self.forget_calls(&pin, &calls);
                }
                pinned?
            }
            None => self.choose(&self.table(), kind, tool.as_deref())?,
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
        // In flight from now until its response has finished (a GET or listen stream is
        // counted as a stream, not as work in flight).
        let flight = (parts.method != hyper::Method::GET && kind != Kind::Listen)
            .then(|| relay::InFlight::new(self.clone(), &target.backend, &target.revision));
        let response = match self.client.request(request).await {
            Ok(response) => response,
            Err(e) => {
                debug!(backend = %target.backend, error = %e, "backend request failed");
                for call in &calls {
                    self.metrics.call(&target.revision, &call.tool, Some("backend"), None);
                }
                if let Some(pin) = &target.pin {
                    if legacy_post {
                        self.forget_calls(pin, &calls);
                    }
                    // A pinned session whose pod refuses connections is gone with it.
                    if e.is_connect() {
                        self.end_session(pin);
                        return Err(Answer::SessionNotFound("its pod does not answer"));
                    }
                }
                return Err(Answer::BadGateway);
            }
        };
        // Legacy calls are answered on their session's stream, not in this response; a call
        // the backend refused will not be answered at all.
        let calls = match &target.pin {
            Some(pin) if legacy_post => {
                if !response.status().is_success() {
                    self.forget_calls(pin, &calls);
                    for call in &calls {
                        self.metrics.call(
                            &target.revision,
                            &call.tool,
                            Some("http"),
                            Some(call.started.elapsed()),
                        );
                    }
                }
                Vec::new()
            }
            _ => calls,
        };
        Ok(self.respond(&parts.method, kind, target, response, calls, flight))
    }

    /// Legacy calls posted on a session that will not be answered after all.
    fn forget_calls(&self, pin: &Pin, calls: &[Call]) {
        for call in calls {
            self.sessions.call_answered(pin, &call.id);
        }
    }

    fn pinned(&self, table: &Table, pin: Pin, token: &str) -> Result<Target, Answer> {
        if table.evacuated.contains(&pin.revision) {
            self.end_session(&pin);
            return Err(Answer::SessionNotFound("its revision was rolled back"));
        }
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
                let balancer = if matches!(kind, Kind::Other | Kind::Listen) {
                    &self.requests
                } else {
                    &self.new_sessions
                };
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
        mut calls: Vec<Call>,
        flight: Option<relay::InFlight>,
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
                // An id that cannot be sealed (not visible ASCII, too long) never reaches the
                // client: its next request could not be routed.
                let id = parts.headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let sealed = id.and_then(|id| {
                    let pin = Pin {
                        backend: target.backend.clone(),
                        revision: target.revision.clone(),
                        session: id,
                        opened: sessions::unix_now(),
                    };
                    let token = HeaderValue::from_str(&self.keys().seal(&pin)?).ok()?;
                    Some((pin, token))
                });
                if let Some((pin, token)) = sealed {
                    parts.headers.insert(SESSION_HEADER, token);
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
                    self.end_session(pin);
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
        // A call the backend refused at the HTTP level is answered by no JSON-RPC response.
        if !status.is_success() {
            for call in calls.drain(..) {
                self.metrics.call(&target.revision, &call.tool, Some("http"), Some(call.started.elapsed()));
            }
        }
        let content_type =
            parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let streaming = content_type.starts_with("text/event-stream");
        let json = content_type.starts_with("application/json");
        let is_get = method == hyper::Method::GET;
        let relay = Relay::new(relay::Setup {
            router: self.clone(),
            backend: target.backend,
            revision: target.revision,
            streaming,
            json,
            calls,
            legacy_open: kind == Kind::LegacyOpen && status.is_success(),
            // A session's GET stream (Streamable HTTP) is ended when its revision is evacuated.
            evacuable_session: if is_get { target.pin } else { None },
            listen: kind == Kind::Listen,
            flight,
        });
        let body: ProxyBody = UnsyncBoxBody::new(StreamBody::new(relay.into_stream(body)));
        Response::from_parts(parts, body)
    }
}

/// Why a request is answered by the router itself.
#[derive(Debug)]
enum Answer {
    SessionNotFound(&'static str),
    /// No table in force yet.
    Starting,
    NoBackend,
    BadGateway,
    BadRequest,
    TooLarge(usize),
    /// The standard MCP headers and the body disagree (or a header is unreadable).
    HeaderMismatch(&'static str),
}

impl Answer {
    fn into_response(self) -> Response<ProxyBody> {
        let (status, code, message) = match self {
            // -32001 as the SDKs use for an unknown session; 404 is what makes clients start a
            // new one.
            Self::SessionNotFound(why) => {
                (StatusCode::NOT_FOUND, -32001, format!("Session not found ({why})"))
            }
            Self::Starting => (StatusCode::SERVICE_UNAVAILABLE, -32603, "the router is starting".to_owned()),
            Self::NoBackend => (StatusCode::SERVICE_UNAVAILABLE, -32603, "no backend in rotation".to_owned()),
            Self::BadGateway => (StatusCode::BAD_GATEWAY, -32603, "the backend did not answer".to_owned()),
            Self::BadRequest => (StatusCode::BAD_REQUEST, -32600, "bad request".to_owned()),
            // HeaderMismatch, as the 2026-07-28 revision defines it.
            Self::HeaderMismatch(why) => (StatusCode::BAD_REQUEST, -32020, format!("Header mismatch: {why}")),
            Self::TooLarge(max) => {
                (StatusCode::PAYLOAD_TOO_LARGE, -32600, format!("request body over {max} bytes"))
            }
        };
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
        let mut response = Response::new(UnsyncBoxBody::new(
            Full::new(Bytes::from(body.to_string())).map_err(|e| match e {}),
        ));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
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
