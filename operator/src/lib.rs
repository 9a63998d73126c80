//! mcp-rollout: a Kubernetes operator that rolls out new versions of MCP servers safely.
//!
//! Modules: [`api`] (the McpRollout custom resource), [`crd`] (CRD generation), [`reference`]
//! (the README's API reference, generated from the CRD schema), [`validate`]
//! (offline admission checks of manifests).

pub mod analysis;
mod client_tls;
pub use mcp_rollout_api::{api, crd, validate};
pub mod controller;
pub mod engine;
pub mod plugin;
pub mod probe;
pub mod reference;
pub mod router;
pub mod status_view;
