//! What the operator asks of a rollout's routers, and how a router turns it and the rollout's
//! pods into its table. The operator writes the configuration (ConfigMap `<rollout>-router`,
//! key `routing.json`); every router replica watches it and the pods, and reports on `/state`
//! the `version` it has in force, so the operator acts only on what the routers really do.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::util::intstr::IntOrString};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{
    balance::RevisionTarget,
    proxy::{BackendAddr, Table},
};
use crate::api::labels;

/// The ConfigMap key holding the configuration.
pub const CONFIG_KEY: &str = "routing.json";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingConfig {
    /// A digest of everything else: what a router reports back as in force.
    #[serde(default)]
    pub version: String,
    /// The MCP server's port in each pod: a number, or the name of a container port.
    pub target_port: IntOrString,
    /// Share (0-100) of new work — new sessions, stateless requests — per revision. Every
    /// revision still running is listed; one at 0 takes no new work, and its pinned sessions
    /// are still served.
    pub weights: BTreeMap<String, u32>,
    /// The revision tool routes send their calls to.
    #[serde(default)]
    pub canary: Option<String>,
    /// Tools whose stateless calls go to the canary at a weight of their own.
    #[serde(default)]
    pub tool_routes: BTreeMap<String, u32>,
    /// Revisions rolled back: their sessions end at their next request.
    #[serde(default)]
    pub evacuated: BTreeSet<String>,
    /// The drains under way, reported back as in force: a router's counts speak for a drain
    /// only once it has the configuration written after that drain began.
    #[serde(default)]
    pub drains: BTreeSet<DrainKey>,
}

/// One drain: the revision, when it began (unix seconds) and, for a drain of some pods, which.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainKey {
    pub revision: String,
    pub started_at: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
}

impl RoutingConfig {
    /// The configuration with its `version` set from its content.
    #[must_use]
    pub fn versioned(mut self) -> Self {
        self.version = String::new();
        let text = serde_json::to_vec(&self).unwrap_or_default();
        let digest = sha2::Sha256::digest(&text);
        self.version = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        self
    }
}

/// A pod as the router sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub revision: String,
    pub ip: String,
    /// Ready (the rotation gate included) and not terminating: it may take new work.
    pub serving: bool,
    /// Its containers' named ports.
    pub ports: BTreeMap<String, i32>,
}

/// The view of a pod of the rollout; `None` while it has no address or no revision.
pub fn pod_view(pod: &Pod) -> Option<PodView> {
    let name = pod.metadata.name.clone()?;
    let revision = pod.metadata.labels.as_ref()?.get(labels::REVISION)?.clone();
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    let serving = ready && pod.metadata.deletion_timestamp.is_none();
    let ports = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| Some((p.name.clone()?, p.container_port)))
        .collect();
    Some(PodView { name, revision, ip, serving, ports })
}

fn port_of(pod: &PodView, target: &IntOrString) -> Option<i32> {
    match target {
        IntOrString::Int(port) => Some(*port),
        IntOrString::String(name) => pod.ports.get(name).copied(),
    }
}

/// The table a configuration and the rollout's pods give: every pod with an address is a
/// backend a pinned session may use; each weighted revision's serving pods take new work.
pub fn table(config: &RoutingConfig, pods: &[PodView]) -> Table {
    let mut table = Table {
        tool_routes: config.tool_routes.clone(),
        canary: config.canary.clone(),
        evacuated: config.evacuated.clone(),
        drains: config.drains.clone(),
        version: config.version.clone(),
        ..Table::default()
    };
    for pod in pods {
        let Some(port) = port_of(pod, &config.target_port) else { continue };
        let host = if pod.ip.contains(':') { format!("[{}]", pod.ip) } else { pod.ip.clone() };
        table.backends.insert(
            pod.name.clone(),
            BackendAddr { authority: format!("{host}:{port}"), revision: pod.revision.clone() },
        );
    }
    for (revision, weight) in &config.weights {
        let backends = pods
            .iter()
            .filter(|p| &p.revision == revision && p.serving && table.backends.contains_key(&p.name))
            .map(|p| p.name.clone())
            .collect();
        table.revisions.push(RevisionTarget { revision: revision.clone(), weight: *weight, backends });
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, revision: &str, ip: &str, serving: bool) -> PodView {
        PodView {
            name: name.into(),
            revision: revision.into(),
            ip: ip.into(),
            serving,
            ports: BTreeMap::from([("mcp".to_owned(), 8080)]),
        }
    }

    #[test]
    fn serving_pods_take_new_work_and_every_pod_keeps_its_sessions() {
        let config = RoutingConfig {
            target_port: IntOrString::String("mcp".into()),
            weights: BTreeMap::from([("r1".to_owned(), 75), ("r2".to_owned(), 25), ("r0".to_owned(), 0)]),
            canary: Some("r2".into()),
            ..RoutingConfig::default()
        }
        .versioned();
        let pods = [
            pod("a", "r1", "10.244.0.5", true),
            pod("b", "r1", "10.244.0.6", false), // out of rotation: drains, keeps its sessions
            pod("c", "r2", "fd00::7", true),
            pod("d", "r0", "10.244.0.8", false),
        ];
        let t = table(&config, &pods);
        assert_eq!(t.backends["c"].authority, "[fd00::7]:8080");
        assert_eq!(t.backends.len(), 4, "pinned sessions reach every pod of the rollout");
        let r1 = t.revisions.iter().find(|r| r.revision == "r1").unwrap();
        assert_eq!((r1.weight, r1.backends.clone()), (75, vec!["a".to_owned()]));
        assert_eq!(t.weight_of("r0"), 0);
        assert_eq!(t.version, config.version);
        assert_eq!(t.version.len(), 16);
        let unnamed = RoutingConfig { target_port: IntOrString::String("http".into()), ..config.clone() };
        assert!(table(&unnamed, &pods).backends.is_empty(), "no such port: no backend");
    }

    #[test]
    fn the_version_follows_the_content() {
        let a =
            RoutingConfig { weights: BTreeMap::from([("r1".to_owned(), 100)]), ..RoutingConfig::default() };
        let b = RoutingConfig { weights: BTreeMap::from([("r1".to_owned(), 95)]), ..a.clone() };
        assert_eq!(a.clone().versioned().version, a.clone().versioned().versioned().version);
        assert_ne!(a.versioned().version, b.versioned().version);
    }
}
