//! `McpRollout` spec: what the user asks for.
//!
//! Every default here is written into the CRD schema, so the API server fills it in and
//! `kubectl get -o yaml` shows the value the operator actually uses. Validation lives in the
//! schema too (ranges, patterns, CEL rules) so a bad manifest is refused at `kubectl apply`.

use k8s_openapi::{api::core::v1::PodTemplateSpec, apimachinery::pkg::util::intstr::IntOrString};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{Gate, HumanDuration, McpRolloutStatus, NotificationsSpec, protocol};

/// Desired state of an MCP server rollout.
// Each printcolumn(...) repeats `type_`; clippy reads them as one attribute repeated.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcprollout.dev",
    version = "v1alpha1",
    kind = "McpRollout",
    plural = "mcprollouts",
    shortname = "mcpro",
    category = "all",
    namespaced,
    status = "McpRolloutStatus",
    derive = "PartialEq",
    doc = "McpRollout ships new versions of an MCP server safely: canary steps or blue-green, gated by MCP protocol probes and Prometheus analysis, with SSE session drain.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Stable", type_ = "string", json_path = ".status.stableRevision"),
    printcolumn(name = "Canary", type_ = "string", json_path = ".status.canaryRevision"),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".status.desiredWeight",
        description = "Desired percentage of traffic on the canary (or preview) revision"
    ),
    printcolumn(
        name = "Step",
        type_ = "integer",
        json_path = ".status.currentStepIndex",
        description = "Index of the current canary step"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // A HorizontalPodAutoscaler (or KEDA) sets `spec.replicas` through it; canary sizing and
    // drains follow the count like any change of `replicas`.
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    // The name becomes the names of Services (`<name>`, `<name>-stable`, `<name>-canary`,
    // `<name>-router`: DNS-1035 labels of at most 63 characters) and a label value: a name that
    // does not fit is refused here, not found out by a reconcile that can never succeed.
    validation = Rule::new(
        "self.metadata.name.size() <= 56 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
    ).message(
        "metadata.name must be at most 56 characters of a-z, 0-9 and '-', starting with a letter and ending with a letter or digit: it names the rollout's Services (<name>-stable, <name>-canary, <name>-router) and labels its pods"
    )
)]
#[x_kube(validation = Rule::new(
    "!has(self.analysis) || !has(self.analysis.source) || self.analysis.source != 'Router' || (has(self.trafficRouting) && has(self.trafficRouting.mcpRouter))"
).message("analysis.source Router reads the MCP session router's metrics: set trafficRouting.mcpRouter"))]
#[x_kube(validation = Rule::new(
    "!has(self.trafficRouting) || !has(self.trafficRouting.mcpRouter) || !has(self.service) || !has(self.service.scheme) || self.service.scheme == 'http'"
).message("the MCP session router reaches its backends over plain HTTP: service.scheme https cannot be used with trafficRouting.mcpRouter"))]
#[serde(rename_all = "camelCase")]
pub struct McpRolloutSpec {
    /// Number of pods serving traffic when the rollout is steady. During a canary the pods are
    /// split between the stable and canary revisions by weight.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,

    /// Pod template of the MCP server. Any change to it is a new revision and starts a rollout.
    pub template: PodTemplateSpec,

    /// A Deployment of this MCP server that serves today and that this McpRollout takes over
    /// from (migration): it keeps serving, untouched, while the first revision comes up and
    /// passes its probe; then the rollout's Service serves the new pods (a Service named like
    /// the McpRollout that already exists is adopted, keeping its address), and the Deployment
    /// is scaled to 0 once its drain window has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,

    /// How the MCP server is reached.
    #[serde(default)]
    pub service: McpServiceSpec,

    /// How a new revision replaces the stable one. Exactly one of `canary` or `blueGreen`.
    pub strategy: Strategy,

    /// How traffic is split between revisions. Without it, traffic is split by replica ratio
    /// behind one Kubernetes Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,

    /// The MCP protocol probe run against the new revision before every traffic step.
    #[serde(default)]
    pub probe: ProbeSpec,

    /// Prometheus analysis gating each step and triggering automatic rollback. Without it the
    /// rollout is gated by probes and pod health only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,

    /// How long a revision that has lost its traffic is kept alive for its open sessions.
    #[serde(default)]
    pub drain: DrainSpec,

