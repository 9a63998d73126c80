//! The TLS settings of the operator's short-lived HTTP clients, built once per process
//! instead of once per client.
//!
//! A probe builds its own HTTP client (its deadlines, the pod's address, its redirect policy),
//! and so do an analysis query (the rollout's Prometheus, pinned to its checked addresses) and
//! a gate or notification call. Left to itself, reqwest builds the TLS side of every client
//! from scratch, and with the platform verifier that means reading and parsing every CA
//! certificate of the system (`rustls-platform-verifier` → `rustls-native-certs`): about
//! 1.6 ms of CPU and a directory read per client. A reconcile of a rollout with an analysis
//! built two (one to check its Prometheus settings, one for the query), each probe one: with a
//! thousand rollouts, most of the operator's CPU at rest. So the two configurations used when
//! the rollout gives no CA bundle or client certificate of its own are built once and handed
//! to each client (`tls_backend_preconfigured`), set as reqwest would set them (every TLS
//! version rustls has, ALPN `h2` then `http/1.1`). A client with its own bundle or certificate
//! still builds its own TLS settings: they are the rollout's.

use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore, crypto::CryptoProvider};
use rustls_platform_verifier::BuilderVerifierExt;

/// What a client of a URL with this scheme uses when it has no TLS material of its own.
pub fn for_scheme(scheme: &str) -> Result<ClientConfig, String> {
    if scheme.eq_ignore_ascii_case("https") { platform() } else { Ok(unused()) }
}

/// The TLS configuration for `https` trusting the system's CA certificates; an error (no CA
/// certificate could be loaded) is built once too, and each client reports it.
fn platform() -> Result<ClientConfig, String> {
    static PLATFORM: OnceLock<Result<ClientConfig, String>> = OnceLock::new();
    PLATFORM
        .get_or_init(|| {
            let config = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .map_err(|e| e.to_string())?
                .with_platform_verifier()
                .map_err(|e| format!("cannot load the system's CA certificates: {e}"))?
                .with_no_client_auth();
            Ok(with_alpn(config))
        })
        .clone()
}

/// The TLS configuration for a client of plain `http`, which never uses it (its redirects are
/// refused or stay on the same scheme, host and port). It trusts nothing, so that no system
/// certificate is read for a client that will not speak TLS.
fn unused() -> ClientConfig {
    static UNUSED: OnceLock<ClientConfig> = OnceLock::new();
    UNUSED
        .get_or_init(|| {
            let config = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .expect("rustls's own protocol versions are valid for its own provider")
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth();
            with_alpn(config)
        })
        .clone()
}

/// The process's crypto provider, as reqwest picks it: the installed default, else aws-lc-rs
/// (the only one linked).
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

fn with_alpn(mut config: ClientConfig) -> ClientConfig {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    #[test]
    fn reqwest_takes_both_configurations() {
        // A rustls version other than reqwest's would make the configuration "unknown" to it
        // and every probe fail at build.
        for config in [super::platform().expect("this machine has CA certificates"), super::unused()] {
            reqwest::Client::builder().tls_backend_preconfigured(config).build().expect("reqwest accepts it");
        }
    }
}
