//! JSON-RPC 2.0 framing for MCP messages: building requests, recognising the answer to one.

use serde_json::{Value, json};

use super::error::ProbeError;

pub fn request(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub fn notification(method: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": method})
}

/// If `message` answers request `id`, its result or its error. Other traffic on the stream
/// (notifications, server requests, answers to other ids) gives `None`.
pub fn answer_to(message: &Value, id: i64) -> Result<Option<Result<Value, ProbeError>>, ProbeError> {
    let Some(object) = message.as_object() else {
        return Err(ProbeError::NotMcp(format!("not a JSON-RPC message: {}", excerpt(&message.to_string()))));
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(ProbeError::NotMcp(format!(
            "not a JSON-RPC 2.0 message: {}",
            excerpt(&message.to_string())
        )));
    }
    if object.contains_key("method") || object.get("id").and_then(Value::as_i64) != Some(id) {
        // An error about an unparseable request may carry a null id: it is still ours.
        let null_id_error = object.get("id").is_some_and(Value::is_null) && object.contains_key("error");
        if !null_id_error {
            return Ok(None);
        }
    }
    if let Some(error) = object.get("error") {
        let code = error.get("code").and_then(Value::as_i64);
        let message = error.get("message").and_then(Value::as_str);
        return match (code, message) {
            (Some(code), Some(message)) => Ok(Some(Err(ProbeError::Rpc {
                code,
                message: excerpt(message),
                data: error.get("data").cloned(),
            }))),
            _ => {
                Err(ProbeError::NotMcp(format!("malformed JSON-RPC error: {}", excerpt(&error.to_string()))))
            }
        };
    }
    match object.get("result") {
        Some(result @ Value::Object(_)) => Ok(Some(Ok(result.clone()))),
        Some(other) => {
            Err(ProbeError::NotMcp(format!("result is not an object: {}", excerpt(&other.to_string()))))
        }
        None => Err(ProbeError::NotMcp("a response with neither result nor error".into())),
    }
}

/// Parses a JSON body and finds the answer to `id` in it.
pub fn answer_in_body(body: &[u8], id: i64) -> Result<Value, ProbeError> {
    let message: Value = serde_json::from_slice(body).map_err(|e| {
        ProbeError::NotMcp(format!("body is not JSON ({e}): {}", excerpt(&String::from_utf8_lossy(body))))
    })?;
    match answer_to(&message, id)? {
        Some(outcome) => outcome,
        None => Err(ProbeError::NotMcp(format!("the body does not answer request {id}"))),
    }
}

/// The first 200 characters of a text, for messages.
pub fn excerpt(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_matched_by_id_and_other_traffic_is_skipped() {
        let ok = json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": []}});
        assert_eq!(answer_to(&ok, 3).unwrap().unwrap().unwrap(), json!({"tools": []}));
        assert!(answer_to(&ok, 4).unwrap().is_none());
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}});
        assert!(answer_to(&progress, 3).unwrap().is_none());
    }

    #[test]
    fn errors_are_typed_and_malformed_messages_are_not_mcp() {
        let error = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32022, "message": "no",
                           "data": {"supported": ["2026-07-28"], "requested": "x"}}});
        let e = answer_to(&error, 1).unwrap().unwrap().unwrap_err();
        assert_eq!(e.supported_versions(), Some(vec!["2026-07-28".to_owned()]));
        for bad in [
            json!([1]),
            json!({"id": 1, "result": {}}),
            json!({"jsonrpc": "2.0", "id": 1}),
            json!({"jsonrpc": "2.0", "id": 1, "result": 5}),
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": "x"}}),
        ] {
            assert!(matches!(answer_to(&bad, 1), Err(ProbeError::NotMcp(_))), "{bad}");
        }
        assert!(matches!(answer_in_body(b"<html>", 1), Err(ProbeError::NotMcp(_))));
    }
}
