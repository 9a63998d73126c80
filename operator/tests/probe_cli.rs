#![allow(clippy::unwrap_used)]
//! `kubectl-mcprollout probe` as users run it, and as `@modelcontextprotocol/conformance`
//! 0.1.16 runs it through its client scenarios.

mod support;

use std::process::Output;

use mcp_fixture::config::Profile;
use serde_json::Value;
use tokio::process::Command;

const CLI: &str = env!("CARGO_BIN_EXE_kubectl-mcprollout");

async fn cli(args: &[&str]) -> Output {
    Command::new(CLI).args(args).kill_on_drop(true).output().await.unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn probe_prints_a_report_and_exits_by_the_outcome() {
    let fixture = support::fixture(|_| {}).await;
    let url = format!("{}/mcp", fixture.url());
    let output = cli(&[
        "probe",
        &url,
        "--expect-tools",
        "get_document",
        "--call",
        "get_document",
        "--args",
        r#"{"id":"doc-1"}"#,
    ])
    .await;
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.starts_with("PASS"), "{text}");
    for expected in [
        "protocol:   2026-07-28",
        "serves:     2024-11-05, 2025-03-26",
        "Tools (4)",
        "get_document",
        "Tool call get_document → ok",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }

    let output = cli(&["probe", &url, "--expect-tools", "no_such_tool"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("unexpected tools"));

    let output = cli(&["probe", &url, "--call", "get_document", "--args", "[1]"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a JSON object"));
}

#[tokio::test]
async fn a_saved_baseline_or_a_live_stable_gates_a_breaking_canary() {
    let stable = support::fixture(|_| {}).await;
    let breaking = support::fixture(|c| c.profile = Some(Profile::V2Breaking)).await;
    let compatible = support::fixture(|c| c.profile = Some(Profile::V2Compatible)).await;
    let dir = std::env::temp_dir().join(format!("probe-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snapshot = dir.join("stable.json");
    let snapshot = snapshot.to_str().unwrap();

    let output = cli(&["probe", &format!("{}/mcp", stable.url()), "--save", snapshot]).await;
    assert!(output.status.success());
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(snapshot).unwrap()).unwrap();
    assert_eq!(saved["tools"].as_array().unwrap().len(), 4);
    assert_eq!(saved["protocolVersions"].as_array().unwrap().len(), 5);

    let output = cli(&["probe", &format!("{}/mcp", breaking.url()), "--baseline", snapshot]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.starts_with("PASS"), "the probe itself passes; the diff blocks:\n{text}");
    assert!(text.contains("✗ BREAKING   tools/list_documents"), "{text}");
    assert!(text.contains("tools/get_document/inputSchema/properties/tenant"), "{text}");
    assert!(text.contains("BLOCKED (2 blocking change(s))"), "{text}");

    let allow =
        cli(&["probe", &format!("{}/mcp", breaking.url()), "--baseline", snapshot, "--policy", "off"]).await;
    assert!(allow.status.success());

    let output = cli(&[
        "probe",
        &format!("{}/mcp", compatible.url()),
        "--against",
        &format!("{}/mcp", stable.url()),
        "--json",
    ])
    .await;
    assert!(output.status.success(), "{}", stdout(&output));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["report"]["passed"], true);
    assert_eq!(json["against"]["passed"], true);
    assert_eq!(json["blocking"], Value::Array(vec![]));
    let kinds: Vec<&str> =
        json["diff"]["changes"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"toolAdded") && kinds.contains(&"parameterAddedOptional"), "{kinds:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs one client scenario of the conformance suite with our probe as the client.
async fn conformance(scenario: &str, probe_args: &str) -> (bool, String) {
    let work = std::env::temp_dir().join(format!("conformance-{scenario}-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let script =
        support::repo().join("e2e/clients/node_modules/@modelcontextprotocol/conformance/dist/index.js");
    let output = Command::new(support::node22())
        .arg(script)
        .args(["client", "--scenario", scenario, "--command", &format!("{CLI} probe {probe_args}")])
        .current_dir(&work)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    std::fs::remove_dir_all(&work).unwrap();
    let text = format!("{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
    (output.status.success() && text.contains("OVERALL: PASSED"), text)
}

#[tokio::test]
async fn the_conformance_client_scenarios_pass() {
    // `initialize` counts an offer older than 2025-06-18 as a failure, and the probe's version
    // sweep offers every accepted version by design, so the scenario runs with 2025-06-18+.
    let scenarios = [
        ("initialize", "--protocol-versions 2025-06-18,2025-11-25,2026-07-28"),
        ("tools_call", r#"--call add_numbers --args '{"a":2,"b":3}' --expect 5"#),
        ("sse-retry", "--call test_reconnection --expect completed"),
    ];
    for (scenario, args) in scenarios {
        let (passed, text) = conformance(scenario, args).await;
        assert!(passed, "conformance scenario {scenario} failed:\n{text}");
    }
}
