//! What the watches keep of each object: only what a reconcile reads.
//!
//! The stores hold every McpRollout, and every Deployment, pod, Service, EndpointSlice and
//! disruption budget of every rollout, for the life of the process: at 1,000 rollouts that is
//! thousands of objects, and most of an object's size is what the operator never reads —
//! managed fields (several entries per writer), `kubectl apply`'s copy of the whole object in
//! an annotation, and a pod's volumes, environment, probes and resources. controller-runtime
//! users do the same with cache transforms (`TransformStripManagedFields`). Objects listed
//! directly (the fallback when a store lags, see `caches`) are whole; everything that reads a
//! pod must work on both, so what is kept here is what `observe`, `reconcile`, `destinations`
//! and `disruption` read.

use k8s_openapi::{
    api::apps::v1::Deployment,
    api::core::v1::{Container, ContainerStatus, Pod, PodSpec, PodStatus},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

/// `kubectl apply` (client-side) keeps the whole applied object here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Any object: its metadata slimmed, the rest kept.
pub fn object<K: kube::Resource>(object: &mut K) {
    metadata(object.meta_mut());
}

/// A Deployment: its metadata slimmed and its status dropped. The reconciler reads the pods,
/// never a Deployment's counts, which the Deployment controller rewrites several times per
/// scale (each a watch event that would wake the rollout for nothing, see `feed`).
pub fn deployment(deployment: &mut Deployment) {
    metadata(&mut deployment.metadata);
    deployment.status = None;
}

/// Drops managed fields and the last-applied copy; names, labels, owners, other annotations,
/// resourceVersion and deletion time stay.
fn metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A pod as the reconciler reads it: its metadata (slimmed), container names and ports (a
/// named target port is resolved among them), host networking (such a pod's address is the
/// node's, never probed), and from its status the conditions, address and each container's
/// state and restarts (crash loops, restarts per revision).
pub fn pod(pod: &mut Pod) {
    metadata(&mut pod.metadata);
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            containers: spec
                .containers
                .into_iter()
                .map(|c| Container { name: c.name, ports: c.ports, ..Container::default() })
                .collect(),
            host_network: spec.host_network,
            ..PodSpec::default()
        });
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            conditions: status.conditions,
            container_statuses: status.container_statuses.map(|statuses| {
                statuses
                    .into_iter()
                    .map(|c| ContainerStatus {
                        name: c.name,
                        restart_count: c.restart_count,
                        state: c.state,
                        last_state: c.last_state,
                        ..ContainerStatus::default()
                    })
                    .collect()
            }),
            pod_ip: status.pod_ip,
            ..PodStatus::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use crate::controller::observe;

    /// A pod as the API server returns one: managed fields, apply's annotation, volumes,
    /// environment, probes, resources, tolerations.
    fn full_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web-abc", "namespace": "ns", "resourceVersion": "42", "uid": "u1",
                "labels": {"mcprollout.dev/rollout": "web", "mcprollout.dev/revision": "r1"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
                    "example.com/keep": "yes"
                },
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-r1",
                                     "uid": "u2", "controller": true}],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
            },
            "spec": {
                "nodeName": "node-1",
                "containers": [{
                    "name": "server", "image": "example/mcp:1",
                    "env": [{"name": "A", "value": "1"}],
                    "ports": [{"name": "mcp", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    "resources": {"limits": {"memory": "128Mi"}},
                    "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets"}]
                }],
                "volumes": [{"name": "token", "projected": {"sources": []}}],
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}],
                "hostIP": "192.0.2.1", "qosClass": "Burstable",
                "conditions": [
                    {"type": "ContainersReady", "status": "True"},
                    {"type": "Ready", "status": "True"}
                ],
                "containerStatuses": [{
                    "name": "server", "ready": true, "restartCount": 3, "image": "example/mcp:1",
                    "imageID": "sha256:abc", "containerID": "containerd://def",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_slim_pod_reads_as_the_whole_pod_does() {
        let whole = full_pod();
        let mut slim = whole.clone();
        super::pod(&mut slim);
        for pod in [&whole, &slim] {
            assert!(observe::containers_ready(pod));
            assert!(observe::pod_ready(pod));
            assert!(!observe::terminating(pod));
            assert_eq!(observe::revision_of(pod), Some("r1"));
        }
        assert_eq!(
            observe::revisions(std::slice::from_ref(&whole), &["r1".into()], &Default::default()),
            observe::revisions(std::slice::from_ref(&slim), &["r1".into()], &Default::default()),
            "restarts, crash loops and readiness per revision"
        );
        let port = |p: &Pod| p.spec.as_ref().unwrap().containers[0].ports.clone();
        assert_eq!(port(&slim), port(&whole));
        assert_eq!(slim.status.as_ref().unwrap().pod_ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(slim.metadata.owner_references, whole.metadata.owner_references);
        assert_eq!(slim.metadata.resource_version.as_deref(), Some("42"));
    }

    #[test]
    fn a_slim_pod_keeps_nothing_never_read() {
        let whole = full_pod();
        let mut slim = whole.clone();
        super::pod(&mut slim);
        assert!(slim.metadata.managed_fields.is_none());
        let annotations = slim.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.len(), 1, "only apply's copy goes: {annotations:?}");
        let spec = slim.spec.as_ref().unwrap();
        assert!(spec.volumes.is_none() && spec.tolerations.is_none());
        let container = &spec.containers[0];
        assert!(
            container.env.is_none() && container.readiness_probe.is_none() && container.resources.is_none()
        );
        let status = slim.status.as_ref().unwrap().container_statuses.as_ref().unwrap();
        assert!(status[0].image.is_empty() && status[0].container_id.is_none());
        // What the API server would send of it: about half, for this small pod.
        let size = |p: &Pod| serde_json::to_vec(p).unwrap().len();
        assert!(size(&slim) * 10 < size(&whole) * 6, "{} of {} bytes kept", size(&slim), size(&whole));
    }

    #[test]
    fn metadata_without_annotations_left_stays_without() {
        let mut meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            annotations: Some([(super::LAST_APPLIED.to_owned(), "{}".to_owned())].into()),
            ..Default::default()
        };
        super::metadata(&mut meta);
        assert_eq!(meta.annotations, None);
    }
}
