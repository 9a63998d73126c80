//! The controller: kube-runtime's `Controller` on McpRollout, owning the Deployments and
//! Services it creates and watching their pods, behind a leader Lease.
//!
//! Modules: [`reconcile`] (observe → decide → report → apply), [`resources`] and [`names`]
//! (the objects, built purely), [`observe`] (pods → engine observations), [`traffic`] (the
//! routing interface and the plain-Service router), [`caches`] (the watches' stores, read once
//! they show the operator's own writes; their objects [`packed`], found by [`by_rollout`]),
//! [`workers`] (probes and analysis beside the loop), [`metrics`] and [`leader`].

mod backoff;
pub mod by_rollout;
pub mod caches;
pub mod destinations;
pub mod disruption;
pub mod error;
pub mod events;
mod feed;
pub mod gate_calls;
pub mod gateway;
pub mod history;
pub mod hooks;
pub mod leader;
pub mod mcp_router;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod observe;
mod own_writes;
pub mod packed;
pub mod pod_patches;
pub mod reconcile;
pub mod resources;
mod slim;
pub mod traffic;
pub mod workers;
pub mod workload;

use std::{future::Future, sync::Arc};

use futures::{StreamExt, TryStreamExt, channel::mpsc::UnboundedReceiver};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller, Predicate, WatchStreamExt, controller,
        events::Reporter,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use tracing::{debug, warn};

use crate::api::{McpRollout, labels};
use packed::Packed;

pub use error::Error;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// Kubernetes Events about each rollout.
    pub events: events::Events,
    pub workers: Arc<workers::Workers>,
    pub metrics: Arc<metrics::Metrics>,
    pub router: traffic::PlainServiceRouter,
    pub gateway: gateway::GatewayRouter,
    pub mcp_router: mcp_router::McpRouterRouting,
    /// For the MCP session router replicas' `/state`.
    pub http: reqwest::Client,
    /// Where Prometheus, probes, gate webhooks and notification receivers may be reached.
    pub destinations: Arc<destinations::Destinations>,
    /// Notifications, delivered beside the reconciles.
    pub notifier: notify::Notifier,
    /// The rollouts' objects as the watches see them, read once they show our writes.
    pub caches: caches::Caches,
    /// The McpRollouts as our last status write left them, while their watch lags.
    pub own_writes: own_writes::OwnWrites,
}

impl Context {
    /// Drops everything kept for a rollout that is gone: its jobs' results, writes awaited,
    /// metric series and events.
    pub fn forget(&self, key: &workers::RolloutKey) {
        self.workers.forget(key);
        self.caches.forget(key);
        self.metrics.forget(&key.0, &key.1);
        self.events.forget(key);
        self.own_writes.forget(key);
    }
}

/// The operator's own settings (its flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The MCP session router's image when a rollout names none (the operator's own image
    /// carries the router).
    pub router_image: String,
    /// Networks Prometheus and probe targets must be in; `None`: the cluster's own Service
    /// and pod networks.
    pub allowed_destinations: Option<Vec<ipnet::IpNet>>,
    /// Reconciles running at once (`RECONCILE_CONCURRENCY` unless the flag says otherwise).
    pub concurrency: u16,
    /// Receivers told about rollouts that name none.
    pub default_receivers: notify::Defaults,
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

/// A watch of the objects labelled with a rollout, feeding a store before it passes each
/// object on to wake its rollout; reconciles read the store (see `caches`). What is never read
/// is dropped (`slim`), and the rest kept as JSON (`packed`), before it is stored; a change to
/// nothing kept wakes nobody (`feed`).
fn cached_watch<K>(
    client: &Client,
    scope: &Scope,
    slim: fn(&mut K),
    key_of: by_rollout::KeyOf,
) -> (caches::Indexed<K>, impl futures::Stream<Item = Result<Packed<K>, watcher::Error>> + Send + 'static)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let index = by_rollout::ByRollout::new(key_of);
    let mut feed = feed::Feed::new(writer, index.clone());
    let events = watcher(api::<K>(client, scope), watcher::Config::default().labels(labels::ROLLOUT))
        .default_backoff()
        .modify(slim)
        .map(|event| event.and_then(packed::pack_event))
        .try_filter(move |event| std::future::ready(feed.take(event)))
        .touched_objects();
    (caches::Indexed { store, index }, events)
}

