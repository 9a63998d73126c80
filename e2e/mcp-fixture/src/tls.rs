//! HTTPS for the fixture (`--tls-cert`, `--tls-key`): what a server that terminates TLS
//! itself looks like to the operator's probe. Handshakes run beside the accept loop, so a
//! client that never finishes one holds up nobody else.

use std::{io, net::SocketAddr, path::Path, sync::Arc};

use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
    server::TlsStream,
};
use tokio_util::sync::CancellationToken;

const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a PEM certificate chain and its private key.
pub fn acceptor(cert: &Path, key: &Path) -> io::Result<TlsAcceptor> {
    let invalid = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{what} {}: {e}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid("cannot read certificates from", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("bad certificate in", cert, &e))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| invalid("cannot read a private key from", key, &e))?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("certificate and key: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener of finished TLS handshakes, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` until `stop` is cancelled.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor, stop: CancellationToken) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((socket, peer)) = accepted else {
                    // Out of descriptors and the like: retrying at once would spin a core.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                // TCP_NODELAY as on the plain listener (a handshake session's second request
                // otherwise waits out the client's delayed ACK).
                let _ = socket.set_nodelay(true);
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    // A client that never finishes its handshake is dropped after 10 s.
                    match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(socket)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake not finished in time"),
                    }
                });
            }
        });
        Ok(Self { ready, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (shutdown): no more connections, ever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
