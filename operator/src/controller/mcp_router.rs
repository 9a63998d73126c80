//! The MCP session router as the rollout's traffic router (`spec.trafficRouting.mcpRouter`).
//! The operator runs `mcp-rollout-router kubernetes` for the rollout — a Deployment with a
//! PodDisruptionBudget, its own ServiceAccount and a Role that lets it watch only the rollout's
//! pods and its one ConfigMap — points the rollout's Service at it, and tells it the weights
//! (ConfigMap `<rollout>-router`, from the engine's plan). Each router replica reports on its
//! admin port what it has in force and what it carries; that is what the engine decides on
//! (the weight in force, drains).
//!
//! Pure builders first (tested without a cluster), then the observation and the apply.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Capabilities, ConfigMap, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
            Lifecycle, LifecycleHandler, ObjectFieldSelector, Pod, PodSecurityContext, PodSpec,
            PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecretVolumeSource,
            SecurityContext, ServiceAccount, SleepAction, Volume, VolumeMount,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde::Serialize;
use sha2::Digest;
use tracing::{debug, info};

use super::{
    error::Error,
    names::{self, FIELD_MANAGER},
    observe,
    traffic::{RouteOutcome, RouteRequest, TrafficRouter, apply_services, patch_rotation},
};
use crate::{
    api::{McpRollout, McpRolloutStatus, McpRouterSpec, labels},
    engine::{DrainId, RevisionPlan, RouterLoad, RouterObserved},
    router::{
        admin::RouterState,
        config::{CONFIG_KEY, DrainKey, RoutingConfig},
        sessions::Load,
    },
};

/// The router's MCP port, named `mcp` (the rollout Service's target port).
pub const ROUTER_PORT: i32 = 8080;
/// The router's admin port: `/metrics`, `/state`, health.
pub const ADMIN_PORT: i32 = 9090;
const KEY_DIR: &str = "/etc/mcp-router/keys";
/// How long the operator waits for a router replica's `/state`.
const STATE_TIMEOUT: Duration = Duration::from_secs(2);
/// Objects that rarely change (ServiceAccount, Role, RoleBinding, budget, Deployment) are
/// applied when they change, and again this often, so one deleted by hand comes back.
const REAPPLY: Duration = Duration::from_secs(300);

fn router_spec(rollout: &McpRollout) -> Option<&McpRouterSpec> {
    rollout.spec.traffic_routing.as_ref()?.mcp_router.as_ref()
}

/// Labels of the router's pods (and, with the rollout's, of its Deployment).
pub fn pod_labels(rollout: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::ROUTER.to_owned(), rollout.to_owned()),
        ("app.kubernetes.io/name".to_owned(), "mcp-rollout-router".to_owned()),
    ])
}

fn meta(rollout: &McpRollout, name: String) -> ObjectMeta {
    let rollout_name = rollout.name_any();
    let mut labels = pod_labels(&rollout_name);
    labels.insert(labels::ROLLOUT.into(), rollout_name);
    labels.insert("app.kubernetes.io/managed-by".into(), names::MANAGED_BY.into());
    ObjectMeta {
        name: Some(name),
        namespace: rollout.metadata.namespace.clone(),
        labels: Some(labels),
        owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// What the routers are asked to do now: the plan's weight for each revision it runs (0 for
/// one draining), tool routes while a canary runs, and the revisions a rollback evacuates.
pub fn routing_config(
    rollout: &McpRollout,
    plan: &[RevisionPlan],
    status: &McpRolloutStatus,
) -> RoutingConfig {
    let spec = router_spec(rollout);
    let service = &rollout.spec.service;
    RoutingConfig {
        version: String::new(),
        target_port: service.target_port.clone().unwrap_or(IntOrString::Int(service.port)),
        weights: plan
            .iter()
            .map(|r| (r.revision.clone(), u32::try_from(r.weight.clamp(0, 100)).unwrap_or(0)))
            .collect(),
        canary: status.canary_revision.clone(),
        tool_routes: spec
            .iter()
            .flat_map(|s| &s.tool_routes)
            .map(|t| (t.tool.clone(), u32::try_from(t.weight.clamp(0, 100)).unwrap_or(0)))
            .collect(),
        evacuated: status
            .drains
            .iter()
            .filter(|d| d.evacuate && d.pods.is_empty())
            .map(|d| d.revision.clone())
            .collect(),
        drains: status
            .drains
            .iter()
            .map(|d| DrainKey {
                revision: d.revision.clone(),
                started_at: d.started_at.0.as_second(),
                pods: d.pods.clone(),
            })
            .collect(),
    }
    .versioned()
}

pub fn config_map(rollout: &McpRollout, config: &RoutingConfig) -> Result<ConfigMap, Error> {
    let text = serde_json::to_string_pretty(config)
        .map_err(|source| Error::Serialize { what: "routing configuration", source })?;
    Ok(ConfigMap {
        metadata: meta(rollout, names::router(&rollout.name_any())),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), text)])),
        ..ConfigMap::default()
    })
}

