//! The fixture's HTTP server: MCP on `/mcp` (Streamable HTTP, rmcp) and `/sse` + `/messages`
//! (legacy HTTP+SSE), `/metrics`, `/healthz`, an `X-Server-Version` header on every response,
//! and the shutdown real servers should do: on SIGTERM, refuse new sessions and keep serving the
//! open ones (and their streams) until they end or the process is killed.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::serve::ListenerExt;
use axum::{
    Router,
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::FixtureConfig,
    handler::{FixtureHandler, Shared},
    legacy_sse::{self, LegacySessions},
};

const MAX_BODY: usize = 4 * 1024 * 1024;

/// Streamable HTTP endpoint.
const MCP_PATH: &str = "/mcp";
/// Legacy HTTP+SSE: the stream, and where its `endpoint` event tells clients to POST.
const SSE_PATH: &str = "/sse";
const MESSAGES_PATH: &str = "/messages";

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    sessions: LegacySessions,
    started: Instant,
    draining: Arc<AtomicBool>,
}

/// A running fixture.
pub struct Fixture {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    draining: Arc<AtomicBool>,
    stop_accepting: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Fixture {
    /// Binds and starts serving.
    pub async fn start(config: FixtureConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        if let Some(seconds) = config.crash_after_seconds {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                tracing::error!(seconds, "crashing after the configured time (fault injected)");
                std::process::abort();
            });
        }
        let shared = Shared::new(config);
        let draining = Arc::new(AtomicBool::new(false));
        let state = AppState {
            shared: shared.clone(),
            sessions: LegacySessions::default(),
            started: Instant::now(),
            draining: draining.clone(),
        };
        let mcp_config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(true)
            // Pods are reached by pod IP or Service name, never only by localhost.
            .disable_allowed_hosts();
        let factory_shared = shared.clone();
        let mcp = StreamableHttpService::new(
            move || Ok(FixtureHandler::new(factory_shared.clone(), "streamable-http")),
            Arc::new(LocalSessionManager::default()),
            mcp_config,
        );
        let version = HeaderValue::from_str(&shared.config.server_version)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let mut router = Router::new()
            .nest_service(MCP_PATH, mcp)
            .route(SSE_PATH, get(open_legacy))
            .route(MESSAGES_PATH, post(legacy_sse::post).with_state(state.sessions.clone()))
            .route("/healthz", get(healthz));
        if shared.config.metrics {
            router = router.route("/metrics", get(metrics));
        }
        let router = router
            .layer(middleware::from_fn_with_state(state.clone(), refuse_new_sessions_when_draining))
            .layer(middleware::map_response(move |mut response: Response| {
                let version = version.clone();
                async move {
                    response.headers_mut().insert("x-server-version", version);
                    response
                }
            }))
            .with_state(state);
        let stop_accepting = CancellationToken::new();
        let stop = stop_accepting.clone();
        let tls = match (&shared.config.tls_cert, &shared.config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
            (None, None) => None,
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "--tls-cert and --tls-key go together",
                ));
            }
        };
        let server = match tls {
            Some(acceptor) => {
                let listener = crate::tls::TlsListener::new(listener, acceptor, stop.clone())?;
                tokio::spawn(async move {
                    axum::serve(listener, router)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await
                })
            }
            None => tokio::spawn(async move {
                // TCP_NODELAY: without it a handshake session's second request waited out the
                // client's delayed ACK (tools/list at 41 ms against the Python SDK's 2 ms).
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }),
        };
        tracing::info!(%addr, profile = ?shared.config.profile(), version = %shared.config.server_version, "mcp-fixture serving");
        Ok(Self { addr, shared, draining, stop_accepting, server })
    }

    /// What SIGTERM does: no new connections or sessions; open ones are served to their end.
    pub fn begin_shutdown(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.stop_accepting.cancel();
    }

    /// Waits until every connection has ended after `begin_shutdown`.
    pub async fn finished(self) -> std::io::Result<()> {
        self.server.await.map_err(std::io::Error::other)?
    }

    /// Base URL, e.g. `http://127.0.0.1:43121`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn open_legacy(State(state): State<AppState>) -> Response {
    legacy_sse::open(state.shared, state.sessions, MESSAGES_PATH).await
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], state.shared.metrics.render())
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    let slow_start = Duration::from_secs(state.shared.config.slow_start_seconds);
    if state.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if state.started.elapsed() < slow_start {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    } else {
        (StatusCode::OK, "ok").into_response()
    }
}

/// After SIGTERM: a new legacy stream, an `initialize` or a `server/discover` is refused with
/// 503 so clients go elsewhere; requests of open sessions and their streams carry on.
async fn refuse_new_sessions_when_draining(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !state.draining.load(Ordering::SeqCst) {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    if request.method() == Method::GET && path == SSE_PATH {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if request.method() != Method::POST || !path.starts_with(MCP_PATH) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    };
    let method = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("method").and_then(|m| m.as_str()).map(str::to_owned));
    if matches!(method.as_deref(), Some("initialize" | "server/discover")) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}
