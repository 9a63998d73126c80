//! Session tokens: the backend's `Mcp-Session-Id` (or legacy `sessionId`), sealed with the pod
//! and revision that hold the session. The client only ever sees the token; the router opens it
//! on each request to know where the session lives. Sealed with ChaCha20-Poly1305 (aws-lc-rs,
//! the crypto the workspace already links) under a key shared by every router replica, so
//! replicas share no state and a restart loses no session. Two keys are accepted while one is
//! rotated out: tokens are sealed with the first and opened with either.

use aws_lc_rs::{
    aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

/// Longest token accepted: anything longer is not ours, and is refused before any work.
pub const MAX_TOKEN_LEN: usize = 2048;
/// Longest backend session id sealed; a backend handing out longer ids is not proxied.
pub const MAX_SESSION_ID_LEN: usize = 512;
const PREFIX: &str = "mr1.";

/// Where a session lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The backend (a pod's name, or a standalone backend's name).
    #[serde(rename = "p")]
    pub backend: String,
    #[serde(rename = "r")]
    pub revision: String,
    /// The backend's own session id.
    #[serde(rename = "s")]
    pub session: String,
    /// When the session was opened (unix seconds; 0 when unknown): whichever replica sees it
    /// end measures its whole duration.
    #[serde(rename = "t", default)]
    pub opened: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("a session key is 32 bytes; got {0}")]
    Length(usize),
    #[error("no session key given")]
    None,
}

/// The keys tokens are sealed and opened with.
pub struct Keys {
    /// (id, key): the id is the token's first byte after the prefix, so opening tries one key.
    keys: Vec<(u8, LessSafeKey)>,
    random: SystemRandom,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("ids", &self.keys.iter().map(|k| k.0).collect::<Vec<_>>()).finish()
    }
}

/// A key's id: a byte derived from the key itself, so two routers given the same keys in either
/// order agree on it without configuration.
fn key_id(key: &[u8]) -> u8 {
    use sha2::Digest;
    sha2::Sha256::digest(key)[0]
}

impl Keys {
    /// The current key first, then the previous one (accepted, never used to seal).
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for raw in std::iter::once(current).chain(previous) {
            let unbound =
                UnboundKey::new(&CHACHA20_POLY1305, raw).map_err(|_| KeyError::Length(raw.len()))?;
            keys.push((key_id(raw), LessSafeKey::new(unbound)));
        }
        if keys.is_empty() {
            return Err(KeyError::None);
        }
        Ok(Self { keys, random: SystemRandom::new() })
    }

    /// A fresh random key (standalone mode without a key file: tokens then live as long as the
    /// process).
    pub fn generate() -> Self {
        let mut raw = [0u8; 32];
        SystemRandom::new().fill(&mut raw).expect("the system random source");
        Self::new(&raw, None).expect("a 32-byte key")
    }

    /// The token for `pin`; `None` when the backend's session id is not one MCP allows (visible
    /// ASCII, 0x21-0x7E) or longer than [`MAX_SESSION_ID_LEN`], or when the token would be
    /// longer than [`open`](Self::open) accepts: what is sealed always opens.
    pub fn seal(&self, pin: &Pin) -> Option<String> {
        let visible = pin.session.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if !visible || pin.session.is_empty() || pin.session.len() > MAX_SESSION_ID_LEN {
            return None;
        }
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).expect("the system random source");
        let mut data = serde_json::to_vec(pin).expect("a pin serializes");
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from([*id]), &mut data)
            .expect("sealing in memory");
        let mut raw = Vec::with_capacity(1 + NONCE_LEN + data.len());
        raw.push(*id);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&data);
        let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        (token.len() <= MAX_TOKEN_LEN).then_some(token)
    }

    /// The pin inside a token; `None` for anything that is not a token this router's keys
    /// sealed (forged, truncated, altered, sealed with a retired key).
    pub fn open(&self, token: &str) -> Option<Pin> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
        let (&id, rest) = raw.split_first()?;
        if rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        // Two keys may share an id byte (1 in 256): each is tried.
        self.keys.iter().filter(|(k, _)| *k == id).find_map(|(_, key)| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut data = sealed.to_vec();
            let plain = key.open_in_place(nonce, Aad::from([id]), &mut data).ok()?;
            serde_json::from_slice(plain).ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin() -> Pin {
        Pin {
            backend: "docs-5f2c1a9e0b-7d9f8".into(),
            revision: "5f2c1a9e0b".into(),
            session: "abc-123".into(),
            opened: 1_790_000_000,
        }
    }

    #[test]
    fn every_session_id_mcp_allows_is_sealed_and_no_other() {
        let keys = Keys::new(&[7; 32], None).unwrap();
        let with = |session: &str| Pin {
            backend: "p".repeat(253),
            revision: "r".repeat(63),
            session: session.to_owned(),
            opened: u64::MAX,
        };
        // The longest names Kubernetes allows, and an id that JSON escapes at every byte.
        let worst = with(&"\"".repeat(MAX_SESSION_ID_LEN));
        assert_eq!(keys.open(&keys.seal(&worst).unwrap()), Some(worst));
        for refused in ["", "a b", "a\u{1}b", "caf\u{e9}", &"x".repeat(MAX_SESSION_ID_LEN + 1)] {
            assert_eq!(keys.seal(&with(refused)), None, "{refused:?}");
        }
    }

    #[test]
    fn a_sealed_pin_opens_and_nothing_else_does() {
        let keys = Keys::new(&[7; 32], None).unwrap();
        let token = keys.seal(&pin()).unwrap();
        assert_eq!(keys.open(&token), Some(pin()));
        assert_ne!(keys.seal(&pin()).unwrap(), token, "a fresh nonce every time");
        assert!(!token.contains("abc-123"), "the backend's id is not readable: {token}");
        // Every single-character change is refused.
        for i in PREFIX.len()..token.len() {
            let mut altered = token.clone().into_bytes();
            altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            assert_eq!(keys.open(&altered), None, "altered at {i}");
        }
        for junk in ["", "mr1.", "mr1.AAAA", "abc-123", &"x".repeat(5000), &token[..token.len() - 2]] {
            assert_eq!(keys.open(junk), None, "{junk:?}");
        }
        let other = Keys::new(&[8; 32], None).unwrap();
        assert_eq!(other.open(&token), None, "another router's key");
    }

    #[test]
    fn during_rotation_old_tokens_open_and_new_ones_use_the_new_key() {
        let old = Keys::new(&[1; 32], None).unwrap();
        let rotating = Keys::new(&[2; 32], Some(&[1; 32])).unwrap();
        let new_only = Keys::new(&[2; 32], None).unwrap();
        let before = old.seal(&pin()).unwrap();
        assert_eq!(rotating.open(&before), Some(pin()));
        let after = rotating.seal(&pin()).unwrap();
        assert_eq!(new_only.open(&after), Some(pin()));
        assert_eq!(old.open(&after), None);
        assert_eq!(new_only.open(&before), None, "the old key retired");
        assert_eq!(Keys::new(&[1; 16], None).unwrap_err(), KeyError::Length(16));
    }
}
