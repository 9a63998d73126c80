//! `e2e/images.yaml`: which local command runs for an image.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ImageRule {
    /// A prefix of the image reference; a trailing `*` matches any rest.
    #[serde(rename = "match")]
    pub pattern: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ImageMap {
    pub images: Vec<ImageRule>,
}

impl ImageMap {
    /// Reads the map, putting `bin_dir` for `{bin}`.
    pub fn load(path: &Path, bin_dir: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?.replace("{bin}", &bin_dir.display().to_string());
        serde_yaml::from_str(&text).map_err(std::io::Error::other)
    }

    pub fn rule_for(&self, image: &str) -> Option<&ImageRule> {
        self.images.iter().find(|rule| match rule.pattern.strip_suffix('*') {
            Some(prefix) => image.starts_with(prefix),
            None => image == rule.pattern,
        })
    }
}

/// The tag of an image reference (`latest` when it has none).
pub fn tag_of(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map_or("latest", |(_, tag)| tag)
}

/// `$(NAME)` references replaced from `vars`; unknown ones kept, `$$(NAME)` escapes, as the
/// kubelet expands env values, command and args.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("$(") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            out.push_str(&rest[..i - 1]);
            out.push_str("$(");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(end) if vars.contains_key(&after[..end]) => {
                out.push_str(&vars[&after[..end]]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("$(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_by_prefix_and_tags_are_read() {
        let map: ImageMap =
            serde_yaml::from_str("images:\n- {match: 'mcp-fixture:*', command: [x]}\n").unwrap();
        assert!(map.rule_for("mcp-fixture:v2-breaking").is_some());
        assert!(map.rule_for("nginx:1").is_none());
        assert_eq!(tag_of("registry:5000/mcp-fixture:v2"), "v2");
        assert_eq!(tag_of("mcp-fixture"), "latest");
    }

    #[test]
    fn references_expand_like_the_kubelet() {
        let vars = BTreeMap::from([("POD_IP".to_owned(), "127.1.0.2".to_owned())]);
        assert_eq!(expand("$(POD_IP):8080", &vars), "127.1.0.2:8080");
        assert_eq!(expand("$(NOPE) $$(POD_IP)", &vars), "$(NOPE) $(POD_IP)");
    }
}
