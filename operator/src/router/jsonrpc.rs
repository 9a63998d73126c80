//! What the router reads of a request body: the JSON-RPC method (an `initialize` opens a
//! session) and, for `tools/call`, the tool's name (tool-scoped canaries). Nothing else of the
//! body is interpreted; the bytes are forwarded unchanged.

use serde::Deserialize;

#[derive(Deserialize)]
struct Message {
    method: Option<String>,
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    name: Option<String>,
}

/// One request's method and, for a tool call, its tool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sniffed {
    pub method: Option<String>,
    pub tool: Option<String>,
}

impl Sniffed {
    pub fn is_initialize(&self) -> bool {
        self.method.as_deref() == Some("initialize")
    }
}

/// Reads a JSON-RPC message or batch (its first message decides; a batch cannot carry
/// `initialize`). Not JSON, or no method (a response the client sends back): nothing sniffed.
pub fn sniff(body: &[u8]) -> Sniffed {
    let first: Option<Message> = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Vec<Message>>(body).ok().and_then(|v| v.into_iter().next()),
        Some(b'{') => serde_json::from_slice(body).ok(),
        _ => None,
    };
    let Some(m) = first else { return Sniffed::default() };
    let tool = (m.method.as_deref() == Some("tools/call")).then(|| m.params.and_then(|p| p.name)).flatten();
    Sniffed { method: m.method, tool }
}

#[cfg(test)]
mod tests {
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
        let batch = sniff(br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":3,"method":"ping"}]"#);
        assert_eq!(batch.method.as_deref(), Some("notifications/initialized"));
        let prompt = sniff(br#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"x"}}"#);
        assert_eq!(prompt.tool, None, "only tool calls name a tool");
        for junk in [&b""[..], b"null", b"{", b"[]", b"\xff\xfe", br#"{"jsonrpc":"2.0","id":1,"result":{}}"#]
        {
            assert_eq!(sniff(junk), Sniffed::default());
        }
    }
}
