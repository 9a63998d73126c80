//! `IntOrString` values such as `maxSurge: 25%`, scaled as the deployment controller scales them.

use serde_json::Value;

/// `value` against `total`: an integer as is, a percentage of `total` rounded up or down.
pub fn scaled(value: &Value, total: i64, round_up: bool, default_percent: i64) -> i64 {
    let percent = match value {
        Value::Number(n) => return n.as_i64().unwrap_or(0).max(0),
        Value::String(s) => s.trim_end_matches('%').parse::<i64>().unwrap_or(default_percent),
        _ => default_percent,
    };
    let product = total * percent;
    (if round_up { (product + 99) / 100 } else { product / 100 }).max(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn percentages_round_as_the_deployment_controller_rounds() {
        assert_eq!(scaled(&json!("25%"), 3, true, 25), 1);
        assert_eq!(scaled(&json!("25%"), 3, false, 25), 0);
        assert_eq!(scaled(&json!(2), 3, true, 25), 2);
        assert_eq!(scaled(&Value::Null, 10, false, 25), 2);
        assert_eq!(scaled(&json!("100%"), 4, true, 25), 4);
    }
}
