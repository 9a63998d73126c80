//! The deployment and replica-set controllers: Deployment → ReplicaSet (labelled with
//! `pod-template-hash`) → Pods; rolling updates within `maxSurge`/`maxUnavailable`; scale-down
//! that removes pods with a lower `controller.kubernetes.io/pod-deletion-cost` first, then
//! not-ready ones, then the newest; and the status fields and conditions a real controller
//! reports.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};

use super::intstr::scaled;
use crate::{
    resources::ResourceType,
    selectors::{FieldSelector, LabelSelector},
    store::Store,
};

const RESYNC: Duration = Duration::from_millis(500);

struct Kinds {
    deployments: ResourceType,
    replicasets: ResourceType,
    pods: ResourceType,
}

/// Runs until the store is dropped (the task is aborted with the control plane).
pub async fn run(store: Arc<Store>) {
    let (Some(deployments), Some(replicasets), Some(pods)) = (
        store.resolve("apps", "v1", "deployments"),
        store.resolve("apps", "v1", "replicasets"),
        store.resolve("", "v1", "pods"),
    ) else {
        return;
    };
    let kinds = Kinds { deployments, replicasets, pods };
    let Ok((_, mut events)) = store.watch_from(store.resource_version()) else { return };
    loop {
        reconcile_all(&store, &kinds);
        // Wake on any change to the kinds this controller owns, or at the resync.
        let _ = tokio::time::timeout(RESYNC, async {
            while let Ok(event) = events.recv().await {
                if [&kinds.deployments, &kinds.replicasets, &kinds.pods]
                    .iter()
                    .any(|k| k.key() == event.resource)
                {
                    return;
                }
            }
        })
        .await;
    }
}

fn all(store: &Store, rt: &ResourceType, namespace: Option<&str>) -> Vec<Value> {
    store.list(rt, namespace, &LabelSelector::default(), &FieldSelector::default()).0
}

fn uid(object: &Value) -> &str {
    object["metadata"]["uid"].as_str().unwrap_or_default()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

fn owned_by<'a>(objects: &'a [Value], owner: &Value) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"].as_array().is_some_and(|refs| {
                refs.iter().any(|r| r["uid"].as_str() == Some(uid(owner)) && r["controller"] == true)
            })
        })
        .collect()
}

fn owner_reference(owner: &Value, kind: &str, api_version: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name(owner), "uid": uid(owner),
           "controller": true, "blockOwnerDeletion": true})
}

/// FNV-1a of the pod template: stable across runs, like the real `pod-template-hash`.
pub fn template_hash(template: &Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in template.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    for _ in 0..10 {
        out.push(char::from(alphabet[(hash % alphabet.len() as u64) as usize]));
        hash /= alphabet.len() as u64;
    }
    out
}

fn is_terminating(pod: &Value) -> bool {
    pod["metadata"].get("deletionTimestamp").is_some()
}

fn ready_since(pod: &Value) -> Option<jiff::Timestamp> {
    let conditions = pod["status"]["conditions"].as_array()?;
    let ready = conditions.iter().find(|c| c["type"] == "Ready" && c["status"] == "True")?;
    ready["lastTransitionTime"].as_str().and_then(|t| t.parse().ok()).or(Some(jiff::Timestamp::UNIX_EPOCH))
}

fn is_ready(pod: &Value) -> bool {
    !is_terminating(pod) && ready_since(pod).is_some()
}

fn is_available(pod: &Value, min_ready_seconds: i64) -> bool {
    is_ready(pod)
        && ready_since(pod)
            .is_some_and(|since| jiff::Timestamp::now().as_second() - since.as_second() >= min_ready_seconds)
}

