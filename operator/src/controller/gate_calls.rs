//! A gate's webhook call: the rollout's context POSTed as JSON, the answer turned into what the
//! engine reads (open, closed, roll back) with words for the status.
//!
//! The body sent:
//! ```json
//! {"kind": "GateRequest", "gate": "change-ticket", "point": "WeightIncrease", "weight": 25,
//!  "rollout": {"namespace": "docs", "name": "docs", "uid": "…"},
//!  "revision": "7d9f…", "stableRevision": "5c1a…", "images": ["ghcr.io/acme/docs:v2"],
//!  "schemaChange": "Breaking", "probe": {…status.probes entry…},
//!  "analysis": [{"name": "errorRate", "verdict": "Pass", "value": 0.2, "threshold": 2.0}]}
//! ```
//! Answers: 2xx opens the gate; 2xx with `{"action": "rollback", "message": "…"}` rolls the
//! revision back; anything else (or no answer within the timeout) keeps it closed until the next
//! call, `interval` later.

use std::{net::SocketAddr, time::Duration};

use jiff::Timestamp;
use serde_json::Value;

use super::hooks::{self, Answer, HookError, Target};
use crate::engine::{GateAnswer, GateCall, GateOutcome};

/// One call to make.
pub struct GateJob {
    pub call: GateCall,
    pub url: String,
    pub pinned: Vec<SocketAddr>,
    pub token: Option<String>,
    pub timeout: Duration,
    pub context: Value,
}

/// Makes the call; never fails: a failure is a closed gate with the reason.
pub async fn call(job: GateJob) -> GateAnswer {
    let target =
        Target { url: &job.url, pinned: &job.pinned, token: job.token.as_deref(), timeout: job.timeout };
    let result = hooks::post_json(&target, &job.context).await;
    let (outcome, message) = interpret(result);
    GateAnswer { call: job.call, at: Timestamp::now(), outcome, message }
}

/// What an answer means for the gate.
pub fn interpret(result: Result<Answer, HookError>) -> (GateOutcome, String) {
    let answer = match result {
        Ok(a) => a,
        Err(e) => return (GateOutcome::Closed, e.to_string()),
    };
    if !answer.success() {
        return (GateOutcome::Closed, answer.describe());
    }
    let body: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let field = |name: &str| body.as_ref().and_then(|b| b.get(name)).and_then(Value::as_str);
    match field("action") {
        Some("rollback") => {
            let why =
                field("message").map(|m| hooks::shown(m.as_bytes())).unwrap_or_else(|| answer.describe());
            (GateOutcome::Rollback, why)
        }
        _ => (GateOutcome::Open, answer.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Result<Answer, HookError> {
        Ok(Answer { status, body: body.as_bytes().to_vec() })
    }

    #[test]
    fn two_hundreds_open_others_close_and_rollback_is_asked_for_explicitly() {
        assert_eq!(interpret(answer(200, "")), (GateOutcome::Open, "HTTP 200".into()));
        assert_eq!(interpret(answer(204, "")).0, GateOutcome::Open);
        assert_eq!(
            interpret(answer(409, "CHG-42 not approved")),
            (GateOutcome::Closed, "HTTP 409: CHG-42 not approved".into())
        );
        assert_eq!(interpret(answer(302, "")).0, GateOutcome::Closed);
        assert_eq!(
            interpret(answer(200, r#"{"action":"rollback","message":"CHG-42 rejected by CAB"}"#)),
            (GateOutcome::Rollback, "CHG-42 rejected by CAB".into())
        );
        // Not JSON, or another action: a plain 2xx.
        assert_eq!(interpret(answer(200, "rollback")).0, GateOutcome::Open);
        assert_eq!(interpret(answer(200, r#"{"action":"wait"}"#)).0, GateOutcome::Open);
        // A rollback is never read from a refusal.
        assert_eq!(interpret(answer(500, r#"{"action":"rollback"}"#)).0, GateOutcome::Closed);
        let timeout = interpret(Err(HookError::Timeout(Duration::from_secs(2))));
        assert_eq!(timeout, (GateOutcome::Closed, "no answer within 2s".into()));
    }
}
