//! Does a tool result hold what the probe expects?

use serde_json::Value;

use super::{error::ProbeError, report::ToolCallOutcome};
use crate::api::ExpectedContent;

const TEXT_KEPT: usize = 2000;

/// Reads a `tools/call` result into an outcome (text joined, structured content kept).
pub fn outcome_of(name: &str, result: &Value) -> Result<ToolCallOutcome, ProbeError> {
    let content = result
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ProbeError::NotMcp("tools/call result has no content array".into()))?;
    let text: Vec<&str> = content
        .iter()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .collect();
    let mut text = text.join("\n");
    if let Some((cut, _)) = text.char_indices().nth(TEXT_KEPT) {
        text.truncate(cut);
    }
    Ok(ToolCallOutcome {
        name: name.to_owned(),
        is_error: result.get("isError").and_then(Value::as_bool).unwrap_or(false),
        text,
        structured_content: result.get("structuredContent").cloned(),
    })
}

/// Checks an outcome; without expectations, only `isError` fails it.
pub fn check(outcome: &ToolCallOutcome, expect: Option<&ExpectedContent>) -> Result<(), ProbeError> {
    if outcome.is_error {
        return Err(ProbeError::ToolCallMismatch(format!(
            "{} returned isError: {}",
            outcome.name,
            super::jsonrpc::excerpt(&outcome.text)
        )));
    }
    let Some(expect) = expect else { return Ok(()) };
    if let Some(needle) = &expect.contains
        && !outcome.text.contains(needle.as_str())
    {
        return Err(ProbeError::ToolCallMismatch(format!(
            "result text does not contain {needle:?}: {}",
            super::jsonrpc::excerpt(&outcome.text)
        )));
    }
    if let Some(pattern) = &expect.regex {
        let regex = regex_lite::Regex::new(pattern)
            .map_err(|e| ProbeError::ToolCallMismatch(format!("expect.regex {pattern:?} is invalid: {e}")))?;
        if !regex.is_match(&outcome.text) {
            return Err(ProbeError::ToolCallMismatch(format!(
                "result text does not match /{pattern}/: {}",
                super::jsonrpc::excerpt(&outcome.text)
            )));
        }
    }
    if let Some(expected) = &expect.json {
        let expected = serde_json::Value::Object(expected.clone());
        // Servers without structured output often return JSON as text.
        let actual = outcome.structured_content.clone().or_else(|| serde_json::from_str(&outcome.text).ok());
        if !actual.as_ref().is_some_and(|actual| is_subset(&expected, actual)) {
            return Err(ProbeError::ToolCallMismatch(format!(
                "result does not contain the JSON {expected}; got {}",
                super::jsonrpc::excerpt(
                    &actual.map(|a| a.to_string()).unwrap_or_else(|| outcome.text.clone())
                )
            )));
        }
    }
    Ok(())
}

/// `expected` ⊆ `actual`: object keys recursively, each expected array element matched by
/// some actual element, scalars equal (numbers by value, so 3 matches 3.0).
pub fn is_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            e.iter().all(|(k, v)| a.get(k).is_some_and(|av| is_subset(v, av)))
        }
        (Value::Array(e), Value::Array(a)) => e.iter().all(|ev| a.iter().any(|av| is_subset(ev, av))),
        (Value::Number(e), Value::Number(a)) => e.as_f64() == a.as_f64(),
        _ => expected == actual,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn outcome(text: &str, structured: Option<Value>) -> ToolCallOutcome {
        ToolCallOutcome {
            name: "t".into(),
            is_error: false,
            text: text.into(),
            structured_content: structured,
        }
    }

    fn expect(contains: Option<&str>, regex: Option<&str>, json: Option<Value>) -> ExpectedContent {
        let json = json.map(|j| j.as_object().cloned().expect("an object"));
        ExpectedContent { contains: contains.map(Into::into), regex: regex.map(Into::into), json }
    }

    #[test]
    fn json_subset_semantics() {
        let actual = json!({"a": 1, "b": {"c": [1, 2, {"d": true}]}, "e": "x"});
        assert!(is_subset(&json!({"a": 1.0}), &actual));
        assert!(is_subset(&json!({"b": {"c": [{"d": true}, 2]}}), &actual));
        assert!(!is_subset(&json!({"b": {"c": [3]}}), &actual));
        assert!(!is_subset(&json!({"z": null}), &actual));
        assert!(!is_subset(&json!({"a": "1"}), &actual));
    }

    #[test]
    fn every_expectation_that_is_set_must_hold() {
        let o = outcome("The sum of 1 and 2 is 3", None);
        assert!(check(&o, Some(&expect(Some("is 3"), Some(r"sum of \d+"), None))).is_ok());
        assert!(check(&o, Some(&expect(Some("is 4"), None, None))).is_err());
        assert!(check(&o, Some(&expect(None, Some(r"^\d+$"), None))).is_err());
        let json_text = outcome(r#"{"total": 3}"#, None);
        assert!(check(&json_text, Some(&expect(None, None, Some(json!({"total": 3}))))).is_ok());
        let structured = outcome("", Some(json!({"total": 4})));
        assert!(check(&structured, Some(&expect(None, None, Some(json!({"total": 3}))))).is_err());
    }

    #[test]
    fn an_error_result_fails_even_without_expectations() {
        let mut o = outcome("boom", None);
        o.is_error = true;
        assert!(matches!(check(&o, None), Err(ProbeError::ToolCallMismatch(_))));
    }

    #[test]
    fn outcomes_join_text_content_and_refuse_results_without_content() {
        let result = json!({"content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]});
        assert_eq!(outcome_of("t", &result).unwrap().text, "a\nb");
        assert!(outcome_of("t", &json!({})).is_err());
    }
}
