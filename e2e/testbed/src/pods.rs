//! Graceful pod deletion: the pod stays, terminating, until its grace period ends (or
//! whatever runs it deletes it sooner with grace 0, as a kubelet does).

use std::time::Duration;

use serde_json::Value;

use std::sync::Arc;

use crate::{
    error::ApiError,
    resources::ResourceType,
    store::{Propagation, Store},
};

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
