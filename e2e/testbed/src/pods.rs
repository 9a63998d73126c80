//! Graceful pod deletion: the pod stays, terminating, until its grace period ends (or
//! whatever runs it deletes it sooner with grace 0, as a kubelet does).

use std::time::Duration;

use serde_json::Value;

use std::sync::Arc;

use crate::{
    error::ApiError,
    resources::ResourceType,
    selectors::{FieldSelector, LabelSelector},
    store::{Propagation, Store},
};

/// How often `reap` looks for pods whose grace period is over.
const REAP_EVERY: Duration = Duration::from_millis(500);

pub fn begin_termination(
    store: &Arc<Store>,
    rt: &ResourceType,
    namespace: &str,
    name: &str,
    grace_seconds: u64,
) -> Result<Value, ApiError> {
    let object = store.mark_deleting(rt, namespace, name, grace_seconds)?;
    let store = store.clone();
    let (rt, namespace, name) = (rt.clone(), namespace.to_owned(), name.to_owned());
    let uid = object["metadata"]["uid"].clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(grace_seconds)).await;
        // Only the same pod: a new one of that name may exist by now.
        if store.get(&rt, &namespace, &name).is_ok_and(|p| p["metadata"]["uid"] == uid) {
            let _ = store.delete(&rt, &namespace, &name, Propagation::Background, false);
        }
    });
    Ok(object)
}

/// Removes terminating pods whose grace period is over and that nothing removed sooner (a
/// kubelet removes the pods it ran as soon as they have stopped). Pods the garbage collector
/// deletes get here; so would any pod whose timer in `begin_termination` was lost.
pub async fn reap(store: Arc<Store>) {
    let Some(pods) = store.resolve("", "v1", "pods") else { return };
    loop {
        let now = jiff::Timestamp::now();
        let (all, _) = store.list(&pods, None, &LabelSelector::default(), &FieldSelector::default());
        for pod in all {
            let metadata = &pod["metadata"];
            let Some(since) =
                metadata["deletionTimestamp"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok())
            else {
                continue;
            };
            let grace = metadata["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
            let has_finalizers = metadata["finalizers"].as_array().is_some_and(|f| !f.is_empty());
            if has_finalizers || now.as_second() < since.as_second() + grace {
                continue;
            }
            let (namespace, name) = (
                metadata["namespace"].as_str().unwrap_or_default(),
                metadata["name"].as_str().unwrap_or_default(),
            );
            let _ = store.delete(&pods, namespace, name, Propagation::Background, false);
        }
        tokio::time::sleep(REAP_EVERY).await;
    }
}
