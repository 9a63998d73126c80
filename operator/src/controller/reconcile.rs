//! One reconcile: observe → decide (the engine) → report → apply. Level-triggered and
//! idempotent: it reads everything it needs each time, and writes only differences. Every
//! decision is the engine's; what the reconciler sees that the engine cannot (a missing
//! Secret, a refused query, a route that cannot be weighted, a name another controller holds,
//! writes the API server keeps refusing) goes to it as an observation.
//!
//! Status is written before anything is applied. If the operator dies in between, its next
//! incarnation re-derives the same plan from the stored status and applies it; applying first
//! could leave traffic ahead of a status that then asks for it back (a flap).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::{ControllerRevision, Deployment},
    core::v1::{ConfigMap, Pod, Secret, Service},
    discovery::v1::EndpointSlice,
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{controller::Action, events::Event as KubeEvent, events::EventType as KubeEventType},
};
use serde_json::json;
use sha2::Digest;
use tracing::{debug, info, warn};

use super::{
    Context, backoff, caches,
    destinations::Pinned,
    disruption,
    error::Error,
    gate_calls::GateJob,
    gateway, history, hooks, mcp_router,
    metrics::{ReasonLabels, RolloutLabels},
    names::{self, FIELD_MANAGER},
    notify, observe,
    resources::{self, Tracks},
    traffic::{RouteRequest, Takeover, TrafficRouter},
    workers::{AnalysisJob, Baseline, MeasureJob, ProbeJob, ProbeWake, RolloutKey},
    workload,
};
use crate::{
    analysis::{self, Prometheus, Queries, Subject},
    api::{
        McpRollout, McpRolloutStatus, Phase, REQUEST_ANNOTATION, Scheme, SecretKeyRef, StepProbe,
        StrategyRef, TlsSecretRef, Transport, Verdict, labels, revision_of,
    },
    engine::{self, Decision, EventType, Input, Observed, ProbeRequest, Problem, WorkloadAction},
    probe::{ProbeConfig, TransportChoice},
};

/// Requeue when the engine names no sooner moment.
const DEFAULT_REQUEUE: Duration = Duration::from_secs(30);
/// How soon a rollout stalled on a problem outside it looks again (Secrets are not watched).
const STALLED_REQUEUE: Duration = Duration::from_secs(10);
/// Consecutive failed writes after which a reconcile's API errors become a Stalled condition.
const FAILED_WRITES_TO_STALL: u32 = 3;

