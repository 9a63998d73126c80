//! Objects kept in the watches' stores as their JSON.
//!
//! A heap profile of the operator at rest with 1,000 rollouts (jemalloc's, `hack/bench.sh
//! scale`) put 56 of its 85 MiB live in the stores, already slimmed (`slim`): k8s-openapi's
//! types hold every optional field inline, so a pod with one container of which only the name
//! and ports are kept still takes a `PodSpec` and a `Container` of a few KiB each. The same
//! objects as JSON are a few hundred bytes. A reconcile reads its rollout's handful of objects
//! once, so it decodes them (microseconds each) instead of keeping thousands decoded.
//!
//! A packed object keeps decoded what selects it without decoding: the metadata the store keys
//! on, what the Controller's triggers map by and the index finds by (the rollout's label, an
//! EndpointSlice's Service, the controlling owner) and what the caches compare
//! (resourceVersion). Nothing else of its metadata (`pod-template-hash`, the app's own labels,
//! a pod's ReplicaSet are never read; the JSON keeps them all). The profile after packing put
//! ~10 of the remaining 60 MiB under the decoded labels and owners; with only these kept, the
//! live heap at rest at 1,000 rollouts stayed at 62 MiB: that attribution was not where the
//! memory was.

use std::{borrow::Cow, marker::PhantomData, sync::Arc};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, runtime::watcher};
use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};

use crate::api::labels;

/// The labels a packed object keeps decoded (all stay in its JSON).
const SELECTING_LABELS: [&str; 2] = [labels::ROLLOUT, "kubernetes.io/service-name"];

/// An object of kind `K` as JSON, with the part of its metadata that selects it: its
/// `labels()` are only the [`SELECTING_LABELS`] it has, its `owner_references()` only its
/// controller.
pub struct Packed<K> {
    meta: ObjectMeta,
    /// Shared: the store's copy and the one the watch passes on are the same bytes.
    json: Arc<str>,
    kind: PhantomData<fn() -> K>,
}

// Derived, these would ask `K` for the same traits; nothing of `K` is held.
impl<K> Clone for Packed<K> {
    fn clone(&self) -> Self {
        Self { meta: self.meta.clone(), json: self.json.clone(), kind: PhantomData }
    }
}

impl<K> std::fmt::Debug for Packed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed").field("meta", &self.meta).field("bytes", &self.json.len()).finish()
    }
}

