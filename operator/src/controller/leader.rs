//! Leader election on a `coordination.k8s.io/v1` Lease, through `kube-lease-manager`: only the
//! replica holding the Lease runs the controller, so only one ever writes.
//!
//! `kube-lease-manager` retries a failed renewal with backoff and keeps saying "leading" while
//! it does, so a leader cut off from the API server would go on reconciling (and its probe and
//! analysis jobs on running) after a standby took the Lease over. The fence here keeps a local
//! renew deadline, as client-go's leader election does: it reads the Lease and, once no renewal
//! of ours was seen for two thirds of the Lease's duration, the replica stops — every job with
//! it — and exits non-zero, before a standby can take the Lease (one whole duration).

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::{sync::watch, time::Instant};
use tracing::{error, info, warn};

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
    /// How long before the Lease expires the holder renews it.
    pub grace: Duration,
}

impl LeaseConfig {
    /// Lease timings for a duration, as client-go's defaults relate them (15 s: renewed every
    /// 5 s, given up 10 s after the last renewal): renewing every third of the duration leaves
    /// room for one failed renewal before the renew deadline.
    pub fn for_duration(namespace: String, name: String, identity: String, duration: Duration) -> Self {
        let duration = duration.max(Duration::from_secs(3));
        LeaseConfig { namespace, name, identity, grace: duration * 2 / 3, duration }
    }

    /// How long after the last renewal seen this replica stops leading: two thirds of the
    /// duration, so it has stopped a third of the duration before a standby may take over.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// How often the fence reads the Lease.
    fn fence_poll(&self) -> Duration {
        (self.duration / 10).max(Duration::from_millis(500))
    }
}

/// Why a leader stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("the leader Lease could not be managed: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error(
        "no renewal of the leader Lease seen for {0:?} (the renew deadline): stopped leading, every job with it, \
         before a standby can take the Lease"
    )]
    RenewDeadlinePassed(Duration),
    #[error("the leader Lease is held by {0} now: stopped leading, every job with it")]
    TakenOver(String),
    #[error(transparent)]
    NotListed(#[from] super::NotListed),
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
) -> Result<(), LeaderError>
where
    F: FnMut(StopFuture) -> Fut,
    Fut: Future<Output = Result<(), LeaderError>>,
{
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
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
        // The Lease was (re)acquired just before the channel said so.
        let fence = fence(&leases, &config, Instant::now());
        tokio::select! {
            led = lead(until) => if let Err(e) = led {
                metrics.leader.set(0);
                error!(identity = %config.identity, error = %e, "the controller could not start; exiting");
                return Err(e);
            },
            fenced = fence => {
                // Dropping the controller cancels the reconciles in flight; returning ends the
                // process, and with it every probe, analysis and measurement job. No release:
                // the API server is out of reach or the Lease is someone else's.
                metrics.leader.set(0);
                error!(identity = %config.identity, error = %fenced, "leadership lost; exiting");
                return Err(fenced);
            }
        }
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

/// Resolves once this replica must stop leading: no renewal of ours seen within the renew
/// deadline, or the Lease held by another. A read that hangs (a partition drops packets) does
/// not hold the deadline back: it is a timer, moved on only by a renewal read from the Lease.
async fn fence(leases: &Api<Lease>, config: &LeaseConfig, acquired: Instant) -> LeaderError {
    let deadline = config.renew_deadline();
    let mut renewed = acquired;
    loop {
        let read = tokio::time::timeout(config.fence_poll(), leases.get(&config.name));
        tokio::select! {
            () = tokio::time::sleep_until(renewed + deadline) => {
                return LeaderError::RenewDeadlinePassed(deadline);
            }
            result = read => match result {
                Ok(Ok(lease)) => match renewal_of(&lease, &config.identity) {
                    Renewal::Ours(at) => renewed = renewed.max(at),
                    Renewal::Other(holder) => return LeaderError::TakenOver(holder),
                    Renewal::Unknown => {}
                },
                Ok(Err(e)) => warn!(error = %e, "reading the leader Lease"),
                Err(_) => warn!("reading the leader Lease timed out"),
            }
        }
        tokio::time::sleep(config.fence_poll()).await;
    }
}

/// What a read of the Lease says about this replica's hold on it.
#[derive(Debug, PartialEq)]
enum Renewal {
    /// Ours, renewed at this moment (on this process's clock).
    Ours(Instant),
    /// Held by another identity.
    Other(String),
    /// Released or without a renew time (between a release and the next holder).
    Unknown,
}

/// The Lease's renew time on the local monotonic clock: its age on the wall clock (the holder
/// wrote it, so both are this node's clock) taken from now. A renew time in the future counts
/// as now.
fn renewal_of(lease: &Lease, identity: &str) -> Renewal {
    let Some(spec) = &lease.spec else { return Renewal::Unknown };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => {}
        Some(holder) if !holder.is_empty() => return Renewal::Other(holder.to_owned()),
        _ => return Renewal::Unknown,
    }
    let Some(renew_time) = &spec.renew_time else { return Renewal::Unknown };
    let written = SystemTime::from(renew_time.0);
    let age = SystemTime::now().duration_since(written).unwrap_or(Duration::ZERO);
    let now = Instant::now();
    Renewal::Ours(now.checked_sub(age).unwrap_or(now))
}

/// Waits until the channel says `value`; false if the manager went away.
async fn wait_for(channel: &mut watch::Receiver<bool>, value: bool) -> bool {
    channel.wait_for(|v| *v == value).await.is_ok()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{api::coordination::v1::LeaseSpec, apimachinery::pkg::apis::meta::v1::MicroTime};

    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: Option<i64>) -> Lease {
        let renew_time = renewed_secs_ago
            .map(|ago| MicroTime(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(ago)));
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time,
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn the_timings_leave_one_failed_renewal_and_stop_before_a_standby_can_take_over() {
        let config = LeaseConfig::for_duration("ns".into(), "l".into(), "me".into(), Duration::from_secs(15));
        // Renewed every 5 s (grace 10 s before expiry), given up 10 s after the last renewal.
        assert_eq!(config.duration - config.grace, Duration::from_secs(5));
        assert_eq!(config.renew_deadline(), Duration::from_secs(10));
        assert!(config.renew_deadline() >= 2 * (config.duration - config.grace));
        assert!(config.renew_deadline() + config.fence_poll() < config.duration);
    }

    #[test]
    fn a_renewal_is_placed_on_the_local_clock_by_its_age() {
        let Renewal::Ours(at) = renewal_of(&lease(Some("me"), Some(4)), "me") else { panic!("ours") };
        let age = Instant::now() - at;
        assert!(age >= Duration::from_secs(4) && age < Duration::from_secs(5), "{age:?}");
        // A renew time ahead of this clock counts as now, never as later.
        let Renewal::Ours(at) = renewal_of(&lease(Some("me"), Some(-30)), "me") else { panic!("ours") };
        assert!(at <= Instant::now());
    }

    #[test]
    fn another_holder_or_a_released_lease_is_told_apart() {
        assert_eq!(renewal_of(&lease(Some("other"), Some(1)), "me"), Renewal::Other("other".into()));
        assert_eq!(renewal_of(&lease(None, Some(1)), "me"), Renewal::Unknown);
        assert_eq!(renewal_of(&lease(Some(""), Some(1)), "me"), Renewal::Unknown);
        assert_eq!(renewal_of(&lease(Some("me"), None), "me"), Renewal::Unknown);
        assert_eq!(renewal_of(&Lease::default(), "me"), Renewal::Unknown);
    }
}