/// Retries of a failing reconcile: 0.5-1 s after the first failure, twice that after each
/// further one in a row, at most 30 s (jittered, so that rollouts failing for one reason — the
/// API server away — come back spread out, not in step).
const ERROR_BACKOFF_BASE: Duration = Duration::from_secs(1);
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Called by kube-runtime's Controller inside its "reconciling object" span, which is entered
/// for this call only, not while the future runs: logged here (at debug), a reconcile's line
/// carries why it runs (`object.reason`: which object's change, a requeue, a wake).
pub fn reconcile(
    rollout: Arc<McpRollout>,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = Result<Action, Error>> + Send {
    debug!("reconcile");
    reconcile_timed(rollout, ctx)
}

async fn reconcile_timed(rollout: Arc<McpRollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = rollout.namespace().map(|namespace| (namespace, rollout.name_any()));
    // Our own last status write, when the watch does not show it yet.
    let rollout = match &key {
        Some(key) => ctx.own_writes.newest(key, rollout),
        None => rollout,
    };
    let result = reconcile_inner(&rollout, &ctx).await;
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    if result.is_ok()
        && let Some(key) = key
    {
        ctx.workers.record_reconciled(&key);
        ctx.events.drop_if_idle(&key, Instant::now());
    }
    result
}

pub fn error_policy(rollout: Arc<McpRollout>, error: &Error, ctx: Arc<Context>) -> Action {
    let reason = match error {
        Error::Kube(_) => "KubernetesApi",
        Error::MissingField(_) => "MissingField",
        Error::Serialize { .. } => "Serialize",
    };
    ctx.metrics.count_reconcile_error(&ReasonLabels {
        namespace: rollout.namespace().unwrap_or_default(),
        rollout: rollout.name_any(),
        reason: reason.into(),
    });
    let in_a_row =
        ctx.workers.record_failed_reconcile(&(rollout.namespace().unwrap_or_default(), rollout.name_any()));
    let retry = backoff::delay(in_a_row.saturating_sub(1), ERROR_BACKOFF_BASE, ERROR_BACKOFF_MAX);
    warn!(
        rollout = %rollout.name_any(), namespace = ?rollout.namespace(), %error, failures_in_a_row = in_a_row,
        retry_in = ?retry, "reconcile failed; retrying"
    );
    Action::requeue(retry)
}

/// Everything one reconcile read: the rollout's own objects (only those it controls), the
/// Secrets it refers to, its route, and the engine's observations built from them.
struct World {
    namespace: String,
    name: String,
    key: RolloutKey,
    /// Deployments whose controller is this McpRollout.
    owned: Vec<Deployment>,
    /// Pods of those Deployments' revisions.
    pods: Vec<Pod>,
    services: Vec<Service>,
    /// The Service of the rollout's name that a migration takes over (`spec.workloadRef`):
    /// somebody else made it, nobody controls it, and its clients are the workload's.
    service_to_take_over: Option<Service>,
    /// That Service cannot be taken over as it is (a problem says why): it is left alone.
    takeover_refused: bool,
    /// PodDisruptionBudgets carrying this rollout's label (those of draining revisions).
    budgets: Vec<PodDisruptionBudget>,
    route: Option<serde_json::Value>,
    /// The MCP session router's configuration as last written, if it routes the traffic.
    router_config: Option<crate::router::config::RoutingConfig>,
    secrets: Secrets,
    /// The Prometheus host's checked addresses; `None` when the rollout has no analysis or
    /// its address is refused (a problem says so).
    prometheus: Option<Pinned>,
    /// Pods whose address the destination list refuses: never probed.
    refused_pods: BTreeSet<String>,
    /// Each gate webhook's checked addresses (a refused one is a problem, and not here).
    gate_targets: BTreeMap<String, Pinned>,
    observed: Observed,
}

async fn reconcile_inner(rollout: &McpRollout, ctx: &Context) -> Result<Action, Error> {
    if rollout.metadata.deletion_timestamp.is_some() {
        return finalize(ctx, rollout).await;
    }
    ensure_finalizer(ctx, rollout).await?;
    if let Some(action) = reconcile_from(rollout, ctx).await? {
        return Ok(action);
    }
    // The McpRollout changed since it was read (a status newer than the one decided from):
    // decide again from the object itself, not from the watch's copy, which can lag by tens of
    // seconds (seen: after an API server restart the controller's watches backed off, every
    // reconcile decided from the same stale copy and was refused, and the canary, never
    // probed meanwhile, ran into its progress deadline).
    info!(rollout = %rollout.name_any(), "the McpRollout changed since it was read; deciding again from a fresh read");
    let namespace = rollout.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<McpRollout> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(fresh) = api.get_opt(&rollout.name_any()).await? else { return Ok(Action::await_change()) };
    if fresh.metadata.deletion_timestamp.is_none()
        && let Some(action) = reconcile_from(&fresh, ctx).await?
    {
        return Ok(action);
    }
    Ok(Action::requeue(Duration::from_millis(500)))
}

/// Observe, decide, report and apply from one reading of the McpRollout; `None` when the
/// status write found the object changed since (nothing applied from a stale reading).
async fn reconcile_from(rollout: &McpRollout, ctx: &Context) -> Result<Option<Action>, Error> {
    let world = observe(ctx, rollout).await?;
    let decision = decide(rollout, &world);
    if !report(ctx, rollout, &world, &decision).await? {
        return Ok(None);
    }
    // What is known of revisions gone (no Deployment, not in the status) goes with them.
    let live: BTreeSet<String> = world
        .owned
        .iter()
        .filter_map(revision_of_deployment)
        .chain(decision.status.stable_revision.iter().cloned())
        .chain(decision.status.canary_revision.iter().cloned())
        .chain(decision.status.drains.iter().map(|d| d.revision.clone()))
        .collect();
    ctx.workers.retain_revisions(&world.key, &live);
    // The jobs first: a write the API server refuses must not starve probes and analysis.
    start_jobs(ctx, rollout, &world, &decision);
    let applied = apply(ctx, rollout, &world, &decision).await;
    ctx.workers.record_writes(&world.key, applied.as_ref().err().map(ToString::to_string));
    applied?;
    let stalled = decision.status.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True");
    let requeue =
        if stalled { STALLED_REQUEUE } else { decision.plan.requeue_after.unwrap_or(DEFAULT_REQUEUE) };
    Ok(Some(Action::requeue(requeue)))
}

/// A deleted McpRollout: owner references hand every Deployment and Service to the garbage
/// collector; a Gateway-routed rollout first leaves its route sending everything to stable.
async fn finalize(ctx: &Context, rollout: &McpRollout) -> Result<Action, Error> {
    let namespace = rollout.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = rollout.name_any();
    if rollout.finalizers().iter().any(|f| f == gateway::FINALIZER) {
        if let Some(routing) = rollout.spec.traffic_routing.as_ref().and_then(|t| t.gateway_api.as_ref()) {
            ctx.gateway.set_weights(rollout, routing, 0, None).await?;
            ctx.gateway.release(rollout, routing).await?;
            info!(rollout = %name, "route restored to the stable backend and released");
        }
        remove_finalizer(ctx, rollout).await?;
    }
    ctx.forget(&(namespace, name));
    Ok(Action::await_change())
}

/// A finalizer only where there is a route to restore: the kube-runtime helper would put one
/// on every McpRollout, and then none could be deleted without the operator running.
async fn ensure_finalizer(ctx: &Context, rollout: &McpRollout) -> Result<(), Error> {
    let routed = rollout.spec.traffic_routing.as_ref().is_some_and(|t| t.gateway_api.is_some());
    match (routed, rollout.finalizers().iter().any(|f| f == gateway::FINALIZER)) {
        (true, false) => add_finalizer(ctx, rollout).await,
        (false, true) => remove_finalizer(ctx, rollout).await,
        _ => Ok(()),
    }
}

/// Whether `object`'s controller is this McpRollout (its UID, not a label: a copy with our
/// labels is somebody else's).
fn controlled_by(meta: &kube::api::ObjectMeta, rollout: &McpRollout) -> bool {
    let uid = rollout.metadata.uid.as_deref();
    meta.owner_references.iter().flatten().any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// The rollout's Deployments, pods, Services, budgets and its Service's EndpointSlices: from
/// the watches' stores once they show this operator's writes, else listed. A migrating
/// rollout always lists: the Service it takes over is not yet labelled as ours, so its
/// EndpointSlices (which say whether the old Deployment still gets traffic) are in no store.
async fn read_objects(
    ctx: &Context,
    rollout: &McpRollout,
    key: &RolloutKey,
) -> Result<caches::Snapshot, Error> {
    let miss = if rollout.spec.workload_ref.is_some() {
        "migration"
    } else {
        match ctx.caches.read(key).await {
            Ok(snapshot) => {
                ctx.metrics.count_read("cache");
                return Ok(snapshot);
            }
            Err(miss) => miss.as_str(),
        }
    };
    ctx.metrics.count_read(miss);
    let (namespace, name) = key;
    let selector = ListParams::default().labels(&format!("{}={name}", labels::ROLLOUT));
    let slices = ListParams::default().labels(&format!("kubernetes.io/service-name={name}"));
    Ok(caches::Snapshot {
        deployments: Api::<Deployment>::namespaced(ctx.client.clone(), namespace)
            .list(&selector)
            .await?
            .items,
        pods: Api::<Pod>::namespaced(ctx.client.clone(), namespace).list(&selector).await?.items,
        services: Api::<Service>::namespaced(ctx.client.clone(), namespace).list(&selector).await?.items,
        budgets: Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), namespace)
            .list(&selector)
            .await?
            .items,
        slices: Api::<EndpointSlice>::namespaced(ctx.client.clone(), namespace).list(&slices).await?.items,
    })
}