/// What of an McpRollout, changed, wakes it: its spec (generation), the requests and labels
/// people put on it, its finalizers and its deletion — not its status. Most status changes are
/// this operator's own writes: each woke the rollout again at once for a reconcile that
/// decided from what it had just decided (a quarter of a wave's reconciles at 300 rollouts).
/// What a reconcile has to come back for it says itself (its requeue, and the workers').
fn rollout_changed(rollout: &McpRollout) -> Option<u64> {
    use kube::runtime::predicates;
    let deleting = |r: &McpRollout| r.metadata.deletion_timestamp.as_ref().map(|_| 1);
    predicates::generation
        .combine(predicates::annotations)
        .combine(predicates::labels)
        .combine(predicates::finalizers)
        .combine(deleting)
        .hash_property(rollout)
}

/// How long a new leader's first list of the McpRollouts may take. A list the API server
/// accepts and never answers (seen once while etcd came back from a restart: no answer for
/// ~5 min, the client's read timeout) would leave the leader holding its Lease and doing
/// nothing; as controller-runtime's cache sync timeout does, the process exits instead and a
/// fresh one lists again.
const FIRST_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Triggers for one rollout within this long of each other make one reconcile, after the last
/// (trailing edge): a rollout step changes its Deployments, their pods and its status within
/// milliseconds, each a watch event. Short, because the scheduler keeps postponing while
/// events keep coming.
const RECONCILE_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(100);

/// Reconciles running at once, across all rollouts (one rollout never has two). Unbounded, a
/// burst of a thousand rollouts changing at once would send all their writes to the API server
/// together. More does not help where the API server is what is busy: with 64 instead of 16, a
/// wave of 1,000 on the 2-core bench took 430 s instead of 339 and a breach rolled them back
/// no faster (48.0 s against 47.2); timed on the EndpointSlices, 210.1 s against 196.3 (the
/// controller manager and the fake kubelet fell further behind). `--max-concurrent-reconciles`
/// sets another.
pub const RECONCILE_CONCURRENCY: u16 = 16;

/// The McpRollouts were not listed in time after this replica began leading.
#[derive(Debug, thiserror::Error)]
#[error(
    "the McpRollouts were not listed within {0:?} of leading (is the API server recovering?): exiting, so that a \
     fresh process lists them"
)]
pub struct NotListed(pub std::time::Duration);

/// Runs the controller until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    client: Client,
    scope: Scope,
    identity: String,
    settings: Settings,
    metrics: Arc<metrics::Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), NotListed> {
    let (wake, woken): (_, UnboundedReceiver<ObjectRef<McpRollout>>) = futures::channel::mpsc::unbounded();
    let reporter = Reporter { controller: "mcp-rollout-operator".into(), instance: Some(identity) };
    let destinations =
        Arc::new(destinations::Destinations::new(client.clone(), settings.allowed_destinations));
    let notifier = notify::Notifier::start(
        client.clone(),
        destinations.clone(),
        metrics.clone(),
        settings.default_receivers,
    );
    use by_rollout::{rollout_label, service_name};
    let (deployments, deployment_events) =
        cached_watch::<Deployment>(&client, &scope, slim::deployment, rollout_label);
    let (pods, pod_events) = cached_watch::<Pod>(&client, &scope, slim::pod, rollout_label);
    let (services, service_events) = cached_watch::<Service>(&client, &scope, slim::object, rollout_label);
    let (budgets, budget_events) =
        cached_watch::<PodDisruptionBudget>(&client, &scope, slim::object, rollout_label);
    // The EndpointSlice controller copies a Service's labels onto its slices.
    let (slices, slice_events) = cached_watch::<EndpointSlice>(&client, &scope, slim::object, service_name);
    let stores = caches::Stores { deployments, pods, services, budgets, slices };
    let context = Arc::new(Context {
        client: client.clone(),
        events: events::Events::new(client.clone(), reporter),
        workers: Arc::new(workers::Workers::new(wake, metrics.clone())),
        metrics,
        router: traffic::PlainServiceRouter::new(client.clone()),
        gateway: gateway::GatewayRouter::new(client.clone()),
        mcp_router: mcp_router::McpRouterRouting::new(client.clone(), settings.router_image),
        http: reqwest::Client::new(),
        destinations,
        notifier,
        caches: caches::Caches::new(stores),
        own_writes: Default::default(),
    });
    let forgetting = context.clone();
    // The McpRollouts' own watch and store, as `Controller::new` makes them, slimmed like the
    // others (a rollout applied with `kubectl apply` carries its whole spec twice).
    let (listed, rollouts_writer) = reflector::store();
    let rollout_events = watcher(api::<McpRollout>(&client, &scope), watcher::Config::default())
        .default_backoff()
        .modify(slim::object::<McpRollout>)
        .reflect(rollouts_writer)
        .applied_objects()
        .predicate_filter(rollout_changed, Default::default());
    let controller = Controller::for_stream(rollout_events, listed.clone());
    let running = controller
        .with_config(
            controller::Config::default().debounce(RECONCILE_DEBOUNCE).concurrency(settings.concurrency),
        )
        .owns_stream(deployment_events)
        .owns_stream(service_events)
        .watches_stream(pod_events, |pod: Packed<Pod>| {
            let rollout = pod.labels().get(labels::ROLLOUT)?.clone();
            Some(ObjectRef::new(&rollout).within(&pod.namespace()?))
        })
        // What kube-proxy routes to changes the weight in force and whether stable serves,
        // and nothing else would wake the rollout when it does.
        .watches_stream(slice_events, |slice: Packed<EndpointSlice>| {
            let rollout = slice.labels().get(labels::ROLLOUT)?.clone();
            Some(ObjectRef::new(&rollout).within(&slice.namespace()?))
        })
        // Budgets change with every pod of a draining revision: read, never a trigger.
        .watches_stream(budget_events, |_: Packed<PodDisruptionBudget>| None::<ObjectRef<McpRollout>>)
        // The MCP session router's pods: a replica becoming ready (or leaving) changes what
        // is in force.
        .watches(
            api::<Pod>(&client, &scope),
            watcher::Config::default().labels(labels::ROUTER),
            |pod: Pod| {
                let rollout = pod.labels().get(labels::ROUTER)?.clone();
                Some(ObjectRef::new(&rollout).within(&pod.namespace()?))
            },
        )
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| {
            let context = forgetting.clone();
            async move {
                match result {
                    Ok((object, _)) => debug!(rollout = %object.name, "reconciled"),
                    // A reconcile scheduled for a rollout no longer in the watch's store: every
                    // reconcile schedules the next, so each deleted rollout comes by here.
                    Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
                        forget_if_deleted(&context, &object).await
                    }
                    Err(e) => warn!(error = %e, "reconcile loop"),
                }
            }
        });
    let first_list = async {
        match tokio::time::timeout(FIRST_LIST_TIMEOUT, listed.wait_until_ready()).await {
            Ok(_) => std::future::pending().await,
            Err(_) => NotListed(FIRST_LIST_TIMEOUT),
        }
    };
    tokio::select! {
        () = running => Ok(()),
        not_listed = first_list => Err(not_listed),
    }
}

