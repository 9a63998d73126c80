//! mcp-fixture driven by clients nobody here wrote: the official Python SDK (PyPI `mcp` 2.x) and
//! TypeScript SDK (`@modelcontextprotocol/sdk`), over both transports and, for Python, both
//! protocol eras. `hack/install-test-deps.sh` installs them; a missing one fails the test with
//! that instruction rather than skipping it.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::{path::PathBuf, process::Command};

use mcp_fixture::{Fixture, FixtureConfig};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a client script off the test's runtime thread and returns its JSON line.
async fn run(program: PathBuf, args: Vec<String>) -> Value {
    assert!(
        program.exists() || program.to_str() == Some("node"),
        "{} is missing: run hack/install-test-deps.sh",
        program.display()
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&program).args(&args).current_dir(repo().join("e2e/clients")).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "client failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

async fn python(url: String, transport: &str, mode: &str) -> Value {
    let python = repo().join(".venv/bin/python");
    let script = repo().join("e2e/clients/py_client.py").display().to_string();
    run(python, vec![script, url, transport.into(), mode.into()]).await
}

async fn typescript(url: String, transport: &str) -> Value {
    assert!(
        repo().join("e2e/clients/node_modules/@modelcontextprotocol/sdk").exists(),
        "the TypeScript SDK is missing: run hack/install-test-deps.sh"
    );
    run("node".into(), vec!["ts-client.mjs".into(), url, transport.into()]).await
}

fn check(result: &Value, protocol: Option<&str>) {
    assert_eq!(
        result["tools"],
        serde_json::json!(["export_report", "get_document", "list_documents", "search_documents"])
    );
    assert_eq!(result["text"], "3 results for runbook");
    assert_eq!(result["isError"], false);
    if let Some(protocol) = protocol {
        assert_eq!(result["protocolVersion"], protocol, "{result}");
    }
}

#[tokio::test]
async fn the_official_python_sdk_works_in_both_eras_and_both_transports() {
    let fixture = Fixture::start(FixtureConfig { server_version: "v9".into(), ..FixtureConfig::for_tests() })
        .await
        .unwrap();
    let handshake = python(format!("{}/mcp", fixture.url()), "streamable-http", "legacy").await;
    check(&handshake, Some("2025-11-25"));
    assert_eq!(handshake["serverVersion"], "v9");
    check(
        &python(format!("{}/mcp", fixture.url()), "streamable-http", "2026-07-28").await,
        Some("2026-07-28"),
    );
    check(&python(format!("{}/sse", fixture.url()), "sse", "legacy").await, None);
}

#[tokio::test]
async fn the_official_typescript_sdk_works_over_both_transports() {
    let fixture = Fixture::start(FixtureConfig { server_version: "v9".into(), ..FixtureConfig::for_tests() })
        .await
        .unwrap();
    let streamable = typescript(format!("{}/mcp", fixture.url()), "streamable-http").await;
    check(&streamable, Some("2025-11-25"));
    assert_eq!(streamable["serverVersion"], "v9");
    check(&typescript(format!("{}/sse", fixture.url()), "sse").await, None);
}

#[tokio::test]
async fn an_sdk_client_is_refused_by_a_fixture_that_fails_initialize() {
    let fixture =
        Fixture::start(FixtureConfig { fail_initialize: true, ..FixtureConfig::for_tests() }).await.unwrap();
    let url = format!("{}/mcp", fixture.url());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(repo().join(".venv/bin/python"))
            .args([
                repo().join("e2e/clients/py_client.py").display().to_string(),
                url,
                "streamable-http".into(),
                "legacy".into(),
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success(), "the client connected to a server whose initialize fails");
}
