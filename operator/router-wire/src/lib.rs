//! What the MCP session router reads and seals of the traffic it carries: [`token`] (where a
//! session lives, sealed in the id the client sees), [`jsonrpc`] (methods, ids, tool names and
//! call outcomes) and [`sse`] (events, and the legacy transport's `endpoint` event). No I/O:
//! bytes in, facts out. Fuzzed by `operator/fuzz` (hack/fuzz.sh).

pub mod jsonrpc;
pub mod sse;
pub mod token;
