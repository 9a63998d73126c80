//! Table tests of the schema diff: one baseline tool, one candidate, the exact changes.

use serde_json::{Value, json};

use super::*;
use crate::probe::report::Tool;

fn tool(name: &str, input_schema: Value) -> Tool {
    Tool {
        name: name.into(),
        title: None,
        description: Some(format!("{name} tool")),
        input_schema,
        output_schema: None,
        annotations: None,
    }
}

fn snapshot(tools: Vec<Tool>) -> Snapshot {
    Snapshot { protocol_versions: vec!["2025-11-25".into()], tools }
}

type Changes = Vec<(String, ChangeKind)>;

fn changes(old: Value, new: Value) -> Changes {
    let d = diff(&snapshot(vec![tool("t", old)]), &snapshot(vec![tool("t", new)]));
    d.changes.into_iter().map(|c| (c.path, c.kind)).collect()
}

fn one(path: &str, kind: ChangeKind) -> Changes {
    vec![(format!("tools/t/inputSchema{path}"), kind)]
}

fn obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required})
}

#[test]
fn parameter_changes_are_classified() {
    use ChangeKind::*;
    let base = obj(json!({"q": {"type": "string"}}), &["q"]);
    let cases: Vec<(&str, Value, Changes)> = vec![
        ("identical", base.clone(), vec![]),
        (
            "optional parameter added",
            obj(json!({"q": {"type": "string"}, "tags": {"type": "array"}}), &["q"]),
            one("/properties/tags", ParameterAddedOptional),
        ),
        (
            "required parameter added",
            obj(json!({"q": {"type": "string"}, "tenant": {"type": "string"}}), &["q", "tenant"]),
            one("/properties/tenant", ParameterAddedRequired),
        ),
        ("parameter removed", obj(json!({}), &[]), one("/properties/q", ParameterRemoved)),
        (
            "required became optional",
            obj(json!({"q": {"type": "string"}}), &[]),
            one("/properties/q", ParameterNoLongerRequired),
        ),
        (
            "type changed",
            obj(json!({"q": {"type": "integer"}}), &["q"]),
            one("/properties/q/type", TypeChanged),
        ),
        (
            "type widened",
            obj(json!({"q": {"type": ["string", "null"]}}), &["q"]),
            one("/properties/q/type", TypeWidened),
        ),
        (
            "description changed",
            obj(json!({"q": {"type": "string", "description": "new words"}}), &["q"]),
            one("/properties/q/description", DescriptionChanged),
        ),
        (
            "constraint added",
            obj(json!({"q": {"type": "string", "maxLength": 8}}), &["q"]),
            one("/properties/q/maxLength", ConstraintChanged),
        ),
        (
            "enum introduced",
            obj(json!({"q": {"type": "string", "enum": ["a"]}}), &["q"]),
            one("/properties/q/enum", EnumNarrowed),
        ),
    ];
    for (name, candidate, expected) in cases {
        assert_eq!(changes(base.clone(), candidate), expected, "{name}");
    }
}

#[test]
fn optional_became_required_and_integer_to_number_is_widening() {
    use ChangeKind::*;
    let old = obj(json!({"n": {"type": "integer"}}), &[]);
    let new = obj(json!({"n": {"type": "number"}}), &["n"]);
    assert_eq!(
        changes(old, new),
        vec![
            ("tools/t/inputSchema/properties/n".into(), ParameterNowRequired),
            ("tools/t/inputSchema/properties/n/type".into(), TypeWidened),
        ]
    );
}

#[test]
fn enums_narrowed_and_widened_name_the_values() {
    let old = obj(json!({"mode": {"enum": ["fast", "safe"]}}), &[]);
    let new = obj(json!({"mode": {"enum": ["safe", "paranoid"]}}), &[]);
    let d = diff(&snapshot(vec![tool("t", old)]), &snapshot(vec![tool("t", new)]));
    let details: Vec<(ChangeKind, &str)> = d.changes.iter().map(|c| (c.kind, c.detail.as_str())).collect();
    assert_eq!(
        details,
        vec![
            (ChangeKind::EnumNarrowed, "no longer accepts \"fast\""),
            (ChangeKind::EnumWidened, "now also accepts \"paranoid\"")
        ]
    );
}

#[test]
fn nested_objects_and_array_items_report_the_deep_path() {
    let old = obj(
        json!({"filter": {"type": "object", "properties": {"owner": {"type": "string"}},
                          "required": []},
               "ids": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}}}}}),
        &[],
    );
    let new = obj(
        json!({"filter": {"type": "object", "properties": {"owner": {"type": "string"}, "org": {"type": "string"}},
                          "required": ["org"]},
               "ids": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}}}}),
        &[],
    );
    assert_eq!(
        changes(old, new),
        vec![
            (
                "tools/t/inputSchema/properties/filter/properties/org".into(),
                ChangeKind::ParameterAddedRequired
            ),
            ("tools/t/inputSchema/properties/ids/items/properties/id/type".into(), ChangeKind::TypeChanged),
        ]
    );
}

