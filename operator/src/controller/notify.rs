//! Notifications (`spec.notifications`, or the operator's default receivers): what happened to
//! a rollout, told to a webhook (this operator's JSON) or a Slack incoming webhook.
//!
//! What to tell is decided from the decision (its events, and the status before and after:
//! pure, in `notices`). Delivery is never on the reconcile's path: each notice is queued
//! (`try_send`; a full queue drops it and counts it), a dispatcher runs at most `PARALLEL`
//! deliveries at once, and each delivery reads its receiver's URL from the Secret, checks it
//! against the allowed destinations, and POSTs with a timeout, `ATTEMPTS` times at most with
//! jittered exponential backoff. A slow or dead receiver costs its own deliveries, nothing else.
//!
//! The webhook body:
//! ```json
//! {"kind": "RolledBack", "rollout": {"namespace": "docs", "name": "docs"},
//!  "revision": "7d9f…", "message": "revision 7d9f… rolled back (AnalysisFailed): check errorRate …",
//!  "at": "2026-12-04T21:00:00Z",
//!  "details": {"rollback": {…status.rollback…}, "analysis": [{"name": "errorRate", "value": 0.31, …}],
//!              "probe": {…the revision's last probe…}}}
//! ```

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use super::{
    backoff,
    destinations::Destinations,
    hooks::{self, Target},
    metrics::{Metrics, ResultLabels},
};
use crate::{
    api::{GateState, McpRollout, McpRolloutStatus, NotificationKind, Phase, Receiver, ReceiverFormat},
    engine,
};

/// Notices waiting for delivery; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Deliveries under way at once.
const PARALLEL: usize = 8;
/// Attempts per delivery, and the timeout of each.
pub const ATTEMPTS: u32 = 4;
const TIMEOUT: Duration = Duration::from_secs(5);

/// One thing to tell.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub kind: NotificationKind,
    pub revision: Option<String>,
    pub message: String,
    pub details: Value,
}

/// What a decision has to tell, from its events and the status before and after it.
pub fn notices(before: &McpRolloutStatus, after: &McpRolloutStatus, events: &[engine::Event]) -> Vec<Notice> {
    let mut out = Vec::new();
    let canary = after.canary_revision.clone();
    for event in events {
        let notice = |kind, revision: Option<String>, details| Notice {
            kind,
            revision,
            message: event.message.clone(),
            details,
        };
        match event.reason.as_str() {
            "RolloutStarted" => out.push(notice(NotificationKind::RolloutStarted, canary.clone(), json!({}))),
            "WeightIncreased" | "Flipped" => out.push(notice(
                NotificationKind::StepReached,
                canary.clone(),
                json!({"weight": after.desired_weight, "step": after.current_step_index}),
            )),
            "GateWaiting" => {
                let waiting: Vec<_> = after.gates.iter().filter(|g| g.state == GateState::Waiting).collect();
                out.push(notice(NotificationKind::GateWaiting, canary.clone(), json!({"gates": waiting})));
            }
            "RolledBack" => {
                let revision = after.rollback.as_ref().map(|r| r.revision.clone());
                let probe = before.probes.iter().find(|p| Some(&p.revision) == revision.as_ref());
                out.push(notice(
                    NotificationKind::RolledBack,
                    revision.clone(),
                    json!({"rollback": after.rollback, "analysis": after.analysis, "probe": probe}),
                ));
            }
            "Promoted" => {
                out.push(notice(NotificationKind::Promoted, after.stable_revision.clone(), json!({})));
            }
            "DrainFinished" => out.push(notice(NotificationKind::DrainFinished, None, json!({}))),
            _ => {}
        }
    }
    // Paused, and why — unless a gate that began waiting already says it.
    let gate_said = out.iter().any(|n| n.kind == NotificationKind::GateWaiting);
    if after.phase == Some(Phase::Paused) && before.phase != Some(Phase::Paused) && !gate_said {
        out.push(Notice {
            kind: NotificationKind::Paused,
            revision: canary,
            message: after.message.clone().unwrap_or_default(),
            details: json!({"step": after.current_step_index, "weight": after.desired_weight}),
        });
    }
    out
}

