//! A real Prometheus (the Debian package) scraping every running pod that asks for it with the
//! `prometheus.io/scrape`, `prometheus.io/port` and `prometheus.io/path` annotations, through a
//! file_sd target list rewritten as pods come and go. Targets carry `namespace`, `pod` and the
//! pod's labels (sanitised), as the usual kubernetes_sd relabelling gives on a real cluster.

use std::{path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use serde_json::{Map, Value, json};
use tokio::process::{Child, Command};

use crate::{
    selectors::{FieldSelector, LabelSelector},
    store::Store,
};

/// A running Prometheus; the process and its data directory go with it.
pub struct PrometheusProcess {
    child: Option<Child>,
    pub url: String,
    port: u16,
    dir: PathBuf,
    refresher: tokio::task::JoinHandle<()>,
}

impl PrometheusProcess {
    /// Kills Prometheus, keeping its data and address: an outage, as when its pod is evicted.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same address and data, after `stop`.
    pub async fn resume(&mut self) -> std::io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let http = reqwest::Client::builder().no_proxy().build().map_err(std::io::Error::other)?;
        let mut child = spawn(&self.dir, self.port)?;
        if wait_ready(&http, &self.url, &mut child).await {
            self.child = Some(child);
            Ok(())
        } else {
            Err(std::io::Error::other("prometheus did not start again"))
        }
    }
}

fn spawn(dir: &std::path::Path, port: u16) -> std::io::Result<Child> {
    Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

async fn wait_ready(http: &reqwest::Client, url: &str, child: &mut Child) -> bool {
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if http.get(format!("{url}/-/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        self.refresher.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A label name as Prometheus accepts it.
fn sanitise(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// The file_sd target groups for the pods that ask to be scraped.
pub fn targets(pods: &[Value]) -> Value {
    let groups: Vec<Value> = pods
        .iter()
        .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
        .filter(|p| p["metadata"]["annotations"]["prometheus.io/scrape"] == "true")
        .filter_map(|p| {
            let ip = p["status"]["podIP"].as_str()?;
            let annotations = &p["metadata"]["annotations"];
            let port = annotations["prometheus.io/port"].as_str().unwrap_or("80");
            let path = annotations["prometheus.io/path"].as_str().unwrap_or("/metrics");
            let mut labels = Map::new();
            labels.insert("namespace".into(), p["metadata"]["namespace"].clone());
            labels.insert("pod".into(), p["metadata"]["name"].clone());
            labels.insert("__metrics_path__".into(), json!(path));
            for (key, value) in p["metadata"]["labels"].as_object().into_iter().flatten() {
                labels.insert(sanitise(key), value.clone());
            }
            Some(json!({"targets": [format!("{ip}:{port}")], "labels": labels}))
        })
        .collect();
    Value::Array(groups)
}

/// Starts Prometheus on a free loopback port (retrying a lost port race) and keeps its
/// targets in step with the store.
pub async fn start(store: Arc<Store>, dir: PathBuf) -> std::io::Result<PrometheusProcess> {
    std::fs::create_dir_all(&dir)?;
    let targets_file = dir.join("targets.json");
    std::fs::write(&targets_file, "[]")?;
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: pods\n    \
         file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
        targets_file.display()
    );
    std::fs::write(dir.join("prometheus.yml"), config)?;
    let http = reqwest::Client::builder().no_proxy().build().map_err(std::io::Error::other)?;
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = spawn(&dir, port)?;
        let url = format!("http://127.0.0.1:{port}");
        if wait_ready(&http, &url, &mut child).await {
            let refresher = tokio::spawn(refresh(store, targets_file));
            return Ok(PrometheusProcess { child: Some(child), url, port, dir, refresher });
        }
    }
    Err(std::io::Error::other("prometheus did not start"))
}

async fn refresh(store: Arc<Store>, file: PathBuf) {
    let Some(pods) = store.resolve("", "v1", "pods") else { return };
    let mut written = String::new();
    loop {
        let all = store.list(&pods, None, &LabelSelector::default(), &FieldSelector::default()).0;
        let text = targets(&all).to_string();
        if text != written {
            // Written whole and renamed, so Prometheus never reads half a file.
            let partial = file.with_extension("tmp");
            if std::fs::write(&partial, &text).is_ok() && std::fs::rename(&partial, &file).is_ok() {
                written = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_annotated_running_pods_become_targets_with_their_labels() {
        let pods = vec![
            json!({"metadata": {"name": "a", "namespace": "mcp", "labels": {"app.kubernetes.io/name": "docs"},
                                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}},
                   "status": {"podIP": "127.1.0.2"}}),
            json!({"metadata": {"name": "b", "namespace": "mcp"}, "status": {"podIP": "127.1.0.3"}}),
            json!({"metadata": {"name": "c", "namespace": "mcp", "annotations": {"prometheus.io/scrape": "true"}}, "status": {}}),
        ];
        let groups = targets(&pods);
        assert_eq!(groups.as_array().unwrap().len(), 1);
        assert_eq!(groups[0]["targets"][0], "127.1.0.2:8080");
        assert_eq!(groups[0]["labels"]["app_kubernetes_io_name"], "docs");
        assert_eq!(groups[0]["labels"]["pod"], "a");
        assert_eq!(groups[0]["labels"]["__metrics_path__"], "/metrics");
    }
}
