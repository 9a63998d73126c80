//! The CustomResourceDefinition, generated from the Rust types.
//!
//! `crds/mcprollout.dev_mcprollouts.yaml` is this module's output, committed; a test fails when
//! the two differ, so the schema the API server enforces is always the one the code compiles.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::api::McpRollout;

/// Path of the committed CRD, relative to the repository root.
pub const CRD_PATH: &str = "crds/mcprollout.dev_mcprollouts.yaml";

/// The script that regenerates the committed CRD (and the README sections derived from it).
pub const REGENERATE_COMMAND: &str = "hack/update-crds.sh";

/// Every CRD this project defines.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![polish(McpRollout::crd())]
}

/// Final touches on a derived CRD's schema.
///
/// - Descriptions inside `spec.template` are dropped. The PodTemplateSpec schema carries the
///   whole Pod reference documentation: ~500 KB that would make the CRD several times larger,
///   slow every discovery and `kubectl explain` read, and exceed client-side apply's annotation
///   limit. Types, formats and int-or-string markers stay, so the API server still validates
///   the template fully; only prose goes (Argo Rollouts does the same).
/// - Doc comments are wrapped at 100 columns in the source; `kubectl explain` should show
///   sentences, so single line breaks become spaces (paragraph breaks stay).
/// - `status` defaults to `{observedGeneration: 0}`: an McpRollout the operator has not seen
///   yet then reads as "generation 1 not observed", which Flux's kstatus (and Argo CD's
///   health check) take as in progress. Without it kstatus calls an object with no status at
///   all Current, so Flux would pass a rollout no operator ever looked at (seen on the real API
///   server: the default is applied when the object is read).
/// - The template's label map gets Kubernetes' own bounds (label values are at most 63
///   characters): unbounded, the API server's cost estimator assumes megabytes of labels and
///   refuses any CEL rule that iterates them (it refused the one over the former
///   `spec.selector`).
fn polish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(root) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) else {
            continue;
        };
        visit_schemas(root, &mut |schema| {
            if let Some(text) = schema.description.as_mut() {
                *text = unwrap_lines(text);
            }
        });
        if let Some(map) = property_mut(root, &["spec", "template", "metadata", "labels"]) {
            bound_label_map(map);
        }
        if let Some(status) = property_mut(root, &["status"]) {
            status.default = Some(JSON(serde_json::json!({"observedGeneration": 0})));
        }
        let template = property_mut(root, &["spec", "template"]).and_then(|t| t.properties.as_mut());
        for field in template.into_iter().flat_map(|props| props.values_mut()) {
            visit_schemas(field, &mut |schema| schema.description = None);
        }
    }
    crd
}

/// Maximum labels in a label map.
const MAX_LABELS: i64 = 128;
/// Kubernetes' limit on a label value.
const MAX_LABEL_VALUE_LEN: i64 = 63;

fn bound_label_map(map: &mut JSONSchemaProps) {
    map.max_properties = Some(MAX_LABELS);
    if let Some(JSONSchemaPropsOrBool::Schema(value)) = map.additional_properties.as_mut() {
        value.max_length = Some(MAX_LABEL_VALUE_LEN);
    }
}

/// The schema of the property at `path` below `root`.
fn property_mut<'a>(root: &'a mut JSONSchemaProps, path: &[&str]) -> Option<&'a mut JSONSchemaProps> {
    path.iter().try_fold(root, |node, name| node.properties.as_mut()?.get_mut(*name))
}

/// Calls `f` on `schema` and every schema nested in it.
fn visit_schemas(schema: &mut JSONSchemaProps, f: &mut impl FnMut(&mut JSONSchemaProps)) {
    f(schema);
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.items.iter_mut().flat_map(|items| match items {
            JSONSchemaPropsOrArray::Schema(s) => std::slice::from_mut(s.as_mut()),
            JSONSchemaPropsOrArray::Schemas(v) => v.as_mut_slice(),
        }))
        .chain(schema.additional_properties.iter_mut().filter_map(|ap| match ap {
            JSONSchemaPropsOrBool::Schema(s) => Some(s.as_mut()),
            JSONSchemaPropsOrBool::Bool(_) => None,
        }))
        .chain(schema.all_of.iter_mut().flatten())
        .chain(schema.any_of.iter_mut().flatten())
        .chain(schema.one_of.iter_mut().flatten());
    for child in children {
        visit_schemas(child, f);
    }
}

/// Joins lines within a paragraph; keeps blank-line paragraph breaks.
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| paragraph.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The McpRollout openAPIV3Schema as JSON, as the API server enforces it (what offline
/// validation and the generated reference read).
pub fn openapi_schema() -> serde_json::Value {
    all()
        .into_iter()
        .next()
        .and_then(|crd| crd.spec.versions.into_iter().next())
        .and_then(|v| v.schema)
        .and_then(|s| s.open_api_v3_schema)
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The CRDs as one multi-document YAML stream, exactly as committed under `crds/`.
pub fn render_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::from("# Generated from operator/api by `mcp-rollout-operator crd`. Do not edit.\n");
    for crd in all() {
        out.push_str("---\n");
        for line in serde_yaml::to_string(&crd)?.lines() {
            out.push_str(&quote_yaml11_date(line));
            out.push('\n');
        }
    }
    Ok(out)
}

/// Quotes a plain `YYYY-MM-DD` scalar at the end of a line.
///
/// serde_yaml writes YAML 1.2, where `2025-06-18` is a string; YAML 1.1 readers (PyYAML, Ruby,
/// some Go paths) read it as a date. The MCP protocol versions in the schema's defaults look
/// exactly like that, so they are single-quoted to mean the same thing to every reader.
fn quote_yaml11_date(line: &str) -> std::borrow::Cow<'_, str> {
    let value_start = line
        .rfind(": ")
        .map(|i| i + 2)
        .or_else(|| line.trim_start().starts_with("- ").then(|| line.len() - line.trim_start().len() + 2));
    let Some(start) = value_start else {
        return line.into();
    };
    let value = &line[start..];
    let is_date = value.len() == 10
        && value.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        });
    if is_date { format!("{}'{value}'", &line[..start]).into() } else { line.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_doc_lines_become_sentences() {
        assert_eq!(
            unwrap_lines("Flip when\nready.\n\nSecond para\n line."),
            "Flip when ready.\n\nSecond para line."
        );
    }

    #[test]
    fn dates_are_quoted_and_nothing_else_changes() {
        assert_eq!(quote_yaml11_date("  - 2025-06-18"), "  - '2025-06-18'");
        assert_eq!(quote_yaml11_date("  default: 2025-06-18"), "  default: '2025-06-18'");
        for unchanged in ["  - 2025-06-18x", "  name: mcp", "  - 20250618", "x: '2025-06-18'", "- 5m"] {
            assert_eq!(quote_yaml11_date(unchanged), unchanged);
        }
    }
}
