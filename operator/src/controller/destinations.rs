//! Where the operator's own requests may go. An McpRollout names a Prometheus address and,
//! through its pod template, what its probes reach; without a limit any author could make the
//! operator (with its network position and its credentials' reach) fetch any URL: a cloud
//! metadata endpoint, a node's kubelet, a service outside the cluster. The operator-level list
//! (the chart's `allowedDestinations`) says which networks are fair game; by default, the
//! cluster's own Service and pod networks, read from the API server.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use ipnet::IpNet;
use k8s_openapi::api::{
    core::v1::{Node, Pod},
    networking::v1::ServiceCIDR,
};
use kube::{Api, Client, api::ListParams};
use tokio::sync::Mutex;

use crate::engine::Problem;

/// The reason of every refusal (the rollout's Stalled condition and event).
pub const REASON: &str = "DestinationNotAllowed";

/// How long discovered networks are trusted before a refused address makes the operator read
/// them again (a node added since, with a new pod CIDR).
const REDISCOVER_AFTER: Duration = Duration::from_secs(60);

/// Parses the operator's `--allowed-destinations`: CIDRs (or single addresses) separated by
/// commas or spaces. Empty means "discover the cluster's networks".
pub fn parse_list(text: &str) -> Result<Vec<IpNet>, String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is not a CIDR or an IP address"))
        })
        .collect()
}

/// Whether `ip` lies in one of `networks` (an IPv4 address written as IPv6, `::ffff:a.b.c.d`,
/// counts as the IPv4 address).
pub fn permitted(networks: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    networks.iter().any(|n| n.contains(&ip))
}

/// The cluster's Service networks (its ServiceCIDR objects) and pod networks (each node's
/// `spec.podCIDRs`).
pub fn cluster_networks(service_cidrs: &[ServiceCIDR], nodes: &[Node]) -> Vec<IpNet> {
    let services = service_cidrs.iter().filter_map(|s| s.spec.as_ref()?.cidrs.clone()).flatten();
    let pods = nodes.iter().filter_map(|n| n.spec.as_ref()?.pod_cidrs.clone()).flatten();
    let mut networks: Vec<IpNet> = services.chain(pods).filter_map(|c| c.parse().ok()).collect();
    networks.sort_unstable();
    networks.dedup();
    networks
}

fn describe(networks: &[IpNet]) -> String {
    if networks.is_empty() {
        return "none found".into();
    }
    networks.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

struct Discovered {
    networks: Vec<IpNet>,
    at: Instant,
}

pub struct Destinations {
    /// The operator's setting; `None`: the cluster's own networks.
    configured: Option<Vec<IpNet>>,
    client: Client,
    discovered: Mutex<Option<Discovered>>,
}

impl Destinations {
    pub fn new(client: Client, configured: Option<Vec<IpNet>>) -> Self {
        Self { configured, client, discovered: Mutex::default() }
    }

    async fn discover(&self) -> Result<Vec<IpNet>, kube::Error> {
        let service_cidrs = Api::<ServiceCIDR>::all(self.client.clone()).list(&ListParams::default()).await?;
        let nodes = Api::<Node>::all(self.client.clone()).list(&ListParams::default()).await?;
        Ok(cluster_networks(&service_cidrs.items, &nodes.items))
    }

    /// The networks in force; discovered ones are read again on `refresh` (an address was
    /// refused: the copy at hand may miss a new node's network) once they are old enough.
    async fn networks(&self, refresh: bool) -> Result<Vec<IpNet>, Problem> {
        if let Some(configured) = &self.configured {
            return Ok(configured.clone());
        }
        let mut discovered = self.discovered.lock().await;
        let fresh_enough = discovered.as_ref().is_some_and(|d| !refresh || d.at.elapsed() < REDISCOVER_AFTER);
        if !fresh_enough {
            let networks = self.discover().await.map_err(|e| {
                Problem::new(
                    REASON,
                    format!(
                        "cannot read the cluster's Service and pod networks to check the operator's destinations \
                         against ({e}); set the chart's allowedDestinations"
                    ),
                )
            })?;
            *discovered = Some(Discovered { networks, at: Instant::now() });
        }
        Ok(discovered.as_ref().map(|d| d.networks.clone()).unwrap_or_default())
    }

    /// Checks every address against the list, reading discovered networks again once before
    /// refusing.
    async fn check(&self, what: &str, addresses: &[IpAddr]) -> Result<(), Problem> {
        let mut networks = self.networks(false).await?;
        if addresses.iter().all(|a| permitted(&networks, *a)) {
            return Ok(());
        }
        if self.configured.is_none() {
            networks = self.networks(true).await?;
        }
        match addresses.iter().find(|a| !permitted(&networks, **a)) {
            None => Ok(()),
            Some(refused) => {
                let source = if self.configured.is_some() {
                    "the operator's allowedDestinations"
                } else {
                    "the cluster's Service and pod networks (the chart's allowedDestinations can name others)"
                };
                Err(Problem::new(
                    REASON,
                    format!("{what} is at {refused}, outside {source}: {}", describe(&networks)),
                ))
            }
        }
    }

    /// The addresses the Prometheus of `address` (a URL) may be reached at: every address its
    /// host resolves to must be allowed, and the client is pinned to them, so a second lookup
    /// cannot answer differently (DNS rebinding).
    pub async fn prometheus(&self, address: &str) -> Result<Pinned, Problem> {
        self.url(&format!("Prometheus ({address})"), "analysis.prometheus.address", address).await
    }

    /// Whether `address` (a URL: a Prometheus, a gate's webhook, a notification receiver) may
    /// be reached, and the checked addresses its host is to be reached at. `field` names where
    /// the URL came from, `what` what it is (without secrets: a receiver's URL is one).
    pub async fn url(&self, what: &str, field: &str, address: &str) -> Result<Pinned, Problem> {
        let url = reqwest::Url::parse(address)
            .map_err(|e| Problem::new(REASON, format!("{field} is not a URL: {e}")))?;
        let host =
            url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let what = what.to_owned();
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check(&what, &[ip]).await?;
            return Ok(Pinned { host, addresses: Vec::new() });
        }
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Problem::new(REASON, format!("{what}: cannot resolve {host}: {e}")))?
            .collect();
        if addresses.is_empty() {
            return Err(Problem::new(REASON, format!("{what}: {host} resolves to no address")));
        }
        let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
        self.check(&what, &ips).await?;
        Ok(Pinned { host, addresses })
    }

    /// Whether the probe may reach `pod`. A pod on the pod network (not `hostNetwork`) has a
    /// pod IP by definition, so with discovered networks it needs no list (many CNIs assign
    /// addresses outside the nodes' `podCIDRs`); a pod on its node's network is checked like
    /// any address, and so is every pod when the list is configured.
    pub async fn probe_target(&self, pod: &Pod) -> Result<(), Problem> {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok())
        else {
            return Ok(()); // not probed: it has no address yet
        };
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        if self.configured.is_none() && !host_network {
            return Ok(());
        }
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let what = if host_network { format!("pod {name} (hostNetwork)") } else { format!("pod {name}") };
        self.check(&what, &[ip]).await
    }
}