async fn observe(ctx: &Context, rollout: &McpRollout) -> Result<World, Error> {
    let namespace = rollout.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let name = rollout.name_any();
    let key: RolloutKey = (namespace.clone(), name.clone());
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let services_api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let read = read_objects(ctx, rollout, &key).await?;
    let mut owned = Vec::new();
    for deployment in read.deployments {
        if controlled_by(&deployment.metadata, rollout) {
            owned.push(deployment);
        } else if let Some(adopted) = adopt_orphan(&deployments, rollout, &deployment).await? {
            ctx.caches.wrote(&key, caches::Written::of(&adopted, false).into_iter().collect());
            owned.push(adopted);
        }
    }
    let known: Vec<String> = owned.iter().filter_map(revision_of_deployment).collect();
    let pods: Vec<Pod> = read
        .pods
        .into_iter()
        .filter(|p| observe::revision_of(p).is_some_and(|r| known.iter().any(|k| k == r)))
        .collect();
    let services = read.services;
    let budgets = read.budgets;
    let endpoints = observe::ready_endpoints(&read.slices);

    let mut problems = Vec::new();
    let (mut workload_observed, mut service_to_take_over, mut takeover_refused) = (None, None, false);
    if let Some(reference) = &rollout.spec.workload_ref {
        workload_observed = Some(workload::observe(&deployments, &pods_api, reference, &endpoints).await?);
        if let Some((service, problem)) = workload::service_to_take_over(&services_api, rollout).await? {
            takeover_refused = problem.is_some();
            service_to_take_over = Some(service);
            problems.extend(problem);
        }
    }
    let secrets = read_secrets(ctx, &namespace, rollout).await?;
    if let Some(r) = secrets.missing.first() {
        problems.push(Problem::new(
            "SecretNotFound",
            format!("Secret {namespace}/{} has no key {} (referenced by the McpRollout)", r.name, r.key),
        ));
    }
    let results = ctx.workers.results(&key);
    let before = rollout.status.clone().unwrap_or_default();
    let latest_checks: Vec<(String, Option<String>)> = match &results.analysis {
        Some(report) => report.checks.iter().map(|c| (c.name.clone(), c.message.clone())).collect(),
        None => before.analysis.iter().map(|c| (c.name.clone(), c.message.clone())).collect(),
    };
    if let Some((check, message)) =
        latest_checks.into_iter().find(|(_, m)| m.as_deref().is_some_and(analysis::is_rejected_query))
    {
        problems.push(Problem::new(
            "InvalidQuery",
            format!("analysis check {check}: {}", message.unwrap_or_default()),
        ));
    }
    // A revision the status still needs (stable, the canary, a drain) whose Deployment is gone
    // and whose template is not the spec's: it cannot be brought back.
    let desired = revision_of(&rollout.spec.template);
    let needed = [&before.stable_revision, &before.canary_revision]
        .into_iter()
        .flatten()
        .cloned()
        .chain(before.drains.iter().map(|d| d.revision.clone()));
    if let Some(lost) = needed.into_iter().find(|r| *r != desired && !known.contains(r)) {
        problems.push(Problem::new(
            "RevisionLost",
            format!(
                "the Deployment of revision {lost} was deleted and its pod template is gone; \
                 set spec.template back to it, or to a new revision, to go on"
            ),
        ));
    }
    let mut route = None;
    let mut route_weight = None;
    if let Some(routing) = rollout.spec.traffic_routing.as_ref().and_then(|t| t.gateway_api.as_ref()) {
        // A route the rollout may not touch is not even read.
        if let Some(p) = ctx.gateway.refusal(rollout, routing).await? {
            problems.push(Problem::new(p.reason, p.message));
        } else {
            let reference =
                format!("{}/{}", gateway::route_namespace(rollout, routing), routing.http_route_ref.name);
            match ctx.gateway.get(rollout, routing).await {
                Ok(read) => {
                    route = read;
                    let owner = gateway::owner(rollout);
                    let persistence = routing.session_persistence.as_ref();
                    match gateway::check(route.as_ref(), &owner, &reference, persistence) {
                        Ok(()) => {
                            route_weight = route.as_ref().and_then(|r| gateway::effective_weight(r, &owner))
                        }
                        Err(p) => problems.push(Problem::new(p.reason, p.message)),
                    }
                }
                // Not an error to retry: the operator's RBAC lacks the grant until reinstalled.
                Err(e) if gateway::is_forbidden(&e) => {
                    let p = gateway::forbidden(&format!("HTTPRoute {reference}"));
                    problems.push(Problem::new(p.reason, p.message));
                }
                Err(e) => return Err(e),
            }
        }
    }
    let (router, router_config) =
        if rollout.spec.traffic_routing.as_ref().is_some_and(|t| t.mcp_router.is_some()) {
            // Listed, not read by name: the operator needs no `get` on ConfigMaps.
            let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
            let config = maps
                .list(&ListParams::default().labels(&format!("{}={name}", labels::ROUTER)))
                .await?
                .items
                .into_iter()
                .find(|m| {
                    m.metadata.name.as_deref() == Some(names::router(&name).as_str())
                        && controlled_by(&m.metadata, rollout)
                })
                .and_then(|m| mcp_router::config_of(&m));
            (Some(mcp_router::observe(&ctx.client, &ctx.http, rollout).await?), config)
        } else {
            (None, None)
        };
    // Where the operator's own requests would go, checked before any is made.
    let mut prometheus = None;
    if let Some(analysis) = &rollout.spec.analysis {
        match ctx.destinations.prometheus(&analysis.prometheus.address).await {
            // Its TLS material (read from Secrets) is checked by building the client here, so
            // a bad bundle or key is a condition, not analyses that never start.
            Ok(pinned) => match prometheus_for(rollout, &secrets.values, &pinned) {
                Ok(_) => prometheus = Some(pinned),
                Err(e) if secrets.missing.is_empty() => {
                    problems.push(Problem::new("PrometheusClientInvalid", e.to_string()));
                }
                Err(_) => {} // SecretNotFound says why
            },
            Err(p) => problems.push(p),
        }
    }
    // Gate webhooks are only called while a revision rolls out: checked then.
    let mut gate_targets = BTreeMap::new();
    if before.canary_revision.is_some() {
        for gate in &rollout.spec.gates {
            let Some(webhook) = &gate.webhook else { continue };
            let what = format!("the webhook of gate {} ({})", gate.name, hooks::redacted(&webhook.url));
            let field = format!("gates[{}].webhook.url", gate.name);
            match ctx.destinations.url(&what, &field, &webhook.url).await {
                Ok(pinned) => {
                    gate_targets.insert(gate.name.clone(), pinned);
                }
                Err(p) => problems.push(p),
            }
        }
    }
    let mut refused_pods = BTreeSet::new();
    for pod in &pods {
        if let Err(p) = ctx.destinations.probe_target(pod).await {
            if refused_pods.is_empty() {
                problems.push(p);
            }
            refused_pods.insert(pod.name_any());
        }
    }
    problems.extend(ctx.workers.write_problems(&key, FAILED_WRITES_TO_STALL));
    let observed = Observed {
        revisions: observe::revisions(&pods, &known, &endpoints),
        probes: results.probes,
        analysis: results.analysis,
        session_duration: results.session_duration,
        active_sessions: results.active_sessions,
        request: rollout.annotations().get(REQUEST_ANNOTATION).cloned(),
        problems,
        route_weight,
        router,
        workload: workload_observed,
        gate_answers: results.gate_answers,
    };
    Ok(World {
        namespace,
        name,
        key,
        owned,
        pods,
        services,
        service_to_take_over,
        takeover_refused,
        budgets,
        route,
        router_config,
        secrets,
        prometheus,
        refused_pods,
        gate_targets,
        observed,
    })
}

