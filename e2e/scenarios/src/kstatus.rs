//! Flux's view of our status: `sigs.k8s.io/cli-utils/pkg/kstatus` (the library Flux's health
//! checks use) computes each McpRollout's status, through `e2e/cluster/cmd/gitops-check`,
//! and must agree with the phase the operator claims.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
};

use serde_json::Value;

use crate::workspace;

/// `gitops-check`, built once per test binary from the Go module in `e2e/cluster` (Go's build
/// cache makes rebuilding an unchanged tool a link at most).
pub fn gitops_check() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = workspace().join("target/go-tools/gitops-check");
        let status = Command::new("go")
            .current_dir(workspace().join("e2e/cluster"))
            .env("CGO_ENABLED", "0")
            .args(["build", "-o"])
            .arg(&out)
            .arg("./cmd/gitops-check")
            .status()
            .expect("go is not installed (the machines of this project have Go 1.26)");
        assert!(status.success(), "building e2e/cluster/cmd/gitops-check failed");
        out
    })
}

/// Runs `gitops-check ARGS` with `input` on stdin; its stdout.
pub fn run(args: &[&str], input: &str) -> String {
    let mut child = Command::new(gitops_check())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gitops-check runs");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("stdin written");
    let output = child.wait_with_output().expect("gitops-check ends");
    assert!(output.status.success(), "gitops-check {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// kstatus's verdicts on `objects`: (status, message) each.
pub fn compute(objects: &[Value]) -> Vec<(String, String)> {
    if objects.is_empty() {
        return Vec::new();
    }
    let input: String = objects.iter().map(|o| format!("{o}\n")).collect();
    run(&["kstatus"], &input)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("gitops-check prints JSON lines");
            (
                v["status"].as_str().unwrap_or_default().to_owned(),
                v["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// What kstatus must say for an object whose status claims `phase`.
pub fn expected(object: &Value) -> &'static str {
    let status = &object["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
    match status["phase"].as_str() {
        _ if observed < generation => "InProgress",
        Some("Healthy") => "Current",
        Some("Progressing" | "Paused") => "InProgress",
        Some("Degraded") => "Failed",
        _ => "InProgress",
    }
}

/// Checks kstatus against every object's phase; the disagreements, if any.
pub fn check(objects: &[Value]) -> Result<usize, String> {
    let verdicts = compute(objects);
    let wrong: Vec<String> = objects
        .iter()
        .zip(&verdicts)
        .filter(|(o, (got, _))| got != expected(o))
        .map(|(o, (got, message))| {
            format!(
                "{}: phase {} (observedGeneration {}, generation {}) but kstatus says {got}: {message}",
                o["metadata"]["name"].as_str().unwrap_or_default(),
                o["status"]["phase"].as_str().unwrap_or_default(),
                o["status"]["observedGeneration"],
                o["metadata"]["generation"],
            )
        })
        .collect();
    if wrong.is_empty() {
        Ok(verdicts.len())
    } else {
        Err(format!(
            "kstatus disagrees with the operator on {} status(es):\n{}",
            wrong.len(),
            wrong.join("\n")
        ))
    }
}
