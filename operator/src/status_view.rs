//! `kubectl mcprollout status`: a rollout's status as a person reads it — steps with the current
//! one marked, desired and effective weight, the latest probe per revision, gate verdicts with
//! their numbers, and drain countdowns. Pure: a rollout and a clock in, text out.

use std::fmt::Write;

use jiff::Timestamp;

use k8s_openapi::api::core::v1::Pod;

use crate::{
    api::{
        CanaryStep, DrainClamp, IN_ROTATION_GATE, McpRollout, StrategyRef, Verdict, WorkloadPhase, labels,
    },
    controller::disruption::DRAINING_LABEL,
};

fn ago(now: Timestamp, then: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> String {
    let secs = (now.as_second() - then.0.as_second()).max(0);
    match secs {
        0..120 => format!("{secs}s ago"),
        120..7200 => format!("{}m ago", secs / 60),
        _ => format!("{}h ago", secs / 3600),
    }
}

fn step_text(step: &CanaryStep) -> String {
    let mut parts = Vec::new();
    if let Some(w) = step.set_weight {
        parts.push(format!("setWeight {w}%"));
    }
    if let Some(p) = &step.pause {
        parts.push(match p.duration {
            Some(d) => format!("pause {d}"),
            None => "pause (until promote)".into(),
        });
    }
    if step.analysis.as_ref().is_some_and(|a| a.skip) {
        parts.push("analysis skipped".into());
    }
    if step.probe.is_some() {
        parts.push("own probe".into());
    }
    parts.join(", ")
}

/// The status view at `now`.
pub fn render(rollout: &McpRollout, now: Timestamp) -> String {
    let mut out = String::new();
    let name = format!(
        "{}/{}",
        rollout.metadata.namespace.as_deref().unwrap_or("default"),
        rollout.metadata.name.as_deref().unwrap_or("?")
    );
    let Some(status) = &rollout.status else {
        let _ = writeln!(out, "McpRollout {name}: no status yet (is the operator running?)");
        return out;
    };
    let phase = status.phase.map_or_else(|| "Unknown".to_owned(), |p| format!("{p:?}"));
    let generation = rollout.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0);
    let _ = writeln!(out, "McpRollout {name}    phase {phase}");
    if observed < generation {
        let _ = writeln!(out, "  spec generation {generation} not yet observed (status is for {observed})");
    }
    if let Some(message) = &status.message {
        let _ = writeln!(out, "  {message}");
    }
    let _ = writeln!(
        out,
        "Stable   {}\nCanary   {}",
        status.stable_revision.as_deref().unwrap_or("-"),
        status.canary_revision.as_deref().unwrap_or("-")
    );
    let _ =
        writeln!(out, "Weight   desired {}%   effective {}%", status.desired_weight, status.effective_weight);
    if status.paused_by_request || rollout.spec.paused {
        let _ = writeln!(out, "Paused   by {}", if rollout.spec.paused { "spec.paused" } else { "request" });
    }

    match rollout.spec.strategy.kind() {
        StrategyRef::Canary(canary) if !canary.steps.is_empty() => {
            let _ = writeln!(out, "Steps");
            let current = status.current_step_index.and_then(|i| usize::try_from(i).ok());
            for (i, step) in canary.steps.iter().enumerate() {
                let (mark, note) = match current {
                    Some(c) if i < c => (" ", "done".to_owned()),
                    Some(c) if i == c => (
                        ">",
                        status
                            .step_started_at
                            .as_ref()
                            .map_or_else(|| "current".into(), |t| format!("current, since {}", ago(now, t))),
                    ),
                    _ => (" ", String::new()),
                };
                let _ = writeln!(out, "  {mark} {i:>2}  {:<40} {note}", step_text(step));
            }
        }
        StrategyRef::Canary(_) => {}
        StrategyRef::BlueGreen(bg) => {
            let stage = if status.promoted_at.is_some() {
                format!("flipped; post-promotion window {}", bg.post_promotion_window)
            } else if status.canary_revision.is_some() {
                "preview (not in traffic)".into()
            } else {
                "steady".into()
            };
            let _ = writeln!(out, "Blue-green   {stage}");
        }
    }

    if !status.gates.is_empty() {
        let _ = writeln!(out, "Gates");
        for g in &status.gates {
            let point = match g.weight {
                Some(w) => format!("{:?} to {w}%", g.point),
                None => format!("{:?}", g.point),
            };
            let state = match g.state {
                crate::api::GateState::Waiting => format!("WAITING since {}", ago(now, &g.since)),
                crate::api::GateState::Open => format!("open {}", ago(now, &g.since)),
            };
            let _ =
                writeln!(out, "  {:<20} {point:<22} {state}  {}", g.name, g.message.as_deref().unwrap_or(""));
        }
    }

    if !status.probes.is_empty() {
        let _ = writeln!(out, "Probes");
        for p in &status.probes {
            let track = if status.stable_revision.as_deref() == Some(p.revision.as_str()) {
                "stable"
            } else {
                "canary"
            };
            let verdict = if p.passed { "passed" } else { "FAILED" };
            let versions = match (p.protocol_versions.first(), p.protocol_versions.last()) {
                (Some(a), Some(b)) if a != b => format!("{a}…{b} ({})", p.protocol_versions.len()),
                (Some(a), _) => a.clone(),
                _ => "-".into(),
            };
            let schema = match (p.schema_compatible, p.schema_change) {
                (Some(false), _) => "schema INCOMPATIBLE".to_owned(),
                (Some(true), Some(change)) => format!("schema compatible ({change:?})"),
                (Some(true), None) => "schema compatible".to_owned(),
                (None, _) => String::new(),
            };
            let _ = writeln!(
                out,
                "  {:<12} {track:<7} {verdict:<7} {:<8} pods {}  tools {}  versions {versions}  {schema}",
                p.revision,
                ago(now, &p.at),
                p.pods,
                p.tool_count.map_or_else(|| "-".into(), |t| t.to_string()),
            );
            if let Some(m) = &p.message {
                let _ = writeln!(out, "               {m}");
            }
        }
    }

    if !status.analysis.is_empty() {
        let _ = writeln!(out, "Analysis");
        for c in &status.analysis {
            let verdict = match c.verdict {
                Verdict::Pass => "Pass",
                Verdict::Fail => "FAIL",
                Verdict::Inconclusive => "Inconclusive",
            };
            let value = c.value.map_or_else(|| "-".into(), |v| format!("{v:.4}"));
            let threshold = c.threshold.map_or_else(|| "-".into(), |v| format!("{v}"));
            let _ = writeln!(
                out,
                "  {:<24} {verdict:<12} value {value:<10} threshold {threshold:<8} {}  {}",
                c.name,
                ago(now, &c.at),
                c.message.as_deref().unwrap_or("")
            );
        }
    }

    if !status.drains.is_empty() {
        let _ = writeln!(out, "Draining");
        for d in &status.drains {
            let elapsed = now.as_second() - d.started_at.0.as_second();
            let left = (d.window_seconds - elapsed).max(0);
            let how = match (d.clamp, d.measured_seconds) {
                (DrainClamp::NoData, _) => "no sessions measured: the maximum".to_owned(),
                (DrainClamp::Min, Some(m)) => format!("measured {m:.1}s, raised to the minimum"),
                (DrainClamp::Max, Some(m)) => format!("measured {m:.1}s, lowered to the maximum"),
                (_, Some(m)) => format!("measured {m:.1}s"),
                (_, None) => String::new(),
            };
            let sessions = d.active_sessions.map_or_else(String::new, |s| format!(", {s} open session(s)"));
            let _ = writeln!(
                out,
                "  {:<12} {} pod(s)  window {}s ({how})  {left}s left{sessions}",
                d.revision, d.replicas, d.window_seconds
            );
        }
    }

    if let Some(w) = &status.workload {
        let detail = match (w.phase, &w.left_traffic_at, w.window_seconds) {
            (WorkloadPhase::Serving, ..) => "serves until the first revision is ready and probed".to_owned(),
            (WorkloadPhase::Draining, Some(left), Some(window)) => {
                let remaining = (left.0.as_second() + window - now.as_second()).max(0);
                format!("out of traffic {}, window {window}s, {remaining}s left", ago(now, left))
            }
            (WorkloadPhase::Draining, ..) => "still in the Service's endpoints".to_owned(),
            (WorkloadPhase::ScaledDown, ..) => "drained and scaled to 0".to_owned(),
            (WorkloadPhase::Kept, ..) => "drained, left running (scaleDown: Never)".to_owned(),
        };
        let _ = writeln!(out, "Migrating from Deployment {}: {:?}, {detail}", w.name, w.phase);
    }

    if let Some(r) = &status.rollback {
        let _ = writeln!(
            out,
            "Rolled back   revision {} ({:?}, {}): {}",
            r.revision,
            r.reason,
            ago(now, &r.at),
            r.message
        );
    }
    let conditions: Vec<String> =
        status.conditions.iter().map(|c| format!("{}={}", c.type_, c.status)).collect();
    if !conditions.is_empty() {
        let _ = writeln!(out, "Conditions   {}", conditions.join("  "));
    }
    out
}

