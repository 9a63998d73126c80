//! How a fixture behaves: its tools, the protocol versions it speaks, and the faults it injects.
//! Every knob is a flag and an environment variable, so a pod template can set it.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use clap::{Args, ValueEnum};

/// Which tools the server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// get_document, list_documents, search_documents (and export_report).
    V1,
    /// v1 plus a new tool (summarize_document) and an optional parameter (search_documents.tags).
    #[value(name = "v2-compatible")]
    V2Compatible,
    /// v1 without list_documents, and get_document needs a new required `tenant`.
    #[value(name = "v2-breaking")]
    V2Breaking,
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Self as ValueEnum>::from_str(s, true)
    }
}

/// How schema-validation errors reach the client: both ways real servers do it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SchemaErrorStyle {
    /// A JSON-RPC error -32602 (invalid params).
    Jsonrpc,
    /// A tool result with `isError: true` (SEP-1303).
    Result,
}

/// Everything configurable.
#[derive(Clone, Debug, Args)]
pub struct FixtureConfig {
    /// Address to listen on.
    #[arg(long, env = "FIXTURE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "FIXTURE_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "FIXTURE_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Tool profile (each image bakes its own in: hack/images.sh, the Dockerfile); default v1.
    #[arg(long, env = "FIXTURE_PROFILE")]
    pub profile: Option<Profile>,

    /// Reported as serverInfo.version, the X-Server-Version header and the `version` label.
    #[arg(long, env = "SERVER_VERSION", default_value = "unknown")]
    pub server_version: String,

    /// The `rollout` label of every metric series (none when empty): the McpRollout that runs
    /// this server, which the operator passes in.
    #[arg(long, env = "SERVER_ROLLOUT", default_value = "")]
    pub server_rollout: String,

    /// Protocol versions spoken (comma-separated). Leave out 2026-07-28 to simulate a server
    /// that never learned the stateless revision, or the handshake versions for one that
    /// dropped them.
    #[arg(
        long,
        env = "FIXTURE_PROTOCOL_VERSIONS",
        value_delimiter = ',',
        default_value = "2024-11-05,2025-03-26,2025-06-18,2025-11-25,2026-07-28"
    )]
    pub protocol_versions: Vec<String>,

    /// Share of tool calls (0-1) that fail with an internal error.
    #[arg(long, env = "FIXTURE_ERROR_RATE", default_value_t = 0.0)]
    pub error_rate: f64,

    /// Fail no tool call for this many seconds after start, then `error_rate` of them: a
    /// server that degrades after a while (and meanwhile takes sessions and passes probes).
    #[arg(long, env = "FIXTURE_ERRORS_AFTER_SECONDS", default_value_t = 0)]
    pub errors_after_seconds: u64,

    /// Latency added to every tool call, in milliseconds.
    #[arg(long, env = "FIXTURE_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Extra latency for the slow tail, in milliseconds.
    #[arg(long, env = "FIXTURE_TAIL_LATENCY_MS", default_value_t = 0)]
    pub tail_latency_ms: u64,

    /// Share of tool calls (0-1) that get the tail latency.
    #[arg(long, env = "FIXTURE_TAIL_RATE", default_value_t = 0.0)]
    pub tail_rate: f64,

    /// Share of valid tool calls (0-1) rejected as schema-validation errors.
    #[arg(long, env = "FIXTURE_SCHEMA_ERROR_RATE", default_value_t = 0.0)]
    pub schema_error_rate: f64,

    /// How schema-validation errors (injected or real) are reported.
    #[arg(long, env = "FIXTURE_SCHEMA_ERROR_STYLE", value_enum, default_value = "jsonrpc")]
    pub schema_error_style: SchemaErrorStyle,

    /// Abort the process this many seconds after start (a crash, as SIGABRT).
    #[arg(long, env = "FIXTURE_CRASH_AFTER_SECONDS")]
    pub crash_after_seconds: Option<u64>,

    /// Abort the process after this many tool calls.
    #[arg(long, env = "FIXTURE_CRASH_AFTER_CALLS")]
    pub crash_after_calls: Option<u64>,

    /// Answer `initialize` (and `server/discover`) with an internal error.
    #[arg(long, env = "FIXTURE_FAIL_INITIALIZE", default_value_t = false)]
    pub fail_initialize: bool,

    /// Report not ready on /healthz for this many seconds after start.
    #[arg(long, env = "FIXTURE_SLOW_START_SECONDS", default_value_t = 0)]
    pub slow_start_seconds: u64,

    /// Serve `/metrics`. Off: a server with no instrumentation at all (404), as many are; the
    /// MCP session router's measurements are then all there is to gate on.
    #[arg(long, env = "FIXTURE_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,

    /// Seed for the fault dice, for reproducible runs.
    #[arg(long, env = "FIXTURE_SEED")]
    pub seed: Option<u64>,
}

impl FixtureConfig {
    /// The profile in force.
    pub fn profile(&self) -> Profile {
        self.profile.unwrap_or(Profile::V1)
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }

    /// A configuration for tests: loopback, random port, no faults.
    pub fn for_tests() -> Self {
        Self {
            listen: "127.0.0.1:0".parse().expect("loopback address"),
            tls_cert: None,
            tls_key: None,
            profile: Some(Profile::V1),
            server_version: "test".into(),
            server_rollout: String::new(),
            protocol_versions: ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]
                .map(String::from)
                .to_vec(),
            error_rate: 0.0,
            errors_after_seconds: 0,
            latency_ms: 0,
            tail_latency_ms: 0,
            tail_rate: 0.0,
            schema_error_rate: 0.0,
            schema_error_style: SchemaErrorStyle::Jsonrpc,
            crash_after_seconds: None,
            crash_after_calls: None,
            fail_initialize: false,
            slow_start_seconds: 0,
            metrics: true,
            seed: Some(1),
        }
    }
}
