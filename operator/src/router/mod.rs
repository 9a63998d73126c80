//! The MCP session router (`mcp-rollout-router`): a data plane in front of a rollout's
//! revisions that weights new sessions exactly, keeps every session on the pod that holds it
//! (sealed in the session id the client sees), evacuates a rolled-back revision at request
//! boundaries, and measures what it carries — sessions, streams, requests in flight, tool
//! calls and their outcomes — per revision, with no help from the servers.
//!
//! Modules: [`token`] (sealing where a session lives), [`balance`] (which revision and pod new
//! work goes to), [`sessions`] (what is open and in flight), [`jsonrpc`] and [`sse`] (the little
//! it reads of the traffic), [`declared`] (the standard MCP request headers), [`proxy`] (the request
//! path), [`relay`] (the response path),
//! [`server`] (connections and graceful shutdown), [`metrics`], [`admin`] (the admin port),
//! [`config`] (what the operator asks of it), [`standalone`] (two backends, no Kubernetes) and
//! [`kubernetes`] (one rollout's pods, watched).

// The parsers live in their own crate (fuzzed alone); re-exported under their old paths.
pub use mcp_wire::{jsonrpc, sse, token};

pub mod admin;
pub mod balance;
pub mod config;
pub mod declared;
pub mod kubernetes;
pub mod metrics;
pub mod proxy;
pub mod relay;
pub mod server;
pub mod sessions;
pub mod standalone;
