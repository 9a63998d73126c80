#![allow(clippy::unwrap_used)]
//! Contract tests with the real `kubectl` client: `apply --server-side`, `get -o json`,
//! `wait`, `delete`, and the server's validation errors as kubectl shows them.

use std::process::Output;

use serde_json::Value;
use testbed::ControlPlane;
use tokio::process::Command;

struct Kubectl {
    kubeconfig: std::path::PathBuf,
    /// The client's minor version. Before 1.27 kubectl validates client-side against protobuf
    /// OpenAPI v2, which the test bed does not serve (see e2e/README.md); Debian's
    /// kubernetes-client is 1.20, which also lacks `wait --for=jsonpath` and
    /// `--show-managed-fields` (it always shows them).
    minor: u32,
}

impl Kubectl {
    async fn new(plane: &ControlPlane) -> Self {
        let kubeconfig = std::env::temp_dir().join(format!(
            "testbed-kubeconfig-{}-{}",
            std::process::id(),
            plane.addr.port()
        ));
        plane.write_kubeconfig(&kubeconfig).unwrap();
        let version = Command::new("kubectl")
            .args(["version", "--client", "-o", "json"])
            .output()
            .await
            .expect("kubectl is installed (hack/install-test-deps.sh)");
        let version: Value = serde_json::from_slice(&version.stdout).unwrap_or_default();
        let minor: u32 = version["clientVersion"]["minor"]
            .as_str()
            .unwrap_or("0")
            .trim_end_matches('+')
            .parse()
            .unwrap_or(0);
        Self { kubeconfig, minor }
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new("kubectl");
        command.env("KUBECONFIG", &self.kubeconfig).args(args).kill_on_drop(true);
        if self.minor < 27 && args.first() == Some(&"apply") {
            command.arg("--validate=false");
        }
        if let Some(input) = stdin {
            use tokio::io::AsyncWriteExt;
            command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = command.spawn().unwrap();
            child.stdin.take().unwrap().write_all(input.as_bytes()).await.unwrap();
            return child.wait_with_output().await.unwrap();
        }
        command.output().await.unwrap()
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[tokio::test]
async fn kubectl_applies_gets_waits_and_deletes() {
    let plane = ControlPlane::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let kubectl = Kubectl::new(&plane).await;

    let crd = format!("{REPO}/crds/mcprollout.dev_mcprollouts.yaml");
    let out = kubectl.run(&["apply", "--server-side", "-f", &crd], None).await;
    assert!(out.status.success(), "{}", text(&out));
    let example = std::fs::read_to_string(format!("{REPO}/examples/canary.yaml")).unwrap();
    let example_json: Value = serde_yaml::from_str(&example).unwrap();
    let namespace = example_json["metadata"]["namespace"].as_str().unwrap();
    let name = example_json["metadata"]["name"].as_str().unwrap();
    let ns = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n");
    let out = kubectl.run(&["apply", "--server-side", "-f", "-"], Some(&ns)).await;
    assert!(out.status.success(), "{}", text(&out));
    let out =
        kubectl.run(&["apply", "--server-side", "-f", &format!("{REPO}/examples/canary.yaml")], None).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("serverside-applied"), "{}", text(&out));

    let mut get = vec!["get", "mcprollouts", "-n", namespace, "-o", "json"];
    if kubectl.minor >= 21 {
        get.push("--show-managed-fields");
    }
    let out = kubectl.run(&get, None).await;
    assert!(out.status.success(), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"][0]["metadata"]["name"], name);
    assert_eq!(list["items"][0]["metadata"]["managedFields"][0]["manager"], "kubectl");

    if kubectl.minor >= 23 {
        let resource = format!("mcprollout/{name}");
        let wait =
            ["wait", "--for=jsonpath={.metadata.generation}=1", "-n", namespace, &resource, "--timeout=10s"];
        let out = kubectl.run(&wait, None).await;
        assert!(out.status.success(), "{}", text(&out));
    }

    // The server's validation, as kubectl reports it.
    let bad = example.replacen("setWeight: 5", "setWeight: 500", 1);
    assert_ne!(bad, example, "the example has a first step of setWeight: 5");
    let out = kubectl.run(&["apply", "--server-side", "-f", "-"], Some(&bad)).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("is invalid") && text(&out).contains("setWeight"), "{}", text(&out));

    let out = kubectl.run(&["delete", "mcprollout", name, "-n", namespace], None).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl
        .run(&["wait", "--for=delete", "-n", namespace, &format!("mcprollout/{name}"), "--timeout=10s"], None)
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl.run(&["get", "mcprollout", name, "-n", namespace], None).await;
    assert!(!out.status.success() && text(&out).contains("NotFound"), "{}", text(&out));
}
