//! Prometheus analysis: the canary-vs-stable gates of every step, and the measured SSE drain
//! window.
//!
//! Pure judgement ([`checks`], [`drain::clamp_window`]) is separate from the thin I/O
//! ([`prometheus`]): the engine and its tests never need a Prometheus. The default queries
//! follow the metric contract in the README (`mcp_tool_call_duration_seconds`,
//! `mcp_tool_call_errors_total`, `mcp_session_duration_seconds`, `mcp_active_sessions`, selected
//! by the `version` label); each can be overridden per rollout.

pub mod checks;
pub mod drain;
mod evaluate;
pub mod prometheus;
pub mod queries;

pub use drain::{
    Clamp, DrainWindow, Scope, SessionCount, active_sessions, clamp_window, measure_drain_window,
};
pub use evaluate::{Subject, evaluate};
pub use prometheus::{ClientOptions, Prometheus, QueryError, Series, is_rejected_query};
pub use queries::Queries;
