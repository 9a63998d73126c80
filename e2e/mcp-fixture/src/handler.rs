//! The MCP server logic on rmcp's `ServerHandler`: tools of the profile, argument validation,
//! the fault knobs, the streamed `export_report`, and per-session metrics.

use std::{
    borrow::Cow,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock as Content, DiscoverResult,
        Implementation, InitializeRequestParams, InitializeResult, ListToolsResult, PaginatedRequestParams,
        ProgressNotificationParam, ProtocolVersion, ServerCapabilities, ServerConfig, SubscriptionFilter,
        Tool,
    },
    service::RequestContext,
};
use serde_json::{Map, Value};

use crate::{
    config::{FixtureConfig, SchemaErrorStyle},
    metrics::{Metrics, Outcome, SessionGuard},
    tools::{self, ToolSpec},
};

/// State shared by every session of one fixture process.
pub struct Shared {
    pub config: FixtureConfig,
    pub metrics: Metrics,
    tools: Vec<ToolSpec>,
    calls: AtomicU64,
    dice: Mutex<fastrand::Rng>,
    started: Instant,
}

impl Shared {
    pub fn new(config: FixtureConfig) -> Arc<Self> {
        let metrics = Metrics::new(&config.server_version, &config.server_rollout);
        let tools = tools::tools(config.profile());
        let dice = Mutex::new(config.seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed));
        Arc::new(Self { config, metrics, tools, calls: AtomicU64::new(0), dice, started: Instant::now() })
    }

    /// The share of tool calls that fail now: none until `errors_after_seconds` have passed.
    fn error_rate_now(&self) -> f64 {
        let healthy_for = Duration::from_secs(self.config.errors_after_seconds);
        if self.started.elapsed() < healthy_for { 0.0 } else { self.config.error_rate }
    }

    /// True with probability `rate`.
    fn roll(&self, rate: f64) -> bool {
        rate > 0.0 && self.dice.lock().unwrap_or_else(|p| p.into_inner()).f64() < rate
    }

    fn protocol_versions(&self) -> Vec<ProtocolVersion> {
        self.config
            .protocol_versions
            .iter()
            .filter_map(|v| serde_json::from_value(Value::String(v.clone())).ok())
            .collect()
    }
}

/// One session's handler (rmcp builds one per session, or per request in the stateless era).
/// It holds the session open in the metrics until it is dropped.
#[derive(Clone)]
pub struct FixtureHandler {
    shared: Arc<Shared>,
    _session: Arc<SessionGuard>,
}

impl FixtureHandler {
    pub fn new(shared: Arc<Shared>, transport: &'static str) -> Self {
        let session = Arc::new(shared.metrics.session(transport));
        Self { shared, _session: session }
    }

    fn schema_error(&self, tool: &str, message: String) -> Result<CallToolResponse, McpError> {
        match self.shared.config.schema_error_style {
            SchemaErrorStyle::Jsonrpc => Err(McpError::invalid_params(message, None)),
            SchemaErrorStyle::Result => {
                Ok(CallToolResult::error(vec![Content::text(format!("{tool}: {message}"))]).into())
            }
        }
    }

    async fn export_report(
        &self,
        args: &Map<String, Value>,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let seconds = args.get("seconds").and_then(Value::as_f64).unwrap_or(0.0).max(0.0);
        let token = context.meta.get_progress_token();
        let started = Instant::now();
        let total = Duration::from_secs_f64(seconds);
        let mut step = 0u32;
        while started.elapsed() < total {
            let left = total.saturating_sub(started.elapsed());
            tokio::select! {
                () = tokio::time::sleep(left.min(Duration::from_secs(1))) => {}
                () = context.ct.cancelled() => return Err(McpError::internal_error("cancelled", None)),
            }
            step += 1;
            if let Some(token) = token.clone() {
                let progress = started.elapsed().as_secs_f64().min(seconds);
                let param = ProgressNotificationParam::new(token, progress)
                    .with_total(seconds)
                    .with_message(format!("section {step} done"));
                // A client that went away is the caller's problem; the call still completes.
                let _ = context.peer.notify_progress(param).await;
            }
        }
        let text = format!("report of {seconds}s ready (served by {})", self.shared.config.server_version);
        Ok(CallToolResult::success(vec![Content::text(text)]).into())
    }
}

impl ServerHandler for FixtureHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
            .with_server_info(Implementation::new("mcp-fixture", self.shared.config.server_version.clone()))
            .with_instructions("A test MCP server with controllable faults.")
    }

    /// `subscriptions/listen` (2026-07-28): the fixture's tools never change while it runs,
    /// but a client may hold the stream open (rmcp acknowledges it and keeps it until the
    /// client goes), which is what the router's stream handling is tested with.
    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        let accepted = SubscriptionFilter::builder();
        Some(
            if requested.tools_list_changed == Some(true) { accepted.tools_list_changed() } else { accepted }
                .build(),
        )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(self.shared.protocol_versions())
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        if self.shared.config.fail_initialize {
            return Err(McpError::internal_error("initialization failed (fault injected)", None));
        }
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn discover(&self, _context: RequestContext<RoleServer>) -> Result<DiscoverResult, McpError> {
        if self.shared.config.fail_initialize {
            return Err(McpError::internal_error("discovery failed (fault injected)", None));
        }
        Ok(DiscoverResult::from_server_info(self.supported_protocol_versions().into_owned(), self.get_info()))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let tools = self
            .shared
            .tools
            .iter()
            .map(|t| {
                let schema = t.input_schema.as_object().cloned().unwrap_or_default();
                Tool::new(t.name, t.description, Arc::new(schema))
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let shared = &self.shared;
        let calls = shared.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if shared.config.crash_after_calls.is_some_and(|limit| calls > limit) {
            tracing::error!(calls, "crashing after the configured number of calls (fault injected)");
            std::process::abort();
        }
        let started = Instant::now();
        let name = request.name.to_string();
        let args = request.arguments.clone().unwrap_or_default();
        let record = |outcome| shared.metrics.record_call(&name, outcome, started.elapsed().as_secs_f64());

        let Some(tool) = shared.tools.iter().find(|t| t.name == name) else {
            record(Outcome::Error("unknown_tool"));
            return Err(McpError::invalid_params(format!("unknown tool `{name}`"), None));
        };
        if let Err(e) = tools::validate(tool, &args) {
            record(Outcome::Error("schema_validation"));
            return self.schema_error(&name, e.to_string());
        }
        if shared.roll(shared.config.schema_error_rate) {
            record(Outcome::Error("schema_validation"));
            return self.schema_error(&name, format!("invalid arguments for {name} (fault injected)"));
        }
        let mut delay = shared.config.latency();
        if shared.roll(shared.config.tail_rate) {
            delay += Duration::from_millis(shared.config.tail_latency_ms);
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if shared.roll(shared.error_rate_now()) {
            record(Outcome::Error("internal"));
            return Ok(
                CallToolResult::error(vec![Content::text(format!("{name} failed (fault injected)"))]).into()
            );
        }
        let response = if name == "export_report" {
            self.export_report(&args, &context).await
        } else {
            let (text, structured) = tools::result(&name, &args, &shared.config.server_version);
            let mut result = CallToolResult::success(vec![Content::text(text)]);
            result.structured_content = Some(structured);
            Ok(result.into())
        };
        record(if response.is_ok() { Outcome::Success } else { Outcome::Error("internal") });
        response
    }
}
