//! What the traffic router makes of a weight, and whether it did. With the plain-Service
//! router weights are pod ratios behind one Service, so the engine plans how many stable pods
//! stay in rotation beside the canary's; with a Gateway API route the weight is exact. A step
//! goes on only once the weight in force is observed (pods in the Service's EndpointSlices,
//! or the route's weights), never on the plan alone.

use super::prelude::*;

/// Stable pods in rotation beside `canary` canary pods so that the pod ratio is closest to
/// `weight` (at least one while stable has any weight, at most `total`).
pub fn stable_pods_for(canary: i32, weight: i32, total: i32) -> i32 {
    if weight <= 0 || canary <= 0 {
        return total;
    }
    if weight >= 100 {
        return 0;
    }
    let exact = f64::from(canary) * f64::from(100 - weight) / f64::from(weight);
    #[allow(clippy::cast_possible_truncation)]
    let stable = exact.round() as i32;
    stable.clamp(1, total.max(1))
}

/// The canary's share of the traffic a pod-ratio router gives for `weight` with `total` replicas.
pub fn pod_ratio_weight(total: i32, weight: i32) -> i32 {
    let canary = replicas_for(total, weight);
    let stable = stable_pods_for(canary, weight, total);
    if canary + stable == 0 {
        return 0;
    }
    #[allow(clippy::cast_possible_truncation)]
    let share = (f64::from(canary) * 100.0 / f64::from(canary + stable)).round() as i32;
    share
}

impl Engine<'_> {
    /// Whether the rollout routes through a Gateway API HTTPRoute or the MCP session router
    /// (exact weights).
    pub(super) fn exact_weights(&self) -> bool {
        self.spec.traffic_routing.as_ref().is_some_and(|t| t.gateway_api.is_some()) || self.mcp_router()
    }

    /// The effective weight `weight` gives once in force, with this rollout's router.
    pub(super) fn planned_effective_weight(&self, weight: i32) -> i32 {
        if self.exact_weights() || weight <= 0 || weight >= 100 {
            weight.clamp(0, 100)
        } else {
            pod_ratio_weight(self.total(), weight)
        }
    }

    /// The canary's observed share of traffic: the weight every router replica has in force
    /// (the smallest of theirs; 0 before any answered), the route's weights, or the share of
    /// the Service's ready endpoints that are canary pods. After a rollback the revision rolled
    /// back counts as the canary while it drains: the decision does not move traffic, the
    /// rotation, route or router change that follows does, and status says 0 only once that
    /// is observed (it said 0 in the very write that decided the rollback).
    pub(super) fn effective_weight(&self) -> i32 {
        let Some(canary) = self.st.canary_revision.as_ref().or_else(|| self.rolled_back_draining()) else {
            return 0;
        };
        if self.mcp_router() {
            let router = self.observed.router.as_ref().filter(|r| r.complete);
            return router.and_then(|r| r.min_weight.get(canary)).copied().unwrap_or(0);
        }
        if let Some(weight) = self.observed.route_weight {
            return weight;
        }
        let endpoints =
            |r: Option<&str>| r.and_then(|r| self.observed.revision(r)).map_or(0, |o| o.in_endpoints);
        let c = endpoints(Some(canary));
        let s = endpoints(self.st.stable_revision.as_deref());
        #[allow(clippy::cast_possible_truncation)]
        let share = if c + s == 0 { 0 } else { ((f64::from(c) * 100.0) / f64::from(c + s)).round() as i32 };
        share
    }

    /// The revision a rollback took traffic from, while it still drains.
    fn rolled_back_draining(&self) -> Option<&String> {
        let revision = &self.st.rollback.as_ref()?.revision;
        (self.st.drains.iter().any(|d| &d.revision == revision)
            && self.st.stable_revision.as_ref() != Some(revision))
        .then_some(revision)
    }

    /// Whether the weight now asked for is what the traffic observably does; holds when not.
    pub(super) fn weight_in_force(&mut self) -> bool {
        let weight = self.st.desired_weight;
        if weight <= 0 {
            return true;
        }
        let (planned, seen) = (self.planned_effective_weight(weight), self.effective_weight());
        if planned == seen {
            return true;
        }
        self.hold(Hold::Waiting(format!(
            "waiting for traffic to reach {weight}% (routed as {planned}%): {seen}% observed"
        )));
        false
    }

    /// Steps whose weight the pod-ratio router cannot give within `maxWeightError` points,
    /// as (step weight, what it gives). Empty with exact weights.
    pub(super) fn inexpressible_weights(&self) -> Vec<(i32, i32)> {
        let StrategyRef::Canary(canary) = self.spec.strategy.kind() else { return Vec::new() };
        if self.exact_weights() {
            return Vec::new();
        }
        let tolerance = canary.max_weight_error.unwrap_or(DEFAULT_WEIGHT_WARNING);
        canary
            .steps
            .iter()
            .filter_map(|s| s.set_weight)
            .filter(|w| *w > 0 && *w < 100)
            .map(|w| (w, pod_ratio_weight(self.total(), w)))
            .filter(|(w, given)| (given - w).abs() > tolerance)
            .collect()
    }

    /// Warns, or with `maxWeightError` set refuses to start, when `replicas` cannot express the
    /// steps' weights: 5% of 4 replicas is one canary pod beside four stable ones, 20%.
    pub(super) fn check_weights(&mut self) {
        let wrong = self.inexpressible_weights();
        let StrategyRef::Canary(canary) = self.spec.strategy.kind() else {
            self.st.warnings.clear();
            return;
        };
        let message = (!wrong.is_empty()).then(|| {
            let steps: Vec<String> = wrong.iter().map(|(w, given)| format!("{w}% gives {given}%")).collect();
            format!(
                "with {} replicas the plain-Service router cannot give the steps' weights: {} (weights are pod \
                 ratios). Raise replicas, or route with exact weights: spec.trafficRouting.gatewayAPI (or the MCP router)",
                self.total(),
                steps.join(", ")
            )
        });
        let warnings: Vec<String> = message.iter().cloned().collect();
        if warnings != self.st.warnings {
            if let Some(m) = &message {
                self.events.push(Event::warning("WeightNotExpressible", m.clone()));
            }
            self.st.warnings = warnings;
        }
        if let (Some(m), Some(_)) = (message, canary.max_weight_error)
            && self.stage() == Stage::Canary
        {
            self.hold(Hold::stalled("WeightNotExpressible", m));
        }
    }
}

/// Points of difference between a step's weight and what pods can give that are worth a warning
/// when `maxWeightError` is not set.
const DEFAULT_WEIGHT_WARNING: i32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_pods_in_rotation_follow_the_canary_weight() {
        let at = |w: i32| {
            let c = replicas_for(4, w);
            (stable_pods_for(c, w, 4), c)
        };
        assert_eq!(at(5), (4, 1), "1 of 5 pods: 20%, the closest to 5% whole pods give");
        assert_eq!(at(25), (3, 1));
        assert_eq!(at(50), (2, 2));
        assert_eq!(at(75), (1, 3));
        assert_eq!(stable_pods_for(4, 100, 4), 0);
        assert_eq!(stable_pods_for(0, 0, 4), 4);
        assert_eq!((pod_ratio_weight(4, 5), pod_ratio_weight(4, 25), pod_ratio_weight(4, 50)), (20, 25, 50));
        assert_eq!(pod_ratio_weight(20, 5), 5, "20 replicas express 5% exactly");
    }
}
