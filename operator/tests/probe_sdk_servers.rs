#![allow(clippy::unwrap_used)]
//! The probe against the official SDK servers, as separate processes over real sockets:
//! `@modelcontextprotocol/server-everything` (TypeScript SDK) in Streamable HTTP and SSE modes,
//! and the Python SDK's MCPServer in both protocol eras.

mod support;

use std::time::Duration;

use mcp_rollout::{
    api::ExpectedContent,
    probe::{self, ProbeConfig, ToolCallCheck, TransportChoice, TransportUsed},
};
use serde_json::json;

fn config(url: String) -> ProbeConfig {
    ProbeConfig::new(url).with_timeout(Duration::from_secs(20))
}

fn echo_call() -> ToolCallCheck {
    ToolCallCheck {
        name: "echo".into(),
        arguments: json!({"message": "probe-42"}).as_object().unwrap().clone(),
        expect: Some(ExpectedContent { contains: Some("probe-42".into()), regex: None, json: None }),
    }
}

#[tokio::test]
async fn server_everything_over_streamable_http() {
    let server = support::server_everything("streamableHttp").await;
    let mut config = config(format!("http://{}/mcp", server.addr));
    config.tool_call = Some(echo_call());
    config.expected_tools = vec!["echo".into()];
    let report = probe::probe(&config).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.transport, Some(TransportUsed::StreamableHttp));
    // The TypeScript SDK 1.x has no stateless revision: discover is refused, the handshake wins.
    assert_eq!(report.protocol_version.as_deref(), Some("2025-11-25"));
    assert!(report.protocol_versions.contains(&"2025-11-25".to_owned()), "{:?}", report.protocol_versions);
    assert!(!report.protocol_versions.contains(&"2026-07-28".to_owned()));
    assert!(report.tools.len() > 3, "{:?}", report.tools);
    assert!(report.server_info.is_some());
}

#[tokio::test]
async fn server_everything_over_legacy_sse_via_auto_fallback() {
    let server = support::server_everything("sse").await;
    let mut config = config(format!("http://{}/sse", server.addr));
    config.tool_call = Some(echo_call());
    let report = probe::probe(&config).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.transport, Some(TransportUsed::Sse));
    assert!(report.tools.iter().any(|t| t.name == "echo"));

    config.transport = TransportChoice::Sse;
    let report = probe::probe(&config).await;
    assert!(report.passed, "{report:#?}");
    assert!(!report.steps.iter().any(|s| s.step == "server/discover"));
}

#[tokio::test]
async fn the_python_sdk_server_in_both_eras() {
    let server = support::python_server().await;
    let mut config = config(format!("http://{}/mcp", server.addr));
    config.tool_call = Some(ToolCallCheck {
        name: "add".into(),
        arguments: json!({"a": 2, "b": 40}).as_object().unwrap().clone(),
        expect: Some(ExpectedContent {
            contains: None,
            regex: None,
            json: json!({"result": 42}).as_object().cloned(),
        }),
    });
    let report = probe::probe(&config).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.protocol_version.as_deref(), Some("2026-07-28"));
    assert_eq!(
        report.protocol_versions,
        ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"],
        "discover's list plus the handshake versions initialize accepted"
    );
    assert_eq!(report.server_info.as_ref().unwrap()["name"], "py-reference-server");
    let tools: Vec<&str> = report.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["add", "greet"]);

    // The handshake era alone.
    config.accepted_versions = vec!["2025-11-25".into()];
    config.tool_call = Some(ToolCallCheck {
        name: "greet".into(),
        arguments: json!({"name": "probe"}).as_object().unwrap().clone(),
        expect: Some(ExpectedContent { contains: Some("Hello, probe!".into()), regex: None, json: None }),
    });
    let report = probe::probe(&config).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.protocol_version.as_deref(), Some("2025-11-25"));
    assert!(report.steps.iter().any(|s| s.step == "initialize" && s.ok));
}
