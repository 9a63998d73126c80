//! The pure parts of `kubectl mcprollout`'s cluster commands: the `list` table, whether a
//! manual request is still pending, and the template change behind `restart`. The binary
//! (`src/bin/kubectl-mcprollout.rs`) reads and writes; these decide what.

use std::fmt::Write;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::api::{McpRollout, REQUEST_ANNOTATION, StrategyRef};

/// The pod-template annotation `restart` sets: a new template, so a new revision that replaces
/// every pod through the rollout's own steps, probes and drains (`kubectl rollout restart`
/// does the same to a Deployment).
pub const RESTARTED_AT_ANNOTATION: &str = "mcprollout.dev/restartedAt";

/// The id of a request for `action` the operator has not handled yet, if the rollout carries
/// one: a second `promote` after a timed-out first one waits for that one instead of writing a
/// new id, which the operator would act on as a second promotion.
pub fn pending_request(rollout: &McpRollout, action: &str) -> Option<String> {
    let id = rollout.metadata.annotations.as_ref()?.get(REQUEST_ANNOTATION)?;
    let handled = rollout.status.as_ref().and_then(|s| s.last_handled_request.as_deref());
    (id.split_once('@').is_some_and(|(a, _)| a == action) && handled != Some(id.as_str())).then(|| id.clone())
}

/// The merge patch behind `restart`: the pod template's restart annotation set to `now`.
pub fn restart_patch(now: Timestamp) -> Value {
    json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now.to_string()}}}}})
}

fn age(rollout: &McpRollout, now: Timestamp) -> String {
    age_since(rollout.metadata.creation_timestamp.as_ref().map(|t| t.0), now)
}