    /// How long a revision may take to make progress (become ready, pass its probe, advance a
    /// step) before the rollout is rolled back as stuck. Human pauses do not count.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline: HumanDuration,

    /// How many templates that were stable are kept as ControllerRevisions
    /// (`<name>-<revision>`, owned by the McpRollout), for `kubectl mcprollout history` and
    /// `undo`. The current stable one is always among them.
    #[serde(default = "default_revision_history_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub revision_history_limit: i32,

    /// Stop advancing (no new steps, no promotion). Rollbacks still happen: pausing never keeps
    /// a failing canary in traffic.
    #[serde(default)]
    pub paused: bool,

    /// Change gates: where the rollout waits for a webhook, a person's approval, or the end of
    /// a freeze window. Names are unique (a list map keyed by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub gates: Vec<Gate>,

    /// Whom the rollout tells what happens to it. Without it, the operator's cluster-wide
    /// default receivers (Helm value `notifications.defaultReceivers`) are told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationsSpec>,
}

fn default_replicas() -> i32 {
    1
}

fn default_revision_history_limit() -> i32 {
    10
}

fn default_progress_deadline() -> HumanDuration {
    HumanDuration::from_secs(600)
}

/// A workload this McpRollout takes over from.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// Kind of the workload: a Deployment (`apps/v1`) in the McpRollout's namespace.
    #[serde(default)]
    pub kind: WorkloadKind,

    /// Name of the Deployment.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// What happens to the Deployment once the McpRollout serves and the drain window has
    /// passed: `OnSuccess` scales it to 0 (its pods end through their own termination grace
    /// period, long after they left traffic); `Never` leaves it running, out of the Service.
    #[serde(default)]
    pub scale_down: WorkloadScaleDown,
}

/// Kinds of workload a McpRollout can take over from.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WorkloadKind {
    #[default]
    Deployment,
}

/// What becomes of a workload taken over from.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WorkloadScaleDown {
    /// Scaled to 0 once the drain window after the cut-over has passed.
    #[default]
    OnSuccess,
    /// Left running (out of the rollout's Service).
    Never,
}

/// The MCP transport the server speaks.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Streamable HTTP (protocol 2025-03-26 and later): POST/GET/DELETE on one endpoint.
    #[default]
    StreamableHttp,
    /// The legacy HTTP+SSE transport of protocol 2024-11-05: GET opens the stream, POSTs go to
    /// the endpoint the server announces.
    Sse,
}

/// Where and how the MCP server is served.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct McpServiceSpec {
    /// Port of the Services the operator creates.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Container port (number or name) the Services send traffic to. Defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,

    /// HTTP path of the MCP endpoint (Streamable HTTP) or of the SSE stream (legacy transport).
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 256), pattern(r"^/[^\s?#]*$"))]
    pub path: String,

    /// MCP transport the server speaks.
    #[serde(default)]
    pub transport: Transport,

    /// Whether the server speaks plain HTTP or HTTPS on its port. With `https` the probe
    /// verifies the server's certificate (against `probe.caBundleSecretRef`, else the system's
    /// roots) for the name `probe.tlsServerName`.
    #[serde(default)]
    pub scheme: Scheme,

    /// Whether the operator also makes `<rollout>-stable` and `<rollout>-canary`, a Service
    /// over each track's pods (to reach the canary directly, or for a mesh or dashboards of
    /// your own). `Auto`: only when the rollout's routing needs them — Gateway API routing,
    /// whose backendRefs they are. `Always`: every rollout has them. Each Service costs the
    /// cluster: its EndpointSlice controller matches every pod change in the namespace
    /// against every Service there. Owned track Services no longer wanted are deleted.
    #[serde(default)]
    pub track_services: TrackServices,
}

/// When the per-track Services `<rollout>-stable` and `<rollout>-canary` exist.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TrackServices {
    /// Only when the traffic routing needs them (Gateway API backendRefs).
    #[default]
    Auto,
    /// Always, whatever the routing.
    Always,
}

/// The URL scheme an MCP server is reached with.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

fn default_port() -> i32 {
    8080
}

fn default_path() -> String {
    "/mcp".into()
}

impl Default for McpServiceSpec {
    fn default() -> Self {
        Self {
            port: default_port(),
            target_port: None,
            path: default_path(),
            transport: Transport::default(),
            scheme: Scheme::default(),
            track_services: TrackServices::default(),
        }
    }
}

