//! HTTPS for the control plane: a self-signed certificate for 127.0.0.1/localhost made at
//! start, handed to clients as the kubeconfig's `certificate-authority-data`.

use std::{io, net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{TlsAcceptor, rustls, server::TlsStream};

/// The certificate (PEM, what clients trust) and the acceptor that serves it.
pub struct ServerTls {
    pub ca_pem: String,
    acceptor: TlsAcceptor,
}

impl ServerTls {
    pub fn generate() -> io::Result<Self> {
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .map_err(io::Error::other)?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(io::Error::other)?;
        Ok(Self { ca_pem: certified.cert.pem(), acceptor: TlsAcceptor::from(Arc::new(config)) })
    }
}

/// A TCP listener whose connections come out TLS-terminated. Handshakes run in their own tasks,
/// so one slow client never holds up the others.
pub struct TlsListener {
    connections: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: &ServerTls) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = tls.acceptor.clone();
        let (sender, connections) = mpsc::channel(64);
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((socket, peer)) = listener.accept().await else { continue };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(socket))
                            .await
                    {
                        let _ = sender.send((stream, peer)).await;
                    }
                });
            }
        });
        Ok(Self { connections, local, accept_loop })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
