//! What to probe and how: built from an `McpRollout`'s `probe` spec by the operator, or from flags
//! by `kubectl mcprollout probe`.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::api::{ExpectedContent, ProbeSpec, protocol};

/// Which transport to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TransportChoice {
    /// Streamable HTTP first; on a 4xx to the first POST, the legacy HTTP+SSE transport (the
    /// spec's backwards-compatibility procedure).
    #[default]
    Auto,
    StreamableHttp,
    Sse,
}

/// Bounds that keep a hostile or broken server from holding the probe or its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest response body (JSON) or total bytes of one response stream (SSE).
    pub max_response_bytes: usize,
    /// Largest single SSE event.
    pub max_event_bytes: usize,
    /// Most `tools/list` pages followed.
    pub max_pages: usize,
    /// Most redirects followed (same origin only).
    pub max_redirects: usize,
    /// Most times one SSE response stream is resumed with `Last-Event-ID`.
    pub max_resumes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_response_bytes: 8 << 20,
            max_event_bytes: 4 << 20,
            max_pages: 64,
            max_redirects: 5,
            max_resumes: 3,
        }
    }
}

/// The tool call a probe makes, and what must come back.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCallCheck {
    pub name: String,
    pub arguments: Map<String, Value>,
    pub expect: Option<ExpectedContent>,
}

/// One probe's whole configuration.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// The MCP endpoint (Streamable HTTP) or the SSE stream URL (legacy transport).
    pub url: String,
    pub transport: TransportChoice,
    /// Versions offered and accepted, any order.
    pub accepted_versions: Vec<String>,
    /// Tools that must be listed.
    pub expected_tools: Vec<String>,
    pub tool_call: Option<ToolCallCheck>,
    /// Extra headers on every request.
    pub headers: Vec<(String, String)>,
    pub bearer_token: Option<String>,
    /// PEM bundle: when set, the only trust roots for https.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Deadline for the whole probe.
    pub timeout: Duration,
    /// Deadline for one request (connect to last byte).
    pub step_timeout: Duration,
    pub limits: Limits,
}

impl ProbeConfig {
    /// A probe of `url` with every known version, auto transport and default bounds.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            transport: TransportChoice::Auto,
            accepted_versions: protocol::default_accepted_versions(),
            expected_tools: Vec::new(),
            tool_call: None,
            headers: Vec::new(),
            bearer_token: None,
            ca_bundle_pem: None,
            timeout: Duration::from_secs(10),
            step_timeout: Duration::from_secs(5),
            limits: Limits::default(),
        }
    }

    /// The probe the operator runs for a rollout: the spec's versions, tools, call, headers
    /// and deadline; secrets (token, CA bundle) are resolved by the caller.
    pub fn from_spec(
        url: impl Into<String>,
        spec: &ProbeSpec,
        resolved_headers: Vec<(String, String)>,
    ) -> Self {
        let timeout = spec.timeout.as_std();
        Self {
            accepted_versions: spec.protocol_versions.clone(),
            expected_tools: spec.expected_tools.clone().unwrap_or_default(),
            tool_call: spec.tool_call.as_ref().map(|call| ToolCallCheck {
                name: call.name.clone(),
                arguments: call.arguments.clone().unwrap_or_default(),
                expect: call.expect.clone(),
            }),
            headers: resolved_headers,
            ..Self::new(url)
        }
        .with_timeout(timeout)
    }

    /// Sets the probe's deadline, and each request's: half of it (at least a second), since
    /// several requests share the deadline and no single one may take all of it.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.step_timeout = (timeout / 2).max(Duration::from_secs(1)).min(timeout);
        self
    }

    /// Accepted versions of one era, newest first.
    pub(crate) fn versions_of(&self, era: protocol::Era) -> Vec<String> {
        let mut versions: Vec<String> =
            self.accepted_versions.iter().filter(|v| protocol::era_of(v) == era).cloned().collect();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        versions.dedup();
        versions
    }
}