/// Takes in an orphaned Deployment of this rollout (our labels and name, no controller at all:
/// left by `kubectl delete --cascade=orphan`, or a status restored without its objects), as a
/// ReplicaSet adopts its orphaned pods: our controller reference is added by a JSON patch that
/// first tests the object is unchanged, and nothing else is touched. One with a controller of
/// its own is somebody else's: never adopted.
async fn adopt_orphan(
    api: &Api<Deployment>,
    rollout: &McpRollout,
    deployment: &Deployment,
) -> Result<Option<Deployment>, Error> {
    let has_controller =
        deployment.metadata.owner_references.iter().flatten().any(|o| o.controller == Some(true));
    let ours_by_name = revision_of_deployment(deployment).is_some_and(|r| {
        deployment.metadata.name.as_deref() == Some(names::deployment(&rollout.name_any(), &r).as_str())
    });
    let (Some(owner), Some(version)) =
        (rollout.controller_owner_ref(&()), &deployment.metadata.resource_version)
    else {
        return Ok(None);
    };
    if has_controller || !ours_by_name {
        return Ok(None);
    }
    let owner =
        serde_json::to_value(owner).map_err(|source| Error::Serialize { what: "owner reference", source })?;
    let add = match deployment.metadata.owner_references {
        Some(_) => json!({"op": "add", "path": "/metadata/ownerReferences/-", "value": owner}),
        None => json!({"op": "add", "path": "/metadata/ownerReferences", "value": [owner]}),
    };
    let ops = json!([{"op": "test", "path": "/metadata/resourceVersion", "value": version}, add]);
    let patch: json_patch::Patch =
        serde_json::from_value(ops).map_err(|source| Error::Serialize { what: "adoption patch", source })?;
    let name = deployment.name_any();
    match api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(adopted) => {
            info!(rollout = %rollout.name_any(), deployment = %name, "adopted an orphaned Deployment of this rollout");
            Ok(Some(adopted))
        }
        // Changed since it was listed: looked at again next time.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 422 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn revision_of_deployment(d: &Deployment) -> Option<String> {
    d.metadata.labels.as_ref().and_then(|l| l.get(labels::REVISION)).cloned()
}

fn decide(rollout: &McpRollout, world: &World) -> Decision {
    let mut decision = engine::decide(&Input {
        spec: &rollout.spec,
        generation: rollout.metadata.generation,
        status: &rollout.status.clone().unwrap_or_default(),
        observed: &world.observed,
        now: Timestamp::now(),
    });
    // The `scale` subresource's view (observation, not decision): the stable revision's pods,
    // and the selector of every pod of the rollout.
    let status = &mut decision.status;
    status.replicas =
        status.stable_revision.as_deref().map(|s| world.observed.revision(s).map_or(0, |r| r.pods));
    status.selector = Some(format!("{}={}", labels::ROLLOUT, world.name));
    decision
}

/// Status (when it changed, with the object's resourceVersion as a precondition), metrics
/// and events. `false` when the McpRollout changed since it was read: nothing was written.
async fn report(
    ctx: &Context,
    rollout: &McpRollout,
    world: &World,
    decision: &Decision,
) -> Result<bool, Error> {
    let before = rollout.status.clone().unwrap_or_default();
    let status = &decision.status;
    if rollout.status.as_ref() != Some(status) && !write_status(ctx, rollout, status).await? {
        return Ok(false);
    }
    ctx.metrics.observe_status(&world.namespace, &world.name, status, &world.observed.revisions);
    count_transitions(ctx, &world.key, &before, status);
    let mut events = decision.plan.events.clone();
    events.extend(verdict_changes(&before, status));
    publish(ctx, rollout, &events);
    ctx.notifier.notify(rollout, &notify::notices(&before, status, &events));
    Ok(true)
}

/// Starts the probes and analysis the engine asked for, and the drain measurements. Without
/// its Secrets no probe or query can be built; any other problem still lets the jobs run, so a
/// fixed query or a returning revision is seen.
fn start_jobs(ctx: &Context, rollout: &McpRollout, world: &World, decision: &Decision) {
    let (status, plan, key) = (&decision.status, &decision.plan, &world.key);
    if !world.secrets.missing.is_empty() {
        return;
    }
    let probed: Vec<&Pod> =
        world.pods.iter().filter(|p| !world.refused_pods.contains(&p.name_any())).collect();
    for request in &plan.probes {
        if let Some(job) = probe_job(rollout, status, &probed, request, &world.secrets.values) {
            ctx.workers.spawn_probe(key.clone(), job);
        }
    }
    for call in &plan.gate_calls {
        if let Some(job) = gate_job(rollout, world, status, call) {
            ctx.workers.spawn_gate_call(key.clone(), job);
        }
    }
    let Some(spec) = &rollout.spec.analysis else { return };
    let Some(pinned) = &world.prometheus else { return }; // refused: the problem says why
    let prometheus = match prometheus_for(rollout, &world.secrets.values, pinned) {
        Ok(p) => p,
        Err(e) => {
            warn!(rollout = %world.name, error = %e, "cannot reach Prometheus");
            return;
        }
    };
    if let Some(request) = &plan.analysis {
        ctx.workers.spawn_analysis(
            key.clone(),
            AnalysisJob {
                prometheus: prometheus.clone(),
                spec: spec.clone(),
                queries: Queries::for_spec(spec),
                subject: Subject {
                    namespace: world.namespace.clone(),
                    rollout: world.name.clone(),
                    stable: request.stable.clone(),
                    canary: request.canary.clone(),
                    max_error_rate_ratio: request.max_error_rate_ratio,
                    min_request_count: request.min_request_count,
                },
            },
        );
    }
    if status.canary_revision.is_some() || !status.drains.is_empty() {
        let revisions: Vec<String> =
            [&status.stable_revision, &status.canary_revision].into_iter().flatten().cloned().collect();
        ctx.workers.spawn_measure(
            key.clone(),
            MeasureJob {
                prometheus,
                drain: rollout.spec.drain.clone(),
                queries: Queries::for_spec(spec),
                scope: analysis::Scope { namespace: world.namespace.clone(), rollout: world.name.clone() },
                revisions,
                draining: status.drains.iter().map(|d| (d.revision.clone(), d.pods.clone())).collect(),
                every: spec.interval.as_std(),
            },
        );
    }
}

