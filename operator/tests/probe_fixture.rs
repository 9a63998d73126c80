#![allow(clippy::unwrap_used)]
//! The probe against mcp-fixture (a real rmcp server, in process) in each profile and fault
//! mode, over both transports, and the schema diff between its profiles.

mod support;

use std::time::Duration;

use mcp_fixture::config::Profile;
use mcp_rollout::{
    api::{ExpectedContent, SchemaCompatibility},
    probe::{self, ChangeKind, FailureKind, ProbeConfig, ToolCallCheck, TransportChoice, TransportUsed},
};
use serde_json::json;

const ALL: [&str; 5] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];

fn config(url: String) -> ProbeConfig {
    ProbeConfig::new(url).with_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn a_healthy_fixture_passes_in_the_newest_era_and_serves_every_version() {
    let fixture = support::fixture(|_| {}).await;
    let mut config = config(format!("{}/mcp", fixture.url()));
    config.expected_tools = vec!["get_document".into(), "search_documents".into()];
    config.tool_call = Some(ToolCallCheck {
        name: "search_documents".into(),
        arguments: json!({"query": "rollout"}).as_object().unwrap().clone(),
        expect: Some(ExpectedContent {
            contains: Some("rollout".into()),
            regex: Some(r"^\d+ results".into()),
            json: None,
        }),
    });
    let report = probe::probe(&config).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.transport, Some(TransportUsed::StreamableHttp));
    assert_eq!(report.protocol_version.as_deref(), Some("2026-07-28"));
    assert_eq!(report.protocol_versions, ALL);
    assert_eq!(report.server_info.as_ref().unwrap()["name"], "mcp-fixture");
    assert_eq!(report.tools.len(), 4);
    assert!(report.tools.iter().all(|t| t.input_schema["type"] == "object"));
    assert!(report.tool_call.as_ref().is_some_and(|c| !c.is_error));
    assert!(report.steps.iter().any(|s| s.step == "server/discover" && s.ok));
}

#[tokio::test]
async fn the_handshake_era_is_used_when_only_handshake_versions_are_accepted() {
    let fixture = support::fixture(|_| {}).await;
    let mut config = config(format!("{}/mcp", fixture.url()));
    config.accepted_versions = vec!["2025-06-18".into(), "2025-11-25".into()];
    let report = probe::probe(&config).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.protocol_version.as_deref(), Some("2025-11-25"));
    assert_eq!(report.protocol_versions, ["2025-06-18", "2025-11-25"]);
    assert!(!report.steps.iter().any(|s| s.step == "server/discover"));
}

#[tokio::test]
async fn a_server_that_never_learned_the_stateless_revision_is_probed_by_handshake() {
    let fixture =
        support::fixture(|c| c.protocol_versions = ALL[..4].iter().map(|v| (*v).to_owned()).collect()).await;
    let report = probe::probe(&config(format!("{}/mcp", fixture.url()))).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.protocol_version.as_deref(), Some("2025-11-25"));
    assert_eq!(report.protocol_versions, ALL[..4]);
    assert!(report.steps.iter().any(|s| s.step == "server/discover" && !s.ok));
}

#[tokio::test]
async fn a_stateless_only_server_is_reported_without_handshake_versions() {
    let fixture = support::fixture(|c| c.protocol_versions = vec!["2026-07-28".into()]).await;
    let report = probe::probe(&config(format!("{}/mcp", fixture.url()))).await;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.protocol_versions, ["2026-07-28"]);
}

#[tokio::test]
async fn the_legacy_sse_transport_is_found_by_auto_and_used_when_asked() {
    let fixture = support::fixture(|_| {}).await;
    for transport in [TransportChoice::Auto, TransportChoice::Sse] {
        let mut config = config(format!("{}/sse", fixture.url()));
        config.transport = transport;
        config.accepted_versions = vec!["2024-11-05".into()];
        config.tool_call = Some(ToolCallCheck {
            name: "get_document".into(),
            arguments: json!({"id": "doc-1"}).as_object().unwrap().clone(),
            expect: None,
        });
        let report = probe::probe(&config).await;
        assert!(report.passed, "{transport:?}: {report:#?}");
        assert_eq!(report.transport, Some(TransportUsed::Sse));
        assert_eq!(report.protocol_version.as_deref(), Some("2024-11-05"));
        assert_eq!(report.tools.len(), 4);
    }
}

