//! The rollouts' Deployments, pods, Services, EndpointSlices and disruption budgets as the
//! controller's own watches see them, and what makes reading them safe.
//!
//! A watch delivers an event to its store before it wakes the rollout (kube-runtime's
//! `reflect` writes the store, then passes the event on), so a reconcile woken by a change sees
//! it. What a store can lag is this operator's own writes: a reconcile that created a
//! Deployment or put a pod into rotation is often followed, within milliseconds, by another
//! (its own status write wakes it), before the watch has brought those writes back. Decided
//! from such a store, the next reconcile sees the world before its own write: a Deployment it
//! just created missing (created again: 409, read as a name conflict), a pod out of rotation
//! that it just put in. So each write's resourceVersion is kept per rollout, and a store is
//! read only once it holds that version of the object or a newer one (deleted objects: gone);
//! until then, for a bounded wait, the reconcile falls back to fresh LISTs. This is the
//! ReplicaSet controller's "expectations" made exact by resource versions.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
    policy::v1::PodDisruptionBudget,
};
use kube::{Resource, runtime::reflector::Store};
// Tokio's clock: the same in production, and a test can move it.
use tokio::time::Instant;

use super::{by_rollout::ByRollout, packed::Packed, workers::RolloutKey};

/// How long a reconcile waits for the stores to show its rollout's last writes before it
/// lists instead. A watch normally brings a write back within milliseconds.
const CATCH_UP_WAIT: Duration = Duration::from_millis(500);
const CATCH_UP_POLL: Duration = Duration::from_millis(5);

/// A write whose object has not shown up in its store is forgotten after this long, as the
/// ReplicaSet controller's expectations are (5 minutes): an object deleted by somebody else
/// right after the write never shows, and its rollout would list forever.
const FORGET_AFTER: Duration = Duration::from_secs(300);

/// One write this operator made, as the API server answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub kind: String,
    pub name: String,
    /// The object's resourceVersion in the answer; `None` for a delete answered by a Status
    /// (the object was gone at once: shown only once absent).
    pub version: Option<String>,
    /// A delete: shown once the object is gone (or shows that version, still terminating).
    pub deleted: bool,
}

impl Written {
    pub fn of<K: Resource<DynamicType = ()>>(object: &K, deleted: bool) -> Option<Self> {
        Some(Self {
            kind: K::kind(&()).into_owned(),
            name: object.meta().name.clone()?,
            version: Some(object.meta().resource_version.clone()?),
            deleted,
        })
    }
}

/// Whether a store that holds `cached` (the object's resourceVersion there, `None`: absent)
/// shows `written`; `None` when the versions cannot be compared (not decimal numbers, which
/// the API server does not promise): the caller then lists.
pub fn shows(written: &Written, cached: Option<&str>) -> Option<bool> {
    let Some(cached) = cached else { return Some(written.deleted) };
    let Some(wanted) = &written.version else { return Some(false) };
    let (Ok(cached), Ok(wanted)) = (cached.parse::<u64>(), wanted.parse::<u64>()) else {
        return None;
    };
    Some(cached >= wanted)
}

/// One reconcile's writes, collected as they are made (also those made before an error).
#[derive(Default)]
pub struct Writes(Mutex<Vec<Written>>);

impl Writes {
    pub fn record<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.push(Written::of(object, false));
    }

    /// A delete, as answered: the object (still terminating, or as it was when it went), or a
    /// Status (gone at once; shown once absent).
    pub fn record_delete<K: Resource<DynamicType = ()>>(
        &self,
        name: &str,
        answer: &either::Either<K, kube::core::Status>,
    ) {
        match answer {
            either::Either::Left(object) => self.push(Written::of(object, true)),
            either::Either::Right(_) => self.push(Some(Written {
                kind: K::kind(&()).into_owned(),
                name: name.into(),
                version: None,
                deleted: true,
            })),
        }
    }

    fn push(&self, written: Option<Written>) {
        if let Some(w) = written {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(w);
        }
    }

    pub fn take(&self) -> Vec<Written> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// What a rollout's reconcile reads, from the stores.
pub struct Snapshot {
    pub deployments: Vec<Deployment>,
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub budgets: Vec<PodDisruptionBudget>,
    /// The EndpointSlices of the rollout's Service (`kubernetes.io/service-name`).
    pub slices: Vec<EndpointSlice>,
}