#[test]
fn refs_into_defs_are_followed_and_recursive_schemas_terminate() {
    let old = json!({
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {
            "label": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}}
    });
    let mut new = old.clone();
    new["$defs"]["Node"]["properties"]["label"] = json!({"type": "string", "enum": ["a", "b"]});
    new["$defs"]["Node"]["required"] = json!(["label"]);
    assert_eq!(
        changes(old.clone(), new),
        vec![
            ("tools/t/inputSchema/properties/node/properties/label".into(), ChangeKind::ParameterNowRequired),
            ("tools/t/inputSchema/properties/node/properties/label/enum".into(), ChangeKind::EnumNarrowed),
        ]
    );
    // The same content spelled inline instead of through $defs is no change at all.
    let mut inline = old.clone();
    inline["properties"]["node"] = old["$defs"]["Node"].clone();
    assert_eq!(changes(old, inline), vec![]);
}

#[test]
fn tools_versions_and_output_schemas() {
    let stable = Snapshot {
        protocol_versions: vec!["2025-06-18".into(), "2025-11-25".into()],
        tools: vec![tool("a", obj(json!({}), &[])), tool("b", obj(json!({}), &[]))],
    };
    let mut b = tool("b", obj(json!({}), &[]));
    b.output_schema = Some(json!({"type": "object"}));
    b.description = Some("reworded".into());
    let canary = Snapshot {
        protocol_versions: vec!["2025-11-25".into(), "2026-07-28".into()],
        tools: vec![b, tool("c", obj(json!({}), &[]))],
    };
    let d = diff(&stable, &canary);
    let got: Vec<(&str, ChangeKind, Severity)> =
        d.changes.iter().map(|c| (c.path.as_str(), c.kind, c.severity)).collect();
    assert_eq!(
        got,
        vec![
            ("protocolVersions/2025-06-18", ChangeKind::ProtocolVersionRemoved, Severity::Breaking),
            ("protocolVersions/2026-07-28", ChangeKind::ProtocolVersionAdded, Severity::Compatible),
            ("tools/a", ChangeKind::ToolRemoved, Severity::Breaking),
            ("tools/b/description", ChangeKind::DescriptionChanged, Severity::Info),
            ("tools/b/outputSchema", ChangeKind::OutputSchemaChanged, Severity::Warning),
            ("tools/c", ChangeKind::ToolAdded, Severity::Compatible),
        ]
    );
}

#[test]
fn policies_block_what_they_say() {
    let base = obj(json!({"q": {"type": "string"}}), &[]);
    let required_added = obj(json!({"q": {"type": "string"}, "tenant": {"type": "string"}}), &["tenant"]);
    let removed = obj(json!({}), &[]);
    let added_optional = obj(json!({"q": {"type": "string"}, "x": {"type": "string"}}), &[]);
    let d =
        |new: &Value| diff(&snapshot(vec![tool("t", base.clone())]), &snapshot(vec![tool("t", new.clone())]));
    use SchemaCompatibility::*;
    let table = [
        (&required_added, Strict, false),
        (&required_added, AllowAdditions, true),
        (&required_added, Off, true),
        (&removed, Strict, false),
        (&removed, AllowAdditions, false),
        (&removed, Off, true),
        (&added_optional, Strict, true),
        (&added_optional, AllowAdditions, true),
    ];
    for (candidate, policy, compatible) in table {
        assert_eq!(d(candidate).is_compatible(policy), compatible, "{policy:?} on {candidate}");
    }
}

#[test]
fn the_fixture_breaking_profile_reads_as_breaking() {
    // The shape of mcp-fixture's v1 → v2-breaking change: a tool removed, a required parameter
    // added to another.
    let v1 = snapshot(vec![
        tool("get_document", obj(json!({"id": {"type": "string"}}), &["id"])),
        tool("list_documents", obj(json!({}), &[])),
    ]);
    let v2 = snapshot(vec![tool(
        "get_document",
        obj(json!({"id": {"type": "string"}, "tenant": {"type": "string"}}), &["id", "tenant"]),
    )]);
    let d = diff(&v1, &v2);
    let blocking: Vec<&str> =
        d.blocking(SchemaCompatibility::Strict).iter().map(|c| c.path.as_str()).collect();
    assert_eq!(blocking, ["tools/get_document/inputSchema/properties/tenant", "tools/list_documents"]);
}
