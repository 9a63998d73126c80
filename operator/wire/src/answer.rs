//! How the MCP probe reads a server's answer to one of its requests: the JSON-RPC 2.0 response
//! carrying that request's id among whatever else a stream brings (notifications, server
//! requests, answers to other ids), and what makes a message not MCP at all.
//!
//! Pure: the probe's error type maps these onto its report; the fuzz target `answer` feeds it
//! hostile bodies.

use serde_json::Value;

/// The message is not a JSON-RPC 2.0 message an MCP server may send; the text says why, with
/// an excerpt of what came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotMcp(pub String);

/// A JSON-RPC error answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    pub code: i64,
    /// At most [`excerpt`]'s length: the server chose it.
    pub message: String,
    pub data: Option<Value>,
}

/// What an answer said: a result object, or an error.
pub type Outcome = Result<Value, RpcError>;

/// If `message` answers request `id`, its result or its error. Other traffic on the stream
/// (notifications, server requests, answers to other ids) gives `None`.
pub fn answer_to(message: &Value, id: i64) -> Result<Option<Outcome>, NotMcp> {
    let Some(object) = message.as_object() else {
        return Err(NotMcp(format!("not a JSON-RPC message: {}", excerpt(&message.to_string()))));
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(NotMcp(format!("not a JSON-RPC 2.0 message: {}", excerpt(&message.to_string()))));
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
            (Some(code), Some(message)) => {
                Ok(Some(Err(RpcError { code, message: excerpt(message), data: error.get("data").cloned() })))
            }
            _ => Err(NotMcp(format!("malformed JSON-RPC error: {}", excerpt(&error.to_string())))),
        };
    }
    match object.get("result") {
        Some(result @ Value::Object(_)) => Ok(Some(Ok(result.clone()))),
        Some(other) => Err(NotMcp(format!("result is not an object: {}", excerpt(&other.to_string())))),
        None => Err(NotMcp("a response with neither result nor error".into())),
    }
}

/// Parses a JSON body and finds the answer to `id` in it.
pub fn answer_in_body(body: &[u8], id: i64) -> Result<Outcome, NotMcp> {
    let message: Value = serde_json::from_slice(body).map_err(|e| {
        NotMcp(format!("body is not JSON ({e}): {}", excerpt(&String::from_utf8_lossy(body))))
    })?;
    match answer_to(&message, id)? {
        Some(outcome) => Ok(outcome),
        None => Err(NotMcp(format!("the body does not answer request {id}"))),
    }
}

/// Characters [`excerpt`] keeps.
pub const EXCERPT_CHARS: usize = 200;

/// The first [`EXCERPT_CHARS`] characters of a text (trimmed), for messages.
pub fn excerpt(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_are_matched_by_id_and_other_traffic_is_skipped() {
        let ok = json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": []}});
        assert_eq!(answer_to(&ok, 3).unwrap().unwrap().unwrap(), json!({"tools": []}));
        assert!(answer_to(&ok, 4).unwrap().is_none());
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}});
        assert!(answer_to(&progress, 3).unwrap().is_none());
        let null_id = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse"}});
        assert_eq!(answer_to(&null_id, 3).unwrap().unwrap().unwrap_err().code, -32700);
    }

    #[test]
    fn malformed_messages_are_not_mcp() {
        for bad in [
            json!([1]),
            json!({"id": 1, "result": {}}),
            json!({"jsonrpc": "2.0", "id": 1}),
            json!({"jsonrpc": "2.0", "id": 1, "result": 5}),
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": "x"}}),
        ] {
            assert!(answer_to(&bad, 1).is_err(), "{bad}");
        }
        assert!(answer_in_body(b"<html>", 1).is_err());
        assert!(answer_in_body(br#"{"jsonrpc":"2.0","id":2,"result":{}}"#, 1).is_err());
    }

    #[test]
    fn excerpts_cut_on_character_boundaries() {
        let long = "é".repeat(300);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("  short  "), "short");
    }
}
