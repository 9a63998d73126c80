//! The tool-schema diff: what agents that cached the stable revision's tools would hit on the
//! canary. Pure: two snapshots in, classified changes out, each at the exact path that changed.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::report::{Snapshot, Tool};
use crate::api::SchemaCompatibility;

/// How much a change matters to a client built against the baseline.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Info,
    Compatible,
    Warning,
    Breaking,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    ToolAdded,
    ToolRemoved,
    ParameterAddedOptional,
    ParameterAddedRequired,
    ParameterRemoved,
    ParameterNowRequired,
    ParameterNoLongerRequired,
    TypeChanged,
    TypeWidened,
    EnumNarrowed,
    EnumWidened,
    ConstraintChanged,
    DescriptionChanged,
    MetadataChanged,
    OutputSchemaChanged,
    ProtocolVersionAdded,
    ProtocolVersionRemoved,
}

impl ChangeKind {
    pub fn severity(self) -> Severity {
        use ChangeKind::*;
        match self {
            ToolRemoved
            | ParameterAddedRequired
            | ParameterRemoved
            | ParameterNowRequired
            | TypeChanged
            | EnumNarrowed
            | ProtocolVersionRemoved => Severity::Breaking,
            ConstraintChanged | OutputSchemaChanged => Severity::Warning,
            ToolAdded
            | ParameterAddedOptional
            | ParameterNoLongerRequired
            | TypeWidened
            | EnumWidened
            | ProtocolVersionAdded => Severity::Compatible,
            DescriptionChanged | MetadataChanged => Severity::Info,
        }
    }

    /// Something clients used is gone: what `AllowAdditions` still blocks.
    pub fn is_removal(self) -> bool {
        matches!(self, Self::ToolRemoved | Self::ParameterRemoved | Self::ProtocolVersionRemoved)
    }
}

/// One change, where it is, and what it was.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// e.g. `tools/get_document/inputSchema/properties/tenant`.
    pub path: String,
    pub kind: ChangeKind,
    pub severity: Severity,
    pub detail: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SchemaDiff {
    pub changes: Vec<Change>,
}

impl SchemaDiff {
    /// The changes the policy refuses.
    pub fn blocking(&self, policy: SchemaCompatibility) -> Vec<&Change> {
        self.changes
            .iter()
            .filter(|c| match policy {
                SchemaCompatibility::Strict => c.severity == Severity::Breaking,
                SchemaCompatibility::AllowAdditions => c.kind.is_removal(),
                SchemaCompatibility::Off => false,
            })
            .collect()
    }

    pub fn is_compatible(&self, policy: SchemaCompatibility) -> bool {
        self.blocking(policy).is_empty()
    }

    /// The diff in one word, whatever the policy allows: what schema-aware gates read.
    pub fn change(&self) -> crate::api::SchemaChange {
        use crate::api::SchemaChange;
        if self.changes.is_empty() {
            SchemaChange::Unchanged
        } else if self.changes.iter().any(|c| c.severity == Severity::Breaking) {
            SchemaChange::Breaking
        } else {
            SchemaChange::NonBreaking
        }
    }
}

/// Compares a candidate (canary) with a baseline (stable).
pub fn diff(baseline: &Snapshot, candidate: &Snapshot) -> SchemaDiff {
    let mut out = Out::default();
    let old_versions: BTreeSet<&String> = baseline.protocol_versions.iter().collect();
    let new_versions: BTreeSet<&String> = candidate.protocol_versions.iter().collect();
    for v in old_versions.difference(&new_versions) {
        out.push(
            format!("protocolVersions/{v}"),
            ChangeKind::ProtocolVersionRemoved,
            format!("{v} is no longer served"),
        );
    }
    for v in new_versions.difference(&old_versions) {
        out.push(
            format!("protocolVersions/{v}"),
            ChangeKind::ProtocolVersionAdded,
            format!("{v} is now served"),
        );
    }
    let old_tools: BTreeMap<&str, &Tool> = baseline.tools.iter().map(|t| (t.name.as_str(), t)).collect();
    let new_tools: BTreeMap<&str, &Tool> = candidate.tools.iter().map(|t| (t.name.as_str(), t)).collect();
    for (name, old) in &old_tools {
        let path = format!("tools/{name}");
        let Some(new) = new_tools.get(name) else {
            out.push(path, ChangeKind::ToolRemoved, format!("tool {name} is gone"));
            continue;
        };
        if old.description != new.description {
            out.push(
                format!("{path}/description"),
                ChangeKind::DescriptionChanged,
                "description changed".into(),
            );
        }
        if old.title != new.title || old.annotations != new.annotations {
            out.push(path.clone(), ChangeKind::MetadataChanged, "title or annotations changed".into());
        }
        let mut walk = Walk {
            old_root: &old.input_schema,
            new_root: &new.input_schema,
            seen: HashSet::new(),
            out: &mut out,
        };
        walk.compare(&old.input_schema, &new.input_schema, &format!("{path}/inputSchema"), 0);
        if old.output_schema != new.output_schema {
            out.push(
                format!("{path}/outputSchema"),
                ChangeKind::OutputSchemaChanged,
                "output schema changed".into(),
            );
        }
    }
    for name in new_tools.keys().filter(|n| !old_tools.contains_key(*n)) {
        out.push(format!("tools/{name}"), ChangeKind::ToolAdded, format!("new tool {name}"));
    }
    SchemaDiff { changes: out.changes }
}

