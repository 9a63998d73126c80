//! The Kubernetes objects the operator applies, built purely from the McpRollout: one
//! Deployment per live revision and its Services.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{EnvVar, PodReadinessGate, PodTemplateSpec, Service, ServicePort, ServiceSpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::Resource;

use super::names;
use crate::api::{IN_ROTATION_GATE, McpRollout, TrackServices, labels};

/// Kubernetes' own default grace period.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// Labels on a revision's Deployment and pods.
pub fn revision_labels(rollout: &str, revision: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::ROLLOUT.to_owned(), rollout.to_owned()),
        (labels::REVISION.to_owned(), revision.to_owned()),
    ])
}

/// The metric contract's labels, passed to every container: `version` and `rollout`.
const SERVER_VERSION: &str = "SERVER_VERSION";
const SERVER_ROLLOUT: &str = "SERVER_ROLLOUT";

/// The pod template of a new revision: the user's, plus what the operator relies on — its
/// labels, `SERVER_VERSION=<revision>` and `SERVER_ROLLOUT=<rollout>` (the `version` and
/// `rollout` labels of the metric contract), the
/// rotation readiness gate, and a grace period no shorter than the longest drain, so a pod
/// deleted while draining is not killed under an open stream.
///
/// Built once, when the revision's Deployment is created: an existing Deployment keeps the
/// template it was created with, so a later change of `drain.max` never restarts its pods.
pub fn revision_template(rollout: &McpRollout, revision: &str) -> PodTemplateSpec {
    let mut template = rollout.spec.template.clone();
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
    metadata.labels.get_or_insert_with(BTreeMap::new).extend(revision_labels(&name, revision));
    let Some(spec) = template.spec.as_mut() else {
        return template;
    };
    for container in &mut spec.containers {
        let env = container.env.get_or_insert_with(Vec::new);
        env.retain(|e| e.name != SERVER_VERSION && e.name != SERVER_ROLLOUT);
        for (key, value) in [(SERVER_VERSION, revision), (SERVER_ROLLOUT, name.as_str())] {
            env.push(EnvVar { name: key.into(), value: Some(value.to_owned()), value_from: None });
        }
    }
    let gates = spec.readiness_gates.get_or_insert_with(Vec::new);
    if !gates.iter().any(|g| g.condition_type == IN_ROTATION_GATE) {
        gates.push(PodReadinessGate { condition_type: IN_ROTATION_GATE.to_owned() });
    }
    let drain_max = i64::try_from(rollout.spec.drain.max.as_secs()).unwrap_or(i64::MAX);
    let grace = spec.termination_grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    spec.termination_grace_period_seconds = Some(grace.max(drain_max));
    template
}

