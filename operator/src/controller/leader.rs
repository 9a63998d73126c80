//! Leader election on a `coordination.k8s.io/v1` Lease, through `kube-lease-manager`: only the
//! replica holding the Lease runs the controller, so only one ever writes.

use std::{future::Future, sync::Arc, time::Duration};

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{info, warn};

use super::metrics::Metrics;

/// Where the Lease lives and how long it holds.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica; a restarted container of the same pod may keep it, and then takes
    /// its own Lease back at once.
    pub identity: String,
    pub duration: Duration,
    pub grace: Duration,
}

/// A stop signal every part of the process can wait on: true once shutdown began.
pub type Stop = watch::Receiver<bool>;

/// Resolves when `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: Stop) {
    let _ = stop.wait_for(|v| *v).await;
}

/// A future the controller's graceful shutdown waits on.
pub type StopFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// Runs `lead` each time this replica becomes leader, handing it a future that resolves when
/// leadership is lost or the process stops; `lead` must return soon after. The Lease is
/// released on the way out, so a successor need not wait for it to expire.
pub async fn run_as_leader<F, Fut>(
    client: Client,
    config: LeaseConfig,
    metrics: Arc<Metrics>,
    stop: Stop,
    mut lead: F,
) -> Result<(), kube_lease_manager::LeaseManagerError>
where
    F: FnMut(StopFuture) -> Fut,
    Fut: Future<Output = ()>,
{
    let manager = LeaseManagerBuilder::new(client, &config.name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration.as_secs().max(2))
        .with_grace(config.grace.as_secs().clamp(1, config.duration.as_secs().max(2) - 1))
        .build()
        .await?;
    let (mut leading, task) = manager.watch().await;
    loop {
        tokio::select! {
            () = stopped(stop.clone()) => break,
            ok = wait_for(&mut leading, true) => if !ok { break },
        }
        info!(identity = %config.identity, lease = %config.name, "leading");
        metrics.leader.set(1);
        let (mut lost, halt) = (leading.clone(), stop.clone());
        let until: StopFuture = Box::pin(async move {
            tokio::select! {
                _ = wait_for(&mut lost, false) => {},
                () = stopped(halt) => {},
            }
        });
        lead(until).await;
        metrics.leader.set(0);
        if *stop.borrow() {
            break;
        }
        warn!(identity = %config.identity, "leadership lost; controller stopped until it is regained");
    }
    // Closing the channel makes the manager release the Lease.
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "releasing the Lease"),
        Ok(_) => info!("Lease released"),
        Err(_) => warn!("the Lease was not released within 5 s; it will expire"),
    }
    Ok(())
}

/// Waits until the channel says `value`; false if the manager went away.
async fn wait_for(channel: &mut watch::Receiver<bool>, value: bool) -> bool {
    channel.wait_for(|v| *v == value).await.is_ok()
}
