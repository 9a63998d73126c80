//! Thin I/O: a Prometheus client (prometheus-http-query on the process's reqwest) with a
//! deadline on every request, and the strict reading of its answers into numbers.

use std::time::Duration;

use prometheus_http_query::{
    Client,
    error::{PrometheusError, PrometheusErrorType},
    response::Data,
};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

/// Why a query gave no number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("Prometheus is unreachable: {0}")]
    Unreachable(String),
    #[error("Prometheus did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Prometheus refused the query: {0}")]
    Rejected(String),
    /// Prometheus answered with an error that says nothing against the query itself (its
    /// `errorType` is not `bad_data`): its own trouble, waited out like missing data.
    #[error("Prometheus could not run the query: {0}")]
    Failed(String),
    #[error("unexpected query result: {0}")]
    Unexpected(String),
}

/// Whether a check's message says Prometheus refused its query (bad PromQL, unknown
/// function): a spec error to report as Stalled, not missing data to wait out.
pub fn is_rejected_query(message: &str) -> bool {
    message.starts_with("Prometheus refused the query")
}

/// One series' samples: (unix seconds, value), finite values only.
pub type Series = Vec<(f64, f64)>;

#[derive(Clone)]
pub struct Prometheus {
    client: Client,
    timeout: Duration,
}

impl Prometheus {
    pub fn new(address: &str, timeout: Duration, bearer_token: Option<&str>) -> Result<Self, QueryError> {
        let mut headers = HeaderMap::new();
        if let Some(token) = bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| QueryError::Rejected("the bearer token is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            // The address is the McpRollout author's: a redirect would send the operator (and
            // the bearer token's host check) somewhere the spec does not name.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .default_headers(headers)
            .build()
            .map_err(|e| QueryError::Unreachable(format!("cannot build the HTTP client: {e}")))?;
        let client = Client::from(http, address)
            .map_err(|e| QueryError::Unreachable(format!("bad Prometheus address {address}: {e}")))?;
        Ok(Self { client, timeout })
    }

    fn error(&self, error: prometheus_http_query::Error) -> QueryError {
        match error {
            prometheus_http_query::Error::Prometheus(e) => classify(&e),
            prometheus_http_query::Error::Client(e) => {
                let text = e.to_string();
                let timed_out = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<reqwest::Error>())
                    .is_some_and(reqwest::Error::is_timeout);
                if timed_out { QueryError::Timeout(self.timeout) } else { QueryError::Unreachable(text) }
            }
            other => QueryError::Unreachable(other.to_string()),
        }
    }

    /// An instant query that must give one number (or nothing).
    pub async fn instant(&self, query: &str) -> Result<Option<f64>, QueryError> {
        let answer = self.client.query(query).get().await.map_err(|e| self.error(e))?;
        scalar_of(answer.data())
    }

    /// A range query that must give one series (or nothing).
    pub async fn range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: Duration,
    ) -> Result<Series, QueryError> {
        let step = step.as_secs_f64().max(1.0);
        let answer =
            self.client.query_range(query, start, end, step).get().await.map_err(|e| self.error(e))?;
        series_of(answer.data())
    }
}

/// Only `bad_data` says the query is wrong (bad PromQL: a spec error, reported as Stalled).
/// `timeout`, `unavailable`, `internal`, `execution`, `canceled` and `not_found` are
/// Prometheus's trouble — an overloaded or restarting Prometheus answers them for good queries —
/// and read as no data (Inconclusive: the rollout holds, and goes on when Prometheus recovers).
fn classify(error: &PrometheusError) -> QueryError {
    match error.error_type() {
        PrometheusErrorType::BadData => QueryError::Rejected(error.to_string()),
        _ => QueryError::Failed(error.to_string()),
    }
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// One number from an instant answer: a scalar, or a vector of at most one series. NaN and
/// ±Inf (e.g. `histogram_quantile` on no data) read as no number.
pub fn scalar_of(data: &Data) -> Result<Option<f64>, QueryError> {
    match data {
        Data::Scalar(sample) => Ok(finite(sample.value())),
        Data::Vector(series) => match series.as_slice() {
            [] => Ok(None),
            [one] => Ok(finite(one.sample().value())),
            many => Err(QueryError::Unexpected(format!(
                "{} series where one number was expected; aggregate the query (e.g. sum(...))",
                many.len()
            ))),
        },
        Data::Matrix(_) => Err(QueryError::Unexpected("a range vector where one number was expected".into())),
    }
}

/// One series from a range answer.
pub fn series_of(data: &Data) -> Result<Series, QueryError> {
    match data {
        Data::Matrix(series) => match series.as_slice() {
            [] => Ok(Vec::new()),
            [one] => Ok(one
                .samples()
                .iter()
                .filter_map(|s| finite(s.value()).map(|v| (s.timestamp(), v)))
                .collect()),
            many => Err(QueryError::Unexpected(format!(
                "{} series where one was expected; aggregate the query (e.g. sum(...))",
                many.len()
            ))),
        },
        Data::Scalar(_) | Data::Vector(_) => {
            Err(QueryError::Unexpected("an instant result to a range query".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: &str) -> Data {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn instant_answers_read_as_one_number_or_none() {
        assert_eq!(scalar_of(&data(r#"{"resultType":"scalar","result":[1,"2.5"]}"#)), Ok(Some(2.5)));
        assert_eq!(scalar_of(&data(r#"{"resultType":"vector","result":[]}"#)), Ok(None));
        let one = r#"{"resultType":"vector","result":[{"metric":{},"value":[1,"0.25"]}]}"#;
        assert_eq!(scalar_of(&data(one)), Ok(Some(0.25)));
        for odd in ["NaN", "+Inf", "-Inf"] {
            let json =
                format!(r#"{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"{odd}"]}}]}}"#);
            assert_eq!(scalar_of(&data(&json)), Ok(None), "{odd}");
        }
        let two = r#"{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}"#;
        assert!(matches!(scalar_of(&data(two)), Err(QueryError::Unexpected(_))));
        let matrix = r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}"#;
        assert!(matches!(scalar_of(&data(matrix)), Err(QueryError::Unexpected(_))));
    }

    #[test]
    fn only_bad_data_says_the_query_is_wrong() {
        let error = |error_type: &str| -> PrometheusError {
            serde_json::from_value(serde_json::json!({"errorType": error_type, "error": "boom"})).unwrap()
        };
        let bad = classify(&error("bad_data"));
        assert!(matches!(bad, QueryError::Rejected(_)), "{bad:?}");
        assert!(is_rejected_query(&bad.to_string()));
        for error_type in ["timeout", "canceled", "execution", "internal", "unavailable", "not_found"] {
            let failed = classify(&error(error_type));
            assert!(matches!(failed, QueryError::Failed(_)), "{error_type}: {failed:?}");
            assert!(!is_rejected_query(&failed.to_string()), "{error_type}");
            assert!(failed.to_string().contains(error_type), "{failed}");
        }
    }

    #[test]
    fn range_answers_read_as_one_series_without_non_finite_points() {
        let matrix =
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"NaN"],[3,"3"]]}]}"#;
        assert_eq!(series_of(&data(matrix)), Ok(vec![(1.0, 1.0), (3.0, 3.0)]));
        assert_eq!(series_of(&data(r#"{"resultType":"matrix","result":[]}"#)), Ok(vec![]));
        assert!(series_of(&data(r#"{"resultType":"vector","result":[]}"#)).is_err());
    }
}