/// The Deployment of one revision, running `replicas` pods of `template`.
pub fn deployment(
    rollout: &McpRollout,
    revision: &str,
    template: PodTemplateSpec,
    replicas: i32,
) -> Deployment {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let mut labels = revision_labels(&name, revision);
    labels.insert("app.kubernetes.io/managed-by".into(), names::MANAGED_BY.into());
    Deployment {
        metadata: ObjectMeta {
            name: Some(names::deployment(&name, revision)),
            namespace: rollout.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(revision_labels(&name, revision)),
                match_expressions: None,
            },
            template,
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// Which revision each per-track Service selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracks {
    pub stable: Option<String>,
    pub canary: Option<String>,
}

/// Whether the rollout has the per-track Services `<rollout>-stable` and `<rollout>-canary`:
/// when asked for, or when its routing weights them (Gateway API backendRefs). Nothing else
/// uses them — the replica-ratio router weights by pods behind `<rollout>`, the MCP session
/// router reaches pods directly, probes go to pod IPs — and each costs the cluster's
/// EndpointSlice controller a match against every pod change of the namespace (41% of its
/// CPU with 3,000 Services in one namespace, `hack/bench.sh scale 1000`).
pub fn has_track_services(rollout: &McpRollout) -> bool {
    rollout.spec.service.track_services == TrackServices::Always
        || rollout.spec.traffic_routing.as_ref().is_some_and(|t| t.gateway_api.is_some())
}

/// The names of the per-track Services, stable then canary.
pub fn track_service_names(rollout: &McpRollout) -> [String; 2] {
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    [names::stable_service(name), names::canary_service(name)]
}

/// The rollout's Services: `<rollout>` over every in-rotation pod — or, with the MCP session
/// router, over the router's pods — and, if it has them (`has_track_services`),
/// `<rollout>-stable` and `<rollout>-canary` over one revision each (the canary's falls back
/// to the stable revision when nothing is being rolled out, as routers expect a backend
/// behind both).
pub fn services(rollout: &McpRollout, tracks: &Tracks) -> Vec<Service> {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let stable = tracks.stable.clone().or_else(|| tracks.canary.clone());
    let canary = tracks.canary.clone().or_else(|| tracks.stable.clone());
    let all = BTreeMap::from([(labels::ROLLOUT.to_owned(), name.clone())]);
    let one = |revision: Option<String>| {
        let mut selector = all.clone();
        // With no revision yet, select a value no pod carries rather than every pod.
        selector.insert(labels::REVISION.to_owned(), revision.unwrap_or_else(|| "none".into()));
        selector
    };
    let front = if rollout.spec.traffic_routing.as_ref().is_some_and(|t| t.mcp_router.is_some()) {
        let mut front = service(rollout, names::service(&name), super::mcp_router::pod_labels(&name));
        if let Some(spec) = front.spec.as_mut() {
            if let Some(port) = spec.ports.as_mut().and_then(|p| p.first_mut()) {
                port.target_port = Some(IntOrString::String("mcp".into()));
            }
            // One client's connections to one router replica: a legacy session's POSTs then
            // pass the replica that carries its stream, which reads their answers. Any replica
            // routes any session (the token says where), so losing one moves its clients only.
            spec.session_affinity = Some("ClientIP".into());
        }
        front
    } else {
        service(rollout, names::service(&name), all.clone())
    };
    if !has_track_services(rollout) {
        return vec![front];
    }
    let [stable_name, canary_name] = track_service_names(rollout);
    vec![front, service(rollout, stable_name, one(stable)), service(rollout, canary_name, one(canary))]
}

fn service(rollout: &McpRollout, name: String, selector: BTreeMap<String, String>) -> Service {
    let spec = &rollout.spec.service;
    let mut labels = BTreeMap::from([
        (labels::ROLLOUT.to_owned(), rollout.metadata.name.clone().unwrap_or_default()),
        ("app.kubernetes.io/managed-by".to_owned(), names::MANAGED_BY.to_owned()),
    ]);
    labels.retain(|_, v| !v.is_empty());
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: rollout.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("mcp".into()),
                port: spec.port,
                target_port: Some(spec.target_port.clone().unwrap_or(IntOrString::Int(spec.port))),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(template: serde_json::Value) -> McpRollout {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "mcprollout.dev/v1alpha1",
            "kind": "McpRollout",
            "metadata": {"name": "docs", "namespace": "agents", "uid": "u-1"},
            "spec": {
                "template": template,
                "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_revision_template_carries_labels_version_gate_and_a_drain_long_grace_period() {
        let r = rollout(serde_json::json!({
            "metadata": {"labels": {"app": "docs"}},
            "spec": {"containers": [{"name": "s", "image": "mcp-fixture:v1",
                                     "env": [{"name": "SERVER_VERSION", "value": "mine"}]}]}
        }));
        let t = revision_template(&r, "abc123");
        let labels = t.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(labels["app"], "docs");
        assert_eq!(labels[labels::ROLLOUT], "docs");
        assert_eq!(labels[labels::REVISION], "abc123");
        let spec = t.spec.unwrap();
        let env = spec.containers[0].env.as_ref().unwrap();
        assert_eq!(env.len(), 2, "the user's SERVER_VERSION is replaced, not doubled");
        assert_eq!((env[0].name.as_str(), env[0].value.as_deref()), ("SERVER_VERSION", Some("abc123")));
        assert_eq!((env[1].name.as_str(), env[1].value.as_deref()), ("SERVER_ROLLOUT", Some("docs")));
        assert_eq!(spec.readiness_gates.unwrap()[0].condition_type, IN_ROTATION_GATE);
        assert_eq!(spec.termination_grace_period_seconds, Some(300), "drain.max defaults to 300 s");
    }

    #[test]
    fn a_longer_user_grace_period_is_kept_and_the_gate_is_not_doubled() {
        let r = rollout(serde_json::json!({
            "spec": {"terminationGracePeriodSeconds": 900,
                     "readinessGates": [{"conditionType": IN_ROTATION_GATE}],
                     "containers": [{"name": "s", "image": "mcp-fixture:v1"}]}
        }));
        let spec = revision_template(&r, "r1").spec.unwrap();
        assert_eq!(spec.termination_grace_period_seconds, Some(900));
        assert_eq!(spec.readiness_gates.unwrap().len(), 1);
    }

    #[test]
    fn deployments_are_named_owned_and_select_their_revision() {
        let r = rollout(serde_json::json!({"spec": {"containers": [{"name": "s", "image": "x"}]}}));
        let d = deployment(&r, "r1", revision_template(&r, "r1"), 3);
        assert_eq!(d.metadata.name.as_deref(), Some("docs-r1"));
        assert_eq!(d.metadata.owner_references.as_ref().unwrap()[0].uid, "u-1");
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.selector.match_labels.unwrap(), revision_labels("docs", "r1"));
    }

    #[test]
    fn track_services_only_when_asked_for_or_when_gateway_routing_weights_them() {
        let template = serde_json::json!({"spec": {"containers": [{"name": "s", "image": "x"}]}});
        let tracks = Tracks { stable: Some("s1".into()), canary: Some("c2".into()) };
        let names = |r: &McpRollout| -> Vec<String> {
            services(r, &tracks).into_iter().map(|s| s.metadata.name.unwrap()).collect()
        };
        let plain = rollout(template.clone());
        assert!(!has_track_services(&plain));
        assert_eq!(names(&plain), ["docs"]);
        let mut routed = rollout(template.clone());
        routed.spec.traffic_routing =
            Some(serde_json::from_value(serde_json::json!({"mcpRouter": {}})).unwrap());
        assert_eq!(names(&routed), ["docs"], "the session router reaches pods directly");
        let mut gateway = rollout(template.clone());
        gateway.spec.traffic_routing = Some(
            serde_json::from_value(serde_json::json!({"gatewayAPI": {"httpRouteRef": {"name": "r"}}}))
                .unwrap(),
        );
        assert_eq!(names(&gateway), ["docs", "docs-stable", "docs-canary"]);
        let mut asked = rollout(template);
        asked.spec.service.track_services = TrackServices::Always;
        assert_eq!(names(&asked), ["docs", "docs-stable", "docs-canary"]);
        assert_eq!(track_service_names(&asked), ["docs-stable", "docs-canary"]);
    }

    #[test]
    fn services_select_all_then_each_track_with_the_canary_falling_back_to_stable() {
        let mut r = rollout(serde_json::json!({"spec": {"containers": [{"name": "s", "image": "x"}]}}));
        r.spec.service.track_services = TrackServices::Always;
        let selector = |s: &Service| s.spec.as_ref().unwrap().selector.clone().unwrap();
        let steady = services(&r, &Tracks { stable: Some("s1".into()), canary: None });
        assert_eq!(steady.len(), 3);
        assert_eq!(steady[0].metadata.name.as_deref(), Some("docs"));
        assert!(!selector(&steady[0]).contains_key(labels::REVISION));
        assert_eq!(selector(&steady[1])[labels::REVISION], "s1");
        assert_eq!(selector(&steady[2])[labels::REVISION], "s1");
        let rolling = services(&r, &Tracks { stable: Some("s1".into()), canary: Some("c2".into()) });
        assert_eq!(selector(&rolling[2])[labels::REVISION], "c2");
        let port = &steady[0].spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!((port.port, port.target_port.clone()), (8080, Some(IntOrString::Int(8080))));
    }
}
