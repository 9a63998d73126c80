//! Which of a watch's stored objects belong to which rollout, kept by the watch beside its
//! store, so that a reconcile finds its rollout's handful of objects by name.
//!
//! kube-runtime's `Store` is keyed by name and has no other index: finding "the objects
//! labelled with this rollout" copied the `Arc` of every object in five stores
//! (`Store::state()`) and compared each one's label, O(all rollouts) per reconcile. A CPU
//! profile of the operator in a wave of 300 rollouts (`perf`, `hack/bench.sh scale 300`) put
//! 22% of its samples there, and it grows with every rollout added.
//!
//! The index never misses an object its store holds: an object that arrives is listed before
//! the store takes it. One that leaves (deleted, or labelled for another rollout) is unlisted
//! as the store lets it go, and a relist rebuilds the index from the store once it is swapped
//! in. A name listed that the store does not hold reads as absent, and an object is returned
//! only if the store's copy still carries the rollout's key.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, PoisonError, RwLock},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Resource,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher::Event,
    },
};

use crate::api::labels;

/// What `store` holds of the object an event is about, before the store takes the event (the
/// index and the feed both ask, once per event).
pub fn held<K>(store: &Store<K>, event: &Event<K>) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    match event {
        Event::Apply(object) | Event::InitApply(object) | Event::Delete(object) => {
            store.get(&ObjectRef::from_obj(object))
        }
        Event::Init | Event::InitDone => None,
    }
}

/// The rollout an object belongs to, read from its metadata (a label).
pub type KeyOf = fn(&ObjectMeta) -> Option<&str>;

/// Most objects: the rollout's label.
pub fn rollout_label(meta: &ObjectMeta) -> Option<&str> {
    meta.labels.as_ref()?.get(labels::ROLLOUT).map(String::as_str)
}

/// EndpointSlices: the Service they serve, named as the rollout (the EndpointSlice controller
/// copies the Service's labels too, so a canary Service's slices carry the rollout's label).
pub fn service_name(meta: &ObjectMeta) -> Option<&str> {
    meta.labels.as_ref()?.get("kubernetes.io/service-name").map(String::as_str)
}

/// (namespace, rollout) → the names of the rollout's objects in one store.
type Entries = HashMap<(String, String), BTreeSet<String>>;

#[derive(Clone)]
pub struct ByRollout {
    entries: Arc<RwLock<Entries>>,
    key_of: KeyOf,
}

impl ByRollout {
    pub fn new(key_of: KeyOf) -> Self {
        Self { entries: Arc::default(), key_of }
    }

    /// The entry of `meta`'s object under `rollout`: (namespace, rollout) and name.
    fn entry(meta: &ObjectMeta, rollout: &str) -> Option<((String, String), String)> {
        Some(((meta.namespace.clone()?, rollout.to_owned()), meta.name.clone()?))
    }

    fn list(entries: &mut Entries, meta: &ObjectMeta, rollout: &str) {
        if let Some((at, name)) = Self::entry(meta, rollout) {
            entries.entry(at).or_default().insert(name);
        }
    }

    fn unlist(entries: &mut Entries, meta: &ObjectMeta, rollout: &str) {
        let Some((at, name)) = Self::entry(meta, rollout) else { return };
        if let Some(names) = entries.get_mut(&at) {
            names.remove(&name);
            if names.is_empty() {
                entries.remove(&at);
            }
        }
    }

