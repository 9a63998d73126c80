//! Human-readable durations (`30s`, `5m`, `1h30m`) for the McpRollout API.
//!
//! Parsing reuses kube-core's `metav1.Duration` parser (the Go `time.ParseDuration` grammar), so
//! what the API server's CEL `duration()` accepts and what the operator accepts are the same
//! language. The schema adds what kube-core's does not: a `pattern`, so a typo such as `5 min` is
//! rejected at admission instead of at reconcile time, and negative durations are refused.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The admission-time grammar: one or more `<number><unit>` groups, no sign, no spaces.
/// `0` alone is also accepted (Go accepts it and it is a common way to say "none").
pub const DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$";

/// A non-negative duration written the way Kubernetes and Go write them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(Duration);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("`{input}` is not a duration: {reason} (write it like 30s, 5m, 1h30m)")]
    Invalid { input: String, reason: String },
    #[error("`{0}` is negative; durations must be zero or positive")]
    Negative(String),
}

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    pub const fn as_std(&self) -> Duration {
        self.0
    }

    pub const fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(DurationError::Invalid { input: String::new(), reason: "empty".into() });
        }
        if let Some(seconds) = seconds_written(s)
            && seconds > LONGEST_SECONDS
        {
            return Err(DurationError::Invalid { input: s.to_owned(), reason: TOO_LONG.into() });
        }
        let parsed = kube::core::Duration::from_str(s)
            .map_err(|e| DurationError::Invalid { input: s.to_owned(), reason: e.to_string() })?;
        if parsed.is_negative() && Duration::from(parsed) != Duration::ZERO {
            return Err(DurationError::Negative(s.to_owned()));
        }
        Ok(Self(parsed.into()))
    }
}

/// The longest duration Go (and so the API server's CEL `duration()`) represents: 2⁶³ − 1 ns.
const LONGEST_SECONDS: f64 = 9_223_372_036.0;
const TOO_LONG: &str = "longer than the longest duration Kubernetes represents (about 292 years)";

/// How many seconds `s` says, read group by group as kube-core's parser reads it; `None` when
/// it is not that grammar (the parser then says why). kube-core multiplies and adds
/// `std::time::Duration`s, which panic on overflow: `99999999999999999999999999999h` passes
/// the schema's pattern and length and would panic the operator (found by the `spec` fuzz
/// target), so the sum is checked here first, in floating point, where it cannot overflow.
fn seconds_written(s: &str) -> Option<f64> {
    let mut rest = s.trim_start_matches('+').trim_start_matches('-');
    let mut total = 0.0;
    while !rest.is_empty() && rest != "0" {
        let unit_start = rest.find(char::is_alphabetic)?;
        let (value, after) = rest.split_at(unit_start);
        let value: f64 = value.parse().ok()?;
        let unit_end = after.find(|c: char| !c.is_alphabetic()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let unit_seconds = match unit {
            "ns" => 1e-9,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * unit_seconds;
        rest = next;
    }
    Some(total)
}

/// Writes the shortest exact form: `1h30m`, `5m`, `90s` → `1m30s`, `1500ms` → `1s500ms`.
impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total_ms = self.0.as_millis();
        let sub_ms_nanos = self.0.as_nanos() % 1_000_000;
        if total_ms == 0 && sub_ms_nanos == 0 {
            return f.write_str("0s");
        }
        let (h, rem) = (total_ms / 3_600_000, total_ms % 3_600_000);
        let (m, rem) = (rem / 60_000, rem % 60_000);
        let (s, ms) = (rem / 1000, rem % 1000);
        for (value, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
            if value > 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        if sub_ms_nanos > 0 {
            write!(f, "{sub_ms_nanos}ns")?;
        }
        Ok(())
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "HumanDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_write() {
        for (input, secs) in [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("0", 0)] {
            let d: HumanDuration = input.parse().unwrap();
            assert_eq!(d.as_secs(), secs, "{input}");
        }
        let d: HumanDuration = "1.5s".parse().unwrap();
        assert_eq!(d.as_std(), Duration::from_millis(1500));
    }

    #[test]
    fn a_duration_too_long_to_represent_is_refused_not_a_panic() {
        // Within the schema's pattern and 32 characters; kube-core's parser overflows on it.
        for input in ["99999999999999999999999999999h", "9999999999999999999m", "1e400s", "2562048h1h"] {
            let error = input.parse::<HumanDuration>().expect_err(input);
            assert!(
                error.to_string().contains("longest") || error.to_string().contains("not a duration"),
                "{error}"
            );
        }
        // The longest Go represents still reads.
        assert!("2562047h".parse::<HumanDuration>().is_ok());
        let long: Result<HumanDuration, _> = serde_json::from_str("\"99999999999999999999999999999h\"");
        assert!(long.is_err());
    }

    #[test]
    fn rejects_garbage_and_negative_values_with_a_clear_message() {
        let err = "5 minutes".parse::<HumanDuration>().unwrap_err();
        assert!(err.to_string().contains("write it like 30s"), "{err}");
        assert!(matches!("-5s".parse::<HumanDuration>(), Err(DurationError::Negative(_))));
        assert!("5".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn display_round_trips_and_is_compact() {
        for (input, shown) in
            [("90s", "1m30s"), ("5m", "5m"), ("1h30m", "1h30m"), ("1500ms", "1s500ms"), ("0", "0s")]
        {
            let d: HumanDuration = input.parse().unwrap();
            assert_eq!(d.to_string(), shown);
            assert_eq!(shown.parse::<HumanDuration>().unwrap(), d);
        }
    }

    #[test]
    fn pattern_agrees_with_the_parser() {
        let re = regex_lite::Regex::new(DURATION_PATTERN).unwrap();
        for ok in ["30s", "5m", "1h30m", "1.5s", "250ms", "0"] {
            assert!(re.is_match(ok), "{ok} should match");
            assert!(ok.parse::<HumanDuration>().is_ok(), "{ok} should parse");
        }
        for bad in ["5 m", "-5s", "5", "m", "", "1d"] {
            assert!(!re.is_match(bad), "{bad} should not match");
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad} should not parse");
        }
    }
}
