//! The test bed's control plane: a local server that speaks the subset of the Kubernetes REST
//! API an operator and kubectl use — discovery, CRUD, watch, the four patch types including
//! server-side apply, finalizers, garbage collection, CRDs with schema and CEL validation — so
//! the operator runs against it unchanged. Test infrastructure only; never deployed.

pub mod auth;
pub mod controllers;
pub mod discovery;
pub mod error;
pub mod patch;
pub mod pods;
pub mod resources;
pub mod selectors;
pub mod server;
pub mod store;
pub mod tls;
pub mod validation;
pub mod watch;

use std::{net::SocketAddr, path::Path, sync::Arc};

pub use server::AppState;
pub use store::Store;

/// A running control plane.
pub struct ControlPlane {
    pub addr: SocketAddr,
    /// The admin's bearer token.
    pub token: String,
    /// Tokens and the record of every resource request served.
    pub auth: Arc<auth::Auth>,
    /// The server certificate clients trust (PEM).
    pub ca_pem: String,
    pub store: Arc<Store>,
    server: tokio::task::JoinHandle<()>,
    controllers: Vec<tokio::task::JoinHandle<()>>,
    /// The Prometheus started with `Options::prometheus_dir`.
    pub prometheus: Option<controllers::prometheus::PrometheusProcess>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.server.abort();
        for controller in &self.controllers {
            controller.abort();
        }
    }
}

/// What runs beside the API server.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Run pods as local processes (the kubelet), with these image rules. Without it pods are
    /// only stored, and tests play the kubelet themselves.
    pub images: Option<controllers::images::ImageMap>,
    /// Start a real Prometheus scraping annotated pods, keeping its files here.
    pub prometheus_dir: Option<std::path::PathBuf>,
}

impl ControlPlane {
    /// Serves on `listen` (a loopback address; port 0 picks one), without a kubelet.
    pub async fn start(listen: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(listen, Options::default()).await
    }

    /// Serves on `listen` with the given options.
    pub async fn start_with(listen: SocketAddr, options: Options) -> std::io::Result<Self> {
        if !listen.ip().is_loopback() {
            return Err(std::io::Error::other("the test bed listens on loopback only"));
        }
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let auth = Arc::new(auth::Auth::default());
        let token = auth.admin_token().to_owned();
        let store = Arc::new(Store::new());
        let state = AppState { store: store.clone(), auth: auth.clone(), addr };
        let app = server::router(state);
        let tls = tls::ServerTls::generate()?;
        let access = controllers::kubelet::ApiAccess {
            url: format!("https://{addr}"),
            ca_pem: tls.ca_pem.clone(),
            auth: auth.clone(),
        };
        let listener = tls::TlsListener::new(listener, &tls)?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let mut controllers = vec![
            tokio::spawn(controllers::deployment::run(store.clone())),
            tokio::spawn(controllers::endpoints::run(store.clone())),
            tokio::spawn(pods::reap(store.clone())),
        ];
        if let Some(images) = options.images {
            controllers.push(tokio::spawn(controllers::kubelet::run(
                store.clone(),
                Arc::new(images),
                access,
            )));
            // Pods that run need Services that route to them.
            controllers.push(tokio::spawn(controllers::proxy::run(store.clone())));
        }
        let prometheus = match options.prometheus_dir {
            Some(dir) => Some(controllers::prometheus::start(store.clone(), dir).await?),
            None => None,
        };
        Ok(Self { addr, token, auth, ca_pem: tls.ca_pem, store, server, controllers, prometheus })
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubeconfig for this control plane (the admin's bearer token), as kubectl and kube read it.
    pub fn kubeconfig(&self) -> String {
        kubeconfig_text(&self.url(), &self.ca_pem, &self.token, "default")
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }
}

/// A kubeconfig for the API server at `url` trusting `ca_pem`, authenticating with `token`.
pub fn kubeconfig_text(url: &str, ca_pem: &str, token: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {url}\n    certificate-authority-data: {}\n\
         contexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: testbed\n    namespace: {namespace}\n\
         current-context: testbed\nusers:\n- name: testbed\n  user:\n    token: {token}\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca_pem),
    )
}
