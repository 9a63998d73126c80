//! mcp-fixture: a real MCP server whose behaviour tests control — tools by profile, protocol
//! versions by flag, and faults (errors, latency, schema errors, crashes, failed initialize,
//! slow start) — over Streamable HTTP (rmcp) and the legacy HTTP+SSE transport (by hand); and
//! `mcp-agents`, simulated agents that report what they experienced.

pub mod agents;
pub mod client;
pub mod config;
pub mod handler;
pub mod hooks;
pub mod legacy_sse;
pub mod metrics;
pub mod server;
pub mod tls;
pub mod tools;

pub use config::{FixtureConfig, Profile, SchemaErrorStyle};
pub use server::Fixture;
