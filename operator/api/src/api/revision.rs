//! Revisions: a stable name for each distinct pod template.
//!
//! A revision is the first 10 hex digits of the SHA-256 of the template's canonical JSON (object
//! keys sorted, so field order in the manifest does not matter). It names the revision's
//! Deployment (`<rollout>-<revision>`) and labels its pods, so it must be identical across
//! operator restarts and versions: it depends on nothing but the template.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Hex digits kept: 40 bits, ample for the handful of revisions one rollout ever has alive.
const REVISION_LEN: usize = 10;

/// The revision of a pod template.
pub fn revision_of(template: &PodTemplateSpec) -> String {
    // Serializing a k8s-openapi type to a Value cannot fail: it has no non-string map keys.
    let value = serde_json::to_value(template).unwrap_or(Value::Null);
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    let digest = Sha256::digest(canonical.as_bytes());
    digest
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .take(REVISION_LEN)
        .map(|nibble| char::from_digit(u32::from(nibble), 16).unwrap_or('0'))
        .collect()
}

/// JSON with object keys sorted, whatever serde_json's map ordering feature says.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(json: serde_json::Value) -> PodTemplateSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn same_template_same_revision_whatever_the_field_order() {
        let a = template(serde_json::json!({
            "metadata": {"labels": {"app": "docs", "tier": "mcp"}},
            "spec": {"containers": [{"name": "server", "image": "mcp-fixture:v1"}]}
        }));
        let b = template(serde_json::json!({
            "spec": {"containers": [{"image": "mcp-fixture:v1", "name": "server"}]},
            "metadata": {"labels": {"tier": "mcp", "app": "docs"}}
        }));
        assert_eq!(revision_of(&a), revision_of(&b));
    }

    #[test]
    fn any_template_change_is_a_new_revision() {
        let v1 =
            template(serde_json::json!({"spec": {"containers": [{"name": "s", "image": "mcp-fixture:v1"}]}}));
        let v2 =
            template(serde_json::json!({"spec": {"containers": [{"name": "s", "image": "mcp-fixture:v2"}]}}));
        assert_ne!(revision_of(&v1), revision_of(&v2));
    }

    #[test]
    fn revision_is_a_short_dns_safe_label_and_never_changes() {
        let t =
            template(serde_json::json!({"spec": {"containers": [{"name": "s", "image": "mcp-fixture:v1"}]}}));
        let rev = revision_of(&t);
        assert_eq!(rev.len(), REVISION_LEN);
        assert!(rev.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // Pinned: a change here renames every live Deployment on upgrade.
        assert_eq!(rev, "eb2552d04e");
    }
}
