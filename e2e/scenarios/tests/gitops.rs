//! GitOps health, read by the code the GitOps tools run: the Argo CD health check and resource
//! actions in `deploy/argocd/` run under gopher-lua set up as Argo CD sets it up (the
//! interpreter Argo CD embeds, with its library restrictions), and Flux's kstatus library
//! (`sigs.k8s.io/cli-utils/pkg/kstatus`) computes the health of the same status fixtures.
//! Both through `e2e/cluster/cmd/gitops-check`, built here from the Go module beside it. The
//! fixtures in `deploy/argocd/testdata/` are McpRollouts read back from a run of the real
//! operator (first deploy, healthy, canary, paused at a step, by request and at a gate, aborted, a missing
//! Secret, a spec change not yet observed), with server-only metadata removed.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use e2e::kstatus;
use serde_json::Value;

fn root() -> PathBuf {
    e2e::workspace()
}

fn fixture(name: &str) -> Value {
    let path = root().join("deploy/argocd/testdata").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn fixtures() -> Vec<(String, Value)> {
    let mut all: Vec<(String, Value)> = std::fs::read_dir(root().join("deploy/argocd/testdata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap())
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Runs `script` (a file under deploy/argocd) on `obj` as Argo CD would; the table it returns.
fn lua(obj: &Value, script: &str) -> Value {
    let path = root().join("deploy/argocd").join(script);
    let out = kstatus::run(&["lua", path.to_str().unwrap()], &obj.to_string());
    serde_json::from_str(&out).unwrap()
}

/// kstatus's verdict on `obj`: (status, message).
fn kstatus_of(obj: &Value) -> (String, String) {
    kstatus::compute(std::slice::from_ref(obj)).remove(0)
}

fn health(obj: &Value) -> (String, String) {
    let r = lua(obj, "health.lua");
    (r["status"].as_str().unwrap().to_owned(), r["message"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn argo_cd_health_follows_phase_and_conditions() {
    let expected = [
        ("gate-waiting", "Suspended"),
        ("generation-not-observed", "Progressing"),
        ("healthy", "Healthy"),
        ("paused-at-step", "Suspended"),
        ("paused-by-request", "Suspended"),
        ("progressing-canary", "Progressing"),
        ("progressing-first-deploy", "Progressing"),
        ("rolled-back", "Degraded"),
        ("stalled-secret", "Degraded"),
    ];
    let all = fixtures();
    assert_eq!(all.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), expected.map(|e| e.0));
    for ((name, obj), (_, want)) in all.iter().zip(expected) {
        let (status, message) = health(obj);
        assert_eq!(status, want, "{name}: {message}");
    }
    assert!(health(&fixture("stalled-secret")).1.contains("mcp-token"), "the reason reaches Argo CD");
    assert!(health(&fixture("generation-not-observed")).1.contains("generation 3"));
    let mut fresh = fixture("healthy");
    fresh.as_object_mut().unwrap().remove("status");
    assert_eq!(health(&fresh).0, "Progressing", "no status yet");
}

fn enabled_actions(obj: &Value) -> Vec<String> {
    let r = lua(obj, "actions/discovery.lua");
    let mut names: Vec<String> = r
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, a)| a["disabled"] != true)
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    names
}

#[test]
fn argo_cd_actions_are_offered_when_they_apply() {
    assert_eq!(
        enabled_actions(&fixture("progressing-canary")),
        ["abort", "pause", "promote", "promote-full"]
    );
    assert_eq!(
        enabled_actions(&fixture("paused-by-request")),
        ["abort", "promote", "promote-full", "resume"]
    );
    assert_eq!(enabled_actions(&fixture("rolled-back")), ["resume", "retry"]);
    assert_eq!(
        enabled_actions(&fixture("gate-waiting")),
        ["abort", "approve", "pause", "promote", "promote-full"]
    );
    assert!(enabled_actions(&fixture("healthy")).is_empty());
}

#[test]
fn each_argo_cd_action_writes_a_fresh_request_and_nothing_else() {
    let obj = fixture("paused-at-step");
    for action in ["promote", "promote-full", "abort", "retry", "pause", "resume", "approve"] {
        let r = lua(&obj, &format!("actions/{action}/action.lua"));
        let request = r["metadata"]["annotations"]["mcprollout.dev/request"].as_str().unwrap();
        let lines = [
            request.to_owned(),
            r["metadata"]["name"].to_string(),
            r["spec"]["replicas"].to_string(),
            r["status"]["phase"].to_string(),
        ];
        let (verb, id) = lines[0].split_once('@').unwrap();
        assert_eq!(verb, action);
        assert!(
            id.starts_with("argocd-") && id["argocd-".len()..].chars().all(|c| c.is_ascii_digit()),
            "{id}"
        );
        mcp_rollout::engine::parse_request(&lines[0]).unwrap();
        assert_eq!(&lines[1..], ["\"docs\"", "2", "\"Paused\""], "{action} changed nothing else");
    }
}

/// Flux (kstatus): the library computes Current exactly when the operator says Healthy,
/// InProgress while it progresses or pauses (or has not observed the spec yet), Failed when it
/// says Degraded; and each condition is stamped with the generation it describes.
#[test]
fn kstatus_agrees_with_the_phase() {
    for (name, obj) in fixtures() {
        let status = &obj["status"];
        let phase = status["phase"].as_str().unwrap();
        let observed = status["observedGeneration"].as_i64().unwrap();
        let generation = obj["metadata"]["generation"].as_i64().unwrap();
        assert!(observed <= generation, "{name}");
        let want = kstatus::expected(&obj);
        let (got, message) = kstatus_of(&obj);
        assert_eq!(got, want, "{name}: kstatus says {got} ({message}), the operator {phase}");
        let condition = |t: &str| {
            status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).cloned().unwrap()
        };
        for t in ["Ready", "Reconciling", "Stalled"] {
            assert_eq!(condition(t)["observedGeneration"], status["observedGeneration"], "{name}: {t}");
            assert!(!condition(t)["reason"].as_str().unwrap().is_empty(), "{name}: {t} has a reason");
        }
    }
    // Before the operator's first status write, the CRD's status default is all there is
    // (the real API server applies it on read: status {observedGeneration: 0}). kstatus reads
    // that as not yet observed; without the default it calls a status-less object Current.
    let mut fresh = fixture("healthy");
    fresh["status"] = serde_json::json!({"observedGeneration": 0, "desiredWeight": 0, "effectiveWeight": 0});
    assert_eq!(kstatus_of(&fresh).0, "InProgress", "never reconciled");
    assert_eq!(health(&fresh).0, "Progressing", "never reconciled (Argo CD)");
    fresh.as_object_mut().unwrap().remove("status");
    assert_eq!(kstatus_of(&fresh).0, "Current", "kstatus's rule for objects with no status at all");
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|l| if l.is_empty() { String::new() } else { format!("{pad}{l}") })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The argocd-cm keys to merge, built from the Lua files.
fn argocd_cm() -> String {
    let read = |p: &str| std::fs::read_to_string(root().join("deploy/argocd").join(p)).unwrap();
    let mut actions =
        format!("discovery.lua: |\n{}\ndefinitions:\n", indent(&read("actions/discovery.lua"), 2));
    for action in ["promote", "promote-full", "pause", "resume", "abort", "retry", "approve"] {
        actions.push_str(&format!(
            "- name: {action}\n  action.lua: |\n{}\n",
            indent(&read(&format!("actions/{action}/action.lua")), 4)
        ));
    }
    format!(
        "# Generated from deploy/argocd/*.lua by e2e/scenarios/tests/gitops.rs (MCP_UPDATE_GOLDEN=1 rewrites it).\n\
         # Merge these keys into your argocd-cm ConfigMap, e.g.\n\
         #   kubectl -n argocd patch configmap argocd-cm --patch-file deploy/argocd/argocd-cm.yaml\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\n  labels:\n    \
         app.kubernetes.io/part-of: argocd\ndata:\n  resource.customizations.health.mcprollout.dev_McpRollout: |\n{}\n  \
         resource.customizations.actions.mcprollout.dev_McpRollout: |\n{}\n",
        indent(&read("health.lua"), 4),
        indent(&actions, 4)
    )
}

#[test]
fn argocd_cm_embeds_the_lua_files_as_they_are() {
    let path = root().join("deploy/argocd/argocd-cm.yaml");
    let expected = argocd_cm();
    if std::env::var_os("MCP_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == expected, "deploy/argocd/argocd-cm.yaml is stale: run with MCP_UPDATE_GOLDEN=1");
    // And it is a ConfigMap whose keys hold the scripts.
    let cm: Value = serde_yaml::from_str(&committed).unwrap();
    let health = cm["data"]["resource.customizations.health.mcprollout.dev_McpRollout"].as_str().unwrap();
    assert_eq!(health, std::fs::read_to_string(root().join("deploy/argocd/health.lua")).unwrap());
    let actions: Value = serde_yaml::from_str(
        cm["data"]["resource.customizations.actions.mcprollout.dev_McpRollout"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(actions["definitions"].as_array().unwrap().len(), 7);
}
