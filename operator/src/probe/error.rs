//! Typed probe errors, each mapped to the failure class the report carries.

use std::time::Duration;

use serde_json::Value;

use super::report::FailureKind;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP {status}{}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Http { status: u16, detail: String },
    #[error("{0}")]
    NotMcp(String),
    #[error("JSON-RPC error {code}: {message}")]
    Rpc { code: i64, message: String, data: Option<Value> },
    #[error("{0}")]
    VersionRejected(String),
    #[error("{missing:?} not listed")]
    MissingTools { missing: Vec<String> },
    #[error("{0}")]
    ToolCallMismatch(String),
}

impl From<mcp_wire::answer::NotMcp> for ProbeError {
    fn from(e: mcp_wire::answer::NotMcp) -> Self {
        Self::NotMcp(e.0)
    }
}

impl From<mcp_wire::answer::RpcError> for ProbeError {
    fn from(e: mcp_wire::answer::RpcError) -> Self {
        Self::Rpc { code: e.code, message: e.message, data: e.data }
    }
}

/// JSON-RPC: the requested protocol version is not supported (2026-07-28).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

impl ProbeError {
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Connect(_) => FailureKind::Connect,
            Self::Tls(_) => FailureKind::Tls,
            Self::Timeout(_) => FailureKind::Timeout,
            Self::Http { status, .. } => FailureKind::HttpStatus { status: *status },
            Self::NotMcp(_) => FailureKind::NotMcp,
            Self::Rpc { code, .. } => FailureKind::JsonRpc { code: *code },
            Self::VersionRejected(_) => FailureKind::ProtocolVersionRejected,
            Self::MissingTools { missing } => FailureKind::UnexpectedTools { missing: missing.clone() },
            Self::ToolCallMismatch(_) => FailureKind::ToolCallMismatch,
        }
    }

    /// The versions a -32022 answer says the server supports.
    pub fn supported_versions(&self) -> Option<Vec<String>> {
        match self {
            Self::Rpc { code: UNSUPPORTED_PROTOCOL_VERSION, data: Some(data), .. } => {
                let list = data.get("supported")?.as_array()?;
                Some(list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            }
            _ => None,
        }
    }

    /// Errors that say "this server does not speak what was asked" rather than "the server is
    /// down or broken": the ones that make `auto` try the next era or transport.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Http { status: 400..=499, .. }
                | Self::Rpc { .. }
                | Self::NotMcp(_)
                | Self::VersionRejected(_)
        )
    }

    /// Classifies a reqwest error by walking its causes: TLS failures are wrapped in I/O errors.
    pub fn from_reqwest(error: &reqwest::Error, step_timeout: Duration) -> Self {
        if error.is_timeout() {
            return Self::Timeout(step_timeout);
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = source {
            if let Some(tls) = tls_cause(cause) {
                return Self::Tls(tls.to_string());
            }
            source = cause.source();
        }
        Self::Connect(full_chain(error))
    }
}

/// The rustls error inside a cause. I/O errors nest (the connector wraps the TLS stream's
/// error in another I/O error) and their `source()` skips the wrapped error, so each is opened.
fn tls_cause<'e>(cause: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = cause.downcast_ref::<std::io::Error>()?.get_ref()?;
    tls_cause(inner)
}

/// "a: b: c" from an error and its causes, without repeating a cause a wrapper already printed.
fn full_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}
