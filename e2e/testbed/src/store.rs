//! The object store: every object as JSON, one global resourceVersion counter, an event log
//! for watches that resume, and the metadata rules of a real API server (uid, timestamps,
//! generation on spec changes only, finalizers, owner-reference garbage collection).

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::{
    error::ApiError,
    resources::{self, ResourceType},
    selectors::{FieldSelector, LabelSelector},
};

/// Events kept for watches that resume from an older resourceVersion; older ones get 410.
const EVENT_LOG: usize = 10_000;

/// One change, as a watch sends it.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub rv: u64,
    pub resource: String,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
    /// The object before this change (from the log), so a watch with a selector can turn an
    /// object that stops or starts matching into DELETED or ADDED, as a real server does.
    pub previous: Option<Value>,
}

/// How dependents are treated when their owner is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

type Key = (String, String, String);

/// Service cluster IPs (127.2.0.0/16), never reused within a process: several control planes
/// in one test binary must not hand out the same address.
static NEXT_CLUSTER_IP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A Secret's `stringData` is write-only: the API server folds it into `data` (base64), where
/// readers find it.
fn fold_string_data(rt: &ResourceType, object: &mut Value) {
    if rt.key() != "/v1/secrets" {
        return;
    }
    let Some(strings) = object.as_object_mut().and_then(|o| o.remove("stringData")) else { return };
    let Some(strings) = strings.as_object().cloned() else { return };
    let data = object["data"].as_object().cloned().unwrap_or_default();
    let mut data = data;
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        data.insert(key, json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text)));
    }
    object["data"] = Value::Object(data);
}

/// A random offset, fixed for the process, where its pod and cluster IPs start: two test beds
/// on one machine (a `testbed up` and a test run, say) then rarely meet on an address.
pub fn process_ip_offset() -> u32 {
    static OFFSET: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| (uuid::Uuid::new_v4().as_u128() % 65_000) as u32)
}

/// Live events, for a watch that has read the backlog.
pub type EventReceiver = broadcast::Receiver<Arc<WatchEvent>>;

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    types: BTreeMap<String, ResourceType>,
    log: VecDeque<Arc<WatchEvent>>,
    /// The oldest resourceVersion a watch may resume from.
    oldest: u64,
}

pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<WatchEvent>>,
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Everything but metadata and status: what `generation` counts changes of.
fn spec_part(object: &Value) -> Value {
    let mut rest = object.as_object().cloned().unwrap_or_default();
    for key in ["metadata", "status", "kind", "apiVersion"] {
        rest.remove(key);
    }
    Value::Object(rest)
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or_default().to_owned()
}