impl<K: Resource<DynamicType = ()> + Serialize + DeserializeOwned> Packed<K> {
    pub fn pack(mut object: K) -> Result<Self, serde_json::Error> {
        // Kept beside the JSON, not in it: two versions of an object that differ only in their
        // resourceVersion (a change to something `slim` dropped) have the same JSON.
        let resource_version = object.meta_mut().resource_version.take();
        let json = serde_json::to_string(&object)?.into();
        let m = object.meta();
        let meta = ObjectMeta {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            resource_version,
            uid: m.uid.clone(),
            labels: m.labels.as_ref().map(|labels| {
                labels
                    .iter()
                    .filter(|(k, _)| SELECTING_LABELS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            owner_references: m
                .owner_references
                .as_ref()
                .map(|owners| owners.iter().filter(|o| o.controller == Some(true)).cloned().collect()),
            ..ObjectMeta::default()
        };
        Ok(Self { meta, json, kind: PhantomData })
    }

    pub fn unpack(&self) -> Result<K, serde_json::Error> {
        let mut object: K = serde_json::from_str(&self.json)?;
        object.meta_mut().resource_version.clone_from(&self.meta.resource_version);
        Ok(object)
    }
}

impl<K> Packed<K> {
    /// Whether this version of the object shows anything `previous` did not (the same object
    /// kept as it is, but for its resourceVersion, shows nothing new).
    pub fn differs_from(&self, previous: &Self) -> bool {
        self.json != previous.json
    }
}

/// Decoding a packed object decodes the object and packs it (kube's Controller asks the types
/// it is given triggers of to be decodable).
impl<'de, K: Resource<DynamicType = ()> + Serialize + DeserializeOwned> Deserialize<'de> for Packed<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Packed::pack(K::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Packed<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// A watch event with its object packed. Encoding a k8s-openapi object as JSON does not fail
/// (string keys only); were it to, the event is passed on as the watch's error, which the
/// Controller logs and the watch's next event or re-list repairs.
pub fn pack_event<K>(event: watcher::Event<K>) -> Result<watcher::Event<Packed<K>>, watcher::Error>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
{
    let pack =
        |object: K| Packed::pack(object).map_err(|e| watcher::Error::WatchFailed(kube::Error::SerdeError(e)));
    Ok(match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(pack(object)?),
        watcher::Event::Delete(object) => watcher::Event::Delete(pack(object)?),
        watcher::Event::InitApply(object) => watcher::Event::InitApply(pack(object)?),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::{
        ResourceExt,
        runtime::reflector::{self, ObjectRef},
    };
    use serde_json::json;

    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web-abc", "namespace": "ns", "resourceVersion": "42", "uid": "u1",
                "labels": {"mcprollout.dev/rollout": "web", "pod-template-hash": "5d9f", "app": "web"},
                "annotations": {"example.com/keep": "yes"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-r1",
                                     "uid": "u2", "controller": true},
                                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "u3"}],
            },
            "spec": {"containers": [{"name": "server", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": "10.0.0.7", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_packed_object_unpacks_to_itself() {
        let packed = Packed::pack(pod()).unwrap();
        assert_eq!(packed.unpack().unwrap(), pod());
    }

    #[test]
    fn a_new_version_that_changed_nothing_kept_is_no_different() {
        let packed = Packed::pack(pod()).unwrap();
        let mut touched = pod();
        touched.metadata.resource_version = Some("43".into());
        let touched = Packed::pack(touched).unwrap();
        assert!(!touched.differs_from(&packed));
        assert_eq!(touched.unpack().unwrap().metadata.resource_version.as_deref(), Some("43"));
        let mut unready = pod();
        unready.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        assert!(Packed::pack(unready).unwrap().differs_from(&packed));
    }

    #[test]
    fn decoding_packs() {
        let decoded: Packed<Pod> = serde_json::from_value(serde_json::to_value(pod()).unwrap()).unwrap();
        assert_eq!(decoded.unpack().unwrap(), pod());
    }

    #[test]
    fn a_packed_object_is_selected_as_the_object_is() {
        let packed = Packed::pack(pod()).unwrap();
        assert_eq!(Packed::<Pod>::kind(&()), "Pod");
        assert_eq!(Packed::<Pod>::url_path(&(), Some("ns")), Pod::url_path(&(), Some("ns")));
        // What selects it, and nothing else: the rollout's label, the controller.
        assert_eq!(packed.labels().len(), 1);
        assert_eq!(packed.labels().get(labels::ROLLOUT), pod().labels().get(labels::ROLLOUT));
        assert_eq!(packed.owner_references(), &pod().owner_references()[..1]);
        assert_eq!(packed.resource_version(), pod().resource_version());
        let key = ObjectRef::from_obj(&packed);
        assert_eq!((key.name.as_str(), key.namespace.as_deref()), ("web-abc", Some("ns")));
    }

    #[test]
    fn a_store_of_packed_objects_follows_the_watch() {
        let (store, mut writer) = reflector::store::<Packed<Pod>>();
        let applied = pack_event(watcher::Event::Apply(pod())).unwrap();
        writer.apply_watcher_event(&applied);
        let key = ObjectRef::new("web-abc").within("ns");
        assert_eq!(store.get(&key).unwrap().unpack().unwrap(), pod());
        writer.apply_watcher_event(&pack_event(watcher::Event::Delete(pod())).unwrap());
        assert!(store.get(&key).is_none());
    }

    #[test]
    fn packed_is_a_fraction_of_decoded() {
        // What the profile showed: the decoded pod's inline size alone is several times its JSON.
        let json = Packed::pack(pod()).unwrap().json.len();
        let inline =
            std::mem::size_of::<Pod>() + std::mem::size_of::<k8s_openapi::api::core::v1::Container>();
        assert!(json * 4 < inline, "{json} bytes of JSON, {inline} bytes inline");
    }
}