/// Rollout strategy. Exactly one of `canary` or `blueGreen` is set.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.canary) != has(self.blueGreen)")
    .message("exactly one of strategy.canary or strategy.blueGreen must be set"))]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// Shift traffic to the new revision in steps, with soaks and gates between them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,

    /// Bring the new revision up beside the old one at full size, then flip all traffic at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
}

/// The kind of strategy, for code that matches on it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StrategyRef<'a> {
    Canary(&'a CanaryStrategy),
    BlueGreen(&'a BlueGreenStrategy),
}

impl Strategy {
    /// The configured strategy. Admission guarantees exactly one is set; should both or neither
    /// reach the operator anyway (validation disabled), canary wins and an empty canary
    /// promotes straight after its gates.
    pub fn kind(&self) -> StrategyRef<'_> {
        match (&self.canary, &self.blue_green) {
            (Some(c), _) => StrategyRef::Canary(c),
            (None, Some(b)) => StrategyRef::BlueGreen(b),
            (None, None) => StrategyRef::Canary(&EMPTY_CANARY),
        }
    }
}

static EMPTY_CANARY: CanaryStrategy = CanaryStrategy { steps: Vec::new(), max_weight_error: None };

/// Canary steps, walked in order. After the last step the canary is promoted to stable.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Ordered steps. Each is either `setWeight` or `pause`. Weights may not decrease.
    /// Example (the usual progression): setWeight 5, pause 30m, setWeight 25, pause 1h,
    /// setWeight 50, pause 1h.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()")
        .message("setWeight values must not decrease from one step to the next"))]
    pub steps: Vec<CanaryStep>,

    /// With the plain-Service router weights are pod ratios (5% of 4 replicas is one canary pod
    /// beside four stable ones: 20%). When set, a rollout whose steps' weights `replicas`
    /// cannot give within this many percentage points does not start (Stalled
    /// `WeightNotExpressible`); unset, the operator warns (status.warnings and an event) beyond
    /// 5 points. Gateway API routing gives exact weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_weight_error: Option<i32>,
}

/// One canary step: set a traffic weight, or pause.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.setWeight) != has(self.pause)")
    .message("each step sets exactly one of setWeight or pause"))]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percentage of traffic (0-100) to send to the canary. The canary must pass a fresh MCP
    /// probe and the schema-compatibility gate before the weight is raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub set_weight: Option<i32>,

    /// Hold the current weight. With a duration it is a soak (analysis keeps running); without
    /// one it waits for `kubectl mcprollout promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,

    /// Overrides of the probe for this step only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<StepProbe>,

    /// Overrides of the analysis for this step only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<StepAnalysis>,
}

/// A pause between weight changes.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PauseStep {
    /// How long to soak. Omit it to wait for a human promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
}

/// Per-step probe overrides.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StepProbe {
    /// Tool call to make at this step instead of `probe.toolCall`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<ProbeToolCall>,

    /// Tool names that must be listed at this step instead of `probe.expectedTools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 128)))]
    pub expected_tools: Option<Vec<String>>,
}

/// Per-step analysis overrides.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StepAnalysis {
    /// Skip Prometheus analysis at this step (probes and crash detection still run).
    #[serde(default)]
    pub skip: bool,

    /// Maximum canary/stable error-rate ratio at this step, replacing the built-in threshold
    /// (for example 1.5 at the first step, as the usual progression gate asks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0))]
    pub max_error_rate_ratio: Option<f64>,

    /// Minimum canary tool calls before a verdict, replacing `analysis.minRequestCount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_request_count: Option<i64>,
}

/// Blue-green: the new revision (preview) comes up at full size beside the active one, is
/// probed and analysed, then takes all traffic at once.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    /// Flip automatically once the preview passes its probe and pre-promotion analysis. When
    /// false the rollout waits for `kubectl mcprollout promote`.
    #[serde(default = "default_true")]
    pub auto_promote: bool,

    /// With autoPromote, wait this long after the preview is ready and healthy before flipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promote_after: Option<HumanDuration>,

    /// After the flip, probe and analysis keep running this long; a failure flips traffic back
    /// to the old revision, which is kept (out of rotation) until this window and its drain end.
    #[serde(default = "default_post_promotion_window")]
    pub post_promotion_window: HumanDuration,

    /// Pods of the preview revision before the flip. Defaults to `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub preview_replicas: Option<i32>,
}