fn finalizers_of(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|f| f.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let types = resources::builtins().into_iter().map(|t| (t.key(), t)).collect();
        let (events, _) = broadcast::channel(4096);
        let store = Self {
            inner: Mutex::new(Inner {
                rv: 0,
                objects: BTreeMap::new(),
                types,
                log: VecDeque::new(),
                oldest: 0,
            }),
            events,
        };
        if let Some(namespaces) = store.resolve("", "v1", "namespaces") {
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
                let _ = store.create(&namespaces, "", namespace, false);
            }
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.lock().types.get(&format!("{group}/{version}/{plural}")).cloned()
    }

    pub fn types(&self) -> Vec<ResourceType> {
        self.lock().types.values().cloned().collect()
    }

    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .objects
            .get(&(rt.key(), namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.plural, name))
    }

    /// Objects of a kind (in one namespace, or all), filtered, in name order; and the list's
    /// resourceVersion.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let key = rt.key();
        let items = inner
            .objects
            .iter()
            .filter(|((k, ns, _), _)| *k == key && namespace.is_none_or(|n| n == ns))
            .map(|(_, o)| o)
            .filter(|o| labels.matches(&o["metadata"]["labels"]) && fields.matches(o))
            .cloned()
            .collect();
        (items, inner.rv)
    }

    /// The events after `rv` for a watch, and a receiver for those still to come; 410 when
    /// `rv` is older than the log.
    pub fn watch_from(&self, rv: u64) -> Result<(Vec<Arc<WatchEvent>>, EventReceiver), ApiError> {
        let inner = self.lock();
        if rv < inner.oldest {
            return Err(ApiError::gone(format!("too old resource version: {rv} ({})", inner.oldest)));
        }
        let receiver = self.events.subscribe();
        let backlog = inner.log.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((backlog, receiver))
    }

    fn emit(&self, inner: &mut Inner, rt: &ResourceType, kind: &'static str, object: Value) {
        let resource = rt.key();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
        let previous = (kind != "ADDED")
            .then(|| {
                inner.log.iter().rev().find(|e| {
                    e.resource == resource
                        && e.namespace == namespace
                        && e.object["metadata"]["name"] == object["metadata"]["name"]
                })
            })
            .flatten()
            .map(|e| e.object.clone());
        let event = Arc::new(WatchEvent { rv: inner.rv, resource, namespace, kind, object, previous });
        inner.log.push_back(event.clone());
        if inner.log.len() > EVENT_LOG
            && let Some(dropped) = inner.log.pop_front()
        {
            inner.oldest = dropped.rv;
        }
        let _ = self.events.send(event);
    }

    fn next_rv(inner: &mut Inner) -> String {
        inner.rv += 1;
        inner.rv.to_string()
    }

    pub fn create(
        &self,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        if !object.is_object() || !object["metadata"].is_object() && !object["metadata"].is_null() {
            return Err(ApiError::bad_request("the body is not an object with metadata"));
        }
        if object["metadata"].is_null() {
            object["metadata"] = json!({});
        }
        let mut name = name_of(&object);
        if name.is_empty() {
            let prefix = object["metadata"]["generateName"].as_str().unwrap_or_default().to_owned();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &rt.kind,
                    "",
                    vec![("metadata.name".into(), "Required value: name or generateName is required".into())],
                ));
            }
            let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(5).collect();
            name = format!("{prefix}{suffix}");
        }
        let body_namespace = object["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
        if rt.namespaced {
            if !body_namespace.is_empty() && body_namespace != namespace {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({body_namespace}) does not match the namespace sent on the request ({namespace})"
                )));
            }
            let ns_key = ("/v1/namespaces".to_owned(), String::new(), namespace.to_owned());
            if !inner.objects.contains_key(&ns_key) {
                return Err(ApiError::not_found("namespaces", namespace));
            }
        }
        let key = (rt.key(), if rt.namespaced { namespace.to_owned() } else { String::new() }, name.clone());
        if inner.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&rt.plural, &name));
        }
        crate::validation::prune_resource(rt, &mut object);
        crate::validation::validate(rt, &object, None)?;
        fold_string_data(rt, &mut object);
        let meta = object["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("metadata is not an object"))?;
        meta.insert("name".into(), json!(name));
        if rt.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        // The API server, not a controller, allocates a Service's cluster IP.
        if rt.key() == "/v1/services"
            && object["spec"]["clusterIP"].as_str().is_none_or(str::is_empty)
            && object["spec"]["type"].as_str() != Some("ExternalName")
        {
            let n = (process_ip_offset()
                + NEXT_CLUSTER_IP.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                % 65_000
                + 1;
            let ip = format!("127.2.{}.{}", n >> 8, n & 0xff);
            object["spec"]["clusterIP"] = json!(ip);
            object["spec"]["clusterIPs"] = json!([ip]);
        }
        object["apiVersion"] = json!(rt.api_version());
        object["kind"] = json!(rt.kind);
        if dry_run {
            return Ok(object);
        }
        object["metadata"]["resourceVersion"] = json!(Self::next_rv(&mut inner));
        if rt.key() == "apiextensions.k8s.io/v1/customresourcedefinitions" {
            object["status"] = crd_status(&object);
            Self::register_crd(&mut inner, &object);
        }
        inner.objects.insert(key, object.clone());
        self.emit(&mut inner, rt, "ADDED", object.clone());
        Ok(object)
    }

    fn register_crd(inner: &mut Inner, crd: &Value) {
        for rt in resources::from_crd(crd) {
            inner.types.insert(rt.key(), rt);
        }
    }

    /// Replaces an object (PUT), or its status (`subresource = Some("status")`).
    pub fn update(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        object: Value,
        subresource: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.modify(rt, namespace, name, subresource, dry_run, |current| {
            let sent_rv = object["metadata"]["resourceVersion"].as_str().unwrap_or_default();
            if !sent_rv.is_empty() && sent_rv != current["metadata"]["resourceVersion"].as_str().unwrap_or_default() {
                return Err(ApiError::conflict(
                    &rt.plural,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            if !name_of(&object).is_empty() && name_of(&object) != name {
                return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
            }
            Ok(object.clone())
        })
    }

    /// Read-modify-write of one object under the store's lock, with the metadata rules.
    pub fn modify(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        subresource: Option<&str>,
        dry_run: bool,
        change: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key =
            (rt.key(), if rt.namespaced { namespace.to_owned() } else { String::new() }, name.to_owned());
        let current =
            inner.objects.get(&key).cloned().ok_or_else(|| ApiError::not_found(&rt.plural, name))?;
        let mut next = change(&current)?;
        if !next.is_object() {
            return Err(ApiError::bad_request("the object is not a JSON object"));
        }
        match subresource {
            // A status write changes status only.
            Some("status") => {
                let status = next.get("status").cloned();
                // Field ownership of a status write is recorded too (server-side apply of
                // status removes what its manager stopped applying only with it).
                let managed = next["metadata"].get("managedFields").cloned();
                next = current.clone();
                if let Some(managed) = managed {
                    next["metadata"]["managedFields"] = managed;
                }
                match status {
                    Some(status) => next["status"] = status,
                    None => {
                        if let Some(o) = next.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            _ if rt.has_status() => {
                // With a status subresource, writes to the resource leave status alone.
                match current.get("status") {
                    Some(status) => next["status"] = status.clone(),
                    None => {
                        if let Some(o) = next.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            _ => {}
        }
        // Server-owned metadata is kept whatever the client sent.
        let old_meta = current["metadata"].as_object().cloned().unwrap_or_default();
        let mut meta: Map<String, Value> = next["metadata"].as_object().cloned().unwrap_or_default();
        for key in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old_meta.get(key) {
                Some(v) => meta.insert(key.into(), v.clone()),
                None => meta.remove(key),
            };
        }
        let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
        let bumped = spec_part(&current) != spec_part(&next);
        meta.insert("generation".into(), json!(if bumped { generation + 1 } else { generation }));
        next["metadata"] = Value::Object(meta);
        next["apiVersion"] = json!(rt.api_version());
        next["kind"] = json!(rt.kind);
        crate::validation::prune_resource(rt, &mut next);
        crate::validation::validate(rt, &next, Some(&current))?;
        fold_string_data(rt, &mut next);
        if dry_run {
            return Ok(next);
        }
        // Nothing changed: no new resourceVersion, no event (a real server's no-op write).
        let mut unchanged = next.clone();
        unchanged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if unchanged == current {
            return Ok(current);
        }
        next["metadata"]["resourceVersion"] = json!(Self::next_rv(&mut inner));
        let terminating = next["metadata"].get("deletionTimestamp").is_some();
        if terminating && finalizers_of(&next).is_empty() {
            inner.objects.remove(&key);
            self.emit(&mut inner, rt, "MODIFIED", next.clone());
            Self::next_rv(&mut inner);
            let mut gone = next.clone();
            gone["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            self.removed(&mut inner, rt, gone, Propagation::Background);
            return Ok(next);
        }
        if rt.key() == "apiextensions.k8s.io/v1/customresourcedefinitions" {
            if next["status"]["conditions"].is_null() {
                next["status"] = crd_status(&next);
            }
            Self::register_crd(&mut inner, &next);
        }
        inner.objects.insert(key, next.clone());
        self.emit(&mut inner, rt, "MODIFIED", next.clone());
        Ok(next)
    }

    /// Marks an object as being deleted (a pod in its grace period), keeping it.
    pub fn mark_deleting(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        grace_seconds: u64,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = (rt.key(), key_namespace(rt, namespace), name.to_owned());
        let mut current =
            inner.objects.get(&key).cloned().ok_or_else(|| ApiError::not_found(&rt.plural, name))?;
        if current["metadata"].get("deletionTimestamp").is_some() {
            return Ok(current);
        }
        current["metadata"]["deletionTimestamp"] = json!(now());
        current["metadata"]["deletionGracePeriodSeconds"] = json!(grace_seconds);
        current["metadata"]["resourceVersion"] = json!(Self::next_rv(&mut inner));
        inner.objects.insert(key, current.clone());
        self.emit(&mut inner, rt, "MODIFIED", current.clone());
        Ok(current)
    }

    /// Deletes an object: at once, or — with finalizers — by marking it and waiting for them.
    pub fn delete(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        propagation: Propagation,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key =
            (rt.key(), if rt.namespaced { namespace.to_owned() } else { String::new() }, name.to_owned());
        let mut current =
            inner.objects.get(&key).cloned().ok_or_else(|| ApiError::not_found(&rt.plural, name))?;
        if dry_run {
            return Ok(current);
        }
        let mut finalizers = finalizers_of(&current);
        if propagation == Propagation::Foreground
            && Self::has_dependents(&inner, &current)
            && !finalizers.iter().any(|f| f == "foregroundDeletion")
        {
            finalizers.push("foregroundDeletion".into());
        }
        if !finalizers.is_empty() {
            if current["metadata"].get("deletionTimestamp").is_none() {
                current["metadata"]["deletionTimestamp"] = json!(now());
                current["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                current["metadata"]["finalizers"] = json!(finalizers);
                current["metadata"]["resourceVersion"] = json!(Self::next_rv(&mut inner));
                inner.objects.insert(key, current.clone());
                self.emit(&mut inner, rt, "MODIFIED", current.clone());
            }
            if propagation == Propagation::Foreground {
                self.collect_dependents(&mut inner, &current, Propagation::Foreground);
                self.finish_foreground(&mut inner, rt, &current);
            }
            return inner
                .objects
                .get(&(rt.key(), key_namespace(rt, namespace), name.to_owned()))
                .cloned()
                .map_or_else(|| Ok(current.clone()), Ok);
        }
        inner.objects.remove(&key);
        current["metadata"]["resourceVersion"] = json!(Self::next_rv(&mut inner));
        self.removed(&mut inner, rt, current.clone(), propagation);
        Ok(current)
    }

    /// After an object is gone: the DELETED event, its CRD's kinds, and its dependents.
    fn removed(&self, inner: &mut Inner, rt: &ResourceType, object: Value, propagation: Propagation) {
        self.emit(inner, rt, "DELETED", object.clone());
        if rt.key() == "apiextensions.k8s.io/v1/customresourcedefinitions" {
            for gone in resources::from_crd(&object) {
                inner.types.remove(&gone.key());
                let doomed: Vec<Key> =
                    inner.objects.keys().filter(|(k, _, _)| *k == gone.key()).cloned().collect();
                for key in doomed {
                    if let Some(mut o) = inner.objects.remove(&key) {
                        o["metadata"]["resourceVersion"] = json!(Self::next_rv(inner));
                        self.emit(inner, &gone, "DELETED", o);
                    }
                }
            }
        }
        self.collect_dependents(inner, &object, propagation);
        // An owner in foreground deletion goes when its last dependent has.
        let owners: Vec<String> = object["metadata"]["ownerReferences"]
            .as_array()
            .map(|refs| refs.iter().filter_map(|r| r["uid"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        for uid in owners {
            let waiting = inner.objects.iter().find(|(_, o)| {
                o["metadata"]["uid"].as_str() == Some(uid.as_str())
                    && finalizers_of(o).iter().any(|f| f == "foregroundDeletion")
            });
            if let Some(((type_key, _, _), owner)) = waiting.map(|(k, o)| (k.clone(), o.clone()))
                && let Some(owner_rt) = inner.types.get(&type_key).cloned()
            {
                self.finish_foreground(inner, &owner_rt, &owner);
            }
        }
    }

    fn has_dependents(inner: &Inner, owner: &Value) -> bool {
        let uid = owner["metadata"]["uid"].as_str().unwrap_or_default();
        inner.objects.values().any(|o| owned_by(o, uid))
    }

    /// Garbage collection of an owner's dependents.
    fn collect_dependents(&self, inner: &mut Inner, owner: &Value, propagation: Propagation) {
        let uid = owner["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        let dependents: Vec<Key> =
            inner.objects.iter().filter(|(_, o)| owned_by(o, &uid)).map(|(k, _)| k.clone()).collect();
        for key in dependents {
            let Some(rt) = inner.types.get(&key.0).cloned() else { continue };
            let Some(mut dependent) = inner.objects.get(&key).cloned() else { continue };
            if propagation == Propagation::Orphan {
                if let Some(refs) = dependent["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"].as_str() != Some(uid.as_str()));
                }
                dependent["metadata"]["resourceVersion"] = json!(Self::next_rv(inner));
                inner.objects.insert(key, dependent.clone());
                self.emit(inner, &rt, "MODIFIED", dependent);
                continue;
            }
            if !finalizers_of(&dependent).is_empty() {
                if dependent["metadata"].get("deletionTimestamp").is_none() {
                    dependent["metadata"]["deletionTimestamp"] = json!(now());
                    dependent["metadata"]["resourceVersion"] = json!(Self::next_rv(inner));
                    inner.objects.insert(key, dependent.clone());
                    self.emit(inner, &rt, "MODIFIED", dependent);
                }
                continue;
            }
            if rt.key() == "/v1/pods" {
                // The real garbage collector deletes a pod with its grace period, like any
                // client: it terminates (preStop, SIGTERM) and goes when the kubelet is done
                // or the grace period ends (`pods::reap`). Removing it at once made the
                // kubelet SIGKILL its processes, cutting streams still in flight.
                if dependent["metadata"].get("deletionTimestamp").is_none() {
                    let grace = dependent["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
                    dependent["metadata"]["deletionTimestamp"] = json!(now());
                    dependent["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                    dependent["metadata"]["resourceVersion"] = json!(Self::next_rv(inner));
                    inner.objects.insert(key, dependent.clone());
                    self.emit(inner, &rt, "MODIFIED", dependent);
                }
                continue;
            }
            inner.objects.remove(&key);
            dependent["metadata"]["resourceVersion"] = json!(Self::next_rv(inner));
            self.removed(inner, &rt, dependent, propagation);
        }
    }

    /// A foreground-deleted owner goes once it has no dependents left.
    fn finish_foreground(&self, inner: &mut Inner, rt: &ResourceType, owner: &Value) {
        if Self::has_dependents(inner, owner) {
            return;
        }
        let key = (
            rt.key(),
            owner["metadata"]["namespace"].as_str().unwrap_or_default().to_owned(),
            name_of(owner),
        );
        let Some(mut current) = inner.objects.get(&key).cloned() else { return };
        let finalizers: Vec<String> =
            finalizers_of(&current).into_iter().filter(|f| f != "foregroundDeletion").collect();
        current["metadata"]["finalizers"] = json!(finalizers);
        current["metadata"]["resourceVersion"] = json!(Self::next_rv(inner));
        if finalizers.is_empty() {
            inner.objects.remove(&key);
            self.removed(inner, rt, current, Propagation::Background);
        } else {
            inner.objects.insert(key, current.clone());
            self.emit(inner, rt, "MODIFIED", current);
        }
    }
}

fn key_namespace(rt: &ResourceType, namespace: &str) -> String {
    if rt.namespaced { namespace.to_owned() } else { String::new() }
}

fn owned_by(object: &Value, uid: &str) -> bool {
    !uid.is_empty()
        && object["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
}

/// A CRD's status once its names are served: `NamesAccepted` and `Established` (what
/// `kubectl wait --for=condition=Established` waits for), accepted names and stored versions.
fn crd_status(crd: &Value) -> Value {
    let condition = |kind: &str, reason: &str, message: &str| json!({"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now()});
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool().unwrap_or(false))
        .map(|v| v["name"].clone())
        .collect();
    json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": stored,
    })
}