/// A Prometheus host and the checked addresses it is reached at (none: the host is an
/// address itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    pub host: String,
    pub addresses: Vec<SocketAddr>,
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{core::v1::NodeSpec, networking::v1::ServiceCIDRSpec};

    use super::*;

    #[test]
    fn the_list_takes_cidrs_and_addresses_and_refuses_the_rest() {
        let list = parse_list("10.96.0.0/12, 10.244.0.0/16 fd00::/64,192.0.2.7").unwrap();
        assert_eq!(list.len(), 4);
        assert_eq!(list[3].to_string(), "192.0.2.7/32");
        assert!(parse_list("").unwrap().is_empty());
        assert!(parse_list("10.0.0.0/33").unwrap_err().contains("10.0.0.0/33"));
        assert!(parse_list("prometheus.monitoring").is_err());
    }

    #[test]
    fn only_addresses_inside_the_networks_are_permitted() {
        let networks = parse_list("10.96.0.0/12,10.244.0.0/16,fd00::/64").unwrap();
        for allowed in ["10.96.0.10", "10.111.255.254", "10.244.3.7", "fd00::5", "::ffff:10.244.0.9"] {
            assert!(permitted(&networks, allowed.parse().unwrap()), "{allowed}");
        }
        for refused in ["169.254.169.254", "127.0.0.1", "::1", "10.245.0.1", "192.168.1.1", "fd01::1"] {
            assert!(!permitted(&networks, refused.parse().unwrap()), "{refused}");
        }
        assert!(!permitted(&[], "10.0.0.1".parse().unwrap()), "an empty list permits nothing");
    }

    #[test]
    fn the_cluster_networks_are_its_service_cidrs_and_node_pod_cidrs() {
        let service_cidr = ServiceCIDR {
            spec: Some(ServiceCIDRSpec {
                cidrs: Some(vec!["10.96.0.0/12".into(), "fd00:10:96::/112".into()]),
            }),
            ..ServiceCIDR::default()
        };
        let node = |cidrs: &[&str]| Node {
            spec: Some(NodeSpec {
                pod_cidrs: Some(cidrs.iter().map(|c| (*c).to_owned()).collect()),
                ..NodeSpec::default()
            }),
            ..Node::default()
        };
        let networks = cluster_networks(
            &[service_cidr],
            &[
                node(&["10.244.0.0/24"]),
                node(&["10.244.1.0/24", "not a cidr"]),
                node(&["10.244.0.0/24"]),
                Node::default(),
            ],
        );
        let printed: Vec<String> = networks.iter().map(ToString::to_string).collect();
        assert_eq!(printed, ["10.96.0.0/12", "10.244.0.0/24", "10.244.1.0/24", "fd00:10:96::/112"]);
    }
}
