//! One rustls crypto provider for the whole process.
//!
//! kube defaults to ring and reqwest 0.13 (so prometheus-http-query) to aws-lc-rs. With both
//! compiled in, rustls cannot pick a process-wide default and kube's client panics the first
//! time it builds a TLS config. The workspace pins aws-lc-rs everywhere; these tests fail if
//! a dependency change brings ring back.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::{path::Path, process::Command};

#[tokio::test]
async fn kube_and_reqwest_clients_build_side_by_side_over_https() {
    let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    // Building the client builds the rustls ClientConfig: this is where two providers panic.
    let kube_client = kube::Client::try_from(config).expect("kube client with rustls");
    let reqwest_client = reqwest::Client::builder().build().expect("reqwest client with rustls");
    drop((kube_client, reqwest_client));
}

/// Asks cargo which crates are really compiled (feature-aware, every target platform).
/// Cargo.lock is no oracle: it also lists optional dependencies nobody enables.
#[test]
fn ring_is_not_compiled_into_any_workspace_crate() {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--workspace", "--target", "all", "-e", "normal,build,dev", "-i", "ring"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        tree.trim().is_empty(),
        "the `ring` crate is compiled in again; switch the dependency that pulls it to aws-lc-rs:\n{tree}"
    );
}