#[derive(Default)]
struct Out {
    changes: Vec<Change>,
}

impl Out {
    fn push(&mut self, path: String, kind: ChangeKind, detail: String) {
        self.changes.push(Change { path, kind, severity: kind.severity(), detail });
    }
}

/// Keywords compared structurally; any other keyword that differs is a constraint change.
const STRUCTURAL: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "items",
    "description",
    "$ref",
    "$defs",
    "definitions",
    "$schema",
    "$id",
    "$comment",
];
/// Keywords that do not change what is accepted.
const ANNOTATIONS: &[&str] = &["title", "examples", "default", "deprecated", "readOnly", "writeOnly"];
/// Deeper than this, a schema is compared as a whole (a guard against pathological nesting).
const MAX_DEPTH: usize = 64;

struct Walk<'a, 'o> {
    old_root: &'a Value,
    new_root: &'a Value,
    /// `$ref` pairs already compared: recursive schemas are walked once.
    seen: HashSet<(String, String)>,
    out: &'o mut Out,
}

/// Follows local `$ref`s (`#/$defs/...`, `#/definitions/...`) to the schema they name.
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> (&'a Value, Option<String>) {
    let mut via = None;
    for _ in 0..16 {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else { break };
        let Some(target) = reference.strip_prefix('#').and_then(|pointer| root.pointer(pointer)) else {
            break;
        };
        via = Some(reference.to_owned());
        schema = target;
    }
    (schema, via)
}

fn type_set(schema: &Value) -> Option<BTreeSet<String>> {
    match schema.get("type")? {
        Value::String(t) => Some(BTreeSet::from([t.clone()])),
        Value::Array(ts) => Some(ts.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect()),
        _ => None,
    }
}

fn allowed_values(schema: &Value) -> Option<Vec<Value>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(values.clone());
    }
    schema.get("const").map(|c| vec![c.clone()])
}

fn required_set(schema: &Value) -> BTreeSet<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn show(values: &[&Value]) -> String {
    values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
}

impl Walk<'_, '_> {
    fn compare(&mut self, old: &Value, new: &Value, path: &str, depth: usize) {
        let (old, old_ref) = resolve(self.old_root, old);
        let (new, new_ref) = resolve(self.new_root, new);
        if old_ref.is_some() || new_ref.is_some() {
            let pair = (old_ref.unwrap_or_default(), new_ref.unwrap_or_default());
            if !self.seen.insert(pair) {
                return;
            }
        }
        if old == new {
            return;
        }
        let (Some(old_map), Some(new_map)) = (old.as_object(), new.as_object()) else {
            // Boolean schemas: `false` accepts nothing.
            let kind = if new == &Value::Bool(false) {
                ChangeKind::TypeChanged
            } else {
                ChangeKind::ConstraintChanged
            };
            self.out.push(path.to_owned(), kind, format!("{old} → {new}"));
            return;
        };
        if depth > MAX_DEPTH {
            self.out.push(
                path.to_owned(),
                ChangeKind::ConstraintChanged,
                "schema changed (nested too deep to analyse)".into(),
            );
            return;
        }
        if old.get("description") != new.get("description") {
            self.out.push(
                format!("{path}/description"),
                ChangeKind::DescriptionChanged,
                "description changed".into(),
            );
        }
        self.compare_types(old, new, path);
        self.compare_values(old, new, path);
        self.compare_properties(old, new, path, depth);
        if let (Some(old_items), Some(new_items)) = (old.get("items"), new.get("items")) {
            self.compare(old_items, new_items, &format!("{path}/items"), depth + 1);
        }
        let keywords: BTreeSet<&String> = old_map.keys().chain(new_map.keys()).collect();
        for keyword in keywords {
            if STRUCTURAL.contains(&keyword.as_str()) || old.get(keyword) == new.get(keyword) {
                continue;
            }
            let kind = if ANNOTATIONS.contains(&keyword.as_str()) {
                ChangeKind::MetadataChanged
            } else {
                ChangeKind::ConstraintChanged
            };
            let render = |v: Option<&Value>| v.map_or_else(|| "absent".to_owned(), Value::to_string);
            self.out.push(
                format!("{path}/{keyword}"),
                kind,
                format!("{keyword}: {} → {}", render(old.get(keyword)), render(new.get(keyword))),
            );
        }
    }

