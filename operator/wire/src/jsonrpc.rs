//! What the router reads of JSON-RPC: of a request, the method (an `initialize` opens a
//! session), its id and, for `tools/call`, the tool's name (tool-scoped canaries, per-tool
//! metrics); of a response, which request it answers and how the call ended. Nothing is
//! rewritten: the bytes are forwarded unchanged.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Message {
    method: Option<String>,
    id: Option<Value>,
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    name: Option<String>,
}

/// One request's method, id and, for a tool call, its tool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sniffed {
    pub method: Option<String>,
    pub tool: Option<String>,
    /// The ids of the tool calls in the body (one, or several in a batch), as [`id_key`]s.
    pub tool_calls: Vec<(String, String)>,
}

impl Sniffed {
    pub fn is_initialize(&self) -> bool {
        self.method.as_deref() == Some("initialize")
    }
}

/// A JSON-RPC id as a key: its JSON text (`1` and `"1"` are different ids).
pub fn id_key(id: &Value) -> Option<String> {
    match id {
        Value::String(_) | Value::Number(_) => Some(id.to_string()),
        _ => None,
    }
}

/// Reads a JSON-RPC message or batch (its first message decides where it goes; a batch cannot
/// carry `initialize`). Not JSON, or no method (a response the client sends back): nothing.
pub fn sniff(body: &[u8]) -> Sniffed {
    let messages: Vec<Message> = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(body).unwrap_or_default(),
        Some(b'{') => serde_json::from_slice(body).map(|m| vec![m]).unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut tool_calls = Vec::new();
    for m in &messages {
        if m.method.as_deref() == Some("tools/call")
            && let (Some(id), Some(name)) =
                (m.id.as_ref().and_then(id_key), m.params.as_ref().and_then(|p| p.name.as_ref()))
        {
            tool_calls.push((id, name.clone()));
        }
    }
    let Some(first) = messages.into_iter().next() else { return Sniffed::default() };
    let tool =
        (first.method.as_deref() == Some("tools/call")).then(|| first.params.and_then(|p| p.name)).flatten();
    Sniffed { method: first.method, tool, tool_calls }
}

/// The value of a standard MCP request header (SEP-2243, 2026-07-28: `Mcp-Method`, `Mcp-Name`)
/// as text: the bytes as sent when they are visible ASCII (spaces allowed inside), or, when the
/// client had to encode the value (`=?base64?…?=`, for text that is not ASCII), its decoding.
/// `None` for anything else: a broken encoding, bytes that are not UTF-8, control characters.
pub fn header_text(raw: &[u8]) -> Option<String> {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    const PREFIX: &[u8] = b"=?base64?";
    const SUFFIX: &[u8] = b"?=";
    if raw.len() >= PREFIX.len() + SUFFIX.len() && raw.starts_with(PREFIX) && raw.ends_with(SUFFIX) {
        let decoded = STANDARD.decode(&raw[PREFIX.len()..raw.len() - SUFFIX.len()]).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return (!text.chars().any(char::is_control)).then_some(text);
    }
    let visible = raw.iter().all(|b| (0x20..0x7f).contains(b));
    visible.then(|| String::from_utf8_lossy(raw).into_owned())
}

/// How a tool call ended, as its response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A JSON-RPC error response (other than invalid params).
    RpcError,
    /// A result with `isError: true` (the tool ran and failed).
    ToolError,
    /// The arguments did not match the tool's input schema: a JSON-RPC -32602, or (from the
    /// 2025-11-25 revision, SEP-1303) an `isError` result reporting input validation.
    SchemaValidation,
}

impl Outcome {
    /// The `error_type` label of a failed call; `None` for a success.
    pub fn error_type(self) -> Option<&'static str> {
        match self {
            Self::Ok => None,
            Self::RpcError => Some("jsonrpc"),
            Self::ToolError => Some("tool"),
            Self::SchemaValidation => Some("schema_validation"),
        }
    }
}

/// JSON-RPC "invalid params": what servers before SEP-1303 answer a call whose arguments do
/// not match the schema.
const INVALID_PARAMS: i64 = -32602;

/// SEP-1303 leaves an input-validation result's wording to the server. These are what the
/// official SDKs write (TypeScript "Input validation error", Python "validation error", Go
/// "validating \"arguments\"", the -32602 code quoted by the ones that wrap the old error), and
/// what hand-written servers commonly say; matched case-insensitively on the first text block.
const VALIDATION_WORDING: [&str; 6] = [
    "input validation",
    "validation error",
    "validating \"arguments\"",
    "invalid arguments",
    "invalid params",
    "-32602",
];