#[tokio::test]
async fn a_fixture_failing_initialize_fails_with_the_json_rpc_error() {
    let fixture = support::fixture(|c| c.fail_initialize = true).await;
    let report = probe::probe(&config(format!("{}/mcp", fixture.url()))).await;
    assert!(!report.passed);
    let failure = report.failure.unwrap();
    assert!(matches!(failure.kind, FailureKind::JsonRpc { .. }), "{failure:?}");
    assert_eq!(failure.step, "initialize");
}

#[tokio::test]
async fn a_slow_tool_call_times_out_at_the_step_deadline() {
    let fixture = support::fixture(|c| c.latency_ms = 5_000).await;
    let mut config = config(format!("{}/mcp", fixture.url())).with_timeout(Duration::from_secs(2));
    config.tool_call = Some(ToolCallCheck {
        name: "list_documents".into(),
        arguments: serde_json::Map::new(),
        expect: None,
    });
    let started = std::time::Instant::now();
    let report = probe::probe(&config).await;
    let failure = report.failure.unwrap();
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert_eq!(failure.step, "tools/call");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_wrong_tool_result_is_a_tool_call_mismatch() {
    let fixture = support::fixture(|_| {}).await;
    let mut config = config(format!("{}/mcp", fixture.url()));
    config.tool_call = Some(ToolCallCheck {
        name: "get_document".into(),
        arguments: json!({"id": "doc-1"}).as_object().unwrap().clone(),
        expect: Some(ExpectedContent { contains: Some("no such text".into()), regex: None, json: None }),
    });
    let report = probe::probe(&config).await;
    assert_eq!(report.failure.unwrap().kind, FailureKind::ToolCallMismatch);
}

#[tokio::test]
async fn missing_expected_tools_are_named() {
    let fixture = support::fixture(|c| c.profile = Some(Profile::V2Breaking)).await;
    let mut config = config(format!("{}/mcp", fixture.url()));
    config.expected_tools = vec!["get_document".into(), "list_documents".into()];
    let report = probe::probe(&config).await;
    assert_eq!(
        report.failure.unwrap().kind,
        FailureKind::UnexpectedTools { missing: vec!["list_documents".into()] }
    );
}

async fn snapshot_of(configure: impl FnOnce(&mut mcp_fixture::config::FixtureConfig)) -> probe::Snapshot {
    let fixture = support::fixture(configure).await;
    let report = probe::probe(&config(format!("{}/mcp", fixture.url()))).await;
    assert!(report.passed, "{report:#?}");
    report.snapshot()
}

#[tokio::test]
async fn the_diff_between_fixture_profiles_follows_the_policies() {
    let v1 = snapshot_of(|_| {}).await;
    let compatible = snapshot_of(|c| c.profile = Some(Profile::V2Compatible)).await;
    let breaking = snapshot_of(|c| c.profile = Some(Profile::V2Breaking)).await;

    let d = probe::diff(&v1, &compatible);
    assert!(d.is_compatible(SchemaCompatibility::Strict), "{d:#?}");
    assert!(
        d.changes.iter().any(|c| c.kind == ChangeKind::ToolAdded && c.path == "tools/summarize_document")
    );
    assert!(d.changes.iter().any(|c| c.kind == ChangeKind::ParameterAddedOptional
        && c.path == "tools/search_documents/inputSchema/properties/tags"));

    let d = probe::diff(&v1, &breaking);
    let blocking: Vec<&str> =
        d.blocking(SchemaCompatibility::Strict).iter().map(|c| c.path.as_str()).collect();
    assert_eq!(blocking, ["tools/get_document/inputSchema/properties/tenant", "tools/list_documents"]);
    let removals: Vec<&str> =
        d.blocking(SchemaCompatibility::AllowAdditions).iter().map(|c| c.path.as_str()).collect();
    assert_eq!(removals, ["tools/list_documents"]);
    assert!(d.is_compatible(SchemaCompatibility::Off));
}

#[tokio::test]
async fn a_canary_that_stops_serving_a_version_is_a_breaking_change() {
    let stable = snapshot_of(|_| {}).await;
    let canary = snapshot_of(|c| c.protocol_versions = vec!["2025-11-25".into(), "2026-07-28".into()]).await;
    let d = probe::diff(&stable, &canary);
    let removed: Vec<&str> = d
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::ProtocolVersionRemoved)
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(
        removed,
        ["protocolVersions/2024-11-05", "protocolVersions/2025-03-26", "protocolVersions/2025-06-18"]
    );
    assert!(!d.is_compatible(SchemaCompatibility::AllowAdditions));
}