fn replicas_of(object: &Value) -> i64 {
    object["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn set_replicas(store: &Store, rt: &ResourceType, rs: &Value, replicas: i64) {
    if replicas_of(rs) == replicas {
        return;
    }
    let _ = store.modify(rt, namespace(rs), name(rs), None, false, |current| {
        let mut next = current.clone();
        next["spec"]["replicas"] = json!(replicas);
        Ok(next)
    });
}

fn reconcile_all(store: &Arc<Store>, kinds: &Kinds) {
    for deployment in all(store, &kinds.deployments, None) {
        if !is_terminating(&deployment) {
            reconcile_deployment(store, kinds, &deployment);
        }
    }
    for rs in all(store, &kinds.replicasets, None) {
        reconcile_replicaset(store, kinds, &rs);
    }
}

fn reconcile_deployment(store: &Store, kinds: &Kinds, deployment: &Value) {
    let ns = namespace(deployment);
    let template = &deployment["spec"]["template"];
    let hash = template_hash(template);
    let all_rs = all(store, &kinds.replicasets, Some(ns));
    let owned: Vec<&Value> = owned_by(&all_rs, deployment);
    let desired = replicas_of(deployment);
    let new_rs = owned
        .iter()
        .find(|rs| rs["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
        .copied()
        .cloned();
    let new_rs = match new_rs {
        Some(rs) => rs,
        None => {
            let mut rs_template = template.clone();
            rs_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut selector = deployment["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(hash);
            let first = owned.is_empty();
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("{}-{hash}", name(deployment)), "labels": labels,
                             "ownerReferences": [owner_reference(deployment, "Deployment", "apps/v1")]},
                // A first rollout starts at full size; a new template starts at 0 and surges.
                "spec": {"replicas": if first { desired } else { 0 }, "selector": selector,
                         "minReadySeconds": deployment["spec"]["minReadySeconds"], "template": rs_template},
            });
            match store.create(&kinds.replicasets, ns, rs, false) {
                Ok(rs) => rs,
                Err(_) => return,
            }
        }
    };
    let old: Vec<&Value> = owned.iter().filter(|rs| uid(rs) != uid(&new_rs)).copied().collect();
    let pods = all(store, &kinds.pods, Some(ns));
    let min_ready = deployment["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let available_of =
        |rs: &Value| owned_by(&pods, rs).iter().filter(|p| is_available(p, min_ready)).count() as i64;
    let strategy = &deployment["spec"]["strategy"];
    if strategy["type"] == "Recreate" {
        for rs in &old {
            set_replicas(store, &kinds.replicasets, rs, 0);
        }
        let old_pods: usize = old.iter().map(|rs| owned_by(&pods, rs).len()).sum();
        if old_pods == 0 {
            set_replicas(store, &kinds.replicasets, &new_rs, desired);
        }
    } else {
        let rolling = &strategy["rollingUpdate"];
        let max_surge = scaled(&rolling["maxSurge"], desired, true, 25);
        let mut max_unavailable = scaled(&rolling["maxUnavailable"], desired, false, 25);
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        // Scale up the new set within the surge.
        let total: i64 = owned.iter().map(|rs| replicas_of(rs)).sum();
        let new_replicas = replicas_of(&new_rs);
        if new_replicas < desired {
            let room = (desired + max_surge - total).max(0);
            set_replicas(store, &kinds.replicasets, &new_rs, (new_replicas + room).min(desired));
        } else if new_replicas > desired {
            set_replicas(store, &kinds.replicasets, &new_rs, desired);
        }
        // Scale old sets down, never below the available minimum.
        let available: i64 = owned.iter().map(|rs| available_of(rs)).sum();
        let min_available = desired - max_unavailable;
        let mut removable = (available - min_available).max(0);
        let mut old_sorted = old.clone();
        old_sorted
            .sort_by_key(|rs| rs["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_owned());
        for rs in old_sorted {
            let replicas = replicas_of(rs);
            // Old pods that are not available cost nothing to remove.
            let unavailable = (replicas - available_of(rs)).max(0);
            let cut = (unavailable + removable).min(replicas);
            if cut > 0 {
                set_replicas(store, &kinds.replicasets, rs, replicas - cut);
                removable -= (cut - unavailable).max(0);
            }
        }
    }
    write_deployment_status(store, kinds, deployment, &new_rs, &owned, &pods, min_ready);
}

fn write_deployment_status(
    store: &Store,
    kinds: &Kinds,
    deployment: &Value,
    new_rs: &Value,
    owned: &[&Value],
    pods: &[Value],
    min_ready: i64,
) {
    let desired = replicas_of(deployment);
    let mut replicas = 0;
    let mut ready = 0;
    let mut available = 0;
    for rs in
        owned.iter().copied().chain(std::iter::once(new_rs)).fold(Vec::new(), |mut seen: Vec<&Value>, rs| {
            if !seen.iter().any(|s| uid(s) == uid(rs)) {
                seen.push(rs);
            }
            seen
        })
    {
        for pod in owned_by(pods, rs).into_iter().filter(|p| !is_terminating(p)) {
            replicas += 1;
            ready += i64::from(is_ready(pod));
            available += i64::from(is_available(pod, min_ready));
        }
    }
    let updated = owned_by(pods, new_rs).iter().filter(|p| !is_terminating(p)).count() as i64;
    let rolling = &deployment["spec"]["strategy"]["rollingUpdate"];
    let max_unavailable = scaled(&rolling["maxUnavailable"], desired, false, 25);
    let is_available_now = available >= desired - max_unavailable;
    let complete = updated == desired && replicas == desired && available == desired;
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let previous = deployment["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let condition = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" };
        let before = previous.iter().find(|c| c["type"] == type_);
        let since = before
            .filter(|c| c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map_or_else(|| now.clone(), str::to_owned);
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastTransitionTime": since, "lastUpdateTime": now})
    };
    let deadline = deployment["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
    let progressing_since = previous
        .iter()
        .find(|c| c["type"] == "Progressing" && c["reason"] == "ReplicaSetUpdated")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let timed_out = !complete
        && progressing_since
            .is_some_and(|since| jiff::Timestamp::now().as_second() - since.as_second() > deadline);
    let progressing = if complete {
        condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{}\" has successfully progressed.", name(new_rs)),
        )
    } else if timed_out {
        condition(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{}\" has timed out progressing.", name(new_rs)),
        )
    } else {
        condition(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{}\" is progressing.", name(new_rs)),
        )
    };
    let available_condition = if is_available_now {
        condition(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
        )
    } else {
        condition(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    let status = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (desired - available).max(0),
        "conditions": [available_condition, progressing],
    });
    if strip_times(&deployment["status"]) == strip_times(&status) {
        return;
    }
    let _ = store.modify(
        &kinds.deployments,
        namespace(deployment),
        name(deployment),
        Some("status"),
        false,
        |current| {
            let mut next = current.clone();
            next["status"] = status.clone();
            Ok(next)
        },
    );
}

/// Status without `lastUpdateTime`s: a status that differs only in them is not rewritten.
fn strip_times(status: &Value) -> Value {
    let mut status = status.clone();
    if let Some(conditions) = status["conditions"].as_array_mut() {
        for c in conditions {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastUpdateTime");
            }
        }
    }
    status
}

