//! GitOps health, read by the tools that read it: the Argo CD health check and resource actions
//! in `deploy/argocd/` run under a Lua 5.1 interpreter (Argo CD's gopher-lua speaks 5.1), and
//! Flux's kstatus rules are checked on the same status fixtures. The fixtures in
//! `deploy/argocd/testdata/` are McpRollouts read back from a test-bed run of the real operator
//! (first deploy, healthy, canary, paused at a step and by request, aborted, a missing Secret, a
//! spec change not yet observed), with server-only metadata removed.

#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, process::Command};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
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

/// A JSON value as a Lua table constructor.
fn to_lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!("{{{}}}", items.iter().map(to_lua).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter().map(|(k, v)| format!("[{k:?}] = {}", to_lua(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Runs `script` (a file under deploy/argocd) with `obj` set, then `epilogue` on its result `r`.
fn lua(obj: &Value, script: &str, epilogue: &str) -> String {
    let path = root().join("deploy/argocd").join(script);
    let program =
        format!("obj = {}\nlocal r = dofile({:?})\n{epilogue}\n", to_lua(obj), path.display().to_string());
    let output = Command::new("lua5.1")
        .args(["-e", &program])
        .output()
        .expect("lua5.1 is not installed (hack/install-test-deps.sh installs it)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn health(obj: &Value) -> (String, String) {
    let out = lua(obj, "health.lua", "io.write(r.status, '\\n', r.message or '')");
    let (status, message) = out.split_once('\n').unwrap();
    (status.to_owned(), message.to_owned())
}

#[test]
fn argo_cd_health_follows_phase_and_conditions() {
    let expected = [
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
    let out = lua(
        obj,
        "actions/discovery.lua",
        "local names = {} for n, a in pairs(r) do if not a.disabled then table.insert(names, n) end end \
         table.sort(names) io.write(table.concat(names, ' '))",
    );
    out.split_whitespace().map(str::to_owned).collect()
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
    assert!(enabled_actions(&fixture("healthy")).is_empty());
}

#[test]
fn each_argo_cd_action_writes_a_fresh_request_and_nothing_else() {
    let obj = fixture("paused-at-step");
    for action in ["promote", "promote-full", "abort", "retry", "pause", "resume"] {
        let out = lua(
            &obj,
            &format!("actions/{action}/action.lua"),
            "io.write(r.metadata.annotations['mcprollout.dev/request'], '\\n', r.metadata.name, '\\n', \
             r.spec.replicas, '\\n', r.status.phase)",
        );
        let lines: Vec<&str> = out.lines().collect();
        let (verb, id) = lines[0].split_once('@').unwrap();
        assert_eq!(verb, action);
        assert!(
            id.starts_with("argocd-") && id["argocd-".len()..].chars().all(|c| c.is_ascii_digit()),
            "{id}"
        );
        mcp_rollout::engine::parse_request(lines[0]).unwrap();
        assert_eq!(&lines[1..], ["docs", "2", "Paused"], "{action} changed nothing else");
    }
}

/// Flux (kstatus): Ready True exactly when done, Reconciling while progressing or paused,
/// Stalled on failure, each condition stamped with the generation it describes.
#[test]
fn status_follows_kstatus_rules() {
    for (name, obj) in fixtures() {
        let status = &obj["status"];
        let condition = |t: &str| {
            status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).cloned().unwrap()
        };
        let is_true = |t: &str| condition(t)["status"] == "True";
        let phase = status["phase"].as_str().unwrap();
        assert_eq!(is_true("Ready"), phase == "Healthy", "{name}");
        assert_eq!(is_true("Reconciling"), phase == "Progressing" || phase == "Paused", "{name}");
        assert_eq!(is_true("Stalled"), phase == "Degraded", "{name}");
        for t in ["Ready", "Reconciling", "Stalled"] {
            assert_eq!(condition(t)["observedGeneration"], status["observedGeneration"], "{name}: {t}");
            assert!(!condition(t)["reason"].as_str().unwrap().is_empty(), "{name}: {t} has a reason");
        }
        let observed = status["observedGeneration"].as_i64().unwrap();
        let generation = obj["metadata"]["generation"].as_i64().unwrap();
        assert!(observed <= generation, "{name}");
    }
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
    for action in ["promote", "promote-full", "pause", "resume", "abort", "retry"] {
        actions.push_str(&format!(
            "- name: {action}\n  action.lua: |\n{}\n",
            indent(&read(&format!("actions/{action}/action.lua")), 4)
        ));
    }
    format!(
        "# Generated from deploy/argocd/*.lua by operator/tests/gitops.rs (MCP_UPDATE_GOLDEN=1 rewrites it).\n\
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
    assert_eq!(actions["definitions"].as_array().unwrap().len(), 6);
}
