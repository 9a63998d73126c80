//! Traffic routing behind one small interface: the weights the engine planned, and which pods
//! are in rotation. The plain-Service router puts every in-rotation pod behind one Service, so
//! weights are pod ratios (counted by the engine) and rotation is the pods' readiness gate; the
//! Gateway API router (`gateway.rs`) weights an HTTPRoute, behind the same trait.

use std::future::Future;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions},
};
use serde_json::json;

use super::{
    error::Error,
    names::FIELD_MANAGER,
    observe::{self, in_rotation},
    resources::{self, Tracks},
};
use crate::{
    api::{IN_ROTATION_GATE, McpRollout},
    engine::RevisionPlan,
};

/// What a router is asked to make true.
pub struct RouteRequest<'a> {
    pub rollout: &'a McpRollout,
    /// Every revision that runs, with its weight and how many pods may be in rotation.
    pub plan: &'a [RevisionPlan],
    pub tracks: Tracks,
    /// The rollout's pods, as observed.
    pub pods: &'a [Pod],
    /// The rollout's Services, as observed.
    pub services: &'a [Service],
    /// Its Gateway API HTTPRoute as read in this reconcile, if it routes through one.
    pub route: Option<&'a serde_json::Value>,
    /// The status just decided (which revisions a rollback evacuates).
    pub status: &'a crate::api::McpRolloutStatus,
    /// The MCP session router's configuration as read in this reconcile, if it routes through
    /// one.
    pub router_config: Option<&'a crate::router::config::RoutingConfig>,
    /// The Service of the rollout's name that a migration takes over, if there is one.
    pub takeover: Option<Takeover<'a>>,
    /// Where the writes made are kept, so that the next reconcile reads caches that show them.
    pub writes: &'a super::caches::Writes,
}

/// A Service somebody made for the workload a migration takes over from (`spec.workloadRef`).
#[derive(Clone, Copy, Debug)]
pub struct Takeover<'a> {
    pub service: &'a Service,
    /// The rollout serves: take it over now. Until then it is left to the workload's pods.
    pub now: bool,
}

/// What a router changed, for logs and events.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteOutcome {
    /// Services of our names that exist and are not ours: never taken over.
    pub conflicts: Vec<String>,
    pub pods_added: Vec<String>,
    pub pods_removed: Vec<String>,
}

pub trait TrafficRouter: Send + Sync {
    fn route(&self, request: &RouteRequest<'_>) -> impl Future<Output = Result<RouteOutcome, Error>> + Send;
}

/// Weights by replica ratio behind the `<rollout>` Service.
pub struct PlainServiceRouter {
    client: Client,
}

impl PlainServiceRouter {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// Which pods change rotation: (name, new value), so each revision has the number of pods in
/// rotation the plan says (the engine already counted the plain-Service router's pod ratios).
/// Pure, so it is tested without a cluster.
pub fn rotation_changes(plan: &[RevisionPlan], pods: &[Pod]) -> Vec<(String, bool)> {
    // The pods each planned revision keeps in rotation, chosen once per revision.
    let chosen: Vec<(&str, Vec<String>)> = plan
        .iter()
        .map(|r| {
            // Pods leaving through a drain are never chosen, however the rest stand.
            let same: Vec<&Pod> = pods
                .iter()
                .filter(|p| observe::revision_of(p) == Some(r.revision.as_str()))
                .filter(|p| p.metadata.name.as_ref().is_none_or(|n| !r.leaving.contains(n)))
                .collect();
            (r.revision.as_str(), observe::choose_rotation(&same, r.in_rotation))
        })
        .collect();
    let mut changes = Vec::new();
    for pod in pods.iter().filter(|p| !observe::terminating(p)) {
        let Some(revision) = observe::revision_of(pod) else { continue };
        let Some(name) = pod.metadata.name.clone() else { continue };
        let wanted = chosen.iter().any(|(r, names)| *r == revision && names.contains(&name));
        let has_condition = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == IN_ROTATION_GATE));
        // A new pod gets an explicit False, so `kubectl describe` says why it is not Ready.
        if wanted != in_rotation(pod) || !has_condition {
            changes.push((name, wanted));
        }
    }
    changes
}