fn deletion_rank(pod: &Value) -> (i64, bool, std::cmp::Reverse<String>) {
    let cost = pod["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        cost,
        is_ready(pod),
        std::cmp::Reverse(pod["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_owned()),
    )
}

fn reconcile_replicaset(store: &Arc<Store>, kinds: &Kinds, rs: &Value) {
    let ns = namespace(rs);
    let pods = all(store, &kinds.pods, Some(ns));
    let mine: Vec<&Value> = owned_by(&pods, rs).into_iter().filter(|p| !is_terminating(p)).collect();
    let desired = replicas_of(rs);
    let count = mine.len() as i64;
    if count < desired && !is_terminating(rs) {
        for _ in count..desired {
            let template = &rs["spec"]["template"];
            let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(5).collect();
            let mut pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{}-{suffix}", name(rs)), "labels": template["metadata"]["labels"],
                             "ownerReferences": [owner_reference(rs, "ReplicaSet", "apps/v1")]},
                "spec": template["spec"],
                "status": {"phase": "Pending"},
            });
            if let Some(annotations) = template["metadata"].get("annotations") {
                pod["metadata"]["annotations"] = annotations.clone();
            }
            let _ = store.create(&kinds.pods, ns, pod, false);
        }
    } else if count > desired {
        let mut doomed = mine.clone();
        doomed.sort_by_key(|p| deletion_rank(p));
        for pod in doomed.into_iter().take((count - desired) as usize) {
            let grace = pod["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
            let _ = crate::pods::begin_termination(store, &kinds.pods, ns, name(pod), grace);
        }
    }
    let pods = all(store, &kinds.pods, Some(ns));
    let mine: Vec<&Value> = owned_by(&pods, rs).into_iter().filter(|p| !is_terminating(p)).collect();
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let status = json!({
        "replicas": mine.len(),
        "readyReplicas": mine.iter().filter(|p| is_ready(p)).count(),
        "availableReplicas": mine.iter().filter(|p| is_available(p, min_ready)).count(),
        "observedGeneration": rs["metadata"]["generation"],
    });
    if rs["status"] != status {
        let _ = store.modify(&kinds.replicasets, ns, name(rs), Some("status"), false, |current| {
            let mut next = current.clone();
            next["status"] = status.clone();
            Ok(next)
        });
    }
}