/// The webhook call of a gate the engine asked for, with the rollout's context; `None` when its
/// URL was refused (a problem says so) or the gate is gone from the spec.
fn gate_job(
    rollout: &McpRollout,
    world: &World,
    status: &McpRolloutStatus,
    call: &engine::GateCall,
) -> Option<GateJob> {
    let gate = rollout.spec.gates.iter().find(|g| g.name == call.gate)?;
    let webhook = gate.webhook.as_ref()?;
    let pinned = world.gate_targets.get(&gate.name)?;
    let token = webhook
        .token_secret_ref
        .as_ref()
        .and_then(lookup(&world.secrets.values))
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned());
    let images: Vec<&str> = rollout
        .spec
        .template
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .filter_map(|c| c.image.as_deref())
        .collect();
    let probe = status.probes.iter().find(|p| p.revision == call.revision);
    let context = json!({
        "kind": "GateRequest",
        "gate": call.gate,
        "point": call.point,
        "weight": call.weight,
        "rollout": {"namespace": world.namespace, "name": world.name, "uid": rollout.metadata.uid},
        "revision": call.revision,
        "stableRevision": status.stable_revision,
        "images": images,
        "schemaChange": probe.and_then(|p| p.schema_change),
        "probe": probe,
        "analysis": status.analysis,
    });
    Some(GateJob {
        call: call.clone(),
        url: webhook.url.clone(),
        pinned: pinned.addresses.clone(),
        token,
        timeout: webhook.timeout.as_std(),
        context,
    })
}

/// Makes the plan true: each revision's Deployment at its size, revisions the plan no longer
/// lists removed (only Deployments this McpRollout controls), the Services and the rotation or
/// the route. A name already taken by an object this McpRollout does not control is never
/// taken over: `create` fails with 409, which becomes a `NameConflict` problem.
async fn apply(ctx: &Context, rollout: &McpRollout, world: &World, decision: &Decision) -> Result<(), Error> {
    let writes = caches::Writes::default();
    let applied = apply_writing(ctx, rollout, world, decision, &writes).await;
    // Also the writes made before a refused one: the next reconcile must see them.
    ctx.caches.wrote(&world.key, writes.take());
    applied
}

async fn apply_writing(
    ctx: &Context,
    rollout: &McpRollout,
    world: &World,
    decision: &Decision,
    writes: &caches::Writes,
) -> Result<(), Error> {
    let (plan, status, name) = (&decision.plan, &decision.status, &world.name);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &world.namespace);
    let desired = revision_of(&rollout.spec.template);
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let mut conflicts = Vec::new();
    // Traffic first: a rollback's canary leaves rotation before anything else is written for it
    // (its drain marks, its budget), so that on a busy API server the writes that move
    // traffic are not queued behind bookkeeping. Nothing below needs the route applied first,
    // nor the route anything below: pods not yet created are routed by a later reconcile.
    let tracks = Tracks { stable: status.stable_revision.clone(), canary: status.canary_revision.clone() };
    // The workload's Service is taken over once the stable revision has pods in rotation:
    // pointed at them before, it would have no endpoint for a moment.
    let stable_serves = status
        .stable_revision
        .as_ref()
        .and_then(|s| world.observed.revision(s))
        .is_some_and(|r| r.ready_in_rotation > 0);
    let takeover = world
        .service_to_take_over
        .as_ref()
        .map(|service| Takeover { service, now: stable_serves && !world.takeover_refused });
    let request = RouteRequest {
        rollout,
        plan: &plan.revisions,
        tracks,
        pods: &world.pods,
        services: &world.services,
        route: world.route.as_ref(),
        status,
        router_config: world.router_config.as_ref(),
        takeover,
        writes,
    };
    let routing = rollout.spec.traffic_routing.as_ref();
    let routed = if routing.is_some_and(|t| t.gateway_api.is_some()) {
        ctx.gateway.route(&request).await
    } else if routing.is_some_and(|t| t.mcp_router.is_some()) {
        ctx.mcp_router.route(&request).await
    } else {
        ctx.router.route(&request).await
    };
    // A route the API server refuses does not hold back the revisions' Deployments, marks and
    // budgets below (a new revision is still created); its error is returned after them.
    let routed = routed.map(|routed| {
        conflicts.extend(routed.conflicts.iter().map(|s| format!("Service {s}")));
        if !routed.pods_added.is_empty() || !routed.pods_removed.is_empty() {
            info!(rollout = %name, added = ?routed.pods_added, removed = ?routed.pods_removed, "rotation changed");
        }
    });
    // Draining pods are marked and guarded before any Deployment shrinks: the ReplicaSet then
    // removes exactly them, and evictions wait for their drain. Marks and budgets do not
    // depend on each other: written together.
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &world.namespace);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &world.namespace);
    let (marked, budgets_applied) = tokio::join!(
        disruption::mark_pods(&pods_api, &plan.revisions, &world.pods, writes),
        disruption::apply_budgets(&budgets, rollout, &plan.revisions, &world.budgets, writes),
    );
    let marked = marked?;
    if !marked.is_empty() {
        info!(rollout = %name, pods = ?marked, "marked draining");
    }
    // A budget the API server refuses never holds back the rest (the drain itself does not
    // need it); its error is returned at the end, so it still counts as a refused write.
    for revision in &plan.revisions {
        let deployment_name = names::deployment(name, &revision.revision);
        let current =
            world.owned.iter().find(|d| d.metadata.name.as_deref() == Some(deployment_name.as_str()));
        let template = match current {
            // A revision keeps the template it was created with.
            Some(d) => d.spec.template.clone(),
            None if revision.revision == desired => resources::revision_template(rollout, &revision.revision),
            None => continue,
        };
        let deployment = resources::deployment(rollout, &revision.revision, template, revision.replicas);
        match current {
            Some(d) if d.spec.replicas == Some(revision.replicas) => {}
            Some(_) => {
                info!(rollout = %name, revision = %revision.revision, replicas = revision.replicas, role = ?revision.role, "scaling revision");
                writes
                    .record(&deployments.patch(&deployment_name, &apply, &Patch::Apply(&deployment)).await?);
            }
            None => match deployments
                .create(
                    &PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() },
                    &deployment,
                )
                .await
            {
                Ok(created) => {
                    writes.record(&created);
                    info!(rollout = %name, revision = %revision.revision, replicas = revision.replicas, "created revision")
                }
                // Ours already (a cache behind a write that is not this replica's: a
                // previous leader's), or somebody else's: only the latter is a conflict. Read
                // by a list of that one name: the operator holds no `get` on Deployments.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let by_name = ListParams::default().fields(&format!("metadata.name={deployment_name}"));
                    match deployments.list(&by_name).await?.items.into_iter().next() {
                        Some(found) if controlled_by(&found.metadata, rollout) => {
                            info!(rollout = %name, deployment = %deployment_name, "created already (the cache was behind)");
                            writes.record(&found)
                        }
                        _ => conflicts.push(format!("Deployment {deployment_name}")),
                    }
                }
                Err(e) => return Err(e.into()),
            },
        }
    }
    let planned: BTreeSet<&str> = plan.revisions.iter().map(|r| r.revision.as_str()).collect();
    for deployment in &world.owned {
        let Some(revision) = revision_of_deployment(deployment) else { continue };
        if !planned.contains(revision.as_str()) && deployment.metadata.deletion_timestamp.is_none() {
            info!(rollout = %name, %revision, "removing revision");
            match deployments.delete(&deployment.name_any(), &DeleteParams::background()).await {
                Ok(answer) => writes.record_delete(&deployment.name_any(), &answer),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    // What follows needs the route in force (the workload leaves once the Service is ours).
    routed?;
    ctx.workers.record_conflicts(&world.key, &conflicts);
    if plan.workload == WorkloadAction::ScaleToZero
        && let Some(reference) = &rollout.spec.workload_ref
    {
        info!(rollout = %name, deployment = %reference.name, "scaling the drained workload to 0");
        workload::scale_to_zero(&deployments, &reference.name).await?;
    }
    // The template that became stable goes into the history (`kubectl mcprollout undo`); read
    // and written only when the stable revision changed since the last time.
    if let Some(stable) = status.stable_revision.as_deref()
        && stable == desired
        && !ctx.workers.history_recorded(&world.key, stable)
    {
        let revisions: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &world.namespace);
        history::record(&revisions, rollout, stable).await?;
        ctx.workers.set_history_recorded(&world.key, stable);
    }
    budgets_applied
}

async fn add_finalizer(ctx: &Context, rollout: &McpRollout) -> Result<(), Error> {
    let api: Api<McpRollout> = Api::namespaced(
        ctx.client.clone(),
        &rollout.namespace().ok_or(Error::MissingField("metadata.namespace"))?,
    );
    let op = if rollout.metadata.finalizers.is_some() {
        json!([{"op": "add", "path": "/metadata/finalizers/-", "value": gateway::FINALIZER}])
    } else {
        // Adding the whole list replaces one that exists: only on the object as it was read
        // (a list another controller added since would be lost), so the version is tested.
        let version = rollout
            .metadata
            .resource_version
            .clone()
            .ok_or(Error::MissingField("metadata.resourceVersion"))?;
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/metadata/finalizers", "value": [gateway::FINALIZER]},
        ])
    };
    let patch: json_patch::Patch =
        serde_json::from_value(op).map_err(|source| Error::Serialize { what: "finalizer patch", source })?;
    api.patch(&rollout.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await?;
    Ok(())
}

