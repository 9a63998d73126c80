//! What mcp-rollout reads off the network, as pure parsers (no I/O: bytes in, facts out), each
//! fuzzed by `operator/fuzz` (hack/fuzz.sh):
//! - the MCP session router: [`token`] (where a session lives, sealed in the id the client
//!   sees), [`jsonrpc`] (methods, ids, tool names and call outcomes) and [`sse`] (events as
//!   they pass, and the legacy transport's `endpoint` event);
//! - the MCP probe: [`event_stream`] (SSE, with what resuming a stream needs) and [`answer`]
//!   (the JSON-RPC answer to one request);
//! - the analysis: [`prometheus`] (Prometheus HTTP API answers into numbers).

pub mod answer;
pub mod event_stream;
pub mod jsonrpc;
pub mod prometheus;
pub mod sse;
pub mod token;
