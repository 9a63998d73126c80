//! The MCP protocol probe: does a revision answer MCP the way agents need — in every protocol
//! version it is supposed to serve — and which tools does it offer?
//!
//! The client is written on `reqwest` rather than `rmcp`, because a probe must see and bound
//! what rmcp hides or lacks: rmcp's Streamable HTTP client re-initializes silently after a 404
//! (exactly the session loss a probe must report), it has no legacy HTTP+SSE client, it does not
//! expose per-step timings or let the caller cap response and SSE event sizes, and it negotiates
//! one version where the probe must learn every version a server accepts. JSON-RPC framing, the
//! SSE parser (both in `mcp_wire`, where they are fuzzed) and both eras' rules are implemented here against the spec and checked against
//! the official SDK servers (see `operator/tests/probe_*.rs`).
//!
//! A probe:
//! 1. `server/discover` at the newest accepted stateless version (2026-07-28 and later), once
//!    more at a mutual version after -32022; a refusal means "not a stateless server".
//! 2. Otherwise `initialize` offering the newest accepted handshake version over Streamable
//!    HTTP, falling back to the legacy HTTP+SSE transport on a 4xx (transport `auto`), then
//!    `notifications/initialized`.
//! 3. `tools/list` through every `nextCursor` page, the expected-tools check, the optional
//!    `tools/call` and its expectations; then the session is DELETEd.
//! 4. One `initialize` per accepted handshake version: the versions answered as offered join
//!    discover's list as the versions the revision serves.
//!
//! Every request has a deadline (per step, and the probe's total), bodies and SSE events are
//! capped, redirects are followed only on the probed origin, and no proxy is used.

mod config;
pub mod diff;
mod error;
mod expect;
mod http;
mod jsonrpc;
mod legacy;
pub mod render;
mod report;
mod run;
mod streamable;

pub use config::{
    HeaderText, Limits, MissingSecret, ProbeConfig, SecretText, ToolCallCheck, TransportChoice,
};
pub use diff::{Change, ChangeKind, SchemaDiff, Severity, diff};
pub use error::ProbeError;
pub use expect::is_subset;
pub use report::{
    Failure, FailureKind, PackedSnapshot, ProbeReport, Snapshot, StepRecord, Tool, ToolCallOutcome,
    TransportUsed,
};
pub use run::probe;