/// One pod as the tree shows it: name, readiness, rotation, draining or terminating.
fn pod_line(pod: &Pod) -> String {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let is_true = |kind: &str| conditions.iter().any(|c| c.type_ == kind && c.status == "True");
    let containers_ready = is_true("ContainersReady");
    let mut notes = vec![
        if containers_ready { "ready" } else { "not ready" },
        if is_true(IN_ROTATION_GATE) { "in rotation" } else { "out of rotation" },
    ];
    let labels = pod.metadata.labels.as_ref();
    if labels.and_then(|l| l.get(DRAINING_LABEL)).is_some_and(|v| v == "true") {
        notes.push("draining");
    }
    if pod.metadata.deletion_timestamp.is_some() {
        notes.push("terminating");
    }
    format!("{}   {}", pod.metadata.name.as_deref().unwrap_or("?"), notes.join(", "))
}

/// The rollout's pods as a tree under their revisions (stable, canary, then any other still
/// running: draining), each pod with its readiness and whether it is in rotation.
pub fn pods_tree(rollout: &McpRollout, pods: &[Pod]) -> String {
    let status = rollout.status.clone().unwrap_or_default();
    let revision_of = |p: &Pod| p.metadata.labels.as_ref().and_then(|l| l.get(labels::REVISION)).cloned();
    let mut revisions: Vec<(String, &str)> = Vec::new();
    for (revision, role) in [(&status.stable_revision, "stable"), (&status.canary_revision, "canary")] {
        if let Some(r) = revision {
            revisions.push((r.clone(), role));
        }
    }
    let mut others: Vec<String> = pods
        .iter()
        .filter_map(revision_of)
        .filter(|r| !revisions.iter().any(|(known, _)| known == r))
        .collect();
    others.sort();
    others.dedup();
    revisions.extend(others.into_iter().map(|r| (r, "leaving")));
    let mut out = String::from("Pods\n");
    for (i, (revision, role)) in revisions.iter().enumerate() {
        let last_revision = i + 1 == revisions.len();
        let mut own: Vec<&Pod> = pods.iter().filter(|p| revision_of(p).as_ref() == Some(revision)).collect();
        own.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let _ = writeln!(
            out,
            "  {} {revision} ({role}, {} pod(s))",
            if last_revision { "└─" } else { "├─" },
            own.len()
        );
        for (j, pod) in own.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {}  {} {}",
                if last_revision { " " } else { "│" },
                if j + 1 == own.len() { "└─" } else { "├─" },
                pod_line(pod)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pods_tree_groups_pods_under_their_revision_with_rotation_and_drain() {
        let rollout: McpRollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "mcprollout.dev/v1alpha1", "kind": "McpRollout",
            "metadata": {"name": "docs", "namespace": "mcp"},
            "spec": {"template": {"spec": {"containers": [{"name": "s", "image": "i"}]}},
                     "service": {"port": 8080}, "strategy": {"canary": {"steps": [{"setWeight": 5}]}}},
            "status": {"stableRevision": "aaa", "canaryRevision": "bbb"}
        }))
        .unwrap();
        let pod = |name: &str, revision: &str, ready: bool, rotation: bool, draining: bool| -> Pod {
            let flag = |b: bool| if b { "True" } else { "False" };
            let mut labels = serde_json::json!({labels::REVISION: revision});
            if draining {
                labels[DRAINING_LABEL] = "true".into();
            }
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": labels},
                "status": {"conditions": [
                    {"type": "ContainersReady", "status": flag(ready)},
                    {"type": IN_ROTATION_GATE, "status": flag(rotation)}
                ]}
            }))
            .unwrap()
        };
        let pods = [
            pod("docs-bbb-1", "bbb", true, false, false),
            pod("docs-aaa-2", "aaa", true, true, false),
            pod("docs-aaa-1", "aaa", true, false, true),
            pod("docs-ccc-1", "ccc", false, false, true),
        ];
        let tree = pods_tree(&rollout, &pods);
        let expected = "Pods
  ├─ aaa (stable, 2 pod(s))
  │  ├─ docs-aaa-1   ready, out of rotation, draining
  │  └─ docs-aaa-2   ready, in rotation
  ├─ bbb (canary, 1 pod(s))
  │  └─ docs-bbb-1   ready, out of rotation
  └─ ccc (leaving, 1 pod(s))
     └─ docs-ccc-1   not ready, out of rotation, draining