/// The body a receiver gets for a notice.
pub fn payload(format: ReceiverFormat, namespace: &str, name: &str, notice: &Notice, at: Timestamp) -> Value {
    match format {
        ReceiverFormat::Webhook => json!({
            "kind": notice.kind,
            "rollout": {"namespace": namespace, "name": name},
            "revision": notice.revision,
            "message": notice.message,
            "at": at.to_string(),
            "details": notice.details,
        }),
        ReceiverFormat::Slack => {
            let mut text = format!("*McpRollout {namespace}/{name}* — {:?}: {}", notice.kind, notice.message);
            for check in notice.details.get("analysis").and_then(Value::as_array).into_iter().flatten() {
                let field = |f: &str| check.get(f).map_or("n/a".to_owned(), |v| v.to_string());
                text.push_str(&format!(
                    "\n• {}: {} (value {}, threshold {})",
                    check.get("name").and_then(Value::as_str).unwrap_or("?"),
                    check.get("verdict").and_then(Value::as_str).unwrap_or("?"),
                    field("value"),
                    field("threshold"),
                ));
            }
            json!({"text": text})
        }
    }
}

/// Receivers for rollouts whose spec names none, with the namespace their Secrets are in (the
/// operator's).
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    pub namespace: String,
    pub receivers: Vec<Receiver>,
}

struct Delivery {
    /// `namespace/name` of the rollout and the receiver's name, for logs.
    what: String,
    secret_namespace: String,
    receiver: Receiver,
    body: Value,
}

/// The queue and its dispatcher.
pub struct Notifier {
    queue: mpsc::Sender<Delivery>,
    metrics: Arc<Metrics>,
    defaults: Defaults,
}

impl Notifier {
    /// Starts the dispatcher (on the current tokio runtime).
    pub fn start(
        client: Client,
        destinations: Arc<Destinations>,
        metrics: Arc<Metrics>,
        defaults: Defaults,
    ) -> Self {
        let (queue, mut incoming) = mpsc::channel::<Delivery>(QUEUE);
        let parallel = Arc::new(Semaphore::new(PARALLEL));
        let counters = metrics.clone();
        tokio::spawn(async move {
            while let Some(delivery) = incoming.recv().await {
                let Ok(permit) = parallel.clone().acquire_owned().await else { return };
                let (client, destinations, counters) =
                    (client.clone(), destinations.clone(), counters.clone());
                tokio::spawn(async move {
                    let result = deliver(&client, &destinations, &delivery).await;
                    let outcome = if result.is_ok() { "sent" } else { "failed" };
                    counters.notifications.get_or_create(&ResultLabels { result: outcome.into() }).inc();
                    if let Err(e) = result {
                        warn!(notification = %delivery.what, error = %e, "notification not delivered");
                    }
                    drop(permit);
                });
            }
        });
        Self { queue, metrics, defaults }
    }

    /// Queues the notices for the rollout's receivers; never waits.
    pub fn notify(&self, rollout: &McpRollout, notices: &[Notice]) {
        if notices.is_empty() {
            return;
        }
        let namespace = rollout.namespace().unwrap_or_default();
        let name = rollout.name_any();
        let (secret_namespace, receivers) = match &rollout.spec.notifications {
            Some(n) => (namespace.clone(), n.receivers.as_slice()),
            None => (self.defaults.namespace.clone(), self.defaults.receivers.as_slice()),
        };
        let now = Timestamp::now();
        for receiver in receivers {
            for notice in notices.iter().filter(|n| receiver.on.is_empty() || receiver.on.contains(&n.kind)) {
                let delivery = Delivery {
                    what: format!("{namespace}/{name} {:?} to {}", notice.kind, receiver.name),
                    secret_namespace: secret_namespace.clone(),
                    receiver: receiver.clone(),
                    body: payload(receiver.format, &namespace, &name, notice, now),
                };
                if self.queue.try_send(delivery).is_err() {
                    self.metrics
                        .notifications
                        .get_or_create(&ResultLabels { result: "dropped".into() })
                        .inc();
                }
            }
        }
    }
}

async fn deliver(client: &Client, destinations: &Destinations, delivery: &Delivery) -> Result<u32, String> {
    let read_url = || read_url(client, delivery);
    send_with_retries(read_url, destinations, &delivery.receiver.name, &delivery.body, TIMEOUT).await
}

/// Reads the receiver's URL from its Secret (again on every attempt: a Secret fixed meanwhile
/// is used).
async fn read_url(client: &Client, delivery: &Delivery) -> Result<String, String> {
    let reference = &delivery.receiver.url_secret_ref;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &delivery.secret_namespace);
    let secret = secrets.get_opt(&reference.name).await.map_err(|e| e.to_string())?;
    secret
        .and_then(|s| s.data)
        .and_then(|d| d.get(&reference.key).map(|b| String::from_utf8_lossy(&b.0).trim().to_owned()))
        .ok_or_else(|| {
            format!("Secret {}/{} has no key {}", delivery.secret_namespace, reference.name, reference.key)
        })
}