/// The configuration a ConfigMap holds, if it parses.
pub fn config_of(map: &ConfigMap) -> Option<RoutingConfig> {
    serde_json::from_str(map.data.as_ref()?.get(CONFIG_KEY)?).ok()
}

/// The Secret holding the session key, when the operator makes it: 32 random bytes.
pub fn key_secret(rollout: &McpRollout) -> Secret {
    use aws_lc_rs::rand::SecureRandom;
    let mut key = [0u8; 32];
    // The system's random source; without it no key can be made, and none is: the Secret
    // stays missing and the router does not start (its pods say why).
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut key);
    Secret {
        metadata: meta(rollout, names::router_key(&rollout.name_any())),
        data: Some(BTreeMap::from([("current".to_owned(), k8s_openapi::ByteString(key.to_vec()))])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

fn key_secret_name(rollout: &McpRollout) -> String {
    router_spec(rollout)
        .and_then(|s| s.session_key_secret.clone())
        .unwrap_or_else(|| names::router_key(&rollout.name_any()))
}

/// The router's identity and its least privilege: list and watch the pods of its namespace
/// (the rollout's, by label), and read its one ConfigMap (list and watch restricted by name:
/// the router asks with a `metadata.name` field selector).
pub fn service_account(rollout: &McpRollout) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(rollout, names::router(&rollout.name_any())),
        ..ServiceAccount::default()
    }
}

pub fn role(rollout: &McpRollout) -> Role {
    let name = names::router(&rollout.name_any());
    Role {
        metadata: meta(rollout, name.clone()),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["pods".into()]),
                verbs: vec!["list".into(), "watch".into()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                resource_names: Some(vec![name]),
                verbs: vec!["list".into(), "watch".into()],
                ..PolicyRule::default()
            },
        ]),
    }
}

pub fn role_binding(rollout: &McpRollout) -> RoleBinding {
    let name = names::router(&rollout.name_any());
    RoleBinding {
        metadata: meta(rollout, name.clone()),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: rollout.metadata.namespace.clone(),
            ..Subject::default()
        }]),
    }
}

/// One router pod may be evicted at a time: sessions survive the loss of a router (their
/// tokens name their pod), but not of all of them at once.
pub fn budget(rollout: &McpRollout) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(rollout, names::router(&rollout.name_any())),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(pod_labels(&rollout.name_any())),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

