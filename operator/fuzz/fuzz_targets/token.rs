//! Session tokens: any string a client sends is opened without panicking, only what the keys
//! sealed opens, and what is sealed opens to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_rollout::router::token::{Keys, Pin};

fuzz_target!(|data: &[u8]| {
    let keys = Keys::new(&[7; 32], Some(&[9; 32])).expect("32-byte keys");
    if let Ok(text) = std::str::from_utf8(data) {
        // Nothing opens that these keys did not seal: forging a token takes the key.
        assert!(keys.open(text).is_none(), "{text:?} opened");
        let (head, tail) = text.split_at(text.len() / 2);
        let pin = Pin { backend: head.to_owned(), revision: tail.to_owned(), session: text.to_owned(), opened: 7 };
        let token = keys.seal(&pin);
        assert_eq!(keys.open(&token).as_ref(), Some(&pin));
    }
});
