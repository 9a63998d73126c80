//! JSON-RPC reading: any request body is sniffed, any message read as responses, and any bytes
//! read as a standard MCP header value (`Mcp-Name`), without panicking; a tool call sniffed is
//! one the body names; a header value read has no control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_wire::jsonrpc;

fuzz_target!(|data: &[u8]| {
    let sniffed = jsonrpc::sniff(data);
    if sniffed.tool.is_some() {
        assert_eq!(sniffed.method.as_deref(), Some("tools/call"));
    }
    if let Some(text) = jsonrpc::header_text(data) {
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    if let Ok(message) = serde_json::from_slice::<serde_json::Value>(data) {
        for (id, outcome) in jsonrpc::responses(&message) {
            assert!(!id.is_empty());
            let _ = outcome.error_type();
        }
    }
});
