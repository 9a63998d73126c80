//! What to probe and how: built from an `McpRollout`'s `probe` spec by the operator, or from flags
//! by `kubectl mcprollout probe`.

use std::{fmt, net::SocketAddr, time::Duration};

use serde_json::{Map, Value};

use crate::api::{ExpectedContent, ProbeSpec, SecretKeyRef, StepProbe, protocol};

/// A Secret key the probe configuration names is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret {name} has no key {key}")]
pub struct MissingSecret {
    pub name: String,
    pub key: String,
}

/// A value read from a Secret (a token, a header's value): kept out of every `Debug` print
/// (logs, panics), and sent marked sensitive so HTTP layers do not print it either.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(pub String);

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An extra header of every probe request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderText {
    /// Written in the spec (or on the command line): not a secret.
    Plain(String),
    /// From a Secret.
    Secret(SecretText),
}

impl HeaderText {
    pub fn value(&self) -> &str {
        match self {
            Self::Plain(v) | Self::Secret(SecretText(v)) => v,
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, Self::Secret(_))
    }
}

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
    pub headers: Vec<(String, HeaderText)>,
    pub bearer_token: Option<SecretText>,
    /// Where to connect, whatever the URL's host resolves to: the pod's own address, while
    /// the URL names the certificate's host (https to a pod IP the certificate does not name).
    pub connect_to: Option<SocketAddr>,
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
            connect_to: None,
            ca_bundle_pem: None,
            timeout: Duration::from_secs(10),
            step_timeout: Duration::from_secs(5),
            limits: Limits::default(),
        }
    }

    /// The probe the operator runs for a rollout: the spec's versions, tools, call, headers,
    /// token, CA bundle and deadline, with this step's overrides. `secret` reads a key of a
    /// Secret in the rollout's namespace (the reconciler's lookup; a map in tests).
    pub fn from_spec(
        url: impl Into<String>,
        spec: &ProbeSpec,
        step: Option<&StepProbe>,
        secret: impl Fn(&SecretKeyRef) -> Option<Vec<u8>>,
    ) -> Result<Self, MissingSecret> {
        let read = |reference: &SecretKeyRef| {
            secret(reference)
                .ok_or_else(|| MissingSecret { name: reference.name.clone(), key: reference.key.clone() })
        };
        let text = |reference: &SecretKeyRef| {
            read(reference).map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        };
        let mut headers = Vec::with_capacity(spec.headers.len());
        for header in &spec.headers {
            let value = match (&header.value, &header.value_from) {
                (Some(value), _) => HeaderText::Plain(value.clone()),
                (None, Some(reference)) => HeaderText::Secret(SecretText(text(reference)?)),
                (None, None) => HeaderText::Plain(String::new()),
            };
            headers.push((header.name.clone(), value));
        }
        let tool_call = step.and_then(|s| s.tool_call.as_ref()).or(spec.tool_call.as_ref());
        let expected_tools = step.and_then(|s| s.expected_tools.as_ref()).or(spec.expected_tools.as_ref());
        Ok(Self {
            accepted_versions: spec.protocol_versions.clone(),
            expected_tools: expected_tools.cloned().unwrap_or_default(),
            tool_call: tool_call.map(|call| ToolCallCheck {
                name: call.name.clone(),
                arguments: call.arguments.clone().unwrap_or_default(),
                expect: call.expect.clone(),
            }),
            headers,
            bearer_token: spec.bearer_token_secret_ref.as_ref().map(text).transpose()?.map(SecretText),
            ca_bundle_pem: spec.ca_bundle_secret_ref.as_ref().map(read).transpose()?,
            ..Self::new(url)
        }
        .with_timeout(spec.timeout.as_std()))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::api::{ProbeHeader, ProbeToolCall};

    fn secrets() -> BTreeMap<(String, String), Vec<u8>> {
        BTreeMap::from([
            (("probe".into(), "token".into()), b"t0ken\n".to_vec()),
            (("probe".into(), "tenant".into()), b"blue".to_vec()),
            (("ca".into(), "ca.crt".into()), b"-----BEGIN CERTIFICATE-----".to_vec()),
        ])
    }

    fn reference(name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef { name: name.into(), key: key.into() }
    }

    #[test]
    fn the_spec_and_its_secrets_become_a_probe_configuration() {
        let spec = ProbeSpec {
            protocol_versions: vec!["2025-11-25".into()],
            expected_tools: Some(vec!["a".into()]),
            tool_call: Some(ProbeToolCall {
                name: "a".into(),
                arguments: Some(json!({"x": 1}).as_object().cloned().unwrap_or_default()),
                expect: None,
            }),
            headers: vec![
                ProbeHeader { name: "X-Env".into(), value: Some("prod".into()), value_from: None },
                ProbeHeader {
                    name: "X-Tenant".into(),
                    value: None,
                    value_from: Some(reference("probe", "tenant")),
                },
            ],
            bearer_token_secret_ref: Some(reference("probe", "token")),
            ca_bundle_secret_ref: Some(reference("ca", "ca.crt")),
            ..ProbeSpec::default()
        };
        let secrets = secrets();
        let lookup = |r: &SecretKeyRef| secrets.get(&(r.name.clone(), r.key.clone())).cloned();
        let config = ProbeConfig::from_spec("http://10.0.0.1:8080/mcp", &spec, None, lookup).unwrap();
        assert_eq!(config.accepted_versions, ["2025-11-25"]);
        assert_eq!(
            config.headers,
            [
                ("X-Env".into(), HeaderText::Plain("prod".into())),
                ("X-Tenant".into(), HeaderText::Secret(SecretText("blue".into())))
            ]
        );
        assert_eq!(config.bearer_token, Some(SecretText("t0ken".into())));
        // What came from Secrets never shows in a print of the configuration (a log line, a
        // panic); what the spec says in the clear does.
        let printed = format!("{config:?}");
        assert!(!printed.contains("t0ken") && !printed.contains("blue"), "{printed}");
        assert!(printed.contains("prod"), "{printed}");
        assert!(config.ca_bundle_pem.is_some());
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.step_timeout, Duration::from_secs(5));
        assert_eq!(config.tool_call.as_ref().map(|c| c.name.as_str()), Some("a"));

        let step = StepProbe { tool_call: None, expected_tools: Some(vec!["b".into()]) };
        let config = ProbeConfig::from_spec("http://x/mcp", &spec, Some(&step), lookup).unwrap();
        assert_eq!(config.expected_tools, ["b"]);
        assert_eq!(config.tool_call.map(|c| c.name), Some("a".into()));
    }

    #[test]
    fn a_missing_secret_key_is_a_typed_error() {
        let spec =
            ProbeSpec { bearer_token_secret_ref: Some(reference("probe", "nope")), ..ProbeSpec::default() };
        let error = ProbeConfig::from_spec("http://x/mcp", &spec, None, |_| None).unwrap_err();
        assert_eq!(error.to_string(), "secret probe has no key nope");
    }
}