fn default_true() -> bool {
    true
}

fn default_post_promotion_window() -> HumanDuration {
    HumanDuration::from_secs(300)
}

/// Traffic routing between revisions.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.gatewayAPI) || !has(self.mcpRouter)")
    .message("trafficRouting takes one of gatewayAPI and mcpRouter"))]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// Weight traffic through a Gateway API HTTPRoute instead of by replica ratio. The operator
    /// sets only the weights of the stable and canary backendRefs in the named route.
    #[serde(default, rename = "gatewayAPI", skip_serializing_if = "Option::is_none")]
    pub gateway_api: Option<GatewayApiRouting>,

    /// Route through the MCP session router, which the operator runs for this rollout: new
    /// sessions (and stateless requests) split exactly by weight, every session kept on the
    /// pod that holds it, a rolled-back revision's sessions moved at their next request, and
    /// drains that end when the router carries nothing more on the revision. The rollout's
    /// Service then selects the router's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_router: Option<McpRouterSpec>,
}

/// The MCP session router the operator runs in front of the rollout's revisions.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct McpRouterSpec {
    /// Router pods. Sessions survive the loss of one (their tokens name their pod, not a
    /// router), so two are enough for availability.
    #[serde(default = "default_router_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,

    /// The router's image; defaults to the operator's own (it carries `mcp-rollout-router`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,

    /// Resources of the router container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,

    /// A session with no request for this long no longer counts as open (for drains).
    #[serde(default = "default_router_idle_timeout")]
    pub idle_timeout: HumanDuration,

    /// Tools whose stateless (2026-07-28) calls go to the canary at a weight of their own,
    /// whatever the step's weight: read-only tools first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["tool".into()]))]
    pub tool_routes: Vec<ToolRoute>,

    /// Secret with the session-token key (`current`, 32 bytes, and `previous` during a
    /// rotation). Without it the operator creates `<rollout>-router-key` with a random key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub session_key_secret: Option<String>,
}

fn default_router_replicas() -> i32 {
    2
}

fn default_router_idle_timeout() -> HumanDuration {
    HumanDuration::from_secs(600)
}

/// A tool routed to the canary at its own weight.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolRoute {
    /// The tool's name, as in `tools/call`.
    #[schemars(length(min = 1, max = 128))]
    pub tool: String,
    /// Percentage of the tool's stateless calls sent to the canary while one runs.
    #[schemars(range(min = 0, max = 100))]
    pub weight: i32,
}

/// Where the analysis' default queries read tool calls and sessions from.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MetricsSource {
    /// The servers' own metrics (`mcp_tool_call_*`, `mcp_session_*`; README: metric contract).
    #[default]
    Server,
    /// What the MCP session router measured from the traffic (`mcp_router_*`): for servers
    /// with no metrics of their own. Needs `trafficRouting.mcpRouter`.
    Router,
}

/// What happens to a revision's sessions when a rollback takes its traffic away.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnRollback {
    /// End them at a request boundary, as the runbook's forced reconnect does, so agents come
    /// back to the restored version and fetch its tools again: with the router, each session's
    /// next request is answered 404 and the client starts a new session on stable; without it,
    /// the revision's pods are deleted once out of rotation and finish their in-flight calls
    /// in their termination grace period.
    #[default]
    Evacuate,
    /// Let them run out, as a promotion's drain does.
    Drain,
}

/// Gateway API routing.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRouting {
    /// The HTTPRoute whose backendRefs to the `<rollout>-stable` and `<rollout>-canary`
    /// Services the operator weights.
    pub http_route_ref: HttpRouteRef,

    /// Keep an MCP session on the backend that served its first request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<SessionPersistence>,
}

/// Reference to an HTTPRoute.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRef {
    /// Name of the HTTPRoute.
    #[schemars(length(min = 1, max = 253), pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,

    /// Namespace of the HTTPRoute. Defaults to the McpRollout's namespace. A route in another
    /// namespace is touched only when a Gateway API ReferenceGrant there lets McpRollouts of
    /// this namespace refer to it (else the rollout is Stalled, RouteNotGranted); its
    /// backendRefs then name our Services with this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub namespace: Option<String>,
}

