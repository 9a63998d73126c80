//! What a probe found: serialisable, so `--json` output and `--save` snapshots are the same data
//! the operator records.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The transport a probe ended up speaking.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TransportUsed {
    StreamableHttp,
    Sse,
}

impl std::fmt::Display for TransportUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::StreamableHttp => "streamable-http",
            Self::Sse => "sse (2024-11-05 HTTP+SSE)",
        })
    }
}

/// One tool as the server lists it. Everything an agent caches about it is kept.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
}

/// Why a probe failed, in the classes an operator acts on differently.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FailureKind {
    /// TCP connect refused, DNS, reset before any answer.
    Connect,
    /// TLS handshake or certificate verification.
    Tls,
    /// A step or the whole probe ran out of time.
    Timeout,
    /// A non-success HTTP status where an MCP answer was due.
    HttpStatus { status: u16 },
    /// The answer is not MCP: wrong content type, malformed JSON-RPC, oversized, bad SSE.
    NotMcp,
    /// A JSON-RPC error answer.
    JsonRpc { code: i64 },
    /// No protocol version both sides accept.
    ProtocolVersionRejected,
    /// Tools the probe requires are not listed.
    UnexpectedTools { missing: Vec<String> },
    /// The probe's tool call did not return what it must.
    ToolCallMismatch,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect => f.write_str("connect"),
            Self::Tls => f.write_str("TLS"),
            Self::Timeout => f.write_str("timeout"),
            Self::HttpStatus { status } => write!(f, "HTTP status {status}"),
            Self::NotMcp => f.write_str("not MCP"),
            Self::JsonRpc { code } => write!(f, "JSON-RPC error {code}"),
            Self::ProtocolVersionRejected => f.write_str("protocol version rejected"),
            Self::UnexpectedTools { .. } => f.write_str("unexpected tools"),
            Self::ToolCallMismatch => f.write_str("tool-call mismatch"),
        }
    }
}

/// The failure that ended a probe, and at which step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Failure {
    #[serde(flatten)]
    pub kind: FailureKind,
    pub step: String,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}: {}", self.kind, self.step, self.message)
    }
}

/// One request-level step and how long it took.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The MCP method (or `open sse stream`, `delete session`).
    pub step: String,
    /// The protocol version the step spoke, when it spoke one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    pub millis: u64,
    pub ok: bool,
}

/// The outcome of the probe's tool call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallOutcome {
    pub name: String,
    /// The result's `isError`.
    pub is_error: bool,
    /// The result's text content, joined, cut to a readable length.
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<Value>,
}

/// Everything one probe of one URL found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    pub url: String,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<TransportUsed>,
    /// The version the tools were listed with: the newest both sides accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// Every protocol version the server was found to serve, oldest first: `server/discover`'s
    /// list plus each handshake version `initialize` accepted as offered.
    #[serde(default)]
    pub protocol_versions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_info: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Value>,
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<ToolCallOutcome>,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    pub millis: u64,
}

/// What a later probe is compared with: the tools and protocol versions a revision served.
/// A saved `ProbeReport` reads as a snapshot too (unknown fields are ignored).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    #[serde(default)]
    pub protocol_versions: Vec<String>,
    #[serde(default)]
    pub tools: Vec<Tool>,
}

/// A snapshot kept between probes, as its JSON. Decoded, a tool's schemas are trees of maps
/// of a few hundred bytes per node: the operator's heap profile at 1,000 rollouts found 11.5
/// MiB in the kept snapshots of one small server's tools. A snapshot is decoded only when a
/// canary is compared with it.
#[derive(Clone, Debug)]
pub struct PackedSnapshot(std::sync::Arc<str>);

impl Snapshot {
    pub fn pack(&self) -> Result<PackedSnapshot, serde_json::Error> {
        Ok(PackedSnapshot(serde_json::to_string(self)?.into()))
    }
}

impl PackedSnapshot {
    pub fn unpack(&self) -> Result<Snapshot, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl ProbeReport {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { protocol_versions: self.protocol_versions.clone(), tools: self.tools.clone() }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_packed_snapshot_unpacks_to_the_snapshot() {
        let snapshot = Snapshot {
            protocol_versions: vec!["2025-06-18".into(), "2025-11-25".into()],
            tools: vec![Tool {
                name: "search".into(),
                title: Some("Search".into()),
                description: None,
                input_schema: json!({"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}),
                output_schema: Some(json!({"type": "object"})),
                annotations: Some(json!({"readOnlyHint": true})),
            }],
        };
        assert_eq!(snapshot.pack().unwrap().unpack().unwrap(), snapshot);
    }
}
