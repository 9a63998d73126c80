//! McpRollout manifests: any text goes through the offline admission checks (schema, CEL rules,
//! the operator's parse) without panicking, and any JSON or YAML the operator's types accept reads back
//! the same after being written (what the operator writes, it reads as written).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_rollout_api::{api::McpRollout, validate::Checker};

thread_local! {
    // Compiling the CRD's CEL rules takes about a second: once per process, not per input.
    static CHECKER: Checker = Checker::new();
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let report = CHECKER.with(|checker| checker.check_yaml(text));
        assert!(report.checked + report.skipped <= text.len() + 1);
    }
    // JSON, or YAML as manifests are written (the seeds are the repo's examples).
    let parsed = serde_json::from_slice::<McpRollout>(data).ok().or_else(|| {
        let text = std::str::from_utf8(data).ok()?;
        serde_yaml::from_str::<McpRollout>(text).ok()
    });
    let Some(rollout) = parsed else { return };
    let written = serde_json::to_value(&rollout).expect("a parsed rollout serializes");
    let again: McpRollout = serde_json::from_value(written.clone()).expect("what was written reads");
    assert_eq!(serde_json::to_value(&again).expect("serializes"), written);
});
