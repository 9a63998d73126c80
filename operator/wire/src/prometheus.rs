//! The strict reading of Prometheus HTTP API answers into numbers: the envelope, its errors by
//! `errorType`, and one number or one series out of a result — nothing else is accepted, since
//! the address is the McpRollout author's and the answer may come from anything. Pure: the
//! operator's client (`analysis::prometheus`) does the I/O and caps the body; the fuzz target
//! `prometheus` feeds this hostile answers.

use std::time::Duration;

use prometheus_http_query::{
    error::{PrometheusError, PrometheusErrorType},
    response::{Data, PromqlResult},
};
use serde::Deserialize;

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

/// The Prometheus HTTP API's envelope (prometheus-http-query keeps its own private).
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Envelope {
    Success { data: PromqlResult },
    Error(PrometheusError),
}

/// An answer's body (HTTP `status`, for the message) read as the API's envelope: its data, or
/// its error classified.
pub fn read_answer(status: u16, body: &[u8]) -> Result<PromqlResult, QueryError> {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope::Success { data }) => Ok(data),
        Ok(Envelope::Error(e)) => Err(classify(&e)),
        Err(e) => Err(QueryError::Unexpected(format!(
            "HTTP {status}, an answer that is not the Prometheus API's: {e}"
        ))),
    }
}

/// Only `bad_data` says the query is wrong (bad PromQL: a spec error, reported as Stalled).
/// `timeout`, `unavailable`, `internal`, `execution`, `canceled` and `not_found` are
/// Prometheus's trouble — an overloaded or restarting Prometheus answers them for good queries —
/// and read as no data (Inconclusive: the rollout holds, and goes on when Prometheus recovers).
pub fn classify(error: &PrometheusError) -> QueryError {
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

    #[test]
    fn envelopes_other_than_the_apis_are_unexpected() {
        let ok = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#;
        assert!(read_answer(200, ok).is_ok());
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(matches!(read_answer(400, error), Err(QueryError::Rejected(_))));
        for odd in [&b"{}"[..], b"[]", b"null", b"{\"status\":\"success\"}", b"\xff"] {
            assert!(matches!(read_answer(200, odd), Err(QueryError::Unexpected(_))), "{odd:?}");
        }
    }
}
