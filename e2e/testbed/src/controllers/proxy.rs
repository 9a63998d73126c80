//! kube-proxy: each Service's cluster IP (127.2.x.y) listens on its ports, and every new TCP
//! connection goes to a ready endpoint from the Service's EndpointSlice — at random, or the
//! client's earlier one with `sessionAffinity: ClientIP`. Established connections are never cut
//! when endpoints change, as with conntrack in iptables mode.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::{
    resources::ResourceType,
    selectors::{FieldSelector, LabelSelector},
    store::Store,
};

const RESYNC: Duration = Duration::from_millis(300);

/// A listener per (service uid, port); aborted when the service or port goes.
struct Listeners(HashMap<(String, i64), tokio::task::JoinHandle<()>>);

impl Drop for Listeners {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

pub async fn run(store: Arc<Store>) {
    let (Some(services), Some(slices)) =
        (store.resolve("", "v1", "services"), store.resolve("discovery.k8s.io", "v1", "endpointslices"))
    else {
        return;
    };
    let mut listeners = Listeners(HashMap::new());
    let affinity: Arc<Mutex<HashMap<(String, IpAddr), String>>> = Arc::default();
    loop {
        let all = store.list(&services, None, &LabelSelector::default(), &FieldSelector::default()).0;
        let mut wanted = Vec::new();
        for service in &all {
            let Some(ip) = service["spec"]["clusterIP"].as_str().and_then(|ip| ip.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let uid = service["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
            for port in service["spec"]["ports"].as_array().into_iter().flatten() {
                let Some(number) = port["port"].as_i64() else { continue };
                let key = (uid.clone(), number);
                wanted.push(key.clone());
                if listeners.0.contains_key(&key) {
                    continue;
                }
                let Ok(number_u16) = u16::try_from(number) else { continue };
                let Ok(listener) = TcpListener::bind(SocketAddr::new(ip, number_u16)).await else { continue };
                let target = Target {
                    store: store.clone(),
                    slices: slices.clone(),
                    namespace: service["metadata"]["namespace"].as_str().unwrap_or_default().to_owned(),
                    service: service["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                    port_name: port["name"].as_str().unwrap_or_default().to_owned(),
                    client_ip_affinity: service["spec"]["sessionAffinity"] == "ClientIP",
                    affinity: affinity.clone(),
                };
                listeners.0.insert(key, tokio::spawn(accept_loop(listener, target)));
            }
        }
        listeners.0.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        tokio::time::sleep(RESYNC).await;
    }
}

struct Target {
    store: Arc<Store>,
    slices: ResourceType,
    namespace: String,
    service: String,
    port_name: String,
    client_ip_affinity: bool,
    affinity: Arc<Mutex<HashMap<(String, IpAddr), String>>>,
}

impl Target {
    /// Ready endpoints as `ip:port` for this service port.
    fn ready_backends(&self) -> Vec<String> {
        let selector =
            LabelSelector::parse(&format!("kubernetes.io/service-name={}", self.service)).unwrap_or_default();
        let slices =
            self.store.list(&self.slices, Some(&self.namespace), &selector, &FieldSelector::default()).0;
        let mut backends = Vec::new();
        for slice in slices {
            let port = slice["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"].as_str().unwrap_or_default() == self.port_name)
                .and_then(|p| p["port"].as_i64());
            let Some(port) = port else { continue };
            for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
                if endpoint["conditions"]["ready"] != Value::Bool(true) {
                    continue;
                }
                for address in
                    endpoint["addresses"].as_array().into_iter().flatten().filter_map(Value::as_str)
                {
                    backends.push(format!("{address}:{port}"));
                }
            }
        }
        backends
    }

    fn pick(&self, client: IpAddr) -> Option<String> {
        let backends = self.ready_backends();
        if backends.is_empty() {
            return None;
        }
        let key = (format!("{}/{}", self.namespace, self.service), client);
        if self.client_ip_affinity {
            let chosen =
                self.affinity.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).cloned();
            if let Some(chosen) = chosen.filter(|c| backends.contains(c)) {
                return Some(chosen);
            }
        }
        let chosen = backends[fastrand::usize(..backends.len())].clone();
        if self.client_ip_affinity {
            self.affinity
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key, chosen.clone());
        }
        Some(chosen)
    }
}

async fn accept_loop(listener: TcpListener, target: Target) {
    let target = Arc::new(target);
    loop {
        let Ok((mut client, peer)) = listener.accept().await else { continue };
        let target = target.clone();
        // Each connection lives in its own task: nothing here cuts it when endpoints change.
        tokio::spawn(async move {
            let Some(backend) = target.pick(peer.ip()) else { return };
            let Ok(mut upstream) = TcpStream::connect(&backend).await else { return };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}
