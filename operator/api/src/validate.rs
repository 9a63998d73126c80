//! Client-side validation of McpRollout manifests: the checks the API server will make at
//! `kubectl apply` (schema types, and the CRD's CEL rules after defaulting), plus the
//! operator's own parse, run before anything reaches a cluster — in a GitOps repo's CI, say.

use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use serde_json::Value;

use crate::{api::McpRollout, crd};

/// One problem in one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `kind/name` of the document, or its position in the stream.
    pub document: String,
    /// JSON path of the offending field, when known.
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) if !field.is_empty() => {
                write!(f, "{}: {}: {}", self.document, field, self.message)
            }
            _ => write!(f, "{}: {}", self.document, self.message),
        }
    }
}

/// Result of validating a YAML stream.
#[derive(Debug, Default)]
pub struct Report {
    /// McpRollout documents checked.
    pub checked: usize,
    /// Documents of other kinds, passed over.
    pub skipped: usize,
    pub problems: Vec<Problem>,
}

/// Validates every McpRollout in a (multi-document) YAML stream.
pub fn validate_yaml(source: &str) -> Report {
    Checker::new().check_yaml(source)
}

/// The CRD's schema with its CEL rules compiled, for checking many streams (compiling them
/// takes far longer than checking a manifest).
pub struct Checker {
    schema: CompiledSchema,
    validator: Validator,
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

impl Checker {
    pub fn new() -> Self {
        Self { schema: compile_schema(&crd::openapi_schema()), validator: Validator::new() }
    }

    /// Validates every McpRollout in a (multi-document) YAML stream.
    pub fn check_yaml(&self, source: &str) -> Report {
        let mut report = Report::default();
        for (index, document) in serde_yaml::Deserializer::from_str(source).enumerate() {
            let position = format!("document {}", index + 1);
            let value = match <Value as serde::Deserialize>::deserialize(document) {
                Ok(Value::Null) => continue,
                Ok(value) => value,
                Err(e) => {
                    report.problems.push(Problem {
                        document: position,
                        field: None,
                        message: format!("not YAML: {e}"),
                    });
                    // A syntax error ends the stream: later documents cannot be located reliably.
                    break;
                }
            };
            if value["kind"] != "McpRollout" || value["apiVersion"] != "mcprollout.dev/v1alpha1" {
                report.skipped += 1;
                continue;
            }
            report.checked += 1;
            let document = match value["metadata"]["name"].as_str() {
                Some(name) => format!("McpRollout/{name}"),
                None => position,
            };
            if let Err(e) = serde_json::from_value::<McpRollout>(value.clone()) {
                report.problems.push(Problem {
                    document: document.clone(),
                    field: None,
                    message: e.to_string(),
                });
            }
            if let Err(errors) = self.validator.validate_compiled(&self.schema, &value, None) {
                report.problems.extend(errors.into_vec().into_iter().map(|e| Problem {
                    document: document.clone(),
                    field: Some(e.field_path),
                    message: e.message,
                }));
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: mcprollout.dev/v1alpha1
kind: McpRollout
metadata: {name: docs}
spec:
  template: {spec: {containers: [{name: s, image: "mcp-fixture:v1"}]}}
  strategy: {canary: {steps: [{setWeight: 20}]}}
"#;

    #[test]
    fn accepts_a_valid_rollout_and_skips_other_kinds() {
        let stream = format!("{GOOD}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n");
        let report = validate_yaml(&stream);
        assert_eq!((report.checked, report.skipped), (1, 1));
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn reports_cel_and_parse_problems_by_document() {
        let bad = GOOD
            .replace("{setWeight: 20}", "{setWeight: 50}, {setWeight: 10}")
            .replace("spec:\n  template", "spec:\n  progressDeadline: 5 minutes\n  template");
        let report = validate_yaml(&bad);
        let text: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|p| p.contains("McpRollout/docs") && p.contains("must not decrease")),
            "{text:?}"
        );
        assert!(text.iter().any(|p| p.contains("5 minutes")), "{text:?}");
    }

    #[test]
    fn broken_yaml_is_a_problem_not_a_panic() {
        let report = validate_yaml("kind: [unclosed");
        assert_eq!(report.problems.len(), 1);
    }
}
