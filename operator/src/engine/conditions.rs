//! kstatus conditions from the phase: what Flux and Argo CD read.
//!
//! | phase       | Ready | Reconciling | Stalled |
//! |-------------|-------|-------------|---------|
//! | Healthy     | True  | False       | False   |
//! | Progressing | False | True        | False   |
//! | Paused      | False | True        | False   |
//! | Degraded    | False | False       | True    |

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{Phase, condition};

/// Conditions for `phase`, keeping each condition's transition time when its status is
/// unchanged (so a repeated decision writes an identical status).
pub fn for_phase(
    phase: Phase,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    let (ready, reconciling, stalled) = match phase {
        Phase::Healthy => (true, false, false),
        Phase::Progressing | Phase::Paused => (false, true, false),
        Phase::Degraded => (false, false, true),
    };
    [(condition::READY, ready), (condition::RECONCILING, reconciling), (condition::STALLED, stalled)]
        .into_iter()
        .map(|(type_, value)| {
            let status = if value { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}