/// Delivers `body` to the URL `read_url` gives, `ATTEMPTS` times at most with jittered
/// exponential backoff between attempts; the attempts it took.
pub async fn send_with_retries<F, Fut>(
    read_url: F,
    destinations: &Destinations,
    receiver: &str,
    body: &Value,
    timeout: Duration,
) -> Result<u32, String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(backoff::delay(
                attempt - 1,
                Duration::from_millis(500),
                Duration::from_secs(30),
            ))
            .await;
        }
        match send_once(read_url().await, destinations, receiver, body, timeout).await {
            Ok(()) => {
                debug!(receiver, attempt, "notification delivered");
                return Ok(attempt + 1);
            }
            Err(e) => last = e,
        }
    }
    Err(format!("{ATTEMPTS} attempts, the last: {last}"))
}

async fn send_once(
    url: Result<String, String>,
    destinations: &Destinations,
    receiver: &str,
    body: &Value,
    timeout: Duration,
) -> Result<(), String> {
    let url = url?;
    let what = format!("receiver {receiver} ({})", hooks::redacted(&url));
    let pinned =
        destinations.url(&what, &format!("receiver {receiver}"), &url).await.map_err(|p| p.message)?;
    let target = Target { url: &url, pinned: &pinned.addresses, token: None, timeout };
    let answer = hooks::post_json(&target, body).await.map_err(|e| e.to_string())?;
    if answer.success() { Ok(()) } else { Err(answer.describe()) }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::{CheckStatus, RollbackReason, RollbackStatus, Verdict};

    fn event(reason: &str, message: &str) -> engine::Event {
        engine::Event::normal(reason, message)
    }

    #[test]
    fn a_rollback_carries_its_numbers_and_a_pause_says_why_once() {
        let at = Time(Timestamp::UNIX_EPOCH);
        let before = McpRolloutStatus { phase: Some(Phase::Progressing), ..Default::default() };
        let after = McpRolloutStatus {
            phase: Some(Phase::Degraded),
            rollback: Some(RollbackStatus {
                revision: "v2".into(),
                reason: RollbackReason::AnalysisFailed,
                check: Some("errorRate".into()),
                message: "check errorRate failed".into(),
                at: at.clone(),
            }),
            analysis: vec![CheckStatus {
                name: "errorRate".into(),
                verdict: Verdict::Fail,
                value: Some(0.31),
                threshold: Some(0.05),
                consecutive_failures: 2,
                at,
                message: None,
            }],
            ..Default::default()
        };
        let out = notices(&before, &after, &[event("RolledBack", "revision v2 rolled back")]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, NotificationKind::RolledBack);
        assert_eq!(out[0].details["analysis"][0]["value"], json!(0.31));
        let slack = payload(ReceiverFormat::Slack, "docs", "docs", &out[0], Timestamp::UNIX_EPOCH);
        let text = slack["text"].as_str().unwrap();
        assert!(text.contains("errorRate: Fail (value 0.31, threshold 0.05)"), "{text}");
        let hook = payload(ReceiverFormat::Webhook, "docs", "docs", &out[0], Timestamp::UNIX_EPOCH);
        assert_eq!(hook["kind"], json!("RolledBack"));
        assert_eq!(hook["revision"], json!("v2"));

        let paused = McpRolloutStatus {
            phase: Some(Phase::Paused),
            message: Some("paused at 25% until `kubectl mcprollout promote`".into()),
            ..Default::default()
        };
        let out = notices(&before, &paused, &[]);
        assert_eq!((out.len(), out[0].kind), (1, NotificationKind::Paused));
        assert!(out[0].message.contains("25%"));
        // Still paused next time: nothing new to tell.
        assert!(notices(&paused, &paused, &[]).is_empty());
        // A gate that starts waiting says it; the pause it causes is not told twice.
        let out = notices(&before, &paused, &[event("GateWaiting", "revision v2 waits at gate cab")]);
        assert_eq!(out.iter().map(|n| n.kind).collect::<Vec<_>>(), vec![NotificationKind::GateWaiting]);
    }

    #[test]
    fn steps_promotions_and_drains_are_told_other_events_are_not() {
        let s = McpRolloutStatus::default();
        let kinds: Vec<_> = notices(
            &s,
            &s,
            &[
                event("RolloutStarted", "rolling out v2"),
                event("WeightIncreased", "5% → 25%"),
                event("StepAdvanced", "step 1 done"),
                event("Promoted", "v2 stable"),
                event("DrainFinished", "v1 drained"),
                event("ProbeFailed", "…"),
            ],
        )
        .into_iter()
        .map(|n| n.kind)
        .collect();
        use NotificationKind::*;
        assert_eq!(kinds, vec![RolloutStarted, StepReached, Promoted, DrainFinished]);
    }
}
