//! The McpRollouts as this operator last wrote their status, until the watch shows as much.
//!
//! A status-only change of an McpRollout wakes nobody (see `rollout_changed`), so the watch's
//! copy of a rollout can lag the status this operator just wrote: a reconcile woken meanwhile
//! by a pod or an EndpointSlice would decide from the older status, its write would be refused
//! (the resourceVersion precondition), and it would read the rollout again and decide a second
//! time. Under load that was most of the `get mcprollouts` (9.6/s in a wave of 1,000). The
//! write's answer is the whole object at a newer version: a reconcile decides from whichever
//! of the two is newer, and the answer is dropped as soon as the watch has caught up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;

use super::slim;
use super::workers::RolloutKey;
use crate::api::McpRollout;

#[derive(Default)]
pub struct OwnWrites(Mutex<HashMap<RolloutKey, Arc<McpRollout>>>);

impl OwnWrites {
    /// Keeps the API server's answer to a status write (slimmed as the watch's copies are).
    pub fn keep(&self, key: RolloutKey, mut answer: McpRollout) {
        slim::object(&mut answer);
        self.lock().insert(key, Arc::new(answer));
    }

    /// The newer of the watch's copy and the last status write's answer. The answer is
    /// forgotten once the watch shows its version (or a later one), or when the two versions
    /// cannot be ordered (not decimal numbers, which the API server does not promise): the
    /// watch's copy then wins, as it did before anything was kept.
    pub fn newest(&self, key: &RolloutKey, watched: Arc<McpRollout>) -> Arc<McpRollout> {
        let mut kept = self.lock();
        let Some(written) = kept.get(key) else { return watched };
        if is_older(&watched, written) == Some(true) {
            return written.clone();
        }
        kept.remove(key);
        watched
    }

    pub fn forget(&self, key: &RolloutKey) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RolloutKey, Arc<McpRollout>>> {
        // A panic while holding this lock left a whole map behind: still usable.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether `a` is an older version of the object than `b`; `None` when they cannot be ordered.
fn is_older(a: &McpRollout, b: &McpRollout) -> Option<bool> {
    if a.uid() != b.uid() {
        // A rollout deleted and created again under the same name: the old write says
        // nothing about the new object.
        return None;
    }
    let version = |o: &McpRollout| o.resource_version()?.parse::<u64>().ok();
    Some(version(a)? < version(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::McpRolloutStatus;

    fn rollout(uid: &str, version: &str, message: &str) -> McpRollout {
        let mut r: McpRollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "mcprollout.dev/v1alpha1", "kind": "McpRollout",
            "metadata": {"name": "a", "namespace": "ns", "uid": uid, "resourceVersion": version,
                         "managedFields": [{"manager": "mcp-rollout", "operation": "Apply"}]},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
                     "strategy": {"canary": {"steps": [{"setWeight": 50}]}}},
        }))
        .unwrap();
        r.status = Some(McpRolloutStatus { message: Some(message.into()), ..Default::default() });
        r
    }

    fn key() -> RolloutKey {
        ("ns".into(), "a".into())
    }

    fn message(r: &McpRollout) -> &str {
        r.status.as_ref().and_then(|s| s.message.as_deref()).unwrap_or_default()
    }

    #[test]
    fn a_reconcile_decides_from_the_write_until_the_watch_shows_it() {
        let own = OwnWrites::default();
        own.keep(key(), rollout("u", "12", "RollingBack"));
        let lagging = Arc::new(rollout("u", "10", "Progressing"));
        let read = own.newest(&key(), lagging.clone());
        assert_eq!(message(&read), "RollingBack");
        assert!(read.metadata.managed_fields.is_none(), "kept slimmed, as the watch's copies");
        // Still kept while the watch lags.
        assert_eq!(message(&own.newest(&key(), lagging)), "RollingBack");
        // The watch caught up (a later version, somebody else's change): it wins, and the
        // write is forgotten.
        let caught_up = Arc::new(rollout("u", "13", "Paused"));
        assert_eq!(message(&own.newest(&key(), caught_up)), "Paused");
        assert_eq!(message(&own.newest(&key(), Arc::new(rollout("u", "10", "Progressing")))), "Progressing");
    }

    #[test]
    fn the_same_version_is_the_watchs() {
        let own = OwnWrites::default();
        own.keep(key(), rollout("u", "12", "RollingBack"));
        let watched = Arc::new(rollout("u", "12", "RollingBack"));
        assert!(Arc::ptr_eq(&own.newest(&key(), watched.clone()), &watched));
        assert!(own.lock().is_empty());
    }

    #[test]
    fn a_write_to_another_object_or_unordered_versions_are_ignored() {
        let own = OwnWrites::default();
        own.keep(key(), rollout("old-uid", "12", "RollingBack"));
        assert_eq!(
            message(&own.newest(&key(), Arc::new(rollout("new-uid", "5", "Progressing")))),
            "Progressing"
        );
        own.keep(key(), rollout("u", "opaque", "RollingBack"));
        assert_eq!(message(&own.newest(&key(), Arc::new(rollout("u", "5", "Progressing")))), "Progressing");
        own.keep(key(), rollout("u", "12", "RollingBack"));
        own.forget(&key());
        assert_eq!(message(&own.newest(&key(), Arc::new(rollout("u", "5", "Progressing")))), "Progressing");
    }
}
