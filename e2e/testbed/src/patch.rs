//! PATCH in its four content types: JSON merge, JSON patch, strategic merge (keyed lists
//! merged by their merge key), and server-side apply with field managers (`managedFields`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::{error::ApiError, resources::ResourceType, store::Store};

/// Keys a list of objects is merged by, in the order they are tried (containers, env, volumes
/// and ports by name, conditions by type, unnamed ports by number).
const MERGE_KEYS: &[&str] = &["name", "type", "containerPort", "port"];

/// Metadata the server owns: never part of a manager's fields.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
];

fn merge_key(items: &[Value]) -> Option<&'static str> {
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return None;
    }
    MERGE_KEYS.iter().copied().find(|k| items.iter().all(|i| i.get(*k).is_some()))
}

/// Merges `patch` into `target`: objects key by key, keyed lists element by element, anything
/// else replaced. With `nulls_delete`, a null removes the key (merge-patch semantics).
fn merge(target: &mut Value, patch: &Value, nulls_delete: bool) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (key, value) in p {
                if value.is_null() && nulls_delete {
                    t.remove(key);
                } else if let Some(existing) = t.get_mut(key) {
                    merge(existing, value, nulls_delete);
                } else {
                    let mut fresh = Value::Null;
                    merge(&mut fresh, value, nulls_delete);
                    t.insert(key.clone(), fresh);
                }
            }
        }
        (Value::Array(t), Value::Array(p))
            if merge_key(p).is_some() && merge_key(t).or(merge_key(p)) == merge_key(p) =>
        {
            let key = merge_key(p).unwrap_or("name");
            for item in p {
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match t.iter().position(|e| e.get(key) == item.get(key)) {
                    Some(i) if delete => {
                        t.remove(i);
                    }
                    Some(i) => merge(&mut t[i], item, nulls_delete),
                    None if delete => {}
                    None => t.push(item.clone()),
                }
            }
        }
        (target, patch) => {
            let mut value = patch.clone();
            if let Value::Object(map) = &mut value {
                map.retain(|_, v| !(v.is_null() && nulls_delete));
            }
            *target = value;
        }
    }
}

/// One step of a field path: an object key, or a list element named by its merge key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Segment {
    Key(String),
    Item(String, String),
}

type Path = Vec<Segment>;

