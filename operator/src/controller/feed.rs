//! What a watch does with each event before the Controller sees it: the index learns what
//! arrives, the store takes the event, the index lets go of what left, and an object whose kept
//! part did not change wakes nobody.
//!
//! Why the last: a reconcile reads only what `slim` keeps of an object, so a change to anything
//! else cannot change its decision. The Deployment controller rewrites a Deployment's status
//! several times per scale (replicas, updated, ready, available, conditions), none of which the
//! reconciler reads; kwok and the kubelet touch pod fields it does not read either. Each such
//! event woke the rollout for a reconcile that found nothing new: a wave of 1,000 rollouts made
//! ~125 reconciles per rollout and kept all 16 reconcile slots full. The store still takes every
//! event: the resourceVersions it holds are what `caches` compares a rollout's writes with.
//!
//! kube-runtime's `reflect` does the store's part (`Writer::apply_watcher_event`, and a
//! dispatch to subscribers this operator does not have); it is done here because the
//! comparison needs the object the store held before the event.

use kube::{
    Resource,
    runtime::{
        reflector::{Store, store::Writer},
        watcher::Event,
    },
};

use super::{by_rollout::ByRollout, packed::Packed};

pub struct Feed<K: Resource<DynamicType = ()> + 'static> {
    writer: Writer<Packed<K>>,
    store: Store<Packed<K>>,
    index: ByRollout,
}

impl<K: Resource<DynamicType = ()> + 'static> Feed<K> {
    pub fn new(writer: Writer<Packed<K>>, index: ByRollout) -> Self {
        Self { store: writer.as_reader(), writer, index }
    }

    /// Takes one event into the index and the store; whether it shows anything new (only
    /// then does it wake the objects' rollouts).
    pub fn take(&mut self, event: &Event<Packed<K>>) -> bool {
        // What the store holds of the object until now: looked up once, for both questions.
        let held = super::by_rollout::held(&self.store, event);
        let news = match event {
            Event::Apply(object) => held.as_ref().is_none_or(|held| object.differs_from(held)),
            Event::Delete(_) | Event::Init | Event::InitApply(_) | Event::InitDone => true,
        };
        self.index.before_store(event, held.as_deref());
        self.writer.apply_watcher_event(event);
        self.index.after_store(event, &self.store);
        news
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::runtime::reflector::ObjectRef;
    use serde_json::json;

    use super::*;
    use crate::controller::{by_rollout, packed::pack_event};

    fn deployment(version: &str, replicas: i32, ready: i32) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "docs-r1", "namespace": "ns", "resourceVersion": version,
                         "labels": {"mcprollout.dev/rollout": "docs"}},
            "spec": {"replicas": replicas},
            "status": {"readyReplicas": ready},
        }))
        .unwrap()
    }

    /// As the watch keeps it: a Deployment's status is not read, so not kept.
    fn slimmed(mut d: Deployment) -> Deployment {
        d.status = None;
        d
    }

    #[test]
    fn only_a_change_to_what_is_kept_wakes_the_rollout() {
        let (store, writer) = kube::runtime::reflector::store();
        let mut feed = Feed::new(writer, ByRollout::new(by_rollout::rollout_label));
        let mut take = |event| feed.take(&pack_event(event).unwrap());
        assert!(take(Event::Init));
        assert!(take(Event::InitApply(slimmed(deployment("5", 1, 0)))), "the first list wakes every rollout");
        assert!(take(Event::InitDone));
        // The Deployment controller counted a pod ready: a new resourceVersion, nothing kept changed.
        assert!(!take(Event::Apply(slimmed(deployment("6", 1, 1)))));
        let key = ObjectRef::new("docs-r1").within("ns");
        assert_eq!(
            store.get(&key).unwrap().meta().resource_version.as_deref(),
            Some("6"),
            "the store still takes it: the caches compare its version"
        );
        assert!(take(Event::Apply(slimmed(deployment("7", 2, 1)))), "scaled: its spec changed");
        assert!(take(Event::Delete(slimmed(deployment("8", 2, 1)))));
        assert!(store.get(&key).is_none());
        assert!(take(Event::Apply(slimmed(deployment("9", 2, 1)))), "created again: new to the store");
    }
}
