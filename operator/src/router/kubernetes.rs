//! Kubernetes mode: one rollout's router. It watches two things in its namespace — the pods of
//! its rollout (label `mcprollout.dev/rollout`) and the routing configuration the operator
//! writes (ConfigMap `<rollout>-router`) — and rebuilds its table on every change of either.
//! It never lists anything else, and dials nothing but those pods (no open proxy). Its session
//! keys are files of a mounted Secret (`current`, and `previous` during a rotation), re-read
//! periodically so a rotation needs no restart.
//!
//! Ready once both watches have synced and a configuration is in force: before that it would
//! answer every request 503.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use clap::Args;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, reflector, watcher},
};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::{
    admin::{self, AdminState},
    config::{self, CONFIG_KEY, RoutingConfig},
    proxy::{Limits, Router},
    sessions::Sessions,
    token::Keys,
};
use crate::api::labels;

#[derive(Debug, Clone, Args)]
pub struct KubernetesArgs {
    /// The McpRollout this router serves.
    #[arg(long)]
    pub rollout: String,
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,
    /// The ConfigMap holding the routing configuration (default `<rollout>-router`).
    #[arg(long)]
    pub config_map: Option<String>,
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// `/metrics`, `/state`, `/healthz`, `/readyz`.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Directory of the mounted key Secret: `current` (32 bytes) and optionally `previous`.
    #[arg(long, default_value = "/etc/mcp-router/keys")]
    pub key_dir: PathBuf,
    /// A session with no request for this long is no longer counted as open.
    #[arg(long, default_value = "10m", value_parser = super::standalone::humantime_secs)]
    pub idle_timeout: Duration,
    /// How long open streams may finish after SIGTERM.
    #[arg(long, default_value = "30s", value_parser = super::standalone::humantime_secs)]
    pub grace: Duration,
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("session key {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("session key {0}: {1}")]
    Invalid(PathBuf, super::token::KeyError),
}

/// The keys in a key directory: `current`, and `previous` when present.
pub fn read_keys(dir: &Path) -> Result<Keys, KeyFileError> {
    let current_path = dir.join("current");
    let current = std::fs::read(&current_path).map_err(|e| KeyFileError::Read(current_path.clone(), e))?;
    let previous_path = dir.join("previous");
    let previous = match std::fs::read(&previous_path) {
        Ok(bytes) if !bytes.is_empty() => Some(bytes),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(KeyFileError::Read(previous_path, e)),
    };
    Keys::new(&current, previous.as_deref()).map_err(|e| KeyFileError::Invalid(current_path, e))
}

/// How often the key files are read again (a Secret volume is refreshed by the kubelet).
const KEY_RELOAD: Duration = Duration::from_secs(30);

pub async fn run(
    args: KubernetesArgs,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let keys = read_keys(&args.key_dir)?;
    // Nothing routes until the first table is in force (503, not ready).
    let router = Arc::new(
        Router::unsynced(
            keys,
            Sessions::new(args.idle_timeout, 1_000_000),
            Limits { max_body: args.max_body, ..Limits::default() },
        )
        .for_rollout(&args.rollout),
    );
    let admin_state = AdminState::new(router.clone());
    let listener = TcpListener::bind(args.listen).await?;
    let admin_listener = TcpListener::bind(args.admin_listen).await?;
    info!(listen = %listener.local_addr()?, admin = %admin_listener.local_addr()?, rollout = %args.rollout, "router starting");
    let app = admin::routes(admin_state.clone());
    tokio::spawn(async move { axum::serve(admin_listener, app).await });

    let client = Client::try_default().await?;
    tokio::spawn(watch_and_route(client, args.clone(), router.clone()));
    tokio::spawn(reload_keys(args.key_dir.clone(), router.clone()));
    let expiring = router.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            expiring.expire_sessions();
        }
    });
    super::server::serve(listener, router, shutdown, args.grace).await;
    Ok(())
}

async fn reload_keys(dir: PathBuf, router: Arc<Router>) {
    loop {
        tokio::time::sleep(KEY_RELOAD).await;
        match read_keys(&dir) {
            Ok(keys) => router.set_keys(keys),
            Err(e) => warn!(error = %e, "cannot read the session keys; keeping the ones in force"),
        }
    }
}

