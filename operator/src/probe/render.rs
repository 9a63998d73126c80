//! The human-readable probe report `kubectl mcprollout probe` prints.

use std::fmt::Write as _;

use serde_json::Value;

use super::{
    diff::{SchemaDiff, Severity},
    report::ProbeReport,
};
use crate::api::SchemaCompatibility;

fn required_params(schema: &Value) -> Vec<String> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let props = schema.get("properties").and_then(Value::as_object);
    let mut names: Vec<String> = props.map(|p| p.keys().cloned().collect()).unwrap_or_default();
    names.sort();
    names.into_iter().map(|n| if required.contains(&n.as_str()) { format!("{n}*") } else { n }).collect()
}

/// The report as text: outcome, handshake, steps, tools, tool call.
pub fn report(report: &ProbeReport) -> String {
    let mut out = String::new();
    let verdict = if report.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(out, "{verdict}  {}  ({} ms)", report.url, report.millis);
    if let Some(failure) = &report.failure {
        let _ = writeln!(out, "  failure:    {failure}");
    }
    if let Some(transport) = report.transport {
        let _ = writeln!(out, "  transport:  {transport}");
    }
    if let Some(version) = &report.protocol_version {
        let _ = writeln!(out, "  protocol:   {version}");
    }
    if !report.protocol_versions.is_empty() {
        let _ = writeln!(out, "  serves:     {}", report.protocol_versions.join(", "));
    }
    if let Some(info) = &report.server_info {
        let name = info.get("name").and_then(Value::as_str).unwrap_or("?");
        let version = info.get("version").and_then(Value::as_str).unwrap_or("?");
        let _ = writeln!(out, "  server:     {name} {version}");
    }
    if let Some(capabilities) = report.capabilities.as_ref().and_then(Value::as_object) {
        let names: Vec<&str> = capabilities.keys().map(String::as_str).collect();
        let _ = writeln!(out, "  capabilities: {}", names.join(", "));
    }
    if !report.steps.is_empty() {
        let _ = writeln!(out, "\nSteps:");
        for step in &report.steps {
            let mark = if step.ok { "ok " } else { "ERR" };
            let version = step.protocol_version.as_deref().unwrap_or("");
            let _ = writeln!(out, "  {mark} {:<28} {:<11} {:>6} ms", step.step, version, step.millis);
        }
    }
    if !report.tools.is_empty() {
        let width = report.tools.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(out, "\nTools ({}), * = required parameter:", report.tools.len());
        for tool in &report.tools {
            let output = if tool.output_schema.is_some() { "  [output schema]" } else { "" };
            let _ = writeln!(
                out,
                "  {:<width$}  ({}){output}",
                tool.name,
                required_params(&tool.input_schema).join(", ")
            );
        }
    }
    if let Some(call) = &report.tool_call {
        let state = if call.is_error { "isError" } else { "ok" };
        let text: String = call.text.chars().take(200).collect();
        let _ = writeln!(out, "\nTool call {} → {state}: {text}", call.name);
    }
    out
}

/// The diff as text, blocking changes marked.
pub fn diff(diff: &SchemaDiff, policy: SchemaCompatibility, against: &str) -> String {
    let mut out = String::new();
    let blocking = diff.blocking(policy);
    let _ = writeln!(out, "\nSchema diff against {against} (policy {policy:?}):");
    if diff.changes.is_empty() {
        let _ = writeln!(out, "  no changes");
    }
    for change in &diff.changes {
        let severity = match change.severity {
            Severity::Breaking => "BREAKING",
            Severity::Warning => "warning",
            Severity::Compatible => "compatible",
            Severity::Info => "info",
        };
        let mark = if blocking.iter().any(|b| std::ptr::eq(*b, change)) { "✗" } else { " " };
        let _ = writeln!(out, "  {mark} {severity:<10} {}  {}", change.path, change.detail);
    }
    let verdict = if blocking.is_empty() { "compatible" } else { "BLOCKED" };
    let _ = writeln!(out, "  → {verdict} ({} blocking change(s))", blocking.len());
    out
}