/// Drops the state and metric series of a rollout the API server says is gone (the store can
/// also lag behind one just created: that one is kept).
async fn forget_if_deleted(context: &Context, object: &ObjectRef<kube::core::DynamicObject>) {
    let Some(namespace) = object.namespace.clone() else { return };
    let api: Api<McpRollout> = Api::namespaced(context.client.clone(), &namespace);
    match api.get_opt(&object.name).await {
        Ok(None) => {
            context.forget(&(namespace.clone(), object.name.clone()));
            debug!(rollout = %object.name, %namespace, "deleted: its state and series dropped");
        }
        Ok(Some(_)) => {}
        Err(e) => {
            warn!(rollout = %object.name, %namespace, error = %e, "cannot tell whether the rollout is gone")
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rollout(change: serde_json::Value) -> McpRollout {
        let mut value = json!({
            "apiVersion": "mcprollout.dev/v1alpha1", "kind": "McpRollout",
            "metadata": {"name": "docs", "namespace": "agents", "uid": "u-1", "generation": 3,
                         "finalizers": ["mcprollout.dev/cleanup"]},
            "spec": {"template": {"spec": {"containers": [{"name": "s", "image": "mcp-fixture:v1"}]}},
                     "strategy": {"canary": {"steps": [{"setWeight": 50}]}}},
            "status": {"observedGeneration": 3, "phase": "Healthy"},
        });
        json_patch::merge(&mut value, &change);
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_rollout_is_woken_by_what_people_change_not_by_its_status() {
        let at_rest = rollout_changed(&rollout(json!({})));
        assert!(at_rest.is_some(), "an object with no such hash would always pass");
        let own_write = rollout(json!({"status": {"phase": "Progressing", "desiredWeight": 5}}));
        assert_eq!(rollout_changed(&own_write), at_rest, "its status written: nothing to decide again");
        for (what, change) in [
            ("a new spec", json!({"metadata": {"generation": 4}})),
            ("a request", json!({"metadata": {"annotations": {"mcprollout.dev/request": "promote@1"}}})),
            ("a label", json!({"metadata": {"labels": {"team": "search"}}})),
            ("a finalizer gone", json!({"metadata": {"finalizers": null}})),
            ("a deletion", json!({"metadata": {"deletionTimestamp": "2026-12-06T12:00:00Z"}})),
        ] {
            assert_ne!(rollout_changed(&rollout(change)), at_rest, "{what} wakes it");
        }
    }
}
