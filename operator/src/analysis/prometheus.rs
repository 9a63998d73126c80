//! Thin I/O: a Prometheus client (prometheus-http-query on the process's reqwest) with a
//! deadline on every request and a cap on every answer's size; the strict reading of its
//! answers into numbers is `mcp_wire::prometheus` (pure, and fuzzed).

use std::time::Duration;

pub use mcp_wire::prometheus::{QueryError, Series, is_rejected_query, scalar_of, series_of};
use mcp_wire::prometheus::{classify, read_answer};
use prometheus_http_query::{Client, response::PromqlResult};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};

/// The largest answer read from Prometheus. The operator's queries give one series (a range
/// over `for` at `for`/30 steps is a few KiB); the address is the McpRollout author's, and
/// prometheus-http-query reads a whole body into memory, so a hostile or broken endpoint could
/// otherwise make the operator hold as much as it cares to send.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// How the operator's client reaches one rollout's Prometheus, besides its address. No
/// `Debug`: it holds a token and a private key.
#[derive(Clone, Copy, Default)]
pub struct ClientOptions<'a> {
    /// `Authorization: Bearer`, sent marked sensitive.
    pub bearer_token: Option<&'a str>,
    /// The host and the addresses it was checked at (the destinations allow-list): the only
    /// ones connected to.
    pub pinned: Option<(&'a str, &'a [std::net::SocketAddr])>,
    /// PEM CA bundle: when set, the only trust roots.
    pub ca_bundle_pem: Option<&'a [u8]>,
    /// PEM certificate chain and private key, for mutual TLS.
    pub identity_pem: Option<&'a [u8]>,
}

#[derive(Clone)]
pub struct Prometheus {
    client: Client,
    timeout: Duration,
}

impl Prometheus {
    /// A client of the Prometheus at `address`; `pinned`: the addresses its host must be
    /// reached at (the operator's checked resolution), none to resolve it as usual.
    pub fn new(address: &str, timeout: Duration, options: &ClientOptions<'_>) -> Result<Self, QueryError> {
        let mut headers = HeaderMap::new();
        if let Some(token) = options.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| QueryError::Rejected("the bearer token is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder();
        if let Some((host, addresses)) = options.pinned.filter(|(_, a)| !a.is_empty()) {
            builder = builder.resolve_to_addrs(host, addresses);
        }
        if options.ca_bundle_pem.is_none() && options.identity_pem.is_none() {
            // Built once per process (`client_tls`), not for every client.
            let scheme = address.split_once("://").map_or("http", |(scheme, _)| scheme);
            let tls = crate::client_tls::for_scheme(scheme)
                .map_err(|e| QueryError::Unreachable(format!("cannot build the HTTP client: {e}")))?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        if let Some(pem) = options.ca_bundle_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                QueryError::Rejected(format!("the Prometheus CA bundle is not PEM certificates: {e}"))
            })?;
            if roots.is_empty() {
                return Err(QueryError::Rejected("the Prometheus CA bundle holds no certificate".into()));
            }
            builder = builder.tls_certs_only(roots);
        }
        if let Some(pem) = options.identity_pem {
            let identity = reqwest::Identity::from_pem(pem).map_err(|e| {
                QueryError::Rejected(format!(
                    "the Prometheus client certificate (tls.crt and tls.key) is unusable: {e}"
                ))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            // The address is the McpRollout author's: a redirect would send the operator (and
            // the bearer token's host check) somewhere the spec does not name; a proxy from
            // the environment would carry the request past the destination check.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
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

    /// Reads an answer of at most [`MAX_ANSWER_BYTES`] (prometheus-http-query's own `get` reads
    /// any size; its `get_raw` leaves the body to us) into the API's envelope.
    async fn read(&self, response: reqwest::Response) -> Result<PromqlResult, QueryError> {
        let status = response.status();
        let json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json {
            return Err(QueryError::Unreachable(format!(
                "not a Prometheus API answer: HTTP {status}, not JSON"
            )));
        }
        let body = read_capped(response, MAX_ANSWER_BYTES).await.map_err(|e| match e {
            CappedRead::TooLarge => QueryError::Unexpected(format!(
                "the answer is larger than {} MiB; aggregate the query (e.g. sum(...))",
                MAX_ANSWER_BYTES / (1024 * 1024)
            )),
            CappedRead::Http(e) if e.is_timeout() => QueryError::Timeout(self.timeout),
            CappedRead::Http(e) => QueryError::Unreachable(format!("reading the answer: {e}")),
        })?;
        read_answer(status.as_u16(), &body)
    }

    /// An instant query that must give one number (or nothing).
    pub async fn instant(&self, query: &str) -> Result<Option<f64>, QueryError> {
        let response = self.client.query(query).get_raw().await.map_err(|e| self.error(e))?;
        let answer = self.read(response).await?;
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
        let response =
            self.client.query_range(query, start, end, step).get_raw().await.map_err(|e| self.error(e))?;
        let answer = self.read(response).await?;
        series_of(answer.data())
    }
}

enum CappedRead {
    TooLarge,
    Http(reqwest::Error),
}

/// The body, or `TooLarge` as soon as it passes `limit` bytes (a declared length over it is
/// refused before reading).
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, CappedRead> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(CappedRead::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(CappedRead::Http)? {
        if body.len() + chunk.len() > limit {
            return Err(CappedRead::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hostile endpoint at the spec's Prometheus address, on loopback (no real Prometheus
    /// sends this: that is the point). It answers every request with `head` and then `body`
    /// repeated until the client hangs up.
    async fn hostile(head: &'static str, body: &'static [u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    // Bounded: 64 MiB at most, 16 times the cap.
                    for _ in 0..(64 * 1024 * 1024 / body.len()) {
                        if socket.write_all(body).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_cap() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n\
                    {\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[{\"metric\":{},\"values\":[";
        let address = hostile(head, b"[1,\"1\"],").await;
        let prometheus =
            Prometheus::new(&address, Duration::from_secs(30), &ClientOptions::default()).unwrap();
        let error = prometheus.range("up", 0, 60, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(&error, QueryError::Unexpected(m) if m.contains("larger than 4 MiB")), "{error:?}");
        let error = prometheus.instant("up").await.unwrap_err();
        assert!(matches!(&error, QueryError::Unexpected(m) if m.contains("larger than")), "{error:?}");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_unread() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n";
        let address = hostile(head, b"          ").await;
        let prometheus =
            Prometheus::new(&address, Duration::from_secs(30), &ClientOptions::default()).unwrap();
        let error = prometheus.instant("up").await.unwrap_err();
        assert!(matches!(&error, QueryError::Unexpected(m) if m.contains("larger than")), "{error:?}");
    }

    #[tokio::test]
    async fn an_answer_that_is_not_the_api_is_no_number() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 10\r\n\r\n";
        let address = hostile(head, b"<html>").await;
        let prometheus =
            Prometheus::new(&address, Duration::from_secs(30), &ClientOptions::default()).unwrap();
        let error = prometheus.instant("up").await.unwrap_err();
        assert!(matches!(&error, QueryError::Unreachable(m) if m.contains("not JSON")), "{error:?}");
    }
}