";
        assert_eq!(tree, expected);
    }

    #[test]
    fn shows_the_current_step_weights_probes_verdicts_and_drain_countdown() {
        let rollout: McpRollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "mcprollout.dev/v1alpha1", "kind": "McpRollout",
            "metadata": {"name": "docs", "namespace": "mcp", "generation": 2},
            "spec": {
                "template": {"spec": {"containers": [{"name": "s", "image": "x"}]}},
                "strategy": {"canary": {"steps": [{"setWeight": 5}, {"pause": {"duration": "30s"}}, {"setWeight": 50}]}}
            },
            "status": {
                "observedGeneration": 2, "phase": "Progressing", "message": "soaking at 5% for 30s",
                "stableRevision": "aaa", "canaryRevision": "bbb", "currentStepIndex": 1,
                "stepStartedAt": "2026-01-01T00:00:00Z", "desiredWeight": 5, "effectiveWeight": 20,
                "probes": [{"revision": "bbb", "passed": true, "at": "2026-01-01T00:00:05Z",
                            "consecutiveFailures": 0, "pods": 1, "toolCount": 4,
                            "protocolVersions": ["2024-11-05", "2026-07-28"], "schemaCompatible": true,
                            "schemaChange": "NonBreaking"}],
                "gates": [{"name": "schema-review", "point": "WeightIncrease", "weight": 50, "state": "Waiting",
                           "since": "2026-01-01T00:00:02Z",
                           "message": "waiting for approval (`kubectl mcprollout approve <name> --gate schema-review`)"}],
                "analysis": [{"name": "errorRate", "verdict": "Pass", "value": 0.5, "threshold": 2.0,
                              "consecutiveFailures": 0, "at": "2026-01-01T00:00:08Z"}],
                "drains": [{"revision": "old", "startedAt": "2026-01-01T00:00:00Z", "windowSeconds": 60,
                            "replicas": 2, "measuredSeconds": 12.0, "clamp": "Min", "activeSessions": 3}],
                "workload": {"name": "docs-legacy", "phase": "Draining", "leftTrafficAt": "2026-01-01T00:00:04Z",
                             "windowSeconds": 30}
            }
        }))
        .unwrap();
        let text = render(&rollout, Timestamp::from_second(1_767_225_610).unwrap()); // 00:00:10
        assert!(text.contains("phase Progressing"), "{text}");
        assert!(text.contains("desired 5%   effective 20%"), "{text}");
        assert!(text.contains(">  1  pause 30s"), "{text}");
        assert!(text.contains("current, since 10s ago"), "{text}");
        assert!(text.contains("bbb          canary  passed  5s ago"), "{text}");
        assert!(text.contains("errorRate                Pass"), "{text}");
        assert!(text.contains("50s left, 3 open session(s)"), "{text}");
        assert!(text.contains("schema compatible (NonBreaking)"), "{text}");
        assert!(
            text.contains(
                "schema-review        WeightIncrease to 50%  WAITING since 8s ago  waiting for approval"
            ),
            "{text}"
        );
        assert!(text.contains("measured 12.0s, raised to the minimum"), "{text}");
        assert!(
            text.contains(
                "Migrating from Deployment docs-legacy: Draining, out of traffic 6s ago, window 30s, 24s left"
            ),
            "{text}"
        );
    }
}