    /// Called with each event before the store takes it; `held` is what the store holds of
    /// the event's object until then (the caller has looked it up already).
    pub fn before_store<K>(&self, event: &Event<K>, held: Option<&K>)
    where
        K: Resource<DynamicType = ()>,
    {
        let key_of = self.key_of;
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Apply(object) | Event::InitApply(object) => {
                let now = key_of(object.meta());
                if let Some(rollout) = now {
                    Self::list(&mut entries, object.meta(), rollout);
                }
                // Moved to another rollout (or lost the label): no longer the old one's.
                if let Event::Apply(_) = event
                    && let Some(before) = held
                    && let Some(was) = key_of(before.meta()).filter(|was| Some(*was) != now)
                {
                    Self::unlist(&mut entries, before.meta(), was);
                }
            }
            Event::Delete(object) => {
                if let Some(rollout) = key_of(object.meta()) {
                    Self::unlist(&mut entries, object.meta(), rollout);
                }
                if let Some(before) = held
                    && let Some(was) = key_of(before.meta())
                {
                    Self::unlist(&mut entries, before.meta(), was);
                }
            }
            Event::Init | Event::InitDone => {}
        }
    }

    /// Called with each event after the store took it: a relist's end swaps the store's whole
    /// content, so the index is rebuilt from it (what the relist no longer found goes).
    pub fn after_store<K>(&self, event: &Event<K>, store: &Store<K>)
    where
        K: Resource<DynamicType = ()> + Clone,
    {
        if !matches!(event, Event::InitDone) {
            return;
        }
        let mut rebuilt = Entries::new();
        for object in store.state() {
            if let Some(rollout) = (self.key_of)(object.meta()) {
                Self::list(&mut rebuilt, object.meta(), rollout);
            }
        }
        *self.entries.write().unwrap_or_else(PoisonError::into_inner) = rebuilt;
    }

    /// The objects of `rollout` in `namespace` that `store` holds, by name.
    pub fn of_rollout<K>(&self, store: &Store<K>, namespace: &str, rollout: &str) -> Vec<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone,
    {
        let names: Vec<String> = {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            let at = (namespace.to_owned(), rollout.to_owned());
            entries.get(&at).map(|names| names.iter().cloned().collect()).unwrap_or_default()
        };
        names
            .iter()
            .filter_map(|name| store.get(&ObjectRef::new(name).within(namespace)))
            .filter(|object| (self.key_of)(object.meta()) == Some(rollout))
            .collect()
    }

    /// How many names the index holds (for tests: what left is unlisted).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).values().map(BTreeSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::reflector::{self, store::Writer};
    use serde_json::json;

    use super::*;

    fn pod(namespace: &str, name: &str, rollout: Option<&str>) -> Pod {
        let labels = rollout.map(|r| json!({labels::ROLLOUT: r}));
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace, "labels": labels}}))
            .unwrap()
    }

    /// What the watch does with each event (`feed::Feed`, for stores of packed objects):
    /// index, store, index.
    fn feed(index: &ByRollout, writer: &mut Writer<Pod>, store: &Store<Pod>, event: Event<Pod>) {
        index.before_store(&event, held(store, &event).as_deref());
        writer.apply_watcher_event(&event);
        index.after_store(&event, store);
    }

    fn names(objects: Vec<Arc<Pod>>) -> Vec<String> {
        objects.iter().map(|o| o.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn a_rollout_reads_its_own_objects_and_no_others() {
        let (store, mut writer) = reflector::store();
        let index = ByRollout::new(rollout_label);
        let mut feed = |event| feed(&index, &mut writer, &store, event);
        feed(Event::Init);
        feed(Event::InitApply(pod("a", "docs-1", Some("docs"))));
        feed(Event::InitApply(pod("a", "search-1", Some("search"))));
        feed(Event::InitApply(pod("b", "docs-1", Some("docs"))));
        feed(Event::InitApply(pod("a", "unlabelled", None)));
        feed(Event::InitDone);
        feed(Event::Apply(pod("a", "docs-2", Some("docs"))));
        assert_eq!(names(index.of_rollout(&store, "a", "docs")), ["docs-1", "docs-2"]);
        assert_eq!(names(index.of_rollout(&store, "b", "docs")), ["docs-1"], "namespaces apart");
        assert!(index.of_rollout(&store, "a", "nothing").is_empty());

        // Relabelled for another rollout: read there, not here.
        feed(Event::Apply(pod("a", "docs-2", Some("search"))));
        assert_eq!(names(index.of_rollout(&store, "a", "docs")), ["docs-1"]);
        assert_eq!(names(index.of_rollout(&store, "a", "search")), ["docs-2", "search-1"]);
        // Deleted: gone from the index as well as the store.
        feed(Event::Delete(pod("a", "docs-1", Some("docs"))));
        assert!(index.of_rollout(&store, "a", "docs").is_empty());
        assert_eq!(index.len(), 3, "search's two in a, docs' one in b");
    }

    #[test]
    fn an_object_arriving_is_listed_before_the_store_holds_it() {
        let (store, mut writer) = reflector::store();
        let index = ByRollout::new(rollout_label);
        feed(&index, &mut writer, &store, Event::Init);
        feed(&index, &mut writer, &store, Event::InitDone);
        // Between the index and the store (another thread reading): not yet there, not wrong.
        let event = Event::Apply(pod("a", "docs-1", Some("docs")));
        index.before_store(&event, held(&store, &event).as_deref());
        assert!(index.of_rollout(&store, "a", "docs").is_empty(), "listed, not yet held: absent");
        writer.apply_watcher_event(&event);
        assert_eq!(names(index.of_rollout(&store, "a", "docs")), ["docs-1"], "held: found at once");
    }

    #[test]
    fn a_relist_rebuilds_the_index_from_what_it_found() {
        let (store, mut writer) = reflector::store();
        let index = ByRollout::new(rollout_label);
        let mut feed = |event| feed(&index, &mut writer, &store, event);
        feed(Event::Init);
        feed(Event::InitApply(pod("a", "docs-1", Some("docs"))));
        feed(Event::InitApply(pod("a", "docs-2", Some("docs"))));
        feed(Event::InitDone);
        // The watch broke; docs-1 was deleted meanwhile and docs-3 created.
        feed(Event::Init);
        feed(Event::InitApply(pod("a", "docs-2", Some("docs"))));
        feed(Event::InitApply(pod("a", "docs-3", Some("docs"))));
        // Until the relist ends, the store still holds what it had: so does the index.
        assert_eq!(names(index.of_rollout(&store, "a", "docs")), ["docs-1", "docs-2"]);
        feed(Event::InitDone);
        assert_eq!(names(index.of_rollout(&store, "a", "docs")), ["docs-2", "docs-3"]);
        assert_eq!(index.len(), 2);
    }
}
