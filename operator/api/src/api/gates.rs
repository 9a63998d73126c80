//! Change gates and notifications: where a rollout waits for something outside the cluster (a
//! change ticket, a human, the end of a freeze), and whom it tells what happened.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::{HumanDuration, SecretKeyRef};

/// A gate: before the points it stands at, the rollout waits until it opens. A closed gate
/// pauses the rollout (phase Paused, Argo CD Suspended) with its name and answer; it never rolls
/// back unless its webhook answers `rollback`.
///
/// The kinds combine: every one set must open (a webhook and an approval both; a freeze window
/// in force keeps the gate closed whatever they say). A gate with only `freeze` is open outside
/// its windows.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.webhook) || has(self.approval) || has(self.freeze)").message(
    "a gate needs at least one of webhook, approval or freeze"
))]
pub struct Gate {
    /// Name, unique in the rollout: what status, events and `kubectl mcprollout approve --gate`
    /// call it.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// Where the gate stands. `Start`: before the new revision takes any traffic (its pods are up
    /// and probed, so the gate knows its schema diff). `WeightIncrease`: before each canary weight
    /// increase short of 100%. `Flip`: before a blue-green flip. `Promotion`: before the new
    /// revision takes all traffic (a canary's last increase, a blue-green flip).
    #[schemars(length(min = 1, max = 4))]
    pub at: Vec<GatePoint>,

    /// Which revisions it applies to: `Always`, only those whose tool schemas differ from the
    /// stable revision's (`SchemaChanged`), or only those with a breaking difference — a removed
    /// tool or parameter, a new required parameter, a narrowed type (`SchemaBreaking`). A
    /// revision whose diff is not known (stable could not be probed) is gated. So image-only
    /// changes flow while schema changes wait for a person.
    #[serde(default)]
    pub when: GateWhen,

    /// Ask an HTTP endpoint (a change-management system): the rollout's context is POSTed as
    /// JSON; a 2xx answer opens the gate, anything else keeps it closed (asked again every
    /// `interval`), and an answer `{"action": "rollback"}` rolls the revision back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookGate>,

    /// Wait for `kubectl mcprollout approve NAME [--gate GATE]` (the request annotation, so Git
    /// stays the owner of the spec). An approval opens the gate at the point it was given at
    /// only: the next weight increase waits for another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalGate>,

    /// Times when the gate is closed whatever else it says (a change freeze).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<FreezeSpec>,
}

/// Points of a rollout a gate can stand at.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum GatePoint {
    Start,
    WeightIncrease,
    Flip,
    Promotion,
}

/// Which revisions a gate applies to.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GateWhen {
    #[default]
    Always,
    SchemaChanged,
    SchemaBreaking,
}

/// A gate answered by an HTTP endpoint.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookGate {
    /// Where the context is POSTed (http or https). The operator's allow-list of destinations
    /// applies.
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://"))]
    pub url: String,

    /// A bearer token sent as `Authorization: Bearer <token>`, from a Secret in the rollout's
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,

    /// How long one call may take (connect, answer and body).
    #[serde(default = "default_webhook_timeout")]
    pub timeout: HumanDuration,

    /// How long after a closed answer (or a failed call) the endpoint is asked again.
    #[serde(default = "default_webhook_interval")]
    pub interval: HumanDuration,
}

fn default_webhook_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

fn default_webhook_interval() -> HumanDuration {
    HumanDuration::from_secs(30)
}

/// A gate a person opens.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalGate {}

/// Change-freeze windows, in a time zone.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FreezeSpec {
    /// IANA time zone the windows are written in, e.g. `Europe/Berlin` (daylight saving time
    /// followed).
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,

    /// The windows; the gate is closed while any one holds.
    #[schemars(length(min = 1, max = 32))]
    pub windows: Vec<FreezeWindow>,
}

fn default_time_zone() -> String {
    "UTC".into()
}

/// One freeze window: weekly (`days`, `from`, `to` as `HH:MM`; `to` may be `24:00`, and a `to`
/// earlier than `from` runs past midnight) or one-off (`start` and `end` as local date-times,
/// `2026-12-20T00:00`).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.start) && has(self.end) && !has(self.from) && !has(self.to)) || (!has(self.start) && !has(self.end) && has(self.from) && has(self.to))"
).message("a freeze window is either start and end (one-off) or from and to (weekly, with days)"))]
pub struct FreezeWindow {
    /// Weekly: the days it begins on (empty: every day).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub days: Vec<Weekday>,

    /// Weekly: local time it begins, `HH:MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub from: Option<String>,

    /// Weekly: local time it ends, `HH:MM` (`24:00` for midnight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"))]
    pub to: Option<String>,

    /// One-off: local date-time it begins, `YYYY-MM-DDTHH:MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?$"))]
    pub start: Option<String>,

    /// One-off: local date-time it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?$"))]
    pub end: Option<String>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// Whom the rollout tells what happens to it. Delivery is asynchronous, bounded and retried: a
/// receiver that is slow or down never holds a rollout, and never a rollback.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsSpec {
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub receivers: Vec<Receiver>,
}

/// One receiver: a URL from a Secret (a Slack incoming-webhook URL is a credential), the format
/// it takes, and what it is told.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Receiver {
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// `Webhook`: this operator's JSON (see the README); `Slack`: an incoming webhook's
    /// `{"text": …}`.
    #[serde(default)]
    pub format: ReceiverFormat,

    /// The Secret key holding the URL.
    pub url_secret_ref: SecretKeyRef,

    /// What it is told; empty: everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub on: Vec<NotificationKind>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReceiverFormat {
    #[default]
    Webhook,
    Slack,
}

/// What a notification is about.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum NotificationKind {
    /// A new revision started rolling out.
    RolloutStarted,
    /// A canary step was reached (a weight increase) or a blue-green flip happened.
    StepReached,
    /// The rollout paused, and why.
    Paused,
    /// A gate is waiting.
    GateWaiting,
    /// The new revision was rolled back, with the analysis figures and probe findings.
    RolledBack,
    /// The new revision became stable.
    Promoted,
    /// A revision that left traffic finished draining.
    DrainFinished,
}