/// Keeps the table in step with the pods and the configuration, for as long as the process runs.
async fn watch_and_route(client: Client, args: KubernetesArgs, router: Arc<Router>) {
    let config_map = args.config_map.clone().unwrap_or_else(|| format!("{}-router", args.rollout));
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &args.namespace);
    let maps_api: Api<ConfigMap> = Api::namespaced(client, &args.namespace);
    let (pods, pods_writer) = reflector::store();
    let (maps, maps_writer) = reflector::store();
    // Every watcher event, the initial listing included: a reflector commits its initial list
    // to the store only at `InitDone` (found on the cluster: a restarted router built its table
    // on the first listed object, before the pods were in the store, and declared itself ready
    // with no backend until some pod changed: 404 for pinned sessions, 503 for new ones).
    let pod_events = reflector(
        pods_writer,
        watcher(
            pods_api,
            watcher::Config::default().labels(&format!("{}={}", labels::ROLLOUT, args.rollout)),
        ),
    )
    .default_backoff()
    .map_ok(|e| (Source::Pods, matches!(e, watcher::Event::InitDone)))
    .boxed();
    let map_events = reflector(
        maps_writer,
        watcher(maps_api, watcher::Config::default().fields(&format!("metadata.name={config_map}"))),
    )
    .default_backoff()
    .map_ok(|e| (Source::Config, matches!(e, watcher::Event::InitDone)))
    .boxed();
    let mut events = futures::stream::select(pod_events, map_events);
    let mut last_error = None;
    let (mut pods_synced, mut config_synced) = (false, false);
    while let Some(event) = events.next().await {
        let (source, init_done) = match event {
            Ok(e) => e,
            Err(e) => {
                let message = e.to_string();
                if last_error.as_ref() != Some(&message) {
                    warn!(error = %message, "watch failed; retrying");
                }
                last_error = Some(message);
                continue;
            }
        };
        last_error = None;
        match source {
            Source::Pods => pods_synced |= init_done,
            Source::Config => config_synced |= init_done,
        }
        // Nothing is routed, and the replica is not ready, before both were listed whole.
        if !(pods_synced && config_synced) {
            continue;
        }
        // Deletions are seen too: the stores are read whole each time.
        let Some(config) = maps.state().first().and_then(|m| parse(m)) else { continue };
        let views: Vec<config::PodView> = pods.state().iter().filter_map(|p| config::pod_view(p)).collect();
        let table = config::table(&config, &views);
        if *router.table() != table || !router.is_ready() {
            info!(version = %table.version, backends = table.backends.len(), "routing table in force");
            router.set_table(table);
        }
    }
}

/// Which watch an event came from.
#[derive(Clone, Copy)]
enum Source {
    Pods,
    Config,
}

fn parse(map: &ConfigMap) -> Option<RoutingConfig> {
    let text = map.data.as_ref()?.get(CONFIG_KEY)?;
    match serde_json::from_str(text) {
        Ok(config) => Some(config),
        Err(e) => {
            warn!(error = %e, "the routing configuration does not parse; keeping the one in force");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_the_secret_files() {
        let dir = std::env::temp_dir().join(format!("mcp-router-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(read_keys(&dir), Err(KeyFileError::Read(..))), "no current key");
        std::fs::write(dir.join("current"), [3u8; 32]).unwrap();
        let keys = read_keys(&dir).unwrap();
        std::fs::write(dir.join("previous"), [4u8; 32]).unwrap();
        let rotating = read_keys(&dir).unwrap();
        let old = Keys::new(&[4u8; 32], None).unwrap();
        let pin = super::super::token::Pin {
            backend: "p".into(),
            revision: "r".into(),
            session: "s".into(),
            opened: 0,
        };
        assert!(rotating.open(&old.seal(&pin).unwrap()).is_some(), "tokens of the previous key still open");
        assert!(keys.open(&old.seal(&pin).unwrap()).is_none());
        std::fs::write(dir.join("current"), [1u8; 5]).unwrap();
        assert!(matches!(read_keys(&dir), Err(KeyFileError::Invalid(..))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
