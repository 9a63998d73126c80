//! Change gates (`spec.gates`): before the start, a weight increase, a flip or a promotion, the
//! rollout waits until every gate standing there opens — a webhook's 2xx, a person's approval,
//! the end of a freeze window. A closed gate holds the rollout Paused; it rolls back only when
//! its webhook answers `rollback`. Each gate at each point has its entry in `status.gates`, so
//! an approval or a webhook's answer counts for that point alone.

use super::{freeze, prelude::*};
use crate::api::{Gate, GatePoint, GateState, GateStatus, GateWhen, SchemaChange};

/// What one gate says at one point.
enum GateVerdict {
    Open(String),
    Closed(String),
    Rollback(String),
    /// The gate cannot be read (an unknown time zone): the rollout stalls until the spec changes.
    Invalid(String),
}

impl<'a> Engine<'a> {
    /// Whether every gate at `points` (in order) is open for the new revision, at the increase to
    /// `weight`. Holds the rollout (or rolls it back, or stalls it) when not.
    pub(super) fn change_gates_open(&mut self, points: &[GatePoint], weight: Option<i32>) -> bool {
        let Some(revision) = self.st.canary_revision.clone() else { return true };
        let spec = self.spec;
        for &point in points {
            let weight = if point == GatePoint::WeightIncrease || point == GatePoint::Promotion {
                weight
            } else {
                None
            };
            for gate in spec.gates.iter().filter(|g| g.at.contains(&point)) {
                if !self.gate_applies(gate, &revision) {
                    continue;
                }
                let index = self.gate_entry(gate, point, weight, &revision);
                if self.st.gates[index].state == GateState::Open {
                    continue;
                }
                match self.judge_gate(gate, index, &revision) {
                    GateVerdict::Open(why) => {
                        let entry = &mut self.st.gates[index];
                        entry.state = GateState::Open;
                        entry.since = time(self.now);
                        entry.message = Some(why.clone());
                        self.events.push(Event::normal(
                            "GateOpened",
                            format!(
                                "gate {} at {} of revision {revision}: {why}",
                                gate.name,
                                at_point(point, weight)
                            ),
                        ));
                    }
                    GateVerdict::Closed(why) => {
                        self.st.gates[index].message = Some(why.clone());
                        self.hold(Hold::Paused(format!(
                            "gate {} at {} waits: {why}",
                            gate.name,
                            at_point(point, weight)
                        )));
                        return false;
                    }
                    GateVerdict::Rollback(why) => {
                        let message = format!("gate {} at {}: {why}", gate.name, at_point(point, weight));
                        self.roll_back(
                            &revision,
                            RollbackReason::GateRejected,
                            Some(gate.name.clone()),
                            message,
                        );
                        return false;
                    }
                    GateVerdict::Invalid(why) => {
                        self.hold(Hold::stalled("InvalidGate", format!("gate {}: {why}", gate.name)));
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Whether the gate applies to this revision, by its tool-schema diff against stable. A
    /// revision whose diff is not known is gated: only a diff seen to be harmless lets it pass.
    fn gate_applies(&self, gate: &Gate, revision: &str) -> bool {
        let change = self.st.probes.iter().find(|p| p.revision == revision).and_then(|p| p.schema_change);
        match gate.when {
            GateWhen::Always => true,
            GateWhen::SchemaChanged => change != Some(SchemaChange::Unchanged),
            GateWhen::SchemaBreaking => {
                !matches!(change, Some(SchemaChange::Unchanged | SchemaChange::NonBreaking))
            }
        }
    }

    /// The gate's entry at this point, made (Waiting, with an event) the first time.
    fn gate_entry(&mut self, gate: &Gate, point: GatePoint, weight: Option<i32>, revision: &str) -> usize {
        if let Some(i) =
            self.st.gates.iter().position(|g| g.name == gate.name && g.point == point && g.weight == weight)
        {
            return i;
        }
        self.st.gates.push(GateStatus {
            name: gate.name.clone(),
            point,
            weight,
            state: GateState::Waiting,
            since: time(self.now),
            approved: false,
            answered_at: None,
            message: None,
        });
        self.events.push(Event::normal(
            "GateWaiting",
            format!("revision {revision} waits at gate {} ({})", gate.name, at_point(point, weight)),
        ));
        self.st.gates.len() - 1
    }

    /// What the gate says now: a freeze closes it whatever else it says; then each kind it has
    /// must open it.
    fn judge_gate(&mut self, gate: &Gate, index: usize, revision: &str) -> GateVerdict {
        if let Some(freeze) = &gate.freeze {
            match freeze::in_force(freeze, self.now) {
                Err(why) => return GateVerdict::Invalid(format!("freeze: {why}")),
                Ok(Some(frozen)) => {
                    self.wake_at(frozen.until);
                    return GateVerdict::Closed(format!("change freeze until {}", frozen.until_local));
                }
                Ok(None) => {}
            }
        }
        let mut opened = Vec::new();
        if let Some(webhook) = &gate.webhook {
            let entry = &self.st.gates[index];
            let call = GateCall {
                gate: gate.name.clone(),
                point: entry.point,
                weight: entry.weight,
                revision: revision.to_owned(),
            };
            let since = secs(&entry.since);
            // Only an answer to a call made for this entry counts (not one from before it began).
            let answer = self
                .observed
                .gate_answers
                .iter()
                .filter(|a| a.call == call && a.at.as_second() >= since)
                .max_by_key(|a| a.at);
            if let Some(a) = answer {
                let entry = &mut self.st.gates[index];
                if entry.answered_at.as_ref().is_none_or(|t| secs(t) < a.at.as_second()) {
                    entry.answered_at = Some(time(a.at.as_second()));
                }
            }
            match answer.map(|a| (a.outcome, a.message.clone())) {
                Some((GateOutcome::Open, m)) => opened.push(format!("webhook: {m}")),
                Some((GateOutcome::Rollback, m)) => {
                    return GateVerdict::Rollback(format!("webhook asked for a rollback: {m}"));
                }
                closed => {
                    let last = self.st.gates[index].answered_at.as_ref().map(secs);
                    let next = last.map_or(self.now, |t| t + webhook.interval.as_secs() as i64);
                    if next <= self.now {
                        self.gate_calls.push(call);
                    } else {
                        self.wake_at(next);
                    }
                    return GateVerdict::Closed(match closed {
                        Some((_, m)) => format!("webhook: {m}"),
                        None => "waiting for the webhook's answer".into(),
                    });
                }
            }
        }
        if gate.approval.is_some() {
            if !self.st.gates[index].approved {
                return GateVerdict::Closed(format!(
                    "waiting for approval (`kubectl mcprollout approve <name> --gate {}`)",
                    gate.name
                ));
            }
            opened.push("approved".into());
        }
        if opened.is_empty() {
            opened.push("no freeze in force".into());
        }
        GateVerdict::Open(opened.join("; "))
    }

    /// An `approve` request: approves the approval gates waiting now (the named one, or all).
    /// Returns whether any was waiting.
    pub(super) fn approve_gates(&mut self, gate: Option<&str>) -> bool {
        let spec = self.spec;
        let mut any = false;
        for entry in &mut self.st.gates {
            let has_approval = spec.gates.iter().any(|g| g.name == entry.name && g.approval.is_some());
            if entry.state == GateState::Waiting
                && has_approval
                && gate.is_none_or(|g| g == entry.name)
                && !entry.approved
            {
                entry.approved = true;
                any = true;
            }
        }
        any
    }
}

/// A point as people read it: `WeightIncrease to 25%`, `Flip`.
pub(super) fn at_point(point: GatePoint, weight: Option<i32>) -> String {
    match weight {
        Some(w) => format!("{point:?} to {w}%"),
        None => format!("{point:?}"),
    }
}
