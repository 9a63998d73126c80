//! Admission of custom resources as a real API server does it: the CRD's structural
//! `openAPIV3Schema` (types, required, enums, bounds, lengths, patterns, unknown-field pruning)
//! and its `x-kubernetes-validations` CEL rules (kube's CEL engine), answered with 422.

use serde_json::{Map, Value};

use crate::{error::ApiError, resources::ResourceType};

/// Validates (and prunes) a custom resource in place; built-in kinds pass unchanged.
pub fn validate(rt: &ResourceType, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(schema) = &rt.schema else { return Ok(()) };
    let mut causes = Vec::new();
    // metadata is the server's to check; the schema covers the rest.
    let mut body = object.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("metadata");
        o.remove("apiVersion");
        o.remove("kind");
    }
    let mut schema_without_meta = schema.clone();
    if let Some(props) = schema_without_meta.get_mut("properties").and_then(Value::as_object_mut) {
        for key in ["metadata", "apiVersion", "kind"] {
            props.remove(key);
        }
    }
    check(&schema_without_meta, &body, "", &mut causes);
    if causes.is_empty() {
        let validator = kube::core::cel::Validator::new();
        if let Err(errors) = validator.validate(schema, object, old) {
            causes.extend(errors.into_vec().into_iter().map(|e| (e.field_path, e.message)));
        }
    }
    if causes.is_empty() {
        return Ok(());
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    Err(ApiError::invalid(&format!("{}.{}", rt.kind, rt.group), name, causes))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn field(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

/// The structural checks of one value against one schema node.
fn check(schema: &Value, value: &Value, path: &str, causes: &mut Vec<(String, String)>) {
    let here = if path.is_empty() { "<root>".to_owned() } else { path.to_owned() };
    if value.is_null() {
        if !schema["nullable"].as_bool().unwrap_or(false) && schema.get("type").is_some() {
            causes.push((
                here.clone(),
                format!(
                    "Invalid value: \"null\": {here} in body must be of type {}",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        if !matches!(type_name(value), "integer" | "string") {
            causes.push((here.clone(), format!("Invalid value: {value}: must be an integer or a string")));
        }
        return;
    }
    if let Some(expected) = schema["type"].as_str() {
        let actual = type_name(value);
        let fits = actual == expected || (expected == "number" && actual == "integer");
        if !fits {
            causes.push((
                here.clone(),
                format!(
                    "Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
                ),
            ));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        causes.push((
            here.clone(),
            format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
        ));
    }
    match value {
        Value::Number(n) => {
            let v = n.as_f64().unwrap_or_default();
            if let Some(min) = schema["minimum"].as_f64() {
                let exclusive = schema["exclusiveMinimum"].as_bool().unwrap_or(false);
                if v < min || (exclusive && v <= min) {
                    causes.push((
                        here.clone(),
                        format!(
                            "Invalid value: {v}: {path} in body should be greater than or equal to {min}"
                        ),
                    ));
                }
            }
            if let Some(max) = schema["maximum"].as_f64() {
                let exclusive = schema["exclusiveMaximum"].as_bool().unwrap_or(false);
                if v > max || (exclusive && v >= max) {
                    causes.push((
                        here.clone(),
                        format!("Invalid value: {v}: {path} in body should be less than or equal to {max}"),
                    ));
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if schema["minLength"].as_u64().is_some_and(|m| len < m) {
                causes.push((
                    here.clone(),
                    format!(
                        "Invalid value: {value}: {path} in body should be at least {} chars long",
                        schema["minLength"]
                    ),
                ));
            }
            if schema["maxLength"].as_u64().is_some_and(|m| len > m) {
                causes.push((
                    here.clone(),
                    format!("Too long: {path} may not be more than {} bytes", schema["maxLength"]),
                ));
            }
            if let Some(pattern) = schema["pattern"].as_str() {
                match regex_lite::Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => {
                        causes.push((
                            here.clone(),
                            format!("Invalid value: {value}: {path} in body should match '{pattern}'"),
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => causes
                        .push((here.clone(), format!("the schema's pattern {pattern:?} is invalid: {e}"))),
                }
            }
        }
        Value::Array(items) => {
            if schema["minItems"].as_u64().is_some_and(|m| (items.len() as u64) < m) {
                causes.push((
                    here.clone(),
                    format!(
                        "Invalid value: {} items: should have at least {} items",
                        items.len(),
                        schema["minItems"]
                    ),
                ));
            }
            if schema["maxItems"].as_u64().is_some_and(|m| (items.len() as u64) > m) {
                causes.push((
                    here.clone(),
                    format!("Too many: {}: must have at most {} items", items.len(), schema["maxItems"]),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), causes);
                }
            }
        }
        Value::Object(map) => check_object(schema, map, path, causes),
        _ => {}
    }
}

fn check_object(schema: &Value, map: &Map<String, Value>, path: &str, causes: &mut Vec<(String, String)>) {
    for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if !map.contains_key(required) {
            causes.push((field(path, required), "Required value".into()));
        }
    }
    if schema["maxProperties"].as_u64().is_some_and(|m| map.len() as u64 > m) {
        causes.push((
            path.to_owned(),
            format!("Too many: {}: must have at most {} items", map.len(), schema["maxProperties"]),
        ));
    }
    let properties = schema["properties"].as_object();
    for (key, value) in map {
        if let Some(property) = properties.and_then(|p| p.get(key)) {
            check(property, value, &field(path, key), causes);
        } else if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
            check(additional, value, &field(path, key), causes);
        }
    }
}

/// Prunes a custom resource's body (not its metadata) by its kind's schema.
pub fn prune_resource(rt: &ResourceType, object: &mut Value) {
    let Some(schema) = &rt.schema else { return };
    let Some(map) = object.as_object_mut() else { return };
    let kept: Vec<(String, Value)> = ["metadata", "apiVersion", "kind"]
        .iter()
        .filter_map(|k| map.remove(*k).map(|v| ((*k).to_owned(), v)))
        .collect();
    prune(schema, object);
    if let Some(map) = object.as_object_mut() {
        map.extend(kept);
    }
}

/// Drops fields the structural schema does not declare, as a real server prunes them
/// (unless `x-kubernetes-preserve-unknown-fields`).
pub fn prune(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true)
                && schema.get("properties").is_none()
            {
                return;
            }
            let properties = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let preserve = schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
            map.retain(|key, _| {
                properties.is_some_and(|p| p.contains_key(key)) || additional.is_some() || preserve
            });
            for (key, child) in map.iter_mut() {
                if let Some(property) = properties.and_then(|p| p.get(key)) {
                    prune(property, child);
                } else if let Some(additional) = additional {
                    prune(additional, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item_schema, item);
                }
            }
        }
        _ => {}
    }
}
