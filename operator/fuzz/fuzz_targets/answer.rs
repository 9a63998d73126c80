//! The probe's reading of a JSON-RPC answer: any body, for any request id, gives the answer, a
//! JSON-RPC error or "not MCP" without panicking; what it quotes of the server is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_wire::answer::{self, EXCERPT_CHARS};

/// An excerpt, with its ellipsis, inside a message of ours that may carry serde_json's own
/// (short) error: at most this many characters.
const QUOTED: usize = EXCERPT_CHARS + 200;

fuzz_target!(|data: &[u8]| {
    let Some((&id, body)) = data.split_first() else { return };
    let id = i64::from(id) - 128;
    match answer::answer_in_body(body, id) {
        Ok(Ok(result)) => assert!(result.is_object()),
        Ok(Err(error)) => assert!(error.message.chars().count() <= EXCERPT_CHARS + 1),
        Err(not_mcp) => assert!(not_mcp.0.chars().count() <= QUOTED, "{}", not_mcp.0.len()),
    }
    let text = String::from_utf8_lossy(body);
    assert!(answer::excerpt(&text).chars().count() <= EXCERPT_CHARS + 1);
});