/// Why a reconcile listed instead of reading the stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// A store has not finished its first list.
    NotSynced,
    /// A store did not show one of the rollout's writes in time.
    Behind,
    /// A resourceVersion was not a number.
    Incomparable,
    /// A stored object did not decode (see `packed`).
    Undecodable,
}

impl Miss {
    pub fn as_str(self) -> &'static str {
        match self {
            Miss::NotSynced => "not_synced",
            Miss::Behind => "behind",
            Miss::Incomparable => "incomparable",
            Miss::Undecodable => "undecodable",
        }
    }
}

/// A watch's store and its index of which objects are which rollout's.
pub struct Indexed<K: Resource<DynamicType = ()> + 'static> {
    pub store: Store<Packed<K>>,
    pub index: ByRollout,
}

// Derived, this would ask `K` to be `Clone`; only the handles are cloned.
impl<K: Resource<DynamicType = ()> + 'static> Clone for Indexed<K> {
    fn clone(&self) -> Self {
        Self { store: self.store.clone(), index: self.index.clone() }
    }
}

impl<K: Resource<DynamicType = ()> + 'static> Indexed<K> {
    /// The objects of one rollout (by the index's key: its label), still packed.
    fn of_rollout(&self, namespace: &str, rollout: &str) -> Vec<Arc<Packed<K>>> {
        self.index.of_rollout(&self.store, namespace, rollout)
    }
}

#[derive(Clone)]
pub struct Stores {
    pub deployments: Indexed<Deployment>,
    pub pods: Indexed<Pod>,
    pub services: Indexed<Service>,
    pub budgets: Indexed<PodDisruptionBudget>,
    /// Indexed by `kubernetes.io/service-name`: the slices of the Service named as the rollout.
    pub slices: Indexed<EndpointSlice>,
}

pub struct Caches {
    stores: Stores,
    /// Writes not yet seen in their store, per rollout, with when they were made.
    pending: Mutex<HashMap<RolloutKey, Vec<(Written, Instant)>>>,
}

