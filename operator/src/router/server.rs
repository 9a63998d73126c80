//! Serving connections: HTTP/1.1 and h2c on one port (hyper-util's auto builder). On shutdown
//! the listener closes first (no new connections), then every open connection is asked to end
//! gracefully — requests in flight, open streams included, finish — within the grace period.
//! A client's next request then reaches another replica, and its token still names its pod.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use super::proxy::Router;

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn serve(
    listener: TcpListener,
    router: Arc<Router>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(64 * 1024);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(64 * 1024);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer): (_, SocketAddr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let service = service_fn(move |req| router.clone().handle(req));
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    info!("router shutting down: finishing open requests and streams");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        warn!(grace_seconds = grace.as_secs(), "grace period over with connections still open");
    }
}
