//! What the reconciler reads off pods, as the engine's observations. Pure: pods in, numbers out.

use k8s_openapi::api::core::v1::Pod;

use crate::{
    api::{IN_ROTATION_GATE, labels},
    engine::RevisionObserved,
};

fn condition_true(pod: &Pod, type_: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// The pod is being deleted: it no longer counts for its revision (it may still be draining).
pub fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Every container passes its readiness probe, whatever the rotation gate says.
pub fn containers_ready(pod: &Pod) -> bool {
    condition_true(pod, "ContainersReady")
}

/// The pod is Ready (its containers and every readiness gate).
pub fn pod_ready(pod: &Pod) -> bool {
    condition_true(pod, "Ready")
}

/// The operator's rotation gate is True.
pub fn in_rotation(pod: &Pod) -> bool {
    condition_true(pod, IN_ROTATION_GATE)
}

pub fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(labels::REVISION).map(String::as_str)
}

fn crash_looping(pod: &Pod) -> bool {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.is_some_and(|statuses| {
        statuses.iter().any(|c| {
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref());
            let last =
                c.last_state.as_ref().and_then(|s| s.terminated.as_ref()).and_then(|t| t.reason.as_deref());
            waiting == Some("CrashLoopBackOff") || last == Some("OOMKilled")
        })
    })
}

fn restarts(pod: &Pod) -> i32 {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.map_or(0, |s| s.iter().map(|c| c.restart_count).sum())
}

/// One entry per revision, counting only its current (not terminating) pods: restarts of
/// pods already gone or going must not count against a revision again. `endpoints` are the
/// pods the rollout Service's EndpointSlices list as ready.
pub fn revisions(
    pods: &[Pod],
    revisions: &[String],
    endpoints: &std::collections::BTreeSet<String>,
) -> Vec<RevisionObserved> {
    revisions
        .iter()
        .map(|revision| {
            let current: Vec<&Pod> = pods
                .iter()
                .filter(|p| revision_of(p) == Some(revision.as_str()) && !terminating(p))
                .collect();
            let ready = current.iter().filter(|p| containers_ready(p)).count();
            // In rotation once the kubelet has taken the gate into Ready (what EndpointSlices
            // follow), not merely once the operator set the gate: the effective weight must not
            // run ahead of what the Service does.
            let ready_in_rotation =
                current.iter().filter(|p| in_rotation(p) && condition_true(p, "Ready")).count();
            let in_endpoints = pods
                .iter()
                .filter(|p| revision_of(p) == Some(revision.as_str()))
                .filter(|p| p.metadata.name.as_ref().is_some_and(|n| endpoints.contains(n)))
                .count();
            RevisionObserved {
                revision: revision.clone(),
                pods: i32::try_from(current.len()).unwrap_or(i32::MAX),
                pod_names: leaving_order(&current),
                in_endpoints: i32::try_from(in_endpoints).unwrap_or(i32::MAX),
                ready: i32::try_from(ready).unwrap_or(i32::MAX),
                ready_in_rotation: i32::try_from(ready_in_rotation).unwrap_or(i32::MAX),
                restarts: current.iter().map(|p| restarts(p)).sum(),
                crash_looping: current.iter().any(|p| crash_looping(p)),
            }
        })
        .collect()
}

/// Pod names in the order they should leave when their revision shrinks: not ready first (no
/// traffic), then out of rotation, then the newest (the fewest long sessions), then by name.
pub fn leaving_order(pods: &[&Pod]) -> Vec<String> {
    let mut sorted: Vec<&Pod> = pods.to_vec();
    sorted.sort_by(|a, b| {
        containers_ready(a)
            .cmp(&containers_ready(b))
            .then_with(|| in_rotation(a).cmp(&in_rotation(b)))
            .then_with(|| b.metadata.creation_timestamp.cmp(&a.metadata.creation_timestamp))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    sorted.into_iter().filter_map(|p| p.metadata.name.clone()).collect()
}

/// Names of the pods the EndpointSlices list as ready (what kube-proxy routes to).
pub fn ready_endpoints(
    slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
) -> std::collections::BTreeSet<String> {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .filter_map(|e| e.target_ref.as_ref().and_then(|t| t.name.clone()))
        .collect()
}

/// The pods of a revision that should be in rotation: `count` of its ready pods, keeping those
/// already in rotation first (no churn), then the oldest. Returns pod names.
pub fn choose_rotation(pods: &[&Pod], count: i32) -> Vec<String> {
    let mut ready: Vec<&Pod> =
        pods.iter().copied().filter(|p| containers_ready(p) && !terminating(p)).collect();
    ready.sort_by(|a, b| {
        in_rotation(b)
            .cmp(&in_rotation(a))
            .then_with(|| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    ready
        .into_iter()
        .take(usize::try_from(count.max(0)).unwrap_or(0))
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, revision: &str, ready: bool, gate: bool, restarts: i32) -> Pod {
        let status = |b: bool| if b { "True" } else { "False" };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {labels::REVISION: revision},
                         "creationTimestamp": format!("2026-01-01T00:00:0{}Z", name.len() % 10)},
            "status": {
                "conditions": [
                    {"type": "ContainersReady", "status": status(ready)},
                    {"type": IN_ROTATION_GATE, "status": status(gate)},
                    {"type": "Ready", "status": status(ready && gate)},
                ],
                "containerStatuses": [{"name": "s", "image": "x", "imageID": "", "ready": ready,
                                       "restartCount": restarts}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn counts_ready_in_rotation_and_restarts_per_revision() {
        let mut gone = pod("c-old", "c", false, false, 7);
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        let pods = vec![
            pod("s-1", "s", true, true, 0),
            pod("s-2", "s", true, false, 1),
            pod("c-1", "c", false, false, 2),
            gone,
        ];
        let seen = revisions(&pods, &["s".into(), "c".into()], &Default::default());
        assert_eq!((seen[0].ready, seen[0].ready_in_rotation, seen[0].restarts), (2, 1, 1));
        assert_eq!((seen[1].ready, seen[1].ready_in_rotation, seen[1].restarts), (0, 0, 2));
        assert!(!seen[1].crash_looping);
    }

    #[test]
    fn a_gate_the_kubelet_has_not_taken_into_ready_is_not_in_rotation_yet() {
        let mut p = pod("s-1", "s", true, true, 0);
        let conditions = p.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conditions.iter_mut().find(|c| c.type_ == "Ready").unwrap().status = "False".into();
        assert_eq!(revisions(&[p], &["s".into()], &Default::default())[0].ready_in_rotation, 0);
    }

    #[test]
    fn crash_loop_back_off_is_seen() {
        let mut p = pod("c-1", "c", false, false, 3);
        p.status.as_mut().unwrap().container_statuses.as_mut().unwrap()[0].state = Some(
            serde_json::from_value(serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}})).unwrap(),
        );
        assert!(revisions(&[p], &["c".into()], &Default::default())[0].crash_looping);
    }

    #[test]
    fn rotation_keeps_pods_already_in_it_and_skips_unready_ones() {
        let a = pod("a", "s", true, false, 0);
        let b = pod("bb", "s", true, true, 0);
        let c = pod("ccc", "s", false, false, 0);
        let pods = vec![&a, &b, &c];
        assert_eq!(choose_rotation(&pods, 1), vec!["bb".to_owned()]);
        assert_eq!(choose_rotation(&pods, 3), vec!["bb".to_owned(), "a".to_owned()]);
        assert!(choose_rotation(&pods, 0).is_empty());
    }
}