/// Header-based session persistence on the HTTPRoute rule.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistence {
    /// Header that identifies a session.
    #[serde(default = "default_session_header")]
    #[schemars(length(min = 1, max = 128), pattern(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    pub header_name: String,

    /// Forget a session after this long, if the gateway supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_timeout: Option<HumanDuration>,
}

fn default_session_header() -> String {
    "Mcp-Session-Id".into()
}

/// How strictly the canary's tool schemas must match the stable's.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SchemaCompatibility {
    /// Block any breaking change: a removed tool or parameter, a new required parameter, a
    /// changed type or narrowed enum, or a protocol version the stable serves and the canary
    /// does not.
    #[default]
    Strict,
    /// Block only removals (tools, parameters, protocol versions).
    AllowAdditions,
    /// Report differences without blocking.
    Off,
}

/// The MCP protocol probe.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("duration(self.timeout) <= duration(self.interval)")
    .message("probe.timeout must not exceed probe.interval"))]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    /// How often each live revision is probed.
    #[serde(default = "default_probe_interval")]
    pub interval: HumanDuration,

    /// Deadline for one whole probe (handshake, tools/list, optional tools/call).
    #[serde(default = "default_probe_timeout")]
    pub timeout: HumanDuration,

    /// Consecutive failed probes of the new revision that trigger a rollback.
    #[serde(default = "default_probe_failure_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_limit: i32,

    /// Protocol versions the probe offers and accepts. Handshake-era versions (2024-11-05 to
    /// 2025-11-25) are probed with `initialize`; 2026-07-28 and later with `server/discover`.
    #[serde(default = "protocol::default_accepted_versions")]
    #[schemars(length(min = 1, max = 16), inner(pattern(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")))]
    pub protocol_versions: Vec<String>,

    /// Tool names the server must list. Without it, the stable revision's tool list is the
    /// reference (see schemaCompatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 128)))]
    pub expected_tools: Option<Vec<String>>,

    /// How the canary's tool list and schemas are compared with the stable's.
    #[serde(default)]
    pub schema_compatibility: SchemaCompatibility,

    /// A real tool call to make on each probe, exercising the server's data path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<ProbeToolCall>,

    /// Extra HTTP headers sent with every probe request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub headers: Vec<ProbeHeader>,

    /// Bearer token for the probe's `Authorization` header, from a Secret in the rollout's
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,

    /// PEM CA bundle to trust for https endpoints, from a Secret in the rollout's namespace:
    /// when set, the only trust roots (the system's are not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_secret_ref: Option<SecretKeyRef>,

    /// With `service.scheme: https`, the name the server's certificate must carry. Defaults
    /// to `<name>.<namespace>.svc`, the rollout's Service. The probe still connects to each
    /// pod's own IP; only the certificate check uses this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub tls_server_name: Option<String>,
}

fn default_probe_interval() -> HumanDuration {
    HumanDuration::from_secs(30)
}

fn default_probe_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

fn default_probe_failure_limit() -> i32 {
    3
}

impl Default for ProbeSpec {
    fn default() -> Self {
        Self {
            interval: default_probe_interval(),
            timeout: default_probe_timeout(),
            failure_limit: default_probe_failure_limit(),
            protocol_versions: protocol::default_accepted_versions(),
            expected_tools: None,
            schema_compatibility: SchemaCompatibility::default(),
            tool_call: None,
            headers: Vec::new(),
            bearer_token_secret_ref: None,
            ca_bundle_secret_ref: None,
            tls_server_name: None,
        }
    }
}

/// A tool call the probe makes, and what its result must contain.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProbeToolCall {
    /// Tool name.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,

    /// Arguments object passed to the tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true, "type" = "object"))]
    pub arguments: Option<serde_json::Map<String, serde_json::Value>>,

    /// What the result must contain. Without it, any result that is not an error passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<ExpectedContent>,
}

/// Expectations on a tool result. All that are set must hold.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.contains) || has(self.regex) || has(self.json)")
    .message("expect needs at least one of contains, regex or json"))]
#[serde(rename_all = "camelCase")]
pub struct ExpectedContent {
    /// A substring of the result's text content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub contains: Option<String>,

    /// A regular expression the result's text content must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub regex: Option<String>,

    /// A JSON object that must be a subset of the result's structured content (an object in
    /// MCP). Typed as an object so the API server's CEL rules can see it: an untyped field is
    /// invisible to CEL, and a real API server refused the CRD for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true, "type" = "object"))]
    pub json: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An HTTP header the probe sends.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)")
    .message("a header sets exactly one of value or valueFrom"))]
