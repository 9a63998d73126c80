//! The `mcp-fixture` binary as a process: a real SIGTERM keeps an open stream alive to its end,
//! then the process exits 0; the crash knobs abort the process. Children are killed on drop.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::{
    io::{BufRead, BufReader},
    os::unix::process::ExitStatusExt,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use mcp_fixture::client::{Era, StreamableClient};
use serde_json::json;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Starts the binary on a random loopback port and returns it with its base URL.
    fn start(args: &[&str]) -> (Self, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-fixture"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("SERVER_VERSION", "bin")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap().to_owned();
        (Self(child), format!("http://{addr}"))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args(["-s", signal, &self.0.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn sigterm_lets_the_open_stream_finish_then_exits() {
    let (mut process, url) = Process::start(&[]);
    let http = reqwest::Client::new();
    let mut client = StreamableClient::new(http, format!("{url}/mcp"), Era::Handshake);
    client.connect().await.unwrap();
    let call =
        tokio::spawn(async move { client.call_tool("export_report", json!({"seconds": 2}), true).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    process.signal("TERM");
    let reply = call.await.unwrap().expect("the open stream was cut by SIGTERM");
    assert!(reply.result["content"][0]["text"].as_str().unwrap().contains("report of 2s ready"));
    assert!(reply.progress_events >= 1);
    let status = process.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn crash_after_calls_aborts_the_process() {
    let (mut process, url) = Process::start(&["--crash-after-calls", "2"]);
    let mut client = StreamableClient::new(reqwest::Client::new(), format!("{url}/mcp"), Era::Handshake);
    client.connect().await.unwrap();
    for _ in 0..2 {
        client.call_tool("get_document", json!({"id": "a"}), false).await.unwrap();
    }
    assert!(client.call_tool("get_document", json!({"id": "a"}), false).await.is_err());
    let status = process.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.signal(), Some(6), "expected SIGABRT, got {status:?}");
}

#[tokio::test]
async fn crash_after_seconds_aborts_the_process() {
    let (mut process, _) = Process::start(&["--crash-after-seconds", "1"]);
    let status = process.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.signal(), Some(6), "expected SIGABRT, got {status:?}");
}
