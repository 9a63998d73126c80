//! What the test bed's contract tests share: a control plane with a kube client, the image
//! map with the workspace's binaries, and waiting for a condition.

#![allow(dead_code, clippy::unwrap_used)]

use std::{future::Future, path::PathBuf, time::Duration};

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use testbed::{ControlPlane, Options, controllers::images::ImageMap};

/// The directory of the workspace's built binaries, with mcp-fixture built if it is not yet.
pub fn bin_dir() -> PathBuf {
    let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    if !dir.join("mcp-fixture").exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "mcp-fixture", "--bin", "mcp-fixture"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    dir
}

/// `e2e/images.yaml` with `{bin}` resolved.
pub fn images() -> ImageMap {
    ImageMap::load(&PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../images.yaml")), &bin_dir())
        .unwrap()
}

pub async fn client_for(plane: &ControlPlane) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&plane.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// A control plane that only stores pods (no kubelet), and a client for it.
pub async fn connect() -> (ControlPlane, Client) {
    let plane = ControlPlane::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = client_for(&plane).await;
    (plane, client)
}

/// A control plane whose pods run as processes, and a client for it.
pub async fn connect_with_kubelet() -> (ControlPlane, Client) {
    let options = Options { images: Some(images()), ..Options::default() };
    let plane = ControlPlane::start_with("127.0.0.1:0".parse().unwrap(), options).await.unwrap();
    let client = client_for(&plane).await;
    (plane, client)
}

/// Polls `check` until it holds; fails the test after a minute.
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