impl Caches {
    pub fn new(stores: Stores) -> Self {
        Self { stores, pending: Mutex::default() }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<RolloutKey, Vec<(Written, Instant)>>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps a reconcile's writes until the stores show them.
    pub fn wrote(&self, key: &RolloutKey, writes: Vec<Written>) {
        if writes.is_empty() {
            return;
        }
        let now = Instant::now();
        self.pending().entry(key.clone()).or_default().extend(writes.into_iter().map(|w| (w, now)));
    }

    /// The rollout is gone: so is what was kept for it.
    pub fn forget(&self, key: &RolloutKey) {
        self.pending().remove(key);
    }

    /// The rollout's objects from the stores, once they show its writes (waiting a little for
    /// them); otherwise why not.
    pub async fn read(&self, key: &RolloutKey) -> Result<Snapshot, Miss> {
        if !self.synced() {
            return Err(Miss::NotSynced);
        }
        let deadline = Instant::now() + CATCH_UP_WAIT;
        loop {
            match self.settle(key) {
                Ok(()) => return self.snapshot(key),
                Err(Miss::Behind) if Instant::now() < deadline => tokio::time::sleep(CATCH_UP_POLL).await,
                Err(miss) => return Err(miss),
            }
        }
    }

    fn synced(&self) -> bool {
        // A store that has not listed yet reads as empty: as if the rollout had lost every
        // revision. `wait_until_ready` with no wait is the only readiness kube exposes.
        use futures::FutureExt;
        let s = &self.stores;
        [
            s.deployments.store.wait_until_ready().now_or_never(),
            s.pods.store.wait_until_ready().now_or_never(),
            s.services.store.wait_until_ready().now_or_never(),
            s.budgets.store.wait_until_ready().now_or_never(),
            s.slices.store.wait_until_ready().now_or_never(),
        ]
        .iter()
        .all(|r| matches!(r, Some(Ok(()))))
    }

    /// Drops the writes the stores show (and those too old to wait for); `Ok` once none is left.
    fn settle(&self, key: &RolloutKey) -> Result<(), Miss> {
        let mut pending = self.pending();
        let Some(writes) = pending.get_mut(key) else { return Ok(()) };
        let mut incomparable = false;
        writes.retain(|(w, at)| {
            if at.elapsed() > FORGET_AFTER {
                return false;
            }
            match shows(w, self.cached_version(&key.0, w).as_deref()) {
                Some(shown) => !shown,
                None => {
                    incomparable = true;
                    false
                }
            }
        });
        let behind = !writes.is_empty();
        if !behind {
            pending.remove(key);
        }
        match (incomparable, behind) {
            (true, _) => Err(Miss::Incomparable),
            (false, true) => Err(Miss::Behind),
            (false, false) => Ok(()),
        }
    }

    fn cached_version(&self, namespace: &str, w: &Written) -> Option<String> {
        let s = &self.stores;
        let (ns, name) = (namespace, w.name.as_str());
        match w.kind.as_str() {
            "Deployment" => version_in(&s.deployments.store, ns, name),
            "Pod" => version_in(&s.pods.store, ns, name),
            "Service" => version_in(&s.services.store, ns, name),
            "PodDisruptionBudget" => version_in(&s.budgets.store, ns, name),
            _ => version_in(&s.slices.store, ns, name),
        }
    }

    fn snapshot(&self, (namespace, name): &RolloutKey) -> Result<Snapshot, Miss> {
        let s = &self.stores;
        Ok(Snapshot {
            deployments: unpacked(s.deployments.of_rollout(namespace, name))?,
            pods: unpacked(s.pods.of_rollout(namespace, name))?,
            services: unpacked(s.services.of_rollout(namespace, name))?,
            budgets: unpacked(s.budgets.of_rollout(namespace, name))?,
            slices: unpacked(s.slices.of_rollout(namespace, name))?,
        })
    }
}

/// The objects decoded; one that does not decode (it was encoded from the same type: not
/// expected) makes the reconcile list instead.
fn unpacked<K>(objects: impl IntoIterator<Item = Arc<Packed<K>>>) -> Result<Vec<K>, Miss>
where
    K: Resource<DynamicType = ()> + serde::Serialize + serde::de::DeserializeOwned,
{
    objects.into_iter().map(|o| o.unpack().map_err(|_| Miss::Undecodable)).collect()
}

/// The resourceVersion of an object in a store, if it is there.
fn version_in<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<String>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let object = store.get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))?;
    object.meta().resource_version.clone()
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::*;
    use crate::{api::labels, controller::feed::Feed};

    fn deployment(name: &str, version: &str) -> Deployment {
        serde_json::from_value(json!({"metadata": {
            "name": name, "namespace": "ns", "resourceVersion": version,
            "labels": {labels::ROLLOUT: "docs"},
        }}))
        .unwrap()
    }

    /// A store fed as the watch feeds it (`feed::Feed`: index, store, index).
    struct Fed<K: Resource<DynamicType = ()> + 'static>(Feed<K>);

    impl<K: Resource<DynamicType = ()> + 'static> Fed<K> {
        fn new() -> (Indexed<K>, Self) {
            Self::keyed(super::super::by_rollout::rollout_label)
        }

        fn keyed(key_of: super::super::by_rollout::KeyOf) -> (Indexed<K>, Self) {
            let (store, writer) = kube::runtime::reflector::store();
            let index = ByRollout::new(key_of);
            (Indexed { store, index: index.clone() }, Self(Feed::new(writer, index)))
        }

        fn feed(&mut self, event: &Event<Packed<K>>) {
            self.0.take(event);
        }

        fn listed(&mut self) {
            self.feed(&Event::Init);
            self.feed(&Event::InitDone);
        }
    }

    struct Writers {
        deployments: Fed<Deployment>,
        others: (Fed<Pod>, Fed<Service>, Fed<PodDisruptionBudget>, Fed<EndpointSlice>),
    }

    impl Writers {
        fn listed(&mut self) {
            self.deployments.listed();
            self.others.0.listed();
            self.others.1.listed();
            self.others.2.listed();
            self.others.3.listed();
        }
    }

    fn caches() -> (Caches, Writers) {
        let (deployments, dw) = Fed::new();
        let (pods, pw) = Fed::new();
        let (services, sw) = Fed::new();
        let (budgets, bw) = Fed::new();
        let (slices, ew) = Fed::keyed(super::super::by_rollout::service_name);
        let caches = Caches::new(Stores { deployments, pods, services, budgets, slices });
        (caches, Writers { deployments: dw, others: (pw, sw, bw, ew) })
    }

    fn packed(event: Event<Deployment>) -> Event<Packed<Deployment>> {
        super::super::packed::pack_event(event).unwrap()
    }

    fn key() -> RolloutKey {
        ("ns".into(), "docs".into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_is_read_only_once_it_shows_the_rollouts_own_writes() {
        let (caches, mut w) = caches();
        assert_eq!(caches.read(&key()).await.err(), Some(Miss::NotSynced), "before the first lists");
        w.listed();
        assert!(caches.read(&key()).await.unwrap().deployments.is_empty());

        // This operator created a Deployment (the API server answered version 7); the watch has
        // not brought it back yet. Read now, the rollout would have no Deployment: the stall
        // and the 409 "name conflict" of a create repeated. It lists instead.
        caches.wrote(&key(), Written::of(&deployment("docs-r1", "7"), false).into_iter().collect());
        assert_eq!(caches.read(&key()).await.err(), Some(Miss::Behind));
        // An older version of it is not enough either.
        w.deployments.feed(&packed(Event::Apply(deployment("docs-r1", "6"))));
        assert_eq!(caches.read(&key()).await.err(), Some(Miss::Behind));
        w.deployments.feed(&packed(Event::Apply(deployment("docs-r1", "9"))));
        let read = caches.read(&key()).await.unwrap();
        assert_eq!(read.deployments, vec![deployment("docs-r1", "9")], "decoded as written");
        // Settled: another rollout's writes or none at all do not hold this one.
        caches.wrote(
            &("ns".into(), "other".into()),
            Written::of(&deployment("other-r1", "10"), false).into_iter().collect(),
        );
        assert!(caches.read(&key()).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_delete_is_shown_once_the_store_drops_it_and_old_writes_are_forgotten() {
        let (caches, mut w) = caches();
        w.listed();
        w.deployments.feed(&packed(Event::Apply(deployment("docs-r1", "5"))));
        let writes = Writes::default();
        writes.record_delete::<Deployment>("docs-r1", &either::Either::Right(kube::core::Status::success()));
        caches.wrote(&key(), writes.take());
        assert_eq!(caches.read(&key()).await.err(), Some(Miss::Behind), "still in the store");
        w.deployments.feed(&packed(Event::Delete(deployment("docs-r1", "5"))));
        assert!(caches.read(&key()).await.unwrap().deployments.is_empty());

        // A write whose object never shows (deleted by somebody else at once) holds the
        // rollout on lists for a while, not forever.
        caches.wrote(&key(), Written::of(&deployment("docs-r2", "8"), false).into_iter().collect());
        assert_eq!(caches.read(&key()).await.err(), Some(Miss::Behind));
        tokio::time::advance(FORGET_AFTER + Duration::from_secs(1)).await;
        assert!(caches.read(&key()).await.is_ok());
    }

    #[tokio::test]
    async fn a_rollout_reads_the_slices_of_its_own_service_not_of_its_canary_service() {
        let (caches, mut w) = caches();
        w.listed();
        let slice = |name: &str, service: &str| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "resourceVersion": "3", "labels": {
                    labels::ROLLOUT: "docs", "kubernetes.io/service-name": service,
                }},
                "addressType": "IPv4", "endpoints": [],
            }))
            .unwrap()
        };
        for s in [slice("docs-abc", "docs"), slice("docs-canary-def", "docs-canary")] {
            w.others.3.feed(&super::super::packed::pack_event(Event::Apply(s)).unwrap());
        }
        let read = caches.read(&key()).await.unwrap();
        assert_eq!(read.slices, vec![slice("docs-abc", "docs")]);
    }

    fn written(version: &str, deleted: bool) -> Written {
        Written { kind: "Pod".into(), name: "p".into(), version: Some(version.into()), deleted }
    }

    #[test]
    fn a_store_shows_a_write_at_its_version_or_a_newer_one() {
        assert_eq!(shows(&written("120", false), Some("119")), Some(false));
        assert_eq!(shows(&written("120", false), Some("120")), Some(true));
        assert_eq!(shows(&written("120", false), Some("1000")), Some(true), "compared as numbers, not text");
        assert_eq!(shows(&written("120", false), None), Some(false), "created, not yet seen");
    }

    #[test]
    fn a_delete_is_shown_once_the_object_is_gone_or_terminating_at_that_version() {
        assert_eq!(shows(&written("120", true), None), Some(true));
        assert_eq!(shows(&written("120", true), Some("119")), Some(false));
        assert_eq!(shows(&written("120", true), Some("121")), Some(true));
        let gone_at_once = Written { version: None, ..written("0", true) };
        assert_eq!(shows(&gone_at_once, Some("121")), Some(false));
        assert_eq!(shows(&gone_at_once, None), Some(true));
    }

    #[test]
    fn versions_that_are_not_numbers_cannot_be_compared() {
        assert_eq!(shows(&written("abc", false), Some("120")), None);
        assert_eq!(shows(&written("120", false), Some("x1")), None);
    }
}