#[serde(rename_all = "camelCase")]
pub struct ProbeHeader {
    /// Header name.
    #[schemars(length(min = 1, max = 128), pattern(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    pub name: String,

    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub value: Option<String>,

    /// Value from a Secret in the rollout's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<SecretKeyRef>,
}

/// A key of a Secret in the rollout's namespace.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253), pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,

    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Prometheus analysis.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// The Prometheus to query.
    pub prometheus: PrometheusSpec,

    /// How often the checks are evaluated while a new revision has traffic.
    #[serde(default = "default_analysis_interval")]
    pub interval: HumanDuration,

    /// Window of `rate()` in the built-in queries (`{{rateWindow}}`, also offered to
    /// `metrics[].query`). It must hold at least four scrapes of the servers' metrics: with
    /// fewer than two samples in it `rate()` is empty and the checks are Inconclusive (status
    /// then says how many samples it held). Default: the larger of `interval` and `2m` (four
    /// scrapes at a 30 s scrape interval; with Prometheus's default of 1 m, set `4m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_window: Option<HumanDuration>,

    /// The label of the servers' metrics that carries the revision (`{{revisionLabel}}`). The
    /// operator passes the revision as `SERVER_VERSION`; a server that already exports
    /// `version` (its semver, say) can label the revision otherwise, or Prometheus can copy it
    /// from the pod label `mcprollout.dev/revision`. Not used with `source: Router` (the
    /// router labels `revision` itself).
    #[serde(default = "default_revision_label")]
    #[schemars(length(min = 1, max = 128), pattern(r"^[a-zA-Z_][a-zA-Z0-9_]*$"))]
    pub revision_label: String,

    /// Canary tool calls needed in the window before any check may pass. Fewer gives
    /// Inconclusive, which pauses the rollout; it never promotes blind.
    #[serde(default = "default_min_request_count")]
    #[schemars(range(min = 0))]
    pub min_request_count: i64,

    /// Consecutive failed evaluations that trigger a rollback. The built-in ratio checks are
    /// already sustained over their `for` window, so 1 is the usual value.
    #[serde(default = "default_analysis_failure_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_limit: i32,

    /// The built-in checks and their thresholds.
    #[serde(default)]
    pub checks: BuiltinChecks,

    /// User-defined checks: a PromQL template whose value must stay within [min, max].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub metrics: Vec<CustomMetric>,

    /// PromQL overrides for the built-in queries, for servers that instrument differently.
    #[serde(default)]
    pub queries: QueryOverrides,

    /// Whose metrics the built-in queries read: the servers' (`Server`) or the MCP session
    /// router's (`Router`, measured from the traffic; needs `trafficRouting.mcpRouter`).
    #[serde(default)]
    pub source: MetricsSource,
}

fn default_analysis_interval() -> HumanDuration {
    HumanDuration::from_secs(60)
}

fn default_revision_label() -> String {
    "version".to_owned()
}

/// The default rate window's floor: four scrapes at a 30 s scrape interval.
pub const RATE_WINDOW_FLOOR: std::time::Duration = std::time::Duration::from_secs(120);

impl AnalysisSpec {
    /// The window of `rate()` in force: `rateWindow`, else the larger of `interval` and 2m.
    pub fn rate_window(&self) -> std::time::Duration {
        self.rate_window.map_or_else(|| self.interval.as_std().max(RATE_WINDOW_FLOOR), |w| w.as_std())
    }
}

fn default_min_request_count() -> i64 {
    50
}

fn default_analysis_failure_limit() -> i32 {
    1
}

/// Where Prometheus is.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "(!has(self.caBundleSecretRef) && !has(self.clientCertificateSecretRef)) || self.address.startsWith('https://')"
).message("prometheus.caBundleSecretRef and clientCertificateSecretRef are for an https address"))]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(min = 8, max = 2048), pattern(r"^https?://[^\s]+$"))]
    pub address: String,

    /// Deadline for each query.
    #[serde(default = "default_prometheus_timeout")]
    pub timeout: HumanDuration,

    /// Bearer token for Prometheus, from a Secret in the rollout's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,

    /// PEM CA bundle to trust for an https address, from a Secret in the rollout's namespace:
    /// when set, the only trust roots (the system's are not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_secret_ref: Option<SecretKeyRef>,

    /// A client certificate for Prometheus behind mutual TLS: a `kubernetes.io/tls` Secret in
    /// the rollout's namespace (`tls.crt`, the chain, and `tls.key`, its private key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_secret_ref: Option<TlsSecretRef>,
}

