//! JSON-RPC 2.0 framing for MCP messages: building requests, recognising the answer to one.

use mcp_wire::answer;
pub use mcp_wire::answer::excerpt;
use serde_json::{Value, json};

use super::error::ProbeError;

pub fn request(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

pub fn notification(method: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": method})
}

/// If `message` answers request `id`, its result or its error (`mcp_wire::answer::answer_to`,
/// in the probe's error type). Other traffic on the stream gives `None`.
pub fn answer_to(message: &Value, id: i64) -> Result<Option<Result<Value, ProbeError>>, ProbeError> {
    Ok(answer::answer_to(message, id)?.map(|outcome| outcome.map_err(ProbeError::from)))
}

/// Parses a JSON body and finds the answer to `id` in it.
pub fn answer_in_body(body: &[u8], id: i64) -> Result<Value, ProbeError> {
    Ok(answer::answer_in_body(body, id)??)
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
