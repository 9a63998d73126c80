//! The controller: kube-runtime's `Controller` on McpRollout, owning the Deployments and
//! Services it creates and watching their pods, behind a leader Lease.
//!
//! Modules: [`reconcile`] (observe → decide → report → apply), [`resources`] and [`names`]
//! (the objects, built purely), [`observe`] (pods → engine observations), [`traffic`] (the
//! routing interface and the plain-Service router), [`workers`] (probes and analysis beside the
//! loop), [`metrics`] and [`leader`].

pub mod error;
pub mod gateway;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod observe;
pub mod reconcile;
pub mod resources;
pub mod traffic;
pub mod workers;

use std::{future::Future, sync::Arc};

use futures::{StreamExt, channel::mpsc::UnboundedReceiver};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Service},
};
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        events::{Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tracing::{debug, warn};

use crate::api::{McpRollout, labels};

pub use error::Error;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub workers: Arc<workers::Workers>,
    pub metrics: Arc<metrics::Metrics>,
    pub router: traffic::PlainServiceRouter,
    pub gateway: gateway::GatewayRouter,
    /// What the operator owns, as its watches see it: a reconcile reads these instead of
    /// listing the API server each time.
    pub caches: Caches,
}

/// Caches of the rollouts' Deployments, pods and Services (those labelled with a rollout).
#[derive(Clone)]
pub struct Caches {
    pub deployments: Store<Deployment>,
    pub pods: Store<Pod>,
    pub services: Store<Service>,
}

impl Caches {
    /// Waits for every cache's first full list: before that an empty cache would read as
    /// "no Deployments", and a rollout as having lost its revisions.
    pub async fn ready(&self) -> Result<(), Error> {
        let ready = futures::future::try_join3(
            self.deployments.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.services.wait_until_ready(),
        );
        ready.await.map(|_| ()).map_err(|_| Error::CacheClosed)
    }

    /// The objects of one rollout in a cache.
    pub fn of_rollout<K>(store: &Store<K>, namespace: &str, rollout: &str) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone,
    {
        store
            .state()
            .iter()
            .filter(|o| {
                o.meta().namespace.as_deref() == Some(namespace)
                    && o.meta().labels.as_ref().and_then(|l| l.get(labels::ROLLOUT)).map(String::as_str)
                        == Some(rollout)
            })
            .map(|o| o.as_ref().clone())
            .collect()
    }
}

/// The client configuration: the given kubeconfig file, or else `KUBECONFIG`, `~/.kube/config`
/// or the in-cluster service account (the operator and `kubectl-mcprollout` both read it so).
pub async fn load_config(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    })
}

/// Which namespaces to watch.
#[derive(Clone, Debug)]
pub enum Scope {
    All,
    Namespace(String),
}

fn api<K>(client: &Client, scope: &Scope) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Scope::All => Api::all(client.clone()),
        Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
    }
}

/// Runs the controller until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    client: Client,
    scope: Scope,
    identity: String,
    metrics: Arc<metrics::Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (wake, woken): (_, UnboundedReceiver<ObjectRef<McpRollout>>) = futures::channel::mpsc::unbounded();
    let reporter = Reporter { controller: "mcp-rollout-operator".into(), instance: Some(identity) };
    let owned = watcher::Config::default().labels(labels::ROLLOUT);
    let (deployments, deployments_writer) = reflector::store();
    let (pods, pods_writer) = reflector::store();
    let (services, services_writer) = reflector::store();
    let deployment_events = watcher(api::<Deployment>(&client, &scope), owned.clone())
        .default_backoff()
        .reflect(deployments_writer)
        .touched_objects();
    let service_events = watcher(api::<Service>(&client, &scope), owned.clone())
        .default_backoff()
        .reflect(services_writer)
        .touched_objects();
    let pod_events = watcher(api::<Pod>(&client, &scope), owned.clone())
        .default_backoff()
        .reflect(pods_writer)
        .touched_objects();
    let context = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        workers: Arc::new(workers::Workers::new(wake, metrics.clone())),
        metrics,
        router: traffic::PlainServiceRouter::new(client.clone()),
        gateway: gateway::GatewayRouter::new(client.clone()),
        caches: Caches { deployments, pods, services },
    });
    Controller::new(api::<McpRollout>(&client, &scope), watcher::Config::default())
        .owns_stream(deployment_events)
        .owns_stream(service_events)
        .watches_stream(pod_events, |pod: Pod| {
            let rollout = pod.labels().get(labels::ROLLOUT)?.clone();
            Some(ObjectRef::new(&rollout).within(&pod.namespace()?))
        })
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(rollout = %object.name, "reconciled"),
                Err(e) => warn!(error = %e, "reconcile loop"),
            }
        })
        .await;
}
