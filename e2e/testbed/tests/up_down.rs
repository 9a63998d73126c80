#![allow(clippy::unwrap_used)]
//! `testbed up` and `testbed down` as processes: everything up started is gone after down.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn down_stops_the_control_plane_and_its_pods() {
    let dir = std::env::temp_dir().join(format!("testbed-updown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let images = concat!(env!("CARGO_MANIFEST_DIR"), "/../images.yaml");
    let mut up = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["up", "--kubeconfig", kubeconfig.to_str().unwrap(), "--images", images])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let first =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(first.starts_with("listening on 127.0.0.1:"), "{first}");
    assert!(dir.join("testbed.pid").exists());

    // A pod running a shell that waits: its process must not outlive the test bed.
    let marker = format!("sleep 3000.{}", std::process::id());
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n    args: [\"-c\", \"{marker}\"]\n"
    );
    let mut apply = tokio::process::Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args(["apply", "--server-side", "--validate=false", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut apply.stdin.take().unwrap(), pod.as_bytes()).await.unwrap();
    assert!(apply.wait().await.unwrap().success());
    let running =
        || std::process::Command::new("pgrep").args(["-f", &marker]).output().unwrap().status.success();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !running() {
        assert!(std::time::Instant::now() < deadline, "the pod's process never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let down = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["down", "--kubeconfig", kubeconfig.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert!(tokio::time::timeout(Duration::from_secs(10), up.wait()).await.unwrap().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while running() {
        assert!(std::time::Instant::now() < deadline, "the pod's process outlived testbed down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
