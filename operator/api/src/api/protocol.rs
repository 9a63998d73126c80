//! The MCP protocol versions the operator knows, and which era each belongs to.
//!
//! Two eras coexist in real fleets: the stateful `initialize` handshake (2024-11-05 …
//! 2025-11-25, sessions carried by `Mcp-Session-Id`) and the stateless revision of 2026-07-28
//! (`server/discover`, a per-request `_meta` envelope). A probe speaks each era differently, so
//! the era of a version decides how it is probed.

/// Versions negotiated with the `initialize` handshake, oldest first.
pub const HANDSHAKE_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// Versions of the stateless era (`server/discover` + per-request `_meta`), oldest first.
pub const STATELESS_VERSIONS: &[&str] = &["2026-07-28"];

/// How a protocol version is spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// `initialize` → `notifications/initialized` → requests within a session.
    Handshake,
    /// `server/discover`, then independent requests each carrying `_meta`.
    Stateless,
}

/// The era of a `YYYY-MM-DD` version. Unknown versions newer than the last handshake version
/// are taken as stateless: the handshake is not coming back.
pub fn era_of(version: &str) -> Era {
    let last_handshake = HANDSHAKE_VERSIONS[HANDSHAKE_VERSIONS.len() - 1];
    if version <= last_handshake { Era::Handshake } else { Era::Stateless }
}

/// Every known version, oldest first: the default of `probe.protocolVersions`.
pub fn default_accepted_versions() -> Vec<String> {
    HANDSHAKE_VERSIONS.iter().chain(STATELESS_VERSIONS).map(|v| (*v).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eras_split_at_the_stateless_revision() {
        assert_eq!(era_of("2024-11-05"), Era::Handshake);
        assert_eq!(era_of("2025-11-25"), Era::Handshake);
        assert_eq!(era_of("2026-07-28"), Era::Stateless);
        assert_eq!(era_of("2027-01-01"), Era::Stateless);
    }

    #[test]
    fn defaults_cover_both_eras_in_order() {
        let all = default_accepted_versions();
        assert_eq!(all.first().map(String::as_str), Some("2024-11-05"));
        assert_eq!(all.last().map(String::as_str), Some("2026-07-28"));
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }
}