/// The router's Deployment: restricted-PSS, non-root, read-only; ready once a routing table is
/// in force; on SIGTERM it stops taking connections (after a pause for the endpoints to drop
/// it) and lets open streams finish for up to `drain.max`.
pub fn deployment(rollout: &McpRollout, default_image: &str) -> Deployment {
    let name = rollout.name_any();
    let spec = router_spec(rollout).cloned().unwrap_or_else(|| McpRouterSpec {
        replicas: 2,
        image: None,
        resources: None,
        idle_timeout: crate::api::HumanDuration::from_secs(600),
        tool_routes: Vec::new(),
        session_key_secret: None,
    });
    let grace = rollout.spec.drain.max.as_secs().max(30);
    let http = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(2),
        ..Probe::default()
    };
    let resources = spec.resources.clone().unwrap_or_else(|| ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("50m".into())),
            ("memory".to_owned(), Quantity("64Mi".into())),
        ])),
        ..ResourceRequirements::default()
    });
    let container = Container {
        name: "router".into(),
        image: Some(spec.image.clone().unwrap_or_else(|| default_image.to_owned())),
        command: Some(vec!["/usr/local/bin/mcp-rollout-router".into()]),
        args: Some(vec![
            "kubernetes".into(),
            "--log-json".into(),
            format!("--rollout={name}"),
            format!("--config-map={}", names::router(&name)),
            format!("--listen=0.0.0.0:{ROUTER_PORT}"),
            format!("--admin-listen=0.0.0.0:{ADMIN_PORT}"),
            format!("--key-dir={KEY_DIR}"),
            format!("--idle-timeout={}s", spec.idle_timeout.as_secs()),
            format!("--grace={grace}s"),
        ]),
        env: Some(vec![EnvVar {
            name: "POD_NAMESPACE".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        ports: Some(vec![
            ContainerPort {
                name: Some("mcp".into()),
                container_port: ROUTER_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: ADMIN_PORT,
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(http("/readyz")),
        liveness_probe: Some(Probe {
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..http("/healthz")
        }),
        // The endpoints drop a terminating pod a moment after SIGTERM: it keeps accepting
        // until then, so no new connection meets a closed port.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 3 }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(resources),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "session-keys".into(),
            mount_path: KEY_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), ADMIN_PORT.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ]);
    Deployment {
        metadata: meta(rollout, names::router(&name)),
        spec: DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector { match_labels: Some(pod_labels(&name)), match_expressions: None },
            // A new router pod is ready before an old one leaves.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(&name)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names::router(&name)),
                    termination_grace_period_seconds: Some(i64::try_from(grace + 5).unwrap_or(i64::MAX)),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "session-keys".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(key_secret_name(rollout)),
                            ..SecretVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// What the replicas reported, as the engine reads it. `now` is unix seconds.
pub fn observed(states: &[Option<RouterState>], now: u64) -> RouterObserved {
    let answered: Vec<&RouterState> = states.iter().flatten().collect();
    let complete = !states.is_empty() && answered.len() == states.len();
    let sessions_known =
        complete && answered.iter().all(|s| now.saturating_sub(s.started_at) >= s.idle_timeout_seconds);
    let revisions: BTreeSet<&String> = answered.iter().flat_map(|s| s.weights.keys()).collect();
    let weight =
        |s: &RouterState, r: &str| i32::try_from(s.weights.get(r).copied().unwrap_or(0)).unwrap_or(100);
    let mut out = RouterObserved { complete, sessions_known, ..RouterObserved::default() };
    for r in revisions {
        let weights = answered.iter().map(|s| weight(s, r));
        out.min_weight.insert(r.clone(), weights.clone().min().unwrap_or(0));
        out.max_weight.insert(r.clone(), weights.max().unwrap_or(0));
    }
    out.serving_pods = answered.iter().flat_map(|s| s.serving.iter().cloned()).collect();
    if let Some(first) = answered.first() {
        out.evacuated = first
            .evacuated
            .iter()
            .filter(|r| answered.iter().all(|s| s.evacuated.contains(r)))
            .cloned()
            .collect();
        out.drains = first
            .drains
            .iter()
            .filter(|d| answered.iter().all(|s| s.drains.contains(d)))
            .map(|d| DrainId { revision: d.revision.clone(), started_at: d.started_at, pods: d.pods.clone() })
            .collect();
    }
    let sum = |into: &mut BTreeMap<String, RouterLoad>, from: &BTreeMap<String, Load>| {
        for (key, l) in from {
            let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            into.entry(key.clone()).or_default().add(&RouterLoad {
                sessions: as_i64(l.sessions),
                streams: as_i64(l.streams),
                in_flight: as_i64(l.in_flight),
            });
        }
    };
    for s in &answered {
        sum(&mut out.revisions, &s.revisions);
        sum(&mut out.pods, &s.backends);
    }
    out
}

/// Reads every ready router replica's `/state` (a replica that does not answer in time is
/// `None`: the observation is then incomplete, and nothing is ended on it).
pub async fn observe(
    client: &Client,
    http: &reqwest::Client,
    rollout: &McpRollout,
) -> Result<RouterObserved, Error> {
    let namespace = rollout.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let selector = format!("{}={}", labels::ROUTER, rollout.name_any());
    let ready: Vec<Pod> = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| !observe::terminating(p) && observe::pod_ready(p))
        .collect();
    let asks = ready.iter().map(|pod| async move {
        let ip = pod.status.as_ref()?.pod_ip.clone()?;
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip };
        let url = format!("http://{host}:{ADMIN_PORT}/state");
        match http.get(&url).timeout(STATE_TIMEOUT).send().await {
            Ok(r) if r.status().is_success() => r.json::<RouterState>().await.ok(),
            Ok(r) => {
                debug!(pod = %pod.name_any(), status = %r.status(), "router state refused");
                None
            }
            Err(e) => {
                debug!(pod = %pod.name_any(), error = %e, "router state unreachable");
                None
            }
        }
    });
    let states = futures::future::join_all(asks).await;
    Ok(observed(&states, crate::router::sessions::unix_now()))
}

/// The router as the rollout's traffic router.
pub struct McpRouterRouting {
    client: Client,
    /// The router image when the spec names none: the operator's own.
    image: String,
    /// What was applied last, per object (content digest, when): the rarely changing objects
    /// are written when they change, and every [`REAPPLY`].
    applied: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl McpRouterRouting {
    pub fn new(client: Client, image: String) -> Self {
        Self { client, image, applied: Mutex::default() }
    }

    /// Whether `object` (keyed by `key`) needs writing now; records it as written.
    fn due(&self, key: &str, object: &impl Serialize) -> bool {
        let digest = sha2::Sha256::digest(serde_json::to_vec(object).unwrap_or_default()).to_vec();
        let mut applied = self.applied.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = applied.get(key).is_some_and(|(d, at)| *d == digest && at.elapsed() < REAPPLY);
        if !fresh {
            // An entry older than REAPPLY decides nothing: dropping them keeps the map to the
            // objects written lately (deleted rollouts' leave it).
            applied.retain(|_, (_, at)| at.elapsed() < REAPPLY);
            applied.insert(key.to_owned(), (digest, Instant::now()));
        }
        !fresh
    }

    /// Forgets a write that failed, so the next reconcile tries it again.
    fn failed(&self, key: &str) {
        self.applied.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }

    async fn apply<K>(&self, namespace: &str, object: &K) -> Result<(), Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Serialize
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
        K::DynamicType: Default,
    {
        let key = format!("{namespace}/{}/{}", K::kind(&K::DynamicType::default()), object.name_any());
        if !self.due(&key, object) {
            return Ok(());
        }
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        // Not forced: a field another manager owns (an object of the same name that is not
        // ours) is a conflict, not a takeover.
        match api.patch(&object.name_any(), &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(object)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.failed(&key);
                Err(e.into())
            }
        }
    }

    /// The session key Secret, created once when the spec names none (never rewritten: a new
    /// key would end every session).
    async fn ensure_key(&self, rollout: &McpRollout, namespace: &str) -> Result<(), Error> {
        if router_spec(rollout).is_some_and(|s| s.session_key_secret.is_some()) {
            return Ok(());
        }
        let secret = key_secret(rollout);
        let key = format!("{namespace}/Secret/{}", secret.name_any());
        // The key's bytes are random: the digest is of the name alone.
        if !self.due(&key, &secret.name_any()) {
            return Ok(());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
        match api.create(&params, &secret).await {
            Ok(_) => {
                info!(rollout = %rollout.name_any(), "created the router's session key");
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => {
                self.failed(&key);
                Err(e.into())
            }
        }
    }
}

impl TrafficRouter for McpRouterRouting {
    async fn route(&self, request: &RouteRequest<'_>) -> Result<RouteOutcome, Error> {
        let rollout = request.rollout;
        let namespace = rollout.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
        // The configuration first: it is what moves traffic; the rest rarely changes.
        let config = routing_config(rollout, request.plan, request.status);
        if request.router_config.is_none_or(|c| c.version != config.version) {
            let map = config_map(rollout, &config)?;
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
            api.patch(&map.name_any(), &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&map)).await?;
            info!(rollout = %rollout.name_any(), version = %config.version, weights = ?config.weights, evacuated = ?config.evacuated, "router configuration written");
        }
        self.ensure_key(rollout, &namespace).await?;
        self.apply(&namespace, &service_account(rollout)).await?;
        self.apply(&namespace, &role(rollout)).await?;
        self.apply(&namespace, &role_binding(rollout)).await?;
        self.apply(&namespace, &budget(rollout)).await?;
        self.apply(&namespace, &deployment(rollout, &self.image)).await?;
        let (pods, conflicts) = apply_services(&self.client, request).await?;
        let mut outcome = patch_rotation(&pods, request.plan, request.pods, request.writes).await?;
        outcome.conflicts = conflicts;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{api::DrainStatus, engine::Role as PlanRole};

    fn rollout() -> McpRollout {
        serde_json::from_value(json!({
            "apiVersion": "mcprollout.dev/v1alpha1", "kind": "McpRollout",
            "metadata": {"name": "docs", "namespace": "agents", "uid": "u-1"},
            "spec": {
                "template": {"spec": {"containers": [{"name": "s", "image": "x"}]}},
                "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
                "service": {"port": 80, "targetPort": "http"},
                "trafficRouting": {"mcpRouter": {"toolRoutes": [{"tool": "search", "weight": 100}]}}
            }
        }))
        .unwrap()
    }

    fn plan(revision: &str, weight: i32) -> RevisionPlan {
        RevisionPlan {
            revision: revision.into(),
            role: PlanRole::Stable,
            replicas: 2,
            in_rotation: 2,
            weight,
            leaving: vec![],
        }
    }

    #[test]
    fn the_configuration_follows_the_plan_and_the_rollbacks() {
        let mut status =
            McpRolloutStatus { canary_revision: Some("c2".into()), ..McpRolloutStatus::default() };
        let config = routing_config(&rollout(), &[plan("s1", 95), plan("c2", 5)], &status);
        assert_eq!(config.weights, BTreeMap::from([("s1".to_owned(), 95), ("c2".to_owned(), 5)]));
        assert_eq!(config.target_port, IntOrString::String("http".into()));
        assert_eq!(config.tool_routes["search"], 100);
        assert!(config.evacuated.is_empty());
        let drain: DrainStatus = serde_json::from_value(json!({
            "revision": "c2", "startedAt": "2026-01-01T00:00:00Z", "windowSeconds": 60, "replicas": 1,
            "clamp": "NoData", "evacuate": true
        }))
        .unwrap();
        status.drains.push(drain);
        status.canary_revision = None;
        let rolled_back = routing_config(&rollout(), &[plan("s1", 100), plan("c2", 0)], &status);
        assert_eq!(rolled_back.evacuated, BTreeSet::from(["c2".to_owned()]));
        assert_ne!(rolled_back.version, config.version);
        let map = config_map(&rollout(), &rolled_back).unwrap();
        assert_eq!(config_of(&map), Some(rolled_back));
    }

    #[test]
    fn the_router_runs_restricted_with_the_least_it_needs() {
        let d = deployment(&rollout(), "ghcr.io/mcp-rollout/mcp-rollout-operator:0.1.0");
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("ghcr.io/mcp-rollout/mcp-rollout-operator:0.1.0"));
        assert!(c.args.as_ref().unwrap().contains(&"--rollout=docs".to_owned()));
        assert_eq!(c.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
        assert_eq!(pod.service_account_name.as_deref(), Some("docs-router"));
        assert_eq!(
            pod.volumes.unwrap()[0].secret.as_ref().unwrap().secret_name.as_deref(),
            Some("docs-router-key")
        );
        assert!(
            !spec.template.metadata.unwrap().labels.unwrap().contains_key(labels::ROLLOUT),
            "router pods are not the rollout's pods"
        );
        let rules = role(&rollout()).rules.unwrap();
        assert_eq!(rules[0].verbs, ["list", "watch"]);
        assert_eq!(rules[1].resource_names.as_deref(), Some(&["docs-router".to_owned()][..]));
        assert_eq!(budget(&rollout()).spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(key_secret(&rollout()).data.unwrap()["current"].0.len(), 32);
    }

    fn state(started_at: u64, weights: &[(&str, u32)], canary_sessions: u64) -> RouterState {
        RouterState {
            version: "v".into(),
            started_at,
            idle_timeout_seconds: 60,
            weights: weights.iter().map(|(r, w)| ((*r).to_owned(), *w)).collect(),
            evacuated: vec!["c1".into()],
            serving: vec!["p".into()],
            drains: vec![DrainKey { revision: "c1".into(), started_at: 900, pods: vec![] }],
            revisions: BTreeMap::from([(
                "c2".to_owned(),
                Load { sessions: canary_sessions, streams: 1, in_flight: 0 },
            )]),
            backends: BTreeMap::from([(
                "p".to_owned(),
                Load { sessions: canary_sessions, streams: 1, in_flight: 0 },
            )]),
        }
    }

    #[test]
    fn replicas_reports_are_combined_conservatively() {
        let now = 1_000;
        let a = state(100, &[("s1", 95), ("c2", 5)], 2);
        let b = state(990, &[("s1", 100)], 1); // young, and not yet on the new weights
        let o = observed(&[Some(a.clone()), Some(b)], now);
        assert!(o.complete && !o.sessions_known, "one replica is younger than its idle timeout");
        assert_eq!((o.min_weight["c2"], o.max_weight["c2"]), (0, 5));
        assert_eq!(o.revisions["c2"], RouterLoad { sessions: 3, streams: 2, in_flight: 0 });
        assert_eq!(o.evacuated, BTreeSet::from(["c1".to_owned()]));
        assert!(!o.pods_out_of_rotation(&["p".to_owned()]) && o.pods_out_of_rotation(&["q".to_owned()]));
        let drain = |started_at, pods: &[&str]| DrainId {
            revision: "c1".into(),
            started_at,
            pods: pods.iter().map(|p| (*p).to_owned()).collect(),
        };
        assert!(o.drains.contains(&drain(900, &[])));
        assert!(!o.drains.contains(&drain(901, &[])) && !o.drains.contains(&drain(900, &["p"])));
        let missing = observed(&[Some(a.clone()), None], now);
        assert!(!missing.complete && !missing.out_of_rotation("s1"));
        let none = observed(&[], now);
        assert!(!none.complete, "no ready router: nothing is known");
        let settled = observed(&[Some(a.clone()), Some(a)], now);
        assert!(settled.sessions_known);
        assert!(settled.out_of_rotation("c1") && !settled.out_of_rotation("c2"));
    }
}
