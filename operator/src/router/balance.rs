//! Which revision a new session (or a stateless request) goes to, and which pod of it. Pure.
//!
//! Revisions by smooth weighted round-robin (nginx's algorithm): deterministic, and every run of
//! 100 choices gives each revision exactly its weight, so a canary at 5% gets 5 of every 100 new
//! sessions, not "about 5% on average" — what a step's analysis and the operator's exposure
//! promise rest on. Pods within the revision: the fewest open sessions, ties by the fewest
//! choices so far.

use std::collections::BTreeMap;

/// One revision's share, and its pods that may take new work (in rotation).
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionTarget {
    pub revision: String,
    /// 0-100.
    pub weight: u32,
    pub backends: Vec<String>,
}

/// The state of the round-robin across calls.
#[derive(Debug, Default)]
pub struct Balancer {
    current: BTreeMap<String, i64>,
    picks: BTreeMap<String, u64>,
}

impl Balancer {
    /// The revision for the next new session, among those with a weight and a backend.
    pub fn revision<'a>(&mut self, targets: &'a [RevisionTarget]) -> Option<&'a RevisionTarget> {
        let live: Vec<&RevisionTarget> =
            targets.iter().filter(|t| t.weight > 0 && !t.backends.is_empty()).collect();
        let total: i64 = live.iter().map(|t| i64::from(t.weight)).sum();
        if total == 0 {
            return None;
        }
        self.current.retain(|r, _| live.iter().any(|t| &t.revision == r));
        for t in &live {
            *self.current.entry(t.revision.clone()).or_default() += i64::from(t.weight);
        }
        // The first with the highest running total (ties keep the listed order).
        let mut best: Option<&RevisionTarget> = None;
        for t in &live {
            if best.is_none_or(|b| self.current_of(&t.revision) > self.current_of(&b.revision)) {
                best = Some(t);
            }
        }
        let chosen = best?;
        *self.current.get_mut(&chosen.revision)? -= total;
        Some(chosen)
    }

    fn current_of(&self, revision: &str) -> i64 {
        self.current.get(revision).copied().unwrap_or(0)
    }

    /// The backend of `target` with the fewest open sessions (`open` says how many each has).
    pub fn backend<'a>(&mut self, target: &'a RevisionTarget, open: impl Fn(&str) -> u64) -> Option<&'a str> {
        let chosen =
            target.backends.iter().min_by_key(|b| (open(b), self.picks.get(*b).copied().unwrap_or(0)))?;
        *self.picks.entry(chosen.clone()).or_default() += 1;
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(revision: &str, weight: u32, backends: &[&str]) -> RevisionTarget {
        RevisionTarget {
            revision: revision.into(),
            weight,
            backends: backends.iter().map(|b| (*b).to_owned()).collect(),
        }
    }

    fn shares(targets: &[RevisionTarget], n: usize) -> BTreeMap<String, usize> {
        let mut b = Balancer::default();
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            *counts.entry(b.revision(targets).unwrap().revision.clone()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn every_hundred_new_sessions_split_exactly_by_weight() {
        for canary in [1, 5, 25, 50, 99] {
            let t = [target("stable", 100 - canary, &["a"]), target("canary", canary, &["b"])];
            let s = shares(&t, 100);
            assert_eq!(s.get("canary").copied().unwrap_or(0), canary as usize, "{canary}: {s:?}");
        }
        // Spread, not bunched: at 25% the canary never gets two in a row.
        let t = [target("stable", 75, &["a"]), target("canary", 25, &["b"])];
        let mut b = Balancer::default();
        let seq: Vec<String> = (0..100).map(|_| b.revision(&t).unwrap().revision.clone()).collect();
        assert!(seq.windows(2).all(|w| !(w[0] == "canary" && w[1] == "canary")), "{seq:?}");
    }

    #[test]
    fn revisions_without_weight_or_pods_get_nothing() {
        let t = [target("stable", 100, &["a"]), target("canary", 0, &["b"])];
        assert_eq!(shares(&t, 50).get("canary"), None);
        let t = [target("stable", 50, &["a"]), target("canary", 50, &[])];
        assert_eq!(shares(&t, 50).get("stable"), Some(&50), "a revision with no pod in rotation");
        assert!(Balancer::default().revision(&[target("stable", 0, &["a"])]).is_none());
    }

    #[test]
    fn the_pod_with_fewest_open_sessions_takes_the_next() {
        let t = target("stable", 100, &["a", "b", "c"]);
        let mut b = Balancer::default();
        let open = |p: &str| match p {
            "a" => 3,
            "b" => 1,
            _ => 2,
        };
        assert_eq!(b.backend(&t, open), Some("b"));
        // Equal counts: spread by how often each was picked.
        let mut b = Balancer::default();
        let picks: Vec<&str> = (0..6).map(|_| b.backend(&t, |_| 0).unwrap()).collect();
        assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
    }
}
