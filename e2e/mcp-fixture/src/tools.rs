//! The tools of each profile, their input schemas, argument validation and deterministic
//! results. `export_report` is in every profile: it is the long, streamed unit of in-flight work
//! that a drain must not cut.

use serde_json::{Map, Value, json};

use crate::config::Profile;

/// One tool as offered.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
}

/// The tools a profile offers, in a stable order.
pub fn tools(profile: Profile) -> Vec<ToolSpec> {
    let get_document = match profile {
        Profile::V2Breaking => ToolSpec {
            name: "get_document",
            description: "Fetch one document by id, within a tenant.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "id": {"type": "string", "description": "Document id"},
                    "tenant": {"type": "string", "description": "Tenant that owns the document"}
                },
                "required": ["id", "tenant"]
            }),
        },
        _ => ToolSpec {
            name: "get_document",
            description: "Fetch one document by id.",
            input_schema: json!({
                "type": "object",
                "properties": {"id": {"type": "string", "description": "Document id"}},
                "required": ["id"]
            }),
        },
    };
    let list_documents = ToolSpec {
        name: "list_documents",
        description: "List documents, newest first.",
        input_schema: json!({
            "type": "object",
            "properties": {
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Page size"},
                "cursor": {"type": "string", "description": "Opaque cursor from a previous page"}
            }
        }),
    };
    let mut search_properties = json!({
        "query": {"type": "string", "description": "Words to search for"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "Most results to return"}
    });
    if profile == Profile::V2Compatible {
        search_properties["tags"] = json!({"type": "array", "items": {"type": "string"}, "description": "Only documents with these tags"});
    }
    let search_documents = ToolSpec {
        name: "search_documents",
        description: "Full-text search over documents.",
        input_schema: json!({"type": "object", "properties": search_properties, "required": ["query"]}),
    };
    let export_report = ToolSpec {
        name: "export_report",
        description: "Build a report over the given number of seconds, streaming progress.",
        input_schema: json!({
            "type": "object",
            "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3600}},
            "required": ["seconds"]
        }),
    };
    let summarize_document = ToolSpec {
        name: "summarize_document",
        description: "Summarize one document.",
        input_schema: json!({
            "type": "object",
            "properties": {"id": {"type": "string"}},
            "required": ["id"]
        }),
    };
    match profile {
        Profile::V1 => vec![get_document, list_documents, search_documents, export_report],
        Profile::V2Compatible => {
            vec![get_document, list_documents, search_documents, export_report, summarize_document]
        }
        Profile::V2Breaking => vec![get_document, search_documents, export_report],
    }
}

/// Why arguments do not fit a tool's schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid arguments for {tool}: {problem}")]
pub struct SchemaError {
    pub tool: String,
    pub problem: String,
}

/// Checks arguments against the subset of JSON Schema the tools use: object, required,
/// property types, integer/number bounds, string arrays, and no unknown properties.
pub fn validate(tool: &ToolSpec, args: &Map<String, Value>) -> Result<(), SchemaError> {
    let fail = |problem: String| Err(SchemaError { tool: tool.name.to_owned(), problem });
    let schema = &tool.input_schema;
    for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if !args.contains_key(required) {
            return fail(format!("missing required parameter `{required}`"));
        }
    }
    let properties = schema["properties"].as_object();
    for (name, value) in args {
        let Some(property) = properties.and_then(|p| p.get(name)) else {
            return fail(format!("unknown parameter `{name}`"));
        };
        let ok = match property["type"].as_str() {
            Some("string") => value.is_string(),
            Some("integer") => value.as_i64().is_some_and(|n| within(property, n as f64)),
            Some("number") => value.as_f64().is_some_and(|n| within(property, n)),
            Some("array") => value.as_array().is_some_and(|items| items.iter().all(Value::is_string)),
            _ => true,
        };
        if !ok {
            return fail(format!("parameter `{name}` does not match its schema {property}"));
        }
    }
    Ok(())
}

fn within(property: &Value, n: f64) -> bool {
    property["minimum"].as_f64().is_none_or(|min| n >= min)
        && property["maximum"].as_f64().is_none_or(|max| n <= max)
}

/// The deterministic result of a (non-streaming) tool: text and structured content.
pub fn result(tool: &str, args: &Map<String, Value>, server_version: &str) -> (String, Value) {
    let str_arg = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    match tool {
        "get_document" => {
            let id = str_arg("id");
            let body = json!({"id": id, "title": format!("Document {id}"), "body": format!("Contents of document {id}."), "servedBy": server_version});
            (format!("Document {id}: Contents of document {id}."), body)
        }
        "list_documents" => {
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(10).min(100);
            let ids: Vec<String> = (1..=limit).map(|i| format!("doc-{i}")).collect();
            (
                format!("{} documents: {}", ids.len(), ids.join(", ")),
                json!({"documents": ids, "servedBy": server_version}),
            )
        }
        "search_documents" => {
            let query = str_arg("query");
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(3).min(50);
            let hits: Vec<Value> = (1..=limit)
                .map(|i| json!({"id": format!("doc-{i}"), "snippet": format!("… {query} …")}))
                .collect();
            (
                format!("{} results for {query}", hits.len()),
                json!({"query": query, "results": hits, "servedBy": server_version}),
            )
        }
        "summarize_document" => {
            let id = str_arg("id");
            (
                format!("Summary of document {id}."),
                json!({"id": id, "summary": format!("Summary of document {id}.")}),
            )
        }
        other => (format!("unknown tool {other}"), Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: Profile) -> Vec<&'static str> {
        tools(p).iter().map(|t| t.name).collect()
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn profiles_differ_as_documented() {
        assert_eq!(
            names(Profile::V1),
            ["get_document", "list_documents", "search_documents", "export_report"]
        );
        assert!(names(Profile::V2Compatible).contains(&"summarize_document"));
        assert!(!names(Profile::V2Breaking).contains(&"list_documents"));
        let breaking = tools(Profile::V2Breaking);
        assert_eq!(breaking[0].input_schema["required"], json!(["id", "tenant"]));
        let compatible = tools(Profile::V2Compatible);
        let search = compatible.iter().find(|t| t.name == "search_documents").unwrap();
        assert!(search.input_schema["properties"]["tags"].is_object());
        assert_eq!(search.input_schema["required"], json!(["query"]));
    }

    #[test]
    fn a_v1_call_is_a_schema_error_on_v2_breaking() {
        let v1 = &tools(Profile::V1)[0];
        let breaking = &tools(Profile::V2Breaking)[0];
        let call = args(json!({"id": "a"}));
        assert!(validate(v1, &call).is_ok());
        let err = validate(breaking, &call).unwrap_err();
        assert!(err.problem.contains("missing required parameter `tenant`"));
    }

    #[test]
    fn types_bounds_and_unknown_parameters_are_checked() {
        let list = &tools(Profile::V1)[1];
        assert!(validate(list, &args(json!({"limit": 5}))).is_ok());
        assert!(validate(list, &args(json!({"limit": 0}))).is_err());
        assert!(validate(list, &args(json!({"limit": "5"}))).is_err());
        assert!(validate(list, &args(json!({"page": 2}))).is_err());
    }

    #[test]
    fn results_are_deterministic_and_name_the_server() {
        let a = result("search_documents", &args(json!({"query": "runbook"})), "v1");
        assert_eq!(a, result("search_documents", &args(json!({"query": "runbook"})), "v1"));
        assert!(a.0.contains("runbook"));
        assert_eq!(a.1["servedBy"], "v1");
    }
}