/// The leaf fields a configuration sets.
fn fields_of(value: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                if prefix.is_empty() && matches!(key.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if prefix.len() == 1
                    && prefix[0] == Segment::Key("metadata".into())
                    && SERVER_METADATA.contains(&key.as_str())
                {
                    continue;
                }
                prefix.push(Segment::Key(key.clone()));
                fields_of(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) if merge_key(items).is_some() => {
            let key = merge_key(items).unwrap_or("name");
            for item in items {
                prefix.push(Segment::Item(key.to_owned(), item[key].to_string()));
                fields_of(item, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

fn get<'a>(value: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else { return Some(value) };
    let child = match first {
        Segment::Key(k) => value.get(k)?,
        Segment::Item(k, v) => {
            value.as_array()?.iter().find(|e| e.get(k).map(Value::to_string).as_deref() == Some(v))?
        }
    };
    get(child, rest)
}

fn remove(value: &mut Value, path: &[Segment]) {
    let Some((first, rest)) = path.split_first() else { return };
    match first {
        Segment::Key(k) => {
            if rest.is_empty() {
                if let Some(map) = value.as_object_mut() {
                    map.remove(k);
                }
            } else if let Some(child) = value.get_mut(k) {
                remove(child, rest);
                // An object left empty by the removal goes too.
                if child.as_object().is_some_and(Map::is_empty)
                    && let Some(map) = value.as_object_mut()
                {
                    map.remove(k);
                }
            }
        }
        Segment::Item(k, v) => {
            let Some(items) = value.as_array_mut() else { return };
            let Some(i) =
                items.iter().position(|e| e.get(k).map(Value::to_string).as_deref() == Some(v.as_str()))
            else {
                return;
            };
            if rest.is_empty() || rest == [Segment::Key(k.clone())] {
                items.remove(i);
            } else {
                remove(&mut items[i], rest);
            }
        }
    }
}

/// `managedFields[].fieldsV1`, from paths.
fn fields_v1(paths: &BTreeSet<Path>) -> Value {
    fn insert(node: &mut Map<String, Value>, path: &[Segment]) {
        let Some((first, rest)) = path.split_first() else { return };
        let name = match first {
            Segment::Key(k) => format!("f:{k}"),
            Segment::Item(k, v) => format!("k:{{\"{k}\":{v}}}"),
        };
        if let Some(child) = node.entry(name).or_insert_with(|| json!({})).as_object_mut() {
            insert(child, rest);
        }
    }
    let mut root = Map::new();
    for path in paths {
        insert(&mut root, path);
    }
    Value::Object(root)
}

fn paths_of_v1(node: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    let Some(map) = node.as_object() else { return };
    let children: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() && !prefix.is_empty() {
        out.insert(prefix.clone());
        return;
    }
    for (name, child) in children {
        let segment = if let Some(key) = name.strip_prefix("f:") {
            Segment::Key(key.to_owned())
        } else if let Some(item) = name.strip_prefix("k:") {
            let Ok(Value::Object(item)) = serde_json::from_str::<Value>(item) else { continue };
            let Some((k, v)) = item.into_iter().next() else { continue };
            Segment::Item(k, v.to_string())
        } else {
            continue;
        };
        prefix.push(segment);
        paths_of_v1(child, prefix, out);
        prefix.pop();
    }
}

/// Managers and the fields each owns, from an object's `managedFields`.
fn ownership(object: &Value) -> BTreeMap<(String, String), BTreeSet<Path>> {
    let mut owners = BTreeMap::new();
    for entry in object["metadata"]["managedFields"].as_array().into_iter().flatten() {
        let manager = entry["manager"].as_str().unwrap_or_default().to_owned();
        let operation = entry["operation"].as_str().unwrap_or("Update").to_owned();
        let mut paths = BTreeSet::new();
        paths_of_v1(&entry["fieldsV1"], &mut Vec::new(), &mut paths);
        owners.insert((manager, operation), paths);
    }
    owners
}

fn write_ownership(
    object: &mut Value,
    owners: &BTreeMap<(String, String), BTreeSet<Path>>,
    api_version: &str,
) {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    // An entry whose fields did not change keeps its time, as on a real server: otherwise a
    // no-op apply would look like a change and wake every watcher.
    let before: BTreeMap<(String, String), (Value, Value)> = object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let key = (
                e["manager"].as_str().unwrap_or_default().to_owned(),
                e["operation"].as_str().unwrap_or("Update").to_owned(),
            );
            (key, (e["fieldsV1"].clone(), e["time"].clone()))
        })
        .collect();
    let entries: Vec<Value> = owners
        .iter()
        .filter(|(_, paths)| !paths.is_empty())
        .map(|((manager, operation), paths)| {
            let fields = fields_v1(paths);
            let time = match before.get(&(manager.clone(), operation.clone())) {
                Some((old, time)) if *old == fields => time.clone(),
                _ => json!(now),
            };
            json!({"manager": manager, "operation": operation, "apiVersion": api_version, "time": time,
                   "fieldsType": "FieldsV1", "fieldsV1": fields})
        })
        .collect();
    object["metadata"]["managedFields"] = json!(entries);
}

fn show(path: &Path) -> String {
    path.iter()
        .map(|s| match s {
            Segment::Key(k) => format!(".{k}"),
            Segment::Item(k, v) => format!("[{k}={v}]"),
        })
        .collect()
}

/// Server-side apply of `applied` by `manager` onto `current` (`None`: the object is new).
pub fn server_side_apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    rt: &ResourceType,
) -> Result<Value, ApiError> {
    let mut owners = current.map(ownership).unwrap_or_default();
    let mut applied_fields = BTreeSet::new();
    fields_of(applied, &mut Vec::new(), &mut applied_fields);
    let me = (manager.to_owned(), "Apply".to_owned());
    let base = current.cloned().unwrap_or_else(|| json!({}));
    let mut conflicts = Vec::new();
    for field in &applied_fields {
        for (owner, paths) in owners.iter_mut().filter(|(o, _)| **o != me) {
            if paths.contains(field) && get(&base, field) != get(applied, field) {
                if force {
                    paths.remove(field);
                } else {
                    conflicts.push(format!("conflict with \"{}\": {}", owner.0, show(field)));
                }
            }
        }
    }
    if !conflicts.is_empty() {
        let name = applied["metadata"]["name"].as_str().unwrap_or_default();
        let mut error = ApiError::conflict(
            &rt.plural,
            name,
            &format!("Apply failed with {} conflict(s): {}", conflicts.len(), conflicts.join("; ")),
        );
        error.message =
            format!("Apply failed with {} conflict(s): {}", conflicts.len(), conflicts.join("; "));
        return Err(error);
    }
    let previous = owners.get(&me).cloned().unwrap_or_default();
    let mut next = base.clone();
    // Fields this manager applied before and no longer does, owned by nobody else, go.
    for field in previous.difference(&applied_fields) {
        let shared = owners.iter().any(|(o, paths)| *o != me && paths.contains(field));
        if !shared {
            remove(&mut next, field);
        }
    }
    let mut body = applied.clone();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| !SERVER_METADATA.contains(&k.as_str()) || k == "name" || k == "namespace");
    }
    merge(&mut next, &body, false);
    owners.insert(me, applied_fields);
    write_ownership(&mut next, &owners, &rt.api_version());
    Ok(next)
}