async fn remove_finalizer(ctx: &Context, rollout: &McpRollout) -> Result<(), Error> {
    let api: Api<McpRollout> = Api::namespaced(
        ctx.client.clone(),
        &rollout.namespace().ok_or(Error::MissingField("metadata.namespace"))?,
    );
    let Some(index) = rollout.finalizers().iter().position(|f| f == gateway::FINALIZER) else {
        return Ok(());
    };
    // Tested first, so a concurrent change of the list fails instead of removing another's.
    let op = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": gateway::FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]);
    let patch: json_patch::Patch =
        serde_json::from_value(op).map_err(|source| Error::Serialize { what: "finalizer patch", source })?;
    match api.patch(&rollout.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The Secrets the McpRollout refers to, read once per reconcile.
struct Secrets {
    values: BTreeMap<(String, String), Vec<u8>>,
    missing: Vec<SecretKeyRef>,
}

fn secret_refs(rollout: &McpRollout) -> Vec<SecretKeyRef> {
    let probe = &rollout.spec.probe;
    let mut refs: Vec<SecretKeyRef> = probe.headers.iter().filter_map(|h| h.value_from.clone()).collect();
    refs.extend(probe.bearer_token_secret_ref.clone());
    refs.extend(probe.ca_bundle_secret_ref.clone());
    refs.extend(rollout.spec.gates.iter().filter_map(|g| g.webhook.as_ref()?.token_secret_ref.clone()));
    if let Some(a) = &rollout.spec.analysis {
        let prometheus = &a.prometheus;
        refs.extend(prometheus.bearer_token_secret_ref.clone());
        refs.extend(prometheus.ca_bundle_secret_ref.clone());
        refs.extend(prometheus.client_certificate_secret_ref.iter().flat_map(TlsSecretRef::keys));
    }
    refs
}

async fn read_secrets(ctx: &Context, namespace: &str, rollout: &McpRollout) -> Result<Secrets, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    let mut fetched: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    for reference in secret_refs(rollout) {
        if !fetched.contains_key(&reference.name) {
            fetched.insert(reference.name.clone(), api.get_opt(&reference.name).await?);
        }
        let value = fetched[&reference.name]
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(&reference.key))
            .map(|b| b.0.clone());
        match value {
            Some(v) => {
                values.insert((reference.name.clone(), reference.key.clone()), v);
            }
            None => missing.push(reference),
        }
    }
    Ok(Secrets { values, missing })
}

fn lookup(values: &BTreeMap<(String, String), Vec<u8>>) -> impl Fn(&SecretKeyRef) -> Option<Vec<u8>> + '_ {
    |r| values.get(&(r.name.clone(), r.key.clone())).cloned()
}

fn prometheus_for(
    rollout: &McpRollout,
    secrets: &BTreeMap<(String, String), Vec<u8>>,
    pinned: &Pinned,
) -> Result<Prometheus, analysis::QueryError> {
    let Some(spec) = &rollout.spec.analysis else {
        return Err(analysis::QueryError::Unreachable("no analysis configured".into()));
    };
    let read = lookup(secrets);
    let token = spec
        .prometheus
        .bearer_token_secret_ref
        .as_ref()
        .and_then(&read)
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned());
    let ca_bundle = spec.prometheus.ca_bundle_secret_ref.as_ref().and_then(&read);
    // The chain, then its key: the one PEM reqwest reads an identity from.
    let identity = spec.prometheus.client_certificate_secret_ref.as_ref().and_then(|tls| {
        let [cert, key] = tls.keys();
        Some([read(&cert)?, b"\n".to_vec(), read(&key)?].concat())
    });
    let options = analysis::ClientOptions {
        bearer_token: token.as_deref(),
        pinned: Some((&pinned.host, &pinned.addresses)),
        ca_bundle_pem: ca_bundle.as_deref(),
        identity_pem: identity.as_deref(),
    };
    Prometheus::new(&spec.prometheus.address, spec.prometheus.timeout.as_std(), &options)
}

