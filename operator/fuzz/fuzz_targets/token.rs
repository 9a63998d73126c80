//! Session tokens: any string a client sends is opened without panicking, only what the keys
//! sealed opens, what is sealed opens to itself, and every session id MCP allows is sealed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_wire::token::{Keys, MAX_SESSION_ID_LEN, Pin};

fuzz_target!(|data: &[u8]| {
    let keys = Keys::new(&[7; 32], Some(&[9; 32])).expect("32-byte keys");
    if let Ok(text) = std::str::from_utf8(data) {
        // Nothing opens that these keys did not seal: forging a token takes the key.
        assert!(keys.open(text).is_none(), "{text:?} opened");
        let mut middle = text.len() / 2;
        while !text.is_char_boundary(middle) {
            middle -= 1;
        }
        let (head, tail) = text.split_at(middle);
        let pin =
            Pin { backend: head.to_owned(), revision: tail.to_owned(), session: text.to_owned(), opened: 7 };
        // What is sealed opens to itself.
        if let Some(token) = keys.seal(&pin) {
            assert_eq!(keys.open(&token).as_ref(), Some(&pin));
        }
        // Every id MCP allows (visible ASCII) up to the bound is sealed, even with the longest
        // pod name (253) and revision label (63) Kubernetes allows.
        let allowed = !text.is_empty()
            && text.len() <= MAX_SESSION_ID_LEN
            && text.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if allowed {
            let longest = Pin {
                backend: "p".repeat(253),
                revision: "r".repeat(63),
                session: text.to_owned(),
                opened: u64::MAX,
            };
            assert!(keys.seal(&longest).is_some(), "{text:?} not sealed");
        }
    }
});