    fn compare_types(&mut self, old: &Value, new: &Value, path: &str) {
        let at = format!("{path}/type");
        match (type_set(old), type_set(new)) {
            (None, Some(new_types)) => {
                self.out.push(at, ChangeKind::TypeChanged, format!("any type → {new_types:?}"));
            }
            (Some(old_types), Some(new_types)) if old_types != new_types => {
                // `number` still accepts every `integer`.
                let lost: Vec<&String> = old_types
                    .iter()
                    .filter(|t| {
                        !(new_types.contains(*t) || t.as_str() == "integer" && new_types.contains("number"))
                    })
                    .collect();
                let kind = if lost.is_empty() { ChangeKind::TypeWidened } else { ChangeKind::TypeChanged };
                self.out.push(at, kind, format!("{old_types:?} → {new_types:?}"));
            }
            (Some(old_types), None) => {
                self.out.push(at, ChangeKind::TypeWidened, format!("{old_types:?} → any type"));
            }
            _ => {}
        }
    }

    fn compare_values(&mut self, old: &Value, new: &Value, path: &str) {
        let at = format!("{path}/enum");
        match (allowed_values(old), allowed_values(new)) {
            (None, Some(values)) => {
                let values: Vec<&Value> = values.iter().collect();
                self.out.push(at, ChangeKind::EnumNarrowed, format!("now restricted to {}", show(&values)));
            }
            (Some(old_values), Some(new_values)) => {
                let lost: Vec<&Value> = old_values.iter().filter(|v| !new_values.contains(v)).collect();
                let gained: Vec<&Value> = new_values.iter().filter(|v| !old_values.contains(v)).collect();
                if !lost.is_empty() {
                    self.out.push(
                        at.clone(),
                        ChangeKind::EnumNarrowed,
                        format!("no longer accepts {}", show(&lost)),
                    );
                }
                if !gained.is_empty() {
                    self.out.push(at, ChangeKind::EnumWidened, format!("now also accepts {}", show(&gained)));
                }
            }
            (Some(_), None) => self.out.push(at, ChangeKind::EnumWidened, "no longer restricted".into()),
            (None, None) => {}
        }
    }

    fn compare_properties(&mut self, old: &Value, new: &Value, path: &str, depth: usize) {
        let empty = serde_json::Map::new();
        let old_props = old.get("properties").and_then(Value::as_object).unwrap_or(&empty);
        let new_props = new.get("properties").and_then(Value::as_object).unwrap_or(&empty);
        let old_required = required_set(old);
        let new_required = required_set(new);
        let names: BTreeSet<&String> = old_props
            .keys()
            .chain(new_props.keys())
            .chain(old_required.iter())
            .chain(new_required.iter())
            .collect();
        for name in names {
            let at = format!("{path}/properties/{name}");
            let (was_required, is_required) = (old_required.contains(name), new_required.contains(name));
            match (old_props.get(name), new_props.get(name)) {
                (Some(old_prop), None) => {
                    // A parameter the old schema never accepted (`false`) was not usable anyway.
                    if old_prop != &Value::Bool(false) {
                        self.out.push(at, ChangeKind::ParameterRemoved, format!("parameter {name} removed"));
                    }
                }
                (None, Some(_)) => {
                    let kind = if is_required {
                        ChangeKind::ParameterAddedRequired
                    } else {
                        ChangeKind::ParameterAddedOptional
                    };
                    let how = if is_required { "required" } else { "optional" };
                    self.out.push(at, kind, format!("new {how} parameter {name}"));
                }
                (old_prop, new_prop) => {
                    if !was_required && is_required {
                        self.out.push(
                            at.clone(),
                            ChangeKind::ParameterNowRequired,
                            format!("{name} is now required"),
                        );
                    } else if was_required && !is_required {
                        self.out.push(
                            at.clone(),
                            ChangeKind::ParameterNoLongerRequired,
                            format!("{name} is now optional"),
                        );
                    }
                    if let (Some(old_prop), Some(new_prop)) = (old_prop, new_prop) {
                        self.compare(old_prop, new_prop, &at, depth + 1);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