/// The port the MCP server listens on in `pod`: the Service's target port, resolved by name
/// among the pod's container ports when it is a name.
fn target_port(rollout: &McpRollout, pod: &Pod) -> Option<i32> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let service = &rollout.spec.service;
    match service.target_port.clone().unwrap_or(IntOrString::Int(service.port)) {
        IntOrString::Int(port) => Some(port),
        IntOrString::String(name) => pod.spec.as_ref()?.containers.iter().find_map(|c| {
            c.ports
                .as_ref()?
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
        }),
    }
}

/// Where a pod's MCP endpoint is: its URL, and for https the pod's address to connect to
/// (the URL then names the host the certificate is checked for).
fn pod_endpoint(rollout: &McpRollout, pod: &Pod) -> Option<(String, Option<SocketAddr>)> {
    let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    let port = target_port(rollout, pod)?;
    let path = &rollout.spec.service.path;
    match rollout.spec.service.scheme {
        Scheme::Http => {
            Some((format!("http://{}{path}", SocketAddr::new(ip, u16::try_from(port).ok()?)), None))
        }
        Scheme::Https => {
            let server_name = rollout.spec.probe.tls_server_name.clone().unwrap_or_else(|| {
                format!(
                    "{}.{}.svc",
                    names::service(&rollout.name_any()),
                    rollout.namespace().unwrap_or_default()
                )
            });
            let address = SocketAddr::new(ip, u16::try_from(port).ok()?);
            Some((format!("https://{server_name}:{port}{path}"), Some(address)))
        }
    }
}

/// The probe overrides of the step being entered.
fn step_probe<'a>(rollout: &'a McpRollout, status: &McpRolloutStatus) -> Option<&'a StepProbe> {
    let StrategyRef::Canary(canary) = rollout.spec.strategy.kind() else { return None };
    let index = usize::try_from(status.current_step_index?).ok()?;
    canary.steps.get(index).and_then(|s| s.probe.as_ref())
}

fn probe_config(
    rollout: &McpRollout,
    status: &McpRolloutStatus,
    pod: &Pod,
    secrets: &BTreeMap<(String, String), Vec<u8>>,
) -> Option<ProbeConfig> {
    let (url, connect_to) = pod_endpoint(rollout, pod)?;
    let mut config =
        ProbeConfig::from_spec(url, &rollout.spec.probe, step_probe(rollout, status), lookup(secrets))
            .ok()?;
    config.connect_to = connect_to;
    config.transport = match rollout.spec.service.transport {
        Transport::StreamableHttp => TransportChoice::StreamableHttp,
        Transport::Sse => TransportChoice::Sse,
    };
    Some(config)
}

/// Ready pods of a revision, oldest first.
fn ready_pods<'a>(pods: &[&'a Pod], revision: &str) -> Vec<&'a Pod> {
    let mut ready: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| {
            observe::revision_of(p) == Some(revision)
                && !observe::terminating(p)
                && observe::containers_ready(p)
        })
        .collect();
    ready.sort_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp));
    ready
}

fn probe_job(
    rollout: &McpRollout,
    status: &McpRolloutStatus,
    pods: &[&Pod],
    request: &ProbeRequest,
    secrets: &BTreeMap<(String, String), Vec<u8>>,
) -> Option<ProbeJob> {
    let is_stable = status.stable_revision.as_deref() == Some(request.revision.as_str());
    let mut targets: Vec<&Pod> = ready_pods(pods, &request.revision);
    if is_stable {
        // The stable revision is watched, not judged pod by pod: one pod gives its tools.
        targets.truncate(1);
    }
    let targets: Vec<(String, ProbeConfig)> = targets
        .into_iter()
        .filter_map(|p| Some((p.name_any(), probe_config(rollout, status, p, secrets)?)))
        .collect();
    if targets.is_empty() {
        return None; // nothing ready: the engine waits for pods, under its progress deadline
    }
    let baseline = request.baseline.as_ref().map(|revision| Baseline {
        revision: revision.clone(),
        policy: rollout.spec.probe.schema_compatibility,
        probe: ready_pods(pods, revision).first().and_then(|p| probe_config(rollout, status, p, secrets)),
    });
    // Steady: stable alone, serving everything, nothing draining or rolled back.
    let steady = status.phase == Some(Phase::Healthy)
        && status.canary_revision.is_none()
        && status.drains.is_empty()
        && status.rollback.is_none();
    Some(ProbeJob {
        revision: request.revision.clone(),
        track: if is_stable { "stable" } else { "canary" },
        targets,
        baseline,
        wake: if steady && is_stable { ProbeWake::OnChange } else { ProbeWake::Always },
    })
}