/// How long ago `then` was, as kubectl prints ages; "?" when unknown.
fn age_since(then: Option<Timestamp>, now: Timestamp) -> String {
    let Some(then) = then else { return "?".into() };
    let secs = (now.as_second() - then.as_second()).max(0);
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// "step 3/7" for a canary, the blue-green stage otherwise; "-" with nothing in progress.
fn step(rollout: &McpRollout) -> String {
    let Some(status) = &rollout.status else { return "-".into() };
    match (rollout.spec.strategy.kind(), status.canary_revision.is_some()) {
        (_, false) => "-".into(),
        (StrategyRef::Canary(canary), true) => match status.current_step_index {
            Some(i) => format!("{}/{}", i + 1, canary.steps.len()),
            None => "-".into(),
        },
        (StrategyRef::BlueGreen(_), true) => {
            status.stage.map_or_else(|| "-".into(), |s| format!("{s:?}").to_lowercase())
        }
    }
}

/// The `list` table: every McpRollout with its phase, weights (desired/effective), step,
/// revisions and age; NAMESPACE first when several namespaces are listed.
pub fn list_table(rollouts: &[McpRollout], now: Timestamp, with_namespace: bool) -> String {
    let mut rows = vec![{
        let mut header = vec!["NAME", "PHASE", "WEIGHT", "STEP", "STABLE", "CANARY", "AGE"];
        if with_namespace {
            header.insert(0, "NAMESPACE");
        }
        header.into_iter().map(str::to_owned).collect::<Vec<_>>()
    }];
    for r in rollouts {
        let status = r.status.clone().unwrap_or_default();
        let mut row = vec![
            r.metadata.name.clone().unwrap_or_default(),
            status.phase.map_or_else(|| "Unknown".into(), |p| format!("{p:?}")),
            format!("{}%/{}%", status.desired_weight, status.effective_weight),
            step(r),
            status.stable_revision.clone().unwrap_or_else(|| "-".into()),
            status.canary_revision.clone().unwrap_or_else(|| "-".into()),
            age(r, now),
        ];
        if with_namespace {
            row.insert(0, r.metadata.namespace.clone().unwrap_or_default());
        }
        rows.push(row);
    }
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
    out
}

/// The `history` table: each template that was stable, numbered, with its revision, images
/// and age, marking the stable one and the spec's.
pub fn history_table(
    rollout: &McpRollout,
    entries: &[crate::controller::history::Entry],
    now: Timestamp,
) -> String {
    let mut out = String::new();
    if entries.is_empty() {
        let _ = writeln!(out, "no history yet: a template is recorded when it becomes stable");
        return out;
    }
    let spec = crate::api::revision_of(&rollout.spec.template);
    let stable = rollout.status.as_ref().and_then(|s| s.stable_revision.clone());
    let _ = writeln!(out, "{:<4} {:<12} {:<8} {:<22} IMAGES", "#", "REVISION", "AGE", "");
    for e in entries {
        let mut notes = Vec::new();
        if stable.as_deref() == Some(e.revision.as_str()) {
            notes.push("stable");
        }
        if e.revision == spec {
            notes.push("spec");
        }
        let age = age_since(e.created, now);
        let _ = writeln!(
            out,
            "{:<4} {:<12} {:<8} {:<22} {}",
            e.number,
            e.revision,
            age,
            notes.join(", "),
            e.images().join(", ")
        );
    }
    out
}

/// Points a client configuration at the API server's address, resolved here, keeping its name
/// for TLS (`tls_server_name`, as kubeconfig's `tls-server-name` does). The released plugin is
/// linked statically, and a static glibc cannot load the NSS modules behind `getaddrinfo`; the
/// HTTP connector skips the lookup for an address, so no name reaches it. The name is resolved
/// by hickory, which reads `/etc/hosts` and `/etc/resolv.conf` itself.
pub async fn pin_api_server_address(config: &mut kube::Config) -> Result<(), String> {
    let Some(host) = config.cluster_url.host().map(str::to_owned) else { return Ok(()) };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let resolver = hickory_resolver::TokioResolver::builder_tokio()
        .map_err(|e| format!("cannot read the resolver configuration: {e}"))?
        .build()
        .map_err(|e| format!("cannot build a resolver: {e}"))?;
    let address = resolver
        .lookup_ip(bare)
        .await
        .map_err(|e| format!("cannot resolve the API server {bare}: {e}"))?
        .iter()
        .next()
        .ok_or_else(|| format!("the API server {bare} has no address"))?;
    config.cluster_url = with_host(&config.cluster_url, address)?;
    if config.tls_server_name.is_none() {
        config.tls_server_name = Some(bare.to_owned());
    }
    Ok(())
}

/// `uri` with its host replaced by `address` (port, path and query kept).
fn with_host(uri: &hyper::Uri, address: std::net::IpAddr) -> Result<hyper::Uri, String> {
    let host = match address {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let authority = match uri.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(authority.parse().map_err(|e| format!("{authority}: {e}"))?);
    hyper::Uri::from_parts(parts).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(value: Value) -> McpRollout {
        let mut base = json!({
            "apiVersion": "mcprollout.dev/v1alpha1", "kind": "McpRollout",
            "metadata": {"name": "docs", "namespace": "mcp", "creationTimestamp": "2026-12-04T10:00:00Z"},
            "spec": {
                "template": {"spec": {"containers": [{"name": "s", "image": "i"}]}},
                "service": {"port": 8080},
                "strategy": {"canary": {"steps": [{"setWeight": 5}, {"pause": {}}, {"setWeight": 50}]}}
            }
        });
        json_patch::merge(&mut base, &value);
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn the_history_numbers_each_stable_template_and_marks_stable_and_spec() {
        use crate::controller::history::Entry;
        let now: Timestamp = "2026-12-04T12:30:00Z".parse().unwrap();
        let r = rollout(json!({}));
        let spec_revision = crate::api::revision_of(&r.spec.template);
        let r = rollout(json!({"status": {"stableRevision": "aaaaaaaaaa"}}));
        let entry = |number: i64, revision: &str, image: &str, at: &str| Entry {
            name: format!("docs-{revision}"),
            number,
            revision: revision.into(),
            template: Some(
                serde_json::from_value(json!({"spec": {"containers": [{"name": "s", "image": image}]}}))
                    .unwrap(),
            ),
            created: Some(at.parse().unwrap()),
        };
        let text = history_table(
            &r,
            &[
                entry(1, "aaaaaaaaaa", "mcp:v1", "2026-12-04T10:30:00Z"),
                entry(2, &spec_revision, "i", "2026-12-04T12:29:00Z"),
            ],
            now,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[1].starts_with("1    aaaaaaaaaa   2h")
                && lines[1].contains("stable")
                && lines[1].ends_with("mcp:v1"),
            "{text}"
        );
        assert!(
            lines[2].starts_with(&format!("2    {spec_revision}   60s")) && lines[2].contains("spec"),
            "{text}"
        );
        assert!(history_table(&r, &[], now).starts_with("no history yet"));
    }

    #[test]
    fn the_api_servers_host_is_replaced_by_its_address_keeping_port_and_path() {
        let uri: hyper::Uri = "https://api.example.internal:6443/prefix".parse().unwrap();
        let v4 = with_host(&uri, "10.1.2.3".parse().unwrap()).unwrap();
        assert_eq!(v4.to_string(), "https://10.1.2.3:6443/prefix");
        let v6 =
            with_host(&"https://api.example.internal".parse().unwrap(), "fd00::1".parse().unwrap()).unwrap();
        assert_eq!(v6.to_string(), "https://[fd00::1]/");
    }

    #[tokio::test]
    async fn a_name_in_the_hosts_file_is_pinned_with_the_name_kept_for_tls() {
        // `localhost` is in every /etc/hosts; no DNS server is asked.
        let mut config = kube::Config::new("https://localhost:6443".parse().unwrap());
        pin_api_server_address(&mut config).await.unwrap();
        let host =
            config.cluster_url.host().unwrap().trim_start_matches('[').trim_end_matches(']').to_owned();
        assert!(host.parse::<std::net::IpAddr>().unwrap().is_loopback(), "{}", config.cluster_url);
        assert_eq!(config.cluster_url.port_u16(), Some(6443));
        assert_eq!(config.tls_server_name.as_deref(), Some("localhost"));
        // An address is left as it is, and so is a name the kubeconfig set.
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        pin_api_server_address(&mut config).await.unwrap();
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert_eq!(config.tls_server_name, None);
    }

    #[test]
    fn a_request_is_pending_until_the_operator_records_its_id() {
        let asked = rollout(json!({"metadata": {"annotations": {REQUEST_ANNOTATION: "promote@17"}}}));
        assert_eq!(pending_request(&asked, "promote").as_deref(), Some("promote@17"));
        assert_eq!(pending_request(&asked, "abort"), None, "another action's id is not ours to reuse");
        let handled = rollout(json!({
            "metadata": {"annotations": {REQUEST_ANNOTATION: "promote@17"}},
            "status": {"lastHandledRequest": "promote@17"}
        }));
        assert_eq!(pending_request(&handled, "promote"), None);
        assert_eq!(pending_request(&rollout(json!({})), "promote"), None);
        let full = rollout(json!({"metadata": {"annotations": {REQUEST_ANNOTATION: "promote-full@3"}}}));
        assert_eq!(pending_request(&full, "promote"), None, "promote-full is its own action");
    }

    #[test]
    fn the_list_shows_phase_weights_step_revisions_and_age() {
        let now: Timestamp = "2026-12-04T12:30:00Z".parse().unwrap();
        let canary = rollout(json!({"status": {
            "phase": "Paused", "desiredWeight": 5, "effectiveWeight": 20, "currentStepIndex": 1,
            "stableRevision": "a1b2c3d4e5", "canaryRevision": "f6a7b8c9d0"
        }}));
        let steady = rollout(json!({
            "metadata": {"name": "search", "namespace": "tools"},
            "status": {"phase": "Healthy", "stableRevision": "0123456789"}
        }));
        let table = list_table(&[canary.clone(), steady], now, true);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("NAMESPACE") && lines[0].contains("WEIGHT"), "{table}");
        for cell in ["mcp", "docs", "Paused", "5%/20%", "2/3", "a1b2c3d4e5", "f6a7b8c9d0", "2h"] {
            assert!(lines[1].contains(cell), "{cell} in {}", lines[1]);
        }
        for cell in ["tools", "search", "Healthy", "0%/0%", "0123456789"] {
            assert!(lines[2].contains(cell), "{cell} in {}", lines[2]);
        }
        assert!(!list_table(&[canary], now, false).contains("NAMESPACE"));
    }

    #[test]
    fn restart_changes_only_the_templates_restart_annotation() {
        let now: Timestamp = "2026-12-04T12:30:00Z".parse().unwrap();
        let patch = restart_patch(now);
        assert_eq!(
            patch["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION],
            "2026-12-04T12:30:00Z"
        );
        let mut before = serde_json::to_value(rollout(json!({}))).unwrap();
        let old: McpRollout = serde_json::from_value(before.clone()).unwrap();
        json_patch::merge(&mut before, &patch);
        let new: McpRollout = serde_json::from_value(before).unwrap();
        assert_ne!(
            crate::api::revision_of(&new.spec.template),
            crate::api::revision_of(&old.spec.template),
            "a new revision replaces every pod"
        );
        assert_eq!(new.spec.template.spec, old.spec.template.spec, "nothing else changes");
    }
}
