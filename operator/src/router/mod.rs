//! The MCP session router (`mcp-rollout-router`): a data plane in front of a rollout's
//! revisions that weights new sessions exactly, keeps every session on the pod that holds it
//! (sealed in the session id the client sees), and counts sessions and streams per revision.
//!
//! Modules: [`token`] (sealing where a session lives), [`balance`] (which revision and pod new
//! work goes to), [`sessions`] (what is open), [`jsonrpc`] and [`sse`] (the little it reads of
//! the traffic), [`proxy`] (the request path), [`server`] (connections and graceful shutdown),
//! [`metrics`], [`standalone`] (two backends, no Kubernetes).

pub mod balance;
pub mod jsonrpc;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod sessions;
pub mod sse;
pub mod standalone;
pub mod token;