/// A non-apply write by `manager`: it takes the fields it changed from everyone else.
pub fn track_update(current: &Value, next: &mut Value, manager: &str, api_version: &str) {
    let mut before = BTreeSet::new();
    fields_of(current, &mut Vec::new(), &mut before);
    let mut after = BTreeSet::new();
    fields_of(next, &mut Vec::new(), &mut after);
    let changed: BTreeSet<Path> = after.iter().filter(|f| get(current, f) != get(next, f)).cloned().collect();
    let mut owners = ownership(current);
    for paths in owners.values_mut() {
        paths.retain(|f| !changed.contains(f) && after.contains(f));
    }
    if !changed.is_empty() {
        owners.entry((manager.to_owned(), "Update".to_owned())).or_default().extend(changed);
    }
    let _ = before;
    write_ownership(next, &owners, api_version);
}

/// A deployment's or replica set's `autoscaling/v1` Scale.
pub fn scale_of(object: &Value) -> Value {
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
            "uid": object["metadata"]["uid"], "resourceVersion": object["metadata"]["resourceVersion"],
            "creationTimestamp": object["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
                   "selector": selector_string(&object["spec"]["selector"])},
    })
}

fn selector_string(selector: &Value) -> String {
    selector["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// PATCH, by content type.
#[allow(clippy::too_many_arguments)]
pub fn apply_patch(
    store: &Store,
    rt: &ResourceType,
    namespace: &str,
    name: &str,
    subresource: Option<&str>,
    content_type: &str,
    body: &[u8],
    manager: Option<&str>,
    force: bool,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let parse = || -> Result<Value, ApiError> {
        serde_json::from_slice(body)
            .or_else(|_| serde_yaml::from_slice(body))
            .map_err(|e| ApiError::bad_request(format!("the patch is not JSON or YAML: {e}")))
    };
    let api_version = rt.api_version();
    match content_type {
        "application/apply-patch+yaml" | "application/apply-patch+json" => {
            let manager =
                manager.ok_or_else(|| ApiError::bad_request("fieldManager is required for apply patch"))?;
            let applied = parse()?;
            if !applied.is_object() {
                return Err(ApiError::bad_request("an apply patch must be an object"));
            }
            if subresource.is_none()
                && let Err(missing) = store.get(rt, namespace, name)
            {
                if missing.code != 404 {
                    return Err(missing);
                }
                let mut created = server_side_apply(None, &applied, manager, force, rt)?;
                created["metadata"]["name"] = json!(name);
                return store.create(rt, namespace, created, dry_run);
            }
            store.modify(rt, namespace, name, subresource, dry_run, |current| {
                server_side_apply(Some(current), &applied, manager, force, rt)
            })
        }
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json" => {
            let patch = parse()?;
            let manager = manager.unwrap_or("unknown").to_owned();
            store.modify(rt, namespace, name, subresource, dry_run, |current| {
                let mut next = current.clone();
                match content_type {
                    "application/json-patch+json" => {
                        let operations: json_patch::Patch = serde_json::from_value(patch.clone())
                            .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                        json_patch::patch(&mut next, &operations)
                            .map_err(|e| ApiError::invalid(&rt.kind, name, vec![(String::new(), e.to_string())]))?;
                    }
                    "application/merge-patch+json" => json_patch::merge(&mut next, &patch),
                    _ => merge(&mut next, &patch, true),
                }
                let sent_rv = patch["metadata"]["resourceVersion"].as_str();
                if sent_rv.is_some_and(|rv| Some(rv) != current["metadata"]["resourceVersion"].as_str()) {
                    return Err(ApiError::conflict(&rt.plural, name, "the object has been modified; please apply your changes to the latest version and try again"));
                }
                track_update(current, &mut next, &manager, &api_version);
                Ok(next)
            })
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtins;

    fn deployments() -> ResourceType {
        builtins().into_iter().find(|t| t.plural == "deployments").unwrap()
    }

    #[test]
    fn strategic_merge_merges_containers_by_name_and_replaces_plain_lists() {
        let mut target = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}],
                                         "args": ["x", "y"]}});
        merge(
            &mut target,
            &json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "c", "image": "1"}],
                                            "args": ["z"]}}),
            true,
        );
        assert_eq!(target["spec"]["containers"][1], json!({"name": "b", "image": "2"}));
        assert_eq!(target["spec"]["containers"][2]["name"], "c");
        assert_eq!(target["spec"]["args"], json!(["z"]));
        merge(&mut target, &json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}), true);
        assert_eq!(target["spec"]["containers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn apply_removes_fields_a_manager_stops_applying_and_conflicts_across_managers() {
        let rt = deployments();
        let first =
            json!({"metadata": {"name": "d", "labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 2}});
        let object = server_side_apply(None, &first, "ci", false, &rt).unwrap();
        let second = json!({"metadata": {"name": "d", "labels": {"a": "1"}}, "spec": {"replicas": 2}});
        let object = server_side_apply(Some(&object), &second, "ci", false, &rt).unwrap();
        assert_eq!(object["metadata"]["labels"], json!({"a": "1"}));
        let rival = json!({"metadata": {"name": "d"}, "spec": {"replicas": 5}});
        let error = server_side_apply(Some(&object), &rival, "hpa", false, &rt).unwrap_err();
        assert_eq!(error.code, 409);
        assert!(error.message.contains("conflict with \"ci\": .spec.replicas"), "{}", error.message);
        let forced = server_side_apply(Some(&object), &rival, "hpa", true, &rt).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        // The same value is shared ownership, not a conflict.
        let agreeing = json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}});
        assert!(server_side_apply(Some(&object), &agreeing, "other", false, &rt).is_ok());
    }

    #[test]
    fn managed_fields_round_trip_through_fields_v1() {
        let mut paths = BTreeSet::new();
        fields_of(
            &json!({"spec": {"containers": [{"name": "a", "image": "x"}], "replicas": 1}}),
            &mut Vec::new(),
            &mut paths,
        );
        let v1 = fields_v1(&paths);
        assert!(v1["f:spec"]["f:containers"].get("k:{\"name\":\"a\"}").is_some(), "{v1}");
        let mut back = BTreeSet::new();
        paths_of_v1(&v1, &mut Vec::new(), &mut back);
        assert_eq!(back, paths);
    }
}