/// Writes the decided status, on the condition that the McpRollout is still the one the
/// decision was made from (its resourceVersion as a precondition of the apply). Seen on a real
/// API server: after it restarted, a reconcile got an object older than the status the operator
/// had last written, decided from it and wrote the canary's weight back from 25% to 5%.
/// `false` when the precondition failed (409): nothing was written.
async fn write_status(ctx: &Context, rollout: &McpRollout, status: &McpRolloutStatus) -> Result<bool, Error> {
    let api: Api<McpRollout> = Api::namespaced(
        ctx.client.clone(),
        &rollout.namespace().ok_or(Error::MissingField("metadata.namespace"))?,
    );
    let mut patch = json!({
        "apiVersion": McpRollout::api_version(&()),
        "kind": McpRollout::kind(&()),
        "status": serde_json::to_value(status).map_err(|source| Error::Serialize { what: "status", source })?,
    });
    if let Some(version) = &rollout.metadata.resource_version {
        patch["metadata"] = json!({"resourceVersion": version});
    }
    match api
        .patch_status(&rollout.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
    {
        Ok(answer) => {
            if let Some(namespace) = answer.namespace() {
                ctx.own_writes.keep((namespace, answer.name_any()), answer);
            }
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// An event for each analysis check whose verdict changed, with its numbers: the gate verdicts
/// a person reading `kubectl describe` wants, without one event per evaluation. Not the failure
/// of the check a rollback decided in this same write names: its `RolledBack` event says it,
/// with the same numbers (in a breach of 1,000 rollouts the repeat was 1,000 of 3,270 events).
fn verdict_changes(before: &McpRolloutStatus, after: &McpRolloutStatus) -> Vec<engine::Event> {
    let rolled_back_on = after
        .rollback
        .as_ref()
        .filter(|r| before.rollback.as_ref().is_none_or(|b| b.at != r.at))
        .and_then(|r| r.check.as_deref());
    after
        .analysis
        .iter()
        .filter(|check| {
            before.analysis.iter().find(|b| b.name == check.name).is_none_or(|b| b.verdict != check.verdict)
        })
        .filter(|check| !(check.verdict == Verdict::Fail && rolled_back_on == Some(check.name.as_str())))
        .map(|check| {
            let numbers = match (check.value, check.threshold) {
                (Some(v), Some(t)) => format!(" (value {v:.4}, threshold {t})"),
                (Some(v), None) => format!(" (value {v:.4})"),
                _ => String::new(),
            };
            let detail = check.message.as_deref().map_or_else(String::new, |m| format!(": {m}"));
            let message = format!("analysis check {} is {:?}{numbers}{detail}", check.name, check.verdict);
            match check.verdict {
                Verdict::Pass => engine::Event::normal("AnalysisPassed", message),
                Verdict::Fail => engine::Event::warning("AnalysisFailed", message),
                Verdict::Inconclusive => engine::Event::warning("AnalysisInconclusive", message),
            }
        })
        .collect()
}

/// Counters that follow status transitions: rollbacks, and drains that ended.
fn count_transitions(ctx: &Context, key: &RolloutKey, before: &McpRolloutStatus, after: &McpRolloutStatus) {
    if let Some(rollback) = &after.rollback
        && before.rollback.as_ref().is_none_or(|b| b.at != rollback.at)
    {
        let labels = ReasonLabels {
            namespace: key.0.clone(),
            rollout: key.1.clone(),
            reason: format!("{:?}", rollback.reason),
        };
        ctx.metrics.count_rollback(&labels);
    }
    let now = Timestamp::now().as_second();
    for drain in &before.drains {
        if !after.drains.iter().any(|d| d.revision == drain.revision) {
            let labels = RolloutLabels { namespace: key.0.clone(), rollout: key.1.clone() };
            #[allow(clippy::cast_precision_loss)]
            let took = (now - drain.started_at.0.as_second()).max(0) as f64;
            ctx.metrics.drain_duration.get_or_create(&labels).observe(took);
        }
    }
}

/// The engine's events as Kubernetes Events, published in the background (see `events`).
fn publish(ctx: &Context, rollout: &McpRollout, events: &[engine::Event]) {
    let kube_events = events
        .iter()
        .map(|event| {
            info!(rollout = %rollout.name_any(), reason = %event.reason, "{}", event.message);
            kube_event(event)
        })
        .collect();
    let key = (rollout.namespace().unwrap_or_default(), rollout.name_any());
    ctx.events.publish(&key, kube_events, rollout.object_ref(&()));
}

fn kube_event(event: &engine::Event) -> KubeEvent {
    let type_ = match event.type_ {
        EventType::Normal => KubeEventType::Normal,
        EventType::Warning => KubeEventType::Warning,
    };
    // kube's Recorder folds events with the same (type, reason, action) into one series that
    // keeps the first note, so six steps would read as six copies of "step 0 done". A digest of
    // the message in the action makes only true repeats fold, as client-go's correlator does.
    let digest = sha2::Sha256::digest(event.message.as_bytes());
    let action =
        format!("{}-{:02x}{:02x}{:02x}{:02x}", event.reason, digest[0], digest[1], digest[2], digest[3]);
    KubeEvent {
        type_,
        reason: event.reason.clone(),
        note: Some(event.message.chars().take(1000).collect()),
        action: action.chars().take(128).collect(),
        secondary: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_checks(checks: &[(&str, &str)]) -> McpRolloutStatus {
        serde_json::from_value(json!({
            "analysis": checks.iter().map(|(name, verdict)| json!({
                "name": name, "verdict": verdict, "value": 3.5, "threshold": 2.0,
                "consecutiveFailures": 0, "at": "2026-01-01T00:00:00Z"
            })).collect::<Vec<_>>()
        }))
        .unwrap()
    }

    #[test]
    fn only_changed_verdicts_become_events_with_their_numbers() {
        let before = with_checks(&[("errorRate", "Pass"), ("latency", "Pass")]);
        let after = with_checks(&[("errorRate", "Fail"), ("latency", "Pass")]);
        let events = verdict_changes(&before, &after);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "AnalysisFailed");
        assert!(
            events[0].message.contains("errorRate is Fail (value 3.5000, threshold 2)"),
            "{}",
            events[0].message
        );
        assert!(verdict_changes(&after, &after).is_empty(), "a repeated verdict is not an event");
    }

    #[test]
    fn the_failure_a_rollback_names_is_said_once() {
        let before = with_checks(&[("errorRate", "Pass"), ("latency", "Pass")]);
        let mut after = with_checks(&[("errorRate", "Fail"), ("latency", "Fail")]);
        after.rollback = Some(
            serde_json::from_value(json!({
                "revision": "c1", "reason": "AnalysisFailed", "check": "errorRate",
                "message": "check errorRate failed 1 time(s) in a row: value 3.5000 against threshold 2.0000",
                "at": "2026-01-01T00:00:10Z"
            }))
            .unwrap(),
        );
        let events = verdict_changes(&before, &after);
        let said: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(events.len(), 1, "only the check the rollback does not name: {said:?}");
        assert!(said[0].contains("latency is Fail"), "{said:?}");
        // A rollback recorded earlier does not hide a later failure of its check.
        let mut earlier = before.clone();
        earlier.rollback = after.rollback.clone();
        assert_eq!(verdict_changes(&earlier, &after).len(), 2);
    }

    #[test]
    fn secret_references_are_gathered_from_probe_and_prometheus() {
        let rollout: McpRollout = serde_json::from_value(json!({
            "apiVersion": "mcprollout.dev/v1alpha1", "kind": "McpRollout",
            "metadata": {"name": "docs", "namespace": "mcp"},
            "spec": {
                "template": {"spec": {"containers": [{"name": "s", "image": "x"}]}},
                "strategy": {"canary": {"steps": []}},
                "probe": {"headers": [{"name": "X-Key", "valueFrom": {"name": "h", "key": "k"}}],
                          "bearerTokenSecretRef": {"name": "t", "key": "token"}},
                "analysis": {"prometheus": {"address": "http://p:9090", "bearerTokenSecretRef": {"name": "p", "key": "token"}}}
            }
        }))
        .unwrap();
        let names: Vec<String> = secret_refs(&rollout).into_iter().map(|r| r.name).collect();
        assert_eq!(names, vec!["h", "t", "p"]);
    }
}
