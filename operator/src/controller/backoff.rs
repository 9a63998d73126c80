//! Exponential backoff with full jitter: many rollouts (or deliveries) failing at once for the
//! same reason retry spread out, not in step.

use std::time::Duration;

/// The delay before retry `attempt` (0 for the first retry): a random duration between half and
/// all of `base * 2^attempt`, capped at `max`.
pub fn delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX)).min(max);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(millis / 2..=millis.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_twofold_are_spread_and_capped() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(300);
        for _ in 0..200 {
            let first = delay(0, base, max);
            assert!(first >= Duration::from_millis(500) && first <= base, "{first:?}");
            let third = delay(2, base, max);
            assert!(third >= Duration::from_secs(2) && third <= Duration::from_secs(4), "{third:?}");
            let late = delay(40, base, max);
            assert!(late >= Duration::from_secs(150) && late <= max, "{late:?}");
        }
        let spread: std::collections::BTreeSet<_> = (0..50).map(|_| delay(3, base, max)).collect();
        assert!(spread.len() > 10, "jittered: {spread:?}");
    }
}