/// The responses in a JSON-RPC message or batch: (id, outcome) for each.
pub fn responses(message: &Value) -> Vec<(String, Outcome)> {
    match message {
        Value::Array(batch) => batch.iter().filter_map(response).collect(),
        Value::Object(_) => response(message).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn response(message: &Value) -> Option<(String, Outcome)> {
    let id = id_key(message.get("id")?)?;
    if message.get("method").is_some() {
        return None; // a request from the server, not a response
    }
    if let Some(error) = message.get("error") {
        let outcome = if error.get("code").and_then(Value::as_i64) == Some(INVALID_PARAMS) {
            Outcome::SchemaValidation
        } else {
            Outcome::RpcError
        };
        return Some((id, outcome));
    }
    let result = message.get("result")?;
    if result.get("isError").and_then(Value::as_bool) != Some(true) {
        return Some((id, Outcome::Ok));
    }
    let text = result
        .get("content")
        .and_then(Value::as_array)
        .and_then(|blocks| blocks.iter().find_map(|b| b.get("text").and_then(Value::as_str)))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let schema = VALIDATION_WORDING.iter().any(|w| text.contains(w));
    Some((id, if schema { Outcome::SchemaValidation } else { Outcome::ToolError }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn methods_and_tool_names_are_read_and_junk_is_nothing() {
        let init = sniff(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#,
        );
        assert!(init.is_initialize());
        let call = sniff(
            br#" {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search","arguments":{}}}"#,
        );
        assert_eq!((call.method.as_deref(), call.tool.as_deref()), (Some("tools/call"), Some("search")));
        assert_eq!(call.tool_calls, vec![("2".to_owned(), "search".to_owned())]);
        let batch = sniff(br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x"}}]"#);
        assert_eq!(batch.method.as_deref(), Some("notifications/initialized"));
        assert_eq!(batch.tool_calls, vec![("\"a\"".to_owned(), "x".to_owned())]);
        let prompt = sniff(br#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"x"}}"#);
        assert_eq!(prompt.tool, None, "only tool calls name a tool");
        assert!(prompt.tool_calls.is_empty());
        for junk in [&b""[..], b"null", b"{", b"[]", b"\xff\xfe", br#"{"jsonrpc":"2.0","id":1,"result":{}}"#]
        {
            assert_eq!(sniff(junk), Sniffed::default());
        }
    }

    #[test]
    fn header_values_are_read_as_sent_or_decoded() {
        assert_eq!(header_text(b"search_documents").as_deref(), Some("search_documents"));
        assert_eq!(header_text(b"tools/call").as_deref(), Some("tools/call"));
        // "r\u{e9}sum\u{e9}" (not ASCII) as a client must send it.
        assert_eq!(header_text(b"=?base64?csOpc3Vtw6k=?=").as_deref(), Some("r\u{e9}sum\u{e9}"));
        for bad in [
            &b"=?base64?not base64!?="[..],
            b"=?base64?//79?=",
            b"a\x01b",
            b"caf\xc3\xa9",
            b"=?base64?AQ==?=",
        ] {
            assert_eq!(header_text(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn responses_say_how_each_call_ended() {
        let ok = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "hi"}]}});
        assert_eq!(responses(&ok), vec![("1".to_owned(), Outcome::Ok)]);
        let failed = json!({"jsonrpc": "2.0", "id": "x", "result": {"isError": true,
            "content": [{"type": "text", "text": "search failed (fault injected)"}]}});
        assert_eq!(responses(&failed), vec![("\"x\"".to_owned(), Outcome::ToolError)]);
        let rpc = json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -32603, "message": "boom"}});
        assert_eq!(responses(&rpc), vec![("2".to_owned(), Outcome::RpcError)]);
        let invalid = json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "bad"}});
        assert_eq!(responses(&invalid)[0].1, Outcome::SchemaValidation);
        // SEP-1303 results, as the SDKs word them.
        for text in [
            "MCP error -32602: Input validation error: Invalid arguments for tool search",
            "1 validation error for searchArguments",
            "validating \"arguments\": missing properties: [\"query\"]",
            "get_document: invalid arguments for get_document (fault injected)",
        ] {
            let r =
                json!({"id": 4, "result": {"isError": true, "content": [{"type": "text", "text": text}]}});
            assert_eq!(responses(&r)[0].1, Outcome::SchemaValidation, "{text}");
        }
        let batch = json!([ok, rpc, {"jsonrpc": "2.0", "method": "notifications/progress"}]);
        assert_eq!(responses(&batch).len(), 2, "notifications are not responses");
        let server_request = json!({"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage"});
        assert!(responses(&server_request).is_empty());
        for junk in
            [json!(null), json!(3), json!({"id": null, "result": {}}), json!({"id": {}, "result": {}})]
        {
            assert!(responses(&junk).is_empty(), "{junk}");
        }
    }
}
