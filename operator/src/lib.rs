//! mcp-rollout: a Kubernetes operator that rolls out new versions of MCP servers safely.
//!
//! Modules: [`api`] (the McpRollout custom resource), [`crd`] (CRD generation).

pub mod api;
pub mod crd;