/// A `kubernetes.io/tls` Secret: `tls.crt` and `tls.key`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253), pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
}

impl TlsSecretRef {
    /// The certificate chain and the private key, as Secret keys.
    pub fn keys(&self) -> [SecretKeyRef; 2] {
        ["tls.crt", "tls.key"].map(|key| SecretKeyRef { name: self.name.clone(), key: key.to_owned() })
    }
}

fn default_prometheus_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

/// The built-in checks, defaulting to the usual MCP canary rollback triggers.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BuiltinChecks {
    /// Canary tool-call error rate against stable's.
    #[serde(default)]
    pub error_rate: ErrorRateCheck,

    /// Canary P99 tool-call latency against stable's.
    #[serde(default)]
    pub latency: LatencyCheck,

    /// Share of canary tool calls rejected as schema-validation errors.
    #[serde(default)]
    pub schema_validation_errors: SchemaErrorCheck,

    /// Canary container crashes (restarts, OOM kills, CrashLoopBackOff), read from pod status.
    #[serde(default)]
    pub crash: CrashCheck,
}

/// Fails when the canary's error rate exceeds `maxRatio` × stable's for the whole `for` window.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.stableErrorRateFloorPercent) || self.stableErrorRateFloorPercent <= 10.0")
    .message("stableErrorRateFloorPercent is a percentage (0.1 means 0.1%); a floor above 10% lets a canary failing maxRatio times that share of its calls pass"))]
#[serde(rename_all = "camelCase")]
pub struct ErrorRateCheck {
    /// Run this check.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Maximum canary/stable error-rate ratio.
    #[serde(default = "default_error_ratio")]
    #[schemars(range(min = 1.0))]
    pub max_ratio: f64,

    /// Maximum ratio at the first weighted step: the early progression gate.
    #[serde(default = "default_first_step_error_ratio")]
    #[schemars(range(min = 1.0))]
    pub first_step_max_ratio: f64,

    /// How long the ratio must stay above the threshold before the check fails.
    #[serde(default = "default_sustain", rename = "for")]
    pub sustain: HumanDuration,

    /// Stable error rate, in percent of calls, used when stable's is below it (stable at 0%
    /// would make any canary error an infinite ratio): 0.1 means 0.1%. Every share in the API
    /// is a percentage.
    #[serde(default = "default_stable_error_floor_percent")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub stable_error_rate_floor_percent: f64,
}

fn default_error_ratio() -> f64 {
    2.0
}
fn default_first_step_error_ratio() -> f64 {
    1.5
}
fn default_sustain() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_stable_error_floor_percent() -> f64 {
    0.1
}

impl Default for ErrorRateCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            max_ratio: default_error_ratio(),
            first_step_max_ratio: default_first_step_error_ratio(),
            sustain: default_sustain(),
            stable_error_rate_floor_percent: default_stable_error_floor_percent(),
        }
    }
}

/// Fails when the canary's latency quantile exceeds `maxRatio` × stable's for `for`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LatencyCheck {
    /// Run this check.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Latency quantile compared (0.99 = P99).
    #[serde(default = "default_latency_quantile")]
    #[schemars(range(min = 0.5, max = 1.0))]
    pub quantile: f64,

    /// Maximum canary/stable latency ratio.
    #[serde(default = "default_latency_ratio")]
    #[schemars(range(min = 1.0))]
    pub max_ratio: f64,

    /// How long the ratio must stay above the threshold before the check fails.
    #[serde(default = "default_sustain", rename = "for")]
    pub sustain: HumanDuration,
}

fn default_latency_quantile() -> f64 {
    0.99
}
fn default_latency_ratio() -> f64 {
    3.0
}

impl Default for LatencyCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            quantile: default_latency_quantile(),
            max_ratio: default_latency_ratio(),
            sustain: default_sustain(),
        }
    }
}

/// Fails when schema-validation errors exceed `maxPercent` of canary tool calls.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.maxPercent) || self.maxPercent <= 10.0")
    .message("schemaValidationErrors.maxPercent is a percentage (0.1 means 0.1%); above 10% the check would pass a breaking schema change: disable the check instead"))]
