//! Migration from a Deployment that serves today (`spec.workloadRef`): what the reconciler
//! reads of it and of the Service its clients use, taking that Service over once the rollout
//! serves, and scaling the Deployment to 0 when the engine says it drained. The decisions are
//! the engine's (`engine::migrate`).
//!
//! Everything is read by listing (a field selector for one name): the operator holds no `get`
//! on Deployments or Services.

use std::collections::BTreeSet;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Service},
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    core::Selector,
};
use serde_json::json;

use super::{error::Error, names::FIELD_MANAGER};
use crate::{
    api::{McpRollout, WorkloadRef, labels},
    engine::{Problem, WorkloadObserved},
};

/// One object of `api` by name, listed (the operator's RBAC has `list`, not `get`).
async fn list_one<K>(api: &Api<K>, name: &str) -> Result<Option<K>, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = ListParams::default().fields(&format!("metadata.name={name}"));
    Ok(api.list(&params).await?.items.into_iter().next())
}

/// The named Deployment as the engine needs it. `endpoints`: the pods the rollout Service's
/// EndpointSlices list as ready.
pub async fn observe(
    deployments: &Api<Deployment>,
    pods: &Api<Pod>,
    reference: &WorkloadRef,
    endpoints: &BTreeSet<String>,
) -> Result<WorkloadObserved, Error> {
    let Some(deployment) = list_one(deployments, &reference.name).await? else {
        return Ok(WorkloadObserved::default());
    };
    // One of this rollout's own (or another rollout's) is not a workload to take over from.
    if deployment.labels().contains_key(labels::ROLLOUT) {
        return Ok(WorkloadObserved::default());
    }
    let selector: Selector =
        deployment.spec.selector.clone().try_into().map_err(|_| Error::MissingField("workload selector"))?;
    // Its selector may match the rollout's pods too (they come from the same template):
    // those carry the rollout's label and are not the workload's.
    let workload_pods: Vec<Pod> = pods
        .list(&ListParams::default().labels_from(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| !p.labels().contains_key(labels::ROLLOUT) && p.metadata.deletion_timestamp.is_none())
        .collect();
    let ready = workload_pods.iter().filter(|p| super::observe::pod_ready(p)).count();
    let in_endpoints = workload_pods.iter().filter(|p| endpoints.contains(&p.name_any())).count();
    Ok(WorkloadObserved {
        exists: true,
        replicas: deployment.spec.replicas.unwrap_or(1),
        ready: i32::try_from(ready).unwrap_or(i32::MAX),
        in_endpoints: i32::try_from(in_endpoints).unwrap_or(i32::MAX),
    })
}

/// The Service of the rollout's name, when it exists and nobody controls it: the one the
/// workload's clients use, to be taken over; with a problem when it cannot be taken over
/// without changing what its clients connect to (it is then left as it is).
pub async fn service_to_take_over(
    services: &Api<Service>,
    rollout: &McpRollout,
) -> Result<Option<(Service, Option<Problem>)>, Error> {
    let name = rollout.name_any();
    let Some(service) = list_one(services, &name).await? else { return Ok(None) };
    let controlled = service.owner_references().iter().any(|o| o.controller == Some(true));
    if controlled || service.labels().contains_key(labels::ROLLOUT) {
        // Ours, an orphan of ours, or somebody else's: the usual rules apply.
        return Ok(None);
    }
    let problem = takeover_refusal(&service, rollout.spec.service.port)
        .map(|why| Problem::new("ServiceNotAdoptable", format!("Service {name} {why}")));
    Ok(Some((service, problem)))
}

/// Why a Service cannot be taken over as it is: it must be a selector Service with exactly the
/// one TCP port the rollout serves, so its clients keep their address and port.
fn takeover_refusal(service: &Service, port: i32) -> Option<String> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") || spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
        return Some("has no selector (ExternalName, or endpoints kept by hand): it cannot be pointed at the rollout's pods".into());
    }
    let ports: Vec<String> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| format!("{}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP")))
        .collect();
    if ports != [format!("{port}/TCP")] {
        return Some(format!(
            "serves ports [{}]: it is taken over only when it serves exactly spec.service.port ({port}/TCP), so that \
             its clients keep reaching it; set spec.service.port (and targetPort) to match",
            ports.join(", ")
        ));
    }
    None
}

/// Points a Service somebody made at the rollout's pods and makes it the rollout's: its
/// selector and ports are replaced (a server-side apply alone would merge the old selector's
/// keys into the new one), tested against the version read so a concurrent edit fails; the
/// apply that follows adds the owner reference and labels. Its name, address and type stay.
pub async fn take_over_service(api: &Api<Service>, current: &Service, wanted: &Service) -> Result<(), Error> {
    let version =
        current.metadata.resource_version.clone().ok_or(Error::MissingField("metadata.resourceVersion"))?;
    let spec = wanted.spec.as_ref().ok_or(Error::MissingField("spec"))?;
    let op = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
        {"op": "replace", "path": "/spec/selector", "value": spec.selector},
        {"op": "replace", "path": "/spec/ports", "value": spec.ports},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(op)
        .map_err(|source| Error::Serialize { what: "service take-over patch", source })?;
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
    api.patch(&current.name_any(), &params, &Patch::<()>::Json(patch)).await?;
    Ok(())
}

/// Scales the workload to 0: it drained. A merge patch of `spec.replicas` only.
pub async fn scale_to_zero(deployments: &Api<Deployment>, name: &str) -> Result<(), Error> {
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
    match deployments.patch(name, &params, &Patch::Merge(json!({"spec": {"replicas": 0}}))).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::takeover_refusal;

    fn service(value: serde_json::Value) -> k8s_openapi::api::core::v1::Service {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn only_a_selector_service_with_exactly_the_rollouts_port_is_taken_over() {
        let one =
            service(serde_json::json!({"spec": {"selector": {"app": "docs"}, "ports": [{"port": 8080}]}}));
        assert_eq!(takeover_refusal(&one, 8080), None);
        let other_port = takeover_refusal(&one, 80).unwrap();
        assert!(other_port.contains("serves ports [8080/TCP]"), "{other_port}");
        let two = service(serde_json::json!({"spec": {"selector": {"app": "docs"},
            "ports": [{"port": 8080}, {"port": 9090, "name": "metrics"}]}}));
        assert!(takeover_refusal(&two, 8080).is_some());
        let udp = service(
            serde_json::json!({"spec": {"selector": {"app": "docs"}, "ports": [{"port": 8080, "protocol": "UDP"}]}}),
        );
        assert!(takeover_refusal(&udp, 8080).is_some());
        let external =
            service(serde_json::json!({"spec": {"type": "ExternalName", "externalName": "docs.example"}}));
        assert!(takeover_refusal(&external, 8080).unwrap().contains("no selector"));
    }
}