impl TrafficRouter for PlainServiceRouter {
    async fn route(&self, request: &RouteRequest<'_>) -> Result<RouteOutcome, Error> {
        let (pods, conflicts) = apply_services(&self.client, request).await?;
        let mut outcome = patch_rotation(&pods, request.plan, request.pods, request.writes).await?;
        outcome.conflicts = conflicts;
        Ok(outcome)
    }
}

/// Applies the rollout's Services and deletes its per-track ones it no longer has; returns the
/// pods API of its namespace and the names of Services that exist and are not this
/// McpRollout's (left alone: a conflict to report).
pub async fn apply_services(
    client: &Client,
    request: &RouteRequest<'_>,
) -> Result<(Api<Pod>, Vec<String>), Error> {
    let namespace = request.rollout.metadata.namespace.clone().ok_or(Error::MissingField("namespace"))?;
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let uid = request.rollout.metadata.uid.as_deref();
    let mut conflicts = Vec::new();
    for service in resources::services(request.rollout, &request.tracks) {
        let name = service.metadata.name.clone().unwrap_or_default();
        if let Some(takeover) = request.takeover.filter(|t| t.service.metadata.name.as_deref() == Some(&name))
        {
            if takeover.now {
                super::workload::take_over_service(&services, takeover.service, &service).await?;
                request.writes.record(&services.patch(&name, &apply, &Patch::Apply(&service)).await?);
                tracing::info!(rollout = %request.rollout.metadata.name.as_deref().unwrap_or_default(), service = %name, "took over the workload's Service: it now selects the rollout's pods");
            }
            continue;
        }
        let current = request.services.iter().find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
        let controllers = |c: &Service| -> Vec<String> {
            let refs = c.metadata.owner_references.iter().flatten();
            refs.filter(|o| o.controller == Some(true)).map(|o| o.uid.clone()).collect()
        };
        match current {
            // Somebody else's: left alone. (One with no controller at all, an orphan of this
            // rollout, is adopted by the apply below, as a ReplicaSet adopts its pods.)
            Some(c)
                if !controllers(c).is_empty() && !controllers(c).iter().any(|u| Some(u.as_str()) == uid) =>
            {
                conflicts.push(name);
            }
            // A no-op apply still costs a request per Service per reconcile: skip what is as wanted.
            Some(c) if service_up_to_date(c, &service) => {}
            Some(_) => {
                request.writes.record(&services.patch(&name, &apply, &Patch::Apply(&service)).await?);
            }
            // Not listed (it would carry our labels): created, so one of that name that is
            // somebody else's fails with 409 instead of being taken over.
            None => {
                let params =
                    PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
                match services.create(&params, &service).await {
                    Ok(created) => request.writes.record(&created),
                    // Ours already (a cache behind a write that is not this replica's), or
                    // somebody else's: only the latter is a conflict. Read by a list of that
                    // one name: the operator holds no `get` on Services.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
                        match services.list(&by_name).await?.items.into_iter().next() {
                            Some(found) if controllers(&found).iter().any(|u| Some(u.as_str()) == uid) => {
                                tracing::info!(service = %name, "created already (the cache was behind)");
                                request.writes.record(&found)
                            }
                            _ => conflicts.push(name),
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    if !resources::has_track_services(request.rollout) {
        remove_track_services(&services, request).await?;
    }
    Ok((Api::namespaced(client.clone(), &namespace), conflicts))
}

/// Deletes the rollout's per-track Services once it no longer has them (`trackServices: Auto`
/// and a routing that does not weight them; or Services an earlier operator version made for
/// every rollout). Only ones observed with this McpRollout as their controller, and the delete
/// is conditional on the observed uid: one made again since, by anybody, is not touched.
async fn remove_track_services(services: &Api<Service>, request: &RouteRequest<'_>) -> Result<(), Error> {
    let uid = request.rollout.metadata.uid.as_deref();
    for name in resources::track_service_names(request.rollout) {
        let Some(current) =
            request.services.iter().find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
        else {
            continue;
        };
        let ours = current
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid);
        if !ours || current.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: current.metadata.uid.clone(), resource_version: None }),
            ..DeleteParams::default()
        };
        match services.delete(&name, &params).await {
            Ok(answer) => {
                request.writes.record_delete(&name, &answer);
                tracing::info!(rollout = %request.rollout.metadata.name.as_deref().unwrap_or_default(), service = %name, "deleted a per-track Service nothing routes through (spec.service.trackServices: Auto)");
            }
            // Gone already, or another object of that name now (the precondition): not ours to
            // delete either way.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether an observed Service already has every field the operator applies: its labels and
/// owner reference, the selector and the ports.
pub fn service_up_to_date(current: &Service, wanted: &Service) -> bool {
    let subset = |wanted: &Option<std::collections::BTreeMap<String, String>>,
                  current: &Option<std::collections::BTreeMap<String, String>>| {
        wanted.iter().flatten().all(|(k, v)| current.as_ref().and_then(|c| c.get(k)) == Some(v))
    };
    let owners = wanted.metadata.owner_references.iter().flatten().all(|o| {
        current
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|c| c.uid == o.uid && c.controller == o.controller)
    });
    let (Some(current_spec), Some(wanted_spec)) = (&current.spec, &wanted.spec) else { return false };
    let affinity = wanted_spec.session_affinity.is_none()
        || current_spec.session_affinity == wanted_spec.session_affinity;
    owners
        && subset(&wanted.metadata.labels, &current.metadata.labels)
        && current_spec.selector == wanted_spec.selector
        && current_spec.ports == wanted_spec.ports
        && affinity
}

/// Sets the rotation gate of every pod whose membership changes.
pub async fn patch_rotation(
    pods_api: &Api<Pod>,
    plan: &[RevisionPlan],
    pods: &[Pod],
    writes: &super::caches::Writes,
) -> Result<RouteOutcome, Error> {
    // Into rotation first, as a Deployment surges: taking pods out first left a blue-green
    // flip with no ready endpoint for a moment, and agents saw connections refused (found in
    // the e2e flip scenario). A moment of overlap is the cheaper error. Within each direction
    // the pods are patched at once: on a busy API server each patch waits its turn, and a
    // rollback's canary pods one after another held its reconcile (and slot) that much longer.
    let (into, out_of): (Vec<_>, Vec<_>) = rotation_changes(plan, pods).into_iter().partition(|(_, w)| *w);
    let pods_added = set_rotation(pods_api, into.into_iter().map(|(n, _)| n), true, writes).await?;
    let pods_removed = set_rotation(pods_api, out_of.into_iter().map(|(n, _)| n), false, writes).await?;
    Ok(RouteOutcome { pods_added, pods_removed, ..RouteOutcome::default() })
}

/// Sets the rotation condition of the named pods, together (`pod_patches`); returns those
/// patched, in order (a pod deleted since it was listed has nothing to route).
async fn set_rotation(
    pods_api: &Api<Pod>,
    names: impl Iterator<Item = String>,
    wanted: bool,
    writes: &super::caches::Writes,
) -> Result<Vec<String>, Error> {
    let (status, reason) = if wanted { ("True", "InRotation") } else { ("False", "OutOfRotation") };
    let now = jiff::Timestamp::now();
    let patch = json!({"status": {"conditions": [{
        "type": IN_ROTATION_GATE,
        "status": status,
        "reason": reason,
        "lastTransitionTime": now.round(jiff::Unit::Second).unwrap_or(now).to_string(),
    }]}});
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
    let patches = names.map(|name| {
        let (patch, params) = (&patch, &params);
        async move { (pods_api.patch_status(&name, params, &Patch::Strategic(patch)).await, name) }
    });
    super::pod_patches::send(patches, writes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::labels, engine::Role};

    fn pod(name: &str, revision: &str, ready: bool, gate: Option<bool>) -> Pod {
        let status = |b: bool| if b { "True" } else { "False" };
        let mut conditions = vec![json!({"type": "ContainersReady", "status": status(ready)})];
        if let Some(g) = gate {
            conditions.push(json!({"type": IN_ROTATION_GATE, "status": status(g)}));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {labels::REVISION: revision}},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn plan(revision: &str, in_rotation: i32) -> RevisionPlan {
        RevisionPlan {
            revision: revision.into(),
            role: Role::Stable,
            replicas: 3,
            in_rotation,
            weight: 100,
            leaving: vec![],
        }
    }

    #[test]
    fn services_as_applied_are_skipped_and_drifted_ones_applied_again() {
        let rollout: crate::api::McpRollout = serde_json::from_value(json!({
            "apiVersion": "mcprollout.dev/v1alpha1", "kind": "McpRollout",
            "metadata": {"name": "docs", "namespace": "agents", "uid": "u-1"},
            "spec": {"template": {"spec": {"containers": [{"name": "s", "image": "x"}]}},
                     "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
                     "service": {"trackServices": "Always"}}
        }))
        .unwrap();
        let tracks = Tracks { stable: Some("s1".into()), canary: Some("c2".into()) };
        let wanted = resources::services(&rollout, &tracks);
        // As the API server returns it: our fields plus defaults and others' labels.
        let mut observed = wanted[2].clone();
        observed.metadata.labels.as_mut().unwrap().insert("team".into(), "docs".into());
        observed.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.9".into());
        observed.spec.as_mut().unwrap().session_affinity = Some("None".into());
        assert!(service_up_to_date(&observed, &wanted[2]));

        let moved =
            resources::services(&rollout, &Tracks { stable: Some("s1".into()), canary: Some("c3".into()) });
        assert!(!service_up_to_date(&observed, &moved[2]), "the canary Service follows a new canary");
        let mut orphaned = observed.clone();
        orphaned.metadata.owner_references = None;
        assert!(!service_up_to_date(&orphaned, &wanted[2]));
        let mut edited = observed;
        edited.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 9090;
        assert!(!service_up_to_date(&edited, &wanted[2]), "a port changed by hand is put back");
    }

    #[test]
    fn only_differences_are_patched_and_new_pods_get_an_explicit_false() {
        let pods = vec![
            pod("s-a", "s", true, Some(true)),
            pod("s-b", "s", true, Some(false)),
            pod("s-c", "s", false, None),
        ];
        let changes = rotation_changes(&[plan("s", 2)], &pods);
        assert_eq!(changes, vec![("s-b".to_owned(), true), ("s-c".to_owned(), false)]);
        assert!(rotation_changes(&[plan("s", 2)], &pods[..2]).iter().all(|(n, _)| n == "s-b"));
    }

    #[test]
    fn a_revision_missing_from_the_plan_leaves_rotation() {
        let pods = vec![pod("old-a", "old", true, Some(true))];
        assert_eq!(rotation_changes(&[plan("s", 2)], &pods), vec![("old-a".to_owned(), false)]);
    }

    mod on_an_api_server {
        //! `patch_rotation` against an API server on loopback that holds the pod status
        //! patches until as many as a test names were in flight together, or 2 s after the
        //! first: the patches of one direction are in flight together, at most
        //! `POD_PATCHES_AT_ONCE`, and none taking a pod out is sent before every patch putting
        //! one in was answered.

        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        use axum::{
            Json, Router,
            extract::{Path, State},
            routing::patch,
        };
        use serde_json::Value;

        use super::*;

        #[derive(Default)]
        struct Seen {
            /// ("sent" | "answered", pod, condition status), in order.
            log: Vec<(&'static str, String, String)>,
            in_flight: usize,
            most_in_flight: usize,
            /// Answers wait until this many were in flight together once, or 2 s after the
            /// first patch arrived.
            hold_until_in_flight: usize,
            first_arrived: Option<std::time::Instant>,
        }

        type Shared = Arc<Mutex<Seen>>;

        async fn patch_status(
            State(seen): State<Shared>,
            Path((_ns, name)): Path<(String, String)>,
            Json(body): Json<Value>,
        ) -> Json<Value> {
            let status = body["status"]["conditions"][0]["status"].as_str().unwrap_or_default().to_owned();
            {
                let mut seen = seen.lock().unwrap();
                seen.log.push(("sent", name.clone(), status.clone()));
                seen.in_flight += 1;
                seen.most_in_flight = seen.most_in_flight.max(seen.in_flight);
                seen.first_arrived.get_or_insert_with(std::time::Instant::now);
            }
            loop {
                {
                    let seen = seen.lock().unwrap();
                    let window_over =
                        seen.first_arrived.is_some_and(|t| t.elapsed() > Duration::from_secs(2));
                    if seen.most_in_flight >= seen.hold_until_in_flight || window_over {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            {
                let mut seen = seen.lock().unwrap();
                seen.log.push(("answered", name.clone(), status));
                seen.in_flight -= 1;
            }
            Json(json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7"}}))
        }

        /// An API server on loopback that answers pod status patches once `hold` were in
        /// flight together, or 2 s after the first arrived.
        async fn holding_api_server(
            hold: usize,
        ) -> (Api<Pod>, Shared, tokio::task::JoinHandle<std::io::Result<()>>) {
            let seen = Shared::new(Mutex::new(Seen { hold_until_in_flight: hold, ..Seen::default() }));
            let app = Router::new()
                .route("/api/v1/namespaces/{ns}/pods/{name}/status", patch(patch_status))
                .with_state(seen.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let server = tokio::spawn(async move { axum::serve(listener, app).await });
            let config = kube::Config::new(format!("http://{address}").parse().unwrap());
            (Api::namespaced(Client::try_from(config).unwrap(), "ns"), seen, server)
        }

        #[tokio::test]
        async fn a_direction_is_patched_at_once_and_pods_leave_only_after_others_joined() {
            let (pods_api, seen, server) = holding_api_server(2).await;

            // A rollback at 2 replicas each: both stable pods into rotation, both canary pods out.
            let pods = vec![
                pod("s-a", "s1", true, Some(false)),
                pod("s-b", "s1", true, Some(false)),
                pod("c-a", "c2", true, Some(true)),
                pod("c-b", "c2", true, Some(true)),
            ];
            let plan = [plan("s1", 2), plan("c2", 0)];
            let writes = crate::controller::caches::Writes::default();
            let outcome = patch_rotation(&pods_api, &plan, &pods, &writes).await.unwrap();
            server.abort();

            assert_eq!(outcome.pods_added, ["s-a", "s-b"]);
            assert_eq!(outcome.pods_removed, ["c-a", "c-b"]);
            let seen = seen.lock().unwrap();
            assert_eq!(seen.most_in_flight, 2, "{:?}", seen.log);
            let last_in_answered = seen
                .log
                .iter()
                .rposition(|(what, _, status)| *what == "answered" && status == "True")
                .unwrap();
            let first_out_sent =
                seen.log.iter().position(|(what, _, status)| *what == "sent" && status == "False").unwrap();
            assert!(last_in_answered < first_out_sent, "a pod left before the others joined: {:?}", seen.log);
        }

        #[tokio::test]
        async fn a_large_flip_keeps_a_bounded_number_of_patches_in_flight() {
            // Held until more than the bound are in flight: only a missing bound gets there
            // (the first ones are answered 2 s after they arrived).
            let (pods_api, seen, server) =
                holding_api_server(crate::controller::pod_patches::POD_PATCHES_AT_ONCE + 1).await;
            let pods: Vec<Pod> = (0..40).map(|i| pod(&format!("b-{i:02}"), "b1", true, Some(true))).collect();
            let writes = crate::controller::caches::Writes::default();
            let outcome = patch_rotation(&pods_api, &[plan("b1", 0)], &pods, &writes).await.unwrap();
            server.abort();

            let names: Vec<String> = (0..40).map(|i| format!("b-{i:02}")).collect();
            assert_eq!(outcome.pods_removed, names, "every pod, in order");
            let seen = seen.lock().unwrap();
            assert!(
                seen.most_in_flight <= crate::controller::pod_patches::POD_PATCHES_AT_ONCE,
                "{} at once",
                seen.most_in_flight
            );
            assert!(seen.most_in_flight > 1, "one after another: {:?}", seen.log);
        }
    }
}