#[serde(rename_all = "camelCase")]
pub struct SchemaErrorCheck {
    /// Run this check.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Maximum percentage of canary tool calls that may fail schema validation.
    #[serde(default = "default_schema_error_percent")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub max_percent: f64,
}

fn default_schema_error_percent() -> f64 {
    0.1
}

impl Default for SchemaErrorCheck {
    fn default() -> Self {
        Self { enabled: true, max_percent: default_schema_error_percent() }
    }
}

/// Fails at once when a canary container restarts or crash-loops.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CrashCheck {
    /// Run this check. It needs no Prometheus.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Container restarts tolerated across all canary pods.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub max_restarts: i32,
}

impl Default for CrashCheck {
    fn default() -> Self {
        Self { enabled: true, max_restarts: 0 }
    }
}

/// A user-defined check (like Flagger's MetricTemplate). The query may use the variables
/// `{{namespace}}`, `{{rollout}}`, `{{stableRevision}}`, `{{canaryRevision}}`,
/// `{{rateWindow}}` (for `rate()`) and `{{interval}}`, and must return one number.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.min) || has(self.max)")
    .message("a metric needs min, max or both"))]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max")
    .message("min must not exceed max"))]
#[serde(rename_all = "camelCase")]
pub struct CustomMetric {
    /// Name, shown in status and events.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// PromQL template.
    #[schemars(length(min = 1, max = 8192))]
    pub query: String,

    /// Lowest acceptable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,

    /// Highest acceptable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,

    /// Consecutive out-of-range evaluations that trigger a rollback.
    #[serde(default = "default_analysis_failure_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_limit: i32,
}

/// PromQL overrides for the built-in queries. Each may use the variables `{{namespace}}`,
/// `{{rollout}}`, `{{revision}}` (the revision being measured), `{{rateWindow}}` (for
/// `rate()`) and `{{interval}}`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueryOverrides {
    /// Tool calls per second of a revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub request_rate: Option<String>,

    /// Failed tool calls per second of a revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub error_rate: Option<String>,

    /// Tool-call latency quantile (seconds) of a revision; may use `{{quantile}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub latency: Option<String>,

    /// Schema-validation errors per second of a revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub schema_errors: Option<String>,

    /// Session-duration quantile (seconds) for the drain window; may use `{{quantile}}` and
    /// `{{lookback}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub session_duration: Option<String>,

    /// Open sessions and in-flight streams of a revision, for the drain's early finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8192))]
    pub active_sessions: Option<String>,
}

/// The drain of a revision that has lost its traffic.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("duration(self.min) <= duration(self.max)")
    .message("drain.min must not exceed drain.max"))]
#[serde(rename_all = "camelCase")]
pub struct DrainSpec {
    /// Quantile of observed session durations that sets the window (0.95 = P95).
    #[serde(default = "default_drain_quantile")]
    #[schemars(range(min = 0.5, max = 1.0))]
    pub quantile: f64,

    /// How far back session durations are measured.
    #[serde(default = "default_drain_lookback")]
    pub lookback: HumanDuration,

    /// Shortest window, whatever was measured.
    #[serde(default = "default_drain_min")]
    pub min: HumanDuration,

    /// Longest window, whatever was measured; also the window when nothing was measured.
    #[serde(default = "default_drain_max")]
    pub max: HumanDuration,

    /// End the drain early once the draining pods report no open sessions and no in-flight
    /// streams.
    #[serde(default = "default_true")]
    pub early_finish: bool,

    /// A rolled-back revision's sessions: `Evacuate` (moved to stable at a request boundary)
    /// or `Drain` (left to run out).
    #[serde(default)]
    pub on_rollback: OnRollback,
}

fn default_drain_quantile() -> f64 {
    0.95
}
fn default_drain_lookback() -> HumanDuration {
    HumanDuration::from_secs(3600)
}
fn default_drain_min() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_drain_max() -> HumanDuration {
    HumanDuration::from_secs(300)
}

impl Default for DrainSpec {
    fn default() -> Self {
        Self {
            quantile: default_drain_quantile(),
            lookback: default_drain_lookback(),
            min: default_drain_min(),
            max: default_drain_max(),
            early_finish: true,
            on_rollback: OnRollback::Evacuate,
        }
    }
}
